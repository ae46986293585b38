//! The store's users and agents as decisions read them, cached briefly.
//!
//! A decision needs the run's agent (its tier) and the task's delegating
//! user (groups, admin). Both change rarely, so each is kept for
//! [`ENTITY_TTL`] after it is read; a change made through this server
//! drops the cached copy at once ([`EntityCache::forget_user`],
//! [`EntityCache::forget_agent`]), and a change made through another server
//! sharing the store is seen within the TTL. A store error is an error,
//! never a stale or empty answer.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use warrant_core::{Agent, Name, User};

use crate::error::ApiError;
use crate::state::AppState;

/// How long a read user or agent is reused.
pub const ENTITY_TTL: Duration = Duration::from_secs(2);
/// Most entries of each kind kept; past it the cache is emptied.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub struct EntityCache {
    users: Mutex<HashMap<Name, (User, Instant)>>,
    agents: Mutex<HashMap<Name, (Agent, Instant)>>,
}

fn fresh<T: Clone>(map: &Mutex<HashMap<Name, (T, Instant)>>, name: &Name) -> Option<T> {
    let map = map.lock().unwrap_or_else(PoisonError::into_inner);
    map.get(name)
        .filter(|(_, at)| at.elapsed() < ENTITY_TTL)
        .map(|(v, _)| v.clone())
}

fn keep<T>(map: &Mutex<HashMap<Name, (T, Instant)>>, name: &Name, value: T) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(name.clone(), (value, Instant::now()));
}

impl EntityCache {
    /// The user `name`; `Internal` when it does not exist (a task's
    /// delegator always does).
    pub async fn user(&self, state: &AppState, name: &Name) -> Result<User, ApiError> {
        if let Some(u) = fresh(&self.users, name) {
            return Ok(u);
        }
        let user =
            state.store.user_by_name(name).await?.ok_or_else(|| {
                ApiError::Internal(format!("the delegator `{name}` does not exist"))
            })?;
        keep(&self.users, name, user.clone());
        Ok(user)
    }

    /// The agent `name`; `Internal` when it does not exist (a run's agent
    /// always does).
    pub async fn agent(&self, state: &AppState, name: &Name) -> Result<Agent, ApiError> {
        if let Some(a) = fresh(&self.agents, name) {
            return Ok(a);
        }
        let agent = state
            .store
            .agent_by_name(name)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("the agent `{name}` does not exist")))?;
        keep(&self.agents, name, agent.clone());
        Ok(agent)
    }

    pub fn forget_user(&self, name: &Name) {
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    pub fn forget_agent(&self, name: &Name) {
        self.agents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }
}
