//! `warrant exec --task ID [--claim FILE] [--lease ENGINE/ROLE=ENV_VAR[,k=v...]]... -- CMD...`
//!
//! Attests as a run of the task (the one-time claim, a DPoP key generated
//! here and kept in memory only), obtains each lease, puts its secret in
//! the child's environment, runs the child, and when the child exits —
//! normally, with an error, or by a signal — revokes the leases and ends
//! the run. The exit code is the child's (128 + the signal number when a
//! signal ended it). The run token is refreshed in the background while the
//! child runs, so a long command can still end its run cleanly.
//!
//! While the child runs, the run is also served on a per-run socket
//! ([`crate::run_socket`]) named by `WARRANT_RUN_SOCKET` in the child's
//! environment (with `WARRANT_ADDR`), so helpers it starts, such as
//! `warrant mcp-proxy`, act as the run without ever holding its key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};

use super::Context;
use crate::error::UserError;
use crate::run_session::{RunSession, read_claim};
use crate::run_socket::{RUN_SOCKET_ENV, RunSocket};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The task to act for
    #[arg(long, value_name = "TASK_ID")]
    pub(crate) task: String,
    /// A file holding the task's one-time claim (`wcl_...`) [default: the
    /// `WARRANT_CLAIM` environment variable]
    #[arg(long, value_name = "FILE")]
    claim: Option<PathBuf>,
    /// A credential for the child: `ENGINE/ROLE=ENV_VAR`, optionally with
    /// engine parameters `,key=value` (e.g. `vault/ci=NPM_TOKEN,secret=npm-token`).
    /// The lease's main secret goes in ENV_VAR, any others in ENV_VAR_<NAME>
    #[arg(long = "lease", value_name = "ENGINE/ROLE=ENV_VAR")]
    leases: Vec<String>,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

/// One `--lease` argument.
struct LeaseSpec {
    engine: String,
    role: String,
    env: String,
    params: serde_json::Map<String, Value>,
}

fn parse_lease(raw: &str) -> Result<LeaseSpec, UserError> {
    let bad = || {
        UserError::new(format!(
            "`--lease {raw}` is not `ENGINE/ROLE=ENV_VAR[,key=value...]`"
        ))
        .hint("for example `--lease pg-main/readonly=DATABASE_URL`")
    };
    let mut parts = raw.split(',');
    let head = parts.next().ok_or_else(bad)?;
    let (path, env) = head.split_once('=').ok_or_else(bad)?;
    let (engine, role) = path.split_once('/').ok_or_else(bad)?;
    let env_ok = !env.is_empty()
        && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !env.starts_with(|c: char| c.is_ascii_digit());
    if engine.is_empty() || role.is_empty() || !env_ok {
        return Err(bad());
    }
    let mut params = serde_json::Map::new();
    for p in parts {
        let (k, v) = p.split_once('=').ok_or_else(bad)?;
        params.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(LeaseSpec {
        engine: engine.to_owned(),
        role: role.to_owned(),
        env: env.to_owned(),
        params,
    })
}

/// The lease's main secret: the one a program most likely wants.
fn main_secret(secrets: &serde_json::Map<String, Value>) -> Option<(&String, &str)> {
    for name in ["url", "token", "value", "certificate", "password"] {
        if let Some((k, Value::String(v))) = secrets.get_key_value(name) {
            return Some((k, v.as_str()));
        }
    }
    secrets.iter().find_map(|(k, v)| v.as_str().map(|s| (k, s)))
}

/// A run attested, its leases held and its socket served: everything a
/// child needs before it starts. [`supervise`] runs the child and ends it
/// all.
pub(crate) struct Started {
    pub(crate) run: Arc<RunSession>,
    pub(crate) socket: RunSocket,
    /// The leases' secrets, as environment variables for the child.
    pub(crate) env: BTreeMap<String, String>,
    held: Vec<String>,
}

impl Started {
    /// Gives everything back: the socket stops, the leases are revoked and
    /// the run ends (for a setup step that failed after [`start`]).
    pub(crate) async fn abandon(self) {
        self.socket.shutdown().await;
        self.run.finish(&self.held).await;
    }
}

pub async fn run(ctx: &Context, args: ExecArgs) -> anyhow::Result<i32> {
    let started = start(ctx, &args).await?;
    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after `--`")?;
    supervise(started, program, rest, BTreeMap::new()).await
}

/// Attests as a run of `args.task`, takes the leases (all or nothing) and
/// serves the run's socket.
pub(crate) async fn start(ctx: &Context, args: &ExecArgs) -> anyhow::Result<Started> {
    let specs: Vec<LeaseSpec> = args
        .leases
        .iter()
        .map(|l| parse_lease(l))
        .collect::<Result<_, _>>()?;
    let claim = read_claim(args.claim.as_ref())?;
    let run = Arc::new(RunSession::redeem(&ctx.addr()?, &args.task, &claim).await?);
    eprintln!(
        "warrant: run {} started for task {}",
        run.run_id(),
        args.task
    );

    // The leases, all or nothing: a failure revokes what was obtained.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut held: Vec<String> = Vec::new();
    for spec in &specs {
        let body = json!({"engine": spec.engine, "role": spec.role, "params": spec.params});
        match run
            .call(reqwest::Method::POST, "/v1/leases", Some(&body))
            .await
        {
            Ok(lease) => {
                held.push(lease["id"].as_str().unwrap_or_default().to_owned());
                let secrets = lease["secrets"].as_object().cloned().unwrap_or_default();
                if let Some((main, value)) = main_secret(&secrets) {
                    env.insert(spec.env.clone(), value.to_owned());
                    for (k, v) in &secrets {
                        if k != main
                            && let Some(v) = v.as_str()
                        {
                            env.insert(
                                format!("{}_{}", spec.env, k.to_ascii_uppercase()),
                                v.to_owned(),
                            );
                        }
                    }
                }
                eprintln!(
                    "warrant: lease {} ({}/{}) until {}",
                    lease["id"].as_str().unwrap_or("?"),
                    spec.engine,
                    spec.role,
                    lease["expires_at"].as_str().unwrap_or("?")
                );
            }
            Err(e) => {
                run.finish(&held).await;
                return Err(e);
            }
        }
    }

    // Helpers the child starts (`warrant mcp-proxy`, hooks) act as the run
    // through this socket; the key stays in this process.
    let socket = match RunSocket::serve(Arc::clone(&run)) {
        Ok(s) => s,
        Err(e) => {
            run.finish(&held).await;
            return Err(e);
        }
    };
    Ok(Started {
        run,
        socket,
        env,
        held,
    })
}

/// Runs `program` with `rest` as the run's child (the leases' secrets,
/// `extra` and the socket's address in its environment), passes SIGTERM and
/// SIGINT on, keeps the run token fresh while it runs, and when it exits
/// stops the socket, revokes the leases and ends the run. Returns the
/// child's exit code.
pub(crate) async fn supervise(
    started: Started,
    program: &str,
    rest: &[String],
    extra: BTreeMap<String, String>,
) -> anyhow::Result<i32> {
    let Started {
        run,
        socket,
        env,
        held,
    } = started;
    let mut child = tokio::process::Command::new(program);
    child
        .args(rest)
        .envs(&env)
        .envs(&extra)
        .env(RUN_SOCKET_ENV, socket.path())
        .env("WARRANT_ADDR", run.base())
        .env_remove("WARRANT_CLAIM");
    let status = match child.spawn() {
        Ok(mut child) => {
            let waited = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                let mut int =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
                loop {
                    tokio::select! {
                        s = child.wait() => return s,
                        _ = term.recv() => forward(&child, libc_signal::TERM),
                        _ = int.recv() => forward(&child, libc_signal::INT),
                    }
                }
            };
            // The run token stays fresh while the child runs.
            tokio::select! {
                s = waited => s,
                never = run.keep_fresh() => match never {},
            }
        }
        Err(e) => {
            socket.shutdown().await;
            run.finish(&held).await;
            return Err(UserError::new(format!("cannot start `{program}`: {e}")).into());
        }
    };
    socket.shutdown().await;
    run.finish(&held).await;
    let status = status.context("waiting for the command failed")?;
    Ok(exit_code(status))
}

/// Signal numbers, without a libc dependency.
mod libc_signal {
    pub const INT: i32 = 2;
    pub const TERM: i32 = 15;
}

/// Passes a signal on to the child (it decides how to end).
fn forward(child: &tokio::process::Child, signal: i32) {
    if let Some(pid) = child.id() {
        // `kill` the program: no unsafe code, no libc binding.
        let _ = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status();
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}
