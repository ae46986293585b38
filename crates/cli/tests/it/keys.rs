//! `warrant keys rotate` with the real binary: the running server signs
//! with the new key at once, publishes both, a restart keeps the new key,
//! and `warrant audit verify --strict` trusts every key file, so
//! checkpoints signed before and after the rotation all verify.

use serde_json::Value;

use crate::util::{Server, TestCommand, copy_dir};

fn jwks_kids(server: &Server) -> Vec<String> {
    let (status, body) = server.http_get("/.well-known/jwks.json");
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let mut kids: Vec<String> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[test]
fn rotate_switches_the_signer_and_audit_verify_still_passes() {
    // A first run whose final checkpoint the original key signs.
    let mut first = Server::start();
    first.admin().args(["user", "add", "bob"]).json();
    let old_kids = jwks_kids(&first);
    assert_eq!(old_kids.len(), 1);
    assert!(first.stop().success(), "{}", first.stderr());

    let tmp = tempfile::TempDir::new().unwrap();
    let mut server = Server::start_in(&first.data_dir, tmp.path());
    let rotated = server.admin().args(["keys", "rotate"]).json();
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_eq!(rotated["retired_kid"], old_kids[0].as_str());
    assert_ne!(new_kid, old_kids[0]);
    assert!(
        server
            .data_dir
            .join(format!("keys/{new_kid}.pem"))
            .is_file()
    );
    let mut both = vec![old_kids[0].clone(), new_kid.clone()];
    both.sort();
    assert_eq!(jwks_kids(&server), both);
    server.admin().args(["user", "add", "carol"]).json();
    assert!(server.stop().success(), "{}", server.stderr());

    // Checkpoints from both keys verify against the key files.
    let verify = |dir: &std::path::Path| {
        let mut cmd = TestCommand::new(server.config_dir());
        cmd.args(["audit", "verify", "--strict", "--data-dir"])
            .arg(dir);
        cmd
    };
    let report = verify(&server.data_dir).json();
    assert_eq!(report["unanchored"], 0, "{report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 2, "{report}");

    // The store records the new key: without its file, the key table no
    // longer matches the data directory and strict verify fails.
    let copy = copy_dir(&server.data_dir);
    std::fs::remove_file(copy.path().join(format!("keys/{new_kid}.pem"))).unwrap();
    let stderr = verify(copy.path()).fails_with(1);
    assert!(stderr.contains(&new_kid), "{stderr}");

    // A restart signs with the rotated-in key and still publishes the old
    // one while tokens it signed may live.
    let tmp = tempfile::TempDir::new().unwrap();
    let mut again = Server::start_in(&server.data_dir, tmp.path());
    assert_eq!(jwks_kids(&again), both);
    assert!(again.stop().success(), "{}", again.stderr());
    let report = verify(&again.data_dir).json();
    assert_eq!(report["unanchored"], 0, "{report}");
}
