//! `/v1/users`: local users and their API tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use warrant_core::{Name, User};
use warrant_crypto::generate_api_token;
use warrant_store::StoreError;

use crate::auth::{Admin, Caller};
use crate::error::ApiError;
use crate::events;
use crate::extract::ApiJson;
use crate::state::AppState;

/// At most this many groups per user.
const MAX_GROUPS: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// A new user with its API token, shown this once. `Debug` redacts the
/// token; only the response body carries it.
#[derive(Debug, Serialize)]
pub struct CreatedUser {
    #[serde(flatten)]
    user: User,
    #[serde(serialize_with = "expose_token")]
    token: SecretString,
}

/// The one place the token is written out: the response to its creation.
fn expose_token<S: Serializer>(token: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(token.expose_secret())
}

#[derive(Debug, Serialize)]
pub struct Users {
    users: Vec<User>,
}

pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let name = Name::parse("user name", &body.name).map_err(ApiError::InvalidName)?;
    let groups = parse_groups(&body.groups)?;
    if state.store.user_by_name(&name).await?.is_some() {
        return Err(ApiError::UserExists(name));
    }
    let token = generate_api_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let user = User {
        name: name.clone(),
        groups,
        admin: body.admin,
        created_at: state.now(),
    };
    let event = events::user_created(&user, &caller.actor());
    match state.store.create_user(&user, &token.hash, event).await {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => return Err(ApiError::UserExists(name)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %user.name, admin = user.admin, by = %caller.user.name, "user created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            token: token.token,
        }),
    ))
}

/// Group names, checked and without duplicates (first occurrence kept).
fn parse_groups(raw: &[String]) -> Result<Vec<Name>, ApiError> {
    if raw.len() > MAX_GROUPS {
        return Err(ApiError::InvalidBody(format!(
            "`groups` holds {} entries; at most {MAX_GROUPS} are allowed",
            raw.len()
        )));
    }
    let mut groups: Vec<Name> = Vec::with_capacity(raw.len());
    for g in raw {
        let g = Name::parse("group name", g).map_err(ApiError::InvalidName)?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(groups)
}

pub async fn list(State(state): State<AppState>, _admin: Admin) -> Result<Json<Users>, ApiError> {
    let users = state.store.list_users().await?;
    Ok(Json(Users { users }))
}

pub async fn me(caller: Caller) -> Json<User> {
    Json(caller.user)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use warrant_core::{Name, Timestamp, User};

    use super::CreatedUser;

    // `CreatedUser` derived Debug over the plain token: any `{:?}` (a log
    // line, a panic message) would have printed a live credential.
    #[test]
    fn created_user_debug_redacts_the_token_and_the_body_carries_it() {
        let token = "wrt_not_a_real_token_but_secret_enough";
        let created = CreatedUser {
            user: User {
                name: Name::parse("name", "alice").unwrap(),
                groups: vec![],
                admin: false,
                created_at: Timestamp::UNIX_EPOCH,
            },
            token: SecretString::from(token),
        };
        let debug = format!("{created:?}");
        assert!(!debug.contains(token), "{debug}");
        assert!(debug.contains("alice"), "{debug}");
        let body = serde_json::to_value(&created).unwrap();
        assert_eq!(body["token"], token);
        assert_eq!(body["name"], "alice");
    }
}
