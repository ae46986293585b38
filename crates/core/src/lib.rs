//! Warrant's domain vocabulary: identifiers, names, users, agents, tasks and
//! their scopes, and the injected [`Clock`].
//!
//! This crate owns the rules that hold no matter where a value came from
//! (a name's alphabet, a TTL's bounds, what "narrowing a scope" means).
//!
//! It must never do IO: no files, no network, no database, no reading the
//! system clock except through [`SystemClock`], which callers inject.

pub mod clock;
pub mod error;
pub mod glob;
pub mod id;
pub mod task;
pub mod text;
pub mod tool_args;
pub mod user;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::CoreError;
pub use id::{Name, TaskId};
pub use task::{EndReason, Scope, ScopeCheck, ScopeMiss, Task, TaskState, TtlBounds};
pub use text::validate_text;
pub use user::{Agent, Tier, User};

/// Points in time are `jiff` timestamps throughout Warrant.
pub use jiff::Timestamp;
