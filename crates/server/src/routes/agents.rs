//! `/v1/agents`: the kinds of coding agent tasks are delegated to.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use warrant_core::{Agent, Name, Tier, validate_text};
use warrant_store::StoreError;

use crate::auth::{Admin, Caller};
use crate::error::ApiError;
use crate::events;
use crate::extract::{ApiJson, NamePath};
use crate::state::AppState;

/// Longest agent description, in characters.
pub const MAX_DESCRIPTION: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    name: String,
    tier: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Agents {
    agents: Vec<Agent>,
}

pub async fn create(
    State(state): State<AppState>,
    Admin(caller): Admin,
    ApiJson(body): ApiJson<CreateAgent>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    let name = Name::parse("agent name", &body.name).map_err(ApiError::InvalidName)?;
    let tier: Tier = body.tier.parse().map_err(ApiError::InvalidTier)?;
    let owner = body
        .owner
        .as_deref()
        .map(|o| Name::parse("owner name", o))
        .transpose()
        .map_err(ApiError::InvalidName)?;
    let description = body.description.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::InvalidBody(format!(
            "`description` is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    validate_text("description", &description, MAX_DESCRIPTION)
        .map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    if let Some(owner) = &owner
        && state.store.user_by_name(owner).await?.is_none()
    {
        return Err(ApiError::UnknownUser(owner.clone()));
    }
    if state.store.agent_by_name(&name).await?.is_some() {
        return Err(ApiError::AgentExists(name));
    }
    let agent = Agent {
        name: name.clone(),
        tier,
        owner: owner.clone(),
        description,
        source: "api".into(),
        created_at: state.now(),
    };
    match state
        .store
        .create_agent(&agent, events::agent_created(&agent, &caller.actor()))
        .await
    {
        Ok(_) => {}
        Err(StoreError::Conflict(_)) => return Err(ApiError::AgentExists(name)),
        // The owner was deleted between the check and the insert.
        Err(StoreError::NotFound(what)) => {
            return Err(match owner {
                Some(owner) => ApiError::UnknownUser(owner),
                None => StoreError::NotFound(what).into(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(agent = %agent.name, tier = %agent.tier, by = %caller.user.name, "agent created");
    Ok((StatusCode::CREATED, Json(agent)))
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Agents>, ApiError> {
    let agents = state.store.list_agents().await?;
    Ok(Json(Agents { agents }))
}

pub async fn show(
    State(state): State<AppState>,
    _caller: Caller,
    NamePath(raw): NamePath,
) -> Result<Json<Agent>, ApiError> {
    // A name that cannot be valid names no agent.
    let Ok(name) = Name::parse("agent name", &raw) else {
        return Err(ApiError::AgentNotFound(raw.chars().take(64).collect()));
    };
    match state.store.agent_by_name(&name).await? {
        Some(agent) => Ok(Json(agent)),
        None => Err(ApiError::AgentNotFound(name.to_string())),
    }
}
