//! Tasks: the signed trigger an agent run acts under.

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{CoreError, Name, TaskId};

/// What a task covers. Every list is an allowlist: an empty list means
/// *nothing* of that kind is in scope, never "everything".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Repositories as `owner/name`.
    #[serde(default)]
    pub repos: Vec<String>,
    /// Branch globs (`main`, `feature/*`).
    #[serde(default)]
    pub branches: Vec<String>,
    /// Environment names (`staging`, `production`).
    #[serde(default)]
    pub environments: Vec<String>,
    /// Action names from the action catalog (`repo.read`, `repo.push`).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Tool names (`github/create_pull_request`).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Secret names.
    #[serde(default)]
    pub secrets: Vec<String>,
}

const MAX_SCOPE_ENTRIES: usize = 100;
const MAX_ENTRY_LEN: usize = 200;

impl Scope {
    /// Checks every entry's shape and removes duplicates (keeping order).
    pub fn validated(mut self) -> Result<Self, CoreError> {
        check_list("repo", &mut self.repos, valid_repo)?;
        check_list("branch glob", &mut self.branches, valid_branch_glob)?;
        check_list("environment", &mut self.environments, valid_simple)?;
        check_list("action", &mut self.actions, valid_action)?;
        check_list("tool", &mut self.tools, valid_tool)?;
        check_list("secret", &mut self.secrets, valid_tool)?;
        Ok(self)
    }

    /// `Ok` when `self` grants nothing that `wider` does not.
    ///
    /// Entries are compared as written: `feature/x` does not count as a
    /// narrowing of the glob `feature/*` (a narrower glob must be listed
    /// verbatim in the wider scope). This errs on the side of refusing.
    pub fn check_narrowing_of(&self, wider: &Scope) -> Result<(), CoreError> {
        let pairs: [(&str, &Vec<String>, &Vec<String>); 6] = [
            ("repos", &self.repos, &wider.repos),
            ("branches", &self.branches, &wider.branches),
            ("environments", &self.environments, &wider.environments),
            ("actions", &self.actions, &wider.actions),
            ("tools", &self.tools, &wider.tools),
            ("secrets", &self.secrets, &wider.secrets),
        ];
        for (what, narrow, wide) in pairs {
            if let Some(extra) = narrow.iter().find(|e| !wide.contains(e)) {
                return Err(CoreError::NotNarrowing(format!(
                    "{what} entry `{extra}` is not in the task's scope"
                )));
            }
        }
        Ok(())
    }
}

fn check_list(
    what: &'static str,
    list: &mut Vec<String>,
    valid: fn(&str) -> Result<(), &'static str>,
) -> Result<(), CoreError> {
    if list.len() > MAX_SCOPE_ENTRIES {
        return Err(CoreError::Invalid {
            what,
            value: format!("{} entries", list.len()),
            why: "a scope list holds at most 100 entries",
        });
    }
    let mut seen = Vec::with_capacity(list.len());
    for entry in list.drain(..) {
        if entry.len() > MAX_ENTRY_LEN {
            return Err(CoreError::Invalid {
                what,
                value: entry.chars().take(64).collect(),
                why: "entries are at most 200 characters",
            });
        }
        valid(&entry).map_err(|why| CoreError::Invalid {
            what,
            value: entry.chars().take(64).collect(),
            why,
        })?;
        if !seen.contains(&entry) {
            seen.push(entry);
        }
    }
    *list = seen;
    Ok(())
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_repo(s: &str) -> Result<(), &'static str> {
    match s.split_once('/') {
        Some((owner, name)) if segment_ok(owner) && segment_ok(name) => Ok(()),
        _ => Err("expected `owner/name` with letters, digits, `.`, `_` or `-`"),
    }
}

fn valid_branch_glob(s: &str) -> Result<(), &'static str> {
    // git's own ref-name rules, plus `*` for globs.
    let bad = s.is_empty()
        || s.starts_with('/')
        || s.ends_with('/')
        || s.ends_with('.')
        || s.contains("..")
        || s.contains("//")
        || s.contains("@{")
        || s.chars()
            .any(|c| c.is_ascii_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '[' | '\\'));
    if bad {
        Err("expected a git branch name or glob such as `main` or `feature/*`")
    } else {
        Ok(())
    }
}

fn valid_simple(s: &str) -> Result<(), &'static str> {
    if segment_ok(s) {
        Ok(())
    } else {
        Err("use letters, digits, `.`, `_` or `-`")
    }
}

fn valid_action(s: &str) -> Result<(), &'static str> {
    let ok = s.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    });
    if ok {
        Ok(())
    } else {
        Err("expected an action name such as `repo.read` or `deploy`")
    }
}

fn valid_tool(s: &str) -> Result<(), &'static str> {
    let ok =
        !s.is_empty() && s.split('/').all(segment_ok) && !s.starts_with('/') && !s.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err("use letters, digits, `.`, `_`, `-` and `/` between segments")
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created, no run has attested yet.
    Pending,
    /// At least one run has attested.
    Active,
    /// Over; see [`EndReason`].
    Ended,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Active => "active",
            TaskState::Ended => "ended",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(TaskState::Pending),
            "active" => Ok(TaskState::Active),
            "ended" => Ok(TaskState::Ended),
            _ => Err(CoreError::Invalid {
                what: "task state",
                value: s.chars().take(64).collect(),
                why: "expected `pending`, `active` or `ended`",
            }),
        }
    }
}

/// Why a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Ended by its delegator or its agent when the work was done.
    Completed,
    /// Its TTL ran out; ended by the reaper.
    Expired,
    /// Revoked by an admin.
    Revoked,
    /// Ended by a kill switch.
    Killed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Completed => "completed",
            EndReason::Expired => "expired",
            EndReason::Revoked => "revoked",
            EndReason::Killed => "killed",
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EndReason {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "completed" => Ok(EndReason::Completed),
            "expired" => Ok(EndReason::Expired),
            "revoked" => Ok(EndReason::Revoked),
            "killed" => Ok(EndReason::Killed),
            _ => Err(CoreError::Invalid {
                what: "end reason",
                value: s.chars().take(64).collect(),
                why: "expected `completed`, `expired`, `revoked` or `killed`",
            }),
        }
    }
}

/// One task. Immutable after creation except for its state and to narrow
/// its scope or shorten its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub agent: Name,
    /// The human who delegated the task; the agent's rights never exceed theirs.
    pub delegator: Name,
    pub purpose: String,
    pub ticket: Option<String>,
    pub scope: Scope,
    pub state: TaskState,
    pub end_reason: Option<EndReason>,
    /// Free text given when the task was ended.
    pub end_note: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub ended_at: Option<Timestamp>,
}

impl Task {
    pub fn is_live(&self) -> bool {
        self.state != TaskState::Ended
    }
}

/// The limits a task's TTL must fall within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlBounds {
    pub min: SignedDuration,
    pub max: SignedDuration,
    pub default: SignedDuration,
}

impl Default for TtlBounds {
    fn default() -> Self {
        Self {
            min: SignedDuration::from_mins(1),
            max: SignedDuration::from_hours(8),
            default: SignedDuration::from_hours(1),
        }
    }
}

impl TtlBounds {
    /// Parses a TTL such as `30m`, `1h30m` or `PT2H` and checks the bounds.
    /// `None` gives the default, capped at the maximum.
    pub fn resolve(&self, ttl: Option<&str>) -> Result<SignedDuration, CoreError> {
        let Some(raw) = ttl else {
            return Ok(self.default.min(self.max));
        };
        let d = parse_duration(raw)?;
        if d < self.min || d > self.max {
            return Err(CoreError::TtlOutOfBounds {
                value: raw.chars().take(64).collect(),
                min: format!("{:#}", self.min),
                max: format!("{:#}", self.max),
            });
        }
        Ok(d)
    }
}

/// Parses a duration in jiff's friendly (`30m`, `1h 30m`) or ISO 8601
/// (`PT30M`) form.
pub fn parse_duration(raw: &str) -> Result<SignedDuration, CoreError> {
    raw.trim()
        .parse::<SignedDuration>()
        .map_err(|_| CoreError::Invalid {
            what: "duration",
            value: raw.chars().take(64).collect(),
            why: "expected a duration such as `30m`, `2h` or `1h30m`",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(repos: &[&str], actions: &[&str]) -> Scope {
        Scope {
            repos: repos.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            ..Scope::default()
        }
    }

    #[test]
    fn ttl_bounds_are_enforced() {
        let b = TtlBounds::default();
        assert_eq!(b.resolve(Some("30m")), Ok(SignedDuration::from_mins(30)));
        assert_eq!(b.resolve(Some("1m")), Ok(SignedDuration::from_mins(1)));
        assert_eq!(b.resolve(Some("8h")), Ok(SignedDuration::from_hours(8)));
        assert_eq!(b.resolve(None), Ok(SignedDuration::from_hours(1)));
        assert!(matches!(
            b.resolve(Some("59s")),
            Err(CoreError::TtlOutOfBounds { .. })
        ));
        assert!(matches!(
            b.resolve(Some("9h")),
            Err(CoreError::TtlOutOfBounds { .. })
        ));
        assert!(matches!(
            b.resolve(Some("-5m")),
            Err(CoreError::TtlOutOfBounds { .. })
        ));
        assert!(matches!(
            b.resolve(Some("soon")),
            Err(CoreError::Invalid { .. })
        ));
    }

    #[test]
    fn default_ttl_never_exceeds_max() {
        let b = TtlBounds {
            max: SignedDuration::from_mins(10),
            ..TtlBounds::default()
        };
        assert_eq!(b.resolve(None), Ok(SignedDuration::from_mins(10)));
    }

    #[test]
    fn scope_validation_rejects_bad_entries_and_dedups() {
        let s = scope(&["acme/api", "acme/api"], &["repo.read"]).validated();
        assert_eq!(s.map(|s| s.repos), Ok(vec!["acme/api".to_string()]));
        for bad in ["acme", "/api", "acme/", "acme/a b", "acme/../x"] {
            assert!(scope(&[bad], &[]).validated().is_err(), "{bad}");
        }
        for bad in ["Repo.Read", "repo..read", "repo read", ""] {
            assert!(scope(&[], &[bad]).validated().is_err(), "{bad}");
        }
        let mut b = Scope::default();
        for bad in ["", "a..b", "a b", "x:y", "/main", "main/"] {
            b.branches = vec![bad.to_string()];
            assert!(b.clone().validated().is_err(), "{bad}");
        }
        b.branches = vec!["feature/*".into(), "main".into()];
        assert!(b.validated().is_ok());
    }

    #[test]
    fn narrowing_is_a_subset_per_list() {
        let wide = scope(&["acme/api", "acme/web"], &["repo.read", "repo.push"]);
        assert!(
            scope(&["acme/api"], &["repo.read"])
                .check_narrowing_of(&wide)
                .is_ok()
        );
        assert!(scope(&[], &[]).check_narrowing_of(&wide).is_ok());
        assert!(scope(&["acme/ops"], &[]).check_narrowing_of(&wide).is_err());
        assert!(scope(&[], &["deploy"]).check_narrowing_of(&wide).is_err());
    }
}

/// What one request asks of a task's scope, for [`Scope::covers`]. The
/// caller (the policy engine, which knows the action catalog) says which
/// dimensions the action requires: a required dimension that the request
/// does not name is a miss, never a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeCheck<'a> {
    /// The action's catalog name, matched exactly against `scope.actions`.
    pub action: &'a str,
    pub repo: Option<&'a str>,
    pub repo_required: bool,
    /// The branch written to or read from.
    pub branch: Option<&'a str>,
    pub branch_required: bool,
    /// The branch merged into (merges only).
    pub base_branch: Option<&'a str>,
    pub base_branch_required: bool,
    pub environment: Option<&'a str>,
    pub environment_required: bool,
    /// The tool, when the request's resource is a tool.
    pub tool: Option<&'a str>,
    /// The secret, when the request's resource is a secret.
    pub secret: Option<&'a str>,
}

/// Why a request falls outside a task's scope: the dimension and, when the
/// request named one, the value that is not covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeMiss {
    /// `action`, `repo`, `branch`, `base branch`, `environment`, `tool` or `secret`.
    pub dimension: &'static str,
    /// `None` when the request did not name a required value.
    pub value: Option<String>,
}

impl fmt::Display for ScopeMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} `{v}` is not in the task's scope", self.dimension),
            None => write!(
                f,
                "the request names no {}, which this action needs to be checked against the task's scope",
                self.dimension
            ),
        }
    }
}

impl Scope {
    /// `Ok` when the task's scope covers the request. Every named value must
    /// be listed (branches match a glob); an empty list covers nothing.
    pub fn covers(&self, check: &ScopeCheck<'_>) -> Result<(), ScopeMiss> {
        fn miss(dimension: &'static str, value: Option<&str>) -> ScopeMiss {
            ScopeMiss {
                dimension,
                value: value.map(|v| v.chars().take(200).collect()),
            }
        }
        fn listed(list: &[String], v: &str) -> bool {
            list.iter().any(|e| e == v)
        }
        fn dimension(
            name: &'static str,
            value: Option<&str>,
            required: bool,
            ok: impl Fn(&str) -> bool,
        ) -> Result<(), ScopeMiss> {
            match value {
                Some(v) if ok(v) => Ok(()),
                Some(v) => Err(miss(name, Some(v))),
                None if required => Err(miss(name, None)),
                None => Ok(()),
            }
        }
        let glob = |v: &str| {
            self.branches
                .iter()
                .any(|g| crate::glob::branch_glob_matches(g, v))
        };
        if !listed(&self.actions, check.action) {
            return Err(miss("action", Some(check.action)));
        }
        dimension("repo", check.repo, check.repo_required, |v| {
            listed(&self.repos, v)
        })?;
        dimension("branch", check.branch, check.branch_required, glob)?;
        dimension(
            "base branch",
            check.base_branch,
            check.base_branch_required,
            glob,
        )?;
        dimension(
            "environment",
            check.environment,
            check.environment_required,
            |v| listed(&self.environments, v),
        )?;
        dimension("tool", check.tool, false, |v| listed(&self.tools, v))?;
        dimension("secret", check.secret, false, |v| listed(&self.secrets, v))?;
        Ok(())
    }
}

#[cfg(test)]
mod covers_tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            repos: vec!["acme/api".into()],
            branches: vec!["feature/*".into()],
            environments: vec!["staging".into()],
            actions: vec!["repo.push".into(), "repo.merge".into(), "deploy".into()],
            tools: vec!["github/create_pull_request".into()],
            secrets: vec!["db-password".into()],
        }
    }

    fn push<'a>(repo: &'a str, branch: Option<&'a str>) -> ScopeCheck<'a> {
        ScopeCheck {
            action: "repo.push",
            repo: Some(repo),
            repo_required: true,
            branch,
            branch_required: true,
            ..ScopeCheck::default()
        }
    }

    #[test]
    fn a_request_inside_every_dimension_is_covered() {
        assert_eq!(scope().covers(&push("acme/api", Some("feature/x"))), Ok(()));
    }

    #[test]
    fn each_dimension_names_its_miss() {
        let s = scope();
        let e = s.covers(&push("acme/web", Some("feature/x"))).unwrap_err();
        assert_eq!(e.to_string(), "repo `acme/web` is not in the task's scope");
        let e = s.covers(&push("acme/api", Some("main"))).unwrap_err();
        assert_eq!(e.to_string(), "branch `main` is not in the task's scope");
        let e = s.covers(&push("acme/api", None)).unwrap_err();
        assert_eq!((e.dimension, e.value), ("branch", None));
        let e = s
            .covers(&ScopeCheck {
                action: "delete",
                ..ScopeCheck::default()
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "action `delete` is not in the task's scope");
        let merge = ScopeCheck {
            action: "repo.merge",
            base_branch: Some("main"),
            base_branch_required: true,
            ..push("acme/api", Some("feature/x"))
        };
        assert_eq!(s.covers(&merge).unwrap_err().dimension, "base branch");
        let deploy = ScopeCheck {
            action: "deploy",
            environment: Some("production"),
            environment_required: true,
            ..ScopeCheck::default()
        };
        assert_eq!(s.covers(&deploy).unwrap_err().dimension, "environment");
        let tool = ScopeCheck {
            tool: Some("shell"),
            ..push("acme/api", Some("feature/x"))
        };
        assert_eq!(s.covers(&tool).unwrap_err().dimension, "tool");
        let secret = ScopeCheck {
            secret: Some("api-key"),
            ..push("acme/api", Some("feature/x"))
        };
        assert_eq!(s.covers(&secret).unwrap_err().dimension, "secret");
    }

    #[test]
    fn an_empty_list_covers_nothing() {
        let s = Scope {
            actions: vec!["repo.push".into()],
            ..Scope::default()
        };
        assert!(s.covers(&push("acme/api", Some("feature/x"))).is_err());
        // Not required and not named: nothing to check.
        assert!(
            s.covers(&ScopeCheck {
                action: "repo.push",
                ..ScopeCheck::default()
            })
            .is_ok()
        );
    }
}
