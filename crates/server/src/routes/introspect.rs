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
        None => json!({ "active": false }),
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
