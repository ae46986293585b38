//! The action catalog: every action an agent can ask for, its risk class,
//! the resource types it applies to, and whether performing it taints the
//! run. The schema (`schema/warrant.cedarschema`) declares the same
//! actions; a test keeps the two in step.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How much an action can hurt. Each class is a Cedar action group
/// (`Action::"class:change"`), so policies can speak of a class at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskClass {
    Read,
    Change,
    Secret,
    Deploy,
    Delete,
}

impl RiskClass {
    pub const ALL: [RiskClass; 5] = [
        RiskClass::Read,
        RiskClass::Change,
        RiskClass::Secret,
        RiskClass::Deploy,
        RiskClass::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::Read => "read",
            RiskClass::Change => "change",
            RiskClass::Secret => "secret",
            RiskClass::Deploy => "deploy",
            RiskClass::Delete => "delete",
        }
    }

    /// The Cedar action group's id: `class:read`, ...
    pub fn group(self) -> &'static str {
        match self {
            RiskClass::Read => "class:read",
            RiskClass::Change => "class:change",
            RiskClass::Secret => "class:secret",
            RiskClass::Deploy => "class:deploy",
            RiskClass::Delete => "class:delete",
        }
    }

    /// The class's share of the risk score (see [`crate::risk`]).
    pub fn weight(self) -> i64 {
        match self {
            RiskClass::Read => 0,
            RiskClass::Change => 20,
            RiskClass::Secret => 40,
            RiskClass::Deploy => 50,
            RiskClass::Delete => 60,
        }
    }
}

impl fmt::Display for RiskClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource types agent actions apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Repo,
    Environment,
    Tool,
    Secret,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 4] = [
        ResourceKind::Repo,
        ResourceKind::Environment,
        ResourceKind::Tool,
        ResourceKind::Secret,
    ];

    /// The Cedar entity type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Repo => "Repo",
            ResourceKind::Environment => "Environment",
            ResourceKind::Tool => "Tool",
            ResourceKind::Secret => "Secret",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    pub name: &'static str,
    pub class: RiskClass,
    /// The resource types the action applies to.
    pub resources: &'static [ResourceKind],
    /// Performing it leaves the run tainted (it brings untrusted content in).
    pub taints: bool,
}

impl ActionSpec {
    /// The task's scope must name a repo (`repo.*` actions).
    pub fn requires_repo(&self) -> bool {
        self.name.starts_with("repo.")
    }

    /// The task's scope must cover a branch (pushes and merges).
    pub fn requires_branch(&self) -> bool {
        matches!(self.name, "repo.push" | "repo.merge")
    }

    /// The branch merged into is checked too, and must be named (merges).
    pub fn requires_base_branch(&self) -> bool {
        self.name == "repo.merge"
    }

    /// The task's scope must cover an environment (deploys).
    pub fn requires_environment(&self) -> bool {
        self.name == "deploy"
    }
}

use ResourceKind::{Environment, Repo, Secret, Tool};

const fn spec(
    name: &'static str,
    class: RiskClass,
    resources: &'static [ResourceKind],
) -> ActionSpec {
    ActionSpec {
        name,
        class,
        resources,
        taints: false,
    }
}

/// Every action agents can request. `approve` (a human approving a pending
/// approval) is in the schema but not here: no agent may ask for it.
pub const CATALOG: &[ActionSpec] = &[
    spec("repo.read", RiskClass::Read, &[Repo]),
    spec("file.read", RiskClass::Read, &[Repo]),
    spec("repo.push", RiskClass::Change, &[Repo]),
    spec("repo.merge", RiskClass::Change, &[Repo]),
    spec("ci.run", RiskClass::Change, &[Repo]),
    spec("file.write", RiskClass::Change, &[Repo]),
    spec("shell.exec", RiskClass::Change, &[Repo, Tool]),
    // Read-ish, but it brings untrusted content into the run and, with a
    // method other than GET, is an outbound channel: a change that taints.
    ActionSpec {
        taints: true,
        ..spec("web.fetch", RiskClass::Change, &[Tool])
    },
    spec("mcp.call", RiskClass::Change, &[Tool]),
    spec("secret.read", RiskClass::Secret, &[Secret]),
    spec(
        "credential.issue",
        RiskClass::Secret,
        &[Secret, Repo, Environment],
    ),
    spec("deploy", RiskClass::Deploy, &[Environment]),
    spec("release", RiskClass::Deploy, &[Repo, Environment]),
    spec("delete", RiskClass::Delete, &[Repo, Environment, Secret]),
    spec("rotate", RiskClass::Delete, &[Secret]),
];

/// The action a human performs on an approval; in the schema, not in
/// [`CATALOG`].
pub const APPROVE: &str = "approve";

/// Looks an action up by its catalog name.
pub fn action(name: &str) -> Option<&'static ActionSpec> {
    CATALOG.iter().find(|a| a.name == name)
}
