//! `POST /v1/introspect`: RFC 7662 token introspection, so a resource
//! server can ask whether a run token is still good without verifying it
//! itself or learning that its task ended.
//!
//! The caller authenticates with a user API token (any user for now;
//! resource servers get their own credentials later). Every failure of the
//! token itself (malformed, bad signature, unknown `kid`, expired, run
//! revoked, task ended) is `{"active":false}` with no reason: introspection
//! tells the resource server whether to honour the token, not why not. A
//! store failure is an error (`503`), never an answer, so a token is never
//! called active without the store agreeing.

use axum::Json;
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use warrant_token::run::{RunTokenExpectations, Unverified};
use warrant_token::{OAuthError, RunToken, RunTokenError};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The path of this endpoint.
pub const INTROSPECT_PATH: &str = "/v1/introspect";
/// Longer tokens are inactive without being parsed.
const MAX_TOKEN_LEN: usize = 8 * 1024;

pub async fn introspect(
    _caller: Caller,
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let Form(params) = Form::<Vec<(String, String)>>::from_request(request, &())
        .await
        .map_err(|_| {
            ApiError::OAuth(
                OAuthError::InvalidRequest,
                "the body must be `application/x-www-form-urlencoded` parameters".into(),
            )
        })?;
    let mut tokens = params.iter().filter(|(k, _)| k == "token");
    let token = tokens.next().map(|(_, v)| v.as_str()).ok_or_else(|| {
        ApiError::OAuth(
            OAuthError::InvalidRequest,
            "the parameter `token` is required".into(),
        )
    })?;
    if tokens.next().is_some() {
        return Err(ApiError::OAuth(
            OAuthError::InvalidRequest,
            "the parameter `token` is repeated".into(),
        ));
    }
    let body = match check(&state, token).await? {
        Some(token) => active(&token),
        None => match service_token(&state, token).await? {
            Some(answer) => answer,
            None => json!({ "active": false }),
        },
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The token if it is live now, `None` if it is not; `Err` only when the
/// answer cannot be known (store failure or a bug).
async fn check(state: &AppState, raw: &str) -> Result<Option<RunToken>, ApiError> {
    if raw.is_empty() || raw.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let issuer = &state.issuer;
    let keys = issuer.jwks(&*state.store, state.clock.now()).await?;
    let token = match Unverified::<RunToken>::new(raw).verify(
        &keys,
        &RunTokenExpectations {
            issuer: issuer.issuer(),
            audience: issuer.audience(),
            trust_domain: &issuer.trust_domain,
            leeway: issuer.dpop.max_future_skew,
        },
        &*state.clock,
    ) {
        Ok(token) => token,
        Err(RunTokenError::Internal(e)) => return Err(ApiError::Internal(e)),
        Err(_) => return Ok(None),
    };
    let now = state.now();
    let Some(run) = state.store.get_run(token.spiffe_id().run.0).await? else {
        return Ok(None);
    };
    let claims = token.claims();
    // The same checks as a run token presented to Warrant (run_auth.rs).
    if !run.is_live_at(now)
        || run.task_id != claims.task
        || run.agent != claims.agent
        || !warrant_crypto::constant_time_eq(run.jkt.as_bytes(), claims.cnf.jkt.as_bytes())
    {
        return Ok(None);
    }
    let Some(task) = state.store.get_task(run.task_id).await? else {
        return Ok(None);
    };
    if !task.is_live() || task.expires_at <= now {
        return Ok(None);
    }
    Ok(Some(token))
}

/// A service token from a `jwt` engine (`typ: at+jwt`, signed with
/// Warrant's key): active while its lease (`jti`) is active, unexpired, and
/// its task live. Anything else — another signature, issuer, type, a
/// revoked or expired lease — is inactive.
async fn service_token(state: &AppState, raw: &str) -> Result<Option<Value>, ApiError> {
    use warrant_crypto::jws::{JwsAlg, decode_header, verify};
    if raw.is_empty() || raw.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let Ok(header) = decode_header(raw) else {
        return Ok(None);
    };
    if !header.typ_is("at+jwt") {
        return Ok(None);
    }
    let keys = state.issuer.jwks(&*state.store, state.clock.now()).await?;
    let Some(key) = header.kid.as_deref().and_then(|kid| keys.find(kid)) else {
        return Ok(None);
    };
    let Ok(verified) = verify(raw, key, &[JwsAlg::EdDSA]) else {
        return Ok(None);
    };
    let c = &verified.claims;
    let now = state.now().as_second();
    let leeway = state.issuer.dpop.max_future_skew.as_secs();
    let num = |k: &str| c.get(k).and_then(Value::as_i64);
    if c.get("iss").and_then(Value::as_str) != Some(state.issuer.issuer())
        || num("exp").is_none_or(|exp| exp + leeway <= now)
        || num("nbf").is_some_and(|nbf| nbf - leeway > now)
    {
        return Ok(None);
    }
    let Some(lease_id) = c
        .get("jti")
        .and_then(Value::as_str)
        .and_then(|j| uuid::Uuid::try_parse(j).ok())
    else {
        return Ok(None);
    };
    let Some(lease) = state.store.get_lease(lease_id).await? else {
        return Ok(None);
    };
    if lease.state != warrant_store::LeaseState::Active || lease.expires_at <= state.now() {
        return Ok(None);
    }
    let Some(task) = state.store.get_task(lease.task_id).await? else {
        return Ok(None);
    };
    if !task.is_live() || task.expires_at <= state.now() {
        return Ok(None);
    }
    let mut answer = json!({
        "active": true,
        "token_type": if c.contains_key("cnf") { "DPoP" } else { "Bearer" },
        "lease_id": lease_id.to_string(),
        "engine": lease.engine,
        "role": lease.role,
    });
    for k in [
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "task",
        "run",
        "delegator",
        "cnf",
        "scope",
    ] {
        if let Some(v) = c.get(k) {
            answer[k] = v.clone();
        }
    }
    Ok(Some(answer))
}

fn active(token: &RunToken) -> Value {
    let c = token.claims();
    json!({
        "active": true,
        "token_type": "DPoP",
        "sub": c.sub,
        "task": c.task,
        "agent": c.agent,
        "delegator": c.delegator,
        "exp": c.exp,
        "iat": c.iat,
        "iss": c.iss,
        "aud": c.aud,
        "jti": c.jti,
        "cnf": { "jkt": c.cnf.jkt },
    })
}
