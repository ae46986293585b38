//! The HTTP routes, one module per resource.

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, PROBLEM_JSON};
use crate::state::AppState;

pub(crate) mod agents;
pub(crate) mod approvals;
mod audit;
pub(crate) mod decisions;
pub(crate) mod exchange;
mod forward;
pub(crate) mod git;
mod health;
pub(crate) mod introspect;
pub(crate) mod jwt_bearer;
mod keys;
mod kill;
pub(crate) mod leases;
pub(crate) mod policies;
pub(crate) mod refresh;
mod revocations;
mod runs;
pub(crate) mod tasks;
pub(crate) mod token;
mod users;
mod wellknown;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The whole API. Public so tests can serve it with a state they built
/// (for instance with a `FakeClock`).
pub fn router(state: AppState) -> Router {
    let request_timeout = state.request_timeout;
    // The MCP gateway: one streamable-HTTP service per upstream, every
    // request authenticated with the run token first.
    let mut mcp = Router::new();
    for upstream in state.mcp_servers.iter() {
        let gateway = warrant_gateway::Gateway::new(
            upstream.clone(),
            state.mcp_sessions.clone(),
            warrant_gateway::ServiceOptions::default(),
        );
        mcp = mcp.nest_service(
            &format!("/mcp/{}", gateway.name()),
            gateway.streamable_service(),
        );
    }
    let mcp = mcp.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::mcp::authenticate,
    ));
    Router::new()
        .merge(mcp)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/users", post(users::create).get(users::list))
        .route("/v1/users/me", get(users::me))
        .route("/v1/agents", post(agents::create).get(agents::list))
        .route("/v1/agents/{name}", get(agents::show))
        .route("/v1/tasks", post(tasks::create).get(tasks::list))
        .route("/v1/tasks/{id}", get(tasks::show))
        .route("/v1/tasks/{id}/end", post(tasks::end))
        .route("/v1/tasks/{id}/narrow", post(tasks::narrow))
        .route("/v1/tasks/{id}/revoke", post(tasks::revoke))
        .route("/v1/runs/{id}/revoke", post(kill::revoke_run))
        .route("/v1/kill", post(kill::kill))
        .route(keys::ROTATE_PATH, post(keys::rotate))
        .route("/v1/audit", get(audit::list))
        .route("/v1/decisions", post(decisions::decide))
        .route(git::CREDENTIALS_PATH, post(git::credentials))
        .route(git::REF_UPDATES_PATH, post(git::ref_updates))
        .route(
            forward::FORWARD_PATH,
            get(forward::forward).post(forward::forward),
        )
        .route("/v1/authz/forward/{*path}", any(forward::forward))
        .route("/v1/leases", post(leases::create).get(leases::list))
        .route("/v1/leases/{id}", get(leases::show).delete(leases::revoke))
        .route("/v1/engines", get(leases::engines))
        .route("/v1/engines/{name}/krl", get(leases::krl))
        .route("/v1/engines/{name}/ca", get(leases::ca))
        .route("/v1/engines/{name}/secrets", get(leases::list_secrets))
        .route(
            "/v1/engines/{name}/secrets/{secret}",
            axum::routing::put(leases::put_secret),
        )
        .route("/v1/engines/{name}/rekey", post(leases::rekey))
        .route("/v1/runs/me/end", post(runs::end_me))
        .route("/v1/mcp/servers", get(crate::mcp::list_servers))
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{id}", get(approvals::show))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/deny", post(approvals::deny))
        .route(
            "/v1/approvals/{id}/attestation",
            get(approvals::attestation),
        )
        .route("/v1/policies", get(policies::show))
        .route(policies::RELOAD_PATH, post(policies::reload))
        .route(wellknown::JWKS_PATH, get(wellknown::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(wellknown::openid_configuration),
        )
        .route(token::TOKEN_PATH, post(token::token))
        .route("/v1/runs/me", get(runs::me))
        .route("/v1/revocations", get(revocations::list))
        .route("/v1/revocations/stream", get(revocations::stream))
        .route(introspect::INTROSPECT_PATH, post(introspect::introspect))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(from_fn_with_state(request_timeout, timeout))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // Outside the limit layer: it answers an oversize Content-Length
        // itself, in plain text.
        .layer(map_response(problem_for_plain_413))
        .layer(TraceLayer::new_for_http())
}

/// Abandons a request (handler and body reading alike) that runs longer
/// than `after`, answering `503 timeout` as a problem. Dropping the handler
/// rolls back a store transaction that has not committed.
async fn timeout(State(after): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(after, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(after).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Replaces the limit layer's own plain-text 413 with our problem.
async fn problem_for_plain_413(response: Response) -> Response {
    let is_problem = response.headers().get(header::CONTENT_TYPE)
        == Some(&HeaderValue::from_static(PROBLEM_JSON));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_problem {
        ApiError::PayloadTooLarge.into_response()
    } else {
        response
    }
}
