//! Discovery: `/.well-known/jwks.json` and `/.well-known/openid-configuration`,
//! so any JWT library can verify run tokens without Warrant's code.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use warrant_token::dpop::DPOP_ALGS;

use crate::error::ApiError;
use crate::routes::introspect::INTROSPECT_PATH;
use crate::routes::refresh::GRANT_REFRESH;
use crate::routes::token::{GRANT_JWT_BEARER, GRANT_TASK_CLAIM, GRANT_TOKEN_EXCHANGE, TOKEN_PATH};
use crate::state::AppState;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// The public keys run tokens are signed with. A store error is a 503,
/// never an empty set (a verifier would then refuse every token, but
/// could also cache the empty answer).
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let set = state.issuer.jwks(&*state.store, state.clock.now()).await?;
    let mut response = Json(set.to_json()).into_response();
    // Short: a rotated-in key must reach verifiers before it signs much.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

pub async fn openid_configuration(State(state): State<AppState>) -> Json<serde_json::Value> {
    let issuer = &state.issuer;
    let algs: Vec<&str> = DPOP_ALGS.iter().map(|a| a.as_str()).collect();
    Json(json!({
        "issuer": issuer.issuer(),
        "jwks_uri": issuer.url(JWKS_PATH),
        "token_endpoint": issuer.url(TOKEN_PATH),
        "introspection_endpoint": issuer.url(INTROSPECT_PATH),
        "grant_types_supported": [GRANT_TASK_CLAIM, GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE, GRANT_REFRESH],
        "token_endpoint_auth_methods_supported": ["none"],
        "dpop_signing_alg_values_supported": algs,
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "subject_types_supported": ["public"],
        "response_types_supported": [],
    }))
}
