//! The audit events this crate writes, built in one place so their kinds,
//! subjects and data fields stay consistent (docs/audit-log.md lists them).
//! No event holds a secret: tokens and their hashes are never logged.

use jiff::Timestamp;
use serde_json::json;
use warrant_audit::NewEvent;
use warrant_core::{Agent, EndReason, Task, User};

pub const ACTOR_BOOTSTRAP: &str = "system:bootstrap";
pub const ACTOR_CONFIG: &str = "system:config";
pub const ACTOR_REAPER: &str = "system:reaper";
pub const ACTOR_SERVER: &str = "system:server";

fn event(
    time: Timestamp,
    kind: &str,
    actor: &str,
    subject: String,
    task: Option<&Task>,
) -> NewEvent {
    NewEvent {
        time,
        kind: kind.to_owned(),
        actor: actor.to_owned(),
        subject,
        task_id: task.map(|t| t.id.to_string()),
        data: json!({}),
    }
}

pub fn user_created(user: &User, actor: &str) -> NewEvent {
    NewEvent {
        data: json!({ "name": user.name, "groups": user.groups, "admin": user.admin }),
        ..event(
            user.created_at,
            "user.created",
            actor,
            format!("user:{}", user.name),
            None,
        )
    }
}

fn agent_data(agent: &Agent) -> serde_json::Value {
    json!({
        "name": agent.name,
        "tier": agent.tier,
        "owner": agent.owner,
        "description": agent.description,
        "source": agent.source,
    })
}

pub fn agent_created(agent: &Agent, actor: &str) -> NewEvent {
    NewEvent {
        data: agent_data(agent),
        ..event(
            agent.created_at,
            "agent.created",
            actor,
            format!("agent:{}", agent.name),
            None,
        )
    }
}

/// `agent` is the new definition.
pub fn agent_updated(agent: &Agent, actor: &str, time: Timestamp) -> NewEvent {
    NewEvent {
        data: agent_data(agent),
        ..event(
            time,
            "agent.updated",
            actor,
            format!("agent:{}", agent.name),
            None,
        )
    }
}

pub fn task_created(task: &Task, actor: &str) -> NewEvent {
    NewEvent {
        data: json!({
            "agent": task.agent,
            "delegator": task.delegator,
            "purpose": task.purpose,
            "ticket": task.ticket,
            "scope": task.scope,
            "expires_at": task.expires_at,
        }),
        ..event(
            task.created_at,
            "task.created",
            actor,
            task_subject(task),
            Some(task),
        )
    }
}

/// `task` is the narrowed task; `previous_expires_at` what it had before.
pub fn task_narrowed(
    task: &Task,
    previous_expires_at: Timestamp,
    actor: &str,
    time: Timestamp,
) -> NewEvent {
    NewEvent {
        data: json!({
            "scope": task.scope,
            "expires_at": task.expires_at,
            "previous_expires_at": previous_expires_at,
        }),
        ..event(time, "task.narrowed", actor, task_subject(task), Some(task))
    }
}

pub fn task_ended(
    task: &Task,
    reason: EndReason,
    note: Option<&str>,
    actor: &str,
    time: Timestamp,
) -> NewEvent {
    NewEvent {
        data: json!({ "reason": reason, "note": note }),
        ..event(time, "task.ended", actor, task_subject(task), Some(task))
    }
}

fn task_subject(task: &Task) -> String {
    format!("task:{}", task.id)
}

pub fn keys_added(kid: &str, time: Timestamp) -> NewEvent {
    NewEvent {
        data: json!({ "kid": kid, "alg": "EdDSA" }),
        ..event(
            time,
            "keys.added",
            ACTOR_BOOTSTRAP,
            format!("key:{kid}"),
            None,
        )
    }
}

pub fn server_started(store: &str, listen: &str, kid: &str, time: Timestamp) -> NewEvent {
    NewEvent {
        data: json!({
            "version": env!("CARGO_PKG_VERSION"),
            "store": store,
            "listen": listen,
            "kid": kid,
        }),
        ..event(
            time,
            "server.started",
            ACTOR_SERVER,
            "server".to_owned(),
            None,
        )
    }
}

pub fn server_stopped(time: Timestamp) -> NewEvent {
    NewEvent {
        data: json!({ "version": env!("CARGO_PKG_VERSION") }),
        ..event(
            time,
            "server.stopped",
            ACTOR_SERVER,
            "server".to_owned(),
            None,
        )
    }
}
