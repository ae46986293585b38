//! Regression tests for the defects a security review found: each test is
//! named after what broke.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warrant_core::{FakeClock, Name, SystemClock, Tier};
use warrant_server::config::ConfigAgent;
use warrant_server::workers::reap_once;
use warrant_server::{BootstrapError, ServerError, bootstrap};

use crate::support::{Server, TestApp, options};

/// Runs one statement on the test app's SQLite file through a connection
/// of its own, bypassing the store.
async fn raw_sql(app: &TestApp, sql: &str) -> u64 {
    let url = format!("sqlite://{}", app.dir.path().join("warrant.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    done.rows_affected()
}

// PostgreSQL cannot store NUL in TEXT: a NUL in `purpose` answered 503 there
// and was stored on SQLite. Every free-text field now refuses control
// characters (but line feed and tab) on either backend, before the store.
#[tokio::test]
async fn nul_and_control_characters_in_free_text_are_invalid_body() {
    let app = TestApp::start(Arc::new(SystemClock)).await;
    let alice = app.add_user("alice", false).await;
    app.add_agent("claude-code").await;
    let task = app.add_task(&alice, "claude-code", "30m").await;
    let id = task["id"].as_str().unwrap();
    let before = app.snapshot().await;

    for bad in ["a\u{0}b", "a\rb", "\u{1b}[31mred", "a\u{7f}"] {
        let bodies = [
            (
                "/v1/tasks".to_owned(),
                json!({"agent": "claude-code", "purpose": bad, "ttl": "30m"}),
            ),
            (
                "/v1/tasks".to_owned(),
                json!({"agent": "claude-code", "purpose": "ok", "ticket": bad}),
            ),
            (format!("/v1/tasks/{id}/end"), json!({"note": bad})),
        ];
        for (path, body) in bodies {
            let r = app.post(&alice, &path, body.clone()).await;
            r.assert_problem(422, "invalid_body");
            assert!(
                r.detail().contains("control character"),
                "{body}: {}",
                r.text
            );
        }
        app.post(
            &app.admin,
            "/v1/agents",
            json!({"name": "bot", "tier": "propose", "description": bad}),
        )
        .await
        .assert_problem(422, "invalid_body");
    }
    // Line feeds and tabs are text.
    app.post(
        &alice,
        "/v1/tasks",
        json!({"agent": "claude-code", "purpose": "line 1\nline 2\tend", "ttl": "30m"}),
    )
    .await
    .assert_ok(201);
    let mut after = app.snapshot().await;
    after.tasks = before.tasks.clone();
    assert_eq!(after.users, before.users);
    assert_eq!(after.agents, before.agents);
    app.stop().await;
}

// The audit `kind` filter reached the store unchecked (a NUL there made
// PostgreSQL fail the query, answered as 503).
#[tokio::test]
async fn a_control_character_in_the_audit_kind_filter_is_invalid_query() {
    let app = TestApp::start(Arc::new(SystemClock)).await;
    for kind in ["a%00b", "task.created%0D", "%1B"] {
        app.get(&app.admin, &format!("/v1/audit?kind={kind}"))
            .await
            .assert_problem(400, "invalid_query");
    }
    app.get(&app.admin, "/v1/audit?kind=task.created")
        .await
        .assert_ok(200);
    app.stop().await;
}

async fn expired_task_app() -> (TestApp, Arc<FakeClock>, String, String) {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let app = TestApp::start(clock.clone()).await;
    let alice = app.add_user("alice", false).await;
    app.add_agent("claude-code").await;
    let task = app.add_task(&alice, "claude-code", "10m").await;
    let id = task["id"].as_str().unwrap().to_owned();
    // Past expiry; the reaper has not run.
    clock.advance(SignedDuration::from_mins(11));
    (app, clock, alice, id)
}

// A task past `expires_at` that the reaper had not reached yet could still
// be narrowed: it is over, so narrowing it is `task_ended`.
#[tokio::test]
async fn an_expired_unreaped_task_cannot_be_narrowed() {
    let (app, _clock, alice, id) = expired_task_app().await;
    let before = app.snapshot().await;
    let r = app
        .post(
            &alice,
            &format!("/v1/tasks/{id}/narrow"),
            json!({"scope": {"repos": ["acme/api"]}}),
        )
        .await;
    r.assert_problem(409, "task_ended");
    assert!(r.detail().contains("expired at"), "{}", r.text);
    assert_eq!(app.snapshot().await, before);
    app.stop().await;
}

// Ending an expired, unreaped task recorded `completed`, hiding that the
// task ran out: the reason is `expired`.
#[tokio::test]
async fn ending_an_expired_unreaped_task_records_expired() {
    let (app, _clock, alice, id) = expired_task_app().await;
    let r = app
        .post(
            &alice,
            &format!("/v1/tasks/{id}/end"),
            json!({"note": "done"}),
        )
        .await;
    let ended = r.assert_ok(200);
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["end_reason"], "expired");
    let events = app.audit_events().await;
    let end = events.iter().find(|e| e["kind"] == "task.ended").unwrap();
    assert_eq!(end["data"]["reason"], "expired");
    assert_eq!(end["actor"], "user:alice");
    app.stop().await;
}

// Two narrows racing on one live task: the loser was refused by the store
// and answered `task_ended` although the task was live. It must get the
// scope error instead (and never `task_ended`).
#[tokio::test]
async fn a_narrow_losing_a_race_on_a_live_task_is_invalid_scope_not_task_ended() {
    let app = TestApp::start(Arc::new(SystemClock)).await;
    let alice = app.add_user("alice", false).await;
    app.add_agent("claude-code").await;
    for _ in 0..10 {
        let task = app.add_task(&alice, "claude-code", "30m").await;
        let path = format!("/v1/tasks/{}/narrow", task["id"].as_str().unwrap());
        let (a, b) = tokio::join!(
            app.post(&alice, &path, json!({"scope": {"repos": ["acme/api"]}})),
            app.post(&alice, &path, json!({"scope": {"repos": ["acme/web"]}})),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 422], "{} / {}", a.text, b.text);
        for r in [a, b] {
            if r.status == 422 {
                r.assert_problem(422, "invalid_scope");
            }
        }
    }
    app.stop().await;
}

// One task row that cannot be decoded (always first by expires_at) failed
// the whole batch and stopped every other task from expiring.
#[tokio::test]
async fn a_corrupt_task_row_does_not_stop_the_reaper() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let app = TestApp::start(clock.clone()).await;
    let alice = app.add_user("alice", false).await;
    app.add_agent("claude-code").await;
    let corrupt = app.add_task(&alice, "claude-code", "1m").await;
    let good = app.add_task(&alice, "claude-code", "2m").await;
    let changed = raw_sql(
        &app,
        &format!(
            "UPDATE tasks SET scope = '{{not json' WHERE id = '{}'",
            corrupt["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(changed, 1);
    clock.advance(SignedDuration::from_mins(5));

    assert_eq!(reap_once(&app.state).await.unwrap(), 1);
    let good = app
        .get(
            &alice,
            &format!("/v1/tasks/{}", good["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(good.assert_ok(200)["end_reason"], "expired");
    // Later passes keep working and do not loop on the bad row.
    assert_eq!(reap_once(&app.state).await.unwrap(), 0);
    app.stop().await;
}

// Two first starts against one database both saw no users: the loser
// truncated `admin.token` and deleted it when its user creation failed, so
// an admin could exist whose token nobody had. A config agent created by
// the winner made the loser's start fail with a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_starts_leave_one_admin_whose_token_is_on_disk() {
    let agents = vec![ConfigAgent {
        name: Name::parse("name", "claude-code").unwrap(),
        tier: Tier::Propose,
        owner: None,
        description: "from config".into(),
    }];
    for _ in 0..5 {
        let shared = tempfile::tempdir().unwrap();
        let store = crate::support::open_store(shared.path()).await;
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let starts: Vec<_> = dirs
            .iter()
            .map(|dir| {
                let store = store.clone();
                let dir = dir.path().to_owned();
                let agents = agents.clone();
                tokio::spawn(
                    async move { bootstrap::run(&*store, &SystemClock, &dir, &agents).await },
                )
            })
            .collect();
        let mut written = Vec::new();
        for start in starts {
            let boot = start.await.unwrap().expect("both first starts succeed");
            written.extend(boot.admin_token_file);
        }
        assert_eq!(written.len(), 1, "exactly one start wrote the token");
        let token = std::fs::read_to_string(&written[0]).unwrap();
        let owner = store
            .user_by_token_hash(&warrant_crypto::hash_api_token(token.trim_end()))
            .await
            .unwrap()
            .expect("the token on disk is the admin's");
        assert_eq!(owner.name.as_str(), "admin");
        assert_eq!(store.count_users().await.unwrap(), 1);
        for dir in &dirs {
            let names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                names
                    .iter()
                    .all(|n| n == "signing.key" || n == "admin.token"),
                "temp files left behind: {names:?}"
            );
        }
        assert_eq!(store.list_agents().await.unwrap().len(), 1);
        store.close().await;
    }
}

// A pre-existing data directory open to group/others was used as is,
// exposing the signing key's and admin token's directory.
#[tokio::test]
async fn a_data_dir_open_to_others_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Server::start_with(options(&dir)).await.err().unwrap();
    assert!(
        matches!(
            err,
            ServerError::Bootstrap(BootstrapError::DataDirNotPrivate { mode: 0o755, .. })
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("chmod 700 {}", dir.display())),
        "{msg}"
    );
    // Refused before anything was written into it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let s = Server::start_with(options(&dir)).await.unwrap();
    s.stop().await.unwrap();
}

/// A config file setting `[server]` options, and the data dir beside it.
fn server_config(root: &std::path::Path, server: &str) -> warrant_server::ServeOptions {
    let config = root.join("warrant.toml");
    std::fs::write(&config, format!("[server]\n{server}\n")).unwrap();
    let mut opts = options(&root.join("data"));
    opts.config_file = Some(config);
    opts
}

/// Sends a request whose body never arrives in full, and leaves the
/// connection open: a stalled client.
async fn stall(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.ready.addr).await.unwrap();
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: warrant\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"agent\"",
        server.admin
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

// Graceful shutdown had no deadline: one stalled client kept SIGTERM from
// ever finishing, and the `server.stopped` event and final checkpoint were
// lost when the process was killed.
#[tokio::test]
async fn a_stalled_client_does_not_block_shutdown() {
    let root = tempfile::tempdir().unwrap();
    let opts = server_config(
        root.path(),
        "shutdown_grace = \"1s\"\nrequest_timeout = \"1h\"",
    );
    let s = Server::start_with(opts).await.unwrap();
    let _stalled = stall(&s).await;
    // Let the server read the request head, so the request is in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Generous: only a hang fails this.
    tokio::time::timeout(Duration::from_secs(60), s.stop())
        .await
        .expect("shutdown waited on the stalled client")
        .unwrap();

    let store = crate::support::open_store(&root.path().join("data")).await;
    let (head, hash) = store.audit_head().await.unwrap().unwrap();
    let last = store.raw_audit(head as i64 - 1, 1).await.unwrap();
    assert_eq!(last[0].kind, "server.stopped");
    let cp = store.last_checkpoint().await.unwrap().unwrap();
    assert_eq!((cp.seq, cp.hash), (head, hash));
    store.close().await;
}

// No request timeout: a client trickling its body held a request (and its
// resources) open forever. It is now abandoned with a problem+json 503.
#[tokio::test]
async fn a_request_over_the_timeout_is_a_timeout_problem() {
    let root = tempfile::tempdir().unwrap();
    let opts = server_config(root.path(), "request_timeout = \"1s\"");
    let s = Server::start_with(opts).await.unwrap();
    let before = s.snapshot().await;
    let mut stream = stall(&s).await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            response.extend_from_slice(&buf[..n]);
            if n == 0 || String::from_utf8_lossy(&response).contains("\"code\":\"timeout\"") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to the stalled request");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{text}"
    );
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["code"], "timeout");
    assert_eq!(body["status"], 503);
    assert_eq!(s.snapshot().await, before);
    s.stop().await.unwrap();
}

// The only store-failure test failed auth first, so it never showed that
// writes fail closed when reads work but the audit append fails.
#[tokio::test]
async fn writes_fail_closed_when_only_the_audit_append_fails() {
    let app = TestApp::start(Arc::new(SystemClock)).await;
    let alice = app.add_user("alice", false).await;
    app.add_agent("claude-code").await;
    let task = app.add_task(&alice, "claude-code", "30m").await;
    let id = task["id"].as_str().unwrap();
    let before = app.snapshot().await;

    raw_sql(
        &app,
        "CREATE TRIGGER test_block BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit blocked by test'); END",
    )
    .await;
    // Reads still work: the caller is authenticated, the task is found.
    app.get(&alice, &format!("/v1/tasks/{id}"))
        .await
        .assert_ok(200);
    let attempts = [
        (
            alice.clone(),
            "/v1/tasks".to_owned(),
            json!({"agent": "claude-code", "purpose": "fix it", "ttl": "30m"}),
        ),
        (
            app.admin.clone(),
            "/v1/users".to_owned(),
            json!({"name": "bob"}),
        ),
        (
            app.admin.clone(),
            "/v1/agents".to_owned(),
            json!({"name": "bot", "tier": "propose"}),
        ),
        (
            alice.clone(),
            format!("/v1/tasks/{id}/narrow"),
            json!({"scope": {"repos": ["acme/api"]}}),
        ),
        (
            alice.clone(),
            format!("/v1/tasks/{id}/end"),
            json!({"note": "done"}),
        ),
    ];
    for (token, path, body) in attempts {
        let r = app.post(&token, &path, body).await;
        assert!(r.status >= 500, "{path}: {} {}", r.status, r.text);
        r.assert_problem(r.status, r.body["code"].as_str().unwrap_or("?"));
        assert_eq!(r.body["code"], "store_unavailable", "{path}: {}", r.text);
    }
    raw_sql(&app, "DROP TRIGGER test_block").await;
    assert_eq!(app.snapshot().await, before);
    app.stop().await;
}
