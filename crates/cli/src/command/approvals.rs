//! `warrant approvals list|show|approve|deny`: the humans' side of a
//! decision that needs an approval.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approval requests, newest first
    List(ListArgs),
    /// Show exactly what is asked: the request, the run and its task, the
    /// delegating human, the votes and the run's recent decisions
    Show(IdArgs),
    /// Approve a pending request (it then allows the identical request
    /// once)
    Approve(VoteArgs),
    /// Deny a pending request
    Deny(VoteArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only requests in this state
    #[arg(long, value_parser = ["pending", "approved", "denied", "expired", "revoked", "consumed"])]
    state: Option<String>,
    /// Only requests of this task
    #[arg(long, value_name = "TASK_ID")]
    task: Option<String>,
    /// At most this many
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The approval id
    id: String,
}

#[derive(Debug, Args)]
pub struct VoteArgs {
    /// The approval id
    id: String,
    /// Why: kept in the audit log and the signed attestation
    #[arg(long, value_name = "TEXT")]
    reason: String,
}

pub async fn run(ctx: &Context, cmd: ApprovalsCommand) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        ApprovalsCommand::List(a) => {
            let mut query = Vec::new();
            if let Some(s) = a.state {
                query.push(("state", s));
            }
            if let Some(t) = a.task {
                query.push(("task", t));
            }
            if let Some(n) = a.limit {
                query.push(("limit", n.to_string()));
            }
            let answer: Value = client.get(&["v1", "approvals"], &query).await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&answer);
            }
            let mut t = output::list(&[
                "id",
                "state",
                "action",
                "resource",
                "agent",
                "delegator",
                "votes",
                "expires",
            ]);
            for a in answer["approvals"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    text(&a["id"]),
                    text(&a["state"]),
                    text(&a["action"]),
                    format!(
                        "{} {}",
                        text(&a["resource"]["type"]),
                        text(&a["resource"]["id"])
                    ),
                    text(&a["agent"]),
                    text(&a["delegator"]),
                    format!("{}/{}", a["approvals"], a["quorum"]),
                    text(&a["expires_at"]),
                ]);
            }
            output::table(&t)
        }
        ApprovalsCommand::Show(a) => {
            let answer: Value = client.get(&["v1", "approvals", &a.id], &[]).await?;
            show(ctx, &answer)
        }
        ApprovalsCommand::Approve(a) => {
            let answer: Value = client
                .post(
                    &["v1", "approvals", &a.id, "approve"],
                    &json!({"reason": a.reason}),
                )
                .await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&answer);
            }
            output::text_line(&format!(
                "approved {} ({}/{} approvals, now {})",
                a.id,
                answer["approvals"],
                answer["quorum"],
                text(&answer["state"])
            ))
        }
        ApprovalsCommand::Deny(a) => {
            let answer: Value = client
                .post(
                    &["v1", "approvals", &a.id, "deny"],
                    &json!({"reason": a.reason}),
                )
                .await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&answer);
            }
            output::text_line(&format!("denied {}", a.id))
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn show(ctx: &Context, a: &Value) -> anyhow::Result<()> {
    if ctx.output == OutputFormat::Json {
        return output::json(a);
    }
    let votes: Vec<String> = a["votes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            format!(
                "{} {}: {}",
                text(&v["approver"]),
                text(&v["verdict"]),
                text(&v["reason"])
            )
        })
        .collect();
    let recent: Vec<String> = a["recent_decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} {} {} -> {} ({})",
                text(&d["time"]),
                text(&d["action"]),
                text(&d["resource"]["id"]),
                text(&d["decision"]),
                text(&d["code"])
            )
        })
        .collect();
    output::table(&output::details(vec![
        ("id", text(&a["id"])),
        ("state", text(&a["state"])),
        (
            "asks for",
            format!(
                "{} on {} {}",
                text(&a["action"]),
                text(&a["resource"]["type"]),
                text(&a["resource"]["id"])
            ),
        ),
        ("context", a["context"].to_string()),
        (
            "why",
            a["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "agent",
            format!("{} (tier {})", text(&a["agent"]), text(&a["tier"])),
        ),
        ("run", text(&a["run_id"])),
        ("task", text(&a["task_id"])),
        ("delegated by", text(&a["delegator"])),
        (
            "run so far",
            format!(
                "{}{}",
                a["run_history"],
                if a["run_tainted"] == true {
                    ", tainted"
                } else {
                    ""
                }
            ),
        ),
        ("quorum", format!("{} of {}", a["approvals"], a["quorum"])),
        (
            "votes",
            if votes.is_empty() {
                "-".into()
            } else {
                votes.join("\n")
            },
        ),
        (
            "recent decisions",
            if recent.is_empty() {
                "-".into()
            } else {
                recent.join("\n")
            },
        ),
        ("requested", text(&a["created_at"])),
        ("expires", text(&a["expires_at"])),
        ("request hash", text(&a["request_hash"])),
    ]))
}
