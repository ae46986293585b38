//! Credential engines: where the short-lived, task-scoped credentials an
//! agent run gets come from (Vault's vocabulary). One folder per engine,
//! all with the same shape: roles from the config, `prepare` (check the
//! request and name what will be created, before anything is), `issue`
//! (create it in the backend), `revoke` (remove it; idempotent).
//!
//! The lease manager in the server records a lease with its revocation
//! handle *before* calling `issue`, so a crash between the backend call and
//! the commit still leaves a record the reaper revokes on start-up. Engines
//! never touch Warrant's store and never decide policy: the server decides
//! `credential.issue` on `Secret::"<engine>/<role>"` first.
//!
//! Invariants:
//! - `prepare` is pure (no IO) and deterministic in the lease id, so the
//!   handle it returns names exactly what `issue` creates.
//! - `issue` either creates the whole credential or nothing it leaves
//!   behind (on failure it cleans up what it created, best effort, and the
//!   lease manager revokes the handle anyway).
//! - `revoke` succeeds when the credential is gone, including when it never
//!   existed or was already revoked; it fails (`Unavailable`) only when it
//!   cannot tell, so the lease manager retries.
//! - Secrets are `SecretString`s and never appear in errors, logs, handles
//!   or `public` values.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde_json::Value;
use warrant_core::TaskId;

pub mod jwt;
pub mod kv;
pub mod postgres;
pub mod ssh;

/// Why an engine refused or failed. Messages never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such role in this engine.
    #[error("role `{0}` does not exist in this engine")]
    UnknownRole(String),
    /// The request's parameters are outside the role's bounds or malformed
    /// (a bad SSH public key, a TTL over the role's maximum, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The backend cannot be reached or failed for a reason that may pass:
    /// nothing was issued (or, for `revoke`, retry later).
    #[error("the backend is unavailable: {0}")]
    Unavailable(String),
    /// The engine's configuration or material is unusable.
    #[error("the engine is misconfigured: {0}")]
    Config(String),
    /// A bug or corrupt data.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A role as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoleInfo {
    pub name: String,
    pub description: String,
    /// The longest a lease of this role may live (never past the task).
    pub max_ttl_secs: i64,
}

/// One lease to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// A UUIDv7, unique per lease: engines derive backend names from it.
    pub lease_id: uuid::Uuid,
    pub role: &'a str,
    pub task_id: TaskId,
    pub run_id: uuid::Uuid,
    pub agent: &'a str,
    pub delegator: &'a str,
    /// Already capped by the lease manager at the task's end and the role's
    /// `max_ttl`.
    pub expires_at: Timestamp,
    /// Engine-specific parameters from the request (`{"public_key": ...}`
    /// for SSH, `{"audience": ...}` for JWT); `{}` when none.
    pub params: &'a Value,
}

/// What `issue` created.
#[derive(Debug)]
pub struct Issued {
    /// Secret values handed to the run (password, token, certificate,
    /// secret), by name. Never logged, never stored.
    pub secrets: BTreeMap<String, SecretString>,
    /// Non-secret facts about the credential (user name, serial, key id,
    /// principals...): shown in the API and the audit log.
    pub public: Value,
    /// The revocation handle, possibly completed (e.g. with a serial).
    pub handle: Value,
    /// When the credential itself stops working in the backend (never later
    /// than the request's `expires_at`).
    pub expires_at: Timestamp,
}

/// What engines may need from the server when they are built.
#[derive(Debug, Clone)]
pub struct EngineContext {
    /// `<data-dir>`: where engines keep their key material (0600 files),
    /// e.g. `engines/<name>/ca` for an SSH CA.
    pub data_dir: PathBuf,
    /// The server's signing key (the `jwt` engine signs with it, so its
    /// tokens verify with Warrant's JWKS).
    pub signing_key: Arc<warrant_crypto::SigningKey>,
    /// The issuer URL (`iss` of JWTs).
    pub issuer: String,
}

/// A credential engine.
#[async_trait]
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// The engine's configured name (`pg-main`).
    fn name(&self) -> &str;
    /// Its type (`postgres`, `ssh`, `jwt`, `kv`).
    fn kind(&self) -> &'static str;
    fn roles(&self) -> Vec<RoleInfo>;
    /// The longest lease `role` allows, or `UnknownRole`.
    fn max_ttl(&self, role: &str) -> Result<SignedDuration, EngineError>;
    /// Checks `req` and returns the revocation handle naming what `issue`
    /// will create. Pure: no IO.
    fn prepare(&self, req: &IssueRequest<'_>) -> Result<Value, EngineError>;
    /// Creates the credential named by `handle`.
    async fn issue(&self, req: &IssueRequest<'_>, handle: &Value) -> Result<Issued, EngineError>;
    /// Removes the credential `handle` names. Idempotent.
    async fn revoke(&self, handle: &Value) -> Result<(), EngineError>;
}

/// Parses a TTL such as `1h` from an engine's config.
pub fn parse_ttl(what: &str, raw: &str) -> Result<SignedDuration, String> {
    let d = warrant_core::task::parse_duration(raw).map_err(|e| format!("`{what}`: {e}"))?;
    if d < SignedDuration::from_secs(1) {
        return Err(format!("`{what}` must be at least 1s"));
    }
    Ok(d)
}
