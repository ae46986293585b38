//! Workloads for `warrant bench policy` and for the index-agreement tests:
//! the default pack with a mix of requests, and a synthetic set of many
//! policies over a large universe of entities. Deterministic: the same
//! seed gives the same policies and requests.

use std::fmt::Write as _;

use warrant_core::Tier;

use crate::cases::covering_scope;
use crate::catalog::{CATALOG, RiskClass};
use crate::engine::Engine;
use crate::input::{DecisionInput, PrincipalSnapshot, RequestContext, ResourceRef, RunState};
use crate::load::{LoadError, PolicySource};

/// A small deterministic generator (xorshift64*); not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`; 0 gives 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// `true` with probability `pct`/100.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next_u64() % 100 < pct
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The ids a synthetic workload draws from.
#[derive(Debug, Clone)]
pub struct Universe {
    pub users: usize,
    pub groups: usize,
    pub repos: usize,
    pub environments: usize,
    pub tools: usize,
    pub secrets: usize,
    /// Groups each user belongs to.
    pub groups_per_user: usize,
}

impl Universe {
    /// Splits `entities` ids: 40% users, 10% groups, 35% repos and 5% each
    /// environments, tools and secrets.
    pub fn of(entities: usize) -> Self {
        let part = |pct: usize| (entities * pct / 100).max(1);
        Self {
            users: part(40),
            groups: part(10),
            repos: part(35),
            environments: part(5),
            tools: part(5),
            secrets: part(5),
            groups_per_user: 10.min(part(10)),
        }
    }

    pub fn total(&self) -> usize {
        self.users + self.groups + self.repos + self.environments + self.tools + self.secrets
    }

    fn user_groups(&self, user: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..self.groups_per_user)
            .map(|k| format!("g{}", (user * 7 + k * 13) % self.groups))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A workload: an engine and the requests to decide with it.
pub struct Workload {
    pub name: String,
    pub engine: Engine,
    pub inputs: Vec<DecisionInput>,
}

const TIERS: [Tier; 3] = [Tier::ReadOnly, Tier::Propose, Tier::Privileged];

/// A random request within `u` (its scope covers it, so Cedar is reached).
pub fn random_input(rng: &mut Rng, u: &Universe) -> DecisionInput {
    let spec = rng.pick(CATALOG);
    let kind = *rng.pick(spec.resources);
    let id = match kind {
        crate::ResourceKind::Repo => format!("acme/r{}", rng.below(u.repos)),
        crate::ResourceKind::Environment => {
            if rng.chance(30) {
                "production".to_owned()
            } else {
                format!("e{}", rng.below(u.environments))
            }
        }
        crate::ResourceKind::Tool => format!("t{}", rng.below(u.tools)),
        crate::ResourceKind::Secret => format!("s{}", rng.below(u.secrets)),
    };
    let user = rng.below(u.users);
    let mut groups = u.user_groups(user);
    if rng.chance(20) {
        groups.push("operators".into());
    }
    if rng.chance(10) {
        groups.push("approvers".into());
    }
    let branch_protected = rng.chance(20);
    let branch = if branch_protected {
        "main"
    } else {
        "feature/x"
    };
    let mut context = RequestContext {
        branch: Some(branch.into()),
        branch_protected,
        production: id == "production" || rng.chance(10),
        untrusted_input: rng.chance(5),
        ..RequestContext::default()
    };
    if spec.name == "repo.merge" {
        context.branch = Some("feature/x".into());
        context.base_branch = Some(branch.into());
    }
    if kind != crate::ResourceKind::Repo && rng.chance(50) {
        context.repo = Some(format!("acme/r{}", rng.below(u.repos)));
    }
    if rng.chance(30) {
        let paths = [
            "src/lib.rs",
            "README.md",
            ".github/workflows/ci.yml",
            "infra/main.tf",
        ];
        context.changed_paths = vec![(*rng.pick(&paths)).to_owned()];
    }
    if spec.name == "web.fetch" {
        context.url = Some("https://example.invalid/".into());
        context.method = Some((*rng.pick(&["GET", "POST", "HEAD"])).to_owned());
    }
    let classes = RiskClass::ALL;
    let history = (0..rng.below(3))
        .map(|_| rng.pick(&classes).as_str().to_owned())
        .collect();
    let mut input = DecisionInput {
        action: spec.name.to_owned(),
        resource: ResourceRef {
            kind: kind.as_str().to_owned(),
            id,
        },
        principal: PrincipalSnapshot {
            run: format!("run-{}", rng.below(1000)),
            agent: format!("agent-{}", rng.below(5)),
            tier: *rng.pick(&TIERS),
            task: format!("task-{}", rng.below(1000)),
            task_type: rng.chance(50).then(|| format!("type{}", rng.below(4))),
            depth: rng.below(3) as u32,
            user: format!("u{user}"),
            user_groups: groups,
            user_admin: rng.chance(10),
        },
        context,
        run: RunState {
            tainted: rng.chance(15),
            history,
        },
        scope: Default::default(),
    };
    input.scope = covering_scope(&input);
    input
}

/// The default pack with `requests` random requests.
pub fn default_pack_workload(requests: usize, seed: u64) -> Workload {
    let u = Universe::of(1_000);
    let mut rng = Rng::new(seed);
    Workload {
        name: "default pack".into(),
        engine: Engine::default_pack(),
        inputs: (0..requests).map(|_| random_input(&mut rng, &u)).collect(),
    }
}

/// `policies` generated policies over a universe of `entities` ids, in
/// files of 50 policies each. Every catalog action and both principal
/// types get policies, in the shapes real packs use: scope constraints on
/// one action or a risk class, group and user membership, attribute
/// conditions, set membership, forbids and approval rules.
pub fn synthetic_sources(policies: usize, u: &Universe, seed: u64) -> Vec<PolicySource> {
    let mut rng = Rng::new(seed);
    let mut files = Vec::new();
    let mut text = String::new();
    let classes = [
        "class:read",
        "class:change",
        "class:secret",
        "class:deploy",
        "class:delete",
    ];
    for i in 0..policies {
        let spec = &CATALOG[i % CATALOG.len()];
        let a = spec.name;
        let g = rng.below(u.groups);
        let _ = match (i / CATALOG.len()) % 8 {
            0 => writeln!(
                text,
                "@id(\"syn.{i}\")\npermit (principal is User, action in Action::\"{}\", resource)\nwhen {{ principal in Group::\"g{g}\" || principal.admin }};\n",
                rng.pick(&classes)
            ),
            1 => writeln!(
                text,
                "@id(\"syn.{i}\")\npermit (principal, action == Action::\"{a}\", resource)\nwhen {{ context.risk_score < {} && !context.untrusted_input }};\n",
                40 + rng.below(60)
            ),
            2 => writeln!(
                text,
                "@id(\"syn.{i}\")\n@reason(\"tainted runs of group g{g} may not {a}\")\nforbid (principal is Run, action == Action::\"{a}\", resource)\nwhen {{ context.tainted && principal.delegator in Group::\"g{g}\" }};\n"
            ),
            3 => {
                let users: Vec<String> = (0..3)
                    .map(|_| format!("User::\"u{}\"", rng.below(u.users)))
                    .collect();
                writeln!(
                    text,
                    "@id(\"syn.{i}\")\npermit (principal is User, action == Action::\"{a}\", resource)\nwhen {{ [{}].contains(principal) }};\n",
                    users.join(", ")
                )
            }
            4 => writeln!(
                text,
                "@id(\"syn.{i}\")\npermit (principal is Run, action in Action::\"{}\", resource)\nwhen {{ principal.task has type && principal.task.type == \"type{}\" }};\n",
                spec.class.group(),
                rng.below(4)
            ),
            5 => {
                let repos: Vec<String> = (0..20)
                    .map(|_| format!("\"acme/r{}\"", rng.below(u.repos)))
                    .collect();
                writeln!(
                    text,
                    "@id(\"syn.{i}\")\n@reason(\"repos on the g{g} freeze list\")\nforbid (principal is User, action == Action::\"{a}\", resource)\nwhen {{ context has repo && [{}].contains(context.repo) && !principal.admin }};\n",
                    repos.join(", ")
                )
            }
            6 => writeln!(
                text,
                "@id(\"syn.{i}\")\n@approval(\"required\")\n@reason(\"high-risk {a} needs approval\")\npermit (principal is Run, action == Action::\"{a}\", resource)\nwhen {{ context.risk_score > {} }};\n",
                50 + rng.below(40)
            ),
            _ => writeln!(
                text,
                "@id(\"syn.{i}\")\npermit (principal in Group::\"g{g}\", action == Action::\"{a}\", resource);\n"
            ),
        };
        if (i + 1) % 50 == 0 || i + 1 == policies {
            files.push(PolicySource {
                name: format!("synthetic-{:03}.cedar", files.len()),
                text: std::mem::take(&mut text),
            });
        }
    }
    // Broad permits so that many requests get past the first stage.
    files.push(PolicySource {
        name: "synthetic-base.cedar".into(),
        text: "@id(\"syn.base.run\")\npermit (principal is Run, action in [Action::\"class:read\", Action::\"class:change\"], resource);\n\n@id(\"syn.base.user\")\npermit (principal is User, action in [Action::\"class:read\", Action::\"class:change\"], resource);\n".into(),
    });
    files
}

/// The synthetic workload: `policies` (+2 base) policies over `entities`
/// ids and `requests` random requests.
pub fn synthetic_workload(
    policies: usize,
    entities: usize,
    requests: usize,
    seed: u64,
) -> Result<Workload, Vec<LoadError>> {
    let u = Universe::of(entities);
    let engine = Engine::from_sources(synthetic_sources(policies, &u, seed))?;
    let mut rng = Rng::new(seed ^ 0x5EED);
    Ok(Workload {
        name: format!("synthetic over {} entities", u.total()),
        engine,
        inputs: (0..requests).map(|_| random_input(&mut rng, &u)).collect(),
    })
}
