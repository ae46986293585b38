//! `warrant login`: checks an API token against the server and saves it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use clap::Args;
use serde_json::Value;
use warrant_core::User;

use super::{Context, decode};
use crate::client::Client;
use crate::credentials::{self, ApiToken};
use crate::error::UserError;
use crate::output::{self, OutputFormat};

#[derive(Debug, Args)]
#[command(
    after_help = "The token comes from --token-file, else --token or WARRANT_TOKEN, \
                        else standard input."
)]
pub struct LoginArgs {
    /// Read the API token from this file, e.g. `<data-dir>/admin.token`
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

pub async fn run(ctx: &Context, args: LoginArgs) -> anyhow::Result<()> {
    let addr = ctx.addr()?;
    let token = match (&args.token_file, ctx.token_flag()) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                UserError::new(format!("cannot read `{}`: {e}", path.display()))
                    .hint("pass the file `warrant serve` wrote, e.g. `./warrant-data/admin.token`")
            })?;
            ApiToken::parse(&text)?
        }
        (None, Some(raw)) => ApiToken::parse(raw)?,
        (None, None) => ApiToken::parse(&read_stdin()?)?,
    };
    let client = Client::new(addr.clone(), Some(token.clone()))?;
    let me: Value = client.get(&["v1", "users", "me"], &[]).await?;
    let user: User = decode(&client, &me)?;
    let path = credentials::save(&addr, &token)?;
    match ctx.output {
        OutputFormat::Json => output::json(&me),
        OutputFormat::Table => output::text_line(&format!(
            "logged in to {} as `{}`{}\nsaved in {}",
            client.addr(),
            user.name,
            if user.admin { " (admin)" } else { "" },
            path.display()
        )),
    }
}

fn read_stdin() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "API token: ");
        let _ = err.flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line)
}
