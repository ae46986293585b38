//! What a decision answers.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
    ApprovalRequired,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::ApprovalRequired => "approval_required",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why: a stable, machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Every check passed.
    Allowed,
    /// The task's scope does not cover the request.
    OutOfScope,
    /// No policy permits the action for the run (its agent, tier, context).
    NotPermittedForAgent,
    /// No policy permits the action for the delegating user.
    DelegationCeiling,
    /// A `forbid` policy matched, for the run or the user.
    Forbidden,
    /// Allowed, but an approval rule matched.
    ApprovalRequired,
    /// A policy could not be evaluated: fail closed.
    EvaluationError,
    /// The action is not in the catalog.
    UnknownAction,
    /// The request is malformed (a resource type the action does not take).
    InvalidRequest,
    /// No policy permits the user to approve (the `approve` action).
    NotAnApprover,
    /// An approval rule matched, and an approval of exactly this request by
    /// eligible humans was waiting: allowed once (the server consumes it).
    Approved,
    /// An approval rule matched and the humans denied exactly this request.
    ApprovalDenied,
}

impl ReasonCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Allowed => "allowed",
            ReasonCode::OutOfScope => "out_of_scope",
            ReasonCode::NotPermittedForAgent => "not_permitted_for_agent",
            ReasonCode::DelegationCeiling => "delegation_ceiling",
            ReasonCode::Forbidden => "forbidden",
            ReasonCode::ApprovalRequired => "approval_required",
            ReasonCode::EvaluationError => "evaluation_error",
            ReasonCode::UnknownAction => "unknown_action",
            ReasonCode::InvalidRequest => "invalid_request",
            ReasonCode::NotAnApprover => "not_an_approver",
            ReasonCode::Approved => "approved",
            ReasonCode::ApprovalDenied => "approval_denied",
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision with everything needed to explain and audit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub decision: Decision,
    pub code: ReasonCode,
    /// Ids of the policies that determined the answer, in load order
    /// (`warrant.scope` for a scope miss).
    pub policies: Vec<String>,
    /// Their `@reason` annotations (or a generated sentence), in order.
    pub reasons: Vec<String>,
    /// 0–100; see docs/policy.md for the formula.
    pub risk: i64,
    /// Approvals needed, when an approval rule asked for more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// Evaluation errors (with `evaluation_error`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl Outcome {
    pub(crate) fn deny(code: ReasonCode, risk: i64, reason: String) -> Self {
        Self {
            decision: Decision::Deny,
            code,
            policies: Vec::new(),
            reasons: vec![reason],
            risk,
            quorum: None,
            errors: Vec::new(),
        }
    }

    pub fn is_allow(&self) -> bool {
        self.decision == Decision::Allow
    }
}
