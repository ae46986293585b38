//! What every handler and worker shares.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use warrant_core::{Clock, TtlBounds};
use warrant_store::Store;

use crate::entities::EntityCache;
use crate::issuer::Issuer;
use crate::policy::Policies;

/// How long one request may take, unless the config says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The application state: the store, the clock, the task limits, the token
/// issuer and the policies.
///
/// Time comes only from `clock`, so tests can drive expiry with a
/// `FakeClock` instead of sleeping.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub ttl: TtlBounds,
    /// A request still running after this long is abandoned with
    /// `503 timeout` (reading a slow body included).
    pub request_timeout: Duration,
    /// Signing key, issuer URL, DPoP policy and replay cache.
    pub issuer: Arc<Issuer>,
    /// Set to `true` when the server starts shutting down, so long-lived
    /// responses (the revocation stream) end instead of holding the
    /// graceful shutdown until its grace period runs out.
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// The live policy set (and shadow candidate) decisions use.
    pub policies: Arc<Policies>,
    /// Users and agents as decisions read them, briefly cached.
    pub entities: Arc<EntityCache>,
    /// Batches standalone audit events (decisions) into shared commits.
    pub audit: warrant_store::GroupCommitter,
    /// Approval webhooks (disabled unless configured).
    pub notifier: crate::notify::Notifier,
    /// The credential engines, by name.
    pub engines: Arc<crate::leases::Engines>,
    /// How lease revocations are retried.
    pub lease_settings: crate::leases::LeaseSettings,
    /// Held by the lease revocation pass running in this process.
    pub lease_pass: Arc<tokio::sync::Mutex<()>>,
    /// How many refusal events are written one by one before they are only
    /// counted (an unauthenticated client cannot flood the audit log).
    pub refusals: Arc<crate::refusals::RefusalBudget>,
    /// Live secrets handed to runs (memory only), for the MCP gateway's scan.
    pub issued: Arc<crate::mcp::IssuedValues>,
    /// Every MCP gateway session, by run (closed when the run or task ends).
    pub mcp_sessions: warrant_gateway::SessionRegistry,
    /// `[[mcp.servers]]`: the upstreams mounted at `/mcp/{name}`.
    pub mcp_servers: Arc<Vec<warrant_gateway::Upstream>>,
}

/// Most events one group commit takes.
const AUDIT_BATCH: usize = 256;

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ttl: TtlBounds,
        issuer: Arc<Issuer>,
    ) -> Self {
        // A test state gets a random context key (all zeros only if the
        // system RNG fails, which `serve` would have refused to start on);
        // `serve` replaces the policies with the configured ones and the
        // data directory's key.
        let context_key = warrant_crypto::random_bytes::<32>().unwrap_or([0u8; 32]);
        Self {
            audit: warrant_store::GroupCommitter::new(store.clone(), AUDIT_BATCH),
            policies: Arc::new(Policies::default_pack(context_key)),
            entities: Arc::new(EntityCache::default()),
            notifier: crate::notify::Notifier::disabled(),
            engines: Arc::new(crate::leases::Engines::default()),
            lease_settings: crate::leases::LeaseSettings::default(),
            lease_pass: Arc::new(tokio::sync::Mutex::new(())),
            issued: Arc::new(crate::mcp::IssuedValues::default()),
            mcp_sessions: warrant_gateway::SessionRegistry::default(),
            mcp_servers: Arc::new(Vec::new()),
            refusals: Arc::new(crate::refusals::RefusalBudget::new(
                crate::refusals::DEFAULT_PER_SECOND,
            )),
            store,
            clock,
            ttl,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            issuer,
            shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Now, at the precision the store keeps (microseconds), so a value
    /// returned on creation equals the one read back later.
    pub fn now(&self) -> Timestamp {
        to_store_precision(self.clock.now())
    }
}

/// Truncates to whole microseconds.
pub fn to_store_precision(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(t.as_microsecond()).unwrap_or(t)
}
