//! `GET /v1/policies` and `POST /v1/policies/reload` (admin): which policy
//! set is live, and loading the configured directories again without a
//! restart (SIGHUP does the same). A set that does not load is refused with
//! every error (file, line, column) and the previous set keeps serving; both
//! outcomes are audited.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use warrant_audit::NewEvent;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::policy::Policies;
use crate::state::AppState;

pub const RELOAD_PATH: &str = "/v1/policies/reload";

fn describe(policies: &Policies) -> Value {
    let live = policies.live();
    json!({
        "policy_set": live.fingerprint(),
        "policies": live.policy_ids(),
        "source": policies.config.dir.as_ref().map_or_else(
            || "default pack".to_owned(),
            |d| d.display().to_string(),
        ),
        "shadow": policies.shadow().map(|s| json!({
            "policy_set": s.fingerprint(),
            "policies": s.policy_ids(),
        })),
    })
}

pub async fn show(State(state): State<AppState>, _admin: Admin) -> Json<Value> {
    Json(describe(&state.policies))
}

pub async fn reload(State(state): State<AppState>, admin: Admin) -> Result<Json<Value>, ApiError> {
    reload_as(&state, &admin.0.actor()).await.map(Json)
}

/// Reloads as `actor` (`user:<name>`, or `system:sighup`) and audits it.
pub async fn reload_as(state: &AppState, actor: &str) -> Result<Value, ApiError> {
    let _one = state.policies.reloading.lock().await;
    let before = state.policies.live().fingerprint().to_owned();
    match state.policies.reload() {
        Ok(loaded) => {
            let event = NewEvent {
                time: state.now(),
                kind: "policy.loaded".to_owned(),
                actor: actor.to_owned(),
                subject: "policy".to_owned(),
                task_id: None,
                data: json!({
                    "policy_set": loaded.live.fingerprint(),
                    "previous_policy_set": before,
                    "policies": loaded.live.policy_ids().len(),
                    "shadow_policy_set": loaded.shadow.as_ref().map(|s| s.fingerprint().to_owned()),
                }),
            };
            state.store.append_audit(vec![event]).await?;
            tracing::info!(policy_set = loaded.live.fingerprint(), "policies reloaded");
            Ok(describe(&state.policies))
        }
        Err(errors) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            let event = NewEvent {
                time: state.now(),
                kind: "policy.refused".to_owned(),
                actor: actor.to_owned(),
                subject: "policy".to_owned(),
                task_id: None,
                data: json!({"errors": errors, "policy_set": before}),
            };
            if let Err(e) = state.store.append_audit(vec![event]).await {
                tracing::warn!(error = %e, "cannot record a refused policy reload");
            }
            tracing::warn!(errors = ?errors, "policy reload refused: the previous set keeps serving");
            Err(ApiError::InvalidPolicy(errors))
        }
    }
}
