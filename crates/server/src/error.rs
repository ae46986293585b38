//! The one place that turns errors into HTTP responses.
//!
//! Every error the API can return is an [`ApiError`] variant, and one
//! `match` in [`ApiError::problem`] gives each its status, stable `code`
//! and title. Bodies are RFC 9457 `application/problem+json`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use thiserror::Error;
use warrant_core::{CoreError, Name, TaskId};
use warrant_store::StoreError;
use warrant_token::OAuthError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where the `type` URIs of problems live.
const TYPE_BASE: &str = "https://warrant.dev/problems/";

/// Everything a request can fail with. Messages are the problem's `detail`.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body does not have the expected shape: {0}")]
    InvalidBody(String),
    #[error("the request body must be JSON: send `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("the request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("{0}")]
    InvalidName(CoreError),
    #[error("{0}")]
    InvalidTier(CoreError),
    #[error("{0}")]
    InvalidTtl(String),
    #[error("{0}")]
    InvalidScope(String),
    #[error("invalid query parameter: {0}")]
    InvalidQuery(String),
    #[error("{0}")]
    InvalidTaskId(CoreError),
    #[error("agent `{0}` does not exist: register it first with `warrant agent add`")]
    UnknownAgent(Name),
    #[error("user `{0}` does not exist: create it first with `warrant user add`")]
    UnknownUser(Name),
    #[error("a user named `{0}` already exists: choose another name")]
    UserExists(Name),
    #[error("an agent named `{0}` already exists: choose another name")]
    AgentExists(Name),
    #[error("task `{0}` does not exist")]
    TaskNotFound(TaskId),
    #[error("user `{0}` does not exist")]
    UserNotFound(String),
    #[error("agent `{0}` does not exist")]
    AgentNotFound(String),
    #[error("run `{0}` does not exist")]
    RunNotFound(String),
    #[error("run `{0}` has already been revoked")]
    RunRevoked(String),
    #[error("task `{0}` has already ended: it can no longer be changed")]
    TaskEnded(TaskId),
    /// Past its `expires_at` but not yet ended by the reaper: as good as
    /// ended (`task_ended`).
    #[error("task `{0}` expired at {1}: it can no longer be changed")]
    TaskExpired(TaskId, jiff::Timestamp),
    /// The request did not complete within the server's request timeout.
    #[error(
        "the request did not complete within {0:?} and was abandoned: if it was a change, check whether it was applied before retrying"
    )]
    Timeout(std::time::Duration),
    #[error(
        "{0}: send `Authorization: Bearer <token>` with a valid API token (see `warrant login`)"
    )]
    Unauthenticated(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// An OpenID Connect ID token presented as the API credential was not
    /// accepted (signature, issuer, audience, expiry, claim rules).
    #[error(
        "the ID token is not accepted: {0}; sign in again with your identity provider and send the new ID token as `Authorization: Bearer <token>`"
    )]
    InvalidIdToken(String),
    /// The identity provider's keys cannot be fetched (fresh enough): its
    /// ID tokens are refused until they can.
    #[error(
        "the identity provider's keys cannot be fetched: sign-in with it is refused until they can; retry later"
    )]
    IdentityUnavailable,
    /// An ID token names a user that exists but is not linked to that
    /// identity (a local user, or another identity provider's).
    #[error(
        "user `{0}` already exists and is not linked to this sign-in identity: sign in with the identity it was created for, or ask an admin"
    )]
    IdentityConflict(String),
    /// A policy set that does not load: every error, `file:line:col: what`.
    #[error(
        "the policy set does not load, so the previous set keeps serving: {}; fix the files (`warrant policy validate DIR` shows the same) and reload again",
        .0.join("; ")
    )]
    InvalidPolicy(Vec<String>),
    #[error("there is no engine `{0}`: see `GET /v1/engines` for the configured ones")]
    EngineNotFound(String),
    #[error("{0}: see `GET /v1/engines` for the engine's roles")]
    RoleNotFound(String),
    #[error("{0}")]
    InvalidLeaseRequest(String),
    #[error("the engine's backend is unavailable, nothing was issued: {0}; retry later")]
    EngineUnavailable(String),
    #[error("the credential was refused by policy: {0}")]
    LeaseDenied(String),
    #[error(
        "the credential needs a human approval first: approval `{0}` is pending; ask again once it is approved (`warrant approvals show {0}`)"
    )]
    LeaseNeedsApproval(String),
    #[error("there is no lease with that id: see `warrant lease list`")]
    LeaseNotFound,
    #[error("the lease is {0}: there is nothing to revoke")]
    LeaseClosed(&'static str),
    #[error("there is no approval with that id: see `warrant approvals list`")]
    ApprovalNotFound,
    /// Voting on an approval that is not pending (or has expired).
    #[error("the approval is {0}: it takes no more answers; a new request makes a new approval")]
    ApprovalClosed(&'static str),
    /// No policy makes the caller an approver of this request.
    #[error(
        "you may not answer this approval: {0}; ask a member of the approvers group or an admin"
    )]
    NotAnApprover(String),
    /// A policy forbids the caller answering (separation of duties).
    #[error("you may not answer this approval: {0}")]
    ApprovalForbidden(String),
    #[error("`{0}` has already answered this approval: each approver answers once")]
    AlreadyVoted(String),
    /// A git credential (or its absence) refused at forward auth or a ref
    /// update check: answered with `WWW-Authenticate: Basic`, so git asks
    /// its credential helper.
    #[error("{0}")]
    GitCredentialInvalid(String),
    /// A run asked for a git credential for a repository its task does not
    /// cover.
    #[error("{0}: a git credential is only issued for a repository the task covers")]
    RepoNotInScope(String),
    /// A valid git credential presented for another repository.
    #[error(
        "the credential is for repository `{0}`, not `{1}`: git asks the credential helper for each repository (set `credential.useHttpPath=true`)"
    )]
    GitRepoMismatch(String, String),
    /// Not a git smart-HTTP request Warrant knows how to decide.
    #[error("{0}")]
    GitRequestUnknown(String),
    /// The policy (or the task's scope) refused a git request.
    #[error("refused by policy: {0}")]
    GitDenied(String),
    /// A git request that needs a human approval first.
    #[error(
        "this needs a human approval first: approval `{0}` is pending; try again once it is approved (`warrant approvals show {0}`)"
    )]
    GitNeedsApproval(String),
    /// The approved approval a decision was about to use was used (or
    /// expired) at the same moment.
    #[error(
        "the approval for this request was used by another decision at the same moment: ask again"
    )]
    ApprovalRace,
    /// Any store error. Only `Unavailable` and `Rejected` are expected
    /// here: handlers turn the `NotFound`/`Conflict`/`InvalidState` cases
    /// they anticipate into specific variants first, so one reaching this
    /// point is a bug.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("there is no such endpoint: see docs/api.md for the routes")]
    NotFound,
    #[error("this endpoint does not support the request's method")]
    MethodNotAllowed,
    /// A refusal at the token endpoint, answered in RFC 6749 §5.2 form:
    /// `{"error","error_description"}`. The description never holds a
    /// secret (claims, tokens and proofs are never echoed).
    #[error("{1}")]
    OAuth(OAuthError, String),
    /// A run token (or its DPoP proof) refused at a protected endpoint:
    /// RFC 6750 §3 / RFC 9449 §7.1, with a `WWW-Authenticate: DPoP` challenge.
    #[error("{1}")]
    RunToken(OAuthError, String),
    /// A bug. The message goes to the log, never to the client.
    #[error("{0}")]
    Internal(String),
}

/// The fixed parts of a problem.
struct Kind {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
}

const fn kind(status: StatusCode, code: &'static str, title: &'static str) -> Kind {
    Kind {
        status,
        code,
        title,
    }
}

impl ApiError {
    /// INVARIANT: the only mapping from errors to status and `code`.
    fn kind(&self) -> Kind {
        use StatusCode as S;
        match self {
            ApiError::MalformedJson(_) => kind(S::BAD_REQUEST, "malformed_json", "malformed JSON"),
            ApiError::InvalidBody(_) => kind(
                S::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "invalid request body",
            ),
            ApiError::UnsupportedMediaType => kind(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "unsupported media type",
            ),
            ApiError::PayloadTooLarge => kind(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "payload too large",
            ),
            ApiError::InvalidName(_) => {
                kind(S::UNPROCESSABLE_ENTITY, "invalid_name", "invalid name")
            }
            ApiError::InvalidTier(_) => {
                kind(S::UNPROCESSABLE_ENTITY, "invalid_tier", "invalid tier")
            }
            ApiError::InvalidTtl(_) => kind(S::UNPROCESSABLE_ENTITY, "invalid_ttl", "invalid ttl"),
            ApiError::InvalidScope(_) => {
                kind(S::UNPROCESSABLE_ENTITY, "invalid_scope", "invalid scope")
            }
            ApiError::InvalidQuery(_) => kind(S::BAD_REQUEST, "invalid_query", "invalid query"),
            ApiError::InvalidTaskId(_) => {
                kind(S::BAD_REQUEST, "invalid_task_id", "invalid task id")
            }
            ApiError::UnknownAgent(_) => {
                kind(S::UNPROCESSABLE_ENTITY, "unknown_agent", "unknown agent")
            }
            ApiError::UnknownUser(_) => {
                kind(S::UNPROCESSABLE_ENTITY, "unknown_user", "unknown user")
            }
            ApiError::UserExists(_) => kind(S::CONFLICT, "user_exists", "user exists"),
            ApiError::AgentExists(_) => kind(S::CONFLICT, "agent_exists", "agent exists"),
            ApiError::TaskNotFound(_) => kind(S::NOT_FOUND, "task_not_found", "task not found"),
            ApiError::UserNotFound(_) => kind(S::NOT_FOUND, "user_not_found", "user not found"),
            ApiError::AgentNotFound(_) => kind(S::NOT_FOUND, "agent_not_found", "agent not found"),
            ApiError::RunNotFound(_) => kind(S::NOT_FOUND, "run_not_found", "run not found"),
            ApiError::RunRevoked(_) => kind(S::CONFLICT, "run_revoked", "run revoked"),
            ApiError::TaskEnded(_) | ApiError::TaskExpired(..) => {
                kind(S::CONFLICT, "task_ended", "task ended")
            }
            ApiError::Timeout(_) => kind(S::SERVICE_UNAVAILABLE, "timeout", "request timed out"),
            ApiError::Unauthenticated(_) => {
                kind(S::UNAUTHORIZED, "unauthenticated", "unauthenticated")
            }
            ApiError::Forbidden(_) => kind(S::FORBIDDEN, "forbidden", "forbidden"),
            ApiError::InvalidIdToken(_) => {
                kind(S::UNAUTHORIZED, "invalid_id_token", "ID token not accepted")
            }
            ApiError::IdentityUnavailable => kind(
                S::SERVICE_UNAVAILABLE,
                "identity_unavailable",
                "identity provider unavailable",
            ),
            ApiError::ApprovalRace => kind(S::CONFLICT, "approval_conflict", "approval conflict"),
            ApiError::EngineNotFound(_) => {
                kind(S::NOT_FOUND, "engine_not_found", "engine not found")
            }
            ApiError::RoleNotFound(_) => kind(S::NOT_FOUND, "role_not_found", "role not found"),
            ApiError::InvalidLeaseRequest(_) => kind(
                S::UNPROCESSABLE_ENTITY,
                "invalid_lease_request",
                "invalid lease request",
            ),
            ApiError::EngineUnavailable(_) => kind(
                S::SERVICE_UNAVAILABLE,
                "engine_unavailable",
                "engine unavailable",
            ),
            ApiError::LeaseDenied(_) => kind(S::FORBIDDEN, "lease_denied", "lease denied"),
            ApiError::LeaseNeedsApproval(_) => {
                kind(S::FORBIDDEN, "approval_required", "approval required")
            }
            ApiError::LeaseNotFound => kind(S::NOT_FOUND, "lease_not_found", "lease not found"),
            ApiError::GitCredentialInvalid(_) => kind(
                S::UNAUTHORIZED,
                "invalid_git_credential",
                "git credential not accepted",
            ),
            ApiError::RepoNotInScope(_) => {
                kind(S::FORBIDDEN, "repo_not_in_scope", "repository not in scope")
            }
            ApiError::GitRepoMismatch(..) => kind(
                S::FORBIDDEN,
                "git_repo_mismatch",
                "credential for another repository",
            ),
            ApiError::GitRequestUnknown(_) => kind(
                S::FORBIDDEN,
                "git_request_unknown",
                "not a known git request",
            ),
            ApiError::GitDenied(_) => kind(S::FORBIDDEN, "git_denied", "git request denied"),
            ApiError::GitNeedsApproval(_) => {
                kind(S::FORBIDDEN, "approval_required", "approval required")
            }
            ApiError::LeaseClosed(_) => kind(S::CONFLICT, "lease_closed", "lease closed"),
            ApiError::ApprovalNotFound => {
                kind(S::NOT_FOUND, "approval_not_found", "approval not found")
            }
            ApiError::ApprovalClosed(_) => kind(S::CONFLICT, "approval_closed", "approval closed"),
            ApiError::NotAnApprover(_) => kind(S::FORBIDDEN, "not_an_approver", "not an approver"),
            ApiError::ApprovalForbidden(_) => {
                kind(S::FORBIDDEN, "approval_forbidden", "approval forbidden")
            }
            ApiError::AlreadyVoted(_) => kind(S::CONFLICT, "already_voted", "already voted"),
            ApiError::InvalidPolicy(_) => {
                kind(S::UNPROCESSABLE_ENTITY, "invalid_policy", "invalid policy")
            }
            ApiError::IdentityConflict(_) => {
                kind(S::FORBIDDEN, "identity_conflict", "identity not linked")
            }
            ApiError::Store(StoreError::Unavailable(_)) => kind(
                S::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "store unavailable",
            ),
            // Retrying the same request cannot succeed: it is the request's
            // content the database refused (input validation missed it).
            ApiError::Store(StoreError::Rejected(_)) => kind(
                S::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "invalid request body",
            ),
            ApiError::Store(
                StoreError::NotFound(_)
                | StoreError::Conflict(_)
                | StoreError::InvalidState(_)
                | StoreError::Corrupt(_)
                | StoreError::Config(_),
            )
            | ApiError::Internal(_) => kind(S::INTERNAL_SERVER_ERROR, "internal", "internal error"),
            ApiError::OAuth(code, _) => oauth_kind(*code, false),
            ApiError::RunToken(code, _) => oauth_kind(*code, true),
            ApiError::NotFound => kind(S::NOT_FOUND, "not_found", "not found"),
            ApiError::MethodNotAllowed => kind(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            ),
        }
    }

    /// The stable `code` of this error.
    pub fn code(&self) -> &'static str {
        self.kind().code
    }

    /// The `detail` shown to the client: what is wrong and how to fix it.
    /// Internal errors and store failures say nothing about the internals.
    fn detail(&self) -> String {
        match self {
            ApiError::Store(StoreError::Unavailable(_)) => {
                "the store cannot be reached: nothing was changed; retry later".to_owned()
            }
            ApiError::Store(StoreError::Rejected(_)) => {
                "the store refused a value in the request: nothing was changed; check the text fields for unusual characters"
                    .to_owned()
            }
            ApiError::Store(_) | ApiError::Internal(_) => {
                "an internal error occurred: nothing more is said here; the server log has the details"
                    .to_owned()
            }
            other => other.to_string(),
        }
    }
}

/// Status of an OAuth error: at the token endpoint (RFC 6749 §5.2) every
/// client error is 400 but `invalid_token`; at a protected endpoint
/// (RFC 6750 §3.1, RFC 9449 §7.1) a bad token or proof is 401.
fn oauth_kind(code: OAuthError, at_resource: bool) -> Kind {
    use StatusCode as S;
    let status = match code {
        OAuthError::ServerError => S::INTERNAL_SERVER_ERROR,
        OAuthError::TemporarilyUnavailable => S::SERVICE_UNAVAILABLE,
        OAuthError::InvalidToken => S::UNAUTHORIZED,
        OAuthError::InvalidDpopProof if at_resource => S::UNAUTHORIZED,
        OAuthError::InvalidRequest
        | OAuthError::InvalidGrant
        | OAuthError::UnsupportedGrantType
        | OAuthError::InvalidScope
        | OAuthError::InvalidDpopProof => S::BAD_REQUEST,
    };
    kind(status, code.as_str(), code.as_str())
}

/// The RFC 6749 §5.2 error body.
#[derive(Debug, Serialize)]
struct OAuthBody<'a> {
    error: &'static str,
    error_description: &'a str,
}

/// The RFC 9457 body.
#[derive(Debug, Serialize)]
struct Problem {
    r#type: String,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        match &self {
            ApiError::Store(StoreError::Unavailable(why)) => {
                tracing::warn!(error = %why, "store unavailable");
            }
            ApiError::Store(StoreError::Rejected(why)) => {
                tracing::warn!(error = %why, "the store refused a value that validation let through");
            }
            ApiError::Timeout(after) => tracing::warn!(?after, "request timed out"),
            ApiError::Store(e) => tracing::error!(error = %e, "unexpected store error"),
            ApiError::Internal(why) => tracing::error!(error = %why, "internal error"),
            ApiError::OAuth(OAuthError::ServerError, why)
            | ApiError::RunToken(OAuthError::ServerError, why) => {
                tracing::error!(error = %why, "token service error");
            }
            _ => tracing::debug!(code = kind.code, detail = %self, "request refused"),
        }
        if let ApiError::OAuth(_, description) | ApiError::RunToken(_, description) = &self {
            let shown = match kind.status {
                StatusCode::INTERNAL_SERVER_ERROR => {
                    "an internal error occurred: nothing was issued"
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    "the store cannot be reached: nothing was issued; retry later"
                }
                _ => description.as_str(),
            };
            let body = OAuthBody {
                error: kind.code,
                error_description: shown,
            };
            let mut response = (kind.status, Json(body)).into_response();
            let headers = response.headers_mut();
            // RFC 6749 §5.1: token responses, errors included, are never cached.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            if kind.status == StatusCode::UNAUTHORIZED {
                let challenge = format!("DPoP error=\"{}\", algs=\"ES256 EdDSA\"", kind.code);
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            return response;
        }
        let body = Problem {
            r#type: format!("{TYPE_BASE}{}", kind.code),
            title: kind.title,
            status: kind.status.as_u16(),
            detail: self.detail(),
            code: kind.code,
        };
        let mut response = (kind.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if kind.status == StatusCode::UNAUTHORIZED {
            // git only asks its credential helper after a `Basic` challenge.
            let challenge = match &self {
                ApiError::GitCredentialInvalid(_) => "Basic realm=\"warrant\"",
                _ => "Bearer realm=\"warrant\"",
            };
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

/// The innermost useful message of an extractor rejection: the serde error
/// (with its path) rather than axum's capitalized summary.
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::InvalidBody(cause(&e)),
            JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(cause(&e)),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::MalformedJson(cause(&other)),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::InvalidQuery(cause(&rejection))
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        // Path parameters are plain strings here, so this means a bad
        // percent-encoding: for the client it is simply no such resource.
        tracing::debug!(error = %cause(&rejection), "path rejected");
        ApiError::NotFound
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use warrant_store::StoreError;

    use super::{ApiError, PROBLEM_JSON};

    // A value PostgreSQL refused (NUL in text) answered 503
    // store_unavailable, telling clients to retry what can never succeed.
    #[test]
    fn a_rejected_value_is_invalid_body_and_says_nothing_internal() {
        let err = ApiError::Store(StoreError::Rejected(
            "sqlstate 22021: invalid byte sequence for encoding \"UTF8\": 0x00".into(),
        ));
        assert_eq!(err.code(), "invalid_body");
        let detail = err.detail();
        assert!(
            !detail.contains("sqlstate") && !detail.contains("UTF8"),
            "{detail}"
        );
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()["content-type"], PROBLEM_JSON);
    }

    #[test]
    fn a_timeout_is_a_503_timeout_problem() {
        let err = ApiError::Timeout(std::time::Duration::from_secs(30));
        assert_eq!(err.code(), "timeout");
        assert!(err.detail().contains("30s"), "{}", err.detail());
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["content-type"], PROBLEM_JSON);
    }
}
