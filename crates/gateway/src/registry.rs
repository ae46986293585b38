//! Every open gateway session, by run: so that revoking a run or ending its
//! task closes its sessions at once, whatever upstream they use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::session::SessionState;

/// Shared by every [`Gateway`](crate::Gateway) of a server; cheap to clone.
#[derive(Clone, Default)]
pub struct SessionRegistry {
    runs: Arc<Mutex<HashMap<String, Vec<Weak<SessionState>>>>>,
}

/// One open session, as [`SessionRegistry::sessions`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub server: String,
    /// The streamable-HTTP session id, once the agent has used it.
    pub session_id: Option<String>,
    /// The stdio upstream's process id (also its process group id).
    pub upstream_pid: Option<u32>,
}

impl SessionRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Weak<SessionState>>>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn register(&self, run_id: &str, state: &Arc<SessionState>) {
        let mut runs = self.runs();
        // Forget sessions that ended on their own.
        runs.retain(|_, sessions| {
            sessions.retain(|s| s.strong_count() > 0);
            !sessions.is_empty()
        });
        runs.entry(run_id.to_owned())
            .or_default()
            .push(Arc::downgrade(state));
    }

    fn live_sessions(&self, run_id: &str) -> Vec<Arc<SessionState>> {
        self.runs()
            .get(run_id)
            .map(|v| v.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// The open sessions of a run.
    pub fn sessions(&self, run_id: &str) -> Vec<SessionSummary> {
        self.live_sessions(run_id)
            .iter()
            .filter(|s| !s.is_closed())
            .map(|s| SessionSummary {
                server: s.server().to_owned(),
                session_id: s.session_id(),
                upstream_pid: s.upstream_pid(),
            })
            .collect()
    }

    /// Close every session of a run now: stdio upstreams are killed, HTTP
    /// upstream sessions ended, and the agent's sessions end (its next
    /// request gets HTTP 404). Returns how many were open.
    pub async fn close_run(&self, run_id: &str) -> usize {
        let sessions: Vec<Arc<SessionState>> = self
            .runs()
            .remove(run_id)
            .map(|v| v.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        let open = sessions.iter().filter(|s| !s.is_closed()).count();
        futures::future::join_all(sessions.iter().map(|s| s.close())).await;
        if open > 0 {
            tracing::info!(run = run_id, sessions = open, "mcp sessions closed");
        }
        open
    }

    /// Close every session of every run (server shutdown).
    pub async fn close_all(&self) -> usize {
        let runs: Vec<String> = self.runs().keys().cloned().collect();
        let mut closed = 0;
        for run in runs {
            closed += self.close_run(&run).await;
        }
        closed
    }
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry")
            .field("runs", &self.runs().len())
            .finish()
    }
}
