//! Warrant's MCP gateway: a policy-enforcing MCP proxy between an agent and
//! its MCP servers.
//!
//! Owns: the per-session upstream connection (a stdio child spawned for the
//! session, or a streamable-HTTP client), the filtering of `tools/list`, the
//! decision of every `tools/call` (and resource and prompt request) through
//! an injected [`Warden`], the redaction of values Warrant issued, taint
//! reporting, and closing a run's sessions at once ([`SessionRegistry`]).
//!
//! Never: authenticates HTTP requests (the server puts an authenticated
//! [`Caller`] into each request's extensions), reads the store, decides
//! policy itself, or writes audit records (the [`Warden`] does all three).
//!
//! Invariants:
//! - Nothing reaches the upstream unless the session is bound to the
//!   caller's run, `live()` is true and `decide_call` returned `Allow` for
//!   this request with its arguments, and the arguments carry no issued
//!   value.
//! - Every answer from the upstream is scanned for issued values before it
//!   reaches the agent.
//! - An upstream that times out or fails is closed with its session; a stdio
//!   upstream is killed with its process group, never left running.

mod config;
mod gateway;
mod registry;
mod scan;
mod session;
mod upstream;
mod warden;

pub use config::{
    ConfigError, Credential, CredentialConfig, CredentialTarget, DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_STARTUP_TIMEOUT, DEFAULT_TIMEOUT, Upstream, UpstreamConfig, UpstreamTransport,
};
pub use gateway::{Gateway, GatewayService, ServiceOptions};
pub use registry::{SessionRegistry, SessionSummary};
pub use scan::{MIN_SCANNED_LEN, REDACTED};
pub use session::{DENIED, SessionHandler};
pub use warden::{Caller, Launch, LaunchError, Verdict, Warden};
