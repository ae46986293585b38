//! Who is calling: `Authorization: Bearer <api token>` to a [`Caller`].
//!
//! The token is hashed and the hash looked up in the store; the token is
//! never compared byte by byte, so response time does not depend on how
//! much of a guessed token is right.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use warrant_core::User;
use warrant_crypto::hash_api_token;

use crate::error::ApiError;
use crate::state::AppState;

/// Longest token accepted before hashing; real ones are 47 characters.
const MAX_TOKEN_LEN: usize = 512;

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
