//! Who is calling, for agent runs: `Authorization: DPoP <run token>` plus a
//! fresh `DPoP` proof over this request with `ath`, to a [`RunCaller`].
//!
//! Checks, in order: the token (signature by a published key, type,
//! issuer, audience, lifetime, subject), the proof (RFC 9449 §4.3, `htm`
//! and `htu` of this request, `ath` of this token), the binding (proof key
//! = `cnf.jkt`), replay of the proof's `jti`, and finally that the run and
//! its task are still live in the store, so ending a task revokes its
//! tokens at once. Every refusal leaves a `run_token.refused` event.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use warrant_core::Task;
use warrant_store::Run;
use warrant_token::run::{RunTokenExpectations, Unverified};
use warrant_token::{OAuthError, RunToken, RunTokenError};

use crate::error::ApiError;
use crate::events::{self, RefusalContext};
use crate::routes::token::{Refusal, check_proof, dpop_header};
use crate::state::AppState;

/// Longest run token accepted (the JWS parser has its own, larger bound).
const MAX_RUN_TOKEN_LEN: usize = 8 * 1024;

/// An authenticated agent run.
#[derive(Debug, Clone)]
pub struct RunCaller {
    pub token: RunToken,
    pub run: Run,
    pub task: Task,
}

impl FromRequestParts<AppState> for RunCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let mut context = RefusalContext::default();
        match authenticate(parts, state, &mut context).await {
            Ok(caller) => Ok(caller),
            Err(refusal) => {
                let event = events::run_token_refused(
                    parts.method.as_str(),
                    parts.uri.path(),
                    refusal.check,
                    refusal.code.as_str(),
                    &context,
                    state.now(),
                );
                tracing::info!(check = refusal.check, error = %refusal.code, "run token refused");
                if !state
                    .refusals
                    .admit("run_token.refused", refusal.check, state.now())
                {
                    return Err(ApiError::RunToken(refusal.code, refusal.description));
                }
                if let Err(e) = state.store.append_audit(vec![event]).await {
                    tracing::error!(error = %e, "cannot record a run token refusal");
                    return Err(ApiError::RunToken(
                        OAuthError::TemporarilyUnavailable,
                        "the audit log cannot be written".into(),
                    ));
                }
                Err(ApiError::RunToken(refusal.code, refusal.description))
            }
        }
    }
}

fn token_refusal(e: &RunTokenError) -> Refusal {
    let check = match e {
        RunTokenError::Malformed(_) => "token_malformed",
        RunTokenError::AlgorithmNotAllowed(_) => "token_algorithm",
        RunTokenError::WrongType => "token_type",
        RunTokenError::MissingKid | RunTokenError::UnknownKey(_) => "token_kid",
        RunTokenError::BadSignature => "token_signature",
        RunTokenError::InvalidClaims(_) => "token_claims",
        RunTokenError::WrongIssuer => "token_issuer",
        RunTokenError::WrongAudience => "token_audience",
        RunTokenError::WrongSubject => "token_subject",
        RunTokenError::Expired => "token_expired",
        RunTokenError::NotYetValid => "token_not_yet_valid",
        RunTokenError::NotBoundToProofKey => "dpop_key_mismatch",
        RunTokenError::Internal(_) => "token_internal",
    };
    Refusal::new(e.oauth_error(), check, e.to_string())
}

/// The run token of `Authorization: DPoP <token>`.
fn dpop_token(parts: &Parts) -> Result<&str, Refusal> {
    let malformed = |check, why: &str| Refusal::new(OAuthError::InvalidToken, check, why);
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or_else(|| {
        malformed(
            "token_missing",
            "no run token was sent: send `Authorization: DPoP <token>` and a `DPoP` proof",
        )
    })?;
    if values.next().is_some() {
        return Err(malformed("token_header", "send one `Authorization` header"));
    }
    let value = value
        .to_str()
        .map_err(|_| malformed("token_header", "the `Authorization` header is not text"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Err(malformed(
            "token_scheme",
            "run tokens are bound to a key: send `Authorization: DPoP <token>`, not `Bearer`",
        ));
    }
    let token = token.trim_matches(' ');
    if token.is_empty()
        || token.len() > MAX_RUN_TOKEN_LEN
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(malformed(
            "token_header",
            "the `Authorization` header is not `DPoP <token>`",
        ));
    }
    Ok(token)
}

async fn authenticate(
    parts: &Parts,
    state: &AppState,
    context: &mut RefusalContext,
) -> Result<RunCaller, Refusal> {
    let raw = dpop_token(parts)?;
    let proof = dpop_header(&parts.headers)?;
    authenticate_token(
        state,
        raw,
        proof,
        parts.method.as_str(),
        parts.uri.path(),
        context,
    )
    .await
}

/// Checks a run token presented with `proof` (a DPoP proof by the token's
/// key over `method` and `path`, with `ath`): everything [`RunCaller`]
/// checks. Token exchange uses it for the parent's `subject_token`.
pub(crate) async fn authenticate_token(
    state: &AppState,
    raw: &str,
    proof: &str,
    method: &str,
    path: &str,
    context: &mut RefusalContext,
) -> Result<RunCaller, Refusal> {
    let issuer = &state.issuer;
    let keys = issuer
        .jwks(&*state.store, state.clock.now())
        .await
        .map_err(|e| Refusal::store(&e))?;
    let token = Unverified::<RunToken>::new(raw)
        .verify(
            &keys,
            &RunTokenExpectations {
                issuer: issuer.issuer(),
                audience: issuer.audience(),
                trust_domain: &issuer.trust_domain,
                leeway: issuer.dpop.max_future_skew,
            },
            &*state.clock,
        )
        .map_err(|e| token_refusal(&e))?;
    let run_id = token.spiffe_id().run;
    context.run_id = Some(run_id.to_string());
    context.task_id = Some(token.claims().task.to_string());

    let proof = check_proof(state, proof, method, path, Some(raw))?;
    context.jkt = Some(proof.jkt.clone());
    token.check_binding(&proof).map_err(|e| token_refusal(&e))?;
    issuer
        .replay
        .check_and_remember(&proof, &*state.clock)
        .map_err(|e| Refusal::dpop(&e))?;

    let revoked = |check| {
        Refusal::new(
            OAuthError::InvalidToken,
            check,
            "the run token has been revoked: its run or task has ended",
        )
    };
    let now = state.now();
    let run = state
        .store
        .get_run(run_id.0)
        .await
        .map_err(|e| Refusal::store(&e))?
        .ok_or_else(|| revoked("run_unknown"))?;
    if !run.is_live_at(now) {
        return Err(revoked("run_revoked"));
    }
    // The token names the run's task and key; the store must agree.
    if run.task_id != token.claims().task
        || run.agent != token.claims().agent
        || !warrant_crypto::constant_time_eq(run.jkt.as_bytes(), token.claims().cnf.jkt.as_bytes())
    {
        return Err(revoked("run_mismatch"));
    }
    let task = state
        .store
        .get_task(run.task_id)
        .await
        .map_err(|e| Refusal::store(&e))?
        .ok_or_else(|| revoked("task_missing"))?;
    if !task.is_live() || task.expires_at <= now {
        return Err(revoked("task_ended"));
    }
    Ok(RunCaller { token, run, task })
}
