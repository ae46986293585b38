//! Issue 4: `POST /v1/decisions` against the real server with the shipped
//! default pack (acceptance 1 and 2), a configured policy directory whose
//! reload refuses an invalid file and keeps serving (acceptance 3), and an
//! evaluation error that denies (fail closed).

use std::collections::HashMap;
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};
use warrant_audit::Verifier;

use crate::support::{Api, Resp, Server, TestApp, open_store, options, private_tempdir};
use crate::tokens::{Dpop, redeem};

/// A run: its key and token.
pub struct Run {
    pub key: Dpop,
    pub token: String,
}

impl Run {
    /// `GET path` as this run (token and a fresh proof).
    pub async fn get(&self, api: &Api, path: &str) -> Resp {
        let url = format!("{}{path}", api.base);
        let proof = self.key.proof("GET", &url, Some(&self.token));
        let res = api
            .http
            .request(Method::GET, &url)
            .header("authorization", format!("DPoP {}", self.token))
            .header("DPoP", proof)
            .send()
            .await
            .unwrap();
        crate::support::into_resp(res).await
    }

    pub async fn decide(&self, api: &Api, body: Value) -> Resp {
        let url = format!("{}/v1/decisions", api.base);
        let proof = self.key.proof("POST", &url, Some(&self.token));
        let res = api
            .http
            .request(Method::POST, &url)
            .header("authorization", format!("DPoP {}", self.token))
            .header("DPoP", proof)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        crate::support::into_resp(res).await
    }
}

pub async fn add_user(api: &Api, name: &str, groups: &[&str]) -> String {
    let r = api
        .post(
            &api.admin,
            "/v1/users",
            json!({"name": name, "groups": groups}),
        )
        .await;
    r.assert_ok(201)["token"].as_str().unwrap().to_owned()
}

pub async fn add_agent(api: &Api, name: &str, tier: &str) {
    api.post(
        &api.admin,
        "/v1/agents",
        json!({"name": name, "tier": tier}),
    )
    .await
    .assert_ok(201);
}

/// A task of `user` for `agent` with `scope`, and a run redeemed from it.
pub async fn run_for(api: &Api, user: &str, agent: &str, scope: Value) -> Run {
    let task = api
        .post(
            user,
            "/v1/tasks",
            json!({"agent": agent, "purpose": "work", "ttl": "30m", "scope": scope}),
        )
        .await
        .assert_ok(201)
        .clone();
    let (key, token) = redeem(api, &task).await;
    Run { key, token }
}

fn repo(action: &str, id: &str, context: Value) -> Value {
    json!({"action": action, "resource": {"type": "Repo", "id": id}, "context": context})
}

#[track_caller]
fn decided(r: &Resp, decision: &str, code: &str) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["decision"], decision, "{}", r.text);
    assert_eq!(r.body["code"], code, "{}", r.text);
    assert!(
        r.body["reasons"].as_array().is_some_and(|a| !a.is_empty()),
        "{}",
        r.text
    );
    assert!(
        r.body["policies"].as_array().is_some_and(|a| !a.is_empty()),
        "{}",
        r.text
    );
    r.body.clone()
}

fn policies(r: &Value) -> Vec<String> {
    r["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

/// Every event in the store's chain verifies against the store's keys and
/// checkpoints (after the server has stopped).
pub async fn verify_chain(data: &Path) -> u64 {
    let store = open_store(data).await;
    let keys: HashMap<String, Vec<u8>> = store
        .list_public_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.public_key))
        .collect();
    let checkpoints = store.list_checkpoints().await.unwrap();
    let mut verifier = Verifier::new(keys, checkpoints);
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
    assert_eq!(report.unanchored, 0);
    store.close().await;
    report.head_seq
}

#[tokio::test]
async fn the_default_pack_decides_each_case_and_every_decision_is_audited() {
    let dir = private_tempdir();
    let data = dir.path().join("data");
    let server = Server::start_with(options(&data)).await.unwrap();
    let bob = add_user(&server, "bob", &["dev"]).await;
    let olga = add_user(&server, "olga", &["operators"]).await;
    add_agent(&server, "claude", "propose").await;
    add_agent(&server, "reader", "read-only").await;
    add_agent(&server, "deployer", "privileged").await;
    let scope = json!({
        "repos": ["acme/api"], "branches": ["feature/*", "main"],
        "environments": ["staging"],
        "actions": ["repo.read", "repo.push", "web.fetch", "secret.read", "deploy"],
        "tools": ["web"], "secrets": ["npm-token"],
    });

    // Allow within scope, with the deciding policies and reasons.
    let claude = run_for(&server, &bob, "claude", scope.clone()).await;
    let ok = claude
        .decide(
            &server,
            repo("repo.push", "acme/api", json!({"branch": "feature/login"})),
        )
        .await;
    let ok = decided(&ok, "allow", "allowed");
    assert!(
        policies(&ok).contains(&"agent.tier.change".to_owned()),
        "{ok}"
    );
    assert!(ok["audit_seq"].as_u64().unwrap() > 0);

    // Outside the task's repos, branches, environments: the scope, never Cedar.
    for (body, what) in [
        (
            repo("repo.push", "acme/web", json!({"branch": "feature/login"})),
            "acme/web",
        ),
        (
            repo("repo.push", "acme/api", json!({"branch": "hotfix/x"})),
            "hotfix/x",
        ),
        (
            json!({"action": "deploy", "resource": {"type": "Environment", "id": "production"}}),
            "production",
        ),
    ] {
        let r = claude.decide(&server, body).await;
        let r = decided(&r, "deny", "out_of_scope");
        assert_eq!(policies(&r), vec!["warrant.scope".to_owned()]);
        assert!(r["reasons"][0].as_str().unwrap().contains(what), "{r}");
    }

    // A protected branch: the guard forbids a direct push.
    let r = claude
        .decide(
            &server,
            repo("repo.push", "acme/api", json!({"branch": "main"})),
        )
        .await;
    let r = decided(&r, "deny", "forbidden");
    assert_eq!(policies(&r), vec!["guard.protected-branch-push".to_owned()]);

    // By tier: a read-only agent reads but cannot push.
    let reader = run_for(&server, &bob, "reader", scope.clone()).await;
    decided(
        &reader
            .decide(&server, repo("repo.read", "acme/api", json!({})))
            .await,
        "allow",
        "allowed",
    );
    decided(
        &reader
            .decide(
                &server,
                repo("repo.push", "acme/api", json!({"branch": "feature/x"})),
            )
            .await,
        "deny",
        "not_permitted_for_agent",
    );

    // The delegation ceiling: a privileged agent may deploy, but bob (not
    // an operator) may not, so his agent may not either.
    let bobs_deployer = run_for(&server, &bob, "deployer", scope.clone()).await;
    let deploy = json!({"action": "deploy", "resource": {"type": "Environment", "id": "staging"},
                        "context": {"commit": "0123456789abcdef0123456789abcdef01234567"}});
    let r = bobs_deployer.decide(&server, deploy.clone()).await;
    decided(&r, "deny", "delegation_ceiling");

    // Olga is an operator: the same deploy needs an approval, bound to the
    // request; asking again gives the same pending approval.
    let olgas_deployer = run_for(&server, &olga, "deployer", scope.clone()).await;
    let r = olgas_deployer.decide(&server, deploy.clone()).await;
    let r = decided(&r, "approval_required", "approval_required");
    assert_eq!(policies(&r), vec!["approval.deploy".to_owned()]);
    let approval = r["approval_id"].as_str().unwrap().to_owned();
    let again = olgas_deployer.decide(&server, deploy.clone()).await;
    assert_eq!(again.body["approval_id"], approval.as_str());
    let mut other_commit = deploy.clone();
    other_commit["context"]["commit"] = "fedcba9876543210fedcba9876543210fedcba98".into();
    let other = olgas_deployer.decide(&server, other_commit).await;
    assert_ne!(
        other.body["approval_id"],
        approval.as_str(),
        "{}",
        other.text
    );

    // Taint: olga's privileged agent reads a secret, fetches the web, and
    // then may no longer read secrets.
    let secret =
        json!({"action": "secret.read", "resource": {"type": "Secret", "id": "npm-token"}});
    decided(
        &olgas_deployer.decide(&server, secret.clone()).await,
        "allow",
        "allowed",
    );
    let fetch = json!({"action": "web.fetch", "resource": {"type": "Tool", "id": "web"},
                       "context": {"url": "https://example.com/readme?token=hunter2", "method": "GET"}});
    decided(
        &olgas_deployer.decide(&server, fetch).await,
        "allow",
        "allowed",
    );
    let r = olgas_deployer.decide(&server, secret).await;
    let r = decided(&r, "deny", "forbidden");
    assert_eq!(policies(&r), vec!["guard.tainted-secrets".to_owned()]);

    // Bad input: an unknown action is a decision (deny); a body the API
    // cannot take is a 4xx, and neither the server-computed fields.
    let r = claude
        .decide(&server, repo("repo.teleport", "acme/api", json!({})))
        .await;
    assert_eq!(r.body["decision"], "deny", "{}", r.text);
    assert_eq!(r.body["code"], "unknown_action", "{}", r.text);
    let r = claude
        .decide(
            &server,
            repo(
                "repo.push",
                "acme/api",
                json!({"branch": "main", "branch_protected": false}),
            ),
        )
        .await;
    r.assert_problem(422, "invalid_body");
    let r = claude.decide(&server, json!({"action": "repo.read"})).await;
    r.assert_problem(422, "invalid_body");
    // Without a run token: no decision at all.
    let r = server
        .post(
            &bob,
            "/v1/decisions",
            repo("repo.read", "acme/api", json!({})),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Every decision is in the audit log, with the deciding policies, and
    // sensitive context only as a keyed hash.
    let events = server.audit_events().await;
    let decisions: Vec<&Value> = events.iter().filter(|e| e["kind"] == "decision").collect();
    assert_eq!(decisions.len(), 15, "{decisions:?}");
    for d in &decisions {
        assert!(d["data"]["outcome"]["policies"].is_array(), "{d}");
        assert!(d["data"]["outcome"]["reasons"].is_array(), "{d}");
        assert_eq!(d["data"]["policy_set"].as_str().unwrap().len(), 64, "{d}");
    }
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("hunter2"),
        "a sensitive value reached the audit log"
    );
    assert!(text.contains("hmac-sha256:"));
    let approvals: Vec<&&Value> = decisions
        .iter()
        .filter(|d| d["data"]["approval_id"] == approval.as_str())
        .collect();
    assert_eq!(approvals.len(), 2);

    server.stop().await.unwrap();
    assert!(verify_chain(&data).await > 15);
}

/// The default pack, plus `extra` files, in a fresh directory.
pub fn policy_dir(root: &Path, extra: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = root.join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in warrant_policy::DEFAULT_PACK.iter().chain(extra) {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

// A policy that validates but cannot be evaluated for some requests (Long
// overflow). Cedar alone skips an erroring policy, which for a forbid would
// let the request through: Warrant denies.
const OVERFLOWING: &str = r#"
@id("guard.overflow")
@reason("a forbid that overflows for any request with a risk score")
forbid (
  principal is Run,
  action == Action::"repo.push",
  resource
)
when { context.risk_score + 9223372036854775807 > 0 };
"#;

#[tokio::test]
async fn evaluation_errors_deny_and_a_bad_reload_keeps_the_old_set() {
    let root = private_tempdir();
    let dir = policy_dir(root.path(), &[("overflow.cedar", OVERFLOWING)]);
    let config = root.path().join("warrant.toml");
    std::fs::write(&config, format!("[policy]\ndir = \"{}\"\n", dir.display())).unwrap();
    let data = root.path().join("data");
    let mut opts = options(&data);
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    let bob = add_user(&server, "bob", &[]).await;
    add_agent(&server, "claude", "propose").await;
    let run = run_for(
        &server,
        &bob,
        "claude",
        json!({"repos": ["acme/api"], "branches": ["feature/*"], "actions": ["repo.read", "repo.push"]}),
    )
    .await;
    let push = repo("repo.push", "acme/api", json!({"branch": "feature/x"}));
    let r = run.decide(&server, push.clone()).await;
    assert_eq!(r.body["decision"], "deny", "{}", r.text);
    assert_eq!(r.body["code"], "evaluation_error", "{}", r.text);
    let read = repo("repo.read", "acme/api", json!({}));
    decided(&run.decide(&server, read.clone()).await, "allow", "allowed");
    let live = server.get(&server.admin, "/v1/policies").await;
    let fingerprint = live.assert_ok(200)["policy_set"].clone();

    // A broken file: the reload is refused with file and line; the old set
    // (with its overflow guard) keeps serving.
    std::fs::write(
        dir.join("broken.cedar"),
        "@id(\"x\")\npermit (\n  principal is Run,\n  action == Action::\"repo.read\",\n  resource\n) when { context.nonexistent };\n",
    )
    .unwrap();
    let r = server
        .post(&server.admin, "/v1/policies/reload", json!({}))
        .await;
    r.assert_problem(422, "invalid_policy");
    assert!(r.detail().contains("broken.cedar:"), "{}", r.detail());
    let r = server.get(&server.admin, "/v1/policies").await;
    assert_eq!(r.assert_ok(200)["policy_set"], fingerprint);
    let r = run.decide(&server, push.clone()).await;
    assert_eq!(r.body["code"], "evaluation_error", "{}", r.text);

    // Fixed: the reload takes, and the push is allowed.
    std::fs::remove_file(dir.join("broken.cedar")).unwrap();
    std::fs::remove_file(dir.join("overflow.cedar")).unwrap();
    let r = server
        .post(&server.admin, "/v1/policies/reload", json!({}))
        .await;
    assert_ne!(r.assert_ok(200)["policy_set"], fingerprint);
    decided(&run.decide(&server, push).await, "allow", "allowed");
    // Non-admins may not reload.
    let r = server.post(&bob, "/v1/policies/reload", json!({})).await;
    r.assert_problem(403, "forbidden");

    let kinds: Vec<String> = server
        .audit_events()
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .filter(|k| k.starts_with("policy."))
        .collect();
    assert_eq!(kinds, vec!["policy.refused", "policy.loaded"]);
    server.stop().await.unwrap();
    verify_chain(&data).await;
}

#[tokio::test]
async fn a_policy_set_that_does_not_load_stops_the_start() {
    let root = private_tempdir();
    let dir = policy_dir(
        root.path(),
        &[("bad.cedar", "permit (principal, action, resource")],
    );
    let config = root.path().join("warrant.toml");
    std::fs::write(&config, format!("[policy]\ndir = \"{}\"\n", dir.display())).unwrap();
    let mut opts = options(&root.path().join("data"));
    opts.config_file = Some(config);
    let err = Server::start_with(opts).await.err().unwrap();
    let text = err.to_string();
    assert!(text.contains("bad.cedar:1:"), "{text}");
}

#[tokio::test]
async fn a_store_failure_decides_nothing() {
    let app = TestApp::start(std::sync::Arc::new(warrant_core::SystemClock)).await;
    let bob = add_user(&app, "bob", &[]).await;
    add_agent(&app, "claude", "propose").await;
    let run = run_for(
        &app,
        &bob,
        "claude",
        json!({"repos": ["acme/api"], "actions": ["repo.read"]}),
    )
    .await;
    let read = repo("repo.read", "acme/api", json!({}));
    decided(&run.decide(&app, read.clone()).await, "allow", "allowed");
    // The store goes away: nothing can be read or recorded, so nothing is
    // decided — a 503, never an allow.
    app.store.close().await;
    let r = run.decide(&app, read).await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.body["decision"].is_null(), "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn shadow_mode_records_differences_and_the_live_answer_counts() {
    let root = private_tempdir();
    let shadow = root.path().join("candidate");
    std::fs::create_dir_all(&shadow).unwrap();
    for (name, text) in warrant_policy::DEFAULT_PACK {
        std::fs::write(shadow.join(name), text).unwrap();
    }
    std::fs::write(
        shadow.join("freeze.cedar"),
        "@id(\"freeze.web\")\n@reason(\"acme/web is frozen\")\nforbid (principal is Run, action == Action::\"repo.push\", resource == Repo::\"acme/web\");\n",
    )
    .unwrap();
    let config = root.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!("[policy]\nshadow_dir = \"{}\"\n", shadow.display()),
    )
    .unwrap();
    let mut opts = options(&root.path().join("data"));
    opts.config_file = Some(config);
    let server = Server::start_with(opts).await.unwrap();
    let bob = add_user(&server, "bob", &[]).await;
    add_agent(&server, "claude", "propose").await;
    let run = run_for(
        &server,
        &bob,
        "claude",
        json!({"repos": ["acme/api", "acme/web"], "branches": ["feature/*"], "actions": ["repo.push"]}),
    )
    .await;
    // The live set allows both; the candidate would deny the one to acme/web.
    for (repo_id, differs) in [("acme/api", false), ("acme/web", true)] {
        let r = run
            .decide(
                &server,
                repo("repo.push", repo_id, json!({"branch": "feature/x"})),
            )
            .await;
        decided(&r, "allow", "allowed");
        let events = server.audit_events().await;
        let last = events
            .iter()
            .rev()
            .find(|e| e["kind"] == "decision")
            .unwrap();
        assert_eq!(last["data"]["shadow"]["differs"], differs, "{last}");
        if differs {
            assert_eq!(
                last["data"]["shadow"]["outcome"]["decision"], "deny",
                "{last}"
            );
            assert_eq!(
                last["data"]["shadow"]["outcome"]["policies"],
                json!(["freeze.web"]),
                "{last}"
            );
        }
    }
    let live = server.get(&server.admin, "/v1/policies").await;
    let live = live.assert_ok(200);
    assert_eq!(live["source"], "default pack");
    assert!(
        live["shadow"]["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("freeze.web"))
    );
    server.stop().await.unwrap();
}
