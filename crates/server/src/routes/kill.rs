//! The kill switch and run revocation, for admins.
//!
//! `POST /v1/kill` ends every live task that matches (one task, an agent's,
//! a user's, or all) as `killed`, each in its own transaction with its
//! `task.ended` event, its runs revoked and its revocation rows.
//! `POST /v1/runs/{id}/revoke` revokes one run and leaves its task live.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use warrant_core::{EndReason, Name, TaskId, TaskState};
use warrant_store::{StoreError, TaskFilter};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::events;
use crate::extract::ApiJson;
use crate::routes::tasks::end_as;
use crate::state::AppState;

/// Live tasks read per store query while killing.
const PAGE: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    task: Option<String>,
    agent: Option<String>,
    user: Option<String>,
    all: Option<bool>,
}

/// What a kill matches.
enum Target {
    Task(TaskId),
    Agent(Name),
    User(Name),
    All,
}

fn target(body: KillBody) -> Result<Target, ApiError> {
    let given = [
        body.task.is_some(),
        body.agent.is_some(),
        body.user.is_some(),
        body.all.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::InvalidBody(
            "give exactly one of `task`, `agent`, `user` or `all: true`".into(),
        ));
    }
    let name =
        |what: &'static str, raw: &str| Name::parse(what, raw).map_err(ApiError::InvalidName);
    Ok(match body {
        KillBody { task: Some(t), .. } => {
            Target::Task(t.parse::<TaskId>().map_err(ApiError::InvalidTaskId)?)
        }
        KillBody { agent: Some(a), .. } => Target::Agent(name("agent", &a)?),
        KillBody { user: Some(u), .. } => Target::User(name("user", &u)?),
        KillBody {
            all: Some(true), ..
        } => Target::All,
        _ => {
            return Err(ApiError::InvalidBody(
                "`all` must be `true`: to kill everything, say so".into(),
            ));
        }
    })
}

/// `POST /v1/kill`: `{"ended": [task ids]}`.
pub async fn kill(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<KillBody>,
) -> Result<Json<Value>, ApiError> {
    let target = target(body)?;
    let note = match &target {
        Target::Task(id) => format!("kill: task `{id}`"),
        Target::Agent(a) => format!("kill: agent `{a}`"),
        Target::User(u) => format!("kill: user `{u}`"),
        Target::All => "kill: all".to_owned(),
    };
    let mut ended = Vec::new();
    if let Target::Task(id) = target {
        let task = state
            .store
            .get_task(id)
            .await?
            .ok_or(ApiError::TaskNotFound(id))?;
        if task.is_live() {
            end_as(&state, &task, EndReason::Killed, Some(&note), &caller).await?;
            ended.push(id);
        }
    } else {
        let (agent, delegator) = match target {
            Target::Agent(a) => (Some(a), None),
            Target::User(u) => (None, Some(u)),
            _ => (None, None),
        };
        for live in [TaskState::Pending, TaskState::Active] {
            loop {
                let filter = TaskFilter {
                    state: Some(live),
                    delegator: delegator.clone(),
                    agent: agent.clone(),
                    limit: Some(PAGE),
                };
                let page = state.store.list_tasks(&filter).await?;
                let mut progressed = false;
                for task in &page {
                    match end_as(&state, task, EndReason::Killed, Some(&note), &caller).await {
                        Ok(_) => {
                            ended.push(task.id);
                            progressed = true;
                        }
                        // Ended meanwhile (by its user or the reaper): done.
                        Err(ApiError::TaskEnded(_) | ApiError::TaskNotFound(_)) => {
                            progressed = true;
                        }
                        Err(e) => return Err(e),
                    }
                }
                if page.len() < PAGE as usize || !progressed {
                    break;
                }
            }
        }
    }
    tracing::warn!(by = %caller.user.name, %note, tasks = ended.len(), "kill switch");
    crate::leases::revoke_due_soon(&state);
    for id in &ended {
        crate::mcp::close_task(&state, *id).await;
    }
    Ok(Json(json!({ "ended": ended })))
}

/// `POST /v1/runs/{id}/revoke`: the revoked run.
pub async fn revoke_run(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = uuid::Uuid::try_parse(&raw)
        .map_err(|_| ApiError::RunNotFound(raw.chars().take(64).collect()))?;
    let run = state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| ApiError::RunNotFound(id.to_string()))?;
    let now = state.now();
    let event = events::run_revoked(&run, "revoked", &caller.actor(), now);
    let run = match state.store.revoke_run(id, "revoked", now, event).await {
        Ok((run, _)) => run,
        Err(StoreError::NotFound(_)) => return Err(ApiError::RunNotFound(id.to_string())),
        Err(StoreError::InvalidState(_)) => return Err(ApiError::RunRevoked(id.to_string())),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(run = %id, by = %caller.user.name, "run revoked");
    crate::leases::revoke_due_soon(&state);
    crate::mcp::close_task(&state, run.task_id).await;
    Ok(Json(json!({
        "run_id": run.id.to_string(),
        "task_id": run.task_id,
        "agent": run.agent,
        "state": run.state.as_str(),
    })))
}
