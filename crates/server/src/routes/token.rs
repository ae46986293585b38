//! `POST /v1/token`: the OAuth token endpoint. Four grants: the task claim
//! (`urn:warrant:grant-type:task-claim`), an RFC 7523 workload JWT
//! ([`crate::routes::jwt_bearer`]), RFC 8693 token exchange
//! ([`crate::routes::exchange`]) and run-token refresh
//! ([`crate::routes::refresh`]), always with a DPoP proof.
//!
//! Every refusal is answered in RFC 6749 §5.2 form and leaves a
//! `token.refused` audit event naming the failed check (never the claim or
//! the proof). A refusal whose event cannot be written is answered
//! `temporarily_unavailable`: nothing is issued without its audit record.

use axum::Json;
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use warrant_core::{Task, TaskId};
use warrant_store::{Run, RunState, StoreError};
use warrant_token::dpop::{DpopError, ProofRequest, VerifiedProof, verify_proof};
use warrant_token::run::{MintParams, mint};
use warrant_token::{OAuthError, RunId};

use crate::error::ApiError;
use crate::events::{self, RefusalContext};
use crate::routes::exchange::{ExchangeRequest, exchange};
use crate::routes::jwt_bearer::{JwtBearerRequest, jwt_bearer};
use crate::routes::refresh::{GRANT_REFRESH, refresh};
use crate::state::AppState;

/// The task-claim grant type.
pub const GRANT_TASK_CLAIM: &str = "urn:warrant:grant-type:task-claim";
/// RFC 7523 workload JWT (see [`crate::routes::jwt_bearer`]).
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// RFC 8693 token exchange (see [`crate::routes::exchange`]).
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The path of this endpoint (what a proof's `htu` names).
pub const TOKEN_PATH: &str = "/v1/token";
/// Longest claim accepted before hashing; real ones are 47 characters.
const MAX_CLAIM_LEN: usize = 256;

/// Why a grant was refused: the OAuth code, the audited check name, and
/// the description the client sees.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub code: OAuthError,
    pub check: &'static str,
    pub description: String,
}

impl Refusal {
    pub(crate) fn new(
        code: OAuthError,
        check: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            code,
            check,
            description: description.into(),
        }
    }

    /// A store failure: fail closed with `temporarily_unavailable` (or
    /// `server_error` for corruption and bugs).
    pub(crate) fn store(e: &StoreError) -> Self {
        tracing::warn!(error = %e, "store error while checking a token or grant");
        match e {
            StoreError::Unavailable(_) => Self::new(
                OAuthError::TemporarilyUnavailable,
                "store_unavailable",
                "the store cannot be reached",
            ),
            _ => Self::new(OAuthError::ServerError, "store_error", "internal error"),
        }
    }

    pub(crate) fn dpop(e: &DpopError) -> Self {
        let check = match e {
            DpopError::Malformed(_) => "dpop_malformed",
            DpopError::WrongType => "dpop_type",
            DpopError::AlgorithmNotAllowed(_) => "dpop_algorithm",
            DpopError::MissingJwk | DpopError::PrivateKeyInJwk => "dpop_jwk",
            DpopError::BadSignature => "dpop_signature",
            DpopError::MissingClaim(_) => "dpop_claims",
            DpopError::MethodMismatch(_) => "dpop_htm",
            DpopError::UrlMismatch(_) => "dpop_htu",
            DpopError::Stale | DpopError::IssuedInFuture => "dpop_iat",
            DpopError::MissingAccessTokenHash | DpopError::AccessTokenHashMismatch => "dpop_ath",
            DpopError::Replayed => "dpop_replayed",
            DpopError::ReplayCacheFull => "dpop_replay_cache_full",
            DpopError::Internal(_) => "dpop_internal",
        };
        Self::new(e.oauth_error(), check, e.to_string())
    }
}

/// The one `DPoP` header of a request.
pub(crate) fn dpop_header(headers: &HeaderMap) -> Result<&str, Refusal> {
    let mut values = headers.get_all("dpop").iter();
    let missing = || {
        Refusal::new(
            OAuthError::InvalidDpopProof,
            "dpop_missing",
            "a `DPoP` header with one proof is required",
        )
    };
    let value = values.next().ok_or_else(missing)?;
    if values.next().is_some() {
        return Err(missing());
    }
    value.to_str().map_err(|_| missing())
}

/// Verifies a proof for `method` and `path` and records its `jti`.
pub(crate) fn check_proof(
    state: &AppState,
    proof: &str,
    method: &str,
    path: &str,
    access_token: Option<&str>,
) -> Result<VerifiedProof, Refusal> {
    let issuer = &state.issuer;
    let url = issuer.url(path);
    let request = ProofRequest {
        method,
        url: &url,
        access_token,
    };
    let verified = verify_proof(proof, &request, &issuer.dpop, &*state.clock)
        .map_err(|e| Refusal::dpop(&e))?;
    Ok(verified)
}

#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub run_id: String,
    pub task_id: TaskId,
    /// RFC 8693 §2.2.1, for token exchange only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// The token response with its no-store headers.
pub(crate) fn token_response(body: TokenResponse) -> Response {
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    let mut context = RefusalContext::default();
    let mut grant_type = None;
    match issue(&state, request, &mut context, &mut grant_type).await {
        Ok(response) => response,
        Err(refusal) => refuse(&state, refusal, grant_type.as_deref(), &context)
            .await
            .into_response(),
    }
}

/// Records the refusal, then answers it; if it cannot be recorded, the
/// answer is `temporarily_unavailable`.
async fn refuse(
    state: &AppState,
    refusal: Refusal,
    grant_type: Option<&str>,
    context: &RefusalContext,
) -> ApiError {
    let event = events::token_refused(
        grant_type,
        refusal.check,
        refusal.code.as_str(),
        context,
        state.now(),
    );
    tracing::info!(check = refusal.check, error = %refusal.code, "token request refused");
    if !state
        .refusals
        .admit("token.refused", refusal.check, state.now())
    {
        // Over budget: counted, summarised later; still refused.
        return ApiError::OAuth(refusal.code, refusal.description);
    }
    if let Err(e) = state.store.append_audit(vec![event]).await {
        tracing::error!(error = %e, "cannot record a token refusal");
        return ApiError::OAuth(
            OAuthError::TemporarilyUnavailable,
            "the audit log cannot be written".into(),
        );
    }
    ApiError::OAuth(refusal.code, refusal.description)
}

async fn issue(
    state: &AppState,
    request: Request,
    context: &mut RefusalContext,
    grant_type: &mut Option<String>,
) -> Result<Response, Refusal> {
    let headers = request.headers().clone();
    let Form(params) = Form::<Vec<(String, String)>>::from_request(request, &())
        .await
        .map_err(|_| {
            Refusal::new(
                OAuthError::InvalidRequest,
                "request_body",
                "the body must be `application/x-www-form-urlencoded` parameters",
            )
        })?;
    let param = |name: &str| -> Result<Option<&str>, Refusal> {
        let mut found = params.iter().filter(|(k, _)| k == name);
        let first = found.next().map(|(_, v)| v.as_str());
        if found.next().is_some() {
            return Err(Refusal::new(
                OAuthError::InvalidRequest,
                "request_duplicate",
                format!("the parameter `{name}` is repeated"),
            ));
        }
        Ok(first)
    };
    let grant = param("grant_type")?.ok_or_else(|| {
        Refusal::new(
            OAuthError::InvalidRequest,
            "request_grant_type",
            "the parameter `grant_type` is required",
        )
    })?;
    *grant_type = Some(grant.to_owned());
    if grant == GRANT_TOKEN_EXCHANGE {
        let required = |name: &'static str, check: &'static str| -> Result<&str, Refusal> {
            param(name)?.ok_or_else(|| {
                Refusal::new(
                    OAuthError::InvalidRequest,
                    check,
                    format!("the parameter `{name}` is required"),
                )
            })
        };
        let request = ExchangeRequest {
            subject_token: required("subject_token", "request_subject_token")?,
            subject_token_type: required("subject_token_type", "request_subject_token_type")?,
            subject_proof: required("subject_token_dpop", "request_subject_token_dpop")?,
            scope: param("scope")?,
            ttl: param("ttl")?,
        };
        let body = exchange(state, &headers, request, context).await?;
        return Ok(token_response(body));
    }
    if grant == GRANT_JWT_BEARER {
        let required = |name: &'static str, check: &'static str| -> Result<&str, Refusal> {
            param(name)?.ok_or_else(|| {
                Refusal::new(
                    OAuthError::InvalidRequest,
                    check,
                    format!("the parameter `{name}` is required"),
                )
            })
        };
        let request = JwtBearerRequest {
            assertion: required("assertion", "request_assertion")?,
            task_id: required("task_id", "request_task_id")?,
        };
        let body = jwt_bearer(state, &headers, request, context).await?;
        return Ok(token_response(body));
    }
    if grant == GRANT_REFRESH {
        let subject_token = param("subject_token")?.ok_or_else(|| {
            Refusal::new(
                OAuthError::InvalidRequest,
                "request_subject_token",
                "the parameter `subject_token` is required",
            )
        })?;
        let body = refresh(state, &headers, subject_token, context).await?;
        return Ok(token_response(body));
    }
    if grant != GRANT_TASK_CLAIM {
        return Err(Refusal::new(
            OAuthError::UnsupportedGrantType,
            "grant_type",
            format!(
                "grant type `{}` is not supported: use `{GRANT_TASK_CLAIM}`, `{GRANT_JWT_BEARER}`, `{GRANT_TOKEN_EXCHANGE}` or `{GRANT_REFRESH}`",
                grant.chars().take(100).collect::<String>()
            ),
        ));
    }
    let claim = param("claim")?.ok_or_else(|| {
        Refusal::new(
            OAuthError::InvalidRequest,
            "request_claim",
            "the parameter `claim` is required",
        )
    })?;

    let proof = dpop_header(&headers)?;
    let proof = check_proof(state, proof, "POST", TOKEN_PATH, None)?;
    context.jkt = Some(proof.jkt.clone());
    state
        .issuer
        .replay
        .check_and_remember(&proof, &*state.clock)
        .map_err(|e| Refusal::dpop(&e))?;

    let invalid_claim = |check| {
        Refusal::new(
            OAuthError::InvalidGrant,
            check,
            "the claim is not valid: it is unknown, used, or expired",
        )
    };
    if claim.is_empty() || claim.len() > MAX_CLAIM_LEN {
        return Err(invalid_claim("claim_unknown"));
    }
    let hash = warrant_crypto::hash_claim(claim);
    let now = state.now();
    let stored = state
        .store
        .task_claim(&hash)
        .await
        .map_err(|e| Refusal::store(&e))?
        .ok_or_else(|| invalid_claim("claim_unknown"))?;
    context.task_id = Some(stored.task_id.to_string());
    if stored.used_at.is_some() {
        return Err(invalid_claim("claim_used"));
    }
    if stored.expires_at <= now {
        return Err(invalid_claim("claim_expired"));
    }
    let task = state
        .store
        .get_task(stored.task_id)
        .await
        .map_err(|e| Refusal::store(&e))?
        .ok_or_else(|| invalid_claim("task_missing"))?;
    check_task_open(&task, now)?;

    let run_id = RunId::at(now);
    context.run_id = Some(run_id.to_string());
    let (minted, run) = mint_root_run(state, &task, run_id, &proof.jkt, now)?;
    let event = events::run_started(
        &run,
        &minted.claims.sub,
        GRANT_TASK_CLAIM,
        &minted.claims.jti,
        minted.claims.exp,
        now,
    );
    match state.store.redeem_claim(&hash, &run, now, event).await {
        Ok(_) => {}
        // Lost a race with another redemption, or the task ended meanwhile.
        Err(StoreError::InvalidState(_) | StoreError::NotFound(_)) => {
            return Err(invalid_claim("claim_used"));
        }
        Err(e) => return Err(Refusal::store(&e)),
    }
    tracing::info!(run = %run.id, task = %task.id, agent = %task.agent, "run started");
    let body = TokenResponse {
        expires_in: minted.claims.exp.saturating_sub(now.as_second()),
        access_token: minted.token,
        token_type: "DPoP",
        run_id: run.id.to_string(),
        task_id: task.id,
        issued_token_type: None,
    };
    Ok(token_response(body))
}

/// A task that has ended, or is past its expiry, starts no run.
pub(crate) fn check_task_open(task: &Task, now: jiff::Timestamp) -> Result<(), Refusal> {
    if !task.is_live() {
        return Err(Refusal::new(
            OAuthError::InvalidGrant,
            "task_ended",
            format!("task `{}` has ended", task.id),
        ));
    }
    if task.expires_at <= now {
        return Err(Refusal::new(
            OAuthError::InvalidGrant,
            "task_expired",
            format!("task `{}` has expired", task.id),
        ));
    }
    Ok(())
}

/// Mints the token of a new root run (no parent) for `task`, bound to the
/// proof key `jkt`, and the run record that goes with it. Shared by the
/// claim and jwt-bearer grants.
pub(crate) fn mint_root_run(
    state: &AppState,
    task: &Task,
    run_id: RunId,
    jkt: &str,
    now: jiff::Timestamp,
) -> Result<(warrant_token::run::Minted, Run), Refusal> {
    let issuer = &state.issuer;
    let minted = mint(
        &issuer.key(),
        &MintParams {
            issuer: issuer.issuer(),
            audience: issuer.audience(),
            trust_domain: &issuer.trust_domain,
            run: run_id,
            task,
            jkt,
            ttl: issuer.run_token_ttl,
            scope: None,
            act: None,
        },
        &*state.clock,
    )
    .map_err(|e| Refusal::new(e.oauth_error(), "mint", e.to_string()))?;
    let expires_at = minted.claims.expires_at().ok_or_else(|| {
        Refusal::new(
            OAuthError::ServerError,
            "mint",
            "the token expiry is out of range",
        )
    })?;
    let run = Run {
        id: run_id.0,
        task_id: task.id,
        agent: task.agent.clone(),
        jkt: jkt.to_owned(),
        parent_run_id: None,
        depth: 0,
        state: RunState::Live,
        created_at: now,
        expires_at,
    };
    Ok((minted, run))
}
