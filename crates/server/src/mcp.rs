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
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use warrant_audit::NewEvent;
use warrant_gateway::{CredentialTarget, Launch, LaunchError, Verdict, Warden};
use warrant_policy::Decision;
use warrant_store::{DecisionWrite, LeaseState};

use crate::routes::decisions::{DecisionRequest, Purpose, decide_as};
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
            lift_arguments(args, &mut context);
        }
        let request = DecisionRequest {
            action: "mcp.call".into(),
            resource: warrant_policy::ResourceRef {
                kind: "Tool".into(),
                id: format!("{server}/{tool}"),
            },
            context: Some(context),
        };
        // Listing asks whether a call would be allowed: it opens no
        // approval and marks nothing.
        let purpose = if arguments.is_some() {
            Purpose::Act
        } else {
            Purpose::Probe
        };
        match decide_as(&self.state, &self.caller, request, purpose).await {
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

    /// Leases the upstream's `[[mcp.servers.credentials]]` for this session,
    /// all or nothing, once the run's scope names a tool of the server.
    async fn launch(&self, server: &str) -> Result<Launch, LaunchError> {
        let scope = crate::routes::decisions::held_scope(&self.caller);
        let prefix = format!("{server}/");
        if !scope.actions.iter().any(|a| a == "mcp.call")
            || !scope.tools.iter().any(|t| t.starts_with(&prefix))
        {
            return Err(LaunchError(format!(
                "the task's scope grants no tool of `{server}` (scope `tools` lists `{server}/<tool>` names)"
            )));
        }
        let Some(upstream) = self
            .state
            .mcp_servers
            .iter()
            .find(|u| u.name.as_str() == server)
        else {
            return Err(LaunchError(format!("`{server}` is not configured")));
        };
        let mut launch = Launch::default();
        for c in &upstream.credentials {
            let params = Value::Object(
                c.params
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            );
            let issued = crate::leases::issue_for(
                &self.state,
                &self.caller,
                crate::leases::LeaseFor::Upstream(server),
                &c.engine,
                &c.role,
                c.ttl.as_deref(),
                &params,
            )
            .await;
            let issued = match issued {
                Ok(i) => i,
                Err(e) => {
                    self.release(server, std::mem::take(&mut launch.leases))
                        .await;
                    return Err(LaunchError(format!(
                        "cannot lease its credential `{}/{}`: {e}",
                        c.engine, c.role
                    )));
                }
            };
            launch.leases.push(issued.lease.id.to_string());
            let secret = match &c.secret {
                Some(name) => issued.secrets.get(name),
                None => crate::leases::main_secret(&issued.secrets),
            };
            let Some(secret) = secret else {
                self.release(server, std::mem::take(&mut launch.leases))
                    .await;
                return Err(LaunchError(format!(
                    "the lease of `{}/{}` has no secret `{}`",
                    c.engine,
                    c.role,
                    c.secret.as_deref().unwrap_or("?")
                )));
            };
            let value = SecretString::from(c.render(secret.expose_secret()));
            match &c.target {
                CredentialTarget::Env(name) => launch.env.insert(name.clone(), value),
                CredentialTarget::Header(name) => launch.headers.insert(name.clone(), value),
            };
        }
        Ok(launch)
    }

    async fn release(&self, server: &str, leases: Vec<String>) {
        for id in leases {
            if let Ok(lease) = uuid::Uuid::try_parse(&id) {
                tracing::debug!(server, %lease, "mcp session ended: revoking its lease");
                crate::leases::revoke_now(&self.state, lease, "session_closed", "system:gateway")
                    .await;
            }
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

/// Well-known tool arguments, lifted into the decision context so policies
/// written for shells and files apply to tools too: a string `path`
/// (lexically normalised, so `dir/../etc` is decided as `etc`), `url` or
/// `uri`, and `command` or `cmd`. Everything stays in `arguments` as well.
fn lift_arguments(args: &Value, context: &mut Value) {
    for (field, v) in warrant_core::tool_args::lifted(args) {
        let v = if field == "path" {
            normalize_path(v)
        } else {
            v.to_owned()
        };
        context[field] = Value::String(v);
    }
}

/// `.` and `..` resolved without touching the file system (a tool's path
/// need not exist here); a `..` above the root stays at the root, a leading
/// `..` of a relative path is kept.
fn normalize_path(raw: &str) -> String {
    let absolute = raw.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&p) if p != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
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

/// `GET /v1/mcp/servers` (run token): the MCP servers this run can use —
/// those of which its scope names a tool — with their gateway URLs, so
/// `warrant run` can point an agent's MCP configuration at them.
pub async fn list_servers(State(state): State<AppState>, caller: RunCaller) -> axum::Json<Value> {
    let scope = crate::routes::decisions::held_scope(&caller);
    let may_call = scope.actions.iter().any(|a| a == "mcp.call");
    let base = state.issuer.issuer().trim_end_matches('/').to_owned();
    let servers: Vec<Value> = state
        .mcp_servers
        .iter()
        .filter_map(|u| {
            let prefix = format!("{}/", u.name);
            let tools: Vec<&str> = scope
                .tools
                .iter()
                .filter_map(|t| t.strip_prefix(&prefix))
                .collect();
            (may_call && !tools.is_empty()).then(|| {
                json!({"name": u.name.as_str(), "url": format!("{base}/mcp/{}", u.name), "tools": tools})
            })
        })
        .collect();
    axum::Json(json!({ "servers": servers }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_lexically() {
        for (raw, want) in [
            ("/srv/task/a.txt", "/srv/task/a.txt"),
            ("/srv/task/../other/s.txt", "/srv/other/s.txt"),
            ("/srv/task/./x//y", "/srv/task/x/y"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("a/../../b", "../b"),
            ("./", "."),
            ("/", "/"),
        ] {
            assert_eq!(normalize_path(raw), want, "{raw}");
        }
    }

    #[test]
    fn well_known_arguments_are_lifted() {
        let mut context = json!({});
        lift_arguments(
            &json!({"path": "/w/../etc/passwd", "uri": "https://x.test/", "cmd": "ls", "other": 1}),
            &mut context,
        );
        assert_eq!(
            context,
            json!({"path": "/etc/passwd", "url": "https://x.test/", "command": "ls"})
        );
        let mut context = json!({});
        lift_arguments(&json!({"path": 7, "command": ["ls"]}), &mut context);
        assert_eq!(context, json!({}));
    }
}
