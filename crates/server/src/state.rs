//! What every handler and worker shares.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use warrant_core::{Clock, TtlBounds};
use warrant_store::Store;

use crate::issuer::Issuer;

/// How long one request may take, unless the config says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The application state: the store, the clock and the task limits.
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
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ttl: TtlBounds,
        issuer: Arc<Issuer>,
    ) -> Self {
        Self {
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
