//! `warrant policy validate|test|pack|replay`: policy CI. `validate`,
//! `test` and `pack` read and write local files only; `replay` reads the
//! recorded decisions from a server's audit log (admin) and decides them
//! again, locally, under a candidate set.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;
use warrant_policy::{Engine, LoadError, cases};

use super::Context;
use crate::error::UserError;
use crate::output::{self, OutputFormat};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check every `*.cedar` file in DIR against the schema: parse errors,
    /// validation errors, missing or duplicate `@id`s
    Validate(ValidateArgs),
    /// Run the policy tests in DIR/tests/*.toml against the policies in DIR
    /// (without DIR: the default pack and its shipped tests)
    Test(TestArgs),
    /// Write the default pack (policies and tests) to a directory, as a
    /// starting point for your own
    Pack(PackArgs),
    /// Decide the recorded decisions again under the candidate policies in
    /// DIR and list every one whose answer would change (admin; reads the
    /// server's audit log)
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The candidate policy directory
    #[arg(long, value_name = "DIR")]
    policies: PathBuf,
    /// Only decisions at or after this time: an RFC 3339 timestamp
    /// (`2026-11-24T09:00:00Z`) or a duration ago (`24h`)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Exit with status 1 when any decision would change (for CI)
    #[arg(long)]
    fail_on_change: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The policy directory
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy directory [default: the embedded default pack]
    dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// Where to write the pack (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Overwrite files that already exist
    #[arg(long)]
    force: bool,
}

pub async fn run(ctx: &Context, cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Validate(a) => validate(ctx, &a.dir),
        PolicyCommand::Test(a) => test(ctx, a.dir.as_deref()),
        PolicyCommand::Pack(a) => pack(ctx, &a.out, a.force),
        PolicyCommand::Replay(a) => replay(ctx, a).await,
    }
}

/// Audit events per page when reading decisions.
const REPLAY_PAGE: u32 = 500;

fn since(raw: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(t) = raw.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = warrant_core::task::parse_duration(raw) {
        return now.checked_sub(d).map_err(|e| {
            UserError::new(format!("`--since {raw}` reaches too far back: {e}")).into()
        });
    }
    Err(
        UserError::new(format!("`--since` is `{raw}`: not a time or a duration"))
            .hint(
                "give an RFC 3339 time such as `2026-11-24T09:00:00Z` or a duration such as `24h`",
            )
            .into(),
    )
}

async fn replay(ctx: &Context, a: ReplayArgs) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<serde_json::Value>,
        next_after: Option<u64>,
    }
    let since = a
        .since
        .as_deref()
        .map(|raw| since(raw, jiff::Timestamp::now()))
        .transpose()?;
    let candidate = load(ctx, &a.policies)?;
    let client = ctx.client()?;
    let mut records = Vec::new();
    let mut unreadable = 0usize;
    let mut after = 0u64;
    loop {
        let query = [
            ("kind", "decision".to_owned()),
            ("after", after.to_string()),
            ("limit", REPLAY_PAGE.to_string()),
        ];
        let page: Page = client.get(&["v1", "audit"], &query).await?;
        for event in &page.events {
            let at = event["time"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if let (Some(since), Some(at)) = (since, at)
                && at < since
            {
                continue;
            }
            let seq = event["seq"].as_i64().unwrap_or(-1);
            let input = serde_json::from_value(event["data"]["input"].clone());
            let outcome = serde_json::from_value(event["data"]["outcome"].clone());
            match (input, outcome) {
                (Ok(input), Ok(outcome)) => records.push((seq, input, outcome)),
                _ => unreadable += 1,
            }
        }
        match page.next_after {
            Some(next) if next > after && !page.events.is_empty() => after = next,
            _ => break,
        }
    }
    let replayed = records.len();
    let changes = warrant_policy::replay(records, &candidate);
    match ctx.output {
        OutputFormat::Json => output::json(&json!({
            "replayed": replayed,
            "unreadable": unreadable,
            "candidate": candidate.fingerprint(),
            "changed": changes,
        }))?,
        OutputFormat::Table => {
            for c in &changes {
                output::text_line(&format!(
                    "seq {:>8}  {} {}/{}  run {}: {} ({}) -> {} ({}) [{}]",
                    c.seq,
                    c.action,
                    c.resource.kind,
                    c.resource.id,
                    c.run,
                    c.before.decision,
                    c.before.code,
                    c.after.decision,
                    c.after.code,
                    c.after.policies.join(", "),
                ))?;
            }
            output::text_line(&format!(
                "{replayed} decisions replayed under {}: {} would change{}",
                candidate.fingerprint(),
                changes.len(),
                if unreadable > 0 {
                    format!(" ({unreadable} recorded decisions could not be read)")
                } else {
                    String::new()
                }
            ))?;
        }
    }
    if a.fail_on_change && !changes.is_empty() {
        return Err(UserError::new(format!(
            "{} recorded decision{} would change under the candidate policies",
            changes.len(),
            if changes.len() == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(())
}

/// Prints load errors (one `file:line:col: message` each, or JSON) and
/// returns the error that ends the command.
fn load_failed(ctx: &Context, errors: &[LoadError]) -> anyhow::Error {
    if ctx.output == OutputFormat::Json {
        let _ = output::json(&json!({"ok": false, "errors": errors}));
    } else {
        for e in errors {
            eprintln!("{e}");
        }
    }
    let n = errors.len();
    UserError::new(format!(
        "the policy set is invalid: {n} error{}",
        if n == 1 { "" } else { "s" }
    ))
    .into()
}

fn load(ctx: &Context, dir: &Path) -> anyhow::Result<Engine> {
    Engine::load_dir(dir).map_err(|errors| load_failed(ctx, &errors))
}

fn validate(ctx: &Context, dir: &Path) -> anyhow::Result<()> {
    let engine = load(ctx, dir)?;
    let n = engine.policy_ids().len();
    match ctx.output {
        OutputFormat::Json => output::json(&json!({
            "ok": true,
            "policies": n,
            "policy_ids": engine.policy_ids(),
            "fingerprint": engine.fingerprint(),
        })),
        OutputFormat::Table => output::text_line(&format!(
            "ok: {n} policies (fingerprint {})",
            engine.fingerprint()
        )),
    }
}

fn test(ctx: &Context, dir: Option<&Path>) -> anyhow::Result<()> {
    let (engine, files) = match dir {
        Some(dir) => {
            let engine = load(ctx, dir)?;
            let files = cases::load_dir(dir).map_err(|errors| load_failed(ctx, &errors))?;
            if files.is_empty() {
                return Err(UserError::new(format!(
                    "no policy tests in `{}`",
                    dir.join("tests").display()
                ))
                .hint("write `*.toml` test files there; `warrant policy pack --out DIR` writes examples")
                .into());
            }
            (engine, files)
        }
        None => (
            Engine::default_pack(),
            cases::default_tests().map_err(|errors| load_failed(ctx, &errors))?,
        ),
    };
    let report = cases::run(&engine, &files);
    match ctx.output {
        OutputFormat::Json => output::json(&json!({
            "passed": report.passed(),
            "failed": report.failed(),
            "fingerprint": engine.fingerprint(),
            "results": report.results,
        }))?,
        OutputFormat::Table => output::text_line(report.render().trim_end())?,
    }
    if report.failed() > 0 {
        let n = report.failed();
        return Err(UserError::new(format!(
            "{n} policy test{} failed",
            if n == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(())
}

fn pack(ctx: &Context, out: &Path, force: bool) -> anyhow::Result<()> {
    let files: Vec<(PathBuf, &str)> = warrant_policy::DEFAULT_PACK
        .iter()
        .map(|(name, text)| (out.join(name), *text))
        .chain(
            warrant_policy::DEFAULT_TESTS
                .iter()
                .map(|(name, text)| (out.join("tests").join(name), *text)),
        )
        .collect();
    if !force && let Some((existing, _)) = files.iter().find(|(p, _)| p.exists()) {
        return Err(
            UserError::new(format!("`{}` already exists", existing.display()))
                .hint("pass --force to overwrite, or choose another --out directory")
                .into(),
        );
    }
    std::fs::create_dir_all(out.join("tests")).map_err(|e| {
        UserError::new(format!(
            "cannot create `{}`: {e}",
            out.join("tests").display()
        ))
    })?;
    for (path, text) in &files {
        std::fs::write(path, text)
            .map_err(|e| UserError::new(format!("cannot write `{}`: {e}", path.display())))?;
    }
    let written: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    match ctx.output {
        OutputFormat::Json => output::json(&json!({"written": written})),
        OutputFormat::Table => {
            for w in &written {
                output::text_line(&format!("wrote {w}"))?;
            }
            output::text_line(&format!(
                "next: edit the policies, then `warrant policy validate {0}` and `warrant policy test {0}`",
                out.display()
            ))
        }
    }
}
