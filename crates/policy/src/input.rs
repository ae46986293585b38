//! What a decision is made from. Everything Cedar sees is derived from a
//! [`DecisionInput`], so a recorded input can be decided again later
//! (`warrant policy replay`) with the same answer under the same policies.

use serde::{Deserialize, Serialize};
use warrant_core::{Scope, Tier};

/// One request to decide: an agent run asking to perform an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    /// Catalog name, e.g. `repo.push`.
    pub action: String,
    pub resource: ResourceRef,
    pub principal: PrincipalSnapshot,
    #[serde(default)]
    pub context: RequestContext,
    #[serde(default)]
    pub run: RunState,
    /// The task's scope.
    pub scope: Scope,
}

/// The resource acted on: `{"type": "Repo", "id": "acme/api"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// `Repo`, `Environment`, `Tool` or `Secret`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// The run, its agent and task, and the delegating user, as the store held
/// them when the request arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSnapshot {
    pub run: String,
    pub agent: String,
    pub tier: Tier,
    pub task: String,
    #[serde(default)]
    pub task_type: Option<String>,
    /// Token-exchange hops from the root run (0 for a root run).
    #[serde(default)]
    pub depth: u32,
    /// The delegating user.
    pub user: String,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub user_admin: bool,
}

/// What the enforcement point tells about the request. Everything is
/// optional; `branch_protected` and `production` are computed by the server
/// from its configuration, never taken from the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    /// The branch written to (`branch` for a push, `base_branch` for a
    /// merge) is protected.
    #[serde(default)]
    pub branch_protected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The environment is a production one.
    #[serde(default)]
    pub production: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Tool-call arguments as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// The enforcement point flags content it passes along as untrusted.
    #[serde(default)]
    pub untrusted_input: bool,
}

impl RequestContext {
    /// The fields whose values the audit log keeps only as keyed hashes:
    /// they can carry secrets, customer data or internal addresses.
    pub fn sensitive_fields() -> &'static [&'static str] {
        &["command", "url", "arguments", "path"]
    }

    /// Replaces each present sensitive value with `f(value)`.
    pub fn redact(&mut self, f: impl Fn(&str) -> String) {
        for field in [
            &mut self.command,
            &mut self.url,
            &mut self.arguments,
            &mut self.path,
        ] {
            if let Some(v) = field.as_mut() {
                *v = f(v);
            }
        }
    }
}

/// What the run has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    /// The run has ingested untrusted content (a `web.fetch`, or content an
    /// enforcement point flagged). It never becomes clean again.
    #[serde(default)]
    pub tainted: bool,
    /// Risk classes (`read`, `change`, ...) of actions already performed.
    #[serde(default)]
    pub history: Vec<String>,
}

/// A human's request to approve a pending approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveInput {
    pub approver: String,
    #[serde(default)]
    pub approver_groups: Vec<String>,
    #[serde(default)]
    pub approver_admin: bool,
    pub approval_id: String,
    /// The request the approval is for.
    pub request: DecisionInput,
}

impl DecisionInput {
    /// Whether performing this action (once allowed) leaves the run
    /// tainted: the action brings untrusted content in, or the enforcement
    /// point flagged the content it passes along.
    pub fn taints_run(&self) -> bool {
        self.context.untrusted_input
            || crate::catalog::action(&self.action).is_some_and(|a| a.taints)
    }

    /// The repo the request is about: the resource when it is a repo, else
    /// `context.repo`.
    pub fn repo(&self) -> Option<&str> {
        if self.resource.kind == "Repo" {
            Some(&self.resource.id)
        } else {
            self.context.repo.as_deref()
        }
    }

    /// The environment the request is about: the resource when it is an
    /// environment, else `context.environment`.
    pub fn environment(&self) -> Option<&str> {
        if self.resource.kind == "Environment" {
            Some(&self.resource.id)
        } else {
            self.context.environment.as_deref()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_only_present_sensitive_values() {
        let mut c = RequestContext {
            command: Some("cat .env".into()),
            url: Some("https://x.invalid/?token=1".into()),
            branch: Some("main".into()),
            ..RequestContext::default()
        };
        c.redact(|v| format!("h({})", v.len()));
        assert_eq!(c.command.as_deref(), Some("h(8)"));
        assert_eq!(c.url.as_deref(), Some("h(26)"));
        assert_eq!(c.path, None);
        assert_eq!(c.arguments, None);
        assert_eq!(c.branch.as_deref(), Some("main"));
        assert_eq!(RequestContext::sensitive_fields().len(), 4);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<RequestContext>(r#"{"branch_protectd": true}"#);
        assert!(e.is_err());
    }
}
