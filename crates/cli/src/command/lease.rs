//! `warrant lease list|revoke` (admin): the downstream credentials Warrant
//! has issued, and revoking one by hand (also one marked `irrevocable`,
//! once its backend is back or it was cleaned up).

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// List leases, newest first
    List(ListArgs),
    /// Revoke a lease now (retried by the reaper if the backend is down)
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only leases in this state
    #[arg(long, value_parser = ["issuing", "active", "revoking", "revoked", "irrevocable"])]
    state: Option<String>,
    /// Only leases of this task
    #[arg(long, value_name = "TASK_ID")]
    task: Option<String>,
    /// At most this many
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The lease id
    id: String,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

pub async fn run(ctx: &Context, cmd: LeaseCommand) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        LeaseCommand::List(a) => {
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
            let answer: Value = client.get(&["v1", "leases"], &query).await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&answer);
            }
            let mut t = output::list(&[
                "id",
                "engine",
                "role",
                "state",
                "task",
                "expires",
                "attempts",
                "last error",
            ]);
            for l in answer["leases"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    text(&l["id"]),
                    text(&l["engine"]),
                    text(&l["role"]),
                    text(&l["state"]),
                    text(&l["task_id"]),
                    text(&l["expires_at"]),
                    text(&l["attempts"]),
                    text(&l["last_error"]),
                ]);
            }
            output::table(&t)
        }
        LeaseCommand::Revoke(a) => {
            let answer: Value = client.delete(&["v1", "leases", &a.id]).await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&answer);
            }
            output::text_line(&format!("lease {} is {}", a.id, text(&answer["state"])))
        }
    }
}
