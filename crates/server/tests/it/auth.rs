//! Authentication (401) and authorization (403), plus 404/405/409 on the
//! resources callers touch.

use reqwest::Method;
use serde_json::json;

use crate::support::{Api, Server};

#[tokio::test]
async fn missing_wrong_and_malformed_tokens_are_unauthenticated() {
    let s = Server::start().await;
    let api: &Api = &s;
    let before = api.snapshot().await;
    let wrong = "wrt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let cases: Vec<(Method, &str, Option<String>)> = vec![
        (Method::GET, "/v1/users/me", None),
        (Method::GET, "/v1/users/me", Some(format!("Bearer {wrong}"))),
        (
            Method::GET,
            "/v1/tasks",
            Some(format!("Bearer {}x", api.admin)),
        ),
        (
            Method::GET,
            "/v1/audit",
            Some(format!("Basic {}", api.admin)),
        ),
        (Method::GET, "/v1/agents", Some("Bearer".to_owned())),
        (Method::GET, "/v1/agents", Some("Bearer ".to_owned())),
        (
            Method::GET,
            "/v1/agents",
            Some(format!("Bearer {} extra", api.admin)),
        ),
        (Method::GET, "/v1/agents", Some(api.admin.clone())),
        (Method::POST, "/v1/users", None),
        (Method::POST, "/v1/tasks", Some(format!("Bearer {wrong}"))),
    ];
    for (method, path, header) in cases {
        let mut req = api
            .http
            .request(method.clone(), format!("{}{path}", api.base));
        if let Some(h) = &header {
            req = req.header("authorization", h);
        }
        if method == Method::POST {
            req = req
                .header("content-type", "application/json")
                .body(json!({"name": "mallory", "agent": "x", "purpose": "x"}).to_string());
        }
        let res = req.send().await.unwrap();
        let www = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = res.status().as_u16();
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(status, 401, "{method} {path} {header:?}: {body}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(body["code"], "unauthenticated");
        assert!(
            www.is_some_and(|w| w.starts_with("Bearer")),
            "{path} {header:?}"
        );
    }
    assert_eq!(before, api.snapshot().await);
    // The health endpoints need no token.
    let r = api.send(Method::GET, "/healthz", None, None, None).await;
    assert_eq!(r.assert_ok(200)["status"], "ok");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn non_admins_cannot_manage_users_agents_or_read_audit() {
    let s = Server::start().await;
    let api: &Api = &s;
    let alice = api.add_user("alice", false).await;
    let before = api.snapshot().await;
    api.post(&alice, "/v1/users", json!({"name": "bob"}))
        .await
        .assert_problem(403, "forbidden");
    api.post(
        &alice,
        "/v1/users",
        json!({"name": "alice2", "admin": true}),
    )
    .await
    .assert_problem(403, "forbidden");
    // Refused before the body is looked at.
    api.post_raw(&alice, "/v1/users", Some("application/json"), "{oops")
        .await
        .assert_problem(403, "forbidden");
    api.post(
        &alice,
        "/v1/agents",
        json!({"name": "bot", "tier": "privileged"}),
    )
    .await
    .assert_problem(403, "forbidden");
    api.get(&alice, "/v1/users")
        .await
        .assert_problem(403, "forbidden");
    api.get(&alice, "/v1/audit")
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(before, api.snapshot().await);
    // What any user may do.
    assert_eq!(
        api.get(&alice, "/v1/users/me").await.assert_ok(200)["name"],
        "alice"
    );
    api.get(&alice, "/v1/agents").await.assert_ok(200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn users_cannot_touch_each_others_tasks() {
    let s = Server::start().await;
    let api: &Api = &s;
    let alice = api.add_user("alice", false).await;
    let bob = api.add_user("bob", false).await;
    api.add_agent("claude-code").await;
    let t = api.add_task(&alice, "claude-code", "30m").await;
    let id = t["id"].as_str().unwrap();
    let before = api.snapshot().await;
    api.get(&bob, &format!("/v1/tasks/{id}"))
        .await
        .assert_problem(403, "forbidden");
    api.post(
        &bob,
        &format!("/v1/tasks/{id}/end"),
        json!({"note": "mine now"}),
    )
    .await
    .assert_problem(403, "forbidden");
    api.post(
        &bob,
        &format!("/v1/tasks/{id}/narrow"),
        json!({"ttl": "5m"}),
    )
    .await
    .assert_problem(403, "forbidden");
    api.get(&bob, "/v1/tasks?delegator=alice")
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(before, api.snapshot().await);
    // Bob's own list does not show Alice's task; asking for his own is fine.
    let list = api.get(&bob, "/v1/tasks").await;
    assert_eq!(list.assert_ok(200)["tasks"], json!([]));
    let list = api.get(&bob, "/v1/tasks?delegator=bob").await;
    assert_eq!(list.assert_ok(200)["tasks"], json!([]));
    let list = api.get(&alice, "/v1/tasks").await;
    assert_eq!(list.assert_ok(200)["tasks"][0]["id"], id);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_and_ended_tasks() {
    let s = Server::start().await;
    let api: &Api = &s;
    let alice = api.add_user("alice", false).await;
    api.add_agent("claude-code").await;
    let t = api.add_task(&alice, "claude-code", "30m").await;
    let id = t["id"].as_str().unwrap();
    let missing = "0192f5a4-7c1e-7b3a-9d2e-5f8a1b2c3d4e";
    let before = api.snapshot().await;
    api.get(&alice, &format!("/v1/tasks/{missing}"))
        .await
        .assert_problem(404, "task_not_found");
    api.post(&alice, &format!("/v1/tasks/{missing}/end"), json!({}))
        .await
        .assert_problem(404, "task_not_found");
    api.post(
        &api.admin,
        &format!("/v1/tasks/{missing}/narrow"),
        json!({"ttl": "5m"}),
    )
    .await
    .assert_problem(404, "task_not_found");
    assert_eq!(before, api.snapshot().await);

    api.post(&alice, &format!("/v1/tasks/{id}/end"), json!({}))
        .await
        .assert_ok(200);
    let before = api.snapshot().await;
    api.post(&alice, &format!("/v1/tasks/{id}/end"), json!({}))
        .await
        .assert_problem(409, "task_ended");
    api.post(
        &api.admin,
        &format!("/v1/tasks/{id}/end"),
        json!({"note": "again"}),
    )
    .await
    .assert_problem(409, "task_ended");
    api.post(
        &alice,
        &format!("/v1/tasks/{id}/narrow"),
        json!({"ttl": "5m"}),
    )
    .await
    .assert_problem(409, "task_ended");
    assert_eq!(before, api.snapshot().await);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let s = Server::start().await;
    let api: &Api = &s;
    let before = api.snapshot().await;
    for path in ["/", "/v1", "/v1/nope", "/v2/tasks", "/v1/tasks/x/y/z"] {
        api.send(Method::GET, path, None, None, None)
            .await
            .assert_problem(404, "not_found");
        api.get(&api.admin, path)
            .await
            .assert_problem(404, "not_found");
    }
    api.send(Method::DELETE, "/v1/users", Some(&api.admin), None, None)
        .await
        .assert_problem(405, "method_not_allowed");
    api.send(Method::PUT, "/v1/tasks", Some(&api.admin), None, None)
        .await
        .assert_problem(405, "method_not_allowed");
    api.send(Method::POST, "/healthz", None, None, None)
        .await
        .assert_problem(405, "method_not_allowed");
    // An unknown agent by name.
    api.get(&api.admin, "/v1/agents/nobody")
        .await
        .assert_problem(404, "agent_not_found");
    api.get(&api.admin, "/v1/agents/Not%20Valid")
        .await
        .assert_problem(404, "agent_not_found");
    assert_eq!(before, api.snapshot().await);
    s.stop().await.unwrap();
}
