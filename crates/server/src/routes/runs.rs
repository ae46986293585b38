//! `/v1/runs/me`: what a run token says about its bearer, checked against
//! the store. The first endpoint agents call with their run token.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use warrant_store::StoreError;

use crate::error::ApiError;
use crate::state::AppState;
use jiff::Timestamp;
use serde::Serialize;
use warrant_core::{Name, Scope, TaskId, TaskState};

use crate::run_auth::RunCaller;

#[derive(Debug, Serialize)]
pub struct Me {
    run_id: String,
    /// The run's SPIFFE id (the token's `sub`).
    sub: String,
    task_id: TaskId,
    task_state: TaskState,
    agent: Name,
    delegator: Name,
    jkt: String,
    parent_run_id: Option<String>,
    depth: u32,
    scope: Scope,
    run_expires_at: Timestamp,
    token_expires_at: Option<Timestamp>,
}

pub async fn me(caller: RunCaller) -> Json<Me> {
    let claims = caller.token.claims();
    Json(Me {
        run_id: caller.run.id.to_string(),
        sub: claims.sub.clone(),
        task_id: caller.task.id,
        task_state: caller.task.state,
        agent: caller.run.agent.clone(),
        delegator: caller.task.delegator.clone(),
        jkt: caller.run.jkt.clone(),
        parent_run_id: caller.run.parent_run_id.map(|p| p.to_string()),
        depth: caller.run.depth,
        scope: claims.warrant_scope.clone(),
        run_expires_at: caller.run.expires_at,
        token_expires_at: claims.expires_at(),
    })
}

/// `POST /v1/runs/me/end` (run token + DPoP): the run is done (`warrant
/// exec` calls it when its command exits). Its tokens are refused from now
/// on, the runs it delegated to are revoked with it, and its leases are
/// revoked at once. The task stays live for other runs.
pub async fn end_me(
    State(state): State<AppState>,
    caller: RunCaller,
) -> Result<Json<Value>, ApiError> {
    let now = state.now();
    let event = crate::events::run_revoked(&caller.run, "ended", &caller.token.claims().sub, now);
    match state
        .store
        .revoke_run(caller.run.id, "ended", now, event)
        .await
    {
        Ok(_) | Err(StoreError::InvalidState(_)) => {}
        Err(e) => return Err(e.into()),
    }
    crate::leases::revoke_due(&state).await?;
    crate::mcp::close_task(&state, caller.task.id).await;
    Ok(Json(
        json!({"run_id": caller.run.id.to_string(), "state": "revoked"}),
    ))
}
