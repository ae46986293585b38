//! The command line: global options and one module per subcommand.

use clap::{Args, Parser, Subcommand};
use reqwest::Url;

use crate::client::{Client, DEFAULT_ADDR, parse_addr};
use crate::credentials::{self, ApiToken, RawToken};
use crate::output::OutputFormat;

mod agent;
mod approvals;
mod attest;
mod audit;
mod bench;
mod exec;
mod git_credential;
mod hook;
mod hook_git;
mod keys;
mod kill;
mod kv;
mod lease;
mod login;
mod mcp_proxy;
mod policy;
mod revoke;
mod run;
mod serve;
mod task;
mod user;

pub use serve::LogFormat;

/// Warrant: a runtime access broker for AI coding agents.
#[derive(Debug, Parser)]
#[command(name = "warrant", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Output format [default: table on a terminal, json otherwise]
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        value_name = "FORMAT",
        help_heading = "Global options"
    )]
    pub output: Option<OutputFormat>,

    /// Warrant's address [default: the saved login's, else http://127.0.0.1:8180]
    #[arg(
        long,
        global = true,
        env = "WARRANT_ADDR",
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub addr: Option<String>,

    /// API token [default: the saved login's]
    #[arg(
        long,
        global = true,
        env = "WARRANT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Global options"
    )]
    pub token: Option<RawToken>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Warrant server
    Serve(serve::ServeArgs),
    /// Save an address and API token for the other commands
    Login(login::LoginArgs),
    /// Manage users (admin)
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage agents
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Create, inspect and end tasks
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Verify and export the audit log
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Revoke one run's tokens, or end a task as revoked (admin)
    Revoke(revoke::RevokeArgs),
    /// Kill switch: end every matching live task now and revoke its runs (admin)
    Kill(kill::KillArgs),
    /// Manage the token and checkpoint signing keys (admin)
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Validate and test policy directories, write the default pack
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// See, approve and deny the approval requests of agents' high-impact
    /// actions
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Measure audit append and verification speed, run-token issuance and
    /// policy decisions
    Bench(bench::BenchArgs),
    /// Verify approval attestations (signed DSSE envelopes), e.g. as a CI gate
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Store and reseal the static secrets of `kv` engines (admin)
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// List and revoke the downstream credentials Warrant issued (admin)
    #[command(subcommand)]
    Lease(lease::LeaseCommand),
    /// Run a command as an agent run of a task, with short-lived credentials
    /// in its environment, revoked when it exits
    Exec(exec::ExecArgs),
    /// Serve an MCP server of Warrant's gateway over stdio, for agents that
    /// only run stdio MCP servers (as the run of `warrant exec`, or of
    /// `--task`)
    McpProxy(mcp_proxy::McpProxyArgs),
    /// Run a coding agent as a run of a task with every door wired to
    /// Warrant: its hooks, its MCP servers (through the gateway) and git
    /// credentials; everything is revoked when it exits
    Run(run::RunArgs),
    /// Decide an agent's tool calls with Warrant: the hooks of Claude Code,
    /// Codex, Cursor and Copilot CLI (run by the agent, as the run of
    /// `warrant run` or `warrant exec`)
    #[command(subcommand)]
    Hook(hook::HookCommand),
    /// git's credential helper: a short-lived credential for the run's
    /// repository (set `credential.helper` to `warrant git-credential` and
    /// `credential.useHttpPath` to `true`)
    GitCredential(git_credential::GitCredentialArgs),
}

/// A command run by `warrant exec` exited with this non-zero code: pass it
/// through, say nothing more.
#[derive(Debug)]
pub struct ChildExit(pub i32);

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the command exited with status {}", self.0)
    }
}

impl std::error::Error for ChildExit {}

/// What every subcommand may need from the global options.
#[derive(Debug)]
pub struct Context {
    pub output: OutputFormat,
    addr: Option<String>,
    token: Option<RawToken>,
}

impl Context {
    /// The API address: `--addr`/`WARRANT_ADDR`, else the saved login's,
    /// else the default. A broken saved login is ignored here, so that
    /// `warrant login` can replace it.
    pub fn addr(&self) -> anyhow::Result<Url> {
        if let Some(addr) = &self.addr {
            return Ok(parse_addr(addr)?);
        }
        match credentials::load() {
            Ok(Some(saved)) => Ok(saved.addr),
            _ => Ok(parse_addr(DEFAULT_ADDR)?),
        }
    }

    /// A client for the API. The saved token is only sent to the address it
    /// was saved for, never to another server named with `--addr`.
    pub fn client(&self) -> anyhow::Result<Client> {
        let saved = match (&self.addr, &self.token) {
            (Some(_), Some(_)) => None,
            _ => credentials::load()?,
        };
        let addr = match (&self.addr, &saved) {
            (Some(addr), _) => parse_addr(addr)?,
            (None, Some(saved)) => saved.addr.clone(),
            (None, None) => parse_addr(DEFAULT_ADDR)?,
        };
        let token = match &self.token {
            Some(raw) => Some(ApiToken::parse(raw.expose())?),
            None => saved
                .filter(|saved| saved.addr == addr)
                .map(|saved| saved.token),
        };
        Client::new(addr, token)
    }

    /// The `--token`/`WARRANT_TOKEN` value, if given.
    pub fn token_flag(&self) -> Option<&str> {
        self.token.as_ref().map(RawToken::expose)
    }
}

/// Reads an API answer into its typed form, for tables.
fn decode<T: serde::de::DeserializeOwned>(
    client: &Client,
    value: &serde_json::Value,
) -> Result<T, crate::client::ClientError> {
    T::deserialize(value).map_err(|e| crate::client::ClientError::Unexpected {
        addr: client.addr().to_owned(),
        status: None,
        why: format!("the body is not the expected JSON: {e}"),
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context {
        output: OutputFormat::resolve(cli.global.output),
        addr: cli.global.addr,
        token: cli.global.token,
    };
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Login(args) => login::run(&ctx, args).await,
        Command::User(cmd) => user::run(&ctx, cmd).await,
        Command::Agent(cmd) => agent::run(&ctx, cmd).await,
        Command::Task(cmd) => task::run(&ctx, cmd).await,
        Command::Audit(cmd) => audit::run(&ctx, cmd).await,
        Command::Revoke(args) => revoke::run(&ctx, args).await,
        Command::Kill(args) => kill::run(&ctx, args).await,
        Command::Keys(cmd) => keys::run(&ctx, cmd).await,
        Command::Policy(cmd) => policy::run(&ctx, cmd).await,
        Command::Approvals(cmd) => approvals::run(&ctx, cmd).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Attest(cmd) => attest::run(&ctx, cmd).await,
        Command::Lease(cmd) => lease::run(&ctx, cmd).await,
        Command::Kv(cmd) => kv::run(&ctx, cmd).await,
        Command::Exec(args) => match exec::run(&ctx, args).await? {
            0 => Ok(()),
            code => Err(ChildExit(code).into()),
        },
        Command::McpProxy(args) => mcp_proxy::run(&ctx, args).await,
        Command::Run(args) => match run::run(&ctx, args).await? {
            0 => Ok(()),
            code => Err(ChildExit(code).into()),
        },
        Command::GitCredential(args) => git_credential::run(&ctx, args).await,
        Command::Hook(cmd) => match hook::run(&ctx, cmd).await? {
            0 => Ok(()),
            code => Err(ChildExit(code).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
