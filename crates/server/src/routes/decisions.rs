//! `POST /v1/decisions`: an enforcement point asks, for a run (run token +
//! DPoP), whether one action may happen now.
//!
//! The answer comes from [`warrant_policy::Engine::decide`] over a
//! [`DecisionInput`] built here: the request (action, resource, context —
//! `branch_protected` and `production` computed from `[policy]`, never
//! taken from the client), the principal as the store holds it (run, agent
//! and tier, task, delegating user with groups), the run's history and
//! taint, and the scope the run holds (the token's, cut down to the task's
//! current scope).
//!
//! Every decision is a `decision` audit event, written before the answer:
//! the input with sensitive context values (`command`, `url`, `path`,
//! `arguments`) as keyed hashes, the outcome, the policy set's fingerprint
//! and, in shadow mode, the candidate set's outcome. An allowed action marks
//! the run (`class:<risk class>`, `tainted`) in the same transaction; an
//! `approval_required` creates (or reuses) a pending approval bound to the
//! request's hash. Store or audit failures answer 503 and allow nothing.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warrant_audit::NewEvent;
use warrant_core::Scope;
use warrant_policy::{
    Decision, DecisionInput, Outcome, PrincipalSnapshot, ReasonCode, RequestContext, ResourceRef,
    RunState,
};
use warrant_store::{Approval, ApprovalState, StoreError};

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::refresh::within;
use crate::run_auth::RunCaller;
use crate::state::AppState;

/// Longest action or resource id accepted.
const MAX_NAME: usize = 512;
/// Longest single context value (tool arguments may be larger).
const MAX_VALUE: usize = 8 * 1024;
const MAX_ARGUMENTS: usize = 32 * 1024;
const MAX_PATHS: usize = 1000;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub action: String,
    pub resource: ResourceRef,
    /// Read as JSON first, so fields Warrant computes can be refused
    /// even when sent as `false`.
    #[serde(default)]
    pub context: Option<Value>,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct DecisionResponse {
    pub decision: Decision,
    pub code: &'static str,
    pub reasons: Vec<String>,
    pub policies: Vec<String>,
    pub risk: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// The sequence number of the `decision` audit event.
    pub audit_seq: u64,
}

pub async fn decide(
    State(state): State<AppState>,
    caller: RunCaller,
    ApiJson(request): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionResponse>, ApiError> {
    decide_request(&state, &caller, request).await.map(Json)
}

/// Decides `request` for `caller` and records it: what `POST
/// /v1/decisions` does, also used by other endpoints that decide first
/// (leases decide `credential.issue`).
pub(crate) async fn decide_request(
    state: &AppState,
    caller: &RunCaller,
    request: DecisionRequest,
) -> Result<DecisionResponse, ApiError> {
    decide_as(state, caller, request, Purpose::Act).await
}

/// Why a decision is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The run is about to act: an allow marks the run's history (and
    /// taint), `approval_required` opens or reuses an approval, and an
    /// approved one is used up.
    Act,
    /// Would the run be allowed? (the MCP gateway filtering `tools/list`).
    /// Decided and audited (`"probe": true`) like any other, but it changes
    /// nothing: no marks, no approval opened or used.
    Probe,
}

/// Whom a decision is for: the run and its task as the store holds them,
/// the actor its audit event names (the run's SPIFFE id) and the scope the
/// run holds. A [`RunCaller`] gives one; so does a git credential, which
/// names its run without being a run token.
#[derive(Debug, Clone)]
pub(crate) struct Deciding<'a> {
    pub run: &'a warrant_store::Run,
    pub task: &'a warrant_core::Task,
    pub actor: &'a str,
    pub scope: Scope,
}

impl<'a> Deciding<'a> {
    pub(crate) fn caller(caller: &'a RunCaller) -> Self {
        Self {
            run: &caller.run,
            task: &caller.task,
            actor: &caller.token.claims().sub,
            scope: held_scope(caller),
        }
    }
}

pub(crate) async fn decide_as(
    state: &AppState,
    caller: &RunCaller,
    request: DecisionRequest,
    purpose: Purpose,
) -> Result<DecisionResponse, ApiError> {
    decide_for(state, &Deciding::caller(caller), request, purpose).await
}

pub(crate) async fn decide_for(
    state: &AppState,
    caller: &Deciding<'_>,
    request: DecisionRequest,
    purpose: Purpose,
) -> Result<DecisionResponse, ApiError> {
    let context = check_request(&request)?;
    let started = Instant::now();
    let input = build_input(state, caller, request, context).await?;
    let live = state.policies.live();
    let mut outcome = live.decide(&input);
    let shadow = state
        .policies
        .shadow()
        .map(|candidate| (candidate.fingerprint().to_owned(), candidate.decide(&input)));

    let now = state.now();
    let mut approval = None;
    let mut reused = None;
    let mut consume = None;
    if outcome.decision == Decision::ApprovalRequired && purpose == Purpose::Act {
        let hash = request_hash(&input);
        // Humans already answered exactly this request: an approval is
        // used once (consumed with this decision); a denial stands until
        // the request would have expired.
        let approved = state
            .store
            .find_approval(caller.run.id, &hash, ApprovalState::Approved, now)
            .await?;
        let denied = match &approved {
            Some(_) => None,
            None => {
                state
                    .store
                    .find_approval(caller.run.id, &hash, ApprovalState::Denied, now)
                    .await?
            }
        };
        if let Some(answered) = approved.or(denied) {
            let votes = state.store.approval_votes(answered.id).await?;
            let said: Vec<String> = votes
                .iter()
                .map(|v| format!("`{}`: {}", v.approver, v.reason))
                .collect();
            if answered.state == ApprovalState::Approved {
                outcome.decision = Decision::Allow;
                outcome.code = ReasonCode::Approved;
                outcome.reasons = vec![format!(
                    "approved once by {} (approval `{}`)",
                    said.join("; "),
                    answered.id
                )];
                consume = Some(answered.id);
            } else {
                outcome.decision = Decision::Deny;
                outcome.code = ReasonCode::ApprovalDenied;
                outcome.reasons = vec![format!(
                    "denied by {} (approval `{}`)",
                    said.join("; "),
                    answered.id
                )];
            }
            outcome.quorum = None;
            reused = Some(answered);
        } else {
            reused = state
                .store
                .find_approval(caller.run.id, &hash, ApprovalState::Pending, now)
                .await?;
        }
        if reused.is_none() {
            let ttl = jiff::SignedDuration::try_from(state.policies.config.approval_ttl)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            approval = Some(Approval {
                id: uuid::Uuid::now_v7(),
                task_id: caller.task.id,
                run_id: caller.run.id,
                action: input.action.clone(),
                request: serde_json::to_value(&input)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                request_hash: hash,
                quorum: outcome.quorum.unwrap_or(1),
                policies: outcome.policies.clone(),
                reasons: outcome.reasons.clone(),
                state: ApprovalState::Pending,
                created_at: now,
                expires_at: now
                    .checked_add(ttl)
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                decided_at: None,
                consumed_at: None,
            });
        }
    }
    let approval_id = approval
        .as_ref()
        .or(reused.as_ref())
        .map(|a| a.id.to_string());

    // What an allowed action adds to the run's record.
    let mut marks = Vec::new();
    if outcome.decision == Decision::Allow && purpose == Purpose::Act {
        if let Some(spec) = warrant_policy::catalog::action(&input.action) {
            let mark = format!("class:{}", spec.class.as_str());
            if !input.run.history.iter().any(|h| *h == spec.class.as_str()) {
                marks.push(mark);
            }
        }
        if input.taints_run() && !input.run.tainted {
            marks.push("tainted".to_owned());
        }
    }

    let mut event = decision_event(
        state,
        caller,
        &input,
        &outcome,
        live.fingerprint(),
        approval_id.as_deref(),
        shadow.as_ref(),
        now,
    );
    if purpose == Purpose::Probe {
        event.data["probe"] = true.into();
    }
    let recorded = if marks.is_empty() && approval.is_none() && consume.is_none() {
        state.audit.append(event).await
    } else {
        state
            .store
            .record_decision(
                &warrant_store::DecisionWrite {
                    run_id: caller.run.id,
                    task_id: caller.task.id,
                    marks: &marks,
                    approval: approval.as_ref(),
                    consume,
                    at: now,
                },
                event,
            )
            .await
    };
    let recorded = match recorded {
        Ok(e) => e,
        // Another decision used the approval (or it expired) in between.
        Err(StoreError::InvalidState(_)) if consume.is_some() => {
            return Err(ApiError::ApprovalRace);
        }
        // The run vanished between authentication and the write: corrupt
        // or a bug; never an allow.
        Err(StoreError::NotFound(what)) => {
            return Err(ApiError::Internal(format!("recording a decision: {what}")));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(created) = &approval {
        crate::approvals::notify_state(state, created, None).await;
    }
    if let Some(used) = consume
        && let Ok(Some(a)) = state.store.get_approval(used).await
    {
        crate::approvals::notify_state(state, &a, None).await;
    }
    tracing::debug!(
        action = %input.action,
        decision = %outcome.decision,
        code = %outcome.code,
        seq = recorded.seq,
        micros = started.elapsed().as_micros() as u64,
        "decided"
    );
    Ok(DecisionResponse {
        decision: outcome.decision,
        code: outcome.code.as_str(),
        reasons: outcome.reasons,
        policies: outcome.policies,
        risk: outcome.risk,
        approval_id,
        quorum: outcome
            .quorum
            .filter(|_| outcome.decision == Decision::ApprovalRequired),
        audit_seq: recorded.seq,
    })
}

/// Shape checks the schema cannot express; the server-computed fields are
/// refused rather than silently overwritten.
fn check_request(r: &DecisionRequest) -> Result<RequestContext, ApiError> {
    let bad = |why: String| Err(ApiError::InvalidBody(why));
    if r.action.is_empty() || r.action.len() > MAX_NAME {
        return bad("`action` must be 1 to 512 characters".into());
    }
    if r.resource.kind.is_empty()
        || r.resource.kind.len() > MAX_NAME
        || r.resource.id.is_empty()
        || r.resource.id.len() > MAX_NAME
    {
        return bad("`resource.type` and `resource.id` must be 1 to 512 characters".into());
    }
    let context = match &r.context {
        None | Some(Value::Null) => RequestContext::default(),
        Some(Value::Object(fields)) => {
            if fields.contains_key("branch_protected") || fields.contains_key("production") {
                return bad(
                    "`context.branch_protected` and `context.production` are computed by Warrant from its configuration: leave them out"
                        .into(),
                );
            }
            serde_json::from_value(Value::Object(fields.clone()))
                .map_err(|e| ApiError::InvalidBody(format!("`context`: {e}")))?
        }
        Some(_) => return bad("`context` must be an object".into()),
    };
    let c = &context;
    let values = [
        ("repo", &c.repo),
        ("branch", &c.branch),
        ("base_branch", &c.base_branch),
        ("environment", &c.environment),
        ("commit", &c.commit),
        ("digest", &c.digest),
        ("tool", &c.tool),
        ("command", &c.command),
        ("path", &c.path),
        ("url", &c.url),
        ("method", &c.method),
    ];
    for (name, value) in values {
        if value.as_ref().is_some_and(|v| v.len() > MAX_VALUE) {
            return bad(format!("`context.{name}` is longer than 8 KiB"));
        }
    }
    if c.arguments
        .as_ref()
        .is_some_and(|v| v.len() > MAX_ARGUMENTS)
    {
        return bad("`context.arguments` is longer than 32 KiB".into());
    }
    if c.changed_paths.len() > MAX_PATHS || c.changed_paths.iter().any(|p| p.len() > MAX_VALUE) {
        return bad("`context.changed_paths` holds at most 1000 paths of at most 8 KiB".into());
    }
    Ok(context)
}

async fn build_input(
    state: &AppState,
    caller: &Deciding<'_>,
    request: DecisionRequest,
    context: RequestContext,
) -> Result<DecisionInput, ApiError> {
    let agent = state.entities.agent(state, &caller.run.agent).await?;
    let user = state.entities.user(state, &caller.task.delegator).await?;
    let marks = state.store.run_marks(caller.run.id).await?;

    let mut context = context;
    let written_branch = if request.action == "repo.merge" {
        context.base_branch.as_deref()
    } else {
        context.branch.as_deref()
    };
    context.branch_protected = written_branch.is_some_and(|b| state.policies.branch_protected(b));
    let environment = if request.resource.kind == "Environment" {
        Some(request.resource.id.as_str())
    } else {
        context.environment.as_deref()
    };
    context.production = environment.is_some_and(|e| state.policies.production(e));

    let scope = caller.scope.clone();
    Ok(DecisionInput {
        action: request.action,
        resource: request.resource,
        principal: PrincipalSnapshot {
            run: caller.run.id.to_string(),
            agent: agent.name.to_string(),
            tier: agent.tier,
            task: caller.task.id.to_string(),
            task_type: None,
            depth: caller.run.depth,
            user: user.name.to_string(),
            user_groups: user.groups.iter().map(ToString::to_string).collect(),
            user_admin: user.admin,
        },
        context,
        run: RunState {
            tainted: marks.iter().any(|m| m == "tainted"),
            history: marks
                .iter()
                .filter_map(|m| m.strip_prefix("class:"))
                .map(str::to_owned)
                .collect(),
        },
        scope,
    })
}

/// What an approval is for, and its hash: action, resource, the request's
/// context, task and run (JCS, SHA-256). The same action on another commit,
/// digest, environment or command is another request. The approval itself
/// keeps the whole decision input, so its eligibility can be decided.
pub(crate) fn request_hash(input: &DecisionInput) -> warrant_audit::Hash {
    let request = json!({
        "action": input.action,
        "resource": input.resource,
        "context": input.context,
        "task": input.principal.task,
        "run": input.principal.run,
    });
    let bytes = serde_json_canonicalizer::to_vec(&request)
        .unwrap_or_else(|_| request.to_string().into_bytes());
    warrant_crypto::sha256(&bytes)
}

#[expect(
    clippy::too_many_arguments,
    reason = "each argument is one field of the event"
)]
fn decision_event(
    state: &AppState,
    caller: &Deciding<'_>,
    input: &DecisionInput,
    outcome: &Outcome,
    policy_set: &str,
    approval_id: Option<&str>,
    shadow: Option<&(String, Outcome)>,
    now: jiff::Timestamp,
) -> NewEvent {
    let mut recorded = input.clone();
    recorded
        .context
        .redact(|value| state.policies.keyed_hash(value));
    let mut data = json!({
        "input": recorded,
        "outcome": outcome,
        "policy_set": policy_set,
    });
    if let Some(id) = approval_id {
        data["approval_id"] = id.into();
    }
    if let Some((fingerprint, candidate)) = shadow {
        data["shadow"] = json!({
            "policy_set": fingerprint,
            "outcome": candidate,
            "differs": candidate.decision != outcome.decision || candidate.code != outcome.code,
        });
    }
    NewEvent {
        time: now,
        kind: "decision".to_owned(),
        actor: caller.actor.to_owned(),
        subject: format!("run:{}", caller.run.id),
        task_id: Some(caller.task.id.to_string()),
        data,
    }
}

/// The scope a run holds: a root run the task's current scope, a delegated
/// one its own, cut down to what the task still grants.
pub(crate) fn held_scope(caller: &RunCaller) -> Scope {
    match caller.run.parent_run_id {
        None => caller.task.scope.clone(),
        Some(_) => within(&caller.token.claims().warrant_scope, &caller.task.scope),
    }
}
