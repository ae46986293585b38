//! `/v1/tasks`: create, list, show, end and narrow tasks.
//!
//! Non-admins only ever see and change the tasks they delegated; admins see
//! and change every task.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use warrant_core::{
    CoreError, EndReason, Name, Scope, Task, TaskId, TaskState, TtlBounds, validate_text,
};
use warrant_store::{StoreError, TaskClaim, TaskFilter};

use crate::auth::{Admin, Caller};
use crate::error::ApiError;
use crate::events;
use crate::extract::{ApiJson, ApiQuery, OptionalJson, TaskIdPath};
use crate::state::{AppState, to_store_precision};

/// Longest purpose, in characters.
pub const MAX_PURPOSE: usize = 500;
/// Longest ticket reference, in characters.
pub const MAX_TICKET: usize = 200;
/// Longest end note, in characters.
pub const MAX_NOTE: usize = 500;
/// Most tasks one list returns.
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    agent: String,
    purpose: String,
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    scope: Scope,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    agent: Option<String>,
    delegator: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndTask {
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NarrowTask {
    #[serde(default)]
    scope: Option<Scope>,
    #[serde(default)]
    ttl: Option<String>,
}

/// A one-time claim secret: serialized once, into the creation response;
/// never in `Debug` or the log.
pub struct ClaimSecret(secrecy::SecretString);

impl std::fmt::Debug for ClaimSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimSecret(<redacted>)")
    }
}

impl Serialize for ClaimSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use secrecy::ExposeSecret as _;
        s.serialize_str(self.0.expose_secret())
    }
}

/// `POST /v1/tasks`' answer: the task, and its one-time claim (shown once).
#[derive(Debug, Serialize)]
pub struct CreatedTask {
    #[serde(flatten)]
    task: Task,
    /// Redeem at `POST /v1/token` (grant `urn:warrant:grant-type:task-claim`).
    claim: ClaimSecret,
    claim_expires_at: Timestamp,
}

#[derive(Debug, Serialize)]
pub struct Tasks {
    tasks: Vec<Task>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<(StatusCode, Json<CreatedTask>), ApiError> {
    let agent = Name::parse("agent name", &body.agent).map_err(ApiError::InvalidName)?;
    let purpose = body.purpose.trim();
    if purpose.is_empty() || purpose.chars().count() > MAX_PURPOSE {
        return Err(ApiError::InvalidBody(format!(
            "`purpose` must be 1 to {MAX_PURPOSE} characters long"
        )));
    }
    text("purpose", purpose, MAX_PURPOSE)?;
    let ticket = match body.ticket.as_deref().map(str::trim) {
        Some(t) if t.is_empty() || t.chars().count() > MAX_TICKET => {
            return Err(ApiError::InvalidBody(format!(
                "`ticket` must be 1 to {MAX_TICKET} characters long"
            )));
        }
        t => t.map(str::to_owned),
    };
    if let Some(ticket) = &ticket {
        text("ticket", ticket, MAX_TICKET)?;
    }
    let ttl = state
        .ttl
        .resolve(body.ttl.as_deref())
        .map_err(|e| ttl_error(e, &state.ttl))?;
    let scope = body.scope.validated().map_err(scope_error)?;
    if state.store.agent_by_name(&agent).await?.is_none() {
        return Err(ApiError::UnknownAgent(agent));
    }
    let now = state.now();
    let task = Task {
        id: TaskId::new(),
        agent: agent.clone(),
        delegator: caller.user.name.clone(),
        purpose: purpose.to_owned(),
        ticket,
        scope,
        state: TaskState::Pending,
        end_reason: None,
        end_note: None,
        created_at: now,
        expires_at: expiry(now, ttl, &state.ttl)?,
        ended_at: None,
    };
    let secret = warrant_crypto::generate_claim()
        .map_err(|e| ApiError::Internal(format!("cannot generate a claim: {e}")))?;
    let claim_expires_at = now
        .checked_add(state.issuer.claim_ttl)
        .map(to_store_precision)
        .unwrap_or(task.expires_at)
        .min(task.expires_at);
    let claim = TaskClaim {
        hash: secret.hash,
        task_id: task.id,
        created_at: now,
        expires_at: claim_expires_at,
        used_at: None,
    };
    match state
        .store
        .create_task_with_claim(&task, &claim, events::task_created(&task, &caller.actor()))
        .await
    {
        Ok(_) => {}
        // The agent was removed between the check and the insert.
        Err(StoreError::NotFound(_)) => return Err(ApiError::UnknownAgent(agent)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(task = %task.id, agent = %task.agent, delegator = %task.delegator, "task created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedTask {
            task,
            claim: ClaimSecret(secret.token),
            claim_expires_at,
        }),
    ))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Tasks>, ApiError> {
    let filter_state = query
        .state
        .as_deref()
        .map(str::parse::<TaskState>)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(format!("`state`: {e}")))?;
    let agent = parse_name_param("agent", query.agent.as_deref())?;
    let delegator = parse_name_param("delegator", query.delegator.as_deref())?;
    let limit = parse_limit(query.limit.as_deref(), MAX_LIMIT)?;
    let delegator = if caller.is_admin() {
        delegator
    } else {
        match delegator {
            Some(d) if d != caller.user.name => {
                return Err(ApiError::Forbidden(
                    "only admins may list tasks delegated by other users",
                ));
            }
            _ => Some(caller.user.name.clone()),
        }
    };
    let filter = TaskFilter {
        state: filter_state,
        delegator,
        agent,
        limit,
    };
    let tasks = state.store.list_tasks(&filter).await?;
    Ok(Json(Tasks { tasks }))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(load_for(&state, &caller, id).await?))
}

pub async fn end(
    State(state): State<AppState>,
    caller: Caller,
    TaskIdPath(id): TaskIdPath,
    OptionalJson(body): OptionalJson<EndTask>,
) -> Result<Json<Task>, ApiError> {
    let note = body.and_then(|b| b.note);
    if let Some(note) = &note {
        if note.chars().count() > MAX_NOTE {
            return Err(ApiError::InvalidBody(format!(
                "`note` is longer than {MAX_NOTE} characters"
            )));
        }
        text("note", note, MAX_NOTE)?;
    }
    let task = load_for(&state, &caller, id).await?;
    if !task.is_live() {
        return Err(ApiError::TaskEnded(id));
    }
    let now = state.now();
    // Past its expiry the task is over whether or not the reaper got to it:
    // ending it records why it really ended.
    let reason = if is_expired(&task, now) {
        EndReason::Expired
    } else if task.delegator == caller.user.name {
        EndReason::Completed
    } else {
        EndReason::Revoked
    };
    Ok(Json(
        end_as(&state, &task, reason, note.as_deref(), &caller).await?,
    ))
}

/// `POST /v1/tasks/{id}/revoke` (admin): ends the task as `revoked`,
/// revoking its runs. What `warrant revoke --task` calls.
pub async fn revoke(
    State(state): State<AppState>,
    Admin(caller): Admin,
    TaskIdPath(id): TaskIdPath,
) -> Result<Json<Task>, ApiError> {
    let task = load_for(&state, &caller, id).await?;
    if !task.is_live() {
        return Err(ApiError::TaskEnded(id));
    }
    Ok(Json(
        end_as(&state, &task, EndReason::Revoked, None, &caller).await?,
    ))
}

/// Ends a live task for `reason`, with its audit event, its runs revoked
/// and its revocation rows, all in one store transaction.
pub(crate) async fn end_as(
    state: &AppState,
    task: &Task,
    reason: EndReason,
    note: Option<&str>,
    caller: &Caller,
) -> Result<Task, ApiError> {
    let id = task.id;
    let now = state.now();
    let event = events::task_ended(task, reason, note, &caller.actor(), now);
    let ended = match state.store.end_task(id, reason, note, now, event).await {
        Ok((ended, _)) => ended,
        Err(StoreError::InvalidState(_)) => return Err(ApiError::TaskEnded(id)),
        Err(StoreError::NotFound(_)) => return Err(ApiError::TaskNotFound(id)),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(task = %id, %reason, by = %caller.user.name, "task ended");
    // Its leases go now, not at the next reaper pass; its MCP sessions close.
    crate::leases::revoke_due_soon(state);
    crate::mcp::close_task(state, id).await;
    Ok(ended)
}

pub async fn narrow(
    State(state): State<AppState>,
    caller: Caller,
    TaskIdPath(id): TaskIdPath,
    ApiJson(body): ApiJson<NarrowTask>,
) -> Result<Json<Task>, ApiError> {
    if body.scope.is_none() && body.ttl.is_none() {
        return Err(ApiError::InvalidBody(
            "nothing to narrow: give `scope`, `ttl` or both".to_owned(),
        ));
    }
    let scope = body
        .scope
        .map(Scope::validated)
        .transpose()
        .map_err(scope_error)?;
    let ttl = body
        .ttl
        .as_deref()
        .map(|t| state.ttl.resolve(Some(t)))
        .transpose()
        .map_err(|e| ttl_error(e, &state.ttl))?;
    let task = load_for(&state, &caller, id).await?;
    let now = state.now();
    if !task.is_live() {
        return Err(ApiError::TaskEnded(id));
    }
    if is_expired(&task, now) {
        return Err(ApiError::TaskExpired(id, task.expires_at));
    }
    let mut narrowed = task.clone();
    if let Some(scope) = scope {
        scope.check_narrowing_of(&task.scope).map_err(scope_error)?;
        narrowed.scope = scope;
    }
    if let Some(ttl) = ttl {
        let expires_at = expiry(now, ttl, &state.ttl)?;
        if expires_at > task.expires_at {
            return Err(ApiError::InvalidTtl(format!(
                "a ttl of `{ttl:#}` from now would end the task at {expires_at}, after its current expiry \
                 {}: narrowing may only shorten a task's life",
                task.expires_at
            )));
        }
        narrowed.expires_at = expires_at;
    }
    let event = events::task_narrowed(&narrowed, task.expires_at, &caller.actor(), now);
    match state.store.narrow_task(&narrowed, event).await {
        Ok(_) => {}
        // Changed since it was read (another narrow or an end): say what
        // is wrong with this request against the task as it is now.
        Err(StoreError::InvalidState(why)) => {
            let current = state.store.get_task(id).await?;
            return Err(match current {
                None => ApiError::TaskNotFound(id),
                Some(current) => narrow_refusal(&current, &narrowed, state.now())
                    .unwrap_or(ApiError::Store(StoreError::InvalidState(why))),
            });
        }
        Err(StoreError::NotFound(_)) => return Err(ApiError::TaskNotFound(id)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(task = %id, by = %caller.user.name, "task narrowed");
    Ok(Json(narrowed))
}

/// Why the store refused `narrowed` given the task as it is now, `None`
/// if nothing explains it.
fn narrow_refusal(current: &Task, narrowed: &Task, now: Timestamp) -> Option<ApiError> {
    if !current.is_live() {
        return Some(ApiError::TaskEnded(current.id));
    }
    if is_expired(current, now) {
        return Some(ApiError::TaskExpired(current.id, current.expires_at));
    }
    if let Err(e) = narrowed.scope.check_narrowing_of(&current.scope) {
        return Some(ApiError::InvalidScope(format!(
            "{e} (the task was narrowed by another request meanwhile)"
        )));
    }
    if narrowed.expires_at > current.expires_at {
        return Some(ApiError::InvalidTtl(format!(
            "the task now expires at {}, before {}: it was narrowed by another request meanwhile, \
             and narrowing may only shorten a task's life",
            current.expires_at, narrowed.expires_at
        )));
    }
    None
}

/// At or past `expires_at` a task is over, even before the reaper ends it.
fn is_expired(task: &Task, now: Timestamp) -> bool {
    task.expires_at <= now
}

/// Free text from the body: printable, bounded.
fn text(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    validate_text(field, value, max).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

/// The task, if the caller may see it: its delegator or an admin.
async fn load_for(state: &AppState, caller: &Caller, id: TaskId) -> Result<Task, ApiError> {
    let task = state
        .store
        .get_task(id)
        .await?
        .ok_or(ApiError::TaskNotFound(id))?;
    if task.delegator != caller.user.name && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "this task was delegated by another user: only its delegator or an admin may see or change it",
        ));
    }
    Ok(task)
}

fn expiry(now: Timestamp, ttl: SignedDuration, bounds: &TtlBounds) -> Result<Timestamp, ApiError> {
    now.checked_add(ttl).map(to_store_precision).map_err(|_| {
        ApiError::InvalidTtl(format!(
            "ttl `{ttl:#}` reaches past the end of time; a ttl must be between {:#} and {:#}",
            bounds.min, bounds.max
        ))
    })
}

/// Every ttl complaint names the bounds.
fn ttl_error(e: CoreError, bounds: &TtlBounds) -> ApiError {
    match e {
        CoreError::TtlOutOfBounds { .. } => ApiError::InvalidTtl(e.to_string()),
        other => ApiError::InvalidTtl(format!(
            "{other}; a ttl must be between {:#} and {:#}",
            bounds.min, bounds.max
        )),
    }
}

fn scope_error(e: CoreError) -> ApiError {
    ApiError::InvalidScope(e.to_string())
}

pub(crate) fn parse_name_param(param: &str, raw: Option<&str>) -> Result<Option<Name>, ApiError> {
    raw.map(|r| Name::parse("name", r))
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(format!("`{param}`: {e}")))
}

/// `limit=N` with 1 <= N <= `max`; absent is `None`.
pub(crate) fn parse_limit(raw: Option<&str>, max: u32) -> Result<Option<u32>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::InvalidQuery(format!(
            "`limit` is `{}`: expected a whole number from 1 to {max}",
            raw.chars().take(32).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use jiff::{SignedDuration, Timestamp};
    use warrant_core::{EndReason, Name, Scope, Task, TaskId, TaskState};

    use super::narrow_refusal;
    use crate::error::ApiError;

    fn task(repos: &[&str], expires_in_mins: i64) -> Task {
        let now = Timestamp::from_second(1_900_000_000).unwrap();
        Task {
            id: TaskId::new(),
            agent: Name::parse("name", "claude").unwrap(),
            delegator: Name::parse("name", "alice").unwrap(),
            purpose: "p".into(),
            ticket: None,
            scope: Scope {
                repos: repos.iter().map(|r| (*r).to_owned()).collect(),
                ..Scope::default()
            },
            state: TaskState::Pending,
            end_reason: None,
            end_note: None,
            created_at: now,
            expires_at: now + SignedDuration::from_mins(expires_in_mins),
            ended_at: None,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_900_000_000).unwrap()
    }

    // A concurrent narrow refused by the store on a live task was reported
    // as `task_ended`: it is the scope (or ttl) that no longer fits.
    #[test]
    fn a_store_refusal_on_a_live_task_is_a_scope_or_ttl_error_not_task_ended() {
        let current = task(&["acme/api"], 30);
        let mut wider = current.clone();
        wider.scope.repos = vec!["acme/web".into()];
        assert!(matches!(
            narrow_refusal(&current, &wider, now()),
            Some(ApiError::InvalidScope(_))
        ));
        let mut later = current.clone();
        later.expires_at = current.expires_at + SignedDuration::from_mins(5);
        assert!(matches!(
            narrow_refusal(&current, &later, now()),
            Some(ApiError::InvalidTtl(_))
        ));
        let mut ended = current.clone();
        ended.state = TaskState::Ended;
        ended.end_reason = Some(EndReason::Completed);
        ended.ended_at = Some(now());
        assert!(matches!(
            narrow_refusal(&ended, &wider, now()),
            Some(ApiError::TaskEnded(_))
        ));
        let past = now() + SignedDuration::from_mins(31);
        assert!(matches!(
            narrow_refusal(&current, &wider, past),
            Some(ApiError::TaskExpired(..))
        ));
    }
}
