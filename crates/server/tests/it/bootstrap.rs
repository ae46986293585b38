//! First start and restarts: data dir, signing key, admin token.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;
use warrant_server::ServerError;

use crate::support::{Server, options, private_tempdir};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn kinds(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

#[tokio::test]
async fn first_start_creates_key_and_admin_and_second_start_reuses_them() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested/warrant-data");
    let s = Server::start_with(options(&dir)).await.unwrap();
    let token_file = dir.join("admin.token");
    let key_file = dir.join("signing.key");
    assert_eq!(
        s.ready.admin_token_file.as_deref(),
        Some(token_file.as_path())
    );
    assert_eq!(s.ready.store, "sqlite");
    assert_eq!(s.ready.data_dir, dir);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(&key_file), 0o600);
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(
        token.starts_with("wrt_") && token.ends_with('\n'),
        "{token:?}"
    );
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));

    let me = s.get(token.trim_end(), "/v1/users/me").await;
    let me = me.assert_ok(200);
    assert_eq!(me["name"], "admin");
    assert_eq!(me["admin"], true);
    assert_eq!(me["groups"], serde_json::json!(["admins"]));
    let alice = s.add_user("alice", false).await;
    s.stop().await.unwrap();

    let s = Server::start_with(options(&dir)).await.unwrap();
    assert_eq!(
        s.ready.admin_token_file, None,
        "a second start must not create an admin token"
    );
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    s.get(token.trim_end(), "/v1/users/me").await.assert_ok(200);
    s.get(&alice, "/v1/users/me").await.assert_ok(200);
    let users = s.get(&s.admin, "/v1/users").await;
    assert_eq!(users.assert_ok(200)["users"].as_array().unwrap().len(), 2);

    let events = s.audit_events().await;
    assert_eq!(kinds(&events, "keys.added"), 1);
    assert_eq!(kinds(&events, "server.started"), 2);
    assert_eq!(kinds(&events, "server.stopped"), 1);
    let admin_created = events.iter().find(|e| e["kind"] == "user.created").unwrap();
    assert_eq!(admin_created["actor"], "system:bootstrap");
    assert_eq!(admin_created["subject"], "user:admin");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_loose_signing_key_mode_is_tightened() {
    let dir = private_tempdir();
    let s = Server::start_with(options(dir.path())).await.unwrap();
    s.stop().await.unwrap();
    let key_file = dir.path().join("signing.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = Server::start_with(options(dir.path())).await.unwrap();
    assert_eq!(mode(&key_file), 0o600);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_signing_key_stops_the_start() {
    let dir = private_tempdir();
    std::fs::write(dir.path().join("signing.key"), "not a key").unwrap();
    let err = Server::start_with(options(dir.path())).await.err().unwrap();
    assert!(matches!(err, ServerError::Bootstrap(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("signing.key") && msg.contains("cannot read the signing key"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let s = Server::start().await;
    let dir = private_tempdir();
    let mut opts = options(dir.path());
    opts.listen = Some(s.ready.addr);
    let err = Server::start_with(opts).await.err().unwrap();
    assert!(matches!(err, ServerError::AddrInUse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&s.ready.addr.to_string())
            && msg.contains("already in use")
            && msg.contains("--listen"),
        "{msg}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_data_dir_that_cannot_be_created_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = Server::start_with(options(&file.join("data")))
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("cannot create the data directory") && msg.contains("--data-dir"),
        "{msg}"
    );
}
