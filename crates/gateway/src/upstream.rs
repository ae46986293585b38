//! One connection to an upstream MCP server, owned by one agent session:
//! a stdio child started for the session, or a streamable-HTTP client.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{Peer, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::{Upstream, UpstreamTransport, check_env_name, check_header_name};
use crate::warden::Launch;

/// Environment variables a stdio child inherits from Warrant: what programs
/// need to be found and run, nothing that could hold a secret.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "TMPDIR"];

#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("launch credentials: {0}")]
    Launch(String),
    #[error("the upstream did not complete the MCP handshake: {0}")]
    Handshake(String),
    #[error("the upstream did not answer the MCP handshake within {0:?}")]
    Timeout(Duration),
}

/// The stdio child, killed with its whole process group when dropped.
struct ChildGuard(Box<dyn ChildWrapper>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SIGKILL to the group (the program may have started its own
        // children, as `npx` does); Tokio reaps the dropped child.
        let _ = self.0.start_kill();
    }
}

pub(crate) struct Connection {
    peer: Peer<RoleClient>,
    service: RunningService<RoleClient, ClientConfig>,
    child: Option<ChildGuard>,
    pid: Option<u32>,
}

impl Connection {
    pub(crate) fn peer(&self) -> &Peer<RoleClient> {
        &self.peer
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Connect and complete the MCP handshake within the upstream's timeout.
    pub(crate) async fn open(upstream: &Upstream, launch: Launch) -> Result<Self, UpstreamError> {
        let client = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("warrant-gateway", env!("CARGO_PKG_VERSION")),
        );
        match &upstream.transport {
            UpstreamTransport::Stdio {
                program,
                args,
                env,
                cwd,
            } => {
                for key in launch.env.keys() {
                    check_env_name(key).map_err(UpstreamError::Launch)?;
                }
                let mut cmd = CommandWrap::with_new(program, |c| {
                    c.args(args).env_clear();
                    for key in INHERITED_ENV {
                        if let Some(v) = std::env::var_os(key) {
                            c.env(key, v);
                        }
                    }
                    c.envs(env);
                    for (k, v) in &launch.env {
                        c.env(k, v.expose_secret());
                    }
                    if let Some(dir) = cwd {
                        c.current_dir(dir);
                    }
                    c.stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped());
                });
                cmd.wrap(ProcessGroup::leader());
                let mut child = cmd.spawn().map_err(|source| UpstreamError::Spawn {
                    program: program.clone(),
                    source,
                })?;
                let pid = child.id();
                let stdin = child.stdin().take();
                let stdout = child.stdout().take();
                if let Some(stderr) = child.stderr().take() {
                    let server = upstream.name.as_str().to_owned();
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            tracing::debug!(server, line, "mcp upstream stderr");
                        }
                    });
                }
                let guard = ChildGuard(child);
                let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
                    return Err(UpstreamError::Spawn {
                        program: program.clone(),
                        source: std::io::Error::other("no stdio pipes"),
                    });
                };
                let transport = AsyncRwTransport::new_client(stdout, stdin)
                    .with_max_line_length(upstream.max_message_bytes);
                let service = handshake(client.serve(transport), upstream.startup_timeout).await?;
                Ok(Self {
                    peer: service.peer().clone(),
                    service,
                    child: Some(guard),
                    pid,
                })
            }
            UpstreamTransport::Http { url, headers } => {
                let mut custom = HashMap::new();
                for (k, v) in headers {
                    custom.insert(header_name(k)?, header_value(v, false)?);
                }
                for (k, v) in &launch.headers {
                    custom.insert(header_name(k)?, header_value(v.expose_secret(), true)?);
                }
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom)
                    .max_json_response_size(upstream.max_message_bytes)
                    .max_sse_event_size(upstream.max_message_bytes);
                let transport = StreamableHttpClientTransport::from_config(config);
                let service = handshake(client.serve(transport), upstream.startup_timeout).await?;
                Ok(Self {
                    peer: service.peer().clone(),
                    service,
                    child: None,
                    pid: None,
                })
            }
        }
    }

    /// Stop the upstream now: kill the stdio child and its group, and end
    /// the client (an HTTP upstream gets its session deleted).
    pub(crate) async fn close(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.0.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.0.wait()).await;
        }
        let _ = self
            .service
            .close_with_timeout(Duration::from_secs(5))
            .await;
    }
}

async fn handshake<F, E>(
    serve: F,
    timeout: Duration,
) -> Result<RunningService<RoleClient, ClientConfig>, UpstreamError>
where
    F: Future<Output = Result<RunningService<RoleClient, ClientConfig>, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(timeout, serve).await {
        Ok(Ok(service)) => Ok(service),
        Ok(Err(e)) => Err(UpstreamError::Handshake(e.to_string())),
        Err(_) => Err(UpstreamError::Timeout(timeout)),
    }
}

fn header_name(k: &str) -> Result<http::HeaderName, UpstreamError> {
    check_header_name(k).map_err(UpstreamError::Launch)?;
    http::HeaderName::try_from(k).map_err(|_| UpstreamError::Launch(format!("header `{k}`")))
}

fn header_value(v: &str, sensitive: bool) -> Result<http::HeaderValue, UpstreamError> {
    let mut value = http::HeaderValue::try_from(v)
        .map_err(|_| UpstreamError::Launch("a header value is not valid in HTTP".into()))?;
    value.set_sensitive(sensitive);
    Ok(value)
}
