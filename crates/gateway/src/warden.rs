//! What the gateway asks Warrant, per agent session: the seam between the
//! enforcement point (this crate) and the decision engine, leases and audit
//! log (the server).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

/// Warrant's answer for one `mcp.call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny {
        reasons: Vec<String>,
        code: String,
    },
    ApprovalRequired {
        approval_id: String,
        reasons: Vec<String>,
    },
}

/// Credentials for one upstream, resolved by the server for one run before
/// the upstream starts: environment variables for a stdio server, headers
/// for a streamable-HTTP one.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    pub env: BTreeMap<String, SecretString>,
    pub headers: BTreeMap<String, SecretString>,
    /// The leases taken for this session: handed back to
    /// [`Warden::release`] when the session ends, however it ends.
    pub leases: Vec<String>,
}

/// Why a session could not be opened (shown to the agent as a JSON-RPC
/// error: no secrets in it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LaunchError(pub String);

/// What the gateway asks Warrant for each session. The server implements
/// it over its decision engine, leases and audit log; one `Warden` per
/// agent session (it knows the run).
///
/// Every method is called on the request path: an implementation that
/// cannot reach its store should fail closed (`Deny`, `live() == false`).
#[async_trait]
pub trait Warden: Send + Sync {
    /// Decide `mcp.call` on `Tool::"<server>/<tool>"`, with the tool
    /// arguments in context. `None` means listing: would a call be allowed?
    /// Such a probe must change nothing (no approval opened, no history
    /// marked). Resources and prompts are decided as the tools `resources`
    /// and `prompts` (see docs/mcp-gateway.md).
    async fn decide_call(
        &self,
        server: &str,
        tool: &str,
        arguments: Option<&serde_json::Value>,
    ) -> Verdict;

    /// Values Warrant issued that must never reach the agent (live
    /// credentials, sealed secrets released to this run, and the launch
    /// credentials of this upstream), each with the lease or secret id to
    /// report.
    async fn issued_values(&self) -> Vec<(String, SecretString)>;

    /// A leak was found: value `id`, `place` is `"result"` or `"arguments"`.
    /// The server records it and revokes the value.
    async fn leaked(&self, id: &str, server: &str, tool: &str, place: &str);

    /// The tool fetched outside content: the run is tainted from now on.
    async fn tainted(&self, server: &str, tool: &str);

    /// Whether the run may still act (its task and run not ended): checked
    /// before every request.
    async fn live(&self) -> bool;

    /// Credentials for `server`, leased for this run; called once per
    /// session, before the upstream starts. The default gives none.
    async fn launch(&self, server: &str) -> Result<Launch, LaunchError> {
        let _ = server;
        Ok(Launch::default())
    }

    /// The session that [`Warden::launch`] leased `leases` for has ended
    /// (closed by the agent, idle, run ended, upstream failed or never
    /// started): revoke them. Called once per session with leases.
    async fn release(&self, server: &str, leases: Vec<String>) {
        let _ = (server, leases);
    }
}

/// The authenticated caller of one HTTP request, put into the request's
/// extensions by the server's authentication layer before the request
/// reaches [`crate::streamable_service`].
///
/// The gateway binds a session to the caller's run at `initialize` and
/// refuses later requests of that session from any other run.
#[derive(Clone)]
pub struct Caller {
    run_id: String,
    warden: Arc<dyn Warden>,
}

impl Caller {
    pub fn new(run_id: impl Into<String>, warden: Arc<dyn Warden>) -> Self {
        Self {
            run_id: run_id.into(),
            warden,
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn warden(&self) -> &Arc<dyn Warden> {
        &self.warden
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}
