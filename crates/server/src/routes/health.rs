//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use warrant_store::StoreError;

use crate::error::ApiError;
use crate::state::AppState;

/// The process is alive; the store is not consulted.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers a query now.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await.map_err(|e| match e {
        StoreError::Unavailable(_) => e,
        other => StoreError::Unavailable(other.to_string()),
    })?;
    Ok(Json(
        json!({ "status": "ready", "store": state.store.backend() }),
    ))
}
