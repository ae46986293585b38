//! `warrant task create|show|list|end|narrow`.

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use warrant_core::{Scope, Task, TaskId, Timestamp};

use super::{Context, decode};
use crate::error::UserError;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Delegate a task to an agent; you become its delegator
    Create {
        /// The agent that will do the work
        #[arg(long, value_name = "NAME")]
        agent: String,
        /// Why: what the agent is asked to do
        #[arg(long, value_name = "TEXT")]
        purpose: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// How long the task lives, e.g. `30m`, `2h` [default: the server's]
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// A ticket or issue reference, e.g. `ACME-12`
        #[arg(long, value_name = "REF")]
        ticket: Option<String>,
    },
    /// Show one task
    Show { id: TaskId },
    /// List tasks, newest first
    List {
        #[arg(long, value_parser = ["pending", "active", "ended"])]
        state: Option<String>,
        /// Only this agent's tasks
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
        /// Only tasks this user delegated
        #[arg(long, value_name = "USER")]
        delegator: Option<String>,
        /// At most this many
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// End a task now
    End {
        id: TaskId,
        /// Why it ends, kept as the task's end note
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Narrow a live task: the lists given replace the task's, which they
    /// must be a subset of; `--ttl` can only bring the end closer
    Narrow {
        id: TaskId,
        #[command(flatten)]
        scope: ScopeArgs,
        /// New time left from now, e.g. `10m`
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
}

/// What a task may touch. Each list is an allowlist: leaving one out grants
/// nothing of that kind.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// A repository, OWNER/NAME (repeatable)
    #[arg(long = "repo", value_name = "OWNER/NAME")]
    repos: Vec<String>,
    /// A branch name or glob such as `fix/*` (repeatable)
    #[arg(long = "branch", value_name = "GLOB")]
    branches: Vec<String>,
    /// An environment (repeatable)
    #[arg(long = "env", value_name = "NAME")]
    environments: Vec<String>,
    /// An action such as `repo.read` (repeatable)
    #[arg(long = "action", value_name = "NAME")]
    actions: Vec<String>,
    /// A tool such as `github/create_pull_request` (repeatable)
    #[arg(long = "tool", value_name = "NAME")]
    tools: Vec<String>,
    /// A secret name (repeatable)
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
}

impl ScopeArgs {
    fn into_scope(self) -> Scope {
        Scope {
            repos: self.repos,
            branches: self.branches,
            environments: self.environments,
            actions: self.actions,
            tools: self.tools,
            secrets: self.secrets,
        }
    }

    fn is_empty(&self) -> bool {
        self.repos.is_empty()
            && self.branches.is_empty()
            && self.environments.is_empty()
            && self.actions.is_empty()
            && self.tools.is_empty()
            && self.secrets.is_empty()
    }

    /// `current` with every list given on the command line replaced.
    fn replace_in(self, mut current: Scope) -> Scope {
        let replace = |into: &mut Vec<String>, given: Vec<String>| {
            if !given.is_empty() {
                *into = given;
            }
        };
        replace(&mut current.repos, self.repos);
        replace(&mut current.branches, self.branches);
        replace(&mut current.environments, self.environments);
        replace(&mut current.actions, self.actions);
        replace(&mut current.tools, self.tools);
        replace(&mut current.secrets, self.secrets);
        current
    }
}

#[derive(Deserialize)]
struct Tasks {
    tasks: Vec<Task>,
}

pub async fn run(ctx: &Context, cmd: TaskCommand) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let task: Value = match cmd {
        TaskCommand::Create {
            agent,
            purpose,
            scope,
            ttl,
            ticket,
        } => {
            let mut body = Map::new();
            body.insert("agent".into(), agent.into());
            body.insert("purpose".into(), purpose.into());
            body.insert("scope".into(), serde_json::to_value(scope.into_scope())?);
            if let Some(ttl) = ttl {
                body.insert("ttl".into(), ttl.into());
            }
            if let Some(ticket) = ticket {
                body.insert("ticket".into(), ticket.into());
            }
            client.post(&["v1", "tasks"], &body).await?
        }
        TaskCommand::Show { id } => client.get(&["v1", "tasks", &id.to_string()], &[]).await?,
        TaskCommand::End { id, reason } => {
            let body = match reason {
                Some(note) => json!({ "note": note }),
                None => json!({}),
            };
            client
                .post(&["v1", "tasks", &id.to_string(), "end"], &body)
                .await?
        }
        TaskCommand::Narrow { id, scope, ttl } => {
            if scope.is_empty() && ttl.is_none() {
                return Err(UserError::new("nothing to narrow")
                    .hint("give the lists to keep (--repo, --action, ...) or a shorter --ttl")
                    .into());
            }
            let id = id.to_string();
            let current: Value = client.get(&["v1", "tasks", &id], &[]).await?;
            let current: Task = decode(&client, &current)?;
            let mut body = Map::new();
            body.insert(
                "scope".into(),
                serde_json::to_value(scope.replace_in(current.scope))?,
            );
            if let Some(ttl) = ttl {
                body.insert("ttl".into(), ttl.into());
            }
            client.post(&["v1", "tasks", &id, "narrow"], &body).await?
        }
        TaskCommand::List {
            state,
            agent,
            delegator,
            limit,
        } => {
            let query: Vec<(&str, String)> = [
                ("state", state),
                ("agent", agent),
                ("delegator", delegator),
                ("limit", limit.map(|n| n.to_string())),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            let list: Value = client.get(&["v1", "tasks"], &query).await?;
            if ctx.output == OutputFormat::Json {
                return output::json(&list);
            }
            let list: Tasks = decode(&client, &list)?;
            return output::table(&task_list(&list.tasks, Timestamp::now()));
        }
    };
    if ctx.output == OutputFormat::Json {
        return output::json(&task);
    }
    let claim = task.get("claim").and_then(Value::as_str).map(str::to_owned);
    let claim_expires = task
        .get("claim_expires_at")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let task: Task = decode(&client, &task)?;
    output::table(&task_details(&task, Timestamp::now()))?;
    if let Some(claim) = claim {
        // Shown once: the server keeps only its hash.
        output::text_line(&format!(
            "\nclaim (shown once, single use, expires {}): {claim}\n\
             redeem it at POST /v1/token with grant type urn:warrant:grant-type:task-claim and a DPoP proof",
            claim_expires.as_deref().unwrap_or("soon")
        ))?;
    }
    Ok(())
}

fn state(t: &Task) -> String {
    match t.end_reason {
        Some(reason) => format!("{} ({reason})", t.state),
        None => t.state.to_string(),
    }
}

fn task_list(tasks: &[Task], now: Timestamp) -> comfy_table::Table {
    let mut table = output::list(&["id", "state", "agent", "delegator", "expires", "purpose"]);
    for t in tasks {
        let expires = if t.is_live() {
            output::time_relative(t.expires_at, now)
        } else {
            "-".to_owned()
        };
        table.add_row(vec![
            t.id.to_string(),
            state(t),
            t.agent.to_string(),
            t.delegator.to_string(),
            expires,
            t.purpose.clone(),
        ]);
    }
    table
}

fn task_details(t: &Task, now: Timestamp) -> comfy_table::Table {
    let s = &t.scope;
    output::details(vec![
        ("id", t.id.to_string()),
        ("state", state(t)),
        ("agent", t.agent.to_string()),
        ("delegator", t.delegator.to_string()),
        ("purpose", t.purpose.clone()),
        ("ticket", output::or_dash(t.ticket.as_ref())),
        ("repos", output::joined(&s.repos)),
        ("branches", output::joined(&s.branches)),
        ("environments", output::joined(&s.environments)),
        ("actions", output::joined(&s.actions)),
        ("tools", output::joined(&s.tools)),
        ("secrets", output::joined(&s.secrets)),
        ("created", output::time(t.created_at)),
        ("expires", output::time_relative(t.expires_at, now)),
        ("ended", output::or_dash(t.ended_at.map(output::time))),
        ("end note", output::or_dash(t.end_note.as_ref())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(repos: &[&str]) -> ScopeArgs {
        ScopeArgs {
            repos: repos.iter().map(|s| s.to_string()).collect(),
            branches: vec![],
            environments: vec![],
            actions: vec![],
            tools: vec![],
            secrets: vec![],
        }
    }

    #[test]
    fn narrowing_replaces_only_the_lists_given() {
        let current = Scope {
            repos: vec!["acme/api".into(), "acme/web".into()],
            actions: vec!["repo.read".into()],
            ..Scope::default()
        };
        let narrowed = args(&["acme/api"]).replace_in(current);
        assert_eq!(narrowed.repos, vec!["acme/api".to_string()]);
        assert_eq!(narrowed.actions, vec!["repo.read".to_string()]);
        assert!(args(&[]).is_empty());
    }
}
