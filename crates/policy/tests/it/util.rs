//! Request builders and small helpers.

use warrant_core::{Scope, Tier};
use warrant_policy::{
    DecisionInput, Engine, PolicySource, PrincipalSnapshot, RequestContext, ResourceRef, RunState,
};

/// A request by a `propose` agent of `alice` (no groups), with a scope
/// covering exactly the request.
pub fn input(action: &str, kind: &str, id: &str) -> DecisionInput {
    let mut i = DecisionInput {
        action: action.into(),
        resource: ResourceRef {
            kind: kind.into(),
            id: id.into(),
        },
        principal: PrincipalSnapshot {
            run: "run-1".into(),
            agent: "claude-code".into(),
            tier: Tier::Propose,
            task: "task-1".into(),
            task_type: None,
            depth: 0,
            user: "alice".into(),
            user_groups: vec!["dev".into()],
            user_admin: false,
        },
        context: RequestContext::default(),
        run: RunState::default(),
        scope: Scope::default(),
    };
    i.scope = warrant_policy::cases::covering_scope(&i);
    i
}

pub fn push(branch: &str) -> DecisionInput {
    let mut i = input("repo.push", "Repo", "acme/api");
    i.context.branch = Some(branch.into());
    rescope(i)
}

/// Recomputes the covering scope after a change to the request.
pub fn rescope(mut i: DecisionInput) -> DecisionInput {
    i.scope = warrant_policy::cases::covering_scope(&i);
    i
}

pub fn privileged(mut i: DecisionInput) -> DecisionInput {
    i.principal.tier = Tier::Privileged;
    i
}

pub fn operator(mut i: DecisionInput) -> DecisionInput {
    i.principal.user_groups.push("operators".into());
    i
}

pub fn source(name: &str, text: &str) -> PolicySource {
    PolicySource {
        name: name.into(),
        text: text.into(),
    }
}

/// The default pack plus extra files.
pub fn default_plus(extra: &[(&str, &str)]) -> Engine {
    let mut sources: Vec<PolicySource> = Engine::default_pack().sources().to_vec();
    sources.extend(extra.iter().map(|(n, t)| source(n, t)));
    Engine::from_sources(sources).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}
