//! Warrant's policy decisions: the Cedar schema, the action catalog, the
//! default policy pack, and the pure decision procedure
//! `Engine::decide(&DecisionInput) -> Outcome`.
//!
//! A decision is `allow` only when the task's scope covers the request
//! (checked in Rust, so no policy edit can widen it), Cedar permits the
//! action for the run, Cedar permits it for the delegating user (the
//! delegation ceiling), no `forbid` matches and no policy fails to
//! evaluate. Approval rules (`@approval("required")`) then turn an `allow`
//! into `approval_required`.
//!
//! This crate never does network or database IO and never reads the clock.
//! It reads files only in [`Engine::load_dir`] and the policy-test loader
//! ([`cases::load_dir`]). Everything Cedar sees is derived from the
//! [`DecisionInput`], so recorded decisions can be replayed ([`replay`]).

pub mod bench;
pub mod cases;
pub mod catalog;
mod engine;
mod input;
mod load;
mod outcome;
mod replay;
mod request;
pub mod risk;

pub use catalog::{ActionSpec, CATALOG, ResourceKind, RiskClass};
pub use engine::{
    CATALOG_POLICY_ID, DEFAULT_DENY_POLICY_ID, DEFAULT_PACK, DEFAULT_TESTS, EVALUATION_POLICY_ID,
    Engine, SCOPE_POLICY_ID,
};
pub use input::{
    ApproveInput, DecisionInput, PrincipalSnapshot, RequestContext, ResourceRef, RunState,
};
pub use load::{LoadError, PolicySource, SCHEMA};
pub use outcome::{Decision, Outcome, ReasonCode};
pub use replay::{Change, replay};

#[cfg(test)]
mod tests;
