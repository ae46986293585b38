//! Happy paths: users, agents, tasks from creation to end, the audit log.

use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Api, Server};

fn ts(v: &Value) -> Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn users_are_created_with_a_one_time_token() {
    let s = Server::start().await;
    let api: &Api = &s;
    let r = api
        .post(
            &api.admin,
            "/v1/users",
            json!({"name": "alice", "groups": ["dev", "ops", "dev"]}),
        )
        .await;
    let body = r.assert_ok(201);
    assert_eq!(body["name"], "alice");
    assert_eq!(body["groups"], json!(["dev", "ops"]));
    assert_eq!(body["admin"], false);
    assert!(body["created_at"].is_string());
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("wrt_"));

    let me = api.get(token, "/v1/users/me").await;
    let me = me.assert_ok(200);
    assert_eq!(me["name"], "alice");
    assert!(me.get("token").is_none());

    let users = api.get(&api.admin, "/v1/users").await;
    let names: Vec<&str> = users.assert_ok(200)["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"admin") && names.contains(&"alice"));
    assert!(
        !users.text.contains("wrt_"),
        "a token leaked into the user list"
    );

    // An admin created through the API can administer.
    let root = api.add_user("root", true).await;
    api.post(&root, "/v1/users", json!({"name": "carol"}))
        .await
        .assert_ok(201);

    let events = api.audit_events().await;
    let created: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "user.created")
        .collect();
    assert_eq!(created.len(), 4); // admin, alice, root, carol
    assert_eq!(created[1]["actor"], "user:admin");
    assert_eq!(created[1]["subject"], "user:alice");
    assert_eq!(created[1]["data"]["groups"], json!(["dev", "ops"]));
    assert_eq!(created[3]["actor"], "user:root");
    assert!(
        !serde_json::to_string(&events).unwrap().contains(token),
        "a token leaked into the audit log"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn agents_are_created_listed_and_shown() {
    let s = Server::start().await;
    let api: &Api = &s;
    api.add_user("alice", false).await;
    let r = api
        .post(
            &api.admin,
            "/v1/agents",
            json!({"name": "claude-code", "tier": "propose", "owner": "alice", "description": "Claude Code in CI"}),
        )
        .await;
    let agent = r.assert_ok(201).clone();
    assert_eq!(agent["name"], "claude-code");
    assert_eq!(agent["tier"], "propose");
    assert_eq!(agent["owner"], "alice");
    assert_eq!(agent["description"], "Claude Code in CI");
    assert_eq!(agent["source"], "api");
    let bare = api
        .post(
            &api.admin,
            "/v1/agents",
            json!({"name": "reader", "tier": "read-only"}),
        )
        .await;
    assert_eq!(bare.assert_ok(201)["owner"], Value::Null);
    assert_eq!(bare.body["description"], "");

    let shown = api.get(&api.admin, "/v1/agents/claude-code").await;
    assert_eq!(shown.assert_ok(200), &agent);
    let list = api.get(&api.admin, "/v1/agents").await;
    assert_eq!(list.assert_ok(200)["agents"].as_array().unwrap().len(), 2);
    let events = api.audit_events().await;
    let e = events
        .iter()
        .find(|e| e["kind"] == "agent.created")
        .unwrap();
    assert_eq!(e["subject"], "agent:claude-code");
    assert_eq!(e["data"]["tier"], "propose");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn tasks_are_created_shown_and_listed() {
    let s = Server::start().await;
    let api: &Api = &s;
    let alice = api.add_user("alice", false).await;
    let bob = api.add_user("bob", false).await;
    api.add_agent("claude-code").await;
    api.add_agent("codex").await;
    let r = api
        .post(
            &alice,
            "/v1/tasks",
            json!({
                "agent": "claude-code",
                "purpose": "fix flaky test",
                "ticket": "ACME-12",
                "ttl": "30m",
                "scope": {"repos": ["acme/api", "acme/api"], "branches": ["fix/*"], "actions": ["repo.read", "repo.push"]},
            }),
        )
        .await;
    let mut t = r.assert_ok(201).clone();
    // The one-time claim is in the creation response only.
    let claim = t.as_object_mut().unwrap().remove("claim").unwrap();
    assert!(claim.as_str().unwrap().starts_with("wcl_"));
    let claim_expires = t
        .as_object_mut()
        .unwrap()
        .remove("claim_expires_at")
        .unwrap();
    assert!(ts(&claim_expires) <= ts(&t["expires_at"]));
    assert_eq!(t["agent"], "claude-code");
    assert_eq!(t["delegator"], "alice");
    assert_eq!(t["purpose"], "fix flaky test");
    assert_eq!(t["ticket"], "ACME-12");
    assert_eq!(t["state"], "pending");
    assert_eq!(t["end_reason"], Value::Null);
    assert_eq!(t["end_note"], Value::Null);
    assert_eq!(t["ended_at"], Value::Null);
    assert_eq!(
        t["scope"],
        json!({"repos": ["acme/api"], "branches": ["fix/*"], "environments": [], "actions": ["repo.read", "repo.push"], "tools": [], "secrets": []})
    );
    assert_eq!(
        ts(&t["expires_at"]).duration_since(ts(&t["created_at"])),
        SignedDuration::from_mins(30)
    );
    let id = t["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);

    // No ttl: the default (1h); no scope: empty lists.
    let d = api
        .post(
            &alice,
            "/v1/tasks",
            json!({"agent": "codex", "purpose": "triage"}),
        )
        .await;
    let d = d.assert_ok(201).clone();
    assert_eq!(
        ts(&d["expires_at"]).duration_since(ts(&d["created_at"])),
        SignedDuration::from_hours(1)
    );
    assert_eq!(d["scope"]["repos"], json!([]));
    let b = api.add_task(&bob, "claude-code", "1m").await;

    assert_eq!(
        api.get(&alice, &format!("/v1/tasks/{id}"))
            .await
            .assert_ok(200),
        &t
    );
    assert_eq!(
        api.get(&api.admin, &format!("/v1/tasks/{id}"))
            .await
            .assert_ok(200),
        &t
    );

    let ids = |r: crate::support::Resp| -> Vec<String> {
        r.assert_ok(200)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (t_id, d_id, b_id) = (
        id.to_owned(),
        d["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    // Newest first; non-admins see their own only.
    assert_eq!(
        ids(api.get(&alice, "/v1/tasks").await),
        vec![d_id.clone(), t_id.clone()]
    );
    assert_eq!(ids(api.get(&bob, "/v1/tasks").await), vec![b_id.clone()]);
    assert_eq!(
        ids(api.get(&api.admin, "/v1/tasks").await),
        vec![b_id.clone(), d_id.clone(), t_id.clone()]
    );
    assert_eq!(
        ids(api.get(&api.admin, "/v1/tasks?delegator=bob").await),
        vec![b_id.clone()]
    );
    assert_eq!(
        ids(api.get(&api.admin, "/v1/tasks?agent=codex").await),
        vec![d_id.clone()]
    );
    assert_eq!(
        ids(api.get(&api.admin, "/v1/tasks?limit=1").await),
        vec![b_id.clone()]
    );
    assert_eq!(
        ids(api
            .get(&alice, "/v1/tasks?agent=claude-code&state=pending")
            .await),
        vec![t_id.clone()]
    );
    assert_eq!(
        ids(api.get(&alice, "/v1/tasks?state=ended").await),
        Vec::<String>::new()
    );

    let events = api.audit_events().await;
    let e = events.iter().find(|e| e["kind"] == "task.created").unwrap();
    assert_eq!(e["actor"], "user:alice");
    assert_eq!(e["subject"], format!("task:{id}"));
    assert_eq!(e["task_id"], id);
    assert_eq!(e["data"]["purpose"], "fix flaky test");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn ending_a_task_completes_or_revokes_it() {
    let s = Server::start().await;
    let api: &Api = &s;
    let alice = api.add_user("alice", false).await;
    api.add_agent("claude-code").await;
    let mine = api.add_task(&alice, "claude-code", "30m").await;
    let theirs = api.add_task(&alice, "claude-code", "30m").await;
    let quiet = api.add_task(&alice, "claude-code", "30m").await;

    let r = api
        .post(
            &alice,
            &format!("/v1/tasks/{}/end", mine["id"].as_str().unwrap()),
            json!({"note": "done"}),
        )
        .await;
    let ended = r.assert_ok(200);
    assert_eq!(ended["state"], "ended");
    assert_eq!(ended["end_reason"], "completed");
    assert_eq!(ended["end_note"], "done");
    assert!(ended["ended_at"].is_string());

    let r = api
        .post(
            &api.admin,
            &format!("/v1/tasks/{}/end", theirs["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let revoked = r.assert_ok(200);
    assert_eq!(revoked["end_reason"], "revoked");
    assert_eq!(revoked["end_note"], Value::Null);

    // An empty body with no content type is allowed.
    let r = api
        .send(
            Method::POST,
            &format!("/v1/tasks/{}/end", quiet["id"].as_str().unwrap()),
            Some(&alice),
            None,
            None,
        )
        .await;
    assert_eq!(r.assert_ok(200)["end_reason"], "completed");

    let list = api.get(&alice, "/v1/tasks?state=ended").await;
    assert_eq!(list.assert_ok(200)["tasks"].as_array().unwrap().len(), 3);
    let events = api.audit_events().await;
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "task.ended")
        .collect();
    assert_eq!(ends.len(), 3);
    assert_eq!(ends[0]["actor"], "user:alice");
    assert_eq!(
        ends[0]["data"],
        json!({"reason": "completed", "note": "done"})
    );
    assert_eq!(ends[1]["actor"], "user:admin");
    assert_eq!(ends[1]["data"]["reason"], "revoked");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn narrowing_shrinks_scope_and_life() {
    let s = Server::start().await;
    let api: &Api = &s;
    let alice = api.add_user("alice", false).await;
    api.add_agent("claude-code").await;
    let t = api.add_task(&alice, "claude-code", "30m").await;
    let id = t["id"].as_str().unwrap();
    let r = api
        .post(
            &alice,
            &format!("/v1/tasks/{id}/narrow"),
            json!({"scope": {"repos": ["acme/api"], "actions": ["repo.read"]}, "ttl": "10m"}),
        )
        .await;
    let n = r.assert_ok(200).clone();
    assert_eq!(n["scope"]["repos"], json!(["acme/api"]));
    assert_eq!(n["scope"]["actions"], json!(["repo.read"]));
    assert!(ts(&n["expires_at"]) < ts(&t["expires_at"]));
    assert_eq!(n["state"], "pending");
    assert_eq!(
        api.get(&alice, &format!("/v1/tasks/{id}"))
            .await
            .assert_ok(200),
        &n
    );

    // Scope only: the expiry stays. Widening back is refused.
    let r = api
        .post(
            &api.admin,
            &format!("/v1/tasks/{id}/narrow"),
            json!({"scope": {"repos": []}}),
        )
        .await;
    let n2 = r.assert_ok(200).clone();
    assert_eq!(n2["scope"]["repos"], json!([]));
    assert_eq!(n2["expires_at"], n["expires_at"]);
    api.post(
        &alice,
        &format!("/v1/tasks/{id}/narrow"),
        json!({"scope": {"repos": ["acme/api"]}}),
    )
    .await
    .assert_problem(422, "invalid_scope");

    let events = api.audit_events().await;
    let narrowed: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "task.narrowed")
        .collect();
    assert_eq!(narrowed.len(), 2);
    assert_eq!(narrowed[0]["actor"], "user:alice");
    assert_eq!(narrowed[0]["task_id"], id);
    assert_eq!(narrowed[1]["actor"], "user:admin");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn audit_pages_and_filters() {
    let s = Server::start().await;
    let api: &Api = &s;
    let alice = api.add_user("alice", false).await;
    api.add_agent("claude-code").await;
    let t = api.add_task(&alice, "claude-code", "30m").await;
    let id = t["id"].as_str().unwrap();
    api.post(&alice, &format!("/v1/tasks/{id}/end"), json!({}))
        .await
        .assert_ok(200);
    for n in ["u1", "u2", "u3"] {
        api.add_user(n, false).await;
    }

    let all = api.audit_events().await;
    // The chain: consecutive seqs from 1, each linked to the one before.
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1);
        if i > 0 {
            assert_eq!(e["prev_hash"], all[i - 1]["hash"]);
        }
        for field in ["time", "kind", "actor", "subject", "data", "hash"] {
            assert!(!e[field].is_null(), "{field} in {e}");
        }
    }
    assert_eq!(all[0]["prev_hash"], "0".repeat(64));

    // Pages of 2 cover the same events, in order.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let r = api
            .get(&api.admin, &format!("/v1/audit?after={after}&limit=2"))
            .await;
        let page = r.assert_ok(200).clone();
        let events = page["events"].as_array().unwrap().clone();
        assert!(events.len() <= 2);
        if events.is_empty() {
            assert_eq!(page["next_after"], Value::Null);
            break;
        }
        assert_eq!(page["next_after"], events.last().unwrap()["seq"]);
        after = page["next_after"].as_u64().unwrap();
        paged.extend(events);
    }
    assert_eq!(paged, all);

    // Default page size is 100; filters by task and kind.
    let r = api.get(&api.admin, "/v1/audit").await;
    assert_eq!(
        r.assert_ok(200)["events"].as_array().unwrap().len(),
        all.len().min(100)
    );
    let r = api.get(&api.admin, &format!("/v1/audit?task={id}")).await;
    let kinds: Vec<&str> = r.assert_ok(200)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["task.created", "task.ended"]);
    let r = api
        .get(&api.admin, "/v1/audit?kind=user.created&after=3")
        .await;
    let events = r.assert_ok(200)["events"].as_array().unwrap().clone();
    assert!(
        events
            .iter()
            .all(|e| e["kind"] == "user.created" && e["seq"].as_u64().unwrap() > 3)
    );
    assert_eq!(
        events.len(),
        all.iter()
            .filter(|e| e["kind"] == "user.created" && e["seq"].as_u64().unwrap() > 3)
            .count()
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_reports_the_store() {
    let s = Server::start().await;
    let r = s.send(Method::GET, "/readyz", None, None, None).await;
    assert_eq!(
        r.assert_ok(200),
        &json!({"status": "ready", "store": "sqlite"})
    );
    s.stop().await.unwrap();
}
