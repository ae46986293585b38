//! The gateway driven end to end: the official Python MCP SDK client, the
//! gateway on a loopback axum server, and the real server-everything
//! upstream over stdio.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod lifecycle;
mod protocol;
mod secrets;
mod tools;
