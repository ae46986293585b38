//! The embedded store: one SQLite file in WAL mode.
//!
//! Commits are durable (`synchronous=FULL`). Every write runs in a
//! `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock up
//! front: the audit append that reads the chain head and inserts the next
//! sequence number can then never interleave with another writer, in this
//! process or another one. Within the process, writers also queue on an
//! async mutex so they wait their turn instead of polling the busy handler.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use tokio::sync::Mutex;
use warrant_audit::{Checkpoint, Event, Hash, NewEvent, RawEvent};
use warrant_core::{Agent, EndReason, Name, Task, TaskId, User};

use crate::common::{
    AgentRow, ApprovalRow, AuditRow, CheckpointRow, ClaimRow, KvRow, LeaseRow, MAX_APPROVALS,
    MAX_AUDIT, MAX_LEASES, MAX_REVOCATIONS, MAX_TASKS, PublicKeyRow, RevocationRow, RunRow,
    TaskRow, UserRow, VoteRow, check_narrowing, check_refresh, claim_refusal, decode_all,
    head_or_genesis, is_fk_violation, is_unique_violation, page, sqlx_error, task_refusal, to_json,
    to_us, violates, vote_refusal,
};
use crate::{
    Approval, ApprovalFilter, ApprovalState, AuditFilter, DecisionWrite, Lease, LeaseFilter,
    LeaseState, PublicKeyRecord, Revocation, Run, RunState, SealedSecret, Store, StoreError,
    TaskClaim, TaskFilter, UsedAssertion, Verdict, Vote,
};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another process's write lock before the
/// store reports itself unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: u32 = 8;

const TASK_COLUMNS: &str = "id, agent, delegator, purpose, ticket, scope, state, end_reason, \
                            end_note, created_at, expires_at, ended_at";

const RUN_COLUMNS: &str =
    "id, task_id, agent, jkt, parent_run_id, depth, state, created_at, expires_at";
const APPROVAL_COLUMNS: &str = "id, task_id, run_id, action, request, request_hash, quorum, policies, reasons, state, created_at, expires_at, decided_at, consumed_at";
const LEASE_COLUMNS: &str = "id, engine, role, task_id, run_id, handle, public, state, issued_at, expires_at, revoke_reason, attempts, last_error, next_attempt_at, revoked_at";
const CLAIM_COLUMNS: &str = "claim_hash, task_id, created_at, expires_at, used_at";

/// The SQLite store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
    /// INVARIANT: every write transaction this process runs holds this lock
    /// from `BEGIN IMMEDIATE` to commit or rollback.
    write: Mutex<()>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date. A new file and its missing parent directories
    /// are created; the file is readable by its owner only.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        create_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot open the sqlite database `{}`: {e}",
                    path.display()
                ))
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(crate::common::migrate_error)?;
        Ok(Self {
            pool,
            path: path.to_owned(),
            write: Mutex::new(()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sqlx_error)
    }
}

/// Creates `path`'s parent directories and, if the file is new, the file
/// itself with mode 0600 (SQLite gives its `-wal` and `-shm` files the
/// same mode).
fn create_file(path: &Path) -> Result<(), StoreError> {
    let io = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot {what} `{}`: {e}", p.display()))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io("create the directory", parent, e))?;
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("create the database file", path, e)),
    }
}

/// Commits on success, rolls back on error, so no early return can leave a
/// half-written change behind.
async fn finish<T>(
    tx: Transaction<'static, Sqlite>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(sqlx_error)?;
            Ok(value)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "sqlite rollback failed");
            }
            Err(e)
        }
    }
}

/// Chains `events` after the current head and inserts them.
///
/// INVARIANT: `conn` is inside a `BEGIN IMMEDIATE` transaction, so it holds
/// the database's write lock: the head read here stays the head until the
/// transaction ends.
async fn append(
    conn: &mut SqliteConnection,
    events: Vec<NewEvent>,
) -> Result<Vec<Event>, StoreError> {
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(sqlx_error)?;
    let (mut seq, mut prev) = head_or_genesis(head)?;
    let mut chained = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let event = event.chain(seq, prev);
        let raw = event.to_raw();
        sqlx::query(
            "INSERT INTO audit_events \
             (seq, time_us, kind, actor, subject, task_id, data, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(raw.seq)
        .bind(raw.time_us)
        .bind(raw.kind)
        .bind(raw.actor)
        .bind(raw.subject)
        .bind(raw.task_id)
        .bind(raw.data)
        .bind(raw.prev_hash)
        .bind(raw.hash)
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
        prev = event.hash;
        chained.push(event);
    }
    Ok(chained)
}

async fn append_one(conn: &mut SqliteConnection, event: NewEvent) -> Result<Event, StoreError> {
    append(conn, vec![event])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("the audit append returned no event".into()))
}

async fn task_in(conn: &mut SqliteConnection, id: TaskId) -> Result<Option<Task>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
    sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .map(TaskRow::decode)
        .transpose()
}

async fn exists(
    conn: &mut SqliteConnection,
    sql: &'static str,
    key: &str,
) -> Result<bool, StoreError> {
    let row: Option<(i64,)> = sqlx::query_as(sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    Ok(row.is_some())
}

async fn create_user_tx(
    conn: &mut SqliteConnection,
    user: &User,
    token_hash: &Hash,
    event: NewEvent,
) -> Result<Event, StoreError> {
    sqlx::query(
        "INSERT INTO users (name, groups, admin, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user.name.as_str())
    .bind(to_json("user groups", &user.groups)?)
    .bind(user.admin)
    .bind(token_hash.as_slice())
    .bind(to_us(user.created_at))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) && violates(&e, "token_hash") {
            StoreError::Conflict("a user with this api token".into())
        } else if is_unique_violation(&e) {
            StoreError::Conflict(format!("user `{}`", user.name))
        } else {
            sqlx_error(e)
        }
    })?;
    append_one(conn, event).await
}

async fn create_agent_tx(
    conn: &mut SqliteConnection,
    agent: &Agent,
    event: NewEvent,
) -> Result<Event, StoreError> {
    sqlx::query(
        "INSERT INTO agents (name, tier, owner, description, source, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(agent.name.as_str())
    .bind(agent.tier.as_str())
    .bind(agent.owner.as_ref().map(Name::as_str))
    .bind(agent.description.as_str())
    .bind(agent.source.as_str())
    .bind(to_us(agent.created_at))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("agent `{}`", agent.name))
        } else {
            sqlx_error(e)
        }
    })?;
    append_one(conn, event).await
}

async fn update_agent_tx(
    conn: &mut SqliteConnection,
    agent: &Agent,
    event: NewEvent,
) -> Result<Event, StoreError> {
    let done = sqlx::query(
        "UPDATE agents SET tier = $2, owner = $3, description = $4, source = $5 WHERE name = $1",
    )
    .bind(agent.name.as_str())
    .bind(agent.tier.as_str())
    .bind(agent.owner.as_ref().map(Name::as_str))
    .bind(agent.description.as_str())
    .bind(agent.source.as_str())
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("agent `{}`", agent.name)));
    }
    append_one(conn, event).await
}

async fn create_task_tx(
    conn: &mut SqliteConnection,
    task: &Task,
    claim: Option<&TaskClaim>,
    event: NewEvent,
) -> Result<Event, StoreError> {
    // Checked first so the error names what is missing; the foreign keys
    // stay as the backstop.
    if !exists(
        conn,
        "SELECT 1 FROM agents WHERE name = $1",
        task.agent.as_str(),
    )
    .await?
    {
        return Err(StoreError::NotFound(format!("agent `{}`", task.agent)));
    }
    if !exists(
        conn,
        "SELECT 1 FROM users WHERE name = $1",
        task.delegator.as_str(),
    )
    .await?
    {
        return Err(StoreError::NotFound(format!("user `{}`", task.delegator)));
    }
    sqlx::query(
        "INSERT INTO tasks (id, agent, delegator, purpose, ticket, scope, state, end_reason, \
         end_note, created_at, expires_at, ended_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(task.id.to_string())
    .bind(task.agent.as_str())
    .bind(task.delegator.as_str())
    .bind(task.purpose.as_str())
    .bind(task.ticket.as_deref())
    .bind(to_json("task scope", &task.scope)?)
    .bind(task.state.as_str())
    .bind(task.end_reason.map(EndReason::as_str))
    .bind(task.end_note.as_deref())
    .bind(to_us(task.created_at))
    .bind(to_us(task.expires_at))
    .bind(task.ended_at.map(to_us))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("task `{}`", task.id))
        } else if is_fk_violation(&e) {
            StoreError::NotFound(format!(
                "agent `{}` or user `{}`",
                task.agent, task.delegator
            ))
        } else {
            sqlx_error(e)
        }
    })?;
    if let Some(claim) = claim {
        if claim.task_id != task.id {
            return Err(StoreError::InvalidState(
                "the claim belongs to another task".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO task_claims (claim_hash, task_id, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(claim.hash.as_slice())
        .bind(task.id.to_string())
        .bind(to_us(claim.created_at))
        .bind(to_us(claim.expires_at))
        .bind(claim.used_at.map(to_us))
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("a claim with this hash".into())
            } else {
                sqlx_error(e)
            }
        })?;
    }
    append_one(conn, event).await
}

async fn end_task_tx(
    conn: &mut SqliteConnection,
    id: TaskId,
    reason: EndReason,
    note: Option<&str>,
    at: Timestamp,
    event: NewEvent,
) -> Result<(Task, Event), StoreError> {
    let Some(task) = task_in(conn, id).await? else {
        return Err(StoreError::NotFound(format!("task `{id}`")));
    };
    if !task.is_live() {
        return Err(StoreError::InvalidState(format!(
            "task `{id}` has already ended"
        )));
    }
    sqlx::query(
        "UPDATE tasks SET state = 'ended', end_reason = $2, end_note = $3, ended_at = $4 \
         WHERE id = $1 AND state <> 'ended'",
    )
    .bind(id.to_string())
    .bind(reason.as_str())
    .bind(note)
    .bind(to_us(at))
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?;
    let event = append_one(conn, event).await?;
    // INVARIANT: after the audit append (which serializes writers), so
    // revocation ids become visible in order. One row per live run, then
    // one for the task.
    sqlx::query(
        "INSERT INTO revocations (kind, subject_id, task_id, reason, revoked_at) \
         SELECT 'run', id, task_id, $2, $3 FROM runs WHERE task_id = $1 AND state = 'live' \
         ORDER BY created_at, id",
    )
    .bind(id.to_string())
    .bind(reason.as_str())
    .bind(to_us(at))
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?;
    // INVARIANT: a run never outlives its task's end: its tokens are
    // refused from this commit on.
    // An approval dies with its task: nothing may be done under it after.
    sqlx::query(
        "UPDATE approvals SET state = 'revoked', decided_at = $2 \
         WHERE task_id = $1 AND state IN ('pending', 'approved')",
    )
    .bind(id.to_string())
    .bind(to_us(at))
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?;
    sqlx::query("UPDATE runs SET state = 'revoked' WHERE task_id = $1 AND state = 'live'")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    sqlx::query(
        "INSERT INTO revocations (kind, subject_id, task_id, reason, revoked_at) \
         VALUES ('task', $1, $1, $2, $3)",
    )
    .bind(id.to_string())
    .bind(reason.as_str())
    .bind(to_us(at))
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?;
    let task = task_in(conn, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("task `{id}` vanished while ending it")))?;
    Ok((task, event))
}

async fn revoke_run_tx(
    conn: &mut SqliteConnection,
    id: uuid::Uuid,
    reason: &str,
    at: Timestamp,
    event: NewEvent,
) -> Result<(Run, Event), StoreError> {
    // The write transaction (`BEGIN IMMEDIATE`) already keeps the run
    // from changing under us.
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
    let Some(mut run) = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .map(RunRow::decode)
        .transpose()?
    else {
        return Err(StoreError::NotFound(format!("run `{id}`")));
    };
    if run.state != RunState::Live {
        return Err(StoreError::InvalidState(format!(
            "run `{id}` has already been revoked"
        )));
    }
    sqlx::query("UPDATE runs SET state = 'revoked' WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    let event = append_one(conn, event).await?;
    // INVARIANT: after the audit append, as in `end_task_tx`.
    sqlx::query(
        "INSERT INTO revocations (kind, subject_id, task_id, reason, revoked_at) \
         VALUES ('run', $1, $2, $3, $4)",
    )
    .bind(id.to_string())
    .bind(run.task_id.to_string())
    .bind(reason)
    .bind(to_us(at))
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?;
    // Runs delegated from this one, transitively, go with it.
    let mut frontier = vec![id];
    while let Some(parent) = frontier.pop() {
        let children: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM runs WHERE parent_run_id = $1 AND state = 'live'")
                .bind(parent.to_string())
                .fetch_all(&mut *conn)
                .await
                .map_err(sqlx_error)?;
        for (child,) in children {
            sqlx::query("UPDATE runs SET state = 'revoked' WHERE id = $1")
                .bind(child.as_str())
                .execute(&mut *conn)
                .await
                .map_err(sqlx_error)?;
            sqlx::query(
                "INSERT INTO revocations (kind, subject_id, task_id, reason, revoked_at) \
                 VALUES ('run', $1, $2, $3, $4)",
            )
            .bind(child.as_str())
            .bind(run.task_id.to_string())
            .bind(reason)
            .bind(to_us(at))
            .execute(&mut *conn)
            .await
            .map_err(sqlx_error)?;
            frontier.push(
                uuid::Uuid::try_parse(&child)
                    .map_err(|_| StoreError::Corrupt(format!("run id `{child}` is not a uuid")))?,
            );
        }
    }
    run.state = RunState::Revoked;
    Ok((run, event))
}

async fn start_child_run_tx(
    conn: &mut SqliteConnection,
    run: &Run,
    now: Timestamp,
    event: NewEvent,
) -> Result<Event, StoreError> {
    let Some(parent_id) = run.parent_run_id else {
        return Err(StoreError::InvalidState(
            "a delegated run needs a parent run".into(),
        ));
    };
    let Some(task) = task_in(conn, run.task_id).await? else {
        return Err(StoreError::NotFound(format!("task `{}`", run.task_id)));
    };
    if !task.is_live() || task.expires_at <= now {
        return Err(StoreError::InvalidState(format!(
            "task `{}` has ended",
            task.id
        )));
    }
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
    let Some(parent) = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
        .bind(parent_id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .map(RunRow::decode)
        .transpose()?
    else {
        return Err(StoreError::NotFound(format!("run `{parent_id}`")));
    };
    if !parent.is_live_at(now) || parent.task_id != run.task_id {
        return Err(StoreError::InvalidState(format!(
            "run `{parent_id}` is not live"
        )));
    }
    sqlx::query(
        "INSERT INTO runs (id, task_id, agent, jkt, parent_run_id, depth, state, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(run.id.to_string())
    .bind(run.task_id.to_string())
    .bind(run.agent.as_str())
    .bind(run.jkt.as_str())
    .bind(parent_id.to_string())
    .bind(i64::from(run.depth))
    .bind(run.state.as_str())
    .bind(to_us(run.created_at))
    .bind(to_us(run.expires_at))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("run `{}`", run.id))
        } else {
            sqlx_error(e)
        }
    })?;
    append_one(conn, event).await
}

/// Records a spent workload assertion; `Conflict` when it was spent before.
/// Forgets assertions that have expired (they can no longer be presented).
async fn spend_assertion_tx(
    conn: &mut SqliteConnection,
    assertion: &UsedAssertion,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM used_assertions WHERE expires_at < $1")
        .bind(to_us(now))
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    sqlx::query("INSERT INTO used_assertions (issuer, jti, expires_at) VALUES ($1, $2, $3)")
        .bind(assertion.issuer.as_str())
        .bind(assertion.jti.as_str())
        .bind(to_us(assertion.expires_at))
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("a run started by this workload token".into())
            } else {
                sqlx_error(e)
            }
        })?;
    Ok(())
}

async fn link_identity_tx(
    conn: &mut SqliteConnection,
    user: &User,
    issuer: &str,
    subject: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO user_identities (issuer, subject, user_name, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(issuer)
    .bind(subject)
    .bind(user.name.as_str())
    .bind(to_us(user.created_at))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict("a user linked to this identity".into())
        } else {
            sqlx_error(e)
        }
    })?;
    Ok(())
}

async fn run_in(conn: &mut SqliteConnection, id: uuid::Uuid) -> Result<Option<Run>, StoreError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
    sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .map(RunRow::decode)
        .transpose()
}

async fn refresh_run_tx(
    conn: &mut SqliteConnection,
    id: uuid::Uuid,
    jkt: &str,
    expires_at: Timestamp,
    now: Timestamp,
    event: NewEvent,
) -> Result<Run, StoreError> {
    let Some(run) = run_in(conn, id).await? else {
        return Err(StoreError::NotFound(format!("run `{id}`")));
    };
    let Some(task) = task_in(conn, run.task_id).await? else {
        return Err(StoreError::NotFound(format!("task `{}`", run.task_id)));
    };
    let parent = match run.parent_run_id {
        Some(parent) => run_in(conn, parent).await?,
        None => None,
    };
    check_refresh(&run, &task, parent.as_ref(), jkt, expires_at, now)?;
    sqlx::query("UPDATE runs SET expires_at = $2 WHERE id = $1 AND expires_at < $2")
        .bind(id.to_string())
        .bind(to_us(expires_at))
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    append_one(conn, event).await?;
    run_in(conn, id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("run `{id}` vanished")))
}

async fn record_decision_tx(
    conn: &mut SqliteConnection,
    write: &DecisionWrite<'_>,
    event: NewEvent,
) -> Result<Event, StoreError> {
    let DecisionWrite {
        run_id,
        task_id,
        marks,
        approval,
        consume,
        at,
    } = *write;
    if approval.is_some() || consume.is_some() {
        // Lock order as every writer: the task row first, so ending the
        // task (which revokes its approvals) and this never deadlock.
        sqlx::query("SELECT id FROM tasks WHERE id = $1")
            .bind(task_id.to_string())
            .execute(&mut *conn)
            .await
            .map_err(sqlx_error)?;
    }
    if let Some(id) = consume {
        let used = sqlx::query(
            "UPDATE approvals SET state = 'consumed', consumed_at = $2 \
             WHERE id = $1 AND run_id = $3 AND state = 'approved' AND expires_at > $2",
        )
        .bind(id.to_string())
        .bind(to_us(at))
        .bind(run_id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .rows_affected();
        if used != 1 {
            return Err(StoreError::InvalidState(format!(
                "approval `{id}` is not approved for this run any more"
            )));
        }
    }
    for mark in marks {
        sqlx::query("INSERT INTO run_marks (run_id, mark, at) VALUES ($1, $2, $3) ON CONFLICT (run_id, mark) DO NOTHING")
            .bind(run_id.to_string())
            .bind(mark.as_str())
            .bind(to_us(at))
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                if is_fk_violation(&e) {
                    StoreError::NotFound(format!("run `{run_id}`"))
                } else {
                    sqlx_error(e)
                }
            })?;
    }
    if let Some(approval) = approval {
        sqlx::query(
            "INSERT INTO approvals (id, task_id, run_id, action, request, request_hash, quorum, \
             policies, reasons, state, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(approval.id.to_string())
        .bind(approval.task_id.to_string())
        .bind(approval.run_id.to_string())
        .bind(approval.action.as_str())
        .bind(to_json("approval request", &approval.request)?)
        .bind(approval.request_hash.as_slice())
        .bind(i64::from(approval.quorum))
        .bind(to_json("approval policies", &approval.policies)?)
        .bind(to_json("approval reasons", &approval.reasons)?)
        .bind(approval.state.as_str())
        .bind(to_us(approval.created_at))
        .bind(to_us(approval.expires_at))
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("approval `{}`", approval.id))
            } else if is_fk_violation(&e) {
                StoreError::NotFound(format!("run `{}` or its task", approval.run_id))
            } else {
                sqlx_error(e)
            }
        })?;
    }
    append_one(conn, event).await
}

async fn approval_in(
    conn: &mut SqliteConnection,
    id: uuid::Uuid,
    lock: bool,
) -> Result<Option<Approval>, StoreError> {
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1");
    // Inside `BEGIN IMMEDIATE` the write lock already keeps it still.
    let _ = lock;
    sqlx::query_as::<_, ApprovalRow>(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .map(ApprovalRow::decode)
        .transpose()
}

async fn vote_approval_tx(
    conn: &mut SqliteConnection,
    vote: &Vote,
    event: &(dyn for<'a> Fn(&'a Approval) -> NewEvent + Send + Sync + '_),
) -> Result<Approval, StoreError> {
    let id = vote.approval_id;
    let Some(unlocked) = approval_in(conn, id, false).await? else {
        return Err(StoreError::NotFound(format!("approval `{id}`")));
    };
    // Lock order: task row, then the approval, then the audit head.
    sqlx::query("SELECT id FROM tasks WHERE id = $1")
        .bind(unlocked.task_id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    let Some(approval) = approval_in(conn, id, true).await? else {
        return Err(StoreError::NotFound(format!("approval `{id}`")));
    };
    if let Some(refusal) = vote_refusal(&approval, vote.at) {
        return Err(refusal);
    }
    sqlx::query(
        "INSERT INTO approval_votes (approval_id, approver, verdict, reason, at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.to_string())
    .bind(vote.approver.as_str())
    .bind(vote.verdict.as_str())
    .bind(vote.reason.as_str())
    .bind(to_us(vote.at))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("a vote by `{}` on approval `{id}`", vote.approver))
        } else if is_fk_violation(&e) {
            StoreError::NotFound(format!("user `{}`", vote.approver))
        } else {
            sqlx_error(e)
        }
    })?;
    let new_state = match vote.verdict {
        Verdict::Deny => Some(ApprovalState::Denied),
        Verdict::Approve => {
            let approvals: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM approval_votes WHERE approval_id = $1 AND verdict = 'approve'",
            )
            .bind(id.to_string())
            .fetch_one(&mut *conn)
            .await
            .map_err(sqlx_error)?;
            (approvals >= i64::from(approval.quorum)).then_some(ApprovalState::Approved)
        }
    };
    if let Some(state) = new_state {
        sqlx::query("UPDATE approvals SET state = $2, decided_at = $3 WHERE id = $1")
            .bind(id.to_string())
            .bind(state.as_str())
            .bind(to_us(vote.at))
            .execute(&mut *conn)
            .await
            .map_err(sqlx_error)?;
    }
    let now = approval_in(conn, id, false)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("approval `{id}` vanished")))?;
    append_one(conn, event(&now)).await?;
    Ok(now)
}

async fn expire_approvals_tx(
    conn: &mut SqliteConnection,
    now: Timestamp,
    limit: u32,
    event: &(dyn Fn(&Approval) -> NewEvent + Send + Sync + '_),
) -> Result<Vec<Approval>, StoreError> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals \
         WHERE state IN ('pending', 'approved') AND expires_at <= $1 \
         ORDER BY expires_at, id LIMIT $2"
    );
    let due = sqlx::query_as::<_, ApprovalRow>(sqlx::AssertSqlSafe(sql))
        .bind(to_us(now))
        .bind(i64::from(limit.min(MAX_APPROVALS)))
        .fetch_all(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    let mut expired = Vec::with_capacity(due.len());
    for row in due {
        let mut approval = row.decode()?;
        sqlx::query("UPDATE approvals SET state = 'expired', decided_at = $2 WHERE id = $1")
            .bind(approval.id.to_string())
            .bind(to_us(now))
            .execute(&mut *conn)
            .await
            .map_err(sqlx_error)?;
        approval.state = ApprovalState::Expired;
        approval.decided_at = Some(now);
        append_one(conn, event(&approval)).await?;
        expired.push(approval);
    }
    Ok(expired)
}

async fn lease_in(
    conn: &mut SqliteConnection,
    id: uuid::Uuid,
    lock: bool,
) -> Result<Option<Lease>, StoreError> {
    // Inside `BEGIN IMMEDIATE` the write lock already keeps it still.
    let _ = lock;
    let sql = format!("SELECT {LEASE_COLUMNS} FROM leases WHERE id = $1");
    sqlx::query_as::<_, LeaseRow>(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .map(LeaseRow::decode)
        .transpose()
}

async fn create_lease_tx(
    conn: &mut SqliteConnection,
    lease: &Lease,
    event: NewEvent,
) -> Result<(), StoreError> {
    // Lock order as every writer: the task row, then the run.
    let Some(task) = task_in(conn, lease.task_id).await? else {
        return Err(StoreError::NotFound(format!("task `{}`", lease.task_id)));
    };
    if let Some(refusal) = task_refusal(&task, lease.issued_at) {
        return Err(refusal);
    }
    let run = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"
    )))
    .bind(lease.run_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(sqlx_error)?
    .map(RunRow::decode)
    .transpose()?;
    let Some(run) = run else {
        return Err(StoreError::NotFound(format!("run `{}`", lease.run_id)));
    };
    if run.state != RunState::Live || run.task_id != lease.task_id {
        return Err(StoreError::InvalidState(format!(
            "run `{}` is not live",
            run.id
        )));
    }
    sqlx::query(
        "INSERT INTO leases (id, engine, role, task_id, run_id, handle, public, state, issued_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'issuing', $8, $9)",
    )
    .bind(lease.id.to_string())
    .bind(lease.engine.as_str())
    .bind(lease.role.as_str())
    .bind(lease.task_id.to_string())
    .bind(lease.run_id.to_string())
    .bind(to_json("lease handle", &lease.handle)?)
    .bind(to_json("lease public", &lease.public)?)
    .bind(to_us(lease.issued_at))
    .bind(to_us(lease.expires_at))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("lease `{}`", lease.id))
        } else {
            sqlx_error(e)
        }
    })?;
    append_one(conn, event).await?;
    Ok(())
}

async fn activate_lease_tx(
    conn: &mut SqliteConnection,
    id: uuid::Uuid,
    public: &serde_json::Value,
    expires_at: Timestamp,
    event: NewEvent,
) -> Result<Lease, StoreError> {
    let Some(unlocked) = lease_in(conn, id, false).await? else {
        return Err(StoreError::NotFound(format!("lease `{id}`")));
    };
    let Some(task) = task_in(conn, unlocked.task_id).await? else {
        return Err(StoreError::NotFound(format!("task `{}`", unlocked.task_id)));
    };
    let run_live: Option<String> = sqlx::query_scalar("SELECT state FROM runs WHERE id = $1")
        .bind(unlocked.run_id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    let Some(lease) = lease_in(conn, id, true).await? else {
        return Err(StoreError::NotFound(format!("lease `{id}`")));
    };
    if lease.state != LeaseState::Issuing || !task.is_live() || run_live.as_deref() != Some("live")
    {
        return Err(StoreError::InvalidState(format!(
            "lease `{id}` can no longer be activated"
        )));
    }
    sqlx::query("UPDATE leases SET state = 'active', public = $2, expires_at = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(to_json("lease public", public)?)
        .bind(to_us(expires_at.min(lease.expires_at)))
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    append_one(conn, event).await?;
    lease_in(conn, id, false)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("lease `{id}` vanished")))
}

async fn narrow_task_tx(
    conn: &mut SqliteConnection,
    task: &Task,
    event: NewEvent,
) -> Result<Event, StoreError> {
    let Some(current) = task_in(conn, task.id).await? else {
        return Err(StoreError::NotFound(format!("task `{}`", task.id)));
    };
    check_narrowing(&current, task)?;
    sqlx::query("UPDATE tasks SET scope = $2, expires_at = $3 WHERE id = $1")
        .bind(task.id.to_string())
        .bind(to_json("task scope", &task.scope)?)
        .bind(to_us(task.expires_at))
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    append_one(conn, event).await
}

/// The claim with this hash. Inside a `BEGIN IMMEDIATE` transaction the
/// write lock already keeps it from changing, so there is no row lock.
async fn claim_in(
    conn: &mut SqliteConnection,
    hash: &Hash,
    _lock: bool,
) -> Result<Option<TaskClaim>, StoreError> {
    let sql = format!("SELECT {CLAIM_COLUMNS} FROM task_claims WHERE claim_hash = $1");
    sqlx::query_as::<_, ClaimRow>(sqlx::AssertSqlSafe(sql))
        .bind(hash.as_slice())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .map(ClaimRow::decode)
        .transpose()
}

/// INVARIANT: the claim row is locked first (a concurrent redeemer waits
/// here and then sees `used_at` set), then the task row, then the audit
/// head, the same order every other writer takes them in.
/// With `hash: None` (the jwt-bearer grant) there is no claim: only the
/// task checks, its activation, the run and the event.
async fn redeem_claim_tx(
    conn: &mut SqliteConnection,
    hash: Option<&Hash>,
    run: &Run,
    now: Timestamp,
    event: NewEvent,
) -> Result<(Task, Event), StoreError> {
    if let Some(hash) = hash {
        let Some(claim) = claim_in(conn, hash, true).await? else {
            return Err(StoreError::NotFound("claim".into()));
        };
        if let Some(refusal) = claim_refusal(&claim, run.task_id, now) {
            return Err(refusal);
        }
    }
    let Some(task) = task_in(conn, run.task_id).await? else {
        return Err(StoreError::NotFound(format!("task `{}`", run.task_id)));
    };
    if let Some(refusal) = task_refusal(&task, now) {
        return Err(refusal);
    }
    if let Some(hash) = hash {
        // Single use even without the lock above: only an unused claim moves.
        let used = sqlx::query(
            "UPDATE task_claims SET used_at = $2 \
             WHERE claim_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(hash.as_slice())
        .bind(to_us(now))
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?
        .rows_affected();
        if used != 1 {
            return Err(StoreError::InvalidState(
                "the claim was already used".into(),
            ));
        }
    }
    sqlx::query("UPDATE tasks SET state = 'active' WHERE id = $1 AND state = 'pending'")
        .bind(run.task_id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    sqlx::query(
        "INSERT INTO runs (id, task_id, agent, jkt, parent_run_id, depth, state, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(run.id.to_string())
    .bind(run.task_id.to_string())
    .bind(run.agent.as_str())
    .bind(run.jkt.as_str())
    .bind(run.parent_run_id.map(|p| p.to_string()))
    .bind(i64::from(run.depth))
    .bind(run.state.as_str())
    .bind(to_us(run.created_at))
    .bind(to_us(run.expires_at))
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("run `{}`", run.id))
        } else if is_fk_violation(&e) {
            StoreError::NotFound(format!("agent `{}` or parent run", run.agent))
        } else {
            sqlx_error(e)
        }
    })?;
    let event = append_one(conn, event).await?;
    let task = task_in(conn, run.task_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("task `{}` vanished", run.task_id)))?;
    Ok((task, event))
}

/// Inserts the key and its event, or nothing when the kid is known.
async fn put_public_key_tx(
    conn: &mut SqliteConnection,
    key: &PublicKeyRecord,
    event: NewEvent,
) -> Result<Option<Event>, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO public_keys (kid, alg, public_key, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kid) DO NOTHING",
    )
    .bind(key.kid.as_str())
    .bind(key.alg.as_str())
    .bind(key.public_key.as_slice())
    .bind(to_us(key.created_at))
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    append_one(conn, event).await.map(Some)
}

async fn rotate_public_key_tx(
    conn: &mut SqliteConnection,
    new: &PublicKeyRecord,
    retire: &[String],
    events: Vec<NewEvent>,
) -> Result<Vec<Event>, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO public_keys (kid, alg, public_key, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kid) DO NOTHING",
    )
    .bind(new.kid.as_str())
    .bind(new.alg.as_str())
    .bind(new.public_key.as_slice())
    .bind(to_us(new.created_at))
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "key `{}` is already recorded",
            new.kid
        )));
    }
    for kid in retire {
        sqlx::query("UPDATE public_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL")
            .bind(to_us(new.created_at))
            .bind(kid.as_str())
            .execute(&mut *conn)
            .await
            .map_err(sqlx_error)?;
    }
    append(conn, events).await
}

async fn put_checkpoint_tx(conn: &mut SqliteConnection, cp: &Checkpoint) -> Result<(), StoreError> {
    let seq = i64::try_from(cp.seq).map_err(|_| {
        StoreError::InvalidState(format!("checkpoint sequence `{}` is too large", cp.seq))
    })?;
    let event: Option<(Vec<u8>,)> = sqlx::query_as("SELECT hash FROM audit_events WHERE seq = $1")
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sqlx_error)?;
    if event.as_ref().map(|(h,)| h.as_slice()) != Some(cp.hash.as_slice()) {
        return Err(StoreError::InvalidState(format!(
            "checkpoint at sequence {} does not match the audit chain",
            cp.seq
        )));
    }
    sqlx::query(
        // A checkpoint already at this seq signed the same hash (checked
        // above against the chain): the head is anchored, keep the first.
        "INSERT INTO audit_checkpoints (seq, hash, time_us, kid, signature) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
    )
    .bind(seq)
    .bind(cp.hash.as_slice())
    .bind(to_us(cp.time))
    .bind(cp.kid.as_str())
    .bind(cp.signature.as_slice())
    .execute(&mut *conn)
    .await
    .map_err(sqlx_error)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(sqlx_error)?;
        Ok(())
    }

    async fn close(&self) {
        // Waits for writers in this process, then for checked-out
        // connections; SQLite checkpoints the WAL as the last one closes.
        let _write = self.write.lock().await;
        self.pool.close().await;
    }

    async fn create_user(
        &self,
        user: &User,
        token_hash: &Hash,
        event: NewEvent,
    ) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = create_user_tx(&mut tx, user, token_hash, event).await;
        finish(tx, result).await
    }

    async fn user_by_name(&self, name: &Name) -> Result<Option<User>, StoreError> {
        sqlx::query_as::<_, UserRow>(
            "SELECT name, groups, admin, created_at FROM users WHERE name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?
        .map(UserRow::decode)
        .transpose()
    }

    async fn user_by_token_hash(&self, token_hash: &Hash) -> Result<Option<User>, StoreError> {
        sqlx::query_as::<_, UserRow>(
            "SELECT name, groups, admin, created_at FROM users WHERE token_hash = $1",
        )
        .bind(token_hash.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?
        .map(UserRow::decode)
        .transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query_as::<_, UserRow>(
            "SELECT name, groups, admin, created_at FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        decode_all(rows, UserRow::decode)
    }

    async fn user_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        sqlx::query_as::<_, UserRow>(
            "SELECT u.name, u.groups, u.admin, u.created_at FROM users u \
             JOIN user_identities i ON i.user_name = u.name \
             WHERE i.issuer = $1 AND i.subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?
        .map(UserRow::decode)
        .transpose()
    }

    async fn provision_user(
        &self,
        user: &User,
        token_hash: &Hash,
        issuer: &str,
        subject: &str,
        event: NewEvent,
    ) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = async {
            let event = create_user_tx(&mut tx, user, token_hash, event).await?;
            link_identity_tx(&mut tx, user, issuer, subject).await?;
            Ok(event)
        }
        .await;
        finish(tx, result).await
    }

    async fn set_user_groups(
        &self,
        name: &Name,
        groups: &[Name],
        event: NewEvent,
    ) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = async {
            let changed = sqlx::query("UPDATE users SET groups = $2 WHERE name = $1")
                .bind(name.as_str())
                .bind(to_json("user groups", &groups)?)
                .execute(&mut *tx)
                .await
                .map_err(sqlx_error)?
                .rows_affected();
            if changed != 1 {
                return Err(StoreError::NotFound(format!("user `{name}`")));
            }
            append_one(&mut tx, event).await
        }
        .await;
        finish(tx, result).await
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(sqlx_error)?;
        Ok(n.unsigned_abs())
    }

    async fn create_agent(&self, agent: &Agent, event: NewEvent) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = create_agent_tx(&mut tx, agent, event).await;
        finish(tx, result).await
    }

    async fn update_agent(&self, agent: &Agent, event: NewEvent) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = update_agent_tx(&mut tx, agent, event).await;
        finish(tx, result).await
    }

    async fn agent_by_name(&self, name: &Name) -> Result<Option<Agent>, StoreError> {
        sqlx::query_as::<_, AgentRow>(
            "SELECT name, tier, owner, description, source, created_at FROM agents WHERE name = $1",
        )
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?
        .map(AgentRow::decode)
        .transpose()
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query_as::<_, AgentRow>(
            "SELECT name, tier, owner, description, source, created_at FROM agents ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        decode_all(rows, AgentRow::decode)
    }

    async fn create_task(&self, task: &Task, event: NewEvent) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = create_task_tx(&mut tx, task, None, event).await;
        finish(tx, result).await
    }

    async fn create_task_with_claim(
        &self,
        task: &Task,
        claim: &TaskClaim,
        event: NewEvent,
    ) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = create_task_tx(&mut tx, task, Some(claim), event).await;
        finish(tx, result).await
    }

    async fn task_claim(&self, hash: &Hash) -> Result<Option<TaskClaim>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(sqlx_error)?;
        claim_in(&mut conn, hash, false).await
    }

    async fn redeem_claim(
        &self,
        hash: &Hash,
        run: &Run,
        now: Timestamp,
        event: NewEvent,
    ) -> Result<(Task, Event), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = redeem_claim_tx(&mut tx, Some(hash), run, now, event).await;
        finish(tx, result).await
    }

    async fn start_run(
        &self,
        run: &Run,
        assertion: Option<&UsedAssertion>,
        now: Timestamp,
        event: NewEvent,
    ) -> Result<(Task, Event), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = async {
            if let Some(assertion) = assertion {
                spend_assertion_tx(&mut tx, assertion, now).await?;
            }
            redeem_claim_tx(&mut tx, None, run, now, event).await
        }
        .await;
        finish(tx, result).await
    }

    async fn refresh_run(
        &self,
        id: uuid::Uuid,
        jkt: &str,
        expires_at: Timestamp,
        now: Timestamp,
        event: NewEvent,
    ) -> Result<Run, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = refresh_run_tx(&mut tx, id, jkt, expires_at, now, event).await;
        finish(tx, result).await
    }

    async fn start_child_run(
        &self,
        run: &Run,
        now: Timestamp,
        event: NewEvent,
    ) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = start_child_run_tx(&mut tx, run, now, event).await;
        finish(tx, result).await
    }

    async fn run_marks(&self, run_id: uuid::Uuid) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar::<_, String>(
            "SELECT mark FROM run_marks WHERE run_id = $1 ORDER BY mark",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)
    }

    async fn record_decision(
        &self,
        write: &DecisionWrite<'_>,
        event: NewEvent,
    ) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = record_decision_tx(&mut tx, write, event).await;
        finish(tx, result).await
    }

    async fn list_approvals(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
        let mut sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE 1 = 1");
        let mut n = 0;
        if filter.state.is_some() {
            n += 1;
            sql.push_str(&format!(" AND state = ${n}"));
        }
        if filter.task_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND task_id = ${n}"));
        }
        sql.push_str(&format!(
            " ORDER BY created_at DESC, id DESC LIMIT ${}",
            n + 1
        ));
        let mut q = sqlx::query_as::<_, ApprovalRow>(sqlx::AssertSqlSafe(sql));
        if let Some(state) = filter.state {
            q = q.bind(state.as_str());
        }
        if let Some(task) = filter.task_id {
            q = q.bind(task.to_string());
        }
        let rows = q
            .bind(page(filter.limit, MAX_APPROVALS))
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        decode_all(rows, ApprovalRow::decode)
    }

    async fn approval_votes(&self, id: uuid::Uuid) -> Result<Vec<Vote>, StoreError> {
        let rows = sqlx::query_as::<_, VoteRow>(
            "SELECT approval_id, approver, verdict, reason, at FROM approval_votes \
             WHERE approval_id = $1 ORDER BY at, approver",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        decode_all(rows, VoteRow::decode)
    }

    async fn vote_approval(
        &self,
        vote: &Vote,
        event: &(dyn for<'a> Fn(&'a Approval) -> NewEvent + Send + Sync),
    ) -> Result<Approval, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = vote_approval_tx(&mut tx, vote, event).await;
        finish(tx, result).await
    }

    async fn expire_approvals(
        &self,
        now: Timestamp,
        limit: u32,
        event: &(dyn for<'a> Fn(&'a Approval) -> NewEvent + Send + Sync),
    ) -> Result<Vec<Approval>, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = expire_approvals_tx(&mut tx, now, limit, event).await;
        finish(tx, result).await
    }

    async fn create_lease(&self, lease: &Lease, event: NewEvent) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = create_lease_tx(&mut tx, lease, event).await;
        finish(tx, result).await
    }

    async fn activate_lease(
        &self,
        id: uuid::Uuid,
        public: &serde_json::Value,
        expires_at: Timestamp,
        event: NewEvent,
    ) -> Result<Lease, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = activate_lease_tx(&mut tx, id, public, expires_at, event).await;
        finish(tx, result).await
    }

    async fn get_lease(&self, id: uuid::Uuid) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(sqlx_error)?;
        lease_in(&mut conn, id, false).await
    }

    async fn list_leases(&self, filter: &LeaseFilter) -> Result<Vec<Lease>, StoreError> {
        let mut sql = format!("SELECT {LEASE_COLUMNS} FROM leases WHERE 1 = 1");
        let mut n = 0;
        if filter.state.is_some() {
            n += 1;
            sql.push_str(&format!(" AND state = ${n}"));
        }
        if filter.task_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND task_id = ${n}"));
        }
        if filter.run_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND run_id = ${n}"));
        }
        sql.push_str(&format!(
            " ORDER BY issued_at DESC, id DESC LIMIT ${}",
            n + 1
        ));
        let mut q = sqlx::query_as::<_, LeaseRow>(sqlx::AssertSqlSafe(sql));
        if let Some(state) = filter.state {
            q = q.bind(state.as_str());
        }
        if let Some(task) = filter.task_id {
            q = q.bind(task.to_string());
        }
        if let Some(run) = filter.run_id {
            q = q.bind(run.to_string());
        }
        let rows = q
            .bind(page(filter.limit, MAX_LEASES))
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        decode_all(rows, LeaseRow::decode)
    }

    async fn request_revoke(
        &self,
        id: uuid::Uuid,
        reason: &str,
        at: Timestamp,
        event: NewEvent,
    ) -> Result<Lease, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = async {
            let Some(lease) = lease_in(&mut tx, id, true).await? else {
                return Err(StoreError::NotFound(format!("lease `{id}`")));
            };
            if !matches!(lease.state, LeaseState::Issuing | LeaseState::Active) {
                return Err(StoreError::InvalidState(format!(
                    "lease `{id}` is {}",
                    lease.state.as_str()
                )));
            }
            sqlx::query(
                "UPDATE leases SET state = 'revoking', revoke_reason = $2, next_attempt_at = $3 \
                 WHERE id = $1",
            )
            .bind(id.to_string())
            .bind(reason)
            .bind(to_us(at))
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?;
            append_one(&mut tx, event).await?;
            lease_in(&mut tx, id, false)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("lease `{id}` vanished")))
        }
        .await;
        finish(tx, result).await
    }

    async fn due_leases(
        &self,
        now: Timestamp,
        stale_issuing: Timestamp,
        limit: u32,
    ) -> Result<Vec<Lease>, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = async {
            // Active leases whose time, task or run is over become due.
            for (reason, sql) in [
                (
                    "expired",
                    "UPDATE leases SET state = 'revoking', revoke_reason = $1, next_attempt_at = $2 \
                     WHERE state = 'active' AND expires_at <= $2",
                ),
                (
                    "task_ended",
                    "UPDATE leases SET state = 'revoking', revoke_reason = $1, next_attempt_at = $2 \
                     WHERE state = 'active' AND task_id IN (SELECT id FROM tasks WHERE state = 'ended')",
                ),
                (
                    "run_ended",
                    "UPDATE leases SET state = 'revoking', revoke_reason = $1, next_attempt_at = $2 \
                     WHERE state = 'active' AND run_id IN (SELECT id FROM runs WHERE state = 'revoked')",
                ),
                (
                    "interrupted",
                    "UPDATE leases SET state = 'revoking', revoke_reason = $1, next_attempt_at = $2 \
                     WHERE state = 'issuing' AND issued_at <= $3",
                ),
            ] {
                sqlx::query(sql)
                    .bind(reason)
                    .bind(to_us(now))
                    .bind(to_us(stale_issuing))
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_error)?;
            }
            let rows = sqlx::query_as::<_, LeaseRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {LEASE_COLUMNS} FROM leases WHERE state = 'revoking' \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
                 ORDER BY next_attempt_at, id LIMIT $2"
            )))
            .bind(to_us(now))
            .bind(i64::from(limit.min(MAX_LEASES)))
            .fetch_all(&mut *tx)
            .await
            .map_err(sqlx_error)?;
            decode_all(rows, LeaseRow::decode)
        }
        .await;
        finish(tx, result).await
    }

    async fn finish_revoke(
        &self,
        id: uuid::Uuid,
        at: Timestamp,
        event: NewEvent,
    ) -> Result<Lease, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = async {
            let changed = sqlx::query(
                "UPDATE leases SET state = 'revoked', revoked_at = $2, next_attempt_at = NULL \
                 WHERE id = $1 AND state IN ('revoking', 'irrevocable', 'issuing', 'active')",
            )
            .bind(id.to_string())
            .bind(to_us(at))
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?
            .rows_affected();
            if changed != 1 {
                return Err(StoreError::InvalidState(format!(
                    "lease `{id}` is not being revoked"
                )));
            }
            append_one(&mut tx, event).await?;
            lease_in(&mut tx, id, false)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("lease `{id}` vanished")))
        }
        .await;
        finish(tx, result).await
    }

    async fn fail_revoke(
        &self,
        id: uuid::Uuid,
        error: &str,
        next_attempt_at: Timestamp,
        irrevocable: bool,
        event: Option<NewEvent>,
    ) -> Result<Lease, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result =
            async {
                let changed = sqlx::query(
                "UPDATE leases SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3, \
                 state = $4 WHERE id = $1 AND state = 'revoking'",
            )
            .bind(id.to_string())
            .bind(error.chars().take(500).collect::<String>())
            .bind(to_us(next_attempt_at))
            .bind(if irrevocable { "irrevocable" } else { "revoking" })
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?
            .rows_affected();
                if changed != 1 {
                    return Err(StoreError::InvalidState(format!(
                        "lease `{id}` is not being revoked"
                    )));
                }
                if let Some(event) = event {
                    append_one(&mut tx, event).await?;
                }
                lease_in(&mut tx, id, false)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("lease `{id}` vanished")))
            }
            .await;
        finish(tx, result).await
    }

    async fn put_kv_secret(
        &self,
        secret: &SealedSecret,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = async {
            sqlx::query(
                "INSERT INTO kv_secrets (engine, name, key_id, nonce, ciphertext, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (engine, name) DO UPDATE SET key_id = excluded.key_id, \
                 nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            )
            .bind(secret.engine.as_str())
            .bind(secret.name.as_str())
            .bind(secret.key_id.as_str())
            .bind(secret.nonce.as_slice())
            .bind(secret.ciphertext.as_slice())
            .bind(to_us(secret.created_at))
            .bind(to_us(secret.updated_at))
            .execute(&mut *tx)
            .await
            .map_err(sqlx_error)?;
            append_one(&mut tx, event).await?;
            Ok(())
        }
        .await;
        finish(tx, result).await
    }

    async fn get_kv_secret(
        &self,
        engine: &str,
        name: &str,
    ) -> Result<Option<SealedSecret>, StoreError> {
        sqlx::query_as::<_, KvRow>(
            "SELECT engine, name, key_id, nonce, ciphertext, created_at, updated_at \
             FROM kv_secrets WHERE engine = $1 AND name = $2",
        )
        .bind(engine)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?
        .map(KvRow::decode)
        .transpose()
    }

    async fn list_kv_secrets(&self, engine: &str) -> Result<Vec<SealedSecret>, StoreError> {
        let rows = sqlx::query_as::<_, KvRow>(
            "SELECT engine, name, key_id, nonce, ciphertext, created_at, updated_at \
             FROM kv_secrets WHERE engine = $1 ORDER BY name",
        )
        .bind(engine)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        decode_all(rows, KvRow::decode)
    }

    async fn get_approval(&self, id: uuid::Uuid) -> Result<Option<Approval>, StoreError> {
        sqlx::query_as::<_, ApprovalRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?
        .map(ApprovalRow::decode)
        .transpose()
    }

    async fn find_approval(
        &self,
        run_id: uuid::Uuid,
        request_hash: &Hash,
        state: ApprovalState,
        now: Timestamp,
    ) -> Result<Option<Approval>, StoreError> {
        sqlx::query_as::<_, ApprovalRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals \
             WHERE run_id = $1 AND request_hash = $2 AND state = $3 AND expires_at > $4 \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(run_id.to_string())
        .bind(request_hash.as_slice())
        .bind(state.as_str())
        .bind(to_us(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?
        .map(ApprovalRow::decode)
        .transpose()
    }

    async fn get_run(&self, id: uuid::Uuid) -> Result<Option<Run>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(sqlx_error)?
            .map(RunRow::decode)
            .transpose()
    }

    async fn task_runs(&self, task_id: TaskId) -> Result<Vec<Run>, StoreError> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE task_id = $1 ORDER BY created_at, id");
        let rows = sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(sql))
            .bind(task_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        decode_all(rows, RunRow::decode)
    }

    async fn revoke_run(
        &self,
        id: uuid::Uuid,
        reason: &str,
        at: Timestamp,
        event: NewEvent,
    ) -> Result<(Run, Event), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = revoke_run_tx(&mut tx, id, reason, at, event).await;
        finish(tx, result).await
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query_as::<_, RevocationRow>(
            "SELECT id, kind, subject_id, task_id, reason, revoked_at \
             FROM revocations WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(page(Some(limit), MAX_REVOCATIONS))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        decode_all(rows, RevocationRow::decode)
    }

    async fn get_task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(sqlx_error)?;
        task_in(&mut conn, id).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR delegator = $2) \
             AND ($3 IS NULL OR agent = $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows = sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql))
            .bind(filter.state.map(|s| s.as_str()))
            .bind(filter.delegator.as_ref().map(Name::as_str))
            .bind(filter.agent.as_ref().map(Name::as_str))
            .bind(page(filter.limit, MAX_TASKS))
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        decode_all(rows, TaskRow::decode)
    }

    async fn end_task(
        &self,
        id: TaskId,
        reason: EndReason,
        note: Option<&str>,
        at: Timestamp,
        event: NewEvent,
    ) -> Result<(Task, Event), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = end_task_tx(&mut tx, id, reason, note, at, event).await;
        finish(tx, result).await
    }

    async fn narrow_task(&self, task: &Task, event: NewEvent) -> Result<Event, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = narrow_task_tx(&mut tx, task, event).await;
        finish(tx, result).await
    }

    async fn expired_tasks(&self, now: Timestamp, limit: u32) -> Result<Vec<Task>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks \
             WHERE state IN ('pending', 'active') AND expires_at <= $1 \
             ORDER BY expires_at, id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_us(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(sqlx_error)?;
        // One row at a time: a corrupt row must not stop expiry for all.
        Ok(TaskRow::decode_each(rows))
    }

    async fn append_audit(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = append(&mut tx, events).await;
        finish(tx, result).await
    }

    async fn audit_head(&self) -> Result<Option<(u64, Hash)>, StoreError> {
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(sqlx_error)?;
        match head {
            None => Ok(None),
            some => head_or_genesis(some).map(Some),
        }
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<Event>, StoreError> {
        let after = i64::try_from(filter.after).unwrap_or(i64::MAX);
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT seq, time_us, kind, actor, subject, task_id, data, prev_hash, hash \
             FROM audit_events WHERE seq > $1 AND ($2 IS NULL OR task_id = $2) \
             AND ($3 IS NULL OR kind = $3) ORDER BY seq LIMIT $4",
        )
        .bind(after)
        .bind(filter.task_id.as_deref())
        .bind(filter.kind.as_deref())
        .bind(page(filter.limit, MAX_AUDIT))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        decode_all(rows, |row| {
            let raw = RawEvent::from(row);
            raw.decode()
                .map_err(|e| StoreError::Corrupt(format!("audit event {}: {e}", raw.seq)))
        })
    }

    async fn raw_audit(&self, after: i64, limit: u32) -> Result<Vec<RawEvent>, StoreError> {
        let rows = sqlx::query_as::<_, AuditRow>(
            "SELECT seq, time_us, kind, actor, subject, task_id, data, prev_hash, hash \
             FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        Ok(rows.into_iter().map(RawEvent::from).collect())
    }

    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = put_checkpoint_tx(&mut tx, checkpoint).await;
        finish(tx, result).await
    }

    async fn list_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query_as::<_, CheckpointRow>(
            "SELECT seq, hash, time_us, kid, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        decode_all(rows, CheckpointRow::decode)
    }

    async fn last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        sqlx::query_as::<_, CheckpointRow>(
            "SELECT seq, hash, time_us, kid, signature FROM audit_checkpoints \
             ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_error)?
        .map(CheckpointRow::decode)
        .transpose()
    }

    async fn put_public_key(
        &self,
        key: &PublicKeyRecord,
        event: NewEvent,
    ) -> Result<Option<Event>, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = put_public_key_tx(&mut tx, key, event).await;
        finish(tx, result).await
    }

    async fn list_public_keys(&self) -> Result<Vec<PublicKeyRecord>, StoreError> {
        let rows = sqlx::query_as::<_, PublicKeyRow>(
            "SELECT kid, alg, public_key, created_at, retired_at FROM public_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_error)?;
        decode_all(rows, PublicKeyRow::decode)
    }

    async fn rotate_public_key(
        &self,
        new: &PublicKeyRecord,
        retire: &[String],
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, StoreError> {
        let _write = self.write.lock().await;
        let mut tx = self.begin().await?;
        let result = rotate_public_key_tx(&mut tx, new, retire, events).await;
        finish(tx, result).await
    }
}
