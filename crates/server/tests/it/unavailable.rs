//! A store that cannot be reached: readiness fails, requests answer 503
//! `store_unavailable`, and nothing is half-written.
//!
//! The store is made unavailable for real by closing its connection pool
//! under the running router (every query then fails as the pool refuses
//! connections), and at start-up by pointing at a PostgreSQL port where
//! nothing listens.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;
use warrant_core::SystemClock;
use warrant_server::ServerError;
use warrant_store::TaskFilter;

use crate::support::{TestApp, open_store, options, private_tempdir};

#[tokio::test]
async fn a_closed_store_fails_readiness_and_writes_with_503() {
    let app = TestApp::start(Arc::new(SystemClock)).await;
    let alice = app.add_user("alice", false).await;
    app.add_agent("claude-code").await;
    let live = app.add_task(&alice, "claude-code", "30m").await;
    let (_, run_token) = crate::tokens::redeem(&app, &live).await;
    let before = app.snapshot().await;
    let (head, _) = before.audit_head.clone().unwrap();

    app.store.close().await;

    app.send(Method::GET, "/readyz", None, None, None)
        .await
        .assert_problem(503, "store_unavailable");
    // Liveness does not depend on the store.
    app.send(Method::GET, "/healthz", None, None, None)
        .await
        .assert_ok(200);
    let task = json!({"agent": "claude-code", "purpose": "fix it", "ttl": "30m"});
    let r = app.post(&alice, "/v1/tasks", task).await;
    r.assert_problem(503, "store_unavailable");
    assert!(
        !r.detail().contains("closed"),
        "internals leaked: {}",
        r.detail()
    );
    app.post(&app.admin, "/v1/users", json!({"name": "bob"}))
        .await
        .assert_problem(503, "store_unavailable");
    app.post(
        &app.admin,
        "/v1/agents",
        json!({"name": "bot", "tier": "propose"}),
    )
    .await
    .assert_problem(503, "store_unavailable");
    app.get(&alice, "/v1/tasks")
        .await
        .assert_problem(503, "store_unavailable");
    app.get(&app.admin, "/v1/audit")
        .await
        .assert_problem(503, "store_unavailable");
    // Introspection cannot say a token is active without the store.
    crate::introspect::introspect(&app, Some(&alice), &run_token)
        .await
        .assert_problem(503, "store_unavailable");

    // Reopen the file: nothing was written.
    let dir = app.stop().await;
    let store = open_store(dir.path()).await;
    assert_eq!(
        store.audit_head().await.unwrap().map(|(seq, _)| seq),
        Some(head)
    );
    assert!(
        store
            .list_tasks(&TaskFilter::default())
            .await
            .unwrap()
            .len()
            == 1
    );
    assert_eq!(store.list_users().await.unwrap().len(), 2);
    assert_eq!(store.list_agents().await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn an_unreachable_postgres_stops_the_start_with_a_clear_error() {
    // A loopback port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = private_tempdir();
    let mut opts = options(dir.path());
    opts.store_url = Some(format!(
        "postgres://warrant:hunter2@127.0.0.1:{port}/warrant"
    ));
    let err = crate::support::Server::start_with(opts)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ServerError::Store { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("cannot open the store") && msg.contains(&port.to_string()),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "the password leaked: {msg}");
}
