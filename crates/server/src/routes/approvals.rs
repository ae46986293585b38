//! Approvals: the humans' side of an `approval_required` decision.
//!
//! - `GET /v1/approvals[?state=&task=&limit=]` (any user): newest first.
//! - `GET /v1/approvals/{id}` — a user sees everything asked (the request,
//!   the run, its task and delegating human, the votes, the run's recent
//!   decisions); the run that asked (run token + DPoP) sees its state and
//!   may long-poll with `?wait=30s`.
//! - `POST /v1/approvals/{id}/approve` and `/deny` with `{"reason"}`: who
//!   may answer is decided by Cedar (`approve` on the `Approval`), by
//!   default admins and members of `approvers`, never the task's delegator.
//!   A deny closes the request; approvals count towards its quorum of
//!   distinct approvers. Every refusal is an `approval.refused` event.
//! - `GET /v1/approvals/{id}/attestation` (any user): the DSSE envelope
//!   of an approved (or consumed) approval.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warrant_audit::NewEvent;
use warrant_core::{Name, TaskId, validate_text};
use warrant_policy::{ApproveInput, Decision, DecisionInput, ReasonCode};
use warrant_store::{
    Approval, ApprovalFilter, ApprovalState, AuditFilter, StoreError, Verdict, Vote,
};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::run_auth::RunCaller;
use crate::state::AppState;

/// Longest `reason`.
const MAX_REASON: usize = 500;
/// Longest long-poll, whatever `wait` asks (bounded by the request timeout).
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a long-poll looks again.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Recent decisions of the run shown with an approval.
const HISTORY: usize = 10;

/// Who is looking: a human (API token or ID token) or the run that asked.
pub enum Viewer {
    Human,
    Run(Box<RunCaller>),
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let dpop = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() > 5 && v[..5].eq_ignore_ascii_case("dpop "));
        if dpop {
            Ok(Viewer::Run(Box::new(
                RunCaller::from_request_parts(parts, state).await?,
            )))
        } else {
            Caller::from_request_parts(parts, state).await?;
            Ok(Viewer::Human)
        }
    }
}

fn parse_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(raw).map_err(|_| {
        ApiError::InvalidQuery(format!(
            "`{}` is not an approval id",
            raw.chars().take(64).collect::<String>()
        ))
    })
}

/// The state as of `now`: a pending or approved request past its expiry is
/// expired even before the reaper has marked it.
fn effective(a: &Approval, now: Timestamp) -> ApprovalState {
    match a.state {
        ApprovalState::Pending | ApprovalState::Approved if a.expires_at <= now => {
            ApprovalState::Expired
        }
        s => s,
    }
}

fn input_of(a: &Approval) -> Result<DecisionInput, ApiError> {
    serde_json::from_value(a.request.clone())
        .map_err(|e| ApiError::Internal(format!("approval `{}` request: {e}", a.id)))
}

#[derive(Debug, Serialize)]
pub struct VoteView {
    approver: String,
    verdict: &'static str,
    reason: String,
    at: Timestamp,
}

/// An approval as humans see it.
pub(crate) async fn human_view(state: &AppState, a: &Approval) -> Result<Value, ApiError> {
    let now = state.now();
    let input = input_of(a)?;
    let votes: Vec<VoteView> = state
        .store
        .approval_votes(a.id)
        .await?
        .into_iter()
        .map(|v| VoteView {
            approver: v.approver.to_string(),
            verdict: v.verdict.as_str(),
            reason: v.reason,
            at: v.at,
        })
        .collect();
    let approvals = votes.iter().filter(|v| v.verdict == "approve").count();
    Ok(json!({
        "id": a.id.to_string(),
        "state": effective(a, now).as_str(),
        "action": a.action,
        "resource": input.resource,
        "context": input.context,
        "request_hash": hex::encode(a.request_hash),
        "task_id": a.task_id,
        "run_id": a.run_id.to_string(),
        "agent": input.principal.agent,
        "tier": input.principal.tier,
        "delegator": input.principal.user,
        "run_history": input.run.history,
        "run_tainted": input.run.tainted,
        "risk": warrant_policy::risk::score(
            &input,
            warrant_policy::catalog::action(&input.action)
                .map_or(warrant_policy::RiskClass::Change, |s| s.class),
            warrant_policy::risk::touches_sensitive_paths(&input),
        ),
        "quorum": a.quorum,
        "approvals": approvals,
        "votes": votes,
        "policies": a.policies,
        "reasons": a.reasons,
        "created_at": a.created_at,
        "expires_at": a.expires_at,
        "decided_at": a.decided_at,
        "consumed_at": a.consumed_at,
    }))
}

/// What the run that asked sees.
fn run_view(a: &Approval, approvals: usize, now: Timestamp) -> Value {
    json!({
        "id": a.id.to_string(),
        "state": effective(a, now).as_str(),
        "action": a.action,
        "quorum": a.quorum,
        "approvals": approvals,
        "reasons": a.reasons,
        "expires_at": a.expires_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    task: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let wanted = q
        .state
        .as_deref()
        .map(|s| {
            ApprovalState::parse(s).ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "`state` is `{}`: expected pending, approved, denied, expired, revoked or consumed",
                    s.chars().take(32).collect::<String>()
                ))
            })
        })
        .transpose()?;
    let task_id = q
        .task
        .as_deref()
        .map(|t| {
            t.parse::<TaskId>()
                .map_err(|_| ApiError::InvalidQuery("`task` is not a task id".into()))
        })
        .transpose()?;
    let limit = crate::routes::tasks::parse_limit(q.limit.as_deref(), 1000)?;
    let now = state.now();
    // A pending request past its expiry is listed as expired, not pending.
    let rows = state
        .store
        .list_approvals(&ApprovalFilter {
            state: wanted.map(|s| match s {
                ApprovalState::Expired => ApprovalState::Expired,
                other => other,
            }),
            task_id,
            limit,
        })
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for a in rows {
        if wanted.is_some_and(|w| w != effective(&a, now)) {
            continue;
        }
        out.push(human_view(&state, &a).await?);
    }
    Ok(Json(json!({ "approvals": out })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    wait: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    match viewer {
        Viewer::Human => {
            if q.wait.is_some() {
                return Err(ApiError::InvalidQuery(
                    "`wait` is for the run that asked (run token + DPoP)".into(),
                ));
            }
            let a = state
                .store
                .get_approval(id)
                .await?
                .ok_or(ApiError::ApprovalNotFound)?;
            let mut view = human_view(&state, &a).await?;
            view["recent_decisions"] = recent_decisions(&state, &a).await?;
            Ok(Json(view))
        }
        Viewer::Run(run) => {
            let wait = match q.wait.as_deref() {
                None => Duration::ZERO,
                Some(raw) => {
                    let d = warrant_core::task::parse_duration(raw)
                        .map_err(|e| ApiError::InvalidQuery(format!("`wait`: {e}")))?;
                    let secs = u64::try_from(d.as_secs()).unwrap_or(0);
                    // Answer before the request timeout cuts the poll off.
                    Duration::from_secs(secs)
                        .min(MAX_WAIT)
                        .min(state.request_timeout.saturating_sub(Duration::from_secs(2)))
                }
            };
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let a = state
                    .store
                    .get_approval(id)
                    .await?
                    .filter(|a| a.run_id == run.run.id)
                    .ok_or(ApiError::ApprovalNotFound)?;
                let now = state.now();
                let current = effective(&a, now);
                if current != ApprovalState::Pending || tokio::time::Instant::now() >= deadline {
                    let approvals = state
                        .store
                        .approval_votes(a.id)
                        .await?
                        .iter()
                        .filter(|v| v.verdict == Verdict::Approve)
                        .count();
                    return Ok(Json(run_view(&a, approvals, now)));
                }
                tokio::time::sleep(POLL_EVERY.min(deadline - tokio::time::Instant::now())).await;
            }
        }
    }
}

/// The run's last few decisions, for the approver to judge what it has
/// been doing.
async fn recent_decisions(state: &AppState, a: &Approval) -> Result<Value, ApiError> {
    let subject = format!("run:{}", a.run_id);
    let mut after = 0;
    let mut mine = Vec::new();
    loop {
        let page = state
            .store
            .list_audit(&AuditFilter {
                after,
                task_id: Some(a.task_id.to_string()),
                kind: Some("decision".into()),
                limit: Some(1000),
            })
            .await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        mine.extend(page.into_iter().filter(|e| e.subject == subject));
        if mine.len() > 10 * HISTORY {
            mine.drain(..mine.len() - HISTORY);
        }
        after = last;
    }
    let start = mine.len().saturating_sub(HISTORY);
    Ok(Value::Array(
        mine[start..]
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq,
                    "time": e.time,
                    "action": e.data["input"]["action"],
                    "resource": e.data["input"]["resource"],
                    "decision": e.data["outcome"]["decision"],
                    "code": e.data["outcome"]["code"],
                })
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    reason: String,
}

pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VoteBody>,
) -> Result<Json<Value>, ApiError> {
    vote(&state, &caller, &id, Verdict::Approve, body).await
}

pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VoteBody>,
) -> Result<Json<Value>, ApiError> {
    vote(&state, &caller, &id, Verdict::Deny, body).await
}

/// Records an `approval.refused` event, then answers with `error`.
async fn refuse(
    state: &AppState,
    caller: &Caller,
    approval: &Approval,
    verdict: Verdict,
    check: &str,
    error: ApiError,
) -> ApiError {
    let event = NewEvent {
        time: state.now(),
        kind: "approval.refused".to_owned(),
        actor: caller.actor(),
        subject: format!("approval:{}", approval.id),
        task_id: Some(approval.task_id.to_string()),
        data: json!({
            "approval_id": approval.id.to_string(),
            "verdict": verdict.as_str(),
            "check": check,
            "detail": error.to_string(),
        }),
    };
    if let Err(e) = state.store.append_audit(vec![event]).await {
        tracing::warn!(error = %e, "cannot record a refused approval vote");
        return e.into();
    }
    error
}

async fn vote(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
    verdict: Verdict,
    body: VoteBody,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(raw_id)?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() {
        return Err(ApiError::InvalidBody(
            "`reason` is required: say why, for the audit trail and the attestation".into(),
        ));
    }
    validate_text("reason", &reason, MAX_REASON)
        .map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    let approval = state
        .store
        .get_approval(id)
        .await?
        .ok_or(ApiError::ApprovalNotFound)?;
    let now = state.now();
    let current = effective(&approval, now);
    if current != ApprovalState::Pending {
        let err = ApiError::ApprovalClosed(current.as_str());
        return Err(refuse(state, caller, &approval, verdict, "closed", err).await);
    }

    // Eligibility, by policy: the approver's current groups and admin flag.
    let user = &caller.user;
    let eligible = state.policies.live().decide_approve(&ApproveInput {
        approver: user.name.to_string(),
        approver_groups: user.groups.iter().map(ToString::to_string).collect(),
        approver_admin: user.admin,
        approval_id: approval.id.to_string(),
        request: input_of(&approval)?,
    });
    if eligible.decision != Decision::Allow {
        let why = eligible.reasons.join("; ");
        let (check, err) = match eligible.code {
            ReasonCode::Forbidden => ("forbidden", ApiError::ApprovalForbidden(why)),
            ReasonCode::EvaluationError => ("evaluation_error", ApiError::NotAnApprover(why)),
            _ => ("not_an_approver", ApiError::NotAnApprover(why)),
        };
        return Err(refuse(state, caller, &approval, verdict, check, err).await);
    }

    let actor = caller.actor();
    let approver = user.name.clone();
    let reason_for_event = reason.clone();
    let policies = eligible.policies.clone();
    let event = move |a: &Approval| NewEvent {
        time: now,
        kind: match (verdict, a.state) {
            (Verdict::Deny, _) => "approval.denied",
            (Verdict::Approve, ApprovalState::Approved) => "approval.approved",
            _ => "approval.voted",
        }
        .to_owned(),
        actor: actor.clone(),
        subject: format!("approval:{}", a.id),
        task_id: Some(a.task_id.to_string()),
        data: json!({
            "approval_id": a.id.to_string(),
            "verdict": verdict.as_str(),
            "approver": approver,
            "reason": reason_for_event,
            "state": a.state.as_str(),
            "quorum": a.quorum,
            "request_hash": hex::encode(a.request_hash),
            "eligible_by": policies,
        }),
    };
    let vote = Vote {
        approval_id: approval.id,
        approver: user.name.clone(),
        verdict,
        reason,
        at: now,
    };
    let updated = match state.store.vote_approval(&vote, &event).await {
        Ok(a) => a,
        Err(StoreError::Conflict(_)) => {
            let err = ApiError::AlreadyVoted(name_of(&user.name));
            return Err(refuse(state, caller, &approval, verdict, "already_voted", err).await);
        }
        Err(StoreError::InvalidState(_)) => {
            let now_state = state
                .store
                .get_approval(id)
                .await?
                .map_or(ApprovalState::Expired, |a| effective(&a, state.now()));
            let err = ApiError::ApprovalClosed(now_state.as_str());
            return Err(refuse(state, caller, &approval, verdict, "closed", err).await);
        }
        Err(StoreError::NotFound(_)) => return Err(ApiError::ApprovalNotFound),
        Err(e) => return Err(e.into()),
    };
    crate::approvals::notify_state(state, &updated, Some(&caller.user.name)).await;
    Ok(Json(human_view(state, &updated).await?))
}

fn name_of(n: &Name) -> String {
    n.to_string()
}

pub async fn attestation(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let a = state
        .store
        .get_approval(id)
        .await?
        .ok_or(ApiError::ApprovalNotFound)?;
    if !matches!(a.state, ApprovalState::Approved | ApprovalState::Consumed) {
        return Err(ApiError::ApprovalClosed(
            effective(&a, state.now()).as_str(),
        ));
    }
    let envelope = crate::approvals::attestation(&state, &a).await?;
    Ok(Json(envelope))
}
