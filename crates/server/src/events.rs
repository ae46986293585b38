//! The audit events this crate writes, built in one place so their kinds,
//! subjects and data fields stay consistent (docs/audit-log.md lists them).
//! No event holds a secret: tokens and their hashes are never logged.

use jiff::Timestamp;
use serde_json::json;
use warrant_audit::NewEvent;
use warrant_core::{Agent, EndReason, Task, User};
use warrant_store::Run;

pub const ACTOR_BOOTSTRAP: &str = "system:bootstrap";
pub const ACTOR_CONFIG: &str = "system:config";
pub const ACTOR_REAPER: &str = "system:reaper";
pub const ACTOR_SERVER: &str = "system:server";
/// A caller whose credentials were refused: nothing about it is trusted.
pub const ACTOR_ANONYMOUS: &str = "anonymous";

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

/// One run revoked without ending its task.
pub fn run_revoked(run: &Run, reason: &str, actor: &str, time: Timestamp) -> NewEvent {
    NewEvent {
        time,
        kind: "run.revoked".to_owned(),
        actor: actor.to_owned(),
        subject: format!("run:{}", run.id),
        task_id: Some(run.task_id.to_string()),
        data: json!({ "run_id": run.id.to_string(), "agent": run.agent, "reason": reason }),
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

/// A rotation: `kid` signs from now on, `retired` only verifies until the
/// tokens it signed have expired.
pub fn keys_rotated(kid: &str, retired: &str, actor: &str, time: Timestamp) -> NewEvent {
    NewEvent {
        data: json!({ "kid": kid, "retired": retired }),
        ..event(time, "keys.rotated", actor, format!("key:{kid}"), None)
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

/// A claim was redeemed: `run` started on `task`. Actor and subject are
/// the run's SPIFFE id; the data never holds the claim or the token.
pub fn run_started(
    run: &warrant_store::Run,
    sub: &str,
    grant_type: &str,
    token_jti: &str,
    token_exp: i64,
    time: Timestamp,
) -> NewEvent {
    NewEvent {
        time,
        kind: "run.started".to_owned(),
        actor: sub.to_owned(),
        subject: format!("run:{}", run.id),
        task_id: Some(run.task_id.to_string()),
        data: json!({
            "run_id": run.id.to_string(),
            "agent": run.agent,
            "jkt": run.jkt,
            "grant_type": grant_type,
            "parent_run_id": run.parent_run_id.map(|p| p.to_string()),
            "depth": run.depth,
            "expires_at": run.expires_at,
            "token_jti": token_jti,
            "token_exp": token_exp,
        }),
    }
}

/// A run traded its token for a fresh one (the refresh grant).
pub fn run_refreshed(
    run: &warrant_store::Run,
    sub: &str,
    previous_jti: &str,
    token_jti: &str,
    token_exp: i64,
    time: Timestamp,
) -> NewEvent {
    NewEvent {
        time,
        kind: "run.refreshed".to_owned(),
        actor: sub.to_owned(),
        subject: format!("run:{}", run.id),
        task_id: Some(run.task_id.to_string()),
        data: json!({
            "run_id": run.id.to_string(),
            "previous_jti": previous_jti,
            "token_jti": token_jti,
            "token_exp": token_exp,
        }),
    }
}

/// Who a refusal is about, as far as the refused request let us know.
#[derive(Debug, Clone, Default)]
pub struct RefusalContext {
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    /// Thumbprint of the DPoP key, once its proof verified.
    pub jkt: Option<String>,
}

/// `POST /v1/token` refused a grant. `check` names the failed check
/// (e.g. `claim_used`, `dpop_replayed`); never the claim or the proof.
pub fn token_refused(
    grant_type: Option<&str>,
    check: &str,
    error: &str,
    context: &RefusalContext,
    time: Timestamp,
) -> NewEvent {
    refused(
        "token.refused",
        json!({
            "grant_type": grant_type.map(|g| g.chars().take(100).collect::<String>()),
            "check": check,
            "error": error,
            "run_id": context.run_id,
            "jkt": context.jkt,
        }),
        context,
        time,
    )
}

/// A run token (with its proof) was refused at `path`.
pub fn run_token_refused(
    method: &str,
    path: &str,
    check: &str,
    error: &str,
    context: &RefusalContext,
    time: Timestamp,
) -> NewEvent {
    refused(
        "run_token.refused",
        json!({
            "method": method,
            "path": path.chars().take(200).collect::<String>(),
            "check": check,
            "error": error,
            "run_id": context.run_id,
            "jkt": context.jkt,
        }),
        context,
        time,
    )
}

fn refused(
    kind: &str,
    data: serde_json::Value,
    context: &RefusalContext,
    time: Timestamp,
) -> NewEvent {
    let subject = match (&context.run_id, &context.task_id) {
        (Some(run), _) => format!("run:{run}"),
        (None, Some(task)) => format!("task:{task}"),
        (None, None) => "token".to_owned(),
    };
    NewEvent {
        time,
        kind: kind.to_owned(),
        actor: ACTOR_ANONYMOUS.to_owned(),
        subject,
        task_id: context.task_id.clone(),
        data,
    }
}
