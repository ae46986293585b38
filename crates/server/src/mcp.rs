//! The MCP gateway mounted at `/mcp/{server}` (crate `warrant-gateway`):
//! the agent's run token (DPoP) authenticates every HTTP request, and a
//! [`RunWarden`] answers the gateway's questions from Warrant's decisions,
//! leases and store — every `tools/call` is an audited `mcp.call`
//! decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde_json::{Value, json};
use warrant_audit::NewEvent;
use warrant_gateway::{Verdict, Warden};
use warrant_policy::Decision;
use warrant_store::{DecisionWrite, LeaseState};

use crate::routes::decisions::{DecisionRequest, decide_request};
use crate::run_auth::RunCaller;
use crate::state::AppState;

/// Secrets Warrant handed to runs and still live, kept in memory only (they
/// are never stored), so the gateway can find them in tool traffic.
#[derive(Debug, Default)]
pub struct IssuedValues {
    by_run: Mutex<HashMap<uuid::Uuid, Vec<(uuid::Uuid, SecretString)>>>,
}

impl IssuedValues {
    pub fn add(
        &self,
        run: uuid::Uuid,
        lease: uuid::Uuid,
        values: impl IntoIterator<Item = SecretString>,
    ) {
        let mut map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(run).or_default();
        entry.extend(values.into_iter().map(|v| (lease, v)));
    }

    pub fn forget_lease(&self, lease: uuid::Uuid) {
        let mut map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        for values in map.values_mut() {
            values.retain(|(l, _)| *l != lease);
        }
        map.retain(|_, v| !v.is_empty());
    }

    fn of_run(&self, run: uuid::Uuid) -> Vec<(String, SecretString)> {
        let map = self.by_run.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&run)
            .map(|v| v.iter().map(|(l, s)| (l.to_string(), s.clone())).collect())
            .unwrap_or_default()
    }
}

/// The gateway's view of one agent run.
pub struct RunWarden {
    state: AppState,
    caller: RunCaller,
}

#[async_trait]
impl Warden for RunWarden {
    async fn decide_call(&self, server: &str, tool: &str, arguments: Option<&Value>) -> Verdict {
        let mut context = json!({"tool": format!("{server}/{tool}")});
        if let Some(args) = arguments {
            context["arguments"] = Value::String(args.to_string());
        }
        let request = DecisionRequest {
            action: "mcp.call".into(),
            resource: warrant_policy::ResourceRef {
                kind: "Tool".into(),
                id: format!("{server}/{tool}"),
            },
            context: Some(context),
        };
        match decide_request(&self.state, &self.caller, request).await {
            Ok(d) => match d.decision {
                Decision::Allow => Verdict::Allow,
                Decision::Deny => Verdict::Deny {
                    reasons: d.reasons,
                    code: d.code.to_owned(),
                },
                Decision::ApprovalRequired => Verdict::ApprovalRequired {
                    approval_id: d.approval_id.unwrap_or_default(),
                    reasons: d.reasons,
                },
            },
            // Fail closed: no decision, no call.
            Err(e) => Verdict::Deny {
                reasons: vec![format!("Warrant could not decide: {e}")],
                code: "unavailable".into(),
            },
        }
    }

    async fn issued_values(&self) -> Vec<(String, SecretString)> {
        self.state.issued.of_run(self.caller.run.id)
    }

    async fn leaked(&self, id: &str, server: &str, tool: &str, place: &str) {
        let event = NewEvent {
            time: self.state.now(),
            kind: "mcp.leak".to_owned(),
            actor: self.caller.token.claims().sub.clone(),
            subject: format!("run:{}", self.caller.run.id),
            task_id: Some(self.caller.task.id.to_string()),
            data: json!({"server": server, "tool": tool, "place": place, "lease_id": id}),
        };
        if let Err(e) = self.state.store.append_audit(vec![event]).await {
            tracing::error!(error = %e, "cannot record a credential leak");
        }
        tracing::warn!(
            server,
            tool,
            place,
            lease = id,
            "an issued credential crossed the MCP gateway: revoking it"
        );
        if let Ok(lease) = uuid::Uuid::try_parse(id) {
            crate::leases::revoke_now(&self.state, lease, "leaked", "system:gateway").await;
        }
    }

    async fn tainted(&self, server: &str, tool: &str) {
        let now = self.state.now();
        let event = NewEvent {
            time: now,
            kind: "run.tainted".to_owned(),
            actor: "system:gateway".to_owned(),
            subject: format!("run:{}", self.caller.run.id),
            task_id: Some(self.caller.task.id.to_string()),
            data: json!({"server": server, "tool": tool}),
        };
        let marks = ["tainted".to_owned()];
        if let Err(e) = self
            .state
            .store
            .record_decision(
                &DecisionWrite {
                    run_id: self.caller.run.id,
                    task_id: self.caller.task.id,
                    marks: &marks,
                    approval: None,
                    consume: None,
                    at: now,
                },
                event,
            )
            .await
        {
            tracing::error!(error = %e, "cannot mark the run tainted");
        }
    }

    async fn live(&self) -> bool {
        let now = self.state.now();
        let run = self.state.store.get_run(self.caller.run.id).await;
        let task = self.state.store.get_task(self.caller.task.id).await;
        matches!(run, Ok(Some(r)) if r.is_live_at(now))
            && matches!(task, Ok(Some(t)) if t.is_live() && t.expires_at > now)
    }
}

/// Authenticates every `/mcp/...` request with the run token (DPoP) and
/// hands the gateway the run's warden.
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match RunCaller::from_request_parts(&mut parts, &state).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let run_id = caller.run.id.to_string();
    let warden = Arc::new(RunWarden {
        state: state.clone(),
        caller,
    });
    parts
        .extensions
        .insert(warrant_gateway::Caller::new(run_id, warden));
    next.run(Request::from_parts(parts, body)).await
}

/// Closes the MCP sessions of every run of `task` that is no longer live
/// (the task ended, or runs were revoked): their next request fails.
pub async fn close_task(state: &AppState, task: warrant_core::TaskId) {
    let now = state.now();
    if let Ok(runs) = state.store.task_runs(task).await {
        for run in runs.iter().filter(|r| !r.is_live_at(now)) {
            state.mcp_sessions.close_run(&run.id.to_string()).await;
        }
    }
}

/// Whether a lease state means its secret is still live.
pub fn lease_live(state: LeaseState) -> bool {
    matches!(state, LeaseState::Issuing | LeaseState::Active)
}
