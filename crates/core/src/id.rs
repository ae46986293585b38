//! Identifiers and names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CoreError;

/// A task id: a UUIDv7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A fresh id. Uses the system's randomness and time; the only
    /// non-deterministic constructor in this crate.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| CoreError::Invalid {
                what: "task id",
                value: s.chars().take(64).collect(),
                why: "expected a UUID such as `0192f5a4-7c1e-7b3a-9d2e-5f8a1b2c3d4e`",
            })
    }
}

/// The name of a user, agent or group: 1 to 63 characters of lowercase
/// ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit.
///
/// Names appear in SPIFFE ids, audit subjects and Cedar entity ids, so the
/// alphabet is deliberately narrow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn parse(what: &'static str, s: &str) -> Result<Self, CoreError> {
        let invalid = |why| CoreError::Invalid {
            what,
            value: s.chars().take(64).collect(),
            why,
        };
        if s.is_empty() || s.len() > 63 {
            return Err(invalid("must be 1 to 63 characters long"));
        }
        let mut chars = s.chars();
        if !chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(invalid("must start with a lowercase letter or a digit"));
        }
        if !chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "may contain only lowercase letters, digits, `.`, `_` and `-`",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse("name", &s)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> Self {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_narrow_alphabet() {
        for ok in ["admin", "claude-code", "release.bot", "a", "9lives", "a_b"] {
            assert!(Name::parse("name", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_refuse_everything_else() {
        let long = "a".repeat(64);
        for bad in [
            "",
            "Admin",
            "-x",
            ".x",
            "a b",
            "a/b",
            "é",
            long.as_str(),
            "a:b",
        ] {
            assert!(Name::parse("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_ids_parse_only_uuids() {
        let id = TaskId::new();
        assert_eq!(id.to_string().parse::<TaskId>(), Ok(id));
        assert!("not-a-uuid".parse::<TaskId>().is_err());
    }
}
