//! Loading a policy set: parse every file, check annotations, validate
//! against the schema in strict mode, and build the per-action index.
//! Loading is a pure function of the sources: a failed load changes
//! nothing, so the engine already serving keeps serving.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr as _;

use cedar_policy::{
    ActionConstraint, Effect, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet,
    PrincipalConstraint, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use serde::Serialize;

use crate::catalog::{self, APPROVE};

/// One problem found while loading policies (or policy tests), with where
/// it is. `line` and `column` are 1-based; 0 when the problem is about the
/// file or directory as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl LoadError {
    pub(crate) fn at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_col(text, offset);
        Self {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    pub(crate) fn whole(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// One policy file: its name (as shown in errors) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// What Warrant knows about each loaded policy.
#[derive(Debug, Clone)]
pub(crate) struct PolicyMeta {
    /// Position in load order (files sorted by name, then by position).
    pub ordinal: usize,
    pub reason: Option<String>,
    pub quorum: Option<u32>,
}

/// The principal types agent and user decisions are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PrincipalType {
    Run,
    User,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::Run => "Run",
            PrincipalType::User => "User",
        }
    }

    /// Entity types a principal of this type can be `in` (itself and its
    /// ancestors in the schema).
    fn in_targets(self) -> &'static [&'static str] {
        match self {
            PrincipalType::Run => &["Run", "Agent"],
            PrincipalType::User => &["User", "Group"],
        }
    }
}

/// Policies selected per action and principal type.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// action name -> (run policies, user policies)
    pub main: HashMap<String, (PolicySet, PolicySet)>,
    /// action name -> approval rules for runs
    pub approvals: HashMap<String, PolicySet>,
}

/// A loaded and validated policy set.
pub(crate) struct Loaded {
    pub sources: Vec<PolicySource>,
    pub schema: Schema,
    pub main: PolicySet,
    pub approvals: PolicySet,
    pub meta: HashMap<String, PolicyMeta>,
    pub ids: Vec<String>,
    pub index: Index,
}

/// The schema every policy is validated against.
pub const SCHEMA: &str = include_str!("../schema/warrant.cedarschema");

pub(crate) fn schema() -> Result<Schema, LoadError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _warnings)| s)
        .map_err(|e| LoadError::whole("warrant.cedarschema", format!("internal error: {e}")))
}

/// A policy as parsed, before it gets its `@id`.
struct Parsed {
    file: usize,
    offset: usize,
    policy: Policy,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))
}

/// Parses, checks and validates `sources` (any order; they are sorted by
/// name) and builds the index. Returns every problem found.
pub(crate) fn load(mut sources: Vec<PolicySource>) -> Result<Loaded, Vec<LoadError>> {
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let schema = schema().map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut parsed = Vec::new();

    for (fi, src) in sources.iter().enumerate() {
        let set = match PolicySet::from_str(&src.text) {
            Ok(set) => set,
            Err(errs) => {
                for e in errs.iter() {
                    errors.push(diag_error(&src.name, &src.text, e, e.to_string()));
                }
                continue;
            }
        };
        // Policies come back as `policy0`, `policy1`... in file order; find
        // each one's text in the file to know where it starts.
        let mut cursor = 0;
        let mut statics = Vec::new();
        let mut n = 0usize;
        loop {
            let pid = PolicyId::new(format!("policy{n}"));
            if let Some(p) = set.policy(&pid) {
                let offset = p
                    .to_cedar()
                    .and_then(|t| src.text[cursor..].find(&t).map(|i| (i, t.len())))
                    .map_or(cursor, |(i, len)| {
                        let start = cursor + i;
                        cursor = start + len;
                        start
                    });
                statics.push(Parsed {
                    file: fi,
                    offset,
                    policy: p.clone(),
                });
            } else if set.template(&pid).is_some() {
                errors.push(LoadError::at(
                    &src.name,
                    &src.text,
                    cursor,
                    "templates (policies with `?principal` or `?resource`) are not supported",
                ));
            } else {
                break;
            }
            n += 1;
        }
        parsed.extend(statics);
    }

    // Validate under temporary ids that map back to a file and offset.
    let mut vset = PolicySet::new();
    for (i, p) in parsed.iter().enumerate() {
        if let Err(e) = vset.add(p.policy.new_id(PolicyId::new(format!("#{i}")))) {
            errors.push(internal(&sources, p, e.to_string()));
        }
    }
    let validator = Validator::new(schema.clone());
    let result = validator.validate(&vset, ValidationMode::Strict);
    for e in result.validation_errors() {
        let Some(p) = e
            .policy_id()
            .to_string()
            .strip_prefix('#')
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| parsed.get(i))
        else {
            errors.push(LoadError::whole("policies", e.to_string()));
            continue;
        };
        let src = &sources[p.file];
        // Name the policy by its `@id`, not by the temporary id.
        let tmp = format!("`{}`", e.policy_id());
        let shown = p
            .policy
            .annotation("id")
            .map_or_else(|| "the policy".to_owned(), |id| format!("policy `{id}`"));
        let mut err = diag_error(&src.name, &src.text, e, e.to_string());
        err.message = err
            .message
            .replace(&format!("for policy {tmp}, "), "")
            .replace(&format!("policy {tmp}"), &shown);
        if err.line == 0 {
            let (line, column) = line_col(&src.text, p.offset);
            err.line = line;
            err.column = column;
        }
        errors.push(err);
    }

    // Annotations: ids, reasons, approval rules.
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let mut meta = HashMap::new();
    let mut ids = Vec::new();
    let mut main = PolicySet::new();
    let mut approvals = PolicySet::new();
    for (ordinal, p) in parsed.iter().enumerate() {
        let src = &sources[p.file];
        let here = |msg: String| LoadError::at(&src.name, &src.text, p.offset, msg);
        let Some(id) = p.policy.annotation("id") else {
            errors.push(here(
                "the policy has no `@id(\"...\")` annotation; every policy needs a unique id"
                    .into(),
            ));
            continue;
        };
        if !valid_id(id) {
            errors.push(here(format!(
                "policy id `{}` is not valid: use letters, digits, `.`, `_`, `-`, `:` or `/`",
                id.chars().take(64).collect::<String>()
            )));
            continue;
        }
        if id.starts_with("warrant.") {
            errors.push(here(format!(
                "policy id `{id}` is reserved: ids starting with `warrant.` belong to Warrant"
            )));
            continue;
        }
        if let Some((f, off)) = seen.get(id) {
            let first = &sources[*f];
            let (line, col) = line_col(&first.text, *off);
            errors.push(here(format!(
                "duplicate policy id `{id}` (first used at {}:{line}:{col})",
                first.name
            )));
            continue;
        }
        seen.insert(id.to_owned(), (p.file, p.offset));
        let reason = p.policy.annotation("reason").map(str::to_owned);
        let forbid = p.policy.effect() == Effect::Forbid;
        if forbid && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            errors.push(here(format!(
                "forbid policy `{id}` has no `@reason(\"...\")`: a forbid must say why"
            )));
        }
        let approval = match p.policy.annotation("approval") {
            None => false,
            Some("required") if !forbid => true,
            Some("required") => {
                errors.push(here(format!(
                    "policy `{id}`: `@approval(\"required\")` is only allowed on a permit"
                )));
                false
            }
            Some(other) => {
                errors.push(here(format!(
                    "policy `{id}`: `@approval(\"{}\")` is not valid, expected `@approval(\"required\")`",
                    other.chars().take(64).collect::<String>()
                )));
                false
            }
        };
        let quorum = match p.policy.annotation("quorum") {
            None => None,
            Some(q) => match q.parse::<u32>() {
                Ok(n) if (1..=10).contains(&n) && approval => Some(n),
                Ok(_) if !approval => {
                    errors.push(here(format!(
                        "policy `{id}`: `@quorum` is only allowed on an approval rule (`@approval(\"required\")`)"
                    )));
                    None
                }
                _ => {
                    errors.push(here(format!(
                        "policy `{id}`: `@quorum(\"{}\")` is not valid, expected a number from 1 to 10",
                        q.chars().take(64).collect::<String>()
                    )));
                    None
                }
            },
        };
        let policy = p.policy.new_id(PolicyId::new(id));
        let added = if approval {
            approvals.add(policy)
        } else {
            main.add(policy)
        };
        if let Err(e) = added {
            errors.push(internal(&sources, p, e.to_string()));
            continue;
        }
        ids.push(id.to_owned());
        meta.insert(
            id.to_owned(),
            PolicyMeta {
                ordinal,
                reason,
                quorum,
            },
        );
    }

    if !errors.is_empty() {
        errors.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
        });
        // One error per place: a policy that applies to many actions gets
        // the same complaint once per action.
        errors.dedup_by(|a, b| {
            a.file == b.file && a.line == b.line && a.column == b.column && a.line != 0
        });
        return Err(errors);
    }
    let index = build_index(&main, &approvals).map_err(|e| vec![e])?;
    Ok(Loaded {
        sources,
        schema,
        main,
        approvals,
        meta,
        ids,
        index,
    })
}

fn internal(sources: &[PolicySource], p: &Parsed, msg: String) -> LoadError {
    let src = &sources[p.file];
    LoadError::at(
        &src.name,
        &src.text,
        p.offset,
        format!("internal error: {msg}"),
    )
}

/// An error at the first labelled span of a Cedar diagnostic.
fn diag_error(file: &str, text: &str, d: &dyn Diagnostic, message: String) -> LoadError {
    let mut message = message;
    if let Some(help) = d.help() {
        message = format!("{message} (help: {help})");
    }
    let offset = d.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    match offset {
        Some(off) => LoadError::at(file, text, off, message),
        None => LoadError::whole(file, message),
    }
}

pub(crate) fn action_uid(name: &str) -> Result<EntityUid, LoadError> {
    EntityUid::from_str(&format!("Action::{}", cedar_string(name)))
        .map_err(|e| LoadError::whole("warrant.cedarschema", format!("internal error: {e}")))
}

/// A Cedar string literal.
pub(crate) fn cedar_string(s: &str) -> String {
    format!("{s:?}")
}

/// Whether a policy's action constraint can match `action` (whose groups
/// are `groups`).
fn action_matches(p: &Policy, action: &EntityUid, groups: &[EntityUid]) -> bool {
    match p.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => &a == action,
        ActionConstraint::In(list) => list.iter().any(|a| a == action || groups.contains(a)),
    }
}

/// Whether a policy's principal constraint can match a principal of type
/// `t`. Conservative: when unsure, it can.
fn principal_matches(p: &Policy, t: PrincipalType) -> bool {
    let is = |n: &EntityTypeName| n.to_string() == t.as_str();
    match p.principal_constraint() {
        PrincipalConstraint::Any => true,
        PrincipalConstraint::Is(n) | PrincipalConstraint::IsIn(n, _) => is(&n),
        PrincipalConstraint::Eq(uid) => is(uid.type_name()),
        PrincipalConstraint::In(uid) => {
            let target = uid.type_name().to_string();
            let known = ["Run", "Agent", "User", "Group"];
            !known.contains(&target.as_str()) || t.in_targets().contains(&target.as_str())
        }
    }
}

fn select(
    from: &PolicySet,
    action: &EntityUid,
    groups: &[EntityUid],
    t: PrincipalType,
) -> Result<PolicySet, LoadError> {
    let mut set = PolicySet::new();
    for p in from.policies() {
        if action_matches(p, action, groups) && principal_matches(p, t) {
            set.add(p.clone())
                .map_err(|e| LoadError::whole("index", format!("internal error: {e}")))?;
        }
    }
    Ok(set)
}

fn build_index(main: &PolicySet, approvals: &PolicySet) -> Result<Index, LoadError> {
    let mut index = Index::default();
    let mut actions: BTreeMap<&str, Vec<EntityUid>> = catalog::CATALOG
        .iter()
        .map(|a| Ok((a.name, vec![action_uid(a.class.group())?])))
        .collect::<Result<_, LoadError>>()?;
    actions.insert(APPROVE, Vec::new());
    for (name, groups) in actions {
        let uid = action_uid(name)?;
        let run = select(main, &uid, &groups, PrincipalType::Run)?;
        let user = select(main, &uid, &groups, PrincipalType::User)?;
        index.main.insert(name.to_owned(), (run, user));
        let appr = select(approvals, &uid, &groups, PrincipalType::Run)?;
        index.approvals.insert(name.to_owned(), appr);
    }
    Ok(index)
}

/// Reads every `*.cedar` file directly in `dir` (not recursive).
pub(crate) fn read_dir_sources(dir: &Path) -> Result<Vec<PolicySource>, Vec<LoadError>> {
    read_files(dir, "cedar")
}

/// Reads every `*.<ext>` file directly in `dir`, named `dir/file`.
pub(crate) fn read_files(dir: &Path, ext: &str) -> Result<Vec<PolicySource>, Vec<LoadError>> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![LoadError::whole(
            &shown,
            format!("cannot read the directory: {e}"),
        )]
    })?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                errors.push(LoadError::whole(
                    &shown,
                    format!("cannot read the directory: {e}"),
                ));
                continue;
            }
        };
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) || !path.is_file() {
            continue;
        }
        let name = path.display().to_string();
        if !seen.insert(name.clone()) {
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => out.push(PolicySource { name, text }),
            Err(e) => errors.push(LoadError::whole(
                &name,
                format!("cannot read the file: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    } else {
        Err(errors)
    }
}
