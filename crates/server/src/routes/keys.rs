//! Signing-key rotation, for admins.
//!
//! `POST /v1/keys/rotate` generates a new Ed25519 key, writes it to
//! `<data-dir>/keys/<kid>.pem`, records it as the signing key (retiring the
//! current one) with its `keys.added` and `keys.rotated` events in one
//! transaction, then switches this server's signer: no restart. The retired
//! key stays in the JWKS until every token it signed has expired.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::auth::Admin;
use crate::bootstrap::{self, BootstrapError};
use crate::error::ApiError;
use crate::state::AppState;

pub const ROTATE_PATH: &str = "/v1/keys/rotate";

pub async fn rotate(
    State(state): State<AppState>,
    Admin(caller): Admin,
) -> Result<Json<Value>, ApiError> {
    let issuer = &state.issuer;
    let Some(keys_dir) = issuer.keys_dir.clone() else {
        return Err(ApiError::Internal(
            "this server has no keys directory to rotate into".into(),
        ));
    };
    // One rotation at a time: the retired kid must be the one that signed.
    let _rotating = issuer.rotating.lock().await;
    let previous = issuer.key();
    let now = state.now();
    let key = bootstrap::rotate_key(
        &*state.store,
        now,
        &keys_dir,
        previous.kid(),
        &caller.actor(),
    )
    .await
    .map_err(|e| match e {
        BootstrapError::Store(e) => ApiError::Store(e),
        other => ApiError::Internal(other.to_string()),
    })?;
    let kid = key.kid().to_owned();
    issuer.set_key(std::sync::Arc::new(key));
    tracing::info!(kid = %kid, retired = previous.kid(), by = %caller.user.name, "signing key rotated");
    Ok(Json(json!({
        "kid": kid,
        "retired_kid": previous.kid(),
        "retired_at": now,
        "retired_published_until": issuer.published_until(now),
    })))
}
