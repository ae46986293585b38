//! `warrant keys rotate` (admin): the server generates a new signing key
//! and signs with it from now on; the retired key stays in the JWKS until
//! every token it signed has expired.

use clap::Subcommand;
use serde_json::{Value, json};

use super::Context;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new key the signing key; the old one verifies until its tokens expire
    Rotate,
}

pub async fn run(ctx: &Context, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate => rotate(ctx).await,
    }
}

async fn rotate(ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let answer: Value = client.post(&["v1", "keys", "rotate"], &json!({})).await?;
    if ctx.output == OutputFormat::Json {
        return output::json(&answer);
    }
    let field = |name: &str| answer[name].as_str().unwrap_or("?").to_owned();
    output::text_line(&format!(
        "signing with key {}; key {} stays published until {}",
        field("kid"),
        field("retired_kid"),
        field("retired_published_until"),
    ))
}
