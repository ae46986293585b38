//! Issue 5 end to end with the real binary: an agent's deploy needs an
//! approval; eligible humans answer with `warrant approvals`; the agent's
//! identical retry is allowed exactly once; separation of duties, quorum,
//! commit binding, revocation with the task, and the signed attestation.

use serde_json::{Value, json};

use crate::refusals::{Agent, key};
use crate::util::{Server, TestCommand};

const COMMIT_A: &str = "0123456789abcdef0123456789abcdef01234567";
const COMMIT_B: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn deploy(env: &str, commit: &str) -> Value {
    json!({"action": "deploy", "resource": {"type": "Environment", "id": env},
           "context": {"commit": commit, "repo": "acme/api"}})
}

fn token_of(v: &Value) -> String {
    v["token"].as_str().unwrap().to_owned()
}

#[test]
fn approvals_gate_deploys_once_per_exact_request() {
    let mut server = Server::start();
    let agent = Agent::new(&server.addr);
    server
        .admin()
        .args(["agent", "add", "deployer", "--tier", "privileged"])
        .json();
    let bob = token_of(
        &server
            .admin()
            .args(["user", "add", "bob", "--group", "operators"])
            .json(),
    );
    let carol = token_of(
        &server
            .admin()
            .args(["user", "add", "carol", "--group", "approvers"])
            .json(),
    );
    let dave = token_of(
        &server
            .admin()
            .args(["user", "add", "dave", "--group", "approvers"])
            .json(),
    );
    let erin = token_of(&server.admin().args(["user", "add", "erin"]).json());
    let task = server
        .as_user(&bob)
        .args([
            "task",
            "create",
            "--agent",
            "deployer",
            "--purpose",
            "ship it",
        ])
        .args([
            "--repo",
            "acme/api",
            "--env",
            "staging",
            "--env",
            "production",
        ])
        .args(["--action", "deploy"])
        .json();
    let task_id = task["id"].as_str().unwrap().to_owned();
    let run_key = key();
    let r = agent.redeem(&run_key, task["claim"].as_str().unwrap());
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let decide = |body: &Value| {
        let r = agent.decide(&run_key, &token, body);
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    };

    // 1. The deploy needs an approval.
    let first = decide(&deploy("staging", COMMIT_A));
    assert_eq!(first["decision"], "approval_required", "{first}");
    let x = first["approval_id"].as_str().unwrap().to_owned();
    let listed = server
        .as_user(&carol)
        .args(["approvals", "list", "--state", "pending"])
        .json();
    assert_eq!(listed["approvals"][0]["id"], x.as_str(), "{listed}");
    let shown = server
        .as_user(&carol)
        .args(["approvals", "show", &x])
        .json();
    assert_eq!(shown["delegator"], "bob");
    assert_eq!(shown["context"]["commit"], COMMIT_A);
    assert_eq!(
        shown["recent_decisions"][0]["decision"], "approval_required",
        "{shown}"
    );

    // 2. Not an approver; the delegating user (separation of duties).
    let err = server
        .as_user(&erin)
        .args(["approvals", "approve", &x, "--reason", "looks fine"])
        .fails_with(1);
    assert!(err.contains("not_an_approver"), "{err}");
    let err = server
        .as_user(&bob)
        .args(["approvals", "approve", &x, "--reason", "my own"])
        .fails_with(1);
    assert!(err.contains("approval_forbidden"), "{err}");
    let still = server
        .as_user(&carol)
        .args(["approvals", "show", &x])
        .json();
    assert_eq!(still["state"], "pending");

    // A second user approves via the CLI.
    let approved = server
        .as_user(&carol)
        .args([
            "approvals",
            "approve",
            &x,
            "--reason",
            "change ticket ACME-12 reviewed",
        ])
        .json();
    assert_eq!(approved["state"], "approved", "{approved}");
    let err = server
        .as_user(&carol)
        .args(["approvals", "approve", &x, "--reason", "again"])
        .fails_with(1);
    assert!(err.contains("approval_closed"), "{err}");

    // 3. Another commit is another request: not allowed by this approval.
    let other = decide(&deploy("staging", COMMIT_B));
    assert_eq!(other["decision"], "approval_required", "{other}");
    assert_ne!(other["approval_id"], x.as_str());

    // The identical retry is allowed exactly once; the third needs a new one.
    let retry = decide(&deploy("staging", COMMIT_A));
    assert_eq!(retry["decision"], "allow", "{retry}");
    assert_eq!(retry["code"], "approved", "{retry}");
    assert_eq!(retry["approval_id"], x.as_str());
    let third = decide(&deploy("staging", COMMIT_A));
    assert_eq!(third["decision"], "approval_required", "{third}");
    assert_ne!(third["approval_id"], x.as_str());
    let consumed = server
        .as_user(&carol)
        .args(["approvals", "show", &x])
        .json();
    assert_eq!(consumed["state"], "consumed");

    // The attestation of X verifies for commit A and not for commit B.
    let dir = tempfile::TempDir::new().unwrap();
    let envelope = agent.get_as(&bob, &format!("/v1/approvals/{x}/attestation"));
    assert_eq!(envelope.0, 200, "{}", envelope.1);
    let file = dir.path().join("approval.dsse.json");
    std::fs::write(&file, &envelope.1).unwrap();
    let jwks = format!("{}/.well-known/jwks.json", server.addr);
    let ok = TestCommand::new(server.config_dir())
        .args(["attest", "verify", "--envelope"])
        .arg(&file)
        .args(["--subject", &format!("sha1:{COMMIT_A}"), "--jwks", &jwks])
        .json();
    assert_eq!(
        ok["statement"]["predicate"]["approval_id"],
        x.as_str(),
        "{ok}"
    );
    assert_eq!(ok["valid"], true, "{ok}");
    TestCommand::new(server.config_dir())
        .args(["attest", "verify", "--envelope"])
        .arg(&file)
        .args(["--subject", &format!("sha1:{COMMIT_B}"), "--jwks", &jwks])
        .fails_with(1);

    // Quorum: a production deploy needs two distinct approvers.
    let prod = decide(&deploy("production", COMMIT_A));
    assert_eq!(prod["decision"], "approval_required", "{prod}");
    assert_eq!(prod["quorum"], 2, "{prod}");
    let p = prod["approval_id"].as_str().unwrap().to_owned();
    let one = server
        .as_user(&carol)
        .args(["approvals", "approve", &p, "--reason", "ok by me"])
        .json();
    assert_eq!(
        (one["state"].clone(), one["approvals"].clone()),
        (json!("pending"), json!(1))
    );
    let err = server
        .as_user(&carol)
        .args(["approvals", "approve", &p, "--reason", "twice"])
        .fails_with(1);
    assert!(err.contains("already_voted"), "{err}");
    let pending = decide(&deploy("production", COMMIT_A));
    assert_eq!(pending["decision"], "approval_required");
    assert_eq!(pending["approval_id"], p.as_str());
    let two = server
        .as_user(&dave)
        .args([
            "approvals",
            "approve",
            &p,
            "--reason",
            "second pair of eyes",
        ])
        .json();
    assert_eq!(two["state"], "approved", "{two}");
    assert_eq!(decide(&deploy("production", COMMIT_A))["decision"], "allow");

    // A denial answers the identical request with a deny.
    let asked = decide(&deploy("staging", COMMIT_B));
    let b = asked["approval_id"].as_str().unwrap().to_owned();
    server
        .as_user(&dave)
        .args([
            "approvals",
            "deny",
            &b,
            "--reason",
            "commit B is not reviewed",
        ])
        .json();
    let denied = decide(&deploy("staging", COMMIT_B));
    assert_eq!(denied["decision"], "deny", "{denied}");
    assert_eq!(denied["code"], "approval_denied", "{denied}");

    // 4. Ending the task revokes its pending approvals.
    let open = third["approval_id"].as_str().unwrap().to_owned();
    server.as_user(&bob).args(["task", "end", &task_id]).json();
    let revoked = server
        .as_user(&carol)
        .args(["approvals", "show", &open])
        .json();
    assert_eq!(revoked["state"], "revoked");
    let err = server
        .as_user(&carol)
        .args(["approvals", "approve", &open, "--reason", "too late"])
        .fails_with(1);
    assert!(err.contains("approval_closed"), "{err}");

    // Every refusal was audited, and the chain verifies.
    let events: Vec<Value> = server
        .admin()
        .args(["audit", "export", "--format", "jsonl"])
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let checks: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "approval.refused")
        .map(|e| e["data"]["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        checks,
        [
            "not_an_approver",
            "forbidden",
            "closed",
            "already_voted",
            "closed"
        ]
    );
    let kinds = |k: &str| events.iter().filter(|e| e["kind"] == k).count();
    assert_eq!(kinds("approval.approved"), 2);
    assert_eq!(kinds("approval.voted"), 1);
    assert_eq!(kinds("approval.denied"), 1);
    assert!(server.stop().success(), "{}", server.stderr());
    let report = TestCommand::new(server.config_dir())
        .args(["audit", "verify", "--strict", "--data-dir"])
        .arg(&server.data_dir)
        .json();
    assert_eq!(report["events"], report["head_seq"], "{report}");
}
