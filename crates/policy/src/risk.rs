//! The risk score: a deterministic 0–100 number policies can read
//! (`context.risk_score`) and decisions report.
//!
//! ```text
//! risk = min(100, class weight            read 0, change 20, secret 40,
//!                                          deploy 50, delete 60
//!               + 15 if the branch written to is protected
//!               + 20 if the environment is production
//!               + 15 if the run is tainted
//!               + 10 if this request carries untrusted input
//!               + 15 if a sensitive path is touched)
//! ```

use warrant_core::glob::branch_glob_matches;

use crate::catalog::RiskClass;
use crate::input::DecisionInput;

/// Paths whose change deserves a human look: CI definitions, code owners,
/// infrastructure as code, deployment manifests. Globs as in task scopes
/// (`*` within a segment, `**` across).
pub const SENSITIVE_PATHS: &[&str] = &[
    ".github/workflows/**",
    ".github/actions/**",
    ".gitlab-ci.yml",
    ".circleci/**",
    "Jenkinsfile",
    "CODEOWNERS",
    ".github/CODEOWNERS",
    "docs/CODEOWNERS",
    "*.tf",
    "**/*.tf",
    "*.tfvars",
    "**/*.tfvars",
    "infra/**",
    "terraform/**",
    "deploy/**",
    ".warrant/**",
];

/// `true` when `path` (relative to the repo root) is sensitive.
pub fn is_sensitive_path(path: &str) -> bool {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    SENSITIVE_PATHS.iter().any(|g| branch_glob_matches(g, path))
}

/// Whether the request touches a sensitive path (`changed_paths` or `path`).
pub fn touches_sensitive_paths(input: &DecisionInput) -> bool {
    input
        .context
        .changed_paths
        .iter()
        .chain(input.context.path.as_ref())
        .any(|p| is_sensitive_path(p))
}

/// The score for a request of risk class `class`.
pub fn score(input: &DecisionInput, class: RiskClass, sensitive: bool) -> i64 {
    let c = &input.context;
    let mut risk = class.weight();
    let extras = [
        (c.branch_protected, 15),
        (c.production, 20),
        (input.run.tainted, 15),
        (c.untrusted_input, 10),
        (sensitive, 15),
    ];
    for (on, weight) in extras {
        if on {
            risk += weight;
        }
    }
    risk.min(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_paths_are_recognised() {
        for p in [
            ".github/workflows/ci.yml",
            "CODEOWNERS",
            "./.github/CODEOWNERS",
            "main.tf",
            "modules/vpc/main.tf",
            "infra/k8s/app.yaml",
        ] {
            assert!(is_sensitive_path(p), "{p}");
        }
        for p in ["src/main.rs", "README.md", "docs/tf.md", "infra.md"] {
            assert!(!is_sensitive_path(p), "{p}");
        }
    }
}
