//! Issue 4, acceptance 5: `warrant policy replay` against a real server's
//! recorded decisions lists exactly the decisions a stricter candidate set
//! would change.

use serde_json::{Value, json};

use crate::refusals::{Agent, key};
use crate::util::Server;

fn push(repo: &str, branch: &str) -> Value {
    json!({"action": "repo.push", "resource": {"type": "Repo", "id": repo},
           "context": {"branch": branch}})
}

#[test]
fn replay_lists_exactly_the_decisions_a_stricter_set_changes() {
    let server = Server::start();
    let agent = Agent::new(&server.addr);
    server
        .admin()
        .args(["agent", "add", "claude", "--tier", "propose"])
        .json();
    let bob = server.admin().args(["user", "add", "bob"]).json();
    let bob = bob["token"].as_str().unwrap().to_owned();
    let task = server
        .as_user(&bob)
        .args(["task", "create", "--agent", "claude", "--purpose", "work"])
        .args([
            "--repo",
            "acme/api",
            "--repo",
            "acme/web",
            "--branch",
            "feature/*",
        ])
        .args(["--action", "repo.read", "--action", "repo.push"])
        .json();
    let run_key = key();
    let r = agent.redeem(&run_key, task["claim"].as_str().unwrap());
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body["access_token"].as_str().unwrap().to_owned();

    let mut seqs = Vec::new();
    for body in [
        push("acme/api", "feature/a"),
        push("acme/web", "feature/b"),
        json!({"action": "repo.read", "resource": {"type": "Repo", "id": "acme/web"}}),
        push("acme/web", "main"),
        push("acme/web", "feature/c"),
    ] {
        let r = agent.decide(&run_key, &token, &body);
        assert_eq!(r.status, 200, "{}", r.body);
        seqs.push((
            r.body["audit_seq"].as_u64().unwrap(),
            r.body["decision"].clone(),
        ));
    }
    assert_eq!(
        seqs.iter()
            .map(|(_, d)| d.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["allow", "allow", "allow", "deny", "allow"]
    );

    // The shipped pack as it is: nothing changes.
    let dir = tempfile::TempDir::new().unwrap();
    let same = dir.path().join("same");
    server
        .cmd()
        .args(["policy", "pack", "--out"])
        .arg(&same)
        .json();
    let report = server
        .admin()
        .args(["policy", "replay", "--policies"])
        .arg(&same)
        .json();
    assert_eq!(report["replayed"], 5, "{report}");
    assert_eq!(report["changed"], json!([]), "{report}");

    // A stricter candidate: no pushes to acme/web at all. Exactly the two
    // allowed pushes to acme/web change (the one to `main` was already
    // denied by the scope and stays denied).
    let strict = dir.path().join("strict");
    server
        .cmd()
        .args(["policy", "pack", "--out"])
        .arg(&strict)
        .json();
    std::fs::write(
        strict.join("freeze.cedar"),
        r#"@id("freeze.web")
@reason("acme/web is frozen")
forbid (principal is Run, action == Action::"repo.push", resource == Repo::"acme/web");
"#,
    )
    .unwrap();
    let report = server
        .admin()
        .args(["policy", "replay", "--policies"])
        .arg(&strict)
        .json();
    let changed = report["changed"].as_array().unwrap();
    let changed_seqs: Vec<u64> = changed.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(changed_seqs, vec![seqs[1].0, seqs[4].0], "{report}");
    for c in changed {
        assert_eq!(c["before"]["decision"], "allow");
        assert_eq!(c["after"]["decision"], "deny");
        assert_eq!(c["after"]["code"], "forbidden");
        assert_eq!(c["after"]["policies"], json!(["freeze.web"]));
    }
    // As a CI gate: a change fails the command.
    let err = server
        .admin()
        .args(["policy", "replay", "--fail-on-change", "--policies"])
        .arg(&strict)
        .fails_with(1);
    assert!(err.contains("would change"), "{err}");
    // `--since` in the future leaves nothing to replay.
    let report = server
        .admin()
        .args([
            "policy",
            "replay",
            "--since",
            "2999-01-01T00:00:00Z",
            "--policies",
        ])
        .arg(&strict)
        .json();
    assert_eq!(report["replayed"], 0, "{report}");
    // Non-admins cannot read the audit log.
    let err = server
        .as_user(&bob)
        .args(["policy", "replay", "--policies"])
        .arg(&strict)
        .fails_with(1);
    assert!(err.contains("forbidden"), "{err}");
}
