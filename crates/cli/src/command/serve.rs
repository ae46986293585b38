//! `warrant serve`: runs the server until SIGTERM or SIGINT.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use warrant_server::{Ready, ServeOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for the signing key, the admin token and the SQLite store
    /// [default: ./warrant-data]
    #[arg(long, env = "WARRANT_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Address and port to listen on [default: 127.0.0.1:8180]
    #[arg(long, env = "WARRANT_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// TOML configuration file
    #[arg(long, env = "WARRANT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Store URL, `sqlite://PATH` or `postgres://...`
    /// [default: sqlite://<data-dir>/warrant.db]
    #[arg(
        long,
        env = "WARRANT_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    store: Option<String>,

    /// Format of the logs written to stderr
    #[arg(
        long,
        value_enum,
        env = "WARRANT_LOG_FORMAT",
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Registered before serving so a signal that arrives during start-up is
    // not lost.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let shutdown = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("received {name}: finishing requests in flight, then stopping");
    };
    let opts = ServeOptions {
        data_dir: args.data_dir,
        listen: args.listen,
        store_url: args.store,
        config_file: args.config,
    };
    // The server's messages are complete sentences with their causes and
    // fixes; printing its cause chain again would repeat them.
    warrant_server::serve(opts, shutdown, announce)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Tells the person who started the server where it is and, on first start,
/// how to log in. On stdout, flushed: tests and scripts wait for these lines.
fn announce(ready: &Ready) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not stop the server.
    let _ = writeln!(
        out,
        "warrant listening on http://{} (store: {})",
        ready.addr, ready.store
    );
    if let Some(path) = &ready.admin_token_file {
        let _ = writeln!(out, "admin token written to {}", path.display());
        let _ = writeln!(
            out,
            "log in with: warrant login --addr http://{} --token-file {}",
            reachable(ready.addr),
            shell_quote(path)
        );
    }
    let _ = out.flush();
}

/// An address a local client can connect to: the wildcard address becomes
/// loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Quotes a path for a POSIX shell when it needs it, so the printed command
/// can be pasted as it is.
fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    let plain = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@')
        });
    if plain {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_shown_as_loopback() {
        let a: SocketAddr = "0.0.0.0:8180".parse().unwrap();
        assert_eq!(reachable(a).to_string(), "127.0.0.1:8180");
        let a: SocketAddr = "[::]:8180".parse().unwrap();
        assert_eq!(reachable(a).to_string(), "[::1]:8180");
        let a: SocketAddr = "10.0.0.1:8180".parse().unwrap();
        assert_eq!(reachable(a), a);
    }

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(
            shell_quote(Path::new("./warrant-data/admin.token")),
            "./warrant-data/admin.token"
        );
        assert_eq!(shell_quote(Path::new("/my dir/a'b")), r"'/my dir/a'\''b'");
    }
}
