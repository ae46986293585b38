//! `warrant run --task ID [--claim FILE] [--lease ...] [--agent KIND] -- AGENT...`
//!
//! `warrant exec` for coding agents: attests as a run of the task (key in
//! this process only), takes the leases, serves the per-run socket, and
//! starts the agent with every door wired to Warrant:
//!
//! - **hooks**: the agent's pre-tool hook configuration runs `warrant hook
//!   <agent>` (Claude Code, Codex, Cursor, Copilot; see docs/agents.md);
//! - **MCP**: an MCP configuration naming `warrant mcp-proxy SERVER` for every
//!   server of the gateway the run's scope can use (`GET /v1/mcp/servers`);
//! - **git**: `credential.helper` is `warrant git-credential` (with
//!   `credential.useHttpPath`), set through `GIT_CONFIG_COUNT` so no file of
//!   the user's changes, and any helper configured before is cleared for the
//!   child (its own stored credentials are not offered to Warrant's hosts).
//!
//! The generated files live in the socket's private directory (0700) and go
//! with it; `WARRANT_RUN_DIR` names it. When the agent exits, the run ends
//! and everything it held is revoked, as with `warrant exec`.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::Context;
use super::exec::{self, ExecArgs, Started};
use crate::error::UserError;
use crate::run_socket::RUN_SOCKET_ENV;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which agent's configuration to wire [default: from the program's
    /// name: `claude`, `codex`, `cursor-agent`, `copilot`; else none]
    #[arg(long, value_enum, default_value_t = AgentKind::Auto)]
    agent: AgentKind,
    #[command(flatten)]
    exec: ExecArgs,
}

/// The agents `warrant run` knows how to wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentKind {
    /// Decide from the program's file name
    Auto,
    /// Claude Code (`claude`)
    ClaudeCode,
    /// OpenAI Codex CLI (`codex`)
    Codex,
    /// Cursor's CLI agent (`cursor-agent`)
    Cursor,
    /// GitHub Copilot CLI (`copilot`)
    Copilot,
    /// Only the environment, git and the generic files; no agent flags
    None,
}

impl AgentKind {
    fn resolve(self, program: &str) -> Self {
        if self != Self::Auto {
            return self;
        }
        let name = Path::new(program)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(program);
        match name {
            "claude" | "claude.exe" => Self::ClaudeCode,
            "codex" => Self::Codex,
            "cursor-agent" => Self::Cursor,
            "copilot" => Self::Copilot,
            _ => Self::None,
        }
    }
}

/// What the child gets besides the run's socket: files written, flags added
/// to its command line and environment variables.
#[derive(Debug, Default)]
struct Wiring {
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

pub async fn run(ctx: &Context, args: RunArgs) -> anyhow::Result<i32> {
    let (program, rest) = args
        .exec
        .command
        .split_first()
        .context("no agent command given after `--`")?;
    let kind = args.agent.resolve(program);
    let warrant = std::env::current_exe()
        .context("cannot find the warrant binary to point the agent's hooks at")?;
    let started = exec::start(ctx, &args.exec).await?;
    let wiring = match wire(&started, &warrant, kind).await {
        Ok(w) => w,
        Err(e) => {
            started.abandon().await;
            return Err(e);
        }
    };
    eprintln!(
        "warrant: wired {} (hooks, MCP, git) in {}",
        match kind {
            AgentKind::ClaudeCode => "Claude Code",
            AgentKind::Codex => "Codex",
            AgentKind::Cursor => "Cursor",
            AgentKind::Copilot => "Copilot",
            AgentKind::Auto | AgentKind::None => "the command",
        },
        run_dir(&started).display()
    );
    // Agent flags go right after the program, before the user's arguments.
    let mut argv = wiring.args;
    argv.extend(rest.iter().cloned());
    exec::supervise(started, program, &argv, wiring.env).await
}

fn run_dir(started: &Started) -> &Path {
    started
        .socket
        .path()
        .parent()
        .unwrap_or_else(|| Path::new("/"))
}

async fn wire(started: &Started, warrant: &Path, kind: AgentKind) -> anyhow::Result<Wiring> {
    let dir = run_dir(started).to_owned();
    let socket = started.socket.path().display().to_string();
    let base = started.run.base().to_owned();
    let exe = warrant.display().to_string();
    let mut wiring = Wiring::default();
    wiring
        .env
        .insert("WARRANT_RUN_DIR".into(), dir.display().to_string());

    // git: clear inherited helpers for the child, then ours.
    git_config(
        &mut wiring.env,
        &[
            ("credential.helper", String::new()),
            (
                "credential.helper",
                format!("!{} git-credential", shell_quote(&exe)),
            ),
            ("credential.useHttpPath", "true".into()),
        ],
    )?;

    // MCP: the servers this run may use, each through the stdio shim.
    let listed = started
        .run
        .call(reqwest::Method::GET, "/v1/mcp/servers", None)
        .await
        .context("cannot list the run's MCP servers")?;
    let mut servers = serde_json::Map::new();
    for s in listed["servers"].as_array().into_iter().flatten() {
        let Some(name) = s["name"].as_str() else {
            continue;
        };
        servers.insert(
            name.to_owned(),
            json!({
                "command": exe,
                "args": ["mcp-proxy", name],
                // Clients that filter the environment of their servers
                // still hand these on.
                "env": {RUN_SOCKET_ENV: socket, "WARRANT_ADDR": base},
            }),
        );
    }
    let mcp_json = dir.join("mcp.json");
    write_private(&mcp_json, &json!({ "mcpServers": servers }))?;
    wiring
        .env
        .insert("WARRANT_MCP_CONFIG".into(), mcp_json.display().to_string());
    // The hooks leave calls to these servers to the gateway, which decides
    // them with their arguments (no double decision, no approval used up
    // twice).
    let names: Vec<&str> = servers.keys().map(String::as_str).collect();
    wiring
        .env
        .insert("WARRANT_GATEWAY_SERVERS".into(), names.join(","));

    // Hooks: every agent's file is written (a wrapper script may start any
    // of them); flags are added for the one being started.
    let hook = |agent: &str| format!("{} hook {agent}", shell_quote(&exe));
    let claude = dir.join("claude-settings.json");
    write_private(
        &claude,
        &json!({
            "hooks": {
                "PreToolUse": [
                    {"matcher": "*", "hooks": [{"type": "command", "command": hook("claude-code")}]}
                ]
            }
        }),
    )?;
    wiring.env.insert(
        "WARRANT_CLAUDE_SETTINGS".into(),
        claude.display().to_string(),
    );
    match kind {
        AgentKind::ClaudeCode => wiring.args.extend([
            "--settings".to_owned(),
            claude.display().to_string(),
            "--mcp-config".to_owned(),
            mcp_json.display().to_string(),
        ]),
        // Codex reads its hooks from `~/.codex/hooks.json` (installed once,
        // docs/agents.md: the command is the same for every run); its MCP
        // servers get a reduced environment, so each is declared here with
        // the run's socket.
        AgentKind::Codex => {
            for name in servers.keys() {
                let table = format!(
                    "mcp_servers.{name}={{command={}, args=[\"mcp-proxy\", {}], env={{{RUN_SOCKET_ENV}={}, WARRANT_ADDR={}}}}}",
                    toml_string(&exe),
                    toml_string(name),
                    toml_string(&socket),
                    toml_string(&base)
                );
                wiring.args.extend(["-c".to_owned(), table]);
            }
        }
        // Cursor and Copilot CLI read hooks and MCP servers from their
        // config files only (installed once, docs/agents.md); the hooks and
        // the shim find this run through the environment.
        AgentKind::Cursor | AgentKind::Copilot | AgentKind::Auto | AgentKind::None => {}
    }
    Ok(wiring)
}

/// Adds `GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n` entries after any the
/// environment already has (git reads them as command-line `-c` options).
fn git_config(
    env: &mut BTreeMap<String, String>,
    entries: &[(&str, String)],
) -> anyhow::Result<()> {
    let first: usize = match std::env::var("GIT_CONFIG_COUNT") {
        Ok(n) if !n.trim().is_empty() => n.trim().parse().map_err(|_| {
            UserError::new(format!("GIT_CONFIG_COUNT `{n}` is not a number"))
                .hint("unset it or fix it before `warrant run`")
        })?,
        _ => 0,
    };
    for (i, (key, value)) in entries.iter().enumerate() {
        env.insert(format!("GIT_CONFIG_KEY_{}", first + i), (*key).to_owned());
        env.insert(format!("GIT_CONFIG_VALUE_{}", first + i), value.clone());
    }
    env.insert(
        "GIT_CONFIG_COUNT".into(),
        (first + entries.len()).to_string(),
    );
    Ok(())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// One POSIX shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@%,".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes `value` as JSON to `path`, readable by the user only.
fn write_private(path: &PathBuf, value: &Value) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    file.write_all(&text)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_recognised_by_program_name() {
        assert_eq!(
            AgentKind::Auto.resolve("/usr/local/bin/claude"),
            AgentKind::ClaudeCode
        );
        assert_eq!(AgentKind::Auto.resolve("codex"), AgentKind::Codex);
        assert_eq!(AgentKind::Auto.resolve("cursor-agent"), AgentKind::Cursor);
        assert_eq!(AgentKind::Auto.resolve("copilot"), AgentKind::Copilot);
        assert_eq!(AgentKind::Auto.resolve("sh"), AgentKind::None);
        assert_eq!(AgentKind::Codex.resolve("sh"), AgentKind::Codex);
    }

    #[test]
    fn shell_words_survive_spaces_and_quotes() {
        assert_eq!(shell_quote("/usr/bin/warrant"), "/usr/bin/warrant");
        assert_eq!(
            shell_quote("/opt/my tools/warrant"),
            "'/opt/my tools/warrant'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn codex_overrides_are_toml() {
        let table: toml::Value = toml::from_str(&format!(
            "x = {{command={}, args=[\"mcp-proxy\", {}]}}",
            toml_string("/opt/my \"tools\"/warrant"),
            toml_string("github")
        ))
        .unwrap();
        assert_eq!(
            table["x"]["command"].as_str(),
            Some("/opt/my \"tools\"/warrant")
        );
    }
}
