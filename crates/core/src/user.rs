//! Humans and agents.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{CoreError, Name};

/// A human principal. Local users authenticate with an API token whose
/// hash the store keeps; the token itself is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: Name,
    pub groups: Vec<Name>,
    /// Admins manage users and agents and see every task and the audit log.
    pub admin: bool,
    pub created_at: Timestamp,
}

/// What an agent may do at most, before any policy narrows it further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Reads only.
    ReadOnly,
    /// May propose changes (push branches, open pull requests), not land them.
    Propose,
    /// May land and deploy, subject to approvals.
    Privileged,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::ReadOnly => "read-only",
            Tier::Propose => "propose",
            Tier::Privileged => "privileged",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read-only" => Ok(Tier::ReadOnly),
            "propose" => Ok(Tier::Propose),
            "privileged" => Ok(Tier::Privileged),
            _ => Err(CoreError::Invalid {
                what: "tier",
                value: s.chars().take(64).collect(),
                why: "expected `read-only`, `propose` or `privileged`",
            }),
        }
    }
}

/// A kind of coding agent, registered by an admin or declared in config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub name: Name,
    pub tier: Tier,
    /// The human accountable for this agent profile, if any.
    pub owner: Option<Name>,
    pub description: String,
    /// Where the definition came from: `api` or `config`.
    pub source: String,
    pub created_at: Timestamp,
}
