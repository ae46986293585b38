//! `warrant kill --task ID | --agent NAME | --user NAME | --all` (admin):
//! the kill switch. Every matching live task ends at once as `killed`, and
//! every run of it is revoked.

use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use warrant_core::TaskId;

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["task", "agent", "user", "all"])))]
pub struct KillArgs {
    /// Kill one task
    #[arg(long, value_name = "TASK_ID")]
    task: Option<TaskId>,
    /// Kill every live task of this agent
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// Kill every live task this user delegated
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Kill every live task
    #[arg(long)]
    all: bool,
}

pub async fn run(ctx: &Context, args: KillArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let body = match args {
        KillArgs { task: Some(t), .. } => json!({ "task": t.to_string() }),
        KillArgs { agent: Some(a), .. } => json!({ "agent": a }),
        KillArgs { user: Some(u), .. } => json!({ "user": u }),
        _ => json!({ "all": true }),
    };
    let answer: Value = client.post(&["v1", "kill"], &body).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&answer);
    }
    let ended = answer["ended"].as_array().map_or(0, Vec::len);
    output::text_line(&format!(
        "killed {ended} task{}; their runs are revoked",
        if ended == 1 { "" } else { "s" }
    ))
}
