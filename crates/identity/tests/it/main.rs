//! warrant-identity against a real OIDC issuer process on 127.0.0.1 (npm
//! `oauth2-mock-server`, driven by `tests/issuer.mjs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod human;
mod workload;
