//! The lease manager: issuing downstream credentials through the engines
//! and making sure every one of them is revoked — when it expires, when its
//! task or run ends, when someone asks, and after a crash.
//!
//! Issuing: decide `credential.issue` (`secret.read` for a `kv` engine) on
//! `Secret::"<engine>/<role>"` (an
//! audited decision like any other), cap the lease at the role's `max_ttl`
//! and the task's end, let the engine name what it will create
//! (`prepare`), record the lease (`issuing`, with that handle) — only then
//! call the engine — and mark it `active`. If the engine fails, or the task
//! ended meanwhile, the lease is revoked at once: nothing half-created
//! stays behind.
//!
//! Revoking: the reaper asks the store for due leases every pass and asks
//! each engine to revoke; a failure is retried with exponential backoff and,
//! after `max_attempts`, the lease is `irrevocable` (an audit event and an
//! error log). Leases a crash left `issuing` are revoked on the first pass
//! after start-up.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use warrant_audit::NewEvent;
use warrant_engines::{Engine, EngineError, IssueRequest};
use warrant_store::{Lease, LeaseState, StoreError};

use crate::error::ApiError;
use crate::routes::decisions::{DecisionRequest, decide_request};
use crate::run_auth::RunCaller;
use crate::state::AppState;

/// How revocations are retried.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// Attempts before a lease is `irrevocable`.
    pub max_attempts: u32,
    /// The first retry waits this long, doubling each time.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// An `issuing` lease older than this was interrupted by a crash.
    pub stale_issuing: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            stale_issuing: Duration::from_secs(120),
        }
    }
}

/// The configured engines, by name.
#[derive(Debug, Default, Clone)]
pub struct Engines {
    pub by_name: std::collections::BTreeMap<String, Arc<dyn Engine>>,
    /// The SSH engines again, for their KRL and CA key.
    pub ssh: std::collections::BTreeMap<String, Arc<warrant_engines::ssh::SshEngine>>,
    /// The `kv` engines again, for their keyring (writing and resealing).
    pub kv: std::collections::BTreeMap<String, Arc<warrant_engines::kv::KvEngine>>,
}

impl Engines {
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Engine>> {
        self.by_name.get(name)
    }
}

/// A lease just issued, with its secrets (shown once).
pub struct IssuedLease {
    pub lease: Lease,
    pub secrets: std::collections::BTreeMap<String, secrecy::SecretString>,
}

fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::UnknownRole(role) => ApiError::RoleNotFound(role),
        EngineError::BadRequest(why) => ApiError::InvalidLeaseRequest(why),
        EngineError::Unavailable(why) => ApiError::EngineUnavailable(why),
        EngineError::Config(why) | EngineError::Internal(why) => ApiError::Internal(why),
    }
}

fn lease_event(time: Timestamp, kind: &str, actor: &str, lease: &Lease, data: Value) -> NewEvent {
    let mut data = data;
    if let Some(map) = data.as_object_mut() {
        map.insert("lease_id".into(), lease.id.to_string().into());
        map.insert("engine".into(), lease.engine.clone().into());
        map.insert("role".into(), lease.role.clone().into());
        map.insert("run_id".into(), lease.run_id.to_string().into());
    }
    NewEvent {
        time,
        kind: kind.to_owned(),
        actor: actor.to_owned(),
        subject: format!("lease:{}", lease.id),
        task_id: Some(lease.task_id.to_string()),
        data,
    }
}

/// The run's own lease: a decision, audited like every other. A static
/// secret is read (`secret.read`), every other engine mints a credential.
/// Returns the decision's audit sequence number.
async fn decide_lease(
    state: &AppState,
    caller: &RunCaller,
    kind: &str,
    engine_name: &str,
    role: &str,
) -> Result<u64, ApiError> {
    let action = if kind == "kv" {
        "secret.read"
    } else {
        "credential.issue"
    };
    let decided = decide_request(
        state,
        caller,
        DecisionRequest {
            action: action.into(),
            resource: warrant_policy::ResourceRef {
                kind: "Secret".into(),
                id: format!("{engine_name}/{role}"),
            },
            context: None,
        },
    )
    .await?;
    match decided.decision {
        warrant_policy::Decision::Allow => {}
        warrant_policy::Decision::ApprovalRequired => {
            return Err(ApiError::LeaseNeedsApproval(
                decided.approval_id.unwrap_or_default(),
            ));
        }
        warrant_policy::Decision::Deny => {
            return Err(ApiError::LeaseDenied(format!(
                "{} ({})",
                decided.reasons.join("; "),
                decided.code
            )));
        }
    }
    Ok(decided.audit_seq)
}

/// Who a lease is for: the run itself (decided by policy, the secret goes
/// to the agent), or an MCP upstream serving the run (the secret goes to the
/// upstream only; see docs/mcp-gateway.md).
#[derive(Debug, Clone, Copy)]
pub enum LeaseFor<'a> {
    Run,
    Upstream(&'a str),
}

/// Issues a lease of `engine`/`role` to the run `caller`.
pub async fn issue(
    state: &AppState,
    caller: &RunCaller,
    engine_name: &str,
    role: &str,
    ttl: Option<&str>,
    params: &Value,
) -> Result<IssuedLease, ApiError> {
    issue_for(state, caller, LeaseFor::Run, engine_name, role, ttl, params).await
}

/// Issues a lease of `engine`/`role` held by the run `caller`, for `who`.
///
/// A lease for the run is a `secret.read` / `credential.issue` decision
/// first. A lease for an upstream is not decided by policy: the operator
/// bound the credential to the upstream in the config, the agent never
/// receives it (the gateway scans for it), and every use of the upstream is
/// decided per tool call. It is still held by the run, audited
/// (`lease.requested` names the upstream) and revoked with the run.
pub async fn issue_for(
    state: &AppState,
    caller: &RunCaller,
    who: LeaseFor<'_>,
    engine_name: &str,
    role: &str,
    ttl: Option<&str>,
    params: &Value,
) -> Result<IssuedLease, ApiError> {
    let engine = state
        .engines
        .get(engine_name)
        .cloned()
        .ok_or_else(|| ApiError::EngineNotFound(engine_name.chars().take(64).collect()))?;
    let role_max = engine.max_ttl(role).map_err(engine_error)?;
    let (decision_seq, upstream) = match who {
        LeaseFor::Run => (
            Some(decide_lease(state, caller, engine.kind(), engine_name, role).await?),
            None,
        ),
        LeaseFor::Upstream(server) => (None, Some(format!("mcp:{server}"))),
    };

    let now = state.now();
    let wanted = match ttl {
        None => role_max,
        Some(raw) => {
            let d = warrant_core::task::parse_duration(raw)
                .map_err(|e| ApiError::InvalidLeaseRequest(format!("`ttl`: {e}")))?;
            if d < SignedDuration::from_secs(1) || d > role_max {
                return Err(ApiError::InvalidLeaseRequest(format!(
                    "`ttl` must be between 1s and the role's maximum of {}s",
                    role_max.as_secs()
                )));
            }
            d
        }
    };
    let expires_at = now
        .checked_add(wanted)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .min(caller.task.expires_at);
    let lease_id = uuid::Uuid::now_v7();
    let request = IssueRequest {
        lease_id,
        role,
        task_id: caller.task.id,
        run_id: caller.run.id,
        agent: caller.run.agent.as_str(),
        delegator: caller.task.delegator.as_str(),
        expires_at,
        params,
    };
    let handle = engine.prepare(&request).map_err(engine_error)?;
    let actor = caller.token.claims().sub.clone();
    let mut lease = Lease {
        id: lease_id,
        engine: engine_name.to_owned(),
        role: role.to_owned(),
        task_id: caller.task.id,
        run_id: caller.run.id,
        handle: handle.clone(),
        public: json!({}),
        state: LeaseState::Issuing,
        issued_at: now,
        expires_at,
        revoke_reason: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        revoked_at: None,
    };
    let recorded = lease_event(
        now,
        "lease.requested",
        &actor,
        &lease,
        json!({"handle": handle, "expires_at": expires_at, "decision_seq": decision_seq, "for": upstream}),
    );
    match state.store.create_lease(&lease, recorded).await {
        Ok(()) => {}
        Err(StoreError::InvalidState(_)) => {
            return Err(ApiError::TaskEnded(caller.task.id));
        }
        Err(e) => return Err(e.into()),
    }

    // Only now does the backend create anything.
    let issued = match engine.issue(&request, &handle).await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(lease = %lease_id, engine = engine_name, error = %e, "issuing a lease failed; revoking what it named");
            revoke_now(state, lease_id, "issue_failed", "system:leases").await;
            return Err(engine_error(e));
        }
    };
    if issued.handle != handle {
        lease.handle = issued.handle.clone();
    }
    let activated = lease_event(
        state.now(),
        "lease.issued",
        &actor,
        &lease,
        json!({"public": issued.public, "expires_at": issued.expires_at}),
    );
    match state
        .store
        .activate_lease(lease_id, &issued.public, issued.expires_at, activated)
        .await
    {
        Ok(l) => lease = l,
        Err(e) => {
            // The task or run ended while the engine worked (or the store
            // failed): the credential must not outlive this answer.
            revoke_now(state, lease_id, "issue_failed", "system:leases").await;
            return Err(match e {
                StoreError::InvalidState(_) => ApiError::TaskEnded(caller.task.id),
                other => other.into(),
            });
        }
    }
    tracing::info!(lease = %lease.id, engine = engine_name, role, "lease issued");
    state
        .issued
        .add(caller.run.id, lease.id, issued.secrets.values().cloned());
    Ok(IssuedLease {
        lease,
        secrets: issued.secrets,
    })
}

/// The secret of a lease a program most likely wants when only one is
/// passed on: `url`, `token`, `value`, `certificate`, `password`, else the
/// first.
pub fn main_secret(
    secrets: &std::collections::BTreeMap<String, secrecy::SecretString>,
) -> Option<&secrecy::SecretString> {
    ["url", "token", "value", "certificate", "password"]
        .iter()
        .find_map(|name| secrets.get(*name))
        .or_else(|| secrets.values().next())
}

/// Marks `id` for revocation (if it is not already) and tries once now;
/// the reaper retries failures. Never fails: problems are logged.
pub async fn revoke_now(state: &AppState, id: uuid::Uuid, reason: &str, actor: &str) {
    if let Ok(Some(lease)) = state.store.get_lease(id).await
        && matches!(lease.state, LeaseState::Issuing | LeaseState::Active)
    {
        let event = lease_event(
            state.now(),
            "lease.revoke_requested",
            actor,
            &lease,
            json!({"reason": reason}),
        );
        if let Err(e) = state
            .store
            .request_revoke(id, reason, state.now(), event)
            .await
        {
            tracing::warn!(lease = %id, error = %e, "cannot mark a lease for revocation");
        }
    }
    match state.store.get_lease(id).await {
        Ok(Some(lease)) if lease.state == LeaseState::Revoking => {
            attempt(state, lease, state.lease_settings).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(lease = %id, error = %e, "cannot read a lease to revoke it"),
    }
}

/// One revocation attempt of a `revoking` lease.
async fn attempt(state: &AppState, lease: Lease, settings: LeaseSettings) {
    let Some(engine) = state.engines.get(&lease.engine).cloned() else {
        let error = format!("engine `{}` is not configured", lease.engine);
        failed(state, &lease, &error, settings).await;
        return;
    };
    match engine.revoke(&lease.handle).await {
        Ok(()) => {
            let now = state.now();
            let event = lease_event(
                now,
                "lease.revoked",
                "system:leases",
                &lease,
                json!({"reason": lease.revoke_reason, "attempts": lease.attempts + 1}),
            );
            state.issued.forget_lease(lease.id);
            if let Err(e) = state.store.finish_revoke(lease.id, now, event).await {
                tracing::warn!(lease = %lease.id, error = %e, "revoked a lease but cannot record it; it will be revoked again");
            } else {
                tracing::info!(lease = %lease.id, engine = %lease.engine, reason = ?lease.revoke_reason, "lease revoked");
            }
        }
        Err(e) => failed(state, &lease, &e.to_string(), settings).await,
    }
}

async fn failed(state: &AppState, lease: &Lease, error: &str, settings: LeaseSettings) {
    let attempts = lease.attempts + 1;
    let give_up = attempts >= settings.max_attempts;
    let wait = settings
        .backoff
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(20)))
        .min(settings.max_backoff);
    let now = state.now();
    let next = SignedDuration::try_from(wait)
        .ok()
        .and_then(|w| now.checked_add(w).ok())
        .unwrap_or(now);
    let event = give_up.then(|| {
        lease_event(
            now,
            "lease.irrevocable",
            "system:leases",
            lease,
            json!({"attempts": attempts, "error": error, "reason": lease.revoke_reason}),
        )
    });
    if give_up {
        tracing::error!(lease = %lease.id, engine = %lease.engine, attempts, error, "lease is IRREVOCABLE: revoke it by hand, then `warrant lease revoke`");
    } else {
        tracing::warn!(lease = %lease.id, engine = %lease.engine, attempts, error, "lease revocation failed; retrying");
    }
    if let Err(e) = state
        .store
        .fail_revoke(lease.id, error, next, give_up, event)
        .await
    {
        tracing::warn!(lease = %lease.id, error = %e, "cannot record a failed revocation");
    }
}

/// The reaper's pass: revokes every due lease once. Returns how many it
/// revoked.
pub async fn revoke_due(state: &AppState) -> Result<usize, StoreError> {
    // One pass at a time in this process: two passes would pick the same
    // due leases and revoke them twice.
    let _one = state.lease_pass.lock().await;
    let settings = state.lease_settings;
    let now = state.now();
    let stale = SignedDuration::try_from(settings.stale_issuing)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .unwrap_or(now);
    // Batch after batch until nothing is due (a task holding thousands of
    // leases is revoked in one pass, not 100 per reaper tick); a batch in
    // which nothing could be revoked ends the pass (its leases wait for
    // their backoff).
    let mut revoked = 0;
    loop {
        let due = state.store.due_leases(now, stale, 100).await?;
        if due.is_empty() {
            return Ok(revoked);
        }
        let mut progress = false;
        for lease in due {
            let id = lease.id;
            attempt(state, lease, settings).await;
            if matches!(
                state.store.get_lease(id).await,
                Ok(Some(l)) if l.state == LeaseState::Revoked
            ) {
                revoked += 1;
                progress = true;
            }
        }
        if !progress {
            return Ok(revoked);
        }
    }
}

/// A lease as the API shows it (never a secret).
pub fn view(lease: &Lease) -> Value {
    json!({
        "id": lease.id.to_string(),
        "engine": lease.engine,
        "role": lease.role,
        "task_id": lease.task_id,
        "run_id": lease.run_id.to_string(),
        "state": lease.state.as_str(),
        "public": lease.public,
        "issued_at": lease.issued_at,
        "expires_at": lease.expires_at,
        "revoke_reason": lease.revoke_reason,
        "attempts": lease.attempts,
        "last_error": lease.last_error,
        "next_attempt_at": lease.next_attempt_at,
        "revoked_at": lease.revoked_at,
    })
}

/// The secrets of a fresh lease, for its one response.
pub fn secrets_json(secrets: &std::collections::BTreeMap<String, secrecy::SecretString>) -> Value {
    Value::Object(
        secrets
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_owned())))
            .collect(),
    )
}

/// One more revocation of an `irrevocable` lease, asked for by a human
/// (`DELETE /v1/leases/{id}`): on success it is `revoked`; otherwise it
/// stays irrevocable and the error says why.
pub async fn retry_irrevocable(
    state: &AppState,
    id: uuid::Uuid,
    actor: &str,
) -> Result<(), ApiError> {
    let lease = state
        .store
        .get_lease(id)
        .await?
        .ok_or(ApiError::LeaseNotFound)?;
    let engine = state
        .engines
        .get(&lease.engine)
        .cloned()
        .ok_or_else(|| ApiError::EngineNotFound(lease.engine.clone()))?;
    engine.revoke(&lease.handle).await.map_err(engine_error)?;
    let event = lease_event(
        state.now(),
        "lease.revoked",
        actor,
        &lease,
        json!({"reason": lease.revoke_reason, "attempts": lease.attempts + 1, "after_irrevocable": true}),
    );
    state.store.finish_revoke(id, state.now(), event).await?;
    Ok(())
}

/// Revokes what is due now, in the background (after a task or run ended),
/// so its leases go at once rather than at the next reaper pass.
pub fn revoke_due_soon(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = revoke_due(&state).await {
            tracing::warn!(error = %e, "cannot revoke due leases now; the reaper retries");
        }
    });
}

/// The `kv` engines' sealed secrets, read from Warrant's store.
#[derive(Debug)]
pub struct StoreKv(pub Arc<dyn warrant_store::Store>);

#[async_trait::async_trait]
impl warrant_engines::kv::KvBackend for StoreKv {
    async fn get(
        &self,
        engine: &str,
        name: &str,
    ) -> Result<Option<warrant_engines::kv::Sealed>, EngineError> {
        match self.0.get_kv_secret(engine, name).await {
            Ok(found) => Ok(found.map(|s| warrant_engines::kv::Sealed {
                key_id: s.key_id,
                nonce: s.nonce,
                ciphertext: s.ciphertext,
            })),
            Err(StoreError::Unavailable(why)) => Err(EngineError::Unavailable(why)),
            Err(e) => Err(EngineError::Internal(e.to_string())),
        }
    }
}

/// Builds every `[[engines]]` table: each has a unique `name` and a `type`
/// (`postgres`, `ssh`, `jwt`, `kv`).
pub fn build_engines(
    tables: &[toml::Value],
    ctx: &warrant_engines::EngineContext,
    store: &Arc<dyn warrant_store::Store>,
) -> Result<Engines, String> {
    let mut engines = Engines::default();
    for (i, table) in tables.iter().enumerate() {
        let name = table
            .get("name")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| format!("`engines[{i}]` has no `name`"))?;
        warrant_core::Name::parse("engine name", name)
            .map_err(|e| format!("`engines[{i}]`: {e}"))?;
        if engines.by_name.contains_key(name) {
            return Err(format!("engine `{name}` is declared twice"));
        }
        let kind = table
            .get("type")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| format!("engine `{name}` has no `type`"))?;
        let engine: Arc<dyn Engine> = match kind {
            "postgres" => warrant_engines::postgres::build(name, table, ctx)?,
            "jwt" => warrant_engines::jwt::build(name, table, ctx)?,
            "ssh" => {
                let ssh = warrant_engines::ssh::build_ssh(name, table, ctx)?;
                engines.ssh.insert(name.to_owned(), ssh.clone());
                ssh
            }
            "kv" => {
                let kv = Arc::new(warrant_engines::kv::KvEngine::new(
                    name,
                    table,
                    Arc::new(StoreKv(store.clone())),
                )?);
                engines.kv.insert(name.to_owned(), kv.clone());
                kv
            }
            other => {
                return Err(format!(
                    "engine `{name}` has type `{}`: expected postgres, ssh, jwt or kv",
                    other.chars().take(32).collect::<String>()
                ));
            }
        };
        engines.by_name.insert(name.to_owned(), engine);
    }
    Ok(engines)
}
