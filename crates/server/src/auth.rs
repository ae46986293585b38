//! Who is calling: `Authorization: Bearer <credential>` to a [`Caller`].
//!
//! The credential is either a Warrant API token (`wrt_…`) or an OpenID
//! Connect ID token from a configured `[human]` issuer.
//!
//! An API token is hashed and the hash looked up in the store; the token is
//! never compared byte by byte, so response time does not depend on how
//! much of a guessed token is right.
//!
//! An ID token (anything shaped like a compact JWS) is verified against its
//! issuer's cached JWKS (`warrant_identity::verify_id_token`: signature,
//! algorithm allowlist, `iss`, `aud`, time claims, required claims) and
//! mapped to a user by the issuer's claim rules. The first sign-in of an
//! identity (issuer + `sub`) creates its user, linked to that identity; a
//! name already taken by a local user or another identity is refused, so an
//! identity provider account cannot take over a user by choosing its name.
//! The user's groups follow the token's groups claim on every sign-in (a
//! change is a `user.updated` event). Users created this way are never
//! admins; an admin makes them one.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use warrant_audit::NewEvent;
use warrant_core::{Name, User};
use warrant_crypto::{generate_api_token, hash_api_token};
use warrant_identity::{IdentityError, peek_issuer, verify_id_token};
use warrant_store::StoreError;

use crate::error::ApiError;
use crate::state::AppState;

/// Longest credential accepted: API tokens are 47 characters, ID tokens
/// with many groups a few kilobytes.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// An authenticated user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
}

impl Caller {
    /// The audit actor for this caller: `user:<name>`.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user.name)
    }

    pub fn is_admin(&self) -> bool {
        self.user.admin
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)?;
        if looks_like_jwt(token) {
            return id_token_caller(state, token).await;
        }
        let hash = hash_api_token(token);
        match state.store.user_by_token_hash(&hash).await? {
            Some(user) => Ok(Caller { user }),
            None => Err(ApiError::Unauthenticated("the API token is not valid")),
        }
    }
}

/// An authenticated admin: anyone else is refused before the body is read.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.is_admin() {
            Ok(Admin(caller))
        } else {
            Err(ApiError::Forbidden(
                "only admins may do this: ask an admin, or use an admin's token",
            ))
        }
    }
}

/// The complaint about an `Authorization` header that is there but wrong.
const MALFORMED: &str = "the `Authorization` header is not `Bearer <token>`";

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::Unauthenticated("no API token was sent"));
    };
    if values.next().is_some() {
        return Err(ApiError::Unauthenticated(MALFORMED));
    }
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthenticated(MALFORMED))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(ApiError::Unauthenticated(MALFORMED))?;
    let token = token.trim_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.len() > MAX_TOKEN_LEN
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::Unauthenticated(MALFORMED));
    }
    Ok(token)
}

/// A compact JWS has three dot-separated parts; an API token has none.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The actor of users created and updated by a sign-in.
const OIDC_ACTOR: &str = "system:oidc";

async fn id_token_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let refused = |e: IdentityError| match e {
        IdentityError::KeysUnavailable(why) => {
            tracing::warn!(error = %why, "identity provider keys unavailable");
            ApiError::IdentityUnavailable
        }
        other => ApiError::InvalidIdToken(other.to_string()),
    };
    let iss = peek_issuer(token).map_err(refused)?;
    let Some(issuer) = state.issuer.human_issuers.get(&iss) else {
        return Err(ApiError::InvalidIdToken(format!(
            "issuer `{}` is not a configured sign-in issuer",
            iss.chars().take(100).collect::<String>()
        )));
    };
    let human = verify_id_token(token, issuer, None, &*state.clock)
        .await
        .map_err(refused)?;
    let now = state.now();
    if let Some(mut user) = state
        .store
        .user_by_identity(&human.issuer, &human.subject)
        .await?
    {
        if user.groups != human.groups {
            let event = NewEvent {
                time: now,
                kind: "user.updated".to_owned(),
                actor: OIDC_ACTOR.to_owned(),
                subject: format!("user:{}", user.name),
                task_id: None,
                data: serde_json::json!({
                    "groups": human.groups,
                    "previous_groups": user.groups,
                    "issuer": human.issuer,
                    "subject": human.subject,
                }),
            };
            state
                .store
                .set_user_groups(&user.name, &human.groups, event)
                .await?;
            user.groups = human.groups;
        }
        return Ok(Caller { user });
    }
    provision(state, human, now).await
}

/// The first sign-in of an identity: its user, linked to it.
async fn provision(
    state: &AppState,
    human: warrant_identity::HumanPrincipal,
    now: jiff::Timestamp,
) -> Result<Caller, ApiError> {
    let user = User {
        name: human.user.clone(),
        groups: human.groups.clone(),
        admin: false,
        created_at: now,
    };
    // The user gets an API token nobody is told: it signs in with ID tokens.
    let unknown = generate_api_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let event = NewEvent {
        time: now,
        kind: "user.created".to_owned(),
        actor: OIDC_ACTOR.to_owned(),
        subject: format!("user:{}", user.name),
        task_id: None,
        data: serde_json::json!({
            "groups": user.groups,
            "admin": false,
            "source": "oidc",
            "issuer": human.issuer,
            "subject": human.subject,
        }),
    };
    match state
        .store
        .provision_user(&user, &unknown.hash, &human.issuer, &human.subject, event)
        .await
    {
        Ok(_) => {
            tracing::info!(user = %user.name, issuer = %human.issuer, "user created by sign-in");
            Ok(Caller { user })
        }
        Err(StoreError::Conflict(_)) => {
            // A concurrent first sign-in of the same identity won the race.
            match state
                .store
                .user_by_identity(&human.issuer, &human.subject)
                .await?
            {
                Some(user) => Ok(Caller { user }),
                None => Err(ApiError::IdentityConflict(name_shown(&human.user))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

fn name_shown(name: &Name) -> String {
    name.as_str().to_owned()
}
