//! `warrant revoke --run ID | --task ID` (admin): revoke one run's tokens,
//! or end a task as `revoked` (revoking all of its runs).

use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use warrant_core::TaskId;

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["run", "task"])))]
pub struct RevokeArgs {
    /// Revoke this run's tokens; its task stays live
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
    /// End this task as `revoked`, revoking every run of it
    #[arg(long, value_name = "TASK_ID")]
    task: Option<TaskId>,
}

pub async fn run(ctx: &Context, args: RevokeArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let (answer, line): (Value, String) = match (args.run, args.task) {
        (Some(run), _) => {
            let id = run.to_string();
            let answer = client
                .post(&["v1", "runs", &id, "revoke"], &json!({}))
                .await?;
            (answer, format!("revoked run {id}"))
        }
        (None, Some(task)) => {
            let id = task.to_string();
            let answer = client
                .post(&["v1", "tasks", &id, "revoke"], &json!({}))
                .await?;
            (
                answer,
                format!("ended task {id} as revoked; its runs are revoked"),
            )
        }
        // Clap's required group rules this out.
        (None, None) => anyhow::bail!("give `--run` or `--task`"),
    };
    if ctx.output == OutputFormat::Json {
        return output::json(&answer);
    }
    output::text_line(&line)
}
