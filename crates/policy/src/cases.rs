//! Policy tests: TOML files of requests with expected decisions, run
//! against an engine like a test runner (`warrant policy test DIR`).
//!
//! ```toml
//! [[case]]
//! name = "read-only agent cannot push"
//! expect = "deny"                    # allow | deny | approval_required
//! code = "not_permitted_for_agent"   # optional
//! policies = ["..."]                 # optional, exact list in order
//! reasons = ["..."]                  # optional, exact list in order
//! quorum = 2                         # optional
//! [case.input]                       # a decision input; see below for defaults
//! action = "repo.push"
//! resource = { type = "Repo", id = "acme/api" }
//! principal = { tier = "read-only" }
//! context = { branch = "feature/x" }
//! ```
//!
//! In `[case.input]`, every `principal` field has a default (run `run-1`,
//! agent `agent`, tier `propose`, task `task-1`, user `alice`, no groups,
//! not admin), `context` and `run` default to empty, and an omitted
//! `scope` is one covering exactly the request. A case may instead give
//! `[case.approve]` (`approver`, `approver_groups`, `approver_admin`,
//! `approval_id`, and `request`, shaped like `input`) to test who may
//! approve.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use warrant_core::{Scope, Tier};

use crate::engine::{DEFAULT_TESTS, Engine};
use crate::input::{
    ApproveInput, DecisionInput, PrincipalSnapshot, RequestContext, ResourceRef, RunState,
};
use crate::load::{LoadError, read_files};
use crate::outcome::{Decision, Outcome, ReasonCode};

/// One parsed test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    pub name: String,
    pub cases: Vec<Case>,
}

/// One test case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub expect: Decision,
    pub code: Option<ReasonCode>,
    pub policies: Option<Vec<String>>,
    pub reasons: Option<Vec<String>>,
    pub quorum: Option<u32>,
    pub request: CaseRequest,
}

/// What a case asks.
#[derive(Debug, Clone)]
pub enum CaseRequest {
    Decide(DecisionInput),
    Approve(ApproveInput),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    case: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    expect: Decision,
    code: Option<ReasonCode>,
    policies: Option<Vec<String>>,
    reasons: Option<Vec<String>>,
    quorum: Option<u32>,
    input: Option<RawInput>,
    approve: Option<RawApprove>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    action: String,
    resource: ResourceRef,
    #[serde(default)]
    principal: RawPrincipal,
    #[serde(default)]
    context: RequestContext,
    #[serde(default)]
    run: RunState,
    scope: Option<Scope>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    #[serde(default = "d_run")]
    run: String,
    #[serde(default = "d_agent")]
    agent: String,
    #[serde(default = "d_tier")]
    tier: Tier,
    #[serde(default = "d_task")]
    task: String,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    depth: u32,
    #[serde(default = "d_user")]
    user: String,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    user_admin: bool,
}

fn d_run() -> String {
    "run-1".into()
}
fn d_agent() -> String {
    "agent".into()
}
fn d_tier() -> Tier {
    Tier::Propose
}
fn d_task() -> String {
    "task-1".into()
}
fn d_user() -> String {
    "alice".into()
}

impl Default for RawPrincipal {
    fn default() -> Self {
        Self {
            run: d_run(),
            agent: d_agent(),
            tier: d_tier(),
            task: d_task(),
            task_type: None,
            depth: 0,
            user: d_user(),
            user_groups: Vec::new(),
            user_admin: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprove {
    approver: String,
    #[serde(default)]
    approver_groups: Vec<String>,
    #[serde(default)]
    approver_admin: bool,
    #[serde(default = "d_approval")]
    approval_id: String,
    request: RawInput,
}

fn d_approval() -> String {
    "approval-1".into()
}

impl RawInput {
    fn into_input(self) -> DecisionInput {
        let p = self.principal;
        let mut input = DecisionInput {
            action: self.action,
            resource: self.resource,
            principal: PrincipalSnapshot {
                run: p.run,
                agent: p.agent,
                tier: p.tier,
                task: p.task,
                task_type: p.task_type,
                depth: p.depth,
                user: p.user,
                user_groups: p.user_groups,
                user_admin: p.user_admin,
            },
            context: self.context,
            run: self.run,
            scope: Scope::default(),
        };
        input.scope = self.scope.unwrap_or_else(|| covering_scope(&input));
        input
    }
}

/// The narrowest scope that covers `input`.
pub fn covering_scope(input: &DecisionInput) -> Scope {
    let some = |v: Option<&str>| v.map(str::to_owned).into_iter().collect::<Vec<_>>();
    let c = &input.context;
    let kind = input.resource.kind.as_str();
    Scope {
        actions: vec![input.action.clone()],
        repos: some(input.repo()),
        branches: some(c.branch.as_deref())
            .into_iter()
            .chain(some(c.base_branch.as_deref()))
            .collect(),
        environments: some(input.environment()),
        tools: some((kind == "Tool").then_some(input.resource.id.as_str())),
        secrets: some((kind == "Secret").then_some(input.resource.id.as_str())),
    }
}

/// Parses one test file.
pub fn parse(name: &str, text: &str) -> Result<TestFile, Vec<LoadError>> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let message = e.message().trim_end().to_owned();
        vec![LoadError::at(name, text, offset, message)]
    })?;
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (i, c) in raw.case.into_iter().enumerate() {
        let at = |msg: String| {
            // Point at the case's name when we can find it.
            let needle = format!("{:?}", c.name);
            let offset = text.find(&needle).unwrap_or(0);
            LoadError::at(name, text, offset, msg)
        };
        let request = match (c.input, c.approve) {
            (Some(i), None) => CaseRequest::Decide(i.into_input()),
            (None, Some(a)) => CaseRequest::Approve(ApproveInput {
                approver: a.approver,
                approver_groups: a.approver_groups,
                approver_admin: a.approver_admin,
                approval_id: a.approval_id,
                request: a.request.into_input(),
            }),
            _ => {
                errors.push(at(format!(
                    "case {} (`{}`) needs exactly one of `[case.input]` or `[case.approve]`",
                    i + 1,
                    c.name
                )));
                continue;
            }
        };
        cases.push(Case {
            name: c.name,
            expect: c.expect,
            code: c.code,
            policies: c.policies,
            reasons: c.reasons,
            quorum: c.quorum,
            request,
        });
    }
    if errors.is_empty() {
        Ok(TestFile {
            name: name.to_owned(),
            cases,
        })
    } else {
        Err(errors)
    }
}

/// Every `tests/*.toml` file under a policy directory (none is fine).
pub fn load_dir(policy_dir: &Path) -> Result<Vec<TestFile>, Vec<LoadError>> {
    let dir = policy_dir.join("tests");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for src in read_files(&dir, "toml")? {
        match parse(&src.name, &src.text) {
            Ok(f) => files.push(f),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// The default pack's shipped tests.
pub fn default_tests() -> Result<Vec<TestFile>, Vec<LoadError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in DEFAULT_TESTS {
        match parse(&format!("tests/{name}"), text) {
            Ok(f) => files.push(f),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Where an expectation and the answer differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub file: String,
    pub name: String,
    pub outcome: Outcome,
    /// Empty when the case passed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The results of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub results: Vec<CaseResult>,
}

fn list(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl Report {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// Test-runner output: `ok`/`FAILED` per case, a diff for each
    /// failure, and the summary line `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for r in &self.results {
            let status = if r.passed() { "ok    " } else { "FAILED" };
            let _ = writeln!(out, "{status} {} :: {}", r.file, r.name);
        }
        let failed: Vec<&CaseResult> = self.results.iter().filter(|r| !r.passed()).collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nfailures:");
        }
        for r in failed {
            let _ = writeln!(out, "\n---- {} :: {}", r.file, r.name);
            for m in &r.mismatches {
                let _ = writeln!(out, "  {}:", m.field);
                let _ = writeln!(out, "    - expected: {}", m.expected);
                let _ = writeln!(out, "    + actual:   {}", m.actual);
            }
            let o = &r.outcome;
            let _ = writeln!(out, "  actual outcome:");
            let _ = writeln!(out, "    decision: {} ({})", o.decision, o.code);
            let _ = writeln!(out, "    policies: {}", list(&o.policies));
            let _ = writeln!(out, "    reasons:  {}", list(&o.reasons));
            if let Some(q) = o.quorum {
                let _ = writeln!(out, "    quorum:   {q}");
            }
            for e in &o.errors {
                let _ = writeln!(out, "    error:    {e}");
            }
        }
        let _ = writeln!(out, "\n{} passed, {} failed", self.passed(), self.failed());
        out
    }
}

/// Runs every case of `files` against `engine`.
pub fn run(engine: &Engine, files: &[TestFile]) -> Report {
    let mut results = Vec::new();
    for f in files {
        for c in &f.cases {
            let outcome = match &c.request {
                CaseRequest::Decide(i) => engine.decide(i),
                CaseRequest::Approve(a) => engine.decide_approve(a),
            };
            let mut mismatches = Vec::new();
            if outcome.decision != c.expect {
                mismatches.push(Mismatch {
                    field: "decision",
                    expected: c.expect.to_string(),
                    actual: outcome.decision.to_string(),
                });
            }
            if let Some(code) = c.code
                && code != outcome.code
            {
                mismatches.push(Mismatch {
                    field: "code",
                    expected: code.to_string(),
                    actual: outcome.code.to_string(),
                });
            }
            if let Some(p) = &c.policies
                && p != &outcome.policies
            {
                mismatches.push(Mismatch {
                    field: "policies",
                    expected: list(p),
                    actual: list(&outcome.policies),
                });
            }
            if let Some(r) = &c.reasons
                && r != &outcome.reasons
            {
                mismatches.push(Mismatch {
                    field: "reasons",
                    expected: list(r),
                    actual: list(&outcome.reasons),
                });
            }
            if c.quorum.is_some() && c.quorum != outcome.quorum {
                let show = |q: Option<u32>| q.map_or("none".to_owned(), |q| q.to_string());
                mismatches.push(Mismatch {
                    field: "quorum",
                    expected: show(c.quorum),
                    actual: show(outcome.quorum),
                });
            }
            results.push(CaseResult {
                file: f.name.clone(),
                name: c.name.clone(),
                outcome,
                mismatches,
            });
        }
    }
    Report { results }
}
