//! RFC 8693 token exchange at `POST /v1/token`
//! (`grant_type=urn:ietf:params:oauth:grant-type:token-exchange`): a live
//! run delegates a narrower part of its task to a child run with a key of
//! its own.
//!
//! The parent proves itself as it would at any run endpoint: its run token
//! as `subject_token` and, in the form parameter `subject_token_dpop`, a
//! DPoP proof by the parent's key over `POST <issuer>/v1/token` with `ath`
//! of that token. The `DPoP` header carries a proof by the child's new key
//! (no `ath`), which the child token is bound to. The child gets a run of
//! the same task with `parent_run_id` and `depth + 1`, a token whose `act`
//! claim nests the chain, and a scope and lifetime no wider than the
//! parent's. Every refusal is `invalid_grant` (or a DPoP/request error) and
//! a `token.refused` event; every hop is a `run.started` event.

use jiff::SignedDuration;
use warrant_core::Scope;
use warrant_store::{Run, RunState, StoreError};
use warrant_token::run::{Actor, MintParams, mint};
use warrant_token::{OAuthError, RunId};

use crate::events::{self, RefusalContext};
use crate::routes::token::{
    GRANT_TOKEN_EXCHANGE, Refusal, TOKEN_PATH, TokenResponse, check_proof, dpop_header,
};
use crate::run_auth::authenticate_token;
use crate::state::AppState;

/// The only `subject_token_type` (and `issued_token_type`): an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Most entries in a requested `scope`.
const MAX_SCOPE_ITEMS: usize = 64;

/// The form parameters of an exchange.
pub(crate) struct ExchangeRequest<'a> {
    pub subject_token: &'a str,
    pub subject_token_type: &'a str,
    pub subject_proof: &'a str,
    pub scope: Option<&'a str>,
    pub ttl: Option<&'a str>,
}

fn grant(check: &'static str, why: impl Into<String>) -> Refusal {
    Refusal::new(OAuthError::InvalidGrant, check, why)
}

pub(crate) async fn exchange(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    request: ExchangeRequest<'_>,
    context: &mut RefusalContext,
) -> Result<TokenResponse, Refusal> {
    if request.subject_token_type != ACCESS_TOKEN_TYPE {
        return Err(Refusal::new(
            OAuthError::InvalidRequest,
            "request_subject_token_type",
            format!("`subject_token_type` must be `{ACCESS_TOKEN_TYPE}`"),
        ));
    }
    // The child's new key: verified now, remembered once the parent is.
    let child_proof = dpop_header(headers)?;
    let child_proof = check_proof(state, child_proof, "POST", TOKEN_PATH, None)?;

    // The parent: its token, its own proof, its run and task still live.
    let parent = authenticate_token(
        state,
        request.subject_token,
        request.subject_proof,
        "POST",
        TOKEN_PATH,
        context,
    )
    .await
    .map_err(|r| match r.code {
        // RFC 8693 §2.2.2: a bad subject token is `invalid_grant`.
        OAuthError::InvalidToken => Refusal {
            code: OAuthError::InvalidGrant,
            ..r
        },
        _ => r,
    })?;
    context.jkt = Some(child_proof.jkt.clone());
    state
        .issuer
        .replay
        .check_and_remember(&child_proof, &*state.clock)
        .map_err(|e| Refusal::dpop(&e))?;
    if warrant_crypto::constant_time_eq(child_proof.jkt.as_bytes(), parent.run.jkt.as_bytes()) {
        return Err(grant(
            "child_key_reused",
            "the `DPoP` proof must be by the child's new key, not the parent's",
        ));
    }

    let depth = parent.run.depth.saturating_add(1);
    if depth > state.issuer.max_delegation_depth {
        return Err(grant(
            "delegation_depth",
            format!(
                "the delegation chain would be {depth} deep: the limit is {}",
                state.issuer.max_delegation_depth
            ),
        ));
    }

    let claims = parent.token.claims();
    let scope = requested_scope(&claims.warrant_scope, request.scope)?;

    let now = state.now();
    let parent_left = SignedDuration::from_secs(claims.exp.saturating_sub(now.as_second()));
    if parent_left < SignedDuration::from_secs(1) {
        return Err(grant(
            "parent_expiring",
            "the subject token is about to expire",
        ));
    }
    let ttl = match request.ttl {
        None => parent_left.min(state.issuer.run_token_ttl),
        Some(raw) => {
            let ttl = warrant_core::task::parse_duration(raw).map_err(|e| {
                Refusal::new(
                    OAuthError::InvalidRequest,
                    "request_ttl",
                    format!("`ttl`: {e}"),
                )
            })?;
            if ttl < SignedDuration::from_secs(1) || ttl > parent_left {
                return Err(grant(
                    "ttl_wider",
                    "the requested `ttl` must be at least 1s and no longer than the subject token has left",
                ));
            }
            ttl
        }
    };

    let run_id = RunId::at(now);
    context.run_id = Some(run_id.to_string());
    let issuer = &state.issuer;
    let minted = mint(
        &issuer.key(),
        &MintParams {
            issuer: issuer.issuer(),
            audience: issuer.audience(),
            trust_domain: &issuer.trust_domain,
            run: run_id,
            task: &parent.task,
            jkt: &child_proof.jkt,
            ttl,
            scope: Some(scope),
            act: Some(Actor::new(claims.sub.clone(), claims.act.clone())),
        },
        &*state.clock,
    )
    .map_err(|e| {
        let code = match e.oauth_error() {
            OAuthError::InvalidScope => OAuthError::InvalidGrant,
            other => other,
        };
        Refusal::new(code, "mint", e.to_string())
    })?;
    let expires_at = minted.claims.expires_at().ok_or_else(|| {
        Refusal::new(
            OAuthError::ServerError,
            "mint",
            "the token expiry is out of range",
        )
    })?;
    let run = Run {
        id: run_id.0,
        task_id: parent.task.id,
        agent: parent.task.agent.clone(),
        jkt: child_proof.jkt.clone(),
        parent_run_id: Some(parent.run.id),
        depth,
        state: RunState::Live,
        created_at: now,
        expires_at,
    };
    let event = events::run_started(
        &run,
        &minted.claims.sub,
        GRANT_TOKEN_EXCHANGE,
        &minted.claims.jti,
        minted.claims.exp,
        now,
    );
    match state.store.start_child_run(&run, now, event).await {
        Ok(_) => {}
        Err(StoreError::InvalidState(_) | StoreError::NotFound(_)) => {
            return Err(grant(
                "parent_revoked",
                "the subject token's run or task has ended",
            ));
        }
        Err(e) => return Err(Refusal::store(&e)),
    }
    tracing::info!(run = %run.id, parent = %parent.run.id, depth, "delegated run started");
    Ok(TokenResponse {
        expires_in: minted.claims.exp.saturating_sub(now.as_second()),
        access_token: minted.token,
        token_type: "DPoP",
        run_id: run.id.to_string(),
        task_id: parent.task.id,
        issued_token_type: Some(ACCESS_TOKEN_TYPE),
    })
}

/// The child's scope: the parent's, with `repos` and/or `actions` replaced
/// by the `repo:<owner/name>` and `action:<name>` entries of `scope`
/// (space-separated). Anything the parent does not have is refused.
fn requested_scope(parent: &Scope, requested: Option<&str>) -> Result<Scope, Refusal> {
    let Some(requested) = requested else {
        return Ok(parent.clone());
    };
    let mut repos = Vec::new();
    let mut actions = Vec::new();
    for (i, item) in requested.split(' ').filter(|s| !s.is_empty()).enumerate() {
        if i >= MAX_SCOPE_ITEMS {
            return Err(Refusal::new(
                OAuthError::InvalidScope,
                "scope_malformed",
                format!("`scope` has more than {MAX_SCOPE_ITEMS} entries"),
            ));
        }
        match item.split_once(':') {
            Some(("repo", repo)) => repos.push(repo.to_owned()),
            Some(("action", action)) => actions.push(action.to_owned()),
            _ => {
                return Err(Refusal::new(
                    OAuthError::InvalidScope,
                    "scope_malformed",
                    format!(
                        "`scope` entry `{}` is not `repo:<owner/name>` or `action:<name>`",
                        item.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    let mut scope = parent.clone();
    if !repos.is_empty() {
        scope.repos = repos;
    }
    if !actions.is_empty() {
        scope.actions = actions;
    }
    scope.check_narrowing_of(parent).map_err(|e| {
        grant(
            "scope_wider",
            format!("the requested scope is wider than the subject token's: {e}"),
        )
    })?;
    Ok(scope)
}
