//! Integration tests: the real server, started in-process, over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod approvals;
mod auth;
mod bad_input;
mod bootstrap;
mod config;
mod decisions;
mod exchange;
mod forward;
mod hardening;
mod introspect;
mod keys;
mod leases;
mod lifecycle;
mod mcp;
mod refresh;
mod refusal_budget;
mod revocations;
mod signin;
mod support;
mod tokens;
mod unavailable;
mod workers;
mod workload;
