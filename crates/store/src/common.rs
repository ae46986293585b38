//! What both backends share: row shapes, value conversions and the mapping
//! from database errors to [`StoreError`].
//!
//! Both schemas keep timestamps as integer microseconds, names and enums as
//! text, scopes and groups as JSON text, so one set of row structs decodes
//! rows from either database.

use std::str::FromStr;

use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::FromRow as _;
use sqlx::error::ErrorKind;
use warrant_audit::{Checkpoint, Hash, RawEvent};
use warrant_core::{Agent, Name, Scope, Task, TaskId, User};

use crate::{Approval, ApprovalState, PublicKeyRecord, Run, RunState, StoreError, TaskClaim};

/// Default and maximum page size of [`crate::Store::list_tasks`].
pub(crate) const MAX_TASKS: u32 = 1000;
pub(crate) const MAX_APPROVALS: u32 = 1000;
pub(crate) const MAX_LEASES: u32 = 1000;
/// Default and maximum page size of [`crate::Store::list_audit`].
pub(crate) const MAX_AUDIT: u32 = 10_000;

pub(crate) fn to_us(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(crate) fn from_us(what: &str, us: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_microsecond(us)
        .map_err(|_| StoreError::Corrupt(format!("{what} `{us}` is not a valid time")))
}

pub(crate) fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    // INVARIANT: scopes and name lists are plain strings in structs and
    // vectors, which always serialize; the error arm exists to stay total.
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {what}: {e}")))
}

fn from_json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn parse<T: FromStr>(what: &str, text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn name(what: &'static str, text: String) -> Result<Name, StoreError> {
    Name::parse(what, &text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn hash32(what: &str, bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// The number of rows a page may hold: the caller's limit, capped.
pub(crate) fn page(limit: Option<u32>, max: u32) -> i64 {
    i64::from(limit.unwrap_or(max).min(max))
}

// --- errors --------------------------------------------------------------

/// Maps an error the caller did not expect to a [`StoreError`]: values
/// PostgreSQL refuses as invalid are `Rejected`, other database refusals
/// and connection trouble are `Unavailable` (the caller answers 503 and
/// changes nothing), undecodable rows are `Corrupt`.
pub(crate) fn sqlx_error(e: sqlx::Error) -> StoreError {
    if let Some(rejected) = rejected_value(&e) {
        return rejected;
    }
    match e {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        sqlx::Error::PoolClosed => StoreError::Unavailable("the store is closed".into()),
        sqlx::Error::PoolTimedOut => StoreError::Unavailable(
            "timed out waiting for a database connection (is the database reachable?)".into(),
        ),
        sqlx::Error::Database(db) => StoreError::Unavailable(format!(
            "the database refused the operation: {}",
            db.message()
        )),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// PostgreSQL SQLSTATE class 22 (data exception: a NUL in text, a value
/// out of range, an invalid byte sequence) and class 23 (integrity
/// constraint violation) are about the value written, not about the
/// database's health: retrying cannot help. Callers map the unique and
/// foreign-key violations they expect to `Conflict` and `NotFound` before
/// they get here.
///
/// SQLite is left out on purpose: its codes are numbers (`2323` is not a
/// SQLSTATE) and it stores any text, NUL included.
fn rejected_value(e: &sqlx::Error) -> Option<StoreError> {
    let db = e.as_database_error()?;
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let code = pg.code();
    (code.starts_with("22") || code.starts_with("23")).then(|| {
        StoreError::Rejected(format!(
            "sqlstate {code}: {}{}",
            pg.message(),
            pg.constraint()
                .map(|c| format!(" (constraint `{c}`)"))
                .unwrap_or_default()
        ))
    })
}

fn kind(e: &sqlx::Error) -> Option<ErrorKind> {
    e.as_database_error().map(|db| db.kind())
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    kind(e) == Some(ErrorKind::UniqueViolation)
}

pub(crate) fn is_fk_violation(e: &sqlx::Error) -> bool {
    kind(e) == Some(ErrorKind::ForeignKeyViolation)
}

/// Whether a unique violation concerns `column` (SQLite names the column in
/// its message, PostgreSQL names the constraint, which contains it).
pub(crate) fn violates(e: &sqlx::Error, column: &str) -> bool {
    e.as_database_error().is_some_and(|db| {
        db.message().contains(column) || db.constraint().is_some_and(|c| c.contains(column))
    })
}

pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::VersionMissing(v) => StoreError::Config(format!(
            "the database has migration {v}, which this version of warrant does not know: \
             it was written by a newer warrant"
        )),
        M::VersionMismatch(v) => StoreError::Corrupt(format!(
            "migration {v} in the database differs from the one this warrant ships"
        )),
        M::Dirty(v) => StoreError::Corrupt(format!(
            "migration {v} was left half-applied; restore the database from a backup"
        )),
        M::Execute(e) | M::ExecuteMigration(e, _) => sqlx_error(e),
        other => StoreError::Unavailable(format!("cannot migrate the database: {other}")),
    }
}

// --- rows ----------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    name: String,
    groups: String,
    admin: bool,
    created_at: i64,
}

impl UserRow {
    pub(crate) fn decode(self) -> Result<User, StoreError> {
        let groups: Vec<String> = from_json("user groups", &self.groups)?;
        Ok(User {
            name: name("user name", self.name)?,
            groups: groups
                .into_iter()
                .map(|g| name("group name", g))
                .collect::<Result<_, _>>()?,
            admin: self.admin,
            created_at: from_us("user created_at", self.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AgentRow {
    name: String,
    tier: String,
    owner: Option<String>,
    description: String,
    source: String,
    created_at: i64,
}

impl AgentRow {
    pub(crate) fn decode(self) -> Result<Agent, StoreError> {
        Ok(Agent {
            name: name("agent name", self.name)?,
            tier: parse("agent tier", &self.tier)?,
            owner: self.owner.map(|o| name("agent owner", o)).transpose()?,
            description: self.description,
            source: self.source,
            created_at: from_us("agent created_at", self.created_at)?,
        })
    }
}

/// A task row; PostgreSQL selects its uuid as text so both backends share it.
#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    id: String,
    agent: String,
    delegator: String,
    purpose: String,
    ticket: Option<String>,
    scope: String,
    state: String,
    end_reason: Option<String>,
    end_note: Option<String>,
    created_at: i64,
    expires_at: i64,
    ended_at: Option<i64>,
}

impl TaskRow {
    /// Decodes `rows` one at a time, leaving out (and logging) those that
    /// cannot be read, so one corrupt task does not hide the others.
    pub(crate) fn decode_each<R>(rows: Vec<R>) -> Vec<Task>
    where
        R: sqlx::Row,
        TaskRow: for<'r> sqlx::FromRow<'r, R>,
    {
        let mut tasks = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let decoded = TaskRow::from_row(row).map_err(sqlx_error).and_then(|raw| {
                let id = shown(&raw.id);
                raw.decode()
                    .map_err(|e| StoreError::Corrupt(format!("task `{id}`: {e}")))
            });
            match decoded {
                Ok(task) => tasks.push(task),
                Err(e) => {
                    tracing::error!(row = i, error = %e, "skipping a task row that cannot be read");
                }
            }
        }
        tasks
    }

    pub(crate) fn decode(self) -> Result<Task, StoreError> {
        let scope: Scope = from_json("task scope", &self.scope)?;
        Ok(Task {
            id: parse::<TaskId>("task id", &self.id)?,
            agent: name("task agent", self.agent)?,
            delegator: name("task delegator", self.delegator)?,
            purpose: self.purpose,
            ticket: self.ticket,
            scope,
            state: parse("task state", &self.state)?,
            end_reason: self
                .end_reason
                .map(|r| parse("task end reason", &r))
                .transpose()?,
            end_note: self.end_note,
            created_at: from_us("task created_at", self.created_at)?,
            expires_at: from_us("task expires_at", self.expires_at)?,
            ended_at: self
                .ended_at
                .map(|t| from_us("task ended_at", t))
                .transpose()?,
        })
    }
}

/// An audit row as stored; converting it never fails, so tampered rows
/// reach the verifier unchanged.
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    seq: i64,
    time_us: i64,
    kind: String,
    actor: String,
    subject: String,
    task_id: Option<String>,
    data: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl From<AuditRow> for RawEvent {
    fn from(r: AuditRow) -> Self {
        RawEvent {
            seq: r.seq,
            time_us: r.time_us,
            kind: r.kind,
            actor: r.actor,
            subject: r.subject,
            task_id: r.task_id,
            data: r.data,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    seq: i64,
    hash: Vec<u8>,
    time_us: i64,
    kid: String,
    signature: Vec<u8>,
}

impl CheckpointRow {
    pub(crate) fn decode(self) -> Result<Checkpoint, StoreError> {
        Ok(Checkpoint {
            seq: u64::try_from(self.seq).map_err(|_| {
                StoreError::Corrupt(format!("checkpoint sequence `{}` is negative", self.seq))
            })?,
            hash: hash32("checkpoint hash", &self.hash)?,
            time: from_us("checkpoint time", self.time_us)?,
            kid: self.kid,
            signature: self.signature,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PublicKeyRow {
    kid: String,
    alg: String,
    public_key: Vec<u8>,
    created_at: i64,
    retired_at: Option<i64>,
}

impl PublicKeyRow {
    pub(crate) fn decode(self) -> Result<PublicKeyRecord, StoreError> {
        Ok(PublicKeyRecord {
            kid: self.kid,
            alg: self.alg,
            public_key: self.public_key,
            created_at: from_us("public key created_at", self.created_at)?,
            retired_at: self
                .retired_at
                .map(|us| from_us("public key retired_at", us))
                .transpose()?,
        })
    }
}

/// A claim row; PostgreSQL selects its task uuid as text.
#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    claim_hash: Vec<u8>,
    task_id: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl ClaimRow {
    pub(crate) fn decode(self) -> Result<TaskClaim, StoreError> {
        Ok(TaskClaim {
            hash: hash32("claim hash", &self.claim_hash)?,
            task_id: parse("claim task id", &self.task_id)?,
            created_at: from_us("claim created_at", self.created_at)?,
            expires_at: from_us("claim expires_at", self.expires_at)?,
            used_at: self
                .used_at
                .map(|t| from_us("claim used_at", t))
                .transpose()?,
        })
    }
}

/// A run row; PostgreSQL selects its uuids as text and `depth` as bigint.
#[derive(sqlx::FromRow)]
pub(crate) struct RunRow {
    id: String,
    task_id: String,
    agent: String,
    jkt: String,
    parent_run_id: Option<String>,
    depth: i64,
    state: String,
    created_at: i64,
    expires_at: i64,
}

impl RunRow {
    pub(crate) fn decode(self) -> Result<Run, StoreError> {
        let uuid = |what: &str, s: &str| {
            uuid::Uuid::try_parse(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        };
        Ok(Run {
            id: uuid("run id", &self.id)?,
            task_id: parse("run task id", &self.task_id)?,
            agent: name("run agent", self.agent)?,
            jkt: self.jkt,
            parent_run_id: self
                .parent_run_id
                .map(|p| uuid("run parent id", &p))
                .transpose()?,
            depth: u32::try_from(self.depth)
                .map_err(|_| StoreError::Corrupt(format!("run depth `{}`", self.depth)))?,
            state: match self.state.as_str() {
                "live" => RunState::Live,
                "revoked" => RunState::Revoked,
                other => {
                    return Err(StoreError::Corrupt(format!("run state `{}`", shown(other))));
                }
            },
            created_at: from_us("run created_at", self.created_at)?,
            expires_at: from_us("run expires_at", self.expires_at)?,
        })
    }
}

/// An approval row; PostgreSQL selects its uuids as text.
#[derive(sqlx::FromRow)]
pub(crate) struct ApprovalRow {
    id: String,
    task_id: String,
    run_id: String,
    action: String,
    request: String,
    request_hash: Vec<u8>,
    quorum: i64,
    policies: String,
    reasons: String,
    state: String,
    created_at: i64,
    expires_at: i64,
    decided_at: Option<i64>,
    consumed_at: Option<i64>,
}

impl ApprovalRow {
    pub(crate) fn decode(self) -> Result<Approval, StoreError> {
        let uuid = |what: &str, s: &str| {
            uuid::Uuid::try_parse(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        };
        Ok(Approval {
            id: uuid("approval id", &self.id)?,
            task_id: parse("approval task id", &self.task_id)?,
            run_id: uuid("approval run id", &self.run_id)?,
            action: self.action,
            request: from_json("approval request", &self.request)?,
            request_hash: hash32("approval request hash", &self.request_hash)?,
            quorum: u32::try_from(self.quorum)
                .map_err(|_| StoreError::Corrupt(format!("approval quorum `{}`", self.quorum)))?,
            policies: from_json("approval policies", &self.policies)?,
            reasons: from_json("approval reasons", &self.reasons)?,
            state: ApprovalState::parse(&self.state).ok_or_else(|| {
                StoreError::Corrupt(format!("approval state `{}`", shown(&self.state)))
            })?,
            created_at: from_us("approval created_at", self.created_at)?,
            expires_at: from_us("approval expires_at", self.expires_at)?,
            decided_at: self
                .decided_at
                .map(|t| from_us("approval decided_at", t))
                .transpose()?,
            consumed_at: self
                .consumed_at
                .map(|t| from_us("approval consumed_at", t))
                .transpose()?,
        })
    }
}

/// A lease row; PostgreSQL selects its uuids as text.
#[derive(sqlx::FromRow)]
pub(crate) struct LeaseRow {
    id: String,
    engine: String,
    role: String,
    task_id: String,
    run_id: String,
    handle: String,
    public: String,
    state: String,
    issued_at: i64,
    expires_at: i64,
    revoke_reason: Option<String>,
    attempts: i64,
    last_error: Option<String>,
    next_attempt_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl LeaseRow {
    pub(crate) fn decode(self) -> Result<crate::Lease, StoreError> {
        let uuid = |what: &str, s: &str| {
            uuid::Uuid::try_parse(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        };
        let opt = |what: &str, t: Option<i64>| t.map(|t| from_us(what, t)).transpose();
        Ok(crate::Lease {
            id: uuid("lease id", &self.id)?,
            engine: self.engine,
            role: self.role,
            task_id: parse("lease task id", &self.task_id)?,
            run_id: uuid("lease run id", &self.run_id)?,
            handle: from_json("lease handle", &self.handle)?,
            public: from_json("lease public", &self.public)?,
            state: crate::LeaseState::parse(&self.state).ok_or_else(|| {
                StoreError::Corrupt(format!("lease state `{}`", shown(&self.state)))
            })?,
            issued_at: from_us("lease issued_at", self.issued_at)?,
            expires_at: from_us("lease expires_at", self.expires_at)?,
            revoke_reason: self.revoke_reason,
            attempts: u32::try_from(self.attempts)
                .map_err(|_| StoreError::Corrupt(format!("lease attempts `{}`", self.attempts)))?,
            last_error: self.last_error,
            next_attempt_at: opt("lease next_attempt_at", self.next_attempt_at)?,
            revoked_at: opt("lease revoked_at", self.revoked_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KvRow {
    engine: String,
    name: String,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    created_at: i64,
    updated_at: i64,
}

impl KvRow {
    pub(crate) fn decode(self) -> Result<crate::SealedSecret, StoreError> {
        Ok(crate::SealedSecret {
            engine: self.engine,
            name: self.name,
            key_id: self.key_id,
            nonce: self.nonce,
            ciphertext: self.ciphertext,
            created_at: from_us("kv created_at", self.created_at)?,
            updated_at: from_us("kv updated_at", self.updated_at)?,
        })
    }
}

/// A vote row.
#[derive(sqlx::FromRow)]
pub(crate) struct VoteRow {
    approval_id: String,
    approver: String,
    verdict: String,
    reason: String,
    at: i64,
}

impl VoteRow {
    pub(crate) fn decode(self) -> Result<crate::Vote, StoreError> {
        Ok(crate::Vote {
            approval_id: uuid::Uuid::try_parse(&self.approval_id)
                .map_err(|e| StoreError::Corrupt(format!("vote approval id: {e}")))?,
            approver: name("vote approver", self.approver)?,
            verdict: match self.verdict.as_str() {
                "approve" => crate::Verdict::Approve,
                "deny" => crate::Verdict::Deny,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "vote verdict `{}`",
                        shown(other)
                    )));
                }
            },
            reason: self.reason,
            at: from_us("vote at", self.at)?,
        })
    }
}

/// Why `approval` cannot take a vote at `at`, if it cannot.
pub(crate) fn vote_refusal(approval: &Approval, at: Timestamp) -> Option<StoreError> {
    if approval.state != ApprovalState::Pending {
        return Some(StoreError::InvalidState(format!(
            "approval `{}` is {}",
            approval.id,
            approval.state.as_str()
        )));
    }
    if approval.expires_at <= at {
        return Some(StoreError::InvalidState(format!(
            "approval `{}` has expired",
            approval.id
        )));
    }
    None
}

/// Why a claim cannot be redeemed at `now` for `task_id`, if it cannot.
/// Checked inside the redeeming transaction (after its row is locked), so
/// the answer is the one that holds at commit.
pub(crate) fn claim_refusal(
    claim: &TaskClaim,
    task_id: TaskId,
    now: Timestamp,
) -> Option<StoreError> {
    if claim.used_at.is_some() {
        return Some(StoreError::InvalidState(
            "the claim was already used".into(),
        ));
    }
    if claim.expires_at <= now {
        return Some(StoreError::InvalidState("the claim has expired".into()));
    }
    if claim.task_id != task_id {
        return Some(StoreError::InvalidState(
            "the claim belongs to another task".into(),
        ));
    }
    None
}

/// Why a task cannot start a run at `now`, if it cannot.
pub(crate) fn task_refusal(task: &Task, now: Timestamp) -> Option<StoreError> {
    if !task.is_live() {
        return Some(StoreError::InvalidState(format!(
            "task `{}` has ended",
            task.id
        )));
    }
    if task.expires_at <= now {
        return Some(StoreError::InvalidState(format!(
            "task `{}` has expired",
            task.id
        )));
    }
    None
}

/// Why `run` cannot have its tokens extended to `expires_at` at `now`, if
/// it cannot: checked inside the refreshing transaction.
pub(crate) fn check_refresh(
    run: &Run,
    task: &Task,
    parent: Option<&Run>,
    jkt: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    if !run.is_live_at(now) {
        return Err(StoreError::InvalidState(format!(
            "run `{}` is not live",
            run.id
        )));
    }
    if run.jkt != jkt {
        return Err(StoreError::InvalidState(format!(
            "run `{}` is bound to another key",
            run.id
        )));
    }
    if let Some(refusal) = task_refusal(task, now) {
        return Err(refusal);
    }
    if expires_at > task.expires_at {
        return Err(StoreError::InvalidState(format!(
            "task `{}` ends before the new expiry",
            task.id
        )));
    }
    if run.parent_run_id.is_some() {
        let Some(parent) = parent.filter(|p| p.is_live_at(now)) else {
            return Err(StoreError::InvalidState(format!(
                "the parent of run `{}` is not live",
                run.id
            )));
        };
        if expires_at > parent.expires_at {
            return Err(StoreError::InvalidState(format!(
                "the parent of run `{}` expires before the new expiry",
                run.id
            )));
        }
    }
    Ok(())
}

/// A stored value shown in a message: at most 64 characters.
fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Decodes every row or fails on the first bad one.
pub(crate) fn decode_all<R, T>(
    rows: Vec<R>,
    f: impl Fn(R) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(f).collect()
}

/// The head to chain the next event after: `(0, GENESIS)` on an empty chain.
pub(crate) fn head_or_genesis(head: Option<(i64, Vec<u8>)>) -> Result<(u64, Hash), StoreError> {
    match head {
        None => Ok((0, warrant_audit::GENESIS)),
        Some((seq, hash)) => {
            let seq = u64::try_from(seq).map_err(|_| {
                StoreError::Corrupt(format!("audit head sequence `{seq}` is negative"))
            })?;
            Ok((seq, hash32("audit head hash", &hash)?))
        }
    }
}

/// Refuses a "narrowing" of an ended task or one that widens anything:
/// the caller checked already, the store checks again because it is the
/// last line before the change is permanent.
pub(crate) fn check_narrowing(current: &Task, narrower: &Task) -> Result<(), StoreError> {
    if !current.is_live() {
        return Err(StoreError::InvalidState(format!(
            "task `{}` has already ended",
            current.id
        )));
    }
    narrower
        .scope
        .check_narrowing_of(&current.scope)
        .map_err(|e| StoreError::InvalidState(e.to_string()))?;
    if narrower.expires_at > current.expires_at {
        return Err(StoreError::InvalidState(format!(
            "task `{}` cannot be extended past its expiry",
            current.id
        )));
    }
    Ok(())
}

/// The most revocations one call returns.
pub(crate) const MAX_REVOCATIONS: u32 = 1000;

#[derive(sqlx::FromRow)]
pub(crate) struct RevocationRow {
    id: i64,
    kind: String,
    subject_id: String,
    task_id: String,
    reason: String,
    revoked_at: i64,
}

impl RevocationRow {
    pub(crate) fn decode(self) -> Result<crate::Revocation, StoreError> {
        Ok(crate::Revocation {
            id: self.id,
            kind: match self.kind.as_str() {
                "run" => crate::RevocationKind::Run,
                "task" => crate::RevocationKind::Task,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "revocation kind `{}`",
                        shown(other)
                    )));
                }
            },
            subject_id: uuid::Uuid::try_parse(&self.subject_id)
                .map_err(|e| StoreError::Corrupt(format!("revocation subject: {e}")))?,
            task_id: parse("revocation task id", &self.task_id)?,
            reason: self.reason,
            at: from_us("revocation time", self.revoked_at)?,
        })
    }
}
