//! The store conformance suite, run once per backend.
//!
//! Every case in [`conformance`] runs against SQLite (a temp file) and
//! against a real PostgreSQL started by [`pg`]; the test names say which:
//! `sqlite::users_round_trip`, `postgres::users_round_trip`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod pg;

use std::sync::Arc;

use warrant_store::{Store, StoreError};

/// A store under test with what keeps its database alive.
pub struct Db {
    pub store: Arc<dyn Store>,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("warrant.db").display());
        let store = warrant_store::open(&url).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        Self {
            store,
            url,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Self {
        let url = pg::fresh_database().await;
        let store = warrant_store::open(&url).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        Self {
            store,
            url,
            _dir: None,
        }
    }
}

/// Generates `sqlite::<case>` and `postgres::<case>` for every case:
/// `store` cases take the `Arc<dyn Store>`, `db` cases the whole [`Db`]
/// (they open a second store or reach into the database).
macro_rules! conformance {
    (store: [$($case:ident),* $(,)?], db: [$($db_case:ident),* $(,)?] $(,)?) => {
        conformance!(@backend sqlite, sqlite, [$($case),*], [$($db_case),*]);
        conformance!(@backend postgres, postgres, [$($case),*], [$($db_case),*]);
    };
    (@backend $module:ident, $open:ident, [$($case:ident),*], [$($db_case:ident),*]) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::Db::$open().await;
                    crate::conformance::$case(db.store.clone()).await;
                    db.store.close().await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $db_case() {
                    let db = crate::Db::$open().await;
                    crate::conformance::$db_case(&db).await;
                    db.store.close().await;
                }
            )*
        }
    };
}

conformance! {
    store: [
        reports_its_backend_and_answers_ping,
        users_round_trip,
        duplicate_user_is_a_conflict_and_writes_nothing,
        agents_round_trip_and_update,
        duplicate_or_unknown_agent_writes_nothing,
        tasks_round_trip,
        duplicate_task_id_is_a_conflict_and_writes_nothing,
        create_task_with_unknown_agent_or_user_writes_nothing,
        end_task_twice_is_invalid_and_writes_nothing,
        expired_tasks_are_live_tasks_past_expiry,
        text_the_database_refuses_is_rejected_and_writes_nothing,
        list_tasks_filters_and_limits,
        narrow_task_only_narrows,
        audit_chain_of_many_events_verifies,
        list_audit_filters_and_pages,
        checkpoints_and_public_keys_round_trip,
        key_rotation_retires_the_old_key_atomically,
        concurrent_appends_form_one_gapless_chain,
        group_committer_batches_into_one_chain,
        group_committer_fails_every_caller_when_the_store_is_closed,
        closed_store_is_unavailable,
        claims_redeem_once_and_start_a_run,
        concurrent_redemptions_of_one_claim_start_one_run,
        unusable_claims_are_refused_and_write_nothing,
        ending_a_task_revokes_its_runs,
        task_ends_write_revocations_in_order,
        revoking_a_run_leaves_its_task_live,
        child_runs_start_under_a_live_parent_and_are_revoked_with_it,
        a_workload_assertion_starts_one_run,
        refresh_extends_a_live_run_within_its_task_and_parent,
        outside_identities_provision_and_link_users,
        decisions_mark_runs_and_create_approvals,
        approvals_take_votes_reach_quorum_and_are_consumed_once,
        leases_are_recorded_first_and_revoked_when_due,
        kv_secrets_are_stored_sealed,
    ],
    db: [
        two_stores_on_one_database_form_one_chain,
        audit_tables_refuse_update_and_delete,
        failed_audit_append_rolls_back_the_change,
        a_corrupt_task_row_does_not_hide_other_expired_tasks,
    ],
}

#[tokio::test]
async fn open_refuses_unsupported_urls() {
    for url in ["mysql://root@localhost/x", "warrant.db", "", "http://x"] {
        match warrant_store::open(url).await {
            Err(StoreError::Config(msg)) => {
                assert!(
                    msg.contains("sqlite://") && msg.contains("postgres://"),
                    "{msg}"
                )
            }
            other => panic!("{url}: expected a configuration error, got {other:?}"),
        }
    }
    for url in [
        "sqlite:",
        "sqlite://",
        "sqlite::memory:",
        "sqlite://x.db?mode=rwc",
    ] {
        assert!(
            matches!(warrant_store::open(url).await, Err(StoreError::Config(_))),
            "{url}"
        );
    }
}

#[tokio::test]
async fn unsupported_url_error_does_not_echo_secrets() {
    let err = warrant_store::open("redis://user:hunter2@host/0")
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_without_the_password() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://warrant:hunter2@127.0.0.1:{port}/warrant");
    match warrant_store::open(&url).await {
        Err(StoreError::Unavailable(msg)) => {
            assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_open_creates_parent_dirs_and_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/warrant.db");
    // `sqlite:` without slashes, relative to nothing in particular: absolute here.
    let store = warrant_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    store.close().await;
    let meta = std::fs::metadata(&path).unwrap();
    assert!(meta.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    // Re-opening an existing database applies no migration twice.
    let store = warrant_store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.count_users().await.unwrap(), 0);
    store.close().await;
}
