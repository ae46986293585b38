//! Integration tests: the real `warrant` binary, a real `warrant serve` on
//! loopback and its real SQLite store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod approvals;
mod attest;
mod audit;
mod bench_mcp;
mod claude_code;
mod errors;
mod git_nginx;
mod hooks;
mod keys;
mod kill;
mod leases;
mod mcp_proxy;
mod policy;
mod refusals;
mod replay;
mod run;
mod serve;
mod util;
mod workflow;
