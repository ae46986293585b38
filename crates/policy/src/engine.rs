//! The engine: a loaded policy set and the decision procedure.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use cedar_policy::{
    AuthorizationError, Authorizer, Decision as CedarDecision, PolicySet, Response,
};
use warrant_core::ScopeCheck;

use crate::catalog::{self, ResourceKind};
use crate::input::{ApproveInput, DecisionInput};
use crate::load::{self, LoadError, PolicyMeta, PolicySource};
use crate::outcome::{Decision, Outcome, ReasonCode};
use crate::request::{self, Names, Parts};
use crate::risk;

/// The id reported when the task's scope decided.
pub const SCOPE_POLICY_ID: &str = "warrant.scope";
/// Named as the deciding policy when no policy permits a request (Cedar's
/// implicit deny), so every answer names what decided it.
pub const DEFAULT_DENY_POLICY_ID: &str = "warrant.default-deny";
/// Named when the request is not one the catalog knows (unknown action,
/// wrong resource type).
pub const CATALOG_POLICY_ID: &str = "warrant.catalog";
/// Named when a request could not be evaluated and no policy is to blame.
pub const EVALUATION_POLICY_ID: &str = "warrant.evaluation";

/// The default pack: what runs when no policy directory is configured.
/// `(file name, text)`.
pub const DEFAULT_PACK: &[(&str, &str)] = &[
    ("agents.cedar", include_str!("../default/agents.cedar")),
    (
        "approvals.cedar",
        include_str!("../default/approvals.cedar"),
    ),
    (
        "approvers.cedar",
        include_str!("../default/approvers.cedar"),
    ),
    ("guards.cedar", include_str!("../default/guards.cedar")),
    ("users.cedar", include_str!("../default/users.cedar")),
];

/// The default pack's policy tests, `(file name, text)`; written to
/// `tests/` by `warrant policy pack`.
pub const DEFAULT_TESTS: &[(&str, &str)] = &[(
    "default.toml",
    include_str!("../default/tests/default.toml"),
)];

/// A loaded, validated and indexed policy set. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Vec<PolicySource>,
    fingerprint: String,
    main: PolicySet,
    approvals: PolicySet,
    meta: HashMap<String, PolicyMeta>,
    ids: Vec<String>,
    index: load::Index,
    names: Names,
    authorizer: Authorizer,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policies", &self.inner.ids.len())
            .field("fingerprint", &self.inner.fingerprint)
            .finish()
    }
}

/// Which policies a decision evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selection {
    /// Only those that can apply to the action and principal type.
    Indexed,
    /// All of them (for comparison).
    All,
}

impl Engine {
    /// The default pack, embedded in the binary.
    pub fn default_pack() -> Engine {
        let sources = DEFAULT_PACK
            .iter()
            .map(|(name, text)| PolicySource {
                name: (*name).to_owned(),
                text: (*text).to_owned(),
            })
            .collect();
        match Self::from_sources(sources) {
            Ok(engine) => engine,
            #[expect(
                clippy::panic,
                reason = "the embedded pack is validated by the crate's tests; a failure here is a build defect"
            )]
            Err(errors) => panic!(
                "the embedded default policy pack does not load: {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }

    /// Every `*.cedar` file directly in `dir`, sorted by name. The directory
    /// replaces the default pack (start from `warrant policy pack`).
    pub fn load_dir(dir: &Path) -> Result<Engine, Vec<LoadError>> {
        let sources = load::read_dir_sources(dir)?;
        if sources.is_empty() {
            return Err(vec![LoadError::whole(
                &dir.display().to_string(),
                "the directory holds no `.cedar` files (start from `warrant policy pack --out DIR`)",
            )]);
        }
        Self::from_sources(sources)
    }

    /// Loads policies from memory: a pure function of `sources`.
    pub fn from_sources(sources: Vec<PolicySource>) -> Result<Engine, Vec<LoadError>> {
        let loaded = load::load(sources)?;
        let names = Names::new(&loaded.schema).map_err(|e| vec![e])?;
        let fingerprint = fingerprint(&loaded.sources);
        Ok(Engine {
            inner: Arc::new(Inner {
                sources: loaded.sources,
                fingerprint,
                main: loaded.main,
                approvals: loaded.approvals,
                meta: loaded.meta,
                ids: loaded.ids,
                index: loaded.index,
                names,
                authorizer: Authorizer::new(),
            }),
        })
    }

    /// SHA-256 (hex) over the sources, sorted by file name: two engines
    /// with the same fingerprint decide alike.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Policy ids in load order (approval rules included).
    pub fn policy_ids(&self) -> &[String] {
        &self.inner.ids
    }

    /// The sources the engine was loaded from, sorted by name.
    pub fn sources(&self) -> &[PolicySource] {
        &self.inner.sources
    }

    /// The `@reason` of a policy, if it has one.
    pub fn reason_of(&self, id: &str) -> Option<&str> {
        self.inner.meta.get(id).and_then(|m| m.reason.as_deref())
    }

    /// Decides an agent request. Never fails: anything unexpected is a
    /// `deny` with a reason code.
    pub fn decide(&self, input: &DecisionInput) -> Outcome {
        named(self.decide_with(input, Selection::Indexed))
    }

    /// [`Engine::decide`] evaluating every policy instead of only those the
    /// index selects: the same answer, slower. For benchmarks and tests.
    pub fn decide_unindexed(&self, input: &DecisionInput) -> Outcome {
        named(self.decide_with(input, Selection::All))
    }

    fn decide_with(&self, input: &DecisionInput, sel: Selection) -> Outcome {
        let inner = &*self.inner;
        let Some(spec) = catalog::action(&input.action) else {
            return Outcome::deny(
                ReasonCode::UnknownAction,
                0,
                format!(
                    "`{}` is not an action agents can request",
                    clip(&input.action)
                ),
            );
        };
        let kind = ResourceKind::parse(&input.resource.kind);
        if !kind.is_some_and(|k| spec.resources.contains(&k)) {
            let takes: Vec<&str> = spec.resources.iter().map(|k| k.as_str()).collect();
            return Outcome::deny(
                ReasonCode::InvalidRequest,
                0,
                format!(
                    "`{}` applies to {}, not to `{}`",
                    spec.name,
                    takes.join(" or "),
                    clip(&input.resource.kind)
                ),
            );
        }
        if input.resource.id.is_empty() {
            return Outcome::deny(
                ReasonCode::InvalidRequest,
                0,
                "the resource id is empty".into(),
            );
        }
        let sensitive = risk::touches_sensitive_paths(input);
        let risk = risk::score(input, spec.class, sensitive);

        // 1. The task's scope, in Rust: no policy edit can widen it.
        let check = ScopeCheck {
            action: spec.name,
            repo: input.repo(),
            repo_required: spec.requires_repo(),
            branch: input.context.branch.as_deref(),
            branch_required: spec.requires_branch(),
            base_branch: if spec.requires_base_branch() {
                input.context.base_branch.as_deref()
            } else {
                None
            },
            base_branch_required: spec.requires_base_branch(),
            environment: input.environment(),
            environment_required: spec.requires_environment(),
            tool: (kind == Some(ResourceKind::Tool)).then_some(input.resource.id.as_str()),
            secret: (kind == Some(ResourceKind::Secret)).then_some(input.resource.id.as_str()),
        };
        if let Err(miss) = input.scope.covers(&check) {
            return Outcome {
                policies: vec![SCOPE_POLICY_ID.into()],
                ..Outcome::deny(ReasonCode::OutOfScope, risk, miss.to_string())
            };
        }

        let parts = match request::build(&inner.names, input, spec, risk, sensitive) {
            Ok(p) => p,
            Err(e) => return self.error_outcome(risk, Vec::new(), vec![e]),
        };
        let (run_set, user_set, appr_set) = match sel {
            Selection::All => (&inner.main, &inner.main, &inner.approvals),
            Selection::Indexed => match (
                inner.index.main.get(spec.name),
                inner.index.approvals.get(spec.name),
            ) {
                (Some((r, u)), Some(a)) => (r, u, a),
                _ => {
                    return self.error_outcome(
                        risk,
                        Vec::new(),
                        vec![format!("internal error: `{}` is not indexed", spec.name)],
                    );
                }
            },
        };

        // 2. The run.
        let run = match self.evaluate(&parts, &parts.run, run_set) {
            Ok(r) => r,
            Err(e) => return self.error_outcome(risk, Vec::new(), vec![e]),
        };
        if let Some(o) = self.deny_outcome(&run, risk, ReasonCode::NotPermittedForAgent, || {
            format!(
                "no policy permits agent `{}` (tier `{}`) to `{}` {} `{}`",
                clip(&input.principal.agent),
                input.principal.tier,
                spec.name,
                input.resource.kind,
                clip(&input.resource.id)
            )
        }) {
            return o;
        }
        // 3. The delegation ceiling: the same request for the human.
        let user = match self.evaluate(&parts, &parts.user, user_set) {
            Ok(r) => r,
            Err(e) => return self.error_outcome(risk, Vec::new(), vec![e]),
        };
        if let Some(o) = self.deny_outcome(&user, risk, ReasonCode::DelegationCeiling, || {
            format!(
                "no policy permits `{}`, who delegated the task, to `{}` {} `{}`: an agent may not do more than its delegator",
                clip(&input.principal.user),
                spec.name,
                input.resource.kind,
                clip(&input.resource.id)
            )
        }) {
            return o;
        }
        // 4. Approval rules, for the run.
        let appr = match self.evaluate(&parts, &parts.run, appr_set) {
            Ok(r) => r,
            Err(e) => return self.error_outcome(risk, Vec::new(), vec![e]),
        };
        if let Some(o) = self.errors_outcome(&appr, risk) {
            return o;
        }
        if appr.decision() == CedarDecision::Allow {
            let ids = self.ordered(appr.diagnostics().reason().map(ToString::to_string));
            let quorum = ids
                .iter()
                .filter_map(|id| inner.meta.get(id).and_then(|m| m.quorum))
                .max();
            let reasons = self.reasons(&ids, || "an approval rule matched".into());
            return Outcome {
                decision: Decision::ApprovalRequired,
                code: ReasonCode::ApprovalRequired,
                policies: ids,
                reasons,
                risk,
                quorum,
                errors: Vec::new(),
            };
        }
        let ids = self.ordered(
            run.diagnostics()
                .reason()
                .chain(user.diagnostics().reason())
                .map(ToString::to_string),
        );
        let reasons = self.reasons(&ids, || "permitted".into());
        Outcome {
            decision: Decision::Allow,
            code: ReasonCode::Allowed,
            policies: ids,
            reasons,
            risk,
            quorum: None,
            errors: Vec::new(),
        }
    }

    /// Decides whether a human may approve a pending approval (the
    /// `approve` action): permitted, and no forbid (such as separation of
    /// duties) matches.
    pub fn decide_approve(&self, input: &ApproveInput) -> Outcome {
        named(self.decide_approve_inner(input))
    }

    fn decide_approve_inner(&self, input: &ApproveInput) -> Outcome {
        let inner = &*self.inner;
        let parts = match request::build_approve(&inner.names, input) {
            Ok(p) => p,
            Err(e) => return self.error_outcome(0, Vec::new(), vec![e]),
        };
        let set = match inner.index.main.get(catalog::APPROVE) {
            Some((_, u)) => u,
            None => &inner.main,
        };
        let resp = match self.evaluate(&parts, &parts.user, set) {
            Ok(r) => r,
            Err(e) => return self.error_outcome(0, Vec::new(), vec![e]),
        };
        if let Some(o) = self.deny_outcome(&resp, 0, ReasonCode::NotAnApprover, || {
            format!(
                "no policy permits `{}` to approve this request",
                clip(&input.approver)
            )
        }) {
            return o;
        }
        let ids = self.ordered(resp.diagnostics().reason().map(ToString::to_string));
        let reasons = self.reasons(&ids, || "permitted".into());
        Outcome {
            decision: Decision::Allow,
            code: ReasonCode::Allowed,
            policies: ids,
            reasons,
            risk: 0,
            quorum: None,
            errors: Vec::new(),
        }
    }

    fn evaluate(
        &self,
        parts: &Parts,
        principal: &cedar_policy::EntityUid,
        set: &PolicySet,
    ) -> Result<Response, String> {
        let req = parts.request(principal, None)?;
        Ok(self
            .inner
            .authorizer
            .is_authorized(&req, set, &parts.entities))
    }

    /// `Some(deny)` unless `resp` is an error-free Allow.
    fn deny_outcome(
        &self,
        resp: &Response,
        risk: i64,
        no_permit: ReasonCode,
        sentence: impl Fn() -> String,
    ) -> Option<Outcome> {
        if let Some(o) = self.errors_outcome(resp, risk) {
            return Some(o);
        }
        if resp.decision() == CedarDecision::Allow {
            return None;
        }
        let ids = self.ordered(resp.diagnostics().reason().map(ToString::to_string));
        if ids.is_empty() {
            return Some(Outcome::deny(no_permit, risk, sentence()));
        }
        let reasons = self.reasons(&ids, || "a forbid policy matched".into());
        Some(Outcome {
            policies: ids,
            reasons,
            ..Outcome::deny(ReasonCode::Forbidden, risk, String::new())
        })
    }

    /// Cedar skips policies that fail to evaluate; Warrant denies instead.
    fn errors_outcome(&self, resp: &Response, risk: i64) -> Option<Outcome> {
        let errors: Vec<&AuthorizationError> = resp.diagnostics().errors().collect();
        if errors.is_empty() {
            return None;
        }
        let ids = self.ordered(errors.iter().map(|e| match e {
            AuthorizationError::PolicyEvaluationError(e) => e.policy_id().to_string(),
        }));
        let mut messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        messages.sort();
        Some(self.error_outcome(risk, ids, messages))
    }

    fn error_outcome(&self, risk: i64, policies: Vec<String>, errors: Vec<String>) -> Outcome {
        let reason = match policies.as_slice() {
            [] => "the request could not be evaluated, so it is denied".to_owned(),
            [one] => format!("policy `{one}` could not be evaluated, so the request is denied"),
            many => format!(
                "policies {} could not be evaluated, so the request is denied",
                many.iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Outcome {
            policies,
            errors,
            ..Outcome::deny(ReasonCode::EvaluationError, risk, reason)
        }
    }

    /// Policy ids in load order, without duplicates.
    fn ordered(&self, ids: impl Iterator<Item = String>) -> Vec<String> {
        let mut v: Vec<String> = ids.collect();
        v.sort_by_key(|id| {
            (
                self.inner.meta.get(id).map_or(usize::MAX, |m| m.ordinal),
                id.clone(),
            )
        });
        v.dedup();
        v
    }

    fn reasons(&self, ids: &[String], fallback: impl Fn() -> String) -> Vec<String> {
        ids.iter()
            .map(|id| {
                self.reason_of(id)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("policy `{id}`: {}", fallback()))
            })
            .collect()
    }

    /// For tests inside the crate: the request built with schema checks on.
    #[cfg(test)]
    pub(crate) fn check_request_against_schema(&self, input: &DecisionInput) -> Result<(), String> {
        let Some(spec) = catalog::action(&input.action) else {
            return Ok(());
        };
        let schema = load::schema().map_err(|e| e.to_string())?;
        let sensitive = risk::touches_sensitive_paths(input);
        let risk = risk::score(input, spec.class, sensitive);
        let parts = request::build(&self.inner.names, input, spec, risk, sensitive)?;
        parts.request(&parts.run, Some(&schema))?;
        parts.request(&parts.user, Some(&schema))?;
        let ents: Vec<cedar_policy::Entity> = parts.entities.iter().cloned().collect();
        cedar_policy::Entities::from_entities(
            ents.into_iter()
                .filter(|e| e.uid().type_name().to_string() != "Action"),
            Some(&schema),
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

fn fingerprint(sources: &[PolicySource]) -> String {
    let mut named: Vec<(&str, &str)> = sources
        .iter()
        .map(|s| {
            let base = s.name.rsplit(['/', '\\']).next().unwrap_or(&s.name);
            (base, s.text.as_str())
        })
        .collect();
    named.sort();
    let mut h = warrant_crypto::Sha256Hasher::default();
    for (name, text) in named {
        for part in [name.as_bytes(), text.as_bytes()] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    hex::encode(h.finish())
}

/// Every outcome names what decided it: a built-in id where no policy did.
fn named(mut outcome: Outcome) -> Outcome {
    if outcome.policies.is_empty() {
        let id = match outcome.code {
            ReasonCode::UnknownAction | ReasonCode::InvalidRequest => CATALOG_POLICY_ID,
            ReasonCode::EvaluationError => EVALUATION_POLICY_ID,
            ReasonCode::OutOfScope => SCOPE_POLICY_ID,
            _ => DEFAULT_DENY_POLICY_ID,
        };
        outcome.policies.push(id.to_owned());
    }
    outcome
}
