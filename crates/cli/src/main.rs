//! `warrant`: the one binary. Parses the command line, sets up logging and
//! the TLS crypto provider, runs one subcommand and turns its error into a
//! message, a hint and an exit code.
//!
//! Everything else lives in `command/` (one file per subcommand), `client.rs`
//! (the HTTP API), `output.rs` (tables and JSON), `run_session.rs` (a run
//! held by this process: its key and token) and `run_socket.rs` (the
//! per-run socket that lets helpers act as a run without its key).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

mod client;
mod command;
mod credentials;
mod error;
mod hooks;
mod output;
mod run_session;
mod run_socket;

use command::{Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    // One process-wide provider for rustls (reqwest, sqlx): without it rustls
    // panics at first use when feature unification leaves it ambiguous. It
    // fails only if a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    match command::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => match err.downcast_ref::<command::ChildExit>() {
            Some(exit) => ExitCode::from(u8::try_from(exit.0).unwrap_or(1)),
            None => error::report(&err),
        },
    }
}

fn init_tracing(cli: &Cli) {
    let (format, default_filter) = match &cli.command {
        Command::Serve(args) => (args.log_format, "info"),
        // sqlx warns about slow statements, which a long `audit verify`
        // has by design.
        _ => (LogFormat::Text, "warn,sqlx=error"),
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignored if a subscriber is already set: logging is best effort.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
