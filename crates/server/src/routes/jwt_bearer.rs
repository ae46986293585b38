//! The RFC 7523 jwt-bearer grant: a workload token from a configured
//! `[[issuers]]` entry (a CI OIDC token or a SPIFFE JWT-SVID) as
//! `assertion`, the task it acts for as `task_id`, and a DPoP proof of the
//! run's new key. The issuer is picked by the token's (unverified) `iss`;
//! `warrant_identity::verify_workload_token` then checks the signature
//! against that issuer's cached JWKS (refused past its staleness bound),
//! `aud`, time claims and the claim rules binding it to the task. Only then
//! is the run created (the task goes `active`) and a run token minted.
//!
//! A workload token starts one run: its `jti` (or its hash) is recorded in
//! the run's transaction until the token expires, and a second use is
//! refused (`assertion_replayed`).
//!
//! Every refusal is `invalid_grant` (RFC 7523 §3.1) except malformed
//! requests and DPoP failures, and is audited by the caller as
//! `token.refused` with the failed check.

use axum::http::HeaderMap;
use warrant_core::TaskId;
use warrant_identity::{peek_issuer, verify_workload_token};
use warrant_store::{StoreError, UsedAssertion};
use warrant_token::{OAuthError, RunId};

use crate::events::{self, RefusalContext};
use crate::routes::token::{
    GRANT_JWT_BEARER, Refusal, TOKEN_PATH, TokenResponse, check_proof, check_task_open,
    dpop_header, mint_root_run,
};
use crate::state::AppState;

/// The grant's parameters.
pub(crate) struct JwtBearerRequest<'a> {
    pub assertion: &'a str,
    pub task_id: &'a str,
}

pub(crate) async fn jwt_bearer(
    state: &AppState,
    headers: &HeaderMap,
    request: JwtBearerRequest<'_>,
    context: &mut RefusalContext,
) -> Result<TokenResponse, Refusal> {
    let task_id: TaskId = request.task_id.parse().map_err(|_| {
        Refusal::new(
            OAuthError::InvalidRequest,
            "request_task_id",
            "the parameter `task_id` is not a task id",
        )
    })?;
    context.task_id = Some(task_id.to_string());

    let proof = dpop_header(headers)?;
    let proof = check_proof(state, proof, "POST", TOKEN_PATH, None)?;
    context.jkt = Some(proof.jkt.clone());
    state
        .issuer
        .replay
        .check_and_remember(&proof, &*state.clock)
        .map_err(|e| Refusal::dpop(&e))?;

    let identity = |e: warrant_identity::IdentityError| {
        Refusal::new(e.oauth_error(), e.check(), e.to_string())
    };
    let iss = peek_issuer(request.assertion).map_err(identity)?;
    let issuer = state.issuer.workload_issuers.get(&iss).ok_or_else(|| {
        Refusal::new(
            OAuthError::InvalidGrant,
            "issuer_unknown",
            format!(
                "issuer `{}` is not a configured workload issuer",
                iss.chars().take(100).collect::<String>()
            ),
        )
    })?;
    let task = state
        .store
        .get_task(task_id)
        .await
        .map_err(|e| Refusal::store(&e))?
        .ok_or_else(|| {
            Refusal::new(
                OAuthError::InvalidGrant,
                "task_unknown",
                format!("task `{task_id}` does not exist"),
            )
        })?;
    let now = state.now();
    check_task_open(&task, now)?;
    let principal = verify_workload_token(request.assertion, issuer, &task, &*state.clock)
        .await
        .map_err(identity)?;

    let run_id = RunId::at(now);
    context.run_id = Some(run_id.to_string());
    let (minted, run) = mint_root_run(state, &task, run_id, &proof.jkt, now)?;
    let mut event = events::run_started(
        &run,
        &minted.claims.sub,
        GRANT_JWT_BEARER,
        &minted.claims.jti,
        minted.claims.exp,
        now,
    );
    if let Some(data) = event.data.as_object_mut() {
        data.insert(
            "workload".to_owned(),
            serde_json::json!({
                "issuer": principal.issuer,
                "subject": principal.subject,
                "repository": principal.repository,
                "branch": principal.branch,
                "jti": principal.jti,
            }),
        );
    }
    // One workload token starts one run: a copied CI token cannot start
    // more. Keyed by `jti`, or the token's hash when the issuer sets none.
    let spent = UsedAssertion {
        issuer: principal.issuer.clone(),
        jti: match &principal.jti {
            Some(jti) => format!("jti:{jti}"),
            None => format!(
                "sha256:{}",
                hex::encode(warrant_crypto::sha256(request.assertion.as_bytes()))
            ),
        },
        expires_at: principal.expires_at,
    };
    match state.store.start_run(&run, Some(&spent), now, event).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(Refusal::new(
                OAuthError::InvalidGrant,
                "assertion_replayed",
                "this workload token has already started a run: each token starts one",
            ));
        }
        // The task ended or expired meanwhile.
        Err(StoreError::InvalidState(_) | StoreError::NotFound(_)) => {
            return Err(Refusal::new(
                OAuthError::InvalidGrant,
                "task_ended",
                format!("task `{}` has ended", task.id),
            ));
        }
        Err(e) => return Err(Refusal::store(&e)),
    }
    tracing::info!(run = %run.id, task = %task.id, agent = %task.agent, issuer = %principal.issuer, "run started by workload token");
    Ok(TokenResponse {
        expires_in: minted.claims.exp.saturating_sub(now.as_second()),
        access_token: minted.token,
        token_type: "DPoP",
        run_id: run.id.to_string(),
        task_id: task.id,
        issued_token_type: None,
    })
}
