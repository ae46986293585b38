//! `warrant hook claude-code|codex|cursor|copilot`: the agents' tool-call
//! hooks (see [`crate::hooks`] and docs/agents.md); and `warrant hook
//! git-pre-receive`, a git server's hook ([`super::hook_git`]).
//!
//! Run by the agent before each tool call, under the `warrant run` or
//! `warrant exec` of the agent's task (the per-run socket in
//! `WARRANT_RUN_SOCKET`). The exit code is the one the agent's protocol
//! reads: 0 with the answer on stdout, or 2 (Claude Code, Codex) when no
//! decision could be made — never 1, which agents read as a hook that
//! merely failed.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::Context;
use crate::hooks::{self, Agent, Options};

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Claude Code's PreToolUse command hook
    ClaudeCode(HookArgs),
    /// OpenAI Codex CLI's PreToolUse command hook
    Codex(HookArgs),
    /// Cursor's beforeShellExecution, beforeMCPExecution and beforeReadFile
    /// hooks
    Cursor(HookArgs),
    /// GitHub Copilot CLI's preToolUse hook
    Copilot(HookArgs),
    /// A git server's pre-receive hook: every ref a push updates is decided
    /// by Warrant (install it as `hooks/pre-receive` of the served repositories)
    GitPreReceive(super::hook_git::Args),
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// The repository the agent works in [default: the `origin` of the git
    /// clone it works in, else the task's only repository]
    #[arg(long, env = "WARRANT_REPO", value_name = "OWNER/NAME")]
    repo: Option<String>,
    /// An MCP server the agent reaches through Warrant's gateway (`warrant
    /// mcp-proxy SERVER`), which decides its calls itself; repeat, or
    /// separate with commas
    #[arg(
        long = "gateway-server",
        env = "WARRANT_GATEWAY_SERVERS",
        value_delimiter = ',',
        value_name = "SERVER"
    )]
    gateway_servers: Vec<String>,
    /// Wait this long (e.g. `45s`) for a human to decide a required approval
    /// before denying; keep it below the agent's hook timeout
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_wait)]
    wait_approval: Duration,
}

fn parse_wait(raw: &str) -> Result<Duration, String> {
    let d = warrant_core::task::parse_duration(raw).map_err(|e| e.to_string())?;
    Duration::try_from(d)
        .ok()
        .filter(|d| *d <= Duration::from_secs(3600))
        .ok_or_else(|| format!("`{raw}` is not between 0s and 1h"))
}

/// Runs the hook; the exit code for the agent (or git).
pub async fn run(ctx: &Context, cmd: HookCommand) -> anyhow::Result<i32> {
    let (agent, args) = match cmd {
        HookCommand::ClaudeCode(a) => (Agent::ClaudeCode, a),
        HookCommand::Codex(a) => (Agent::Codex, a),
        HookCommand::Cursor(a) => (Agent::Cursor, a),
        HookCommand::Copilot(a) => (Agent::Copilot, a),
        HookCommand::GitPreReceive(args) => return super::hook_git::run(ctx, args).await,
    };
    let options = Options {
        repo: args.repo,
        gateway_servers: args
            .gateway_servers
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        wait_approval: args.wait_approval,
    };
    let reply = hooks::handle_stdin(agent, &options).await;
    if let Some(err) = &reply.stderr {
        eprintln!("warrant hook: {err}");
    }
    if let Some(out) = &reply.stdout {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        // Nothing else can be done when the agent closed our stdout: the
        // exit code still says what happened.
        let _ = writeln!(stdout, "{out}");
        let _ = stdout.flush();
    }
    Ok(reply.code)
}
