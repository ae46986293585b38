//! Leases over HTTP.
//!
//! - `POST /v1/leases` (run token + DPoP): `{"engine", "role", "ttl"?,
//!   "params"?}` — decided as `credential.issue` on
//!   `Secret::"<engine>/<role>"`, then issued (see [`crate::leases`]). The
//!   answer carries the secrets, once (`Cache-Control: no-store`).
//! - `GET /v1/leases[?state=&task=&run=&limit=]` (admin).
//! - `GET /v1/leases/{id}` (admin).
//! - `DELETE /v1/leases/{id}`: an admin, or the run that holds it (run
//!   token + DPoP); revoked at once, retried by the reaper if the backend
//!   is down.
//! - `GET /v1/engines` (any user): the engines and their roles.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use warrant_store::{LeaseFilter, LeaseState};

use crate::auth::{Admin, Caller};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::leases;
use crate::run_auth::RunCaller;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    engine: String,
    role: String,
    ttl: Option<String>,
    #[serde(default)]
    params: Option<Value>,
}

pub async fn create(
    State(state): State<AppState>,
    caller: RunCaller,
    ApiJson(body): ApiJson<LeaseRequest>,
) -> Result<Response, ApiError> {
    for (what, v) in [("engine", &body.engine), ("role", &body.role)] {
        if v.is_empty() || v.len() > 128 {
            return Err(ApiError::InvalidBody(format!(
                "`{what}` must be 1 to 128 characters"
            )));
        }
    }
    let params = body.params.unwrap_or_else(|| json!({}));
    if !params.is_object() {
        return Err(ApiError::InvalidBody("`params` must be an object".into()));
    }
    let issued = leases::issue(
        &state,
        &caller,
        &body.engine,
        &body.role,
        body.ttl.as_deref(),
        &params,
    )
    .await?;
    let mut answer = leases::view(&issued.lease);
    answer["secrets"] = leases::secrets_json(&issued.secrets);
    let mut response = (axum::http::StatusCode::CREATED, Json(answer)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    task: Option<String>,
    run: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = LeaseFilter {
        state: q
            .state
            .as_deref()
            .map(|s| {
                LeaseState::parse(s).ok_or_else(|| {
                    ApiError::InvalidQuery(
                        "`state` must be issuing, active, revoking, revoked or irrevocable".into(),
                    )
                })
            })
            .transpose()?,
        task_id: q
            .task
            .as_deref()
            .map(|t| {
                t.parse()
                    .map_err(|_| ApiError::InvalidQuery("`task` is not a task id".into()))
            })
            .transpose()?,
        run_id: q
            .run
            .as_deref()
            .map(|r| {
                uuid::Uuid::try_parse(r)
                    .map_err(|_| ApiError::InvalidQuery("`run` is not a run id".into()))
            })
            .transpose()?,
        limit: crate::routes::tasks::parse_limit(q.limit.as_deref(), 1000)?,
    };
    let rows = state.store.list_leases(&filter).await?;
    Ok(Json(
        json!({"leases": rows.iter().map(leases::view).collect::<Vec<_>>()}),
    ))
}

fn lease_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(raw).map_err(|_| ApiError::InvalidQuery("not a lease id".into()))
}

pub async fn show(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let lease = state
        .store
        .get_lease(lease_id(&id)?)
        .await?
        .ok_or(ApiError::LeaseNotFound)?;
    Ok(Json(leases::view(&lease)))
}

/// An admin, or a run (for its own leases).
pub enum Revoker {
    Admin(String),
    Run(Box<RunCaller>),
}

impl FromRequestParts<AppState> for Revoker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let dpop = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() > 5 && v[..5].eq_ignore_ascii_case("dpop "));
        if dpop {
            Ok(Revoker::Run(Box::new(
                RunCaller::from_request_parts(parts, state).await?,
            )))
        } else {
            let Admin(caller) = Admin::from_request_parts(parts, state).await?;
            Ok(Revoker::Admin(caller.actor()))
        }
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    who: Revoker,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = lease_id(&id)?;
    let lease = state
        .store
        .get_lease(id)
        .await?
        .ok_or(ApiError::LeaseNotFound)?;
    let actor = match &who {
        Revoker::Admin(actor) => actor.clone(),
        Revoker::Run(run) => {
            if run.run.id != lease.run_id {
                return Err(ApiError::LeaseNotFound);
            }
            run.token.claims().sub.clone()
        }
    };
    match lease.state {
        LeaseState::Issuing
        | LeaseState::Active
        | LeaseState::Revoking
        | LeaseState::Irrevocable => {}
        LeaseState::Revoked => return Err(ApiError::LeaseClosed("revoked")),
    }
    if lease.state == LeaseState::Irrevocable {
        // A human says it was cleaned up by hand, or wants one more try.
        leases::retry_irrevocable(&state, id, &actor).await?;
    } else {
        leases::revoke_now(&state, id, "requested", &actor).await;
    }
    let now = state
        .store
        .get_lease(id)
        .await?
        .ok_or(ApiError::LeaseNotFound)?;
    Ok(Json(leases::view(&now)))
}

pub async fn engines(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(json!({
        "engines": state.engines.by_name.values().map(|e| json!({
            "name": e.name(),
            "type": e.kind(),
            "roles": e.roles(),
        })).collect::<Vec<_>>()
    }))
}

/// `GET /v1/engines/{name}/krl` (no authentication: a KRL holds serials,
/// nothing secret): the SSH engine's key revocation list, for sshd's
/// `RevokedKeys` (fetch it on a timer, e.g. every minute).
pub async fn krl(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ssh = state
        .engines
        .ssh
        .get(&name)
        .ok_or_else(|| ApiError::EngineNotFound(name.chars().take(64).collect()))?;
    let mut response = ssh.krl().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `GET /v1/engines/{name}/ca` (no authentication): the SSH engine's CA
/// public key, for sshd's `TrustedUserCAKeys`.
pub async fn ca(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<String, ApiError> {
    let ssh = state
        .engines
        .ssh
        .get(&name)
        .ok_or_else(|| ApiError::EngineNotFound(name.chars().take(64).collect()))?;
    Ok(format!("{}\n", ssh.ca_public_key()))
}

fn kv_engine<'a>(
    state: &'a AppState,
    name: &str,
) -> Result<&'a std::sync::Arc<warrant_engines::kv::KvEngine>, ApiError> {
    state
        .engines
        .kv
        .get(name)
        .ok_or_else(|| ApiError::EngineNotFound(name.chars().take(64).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    value: String,
}

impl std::fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBody { .. }")
    }
}

/// `PUT /v1/engines/{name}/secrets/{secret}` (admin): stores a static
/// secret, sealed under the engine's current master key. The value is
/// never logged or audited (the event names the secret and key id).
pub async fn put_secret(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path((name, secret)): Path<(String, String)>,
    ApiJson(body): ApiJson<SecretBody>,
) -> Result<Json<Value>, ApiError> {
    let kv = kv_engine(&state, &name)?;
    warrant_engines::kv::check_secret_name(&secret).map_err(ApiError::InvalidBody)?;
    if body.value.is_empty() || body.value.len() > 32 * 1024 {
        return Err(ApiError::InvalidBody(
            "`value` must be 1 byte to 32 KiB".into(),
        ));
    }
    let sealed = kv
        .keyring()
        .seal(&name, &secret, body.value.as_bytes())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = state.now();
    let created_at = state
        .store
        .get_kv_secret(&name, &secret)
        .await?
        .map_or(now, |s| s.created_at);
    let event = warrant_audit::NewEvent {
        time: now,
        kind: "kv.written".to_owned(),
        actor: caller.actor(),
        subject: format!("secret:{name}/{secret}"),
        task_id: None,
        data: json!({"engine": name, "secret": secret, "key_id": sealed.key_id}),
    };
    state
        .store
        .put_kv_secret(
            &warrant_store::SealedSecret {
                engine: name.clone(),
                name: secret.clone(),
                key_id: sealed.key_id.clone(),
                nonce: sealed.nonce,
                ciphertext: sealed.ciphertext,
                created_at,
                updated_at: now,
            },
            event,
        )
        .await?;
    Ok(Json(
        json!({"engine": name, "secret": secret, "key_id": sealed.key_id}),
    ))
}

/// `GET /v1/engines/{name}/secrets` (admin): names and key ids, never values.
pub async fn list_secrets(
    State(state): State<AppState>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    kv_engine(&state, &name)?;
    let rows = state.store.list_kv_secrets(&name).await?;
    Ok(Json(json!({"secrets": rows.iter().map(|s| json!({
        "name": s.name, "key_id": s.key_id, "created_at": s.created_at, "updated_at": s.updated_at,
    })).collect::<Vec<_>>()})))
}

/// `POST /v1/engines/{name}/rekey` (admin): reseals every secret of the
/// engine under its current master key (after a new key was added to the
/// keyring); the old key can be removed afterwards.
pub async fn rekey(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let kv = kv_engine(&state, &name)?;
    let current = kv.keyring().current_id().to_owned();
    let mut resealed = 0;
    for s in state.store.list_kv_secrets(&name).await? {
        if s.key_id == current {
            continue;
        }
        let fresh = kv
            .keyring()
            .reseal(
                &name,
                &s.name,
                &warrant_engines::kv::Sealed {
                    key_id: s.key_id.clone(),
                    nonce: s.nonce.clone(),
                    ciphertext: s.ciphertext.clone(),
                },
            )
            .map_err(|e| ApiError::Internal(format!("secret `{}`: {e}", s.name)))?;
        let now = state.now();
        let event = warrant_audit::NewEvent {
            time: now,
            kind: "kv.rekeyed".to_owned(),
            actor: caller.actor(),
            subject: format!("secret:{name}/{}", s.name),
            task_id: None,
            data: json!({"engine": name, "secret": s.name, "key_id": fresh.key_id, "previous_key_id": s.key_id}),
        };
        state
            .store
            .put_kv_secret(
                &warrant_store::SealedSecret {
                    key_id: fresh.key_id,
                    nonce: fresh.nonce,
                    ciphertext: fresh.ciphertext,
                    updated_at: now,
                    ..s
                },
                event,
            )
            .await?;
        resealed += 1;
    }
    Ok(Json(
        json!({"engine": name, "key_id": current, "resealed": resealed}),
    ))
}
