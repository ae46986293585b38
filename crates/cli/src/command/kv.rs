//! `warrant kv put|list|rekey` (admin): the static secrets of a `kv`
//! engine, sealed in Warrant's store and released only as leases after an
//! allowing decision.

use std::io::Read as _;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{Value, json};

use super::Context;
use crate::error::UserError;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Store (or replace) a secret; the value is read from a file or stdin,
    /// never from the command line
    Put(PutArgs),
    /// List an engine's secrets (names and key ids, never values)
    List(EngineArg),
    /// Reseal every secret of an engine under its current master key
    Rekey(EngineArg),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["from_file", "from_stdin"])))]
pub struct PutArgs {
    /// The `kv` engine
    engine: String,
    /// The secret's name
    name: String,
    /// Read the value from this file (one trailing newline is dropped)
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Read the value from standard input
    #[arg(long)]
    from_stdin: bool,
}

#[derive(Debug, Args)]
pub struct EngineArg {
    /// The `kv` engine
    engine: String,
}

pub async fn run(ctx: &Context, cmd: KvCommand) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let answer: Value = match cmd {
        KvCommand::Put(a) => {
            let mut value = match &a.from_file {
                Some(path) => std::fs::read_to_string(path).map_err(|e| {
                    UserError::new(format!("cannot read `{}`: {e}", path.display()))
                })?,
                None => {
                    let mut v = String::new();
                    std::io::stdin().read_to_string(&mut v)?;
                    v
                }
            };
            if value.ends_with('\n') {
                value.pop();
            }
            client
                .put(
                    &["v1", "engines", &a.engine, "secrets", &a.name],
                    &json!({"value": value}),
                )
                .await?
        }
        KvCommand::List(a) => {
            client
                .get(&["v1", "engines", &a.engine, "secrets"], &[])
                .await?
        }
        KvCommand::Rekey(a) => {
            client
                .post(&["v1", "engines", &a.engine, "rekey"], &json!({}))
                .await?
        }
    };
    if ctx.output == OutputFormat::Json {
        return output::json(&answer);
    }
    output::text_line(&serde_json::to_string_pretty(&answer)?)
}
