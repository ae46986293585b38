//! One upstream, served to agents: the per-session handler factory and the
//! streamable-HTTP service the server mounts at `/mcp/{server}`.

use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use crate::config::Upstream;
use crate::registry::SessionRegistry;
use crate::session::{SessionHandler, Shared};
use crate::warden::Caller;

/// HTTP-side limits of the agent-facing service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Largest JSON-RPC request body accepted from an agent; larger ones get
    /// HTTP 413 and are not forwarded.
    pub max_request_bytes: usize,
    /// A session idle this long is closed (and its upstream with it).
    pub idle_timeout: Duration,
    /// `Host` values accepted (DNS-rebinding guard). Empty keeps rmcp's
    /// loopback-only default; set it to the public host names when listening
    /// beyond loopback.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            max_request_bytes: 4 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30 * 60),
            allowed_hosts: Vec::new(),
        }
    }
}

/// The rmcp streamable-HTTP service type [`Gateway::streamable_service`]
/// returns: a `tower::Service<http::Request<B>>` that axum mounts with
/// `Router::nest_service` or `route_service`.
pub type GatewayService = StreamableHttpService<SessionHandler, LocalSessionManager>;

/// One configured upstream, served to any number of agent sessions.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    options: ServiceOptions,
}

impl Gateway {
    pub fn new(upstream: Upstream, registry: SessionRegistry, options: ServiceOptions) -> Self {
        let mut sessions = LocalSessionManager::default();
        sessions.session_config.keep_alive = Some(options.idle_timeout);
        Self {
            shared: Arc::new(Shared {
                upstream,
                registry,
                http_sessions: Arc::new(sessions),
            }),
            options,
        }
    }

    pub fn name(&self) -> &str {
        self.shared.upstream.name.as_str()
    }

    pub fn upstream(&self) -> &Upstream {
        &self.shared.upstream
    }

    /// An unbound session handler: `initialize` binds it to the [`Caller`]
    /// found in the request's extensions (put there by the server's
    /// authentication layer).
    pub fn handler(&self) -> SessionHandler {
        SessionHandler::new(self.shared.clone(), None)
    }

    /// A session handler for one caller, for transports without HTTP
    /// requests (stdio, in-process).
    pub fn handler_for(&self, caller: Caller) -> SessionHandler {
        SessionHandler::new(self.shared.clone(), Some(caller))
    }

    /// The agent-facing streamable-HTTP service: one session (and one
    /// upstream) per `initialize`, sessions kept in memory.
    ///
    /// Every request must carry a [`Caller`] in its `http::Request`
    /// extensions; a request without one is refused with a JSON-RPC error
    /// and nothing is forwarded.
    pub fn streamable_service(&self) -> GatewayService {
        let mut config = StreamableHttpServerConfig::default()
            .with_max_request_body_bytes(self.options.max_request_bytes);
        if !self.options.allowed_hosts.is_empty() {
            config = config.with_allowed_hosts(self.options.allowed_hosts.clone());
        }
        let gateway = self.clone();
        StreamableHttpService::new(
            move || Ok(gateway.handler()),
            self.shared.http_sessions.clone(),
            config,
        )
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("server", &self.name())
            .finish_non_exhaustive()
    }
}
