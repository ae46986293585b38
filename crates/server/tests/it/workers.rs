//! The reaper and the checkpointer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use warrant_audit::Verifier;
use warrant_core::FakeClock;
use warrant_server::workers::reap_once;
use warrant_server::{WorkerSettings, Workers};

use crate::support::{Server, TestApp, eventually, open_store, options};

#[tokio::test]
async fn the_reaper_ends_expired_tasks_by_the_injected_clock() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let app = TestApp::start(clock.clone()).await;
    let alice = app.add_user("alice", false).await;
    app.add_agent("claude-code").await;
    let short = app.add_task(&alice, "claude-code", "1m").await;
    let long = app.add_task(&alice, "claude-code", "10m").await;
    let short_path = format!("/v1/tasks/{}", short["id"].as_str().unwrap());
    let long_path = format!("/v1/tasks/{}", long["id"].as_str().unwrap());

    // Before the clock moves nothing is expired.
    assert_eq!(reap_once(&app.state).await.unwrap(), 0);

    let workers = Workers::spawn(
        app.state.clone(),
        WorkerSettings {
            reaper_interval: Duration::from_millis(20),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(3600),
        },
    );
    // Exactly at `expires_at` the task is expired.
    clock.advance(SignedDuration::from_mins(1));
    let ended = eventually(30, || async {
        let t = app.get(&alice, &short_path).await.body;
        (t["state"] == "ended").then_some(t)
    })
    .await
    .expect("the reaper did not end the expired task");
    assert_eq!(ended["end_reason"], "expired");
    assert_eq!(ended["end_note"], Value::Null);
    let long_now = app.get(&alice, &long_path).await;
    assert_eq!(long_now.assert_ok(200)["state"], "pending");
    workers.stop().await;

    let events = app.audit_events().await;
    let reaped: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "task.ended")
        .collect();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0]["actor"], "system:reaper");
    assert_eq!(reaped[0]["task_id"], short["id"]);
    assert_eq!(reaped[0]["data"]["reason"], "expired");
    // The expiry is on the revocation stream too, in the same commit.
    let r = app.get(&app.admin, "/v1/revocations").await;
    let revoked = r.assert_ok(200)["revocations"].as_array().unwrap().clone();
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["kind"], "task");
    assert_eq!(revoked[0]["task_id"], short["id"]);
    assert_eq!(revoked[0]["reason"], "expired");

    // The other expires later; ending it twice is harmless.
    clock.advance(SignedDuration::from_mins(10));
    assert_eq!(reap_once(&app.state).await.unwrap(), 1);
    assert_eq!(reap_once(&app.state).await.unwrap(), 0);
    assert_eq!(
        app.get(&alice, &long_path).await.body["end_reason"],
        "expired"
    );
    app.stop().await;
}

#[tokio::test]
async fn checkpoints_are_signed_while_running_and_at_shutdown_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        "[audit]\ncheckpoint_every = 3\ncheckpoint_interval = \"1h\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut opts = options(&data);
    opts.config_file = Some(config);
    let s = Server::start_with(opts).await.unwrap();
    for name in ["u1", "u2", "u3", "u4"] {
        s.add_user(name, false).await;
    }
    // A second handle on the same SQLite file, as `warrant audit verify` would.
    let reader = open_store(&data).await;
    let cp = eventually(30, || async { reader.last_checkpoint().await.unwrap() })
        .await
        .expect("no checkpoint was signed while running");
    assert!(cp.seq >= 3);
    reader.close().await;
    s.stop().await.unwrap();

    let store = open_store(&data).await;
    let keys: HashMap<String, Vec<u8>> = store
        .list_public_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.public_key))
        .collect();
    assert_eq!(keys.len(), 1);
    let checkpoints = store.list_checkpoints().await.unwrap();
    let last = store.last_checkpoint().await.unwrap().unwrap();
    let (head, head_hash) = store.audit_head().await.unwrap().unwrap();
    // The final checkpoint covers everything, `server.stopped` included.
    assert_eq!((last.seq, last.hash), (head, head_hash));
    let tail = store.raw_audit(head as i64 - 1, 10).await.unwrap();
    assert_eq!(tail[0].kind, "server.stopped");
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    let mut verifier = Verifier::new(keys, checkpoints.clone());
    let mut after = 0;
    loop {
        let rows = store.raw_audit(after, 1000).await.unwrap();
        if rows.is_empty() {
            break;
        }
        after = rows.last().unwrap().seq;
        for row in rows {
            verifier.push(row).unwrap();
        }
    }
    let report = verifier.finish().unwrap();
    assert_eq!(report.head_seq, head);
    assert_eq!(report.checkpoints, checkpoints.len() as u64);
    assert_eq!(report.unanchored, 0);
    store.close().await;
}
