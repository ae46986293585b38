//! Warrant's persistence: the [`Store`] trait and its two implementations,
//! SQLite (the embedded default) and PostgreSQL (several `warrant serve`
//! processes sharing one database).
//!
//! Every state change is written together with its audit event in one
//! database transaction: if the audit append fails, the change is rolled
//! back (fail closed). The store assigns each event its sequence number and
//! chains its hash under a lock that serializes appends (SQLite's write
//! lock, a `FOR UPDATE` row lock on PostgreSQL), so several servers on one
//! PostgreSQL still produce one linear chain.
//!
//! Open a store with [`open`] (`sqlite://PATH` or `postgres://...`): it
//! creates what is missing and applies the numbered migrations under
//! `migrations/sqlite` and `migrations/postgres`. [`GroupCommitter`] batches
//! standalone audit events into one durable transaction.
//!
//! Timestamps are kept as integer microseconds since the epoch: what is
//! read back is truncated to the microsecond.
//!
//! The audit tables are append-only in the database too (triggers refuse
//! UPDATE and DELETE). That is defence in depth only: whoever can write the
//! database file, or owns the tables, can drop the triggers. Tampering is
//! made evident by the hash chain and the signed checkpoints, which
//! `warrant audit verify` checks.
//!
//! This is the only crate that knows SQL. It must never decide policy or
//! speak HTTP.

mod common;
mod group_commit;
mod postgres;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use thiserror::Error;
use warrant_audit::{Checkpoint, Event, Hash, NewEvent, RawEvent};
use warrant_core::{Agent, EndReason, Name, Task, TaskId, TaskState, User};

pub use group_commit::GroupCommitter;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// What can go wrong in the store. Callers map [`StoreError::Unavailable`]
/// to "deny / 503", the others to specific client errors.
///
/// Only trouble that may pass by itself (the database unreachable, a lock
/// or pool timeout, a refusal the store cannot classify) is `Unavailable`:
/// a value the database refuses as invalid is `Rejected`, because retrying
/// the same request can never succeed.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A unique name is taken.
    #[error("{0} already exists")]
    Conflict(String),
    /// The change does not apply to the current state (e.g. ending an ended task).
    #[error("{0}")]
    InvalidState(String),
    /// The database cannot be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database refused a value as invalid for its column or
    /// constraints (PostgreSQL SQLSTATE classes 22 "data exception" and 23
    /// "integrity constraint violation" where not a [`StoreError::Conflict`]
    /// or [`StoreError::NotFound`]), e.g. a NUL character in text.
    /// Nothing was written.
    #[error("the database refused a value: {0}")]
    Rejected(String),
    /// A row the store itself wrote cannot be read back: corruption or a bug.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// The URL or options do not describe a usable store.
    #[error("invalid store configuration: {0}")]
    Config(String),
}

/// Filters for [`Store::list_tasks`]. `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub delegator: Option<Name>,
    pub agent: Option<Name>,
    /// At most this many, newest first. The store caps it at 1000.
    pub limit: Option<u32>,
}

/// Filters for [`Store::list_audit`]: events with `seq > after`, ascending.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub after: u64,
    pub task_id: Option<String>,
    pub kind: Option<String>,
    /// At most this many. The store caps it at 10 000.
    pub limit: Option<u32>,
}

/// A public signing key the server has used, so verification can find the
/// key a checkpoint names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyRecord {
    pub kid: String,
    /// `EdDSA` (Ed25519).
    pub alg: String,
    pub public_key: Vec<u8>,
    pub created_at: Timestamp,
    /// When a rotation replaced it as the signing key; `None` while it
    /// may still sign.
    pub retired_at: Option<Timestamp>,
}

/// A one-time task claim as stored: its hash, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskClaim {
    /// SHA-256 of the claim secret (see `warrant_crypto::hash_claim`).
    pub hash: Hash,
    pub task_id: TaskId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When it was redeemed; `None` while unused.
    pub used_at: Option<Timestamp>,
}

/// A workload token (RFC 7523 assertion) spent on a run: it may start no
/// other run while it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedAssertion {
    /// The token's `iss`.
    pub issuer: String,
    /// Its `jti`, or the hex SHA-256 of the token when it has none.
    pub jti: String,
    /// Its `exp`: the row may be forgotten after this.
    pub expires_at: Timestamp,
}

/// Where an approval request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Its task ended before it was used.
    Revoked,
    /// Approved and used by the decision it was for.
    Consumed,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Consumed => "consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "expired" => Self::Expired,
            "revoked" => Self::Revoked,
            "consumed" => Self::Consumed,
            _ => return None,
        })
    }
}

/// A request for a human approval, created by an `approval_required`
/// decision, bound to the exact request by `request_hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// A UUIDv7.
    pub id: uuid::Uuid,
    pub task_id: TaskId,
    pub run_id: uuid::Uuid,
    pub action: String,
    /// What is asked, as shown to approvers: action, resource and the
    /// decision-relevant context (JSON object).
    pub request: serde_json::Value,
    /// SHA-256 of the canonical `request`: the same action on another
    /// commit, digest or environment is another request.
    pub request_hash: Hash,
    /// Distinct approvers needed.
    pub quorum: u32,
    /// The approval rules that asked for it, and their reasons.
    pub policies: Vec<String>,
    pub reasons: Vec<String>,
    pub state: ApprovalState,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When it left `pending`.
    pub decided_at: Option<Timestamp>,
    /// When the decision it was for used it.
    pub consumed_at: Option<Timestamp>,
}

/// An approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// One approver's vote on an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub approval_id: uuid::Uuid,
    pub approver: Name,
    pub verdict: Verdict,
    pub reason: String,
    pub at: Timestamp,
}

/// What a decision writes besides its event.
#[derive(Debug, Clone)]
pub struct DecisionWrite<'a> {
    pub run_id: uuid::Uuid,
    pub task_id: TaskId,
    /// Marks the run gains (`class:<risk class>`, `tainted`).
    pub marks: &'a [String],
    /// A new pending approval.
    pub approval: Option<&'a Approval>,
    /// An approved approval this decision uses up.
    pub consume: Option<uuid::Uuid>,
    pub at: Timestamp,
}

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Recorded, the engine is creating it (or crashed while doing so).
    Issuing,
    Active,
    /// To be revoked: expired, its task or run ended, or asked for.
    Revoking,
    Revoked,
    /// Revocation kept failing: surfaced loudly, needs a human.
    Irrevocable,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuing => "issuing",
            Self::Active => "active",
            Self::Revoking => "revoking",
            Self::Revoked => "revoked",
            Self::Irrevocable => "irrevocable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "issuing" => Self::Issuing,
            "active" => Self::Active,
            "revoking" => Self::Revoking,
            "revoked" => Self::Revoked,
            "irrevocable" => Self::Irrevocable,
            _ => return None,
        })
    }
}

/// One issued downstream credential.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// A UUIDv7.
    pub id: uuid::Uuid,
    pub engine: String,
    pub role: String,
    pub task_id: TaskId,
    pub run_id: uuid::Uuid,
    /// What the engine needs to revoke it (never a secret).
    pub handle: serde_json::Value,
    /// Non-secret facts about the credential.
    pub public: serde_json::Value,
    pub state: LeaseState,
    pub issued_at: Timestamp,
    /// Never past the task's end.
    pub expires_at: Timestamp,
    /// Why it is being (or was) revoked: `expired`, `task_ended`,
    /// `run_ended`, `requested`, `issue_failed`, `interrupted`.
    pub revoke_reason: Option<String>,
    /// Failed revocation attempts so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// Which leases to list; newest first.
#[derive(Debug, Clone, Default)]
pub struct LeaseFilter {
    pub state: Option<LeaseState>,
    pub task_id: Option<TaskId>,
    pub run_id: Option<uuid::Uuid>,
    pub limit: Option<u32>,
}

/// A `kv` engine's secret as stored: sealed, never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub engine: String,
    pub name: String,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Which approvals to list; newest first.
#[derive(Debug, Clone, Default)]
pub struct ApprovalFilter {
    pub state: Option<ApprovalState>,
    pub task_id: Option<TaskId>,
    pub limit: Option<u32>,
}

/// Whether a run's tokens may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Live,
    Revoked,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Revoked => "revoked",
        }
    }
}

/// One agent run: the subject of run tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// A UUIDv7.
    pub id: uuid::Uuid,
    pub task_id: TaskId,
    pub agent: Name,
    /// RFC 7638 thumbprint of the run's DPoP key: its tokens' `cnf.jkt`.
    pub jkt: String,
    /// The run that delegated to this one (token exchange), if any.
    pub parent_run_id: Option<uuid::Uuid>,
    /// 0 for a run started from a claim or a workload token.
    pub depth: u32,
    pub state: RunState,
    pub created_at: Timestamp,
    /// No token of this run lives past this.
    pub expires_at: Timestamp,
}

/// What a revocation revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    /// One run: its tokens are refused from the revocation on.
    Run,
    /// A task ended: every run of it is revoked too (one `Run` row each).
    Task,
}

impl RevocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Task => "task",
        }
    }
}

/// One row of the revocation stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Increasing in commit order: resume after the last one seen.
    pub id: i64,
    pub kind: RevocationKind,
    /// The run id or the task id.
    pub subject_id: uuid::Uuid,
    pub task_id: TaskId,
    /// The task's end reason (`completed`, `expired`, ...) or why the run
    /// was revoked.
    pub reason: String,
    pub at: Timestamp,
}

impl Run {
    /// Live and not past its expiry at `now`.
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.state == RunState::Live && now < self.expires_at
    }
}

/// The store. Object-safe so the server can hold an `Arc<dyn Store>`.
///
/// Every method that changes state takes the [`NewEvent`] describing the
/// change and appends it in the same transaction; it returns the chained
/// [`Event`] so callers can log its sequence number.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Succeeds only if the database answers a query now.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Waits for in-flight work and closes connections.
    async fn close(&self);

    // --- users -----------------------------------------------------------

    /// Creates a user with the hash of its API token. `Conflict` on a taken name.
    async fn create_user(
        &self,
        user: &User,
        token_hash: &Hash,
        event: NewEvent,
    ) -> Result<Event, StoreError>;
    async fn user_by_name(&self, name: &Name) -> Result<Option<User>, StoreError>;
    async fn user_by_token_hash(&self, token_hash: &Hash) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// The user an outside identity (an OIDC issuer and subject) is linked to.
    async fn user_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError>;
    /// Creates `user` linked to the outside identity `issuer`/`subject` and
    /// appends `event`, in one transaction. `token_hash` is the hash of an
    /// API token nobody is told. `Conflict` (writing nothing) when the name
    /// is taken or the identity is already linked.
    async fn provision_user(
        &self,
        user: &User,
        token_hash: &Hash,
        issuer: &str,
        subject: &str,
        event: NewEvent,
    ) -> Result<Event, StoreError>;
    /// Replaces a user's groups and appends `event`. `NotFound` if absent.
    async fn set_user_groups(
        &self,
        name: &Name,
        groups: &[Name],
        event: NewEvent,
    ) -> Result<Event, StoreError>;
    async fn count_users(&self) -> Result<u64, StoreError>;

    // --- agents ----------------------------------------------------------

    /// `Conflict` on a taken name.
    async fn create_agent(&self, agent: &Agent, event: NewEvent) -> Result<Event, StoreError>;
    /// Replaces an existing agent's tier, owner, description and source.
    /// `NotFound` if absent.
    async fn update_agent(&self, agent: &Agent, event: NewEvent) -> Result<Event, StoreError>;
    async fn agent_by_name(&self, name: &Name) -> Result<Option<Agent>, StoreError>;
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;

    // --- tasks -----------------------------------------------------------

    /// `Conflict` if the id exists. The agent and delegator must exist
    /// (`NotFound` otherwise).
    async fn create_task(&self, task: &Task, event: NewEvent) -> Result<Event, StoreError>;
    /// [`Store::create_task`] together with the task's one-time claim, in
    /// one transaction. `claim.task_id` must be `task.id`.
    async fn create_task_with_claim(
        &self,
        task: &Task,
        claim: &TaskClaim,
        event: NewEvent,
    ) -> Result<Event, StoreError>;
    async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StoreError>;
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError>;
    /// Ends a live task and revokes its live runs, in one transaction.
    /// `NotFound` if absent, `InvalidState` if already ended. Returns the
    /// ended task.
    async fn end_task(
        &self,
        id: TaskId,
        reason: EndReason,
        note: Option<&str>,
        at: Timestamp,
        event: NewEvent,
    ) -> Result<(Task, Event), StoreError>;
    /// Replaces a live task's scope and expiry with narrower ones. The
    /// caller checks that they are narrower; the store checks again and
    /// refuses with `InvalidState` (writing nothing) a wider scope, a later
    /// expiry or an ended task. `NotFound` if absent.
    async fn narrow_task(&self, task: &Task, event: NewEvent) -> Result<Event, StoreError>;
    /// Live tasks whose `expires_at <= now`, oldest first, at most `limit`
    /// rows examined. A row that cannot be decoded is logged and left out
    /// (so one corrupt task cannot stop every other one from expiring): the
    /// result may hold fewer than `limit` tasks while more are expired.
    /// The reaper ends each with [`Store::end_task`].
    async fn expired_tasks(&self, now: Timestamp, limit: u32) -> Result<Vec<Task>, StoreError>;

    // --- claims and runs --------------------------------------------------

    /// The claim with this hash, used or not.
    async fn task_claim(&self, hash: &Hash) -> Result<Option<TaskClaim>, StoreError>;
    /// Redeems a claim: marks it used, creates `run`, moves its task from
    /// `pending` to `active`, and appends `event`, all in one transaction.
    /// Single use under concurrency: of many concurrent redemptions of one
    /// claim, exactly one succeeds. `NotFound` for an unknown claim;
    /// `InvalidState` (writing nothing) for a used or expired claim, a claim
    /// of another task than `run.task_id`, or a task that has ended or
    /// expired at `now`. Returns the task as it now is.
    async fn redeem_claim(
        &self,
        hash: &Hash,
        run: &Run,
        now: Timestamp,
        event: NewEvent,
    ) -> Result<(Task, Event), StoreError>;
    /// Starts a run with no claim (the RFC 7523 jwt-bearer grant, whose
    /// assertion the caller has verified): creates `run`, moves its task
    /// from `pending` to `active`, and appends `event`, in one transaction.
    /// `NotFound` for an unknown task, `InvalidState` (writing nothing) for
    /// a task that has ended or expired at `now`. Returns the task as it
    /// now is. `assertion` is recorded in the same transaction; if it was
    /// recorded before, the answer is `Conflict` and nothing is written.
    /// Assertions past their expiry are forgotten on the way.
    async fn start_run(
        &self,
        run: &Run,
        assertion: Option<&UsedAssertion>,
        now: Timestamp,
        event: NewEvent,
    ) -> Result<(Task, Event), StoreError>;
    /// Starts a delegated (token-exchange) run: `run.parent_run_id` must
    /// name a run of the same task that is live at `now`, and the task must
    /// be open at `now`; `run` is inserted and `event` appended in one
    /// transaction. `NotFound` for an unknown task or parent, `InvalidState`
    /// (writing nothing) when the parent or task is no longer live.
    async fn start_child_run(
        &self,
        run: &Run,
        now: Timestamp,
        event: NewEvent,
    ) -> Result<Event, StoreError>;
    /// Extends a live run's `expires_at` to `expires_at` (a refreshed
    /// token), appending `event`, in one transaction. The run must be live
    /// at `now` with key `jkt`, its task open at `now` and not ending before
    /// `expires_at`, and for a delegated run the parent live at `now` and
    /// not expiring before `expires_at`. `NotFound` for an unknown run,
    /// `InvalidState` (writing nothing) otherwise. Returns the run as it now is.
    async fn refresh_run(
        &self,
        id: uuid::Uuid,
        jkt: &str,
        expires_at: Timestamp,
        now: Timestamp,
        event: NewEvent,
    ) -> Result<Run, StoreError>;
    async fn get_run(&self, id: uuid::Uuid) -> Result<Option<Run>, StoreError>;

    // --- decisions ----------------------------------------------------------

    /// What a run has done so far: its marks (`class:<risk class>`,
    /// `tainted`), sorted.
    async fn run_marks(&self, run_id: uuid::Uuid) -> Result<Vec<String>, StoreError>;
    /// Records a decision of a run (see [`DecisionWrite`]): adds `marks` to the run
    /// (marks it has already are kept as they are), inserts `approval` if
    /// any, consumes the approved approval `consume` if any, and appends
    /// `event`, in one transaction. `NotFound` for an unknown run;
    /// `InvalidState` (writing nothing) when `consume` is not approved and
    /// unexpired at `at` (another decision used it, or it expired).
    async fn record_decision(
        &self,
        write: &DecisionWrite<'_>,
        event: NewEvent,
    ) -> Result<Event, StoreError>;
    /// Approvals matching `filter`, newest first.
    async fn list_approvals(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, StoreError>;
    /// The votes on an approval, oldest first.
    async fn approval_votes(&self, id: uuid::Uuid) -> Result<Vec<Vote>, StoreError>;
    /// Records `vote` on a pending approval not expired at `vote.at` and
    /// appends `event`, in one transaction: a deny makes it `denied`; an
    /// approve makes it `approved` once `quorum` distinct approvers have
    /// approved. `NotFound` if absent; `InvalidState` (writing nothing) if it
    /// is not pending or has expired; `Conflict` if this approver voted on
    /// it already. `event` is built from the approval as the vote left it.
    /// Returns the approval as it now is.
    async fn vote_approval(
        &self,
        vote: &Vote,
        event: &(dyn for<'a> Fn(&'a Approval) -> NewEvent + Send + Sync),
    ) -> Result<Approval, StoreError>;
    /// Marks pending and approved approvals whose `expires_at <= now` as
    /// `expired`, at most `limit`, each with its own event from `event`, in
    /// one transaction. Returns them as they now are.
    async fn expire_approvals(
        &self,
        now: Timestamp,
        limit: u32,
        event: &(dyn for<'a> Fn(&'a Approval) -> NewEvent + Send + Sync),
    ) -> Result<Vec<Approval>, StoreError>;
    async fn get_approval(&self, id: uuid::Uuid) -> Result<Option<Approval>, StoreError>;
    /// The newest approval of `run_id` for `request_hash` in `state`, not
    /// expired at `now`.
    async fn find_approval(
        &self,
        run_id: uuid::Uuid,
        request_hash: &Hash,
        state: ApprovalState,
        now: Timestamp,
    ) -> Result<Option<Approval>, StoreError>;
    /// The runs of a task, oldest first.
    async fn task_runs(&self, task_id: TaskId) -> Result<Vec<Run>, StoreError>;

    // --- leases -----------------------------------------------------------

    /// Records `lease` (state `issuing`) with `event`, before the engine
    /// creates anything. `InvalidState` (writing nothing) unless its task and
    /// run are live at `lease.issued_at`; `NotFound` for an unknown run.
    async fn create_lease(&self, lease: &Lease, event: NewEvent) -> Result<(), StoreError>;
    /// `issuing` -> `active` with what the engine reported. `InvalidState`
    /// (writing nothing) when the lease is no longer `issuing` or its task or
    /// run has ended meanwhile: the caller then revokes it.
    async fn activate_lease(
        &self,
        id: uuid::Uuid,
        public: &serde_json::Value,
        expires_at: Timestamp,
        event: NewEvent,
    ) -> Result<Lease, StoreError>;
    async fn get_lease(&self, id: uuid::Uuid) -> Result<Option<Lease>, StoreError>;
    async fn list_leases(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, StoreError>;
    /// `issuing`/`active` -> `revoking` (`reason`), due at once. `NotFound`;
    /// `InvalidState` when it is revoking, revoked or irrevocable already.
    async fn request_revoke(
        &self,
        id: uuid::Uuid,
        reason: &str,
        at: Timestamp,
        event: NewEvent,
    ) -> Result<Lease, StoreError>;
    /// Leases that need revoking now, oldest first, at most `limit`:
    /// `revoking` ones due at `now`; `active` ones past `expires_at` or whose
    /// task or run has ended (they are moved to `revoking` with the reason);
    /// `issuing` ones recorded before `stale_issuing` (a crash interrupted
    /// them).
    async fn due_leases(
        &self,
        now: Timestamp,
        stale_issuing: Timestamp,
        limit: u32,
    ) -> Result<Vec<Lease>, StoreError>;
    /// The engine revoked it: -> `revoked`, with `event`.
    async fn finish_revoke(
        &self,
        id: uuid::Uuid,
        at: Timestamp,
        event: NewEvent,
    ) -> Result<Lease, StoreError>;
    /// A revocation attempt failed: counts it, keeps `error`, and either
    /// schedules the next attempt or, with `irrevocable`, gives up (with
    /// `event`).
    async fn fail_revoke(
        &self,
        id: uuid::Uuid,
        error: &str,
        next_attempt_at: Timestamp,
        irrevocable: bool,
        event: Option<NewEvent>,
    ) -> Result<Lease, StoreError>;

    // --- kv secrets -------------------------------------------------------

    /// Stores (or replaces) a sealed secret with `event`.
    async fn put_kv_secret(&self, secret: &SealedSecret, event: NewEvent)
    -> Result<(), StoreError>;
    async fn get_kv_secret(
        &self,
        engine: &str,
        name: &str,
    ) -> Result<Option<SealedSecret>, StoreError>;
    /// An engine's sealed secrets, by name.
    async fn list_kv_secrets(&self, engine: &str) -> Result<Vec<SealedSecret>, StoreError>;

    // --- revocations ------------------------------------------------------

    /// Revokes one live run without ending its task, writing `event` and
    /// one revocation row (kind `run`, `reason`) in the same transaction.
    /// Every live run delegated from it (token exchange, transitively) is
    /// revoked in the same transaction, each with its own revocation row.
    /// `NotFound` if absent, `InvalidState` if already revoked. Returns the
    /// revoked run.
    async fn revoke_run(
        &self,
        id: uuid::Uuid,
        reason: &str,
        at: Timestamp,
        event: NewEvent,
    ) -> Result<(Run, Event), StoreError>;

    /// Revocations with `id > after`, in id order, at most `limit`
    /// (capped). Rows are written by [`Store::end_task`] in its transaction.
    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError>;

    // --- audit -----------------------------------------------------------

    /// Appends events that stand on their own (no state change), in one
    /// transaction: all or none.
    async fn append_audit(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, StoreError>;
    /// The chain head (seq, hash), `None` when empty.
    async fn audit_head(&self) -> Result<Option<(u64, Hash)>, StoreError>;
    /// Decoded events for the API.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<Event>, StoreError>;
    /// Raw rows with `seq > after`, ascending, for verification; no
    /// decoding, so a tampered row reaches the verifier as it is.
    async fn raw_audit(&self, after: i64, limit: u32) -> Result<Vec<RawEvent>, StoreError>;
    /// Stores a signed checkpoint. `InvalidState` unless the chain holds an
    /// event at `checkpoint.seq` with `checkpoint.hash`; a second checkpoint
    /// for the same seq is accepted and dropped (several servers may sign
    /// one head). The signature is not checked here.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    async fn list_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    async fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;

    // --- keys ------------------------------------------------------------

    /// Records a public key together with its `keys.added` `event`, in one
    /// transaction. A known kid writes nothing (neither the key nor the
    /// event) and returns `None`.
    async fn put_public_key(
        &self,
        key: &PublicKeyRecord,
        event: NewEvent,
    ) -> Result<Option<Event>, StoreError>;
    async fn list_public_keys(&self) -> Result<Vec<PublicKeyRecord>, StoreError>;
    /// A key rotation, in one transaction: records `new` (which must be a
    /// new kid: a known one is a `Conflict`), marks every listed kid in
    /// `retire` that is not retired yet as retired at `new.created_at`, and
    /// appends `events` (`keys.added`, `keys.rotated`).
    async fn rotate_public_key(
        &self,
        new: &PublicKeyRecord,
        retire: &[String],
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, StoreError>;
}

/// Opens the store a URL names and brings its schema up to date:
///
/// - `sqlite://PATH` or `sqlite:PATH`: a file, relative to the working
///   directory or absolute (`sqlite:///var/lib/warrant/warrant.db`). The
///   file and its parent directories are created if missing, the file
///   with mode 0600.
/// - `postgres://...` or `postgresql://...`: a libpq-style URL.
///
/// Anything else is a [`StoreError::Config`]; a database that cannot be
/// reached is [`StoreError::Unavailable`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::connect(url).await?));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(StoreError::Config(
                "the sqlite url names no file: use `sqlite://PATH`, e.g. `sqlite://warrant-data/warrant.db`"
                    .into(),
            ));
        }
        if path == ":memory:" || path.contains('?') {
            return Err(StoreError::Config(format!(
                "sqlite url `{url}` is not supported: give a plain file path such as `sqlite://warrant-data/warrant.db` \
                 (no in-memory databases, no query parameters)"
            )));
        }
        return Ok(Arc::new(SqliteStore::open(Path::new(path)).await?));
    }
    // The scheme only: a url may carry a password.
    let scheme = url.split_once(':').map_or("", |(s, _)| s);
    let shown = if scheme.is_empty() || scheme.len() > 32 {
        String::new()
    } else {
        format!(" `{scheme}`")
    };
    Err(StoreError::Config(format!(
        "unsupported store url scheme{shown}: expected `sqlite://PATH` or `postgres://USER@HOST/DB` (also `postgresql://`)"
    )))
}
