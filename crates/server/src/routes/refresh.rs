//! Run-token refresh at `POST /v1/token`
//! (`grant_type=urn:warrant:grant-type:refresh`): a live run trades its
//! current token for a new one before it expires, so a run (and the runs it
//! delegated to) can last as long as its task without long-lived tokens.
//!
//! The run proves itself as at any run endpoint: the current token as
//! `subject_token` and a DPoP proof *by the same key* in the `DPoP` header,
//! over `POST <issuer>/v1/token` with `ath` of that token. An expired token
//! cannot be refreshed (start a new run instead). The new token keeps the
//! run id, key, `act` chain and lifetime of the old one, and its expiry is
//! capped by the task's and, for a delegated run, by its parent run's: a
//! child chain lives only while its parents keep refreshing. A root run's
//! scope is the task's current scope (a narrowed task narrows the refreshed
//! token); a delegated run's is its own scope cut down to the task's.

use jiff::SignedDuration;
use warrant_core::Scope;
use warrant_store::StoreError;
use warrant_token::run::{MintParams, mint};
use warrant_token::{OAuthError, RunId};

use crate::events::{self, RefusalContext};
use crate::routes::token::{Refusal, TOKEN_PATH, TokenResponse, dpop_header};
use crate::run_auth::authenticate_token;
use crate::state::AppState;

/// The refresh grant type.
pub const GRANT_REFRESH: &str = "urn:warrant:grant-type:refresh";

fn grant(check: &'static str, why: impl Into<String>) -> Refusal {
    Refusal::new(OAuthError::InvalidGrant, check, why)
}

pub(crate) async fn refresh(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    subject_token: &str,
    context: &mut RefusalContext,
) -> Result<TokenResponse, Refusal> {
    let proof = dpop_header(headers)?;
    // Same checks as any use of the token: signature, expiry, binding to
    // this proof's key, proof replay, run and task live.
    let caller =
        authenticate_token(state, subject_token, proof, "POST", TOKEN_PATH, context).await?;
    let claims = caller.token.claims();
    let now = state.now();

    let mut cap = caller.task.expires_at;
    if let Some(parent_id) = caller.run.parent_run_id {
        let parent = state
            .store
            .get_run(parent_id)
            .await
            .map_err(|e| Refusal::store(&e))?
            .filter(|p| p.is_live_at(now))
            .ok_or_else(|| {
                grant(
                    "parent_revoked",
                    "the run that delegated to this one has ended or expired",
                )
            })?;
        cap = cap.min(parent.expires_at);
    }
    let lifetime = SignedDuration::from_secs(claims.exp.saturating_sub(claims.iat))
        .clamp(SignedDuration::from_secs(1), state.issuer.run_token_ttl);
    // Whole seconds, as token times are: the new `exp` may reach `cap`.
    let left = SignedDuration::from_secs(cap.as_second().saturating_sub(now.as_second()));
    if left < SignedDuration::from_secs(1) {
        return Err(grant(
            "refresh_window",
            "the task (or the parent run) ends now: there is nothing left to refresh",
        ));
    }
    let ttl = lifetime.min(left);

    let scope = caller
        .run
        .parent_run_id
        .map(|_| within(&claims.warrant_scope, &caller.task.scope));
    let issuer = &state.issuer;
    let minted = mint(
        &issuer.key(),
        &MintParams {
            issuer: issuer.issuer(),
            audience: issuer.audience(),
            trust_domain: &issuer.trust_domain,
            run: RunId(caller.run.id),
            task: &caller.task,
            jkt: &caller.run.jkt,
            ttl,
            scope,
            act: claims.act.clone(),
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
    let event = events::run_refreshed(
        &caller.run,
        &minted.claims.sub,
        &claims.jti,
        &minted.claims.jti,
        minted.claims.exp,
        now,
    );
    match state
        .store
        .refresh_run(caller.run.id, &caller.run.jkt, expires_at, now, event)
        .await
    {
        Ok(_) => {}
        // Revoked, expired or its parent or task ended since the checks above.
        Err(StoreError::InvalidState(_) | StoreError::NotFound(_)) => {
            return Err(grant(
                "run_revoked",
                "the run, its parent or its task has ended",
            ));
        }
        Err(e) => return Err(Refusal::store(&e)),
    }
    tracing::info!(run = %caller.run.id, "run token refreshed");
    Ok(TokenResponse {
        expires_in: minted.claims.exp.saturating_sub(now.as_second()),
        access_token: minted.token,
        token_type: "DPoP",
        run_id: caller.run.id.to_string(),
        task_id: caller.task.id,
        issued_token_type: None,
    })
}

/// `scope` with every entry the task no longer grants taken out.
pub(crate) fn within(scope: &Scope, task: &Scope) -> Scope {
    let keep = |mine: &[String], theirs: &[String]| -> Vec<String> {
        mine.iter()
            .filter(|e| theirs.contains(e))
            .cloned()
            .collect()
    };
    Scope {
        repos: keep(&scope.repos, &task.repos),
        branches: keep(&scope.branches, &task.branches),
        environments: keep(&scope.environments, &task.environments),
        actions: keep(&scope.actions, &task.actions),
        tools: keep(&scope.tools, &task.tools),
        secrets: keep(&scope.secrets, &task.secrets),
    }
}
