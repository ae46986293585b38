//! Warrant's HTTP API, its background workers and the wiring of
//! `warrant serve`.
//!
//! This crate owns everything HTTP: routes, authentication of human callers
//! (bearer API tokens), the one mapping from errors to status codes and
//! stable problem codes ([`error`]), and start-up/shut-down. It must never
//! speak SQL (that is `warrant-store`) or decide policy; it validates input
//! with `warrant-core`'s types before anything is written, so bad input
//! changes nothing.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use warrant_core::{Clock, SystemClock};
use warrant_crypto::SigningKey;
use warrant_store::{Store, StoreError};

pub mod approvals;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod entities;
pub mod error;
pub mod events;
pub mod extract;
pub mod issuer;
pub mod leases;
pub mod mcp;
pub mod notify;
pub mod policy;
pub mod refusals;
pub mod routes;
pub mod run_auth;
pub mod state;
pub mod workers;

pub use bootstrap::BootstrapError;
pub use config::{Config, ConfigError};
pub use error::ApiError;
pub use issuer::Issuer;
pub use routes::router;
pub use state::AppState;
pub use workers::{WorkerSettings, Workers};

/// How `warrant serve` was asked to run: flags and `WARRANT_*` variables.
/// Each `Some` beats the config file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Default `./warrant-data`.
    pub data_dir: Option<PathBuf>,
    /// Default `127.0.0.1:8180`; port 0 picks a free port.
    pub listen: Option<SocketAddr>,
    /// Default `sqlite://<data_dir>/warrant.db`.
    pub store_url: Option<String>,
    /// A TOML config file.
    pub config_file: Option<PathBuf>,
}

/// Handed to `on_ready` once the server accepts connections.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The address actually bound (the real port when 0 was asked for).
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// The issuer URL (`public_url`, or `http://<addr>` by default).
    pub public_url: String,
    /// The admin token file, only when it was created by this start.
    pub admin_token_file: Option<PathBuf>,
}

/// Why `warrant serve` could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error(
        "cannot open the store `{url}`: {source}: check --store (or `store` in the config file) and that the database is running"
    )]
    Store { url: String, source: StoreError },
    #[error(
        "cannot listen on `{addr}`: the address is already in use: stop the other process or choose another address with --listen"
    )]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on `{addr}`: {source}: choose another address with --listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
    #[error(
        "the policy set does not load: {}: fix the files (`warrant policy validate DIR` shows the same) or remove `policy.dir` to serve the default pack",
        .0.join("; ")
    )]
    Policy(Vec<String>),
    #[error("cannot record the server's {what} in the audit log: {source}")]
    Audit {
        what: &'static str,
        source: StoreError,
    },
}

/// Runs `warrant serve` until `shutdown` completes: loads the config, opens
/// the store, bootstraps, serves the API with the workers, then shuts down
/// gracefully (in-flight requests get `shutdown_grace` to finish, workers
/// stop, a `server.stopped` event and a final signed checkpoint are
/// written, the store is closed).
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Ready) + Send,
) -> Result<(), ServerError> {
    let config = Config::load(&opts)?;
    bootstrap::prepare_data_dir(&config.data_dir)?;
    let listener = bind(config.listen).await?;
    let store = warrant_store::open(&config.store_url)
        .await
        .map_err(|source| ServerError::Store {
            url: redact_url(&config.store_url),
            source,
        })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let result = run(&config, listener, store.clone(), clock, shutdown, on_ready).await;
    store.close().await;
    result
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServerError::AddrInUse { addr }
        } else {
            ServerError::Bind { addr, source }
        }
    })
}

async fn run(
    config: &Config,
    listener: TcpListener,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Ready) + Send,
) -> Result<(), ServerError> {
    let boot = bootstrap::run(&*store, &*clock, &config.data_dir, &config.agents).await?;
    // Before serving anything: a policy set that does not load stops the
    // start (there is no previous set to fall back to).
    let context_key = bootstrap::load_or_generate_context_key(&config.data_dir)?;
    let policies = policy::Policies::load(config.policy.clone(), context_key)
        .map_err(|errors| ServerError::Policy(errors.iter().map(ToString::to_string).collect()))?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    store
        .append_audit(vec![events::server_started(
            store.backend(),
            &addr.to_string(),
            boot.key.kid(),
            clock.now(),
        )])
        .await
        .map_err(|source| ServerError::Audit {
            what: "start",
            source,
        })?;

    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let trust_domain = warrant_token::TrustDomain::parse(&config.trust_domain)
        .map_err(|e| ServerError::Config(ConfigError::Options(format!("`trust_domain`: {e}"))))?;
    let mut issuer = Issuer::new(boot.key.clone(), &public_url, trust_domain);
    issuer.keys_dir = Some(config.data_dir.join(bootstrap::KEYS_DIR));
    issuer.max_delegation_depth = config.max_delegation_depth;
    for conf in &config.issuers {
        let name = conf.issuer.clone();
        let outside = warrant_identity::Issuer::new(conf.clone()).map_err(|e| {
            ServerError::Config(ConfigError::Options(format!(
                "issuer `{name}`: cannot build its HTTP client: {e}"
            )))
        })?;
        match conf.role {
            warrant_identity::IssuerRole::Workload(_) => {
                issuer.workload_issuers.insert(name, outside);
            }
            warrant_identity::IssuerRole::Human(_) => {
                issuer.human_issuers.insert(name, outside);
            }
        }
    }
    let issuer = Arc::new(issuer);
    let mut state = AppState::new(store.clone(), clock.clone(), config.ttl, issuer);
    state.request_timeout = config.request_timeout;
    state.policies = Arc::new(policies);
    state.lease_settings = config.leases;
    state.mcp_servers = Arc::new(config.mcp_servers.clone());
    state.refusals = Arc::new(refusals::RefusalBudget::new(
        config.refusal_events_per_second,
    ));
    let engine_ctx = warrant_engines::EngineContext {
        data_dir: config.data_dir.clone(),
        signing_key: state.issuer.key(),
        issuer: state.issuer.issuer().to_owned(),
    };
    state.engines = Arc::new(
        leases::build_engines(&config.engines, &engine_ctx, &store)
            .map_err(|e| ServerError::Config(ConfigError::Options(format!("`engines`: {e}"))))?,
    );
    // Every upstream credential names an engine and role that exist: a typo
    // stops the server here rather than failing every session later.
    for upstream in state.mcp_servers.iter() {
        for c in &upstream.credentials {
            let engine = state.engines.get(&c.engine).ok_or_else(|| {
                ServerError::Config(ConfigError::Options(format!(
                    "`mcp.servers`: `{}` takes a credential from engine `{}`, which is not configured",
                    upstream.name, c.engine
                )))
            })?;
            engine.max_ttl(&c.role).map_err(|e| {
                ServerError::Config(ConfigError::Options(format!(
                    "`mcp.servers`: `{}` credential `{}/{}`: {e}",
                    upstream.name, c.engine, c.role
                )))
            })?;
        }
    }
    state.notifier =
        notify::Notifier::new(config.webhooks.clone(), notify::RetrySettings::default()).map_err(
            |e| ServerError::Config(ConfigError::Options(format!("`approvals.webhooks`: {e}"))),
        )?;
    let reload_on_hangup = tokio::spawn(reload_on_sighup(state.clone()));
    let workers = Workers::spawn(
        state.clone(),
        WorkerSettings {
            reaper_interval: config.reaper_interval,
            checkpoint_every: config.checkpoint_every,
            checkpoint_interval: config.checkpoint_interval,
        },
    );
    on_ready(&Ready {
        addr,
        data_dir: config.data_dir.clone(),
        store: store.backend(),
        public_url: state.issuer.issuer().to_owned(),
        admin_token_file: boot.admin_token_file.clone(),
    });
    tracing::info!(%addr, store = store.backend(), "warrant is serving");

    let streams = state.shutdown.clone();
    let shutdown = async move {
        shutdown.await;
        streams.send_replace(true);
    };
    let served = serve_until(
        listener,
        router(state.clone()),
        shutdown,
        config.shutdown_grace,
    )
    .await;
    tracing::info!("shutting down");
    reload_on_hangup.abort();
    state.mcp_sessions.close_all().await;
    workers.stop().await;
    refusals::flush(&state).await;
    // Deliveries still queued get a moment; the approvals themselves are in
    // the store whatever happens to them.
    state
        .notifier
        .clone()
        .shutdown(Duration::from_secs(5))
        .await;
    // The key of the moment: a rotation while serving replaced boot's.
    let key = state.issuer.key();
    let stopped = finish(&*store, &*clock, &key).await;
    served.map_err(ServerError::Serve)?;
    stopped
}

/// Reloads the policy sets on every SIGHUP (as `POST /v1/policies/reload`
/// does): a set that does not load is refused and logged, the previous
/// one keeps serving.
async fn reload_on_sighup(state: AppState) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: reload policies with `POST /v1/policies/reload`");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading policies");
        if let Err(e) = routes::policies::reload_as(&state, "system:sighup").await {
            tracing::warn!(error = %e, "policy reload on SIGHUP refused");
        }
    }
}

/// Serves `app` until `shutdown` completes, then lets in-flight requests
/// finish for at most `grace`: a client that stalls (or a request that
/// hangs) must not keep the server from stopping, nor cost the run its
/// `server.stopped` event and final checkpoint.
async fn serve_until(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (signalled, on_signal) = oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(grace = ?grace, "shutdown requested: finishing in-flight requests");
        let _ = signalled.send(());
    };
    // Answers written in pieces (the MCP gateway's SSE: a priming event,
    // then the message) must not wait for the client's delayed ACK (~40 ms
    // a call without this; `warrant bench mcp`).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let graceful = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .into_future();
    let deadline = async move {
        if on_signal.await.is_err() {
            // The server ended before any signal: nothing to time.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = graceful => served,
        () = deadline => {
            // Dropping the server stops waiting for its connections; their
            // requests are bounded by the request timeout and end with the
            // process.
            tracing::warn!(grace = ?grace, "requests were still in flight when the shutdown grace period ended: stopping anyway");
            Ok(())
        }
    }
}

/// The last writes of a run: `server.stopped`, then a checkpoint that
/// covers it, so the whole chain ends anchored by a signature.
async fn finish(store: &dyn Store, clock: &dyn Clock, key: &SigningKey) -> Result<(), ServerError> {
    let stopped = store
        .append_audit(vec![events::server_stopped(clock.now())])
        .await
        .map_err(|source| ServerError::Audit {
            what: "stop",
            source,
        });
    let checkpoint = workers::checkpoint_now(store, clock, key).await;
    if let Err(e) = &checkpoint {
        tracing::error!(error = %e, "cannot sign the final audit checkpoint");
    }
    stopped?;
    checkpoint.map_err(|source| ServerError::Audit {
        what: "final checkpoint",
        source,
    })?;
    Ok(())
}

/// A store URL without its password, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // Query parameters may carry a password too.
    let path = match path.split_once('?') {
        Some((path, _)) => format!("{path}?..."),
        None => path.to_owned(),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => format!("{scheme}://{authority}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn store_urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://warrant:s3cret@127.0.0.1:5432/warrant"),
            "postgres://warrant:***@127.0.0.1:5432/warrant"
        );
        assert_eq!(
            redact_url("postgres://warrant@db/warrant"),
            "postgres://warrant@db/warrant"
        );
        assert_eq!(
            redact_url("sqlite://./d/warrant.db"),
            "sqlite://./d/warrant.db"
        );
        assert_eq!(
            redact_url("postgres://db/warrant?password=x"),
            "postgres://db/warrant?..."
        );
    }
}
