//! Bad input is refused with a specific problem code and changes nothing:
//! no row, no audit event.

use serde_json::json;

use crate::support::{Api, Server};

/// Sends a request through `send`, checks the problem, and checks that the
/// server's visible state (audit head, users, agents, tasks) is unchanged.
macro_rules! refused {
    ($api:expr, $status:expr, $code:expr, $send:expr) => {{
        let before = $api.snapshot().await;
        let resp = $send;
        resp.assert_problem($status, $code);
        assert_eq!(
            before,
            $api.snapshot().await,
            "a refused request changed something"
        );
        resp
    }};
}

/// A server with user `alice` and agent `claude-code`.
async fn setup() -> (Server, String) {
    let server = Server::start().await;
    let alice = server.add_user("alice", false).await;
    server.add_agent("claude-code").await;
    (server, alice)
}

fn task(extra: serde_json::Value) -> serde_json::Value {
    let mut body = json!({ "agent": "claude-code", "purpose": "fix the flaky test" });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn malformed_json_is_malformed_json() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    for body in [r#"{"name":"#, "not json", r#"{"name":"bob",}"#, ""] {
        refused!(
            api,
            400,
            "malformed_json",
            api.post_raw(&api.admin, "/v1/users", Some("application/json"), body)
                .await
        );
    }
    refused!(
        api,
        400,
        "malformed_json",
        api.post_raw(&alice, "/v1/tasks", Some("application/json"), "{")
            .await
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_shapes_are_invalid_body() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    // Unknown field, at the top and inside the scope.
    let r = refused!(
        api,
        422,
        "invalid_body",
        api.post(
            &api.admin,
            "/v1/users",
            json!({"name": "bob", "colour": "blue"})
        )
        .await
    );
    assert!(r.detail().contains("colour"), "{}", r.detail());
    let r = refused!(
        api,
        422,
        "invalid_body",
        api.post(
            &alice,
            "/v1/tasks",
            task(json!({"scope": {"repoz": ["acme/api"]}}))
        )
        .await
    );
    assert!(r.detail().contains("repoz"), "{}", r.detail());
    refused!(
        api,
        422,
        "invalid_body",
        api.post(
            &api.admin,
            "/v1/agents",
            json!({"name": "x", "tier": "propose", "model": "big"})
        )
        .await
    );
    // Wrong types.
    refused!(
        api,
        422,
        "invalid_body",
        api.post(&api.admin, "/v1/users", json!({"name": 5})).await
    );
    refused!(
        api,
        422,
        "invalid_body",
        api.post(
            &api.admin,
            "/v1/users",
            json!({"name": "bob", "admin": "yes"})
        )
        .await
    );
    refused!(
        api,
        422,
        "invalid_body",
        api.post(
            &alice,
            "/v1/tasks",
            task(json!({"scope": {"repos": "acme/api"}}))
        )
        .await
    );
    refused!(
        api,
        422,
        "invalid_body",
        api.post(&alice, "/v1/tasks", json!(["claude-code"])).await
    );
    // Missing fields.
    let r = refused!(
        api,
        422,
        "invalid_body",
        api.post(&alice, "/v1/tasks", json!({"agent": "claude-code"}))
            .await
    );
    assert!(r.detail().contains("purpose"), "{}", r.detail());
    refused!(
        api,
        422,
        "invalid_body",
        api.post(&api.admin, "/v1/agents", json!({"name": "x"}))
            .await
    );
    // Purpose and ticket bounds.
    refused!(
        api,
        422,
        "invalid_body",
        api.post(&alice, "/v1/tasks", task(json!({"purpose": "  "})))
            .await
    );
    refused!(
        api,
        422,
        "invalid_body",
        api.post(
            &alice,
            "/v1/tasks",
            task(json!({"purpose": "x".repeat(501)}))
        )
        .await
    );
    refused!(
        api,
        422,
        "invalid_body",
        api.post(
            &alice,
            "/v1/tasks",
            task(json!({"ticket": "t".repeat(201)}))
        )
        .await
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_ttls_are_invalid_ttl_and_name_the_bounds() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    for ttl in ["30s", "59s", "9h", "8h1m", "-5m", "soon", "", "30"] {
        let r = refused!(
            api,
            422,
            "invalid_ttl",
            api.post(&alice, "/v1/tasks", task(json!({"ttl": ttl})))
                .await
        );
        assert!(
            r.detail().contains("1m") && r.detail().contains("8h"),
            "{ttl}: {}",
            r.detail()
        );
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_agent_and_owner_are_refused() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    let r = refused!(
        api,
        422,
        "unknown_agent",
        api.post(&alice, "/v1/tasks", task(json!({"agent": "gpt-9"})))
            .await
    );
    assert!(r.detail().contains("`gpt-9`"), "{}", r.detail());
    refused!(
        api,
        422,
        "unknown_user",
        api.post(
            &api.admin,
            "/v1/agents",
            json!({"name": "bot", "tier": "propose", "owner": "nobody"})
        )
        .await
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn duplicates_are_conflicts() {
    let (s, _alice) = setup().await;
    let api: &Api = &s;
    refused!(
        api,
        409,
        "user_exists",
        api.post(&api.admin, "/v1/users", json!({"name": "alice"}))
            .await
    );
    refused!(
        api,
        409,
        "user_exists",
        api.post(
            &api.admin,
            "/v1/users",
            json!({"name": "admin", "admin": true})
        )
        .await
    );
    refused!(
        api,
        409,
        "agent_exists",
        api.post(
            &api.admin,
            "/v1/agents",
            json!({"name": "claude-code", "tier": "read-only"})
        )
        .await
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_names_and_tiers_are_refused() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    for name in ["Bob", "-bob", "bob smith", "", "b/ob", &"b".repeat(64)] {
        refused!(
            api,
            422,
            "invalid_name",
            api.post(&api.admin, "/v1/users", json!({"name": name}))
                .await
        );
        refused!(
            api,
            422,
            "invalid_name",
            api.post(
                &api.admin,
                "/v1/agents",
                json!({"name": name, "tier": "propose"})
            )
            .await
        );
    }
    refused!(
        api,
        422,
        "invalid_name",
        api.post(
            &api.admin,
            "/v1/users",
            json!({"name": "bob", "groups": ["dev", "Ops Team"]})
        )
        .await
    );
    refused!(
        api,
        422,
        "invalid_name",
        api.post(
            &api.admin,
            "/v1/agents",
            json!({"name": "bot", "tier": "propose", "owner": "Alice"})
        )
        .await
    );
    refused!(
        api,
        422,
        "invalid_name",
        api.post(&alice, "/v1/tasks", task(json!({"agent": "Claude"})))
            .await
    );
    for tier in ["god", "Propose", "read_only", ""] {
        refused!(
            api,
            422,
            "invalid_tier",
            api.post(
                &api.admin,
                "/v1/agents",
                json!({"name": "bot", "tier": tier})
            )
            .await
        );
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_scope_entries_are_invalid_scope() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    let bad = [
        json!({"repos": ["acme"]}),
        json!({"repos": ["acme/../etc"]}),
        json!({"branches": ["a..b"]}),
        json!({"branches": ["feature/"]}),
        json!({"environments": ["prod env"]}),
        json!({"actions": ["Repo.Read"]}),
        json!({"tools": ["/github"]}),
        json!({"secrets": ["a b"]}),
        json!({"repos": (0..101).map(|i| format!("acme/r{i}")).collect::<Vec<_>>()}),
    ];
    for scope in bad {
        refused!(
            api,
            422,
            "invalid_scope",
            api.post(&alice, "/v1/tasks", task(json!({"scope": scope})))
                .await
        );
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn non_json_content_types_are_unsupported() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    let body = r#"{"name":"bob"}"#;
    refused!(
        api,
        415,
        "unsupported_media_type",
        api.post_raw(&api.admin, "/v1/users", Some("text/plain"), body)
            .await
    );
    refused!(
        api,
        415,
        "unsupported_media_type",
        api.post_raw(&api.admin, "/v1/users", None, body).await
    );
    refused!(
        api,
        415,
        "unsupported_media_type",
        api.post_raw(
            &api.admin,
            "/v1/users",
            Some("application/x-www-form-urlencoded"),
            "name=bob"
        )
        .await
    );
    let t = api.add_task(&alice, "claude-code", "30m").await;
    let id = t["id"].as_str().unwrap();
    // Ending accepts an empty body without a content type, not a non-JSON one.
    refused!(
        api,
        415,
        "unsupported_media_type",
        api.post_raw(
            &alice,
            &format!("/v1/tasks/{id}/end"),
            Some("text/plain"),
            "done"
        )
        .await
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn oversize_bodies_are_payload_too_large() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    let big = json!({"name": "bob", "groups": vec!["dev"; 20_000]}).to_string();
    assert!(big.len() > 64 * 1024);
    refused!(
        api,
        413,
        "payload_too_large",
        api.post_raw(&api.admin, "/v1/users", Some("application/json"), &big)
            .await
    );
    let big_task = task(json!({"purpose": "x".repeat(70 * 1024)})).to_string();
    refused!(
        api,
        413,
        "payload_too_large",
        api.post_raw(&alice, "/v1/tasks", Some("application/json"), &big_task)
            .await
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_query_parameters_are_invalid_query() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    for q in [
        "state=foo",
        "limit=abc",
        "limit=0",
        "limit=1001",
        "agent=Not%20A%20Name",
        "colour=blue",
    ] {
        refused!(
            api,
            400,
            "invalid_query",
            api.get(&alice, &format!("/v1/tasks?{q}")).await
        );
    }
    for q in [
        "after=-1",
        "after=x",
        "task=not-a-uuid",
        "limit=5000",
        "kind=",
    ] {
        refused!(
            api,
            400,
            "invalid_query",
            api.get(&api.admin, &format!("/v1/audit?{q}")).await
        );
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_task_ids_are_invalid_task_id() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    refused!(
        api,
        400,
        "invalid_task_id",
        api.get(&alice, "/v1/tasks/not-a-uuid").await
    );
    refused!(
        api,
        400,
        "invalid_task_id",
        api.post(&alice, "/v1/tasks/123/end", json!({})).await
    );
    refused!(
        api,
        400,
        "invalid_task_id",
        api.post(&alice, "/v1/tasks/123/narrow", json!({"ttl": "5m"}))
            .await
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_narrowing_is_refused() {
    let (s, alice) = setup().await;
    let api: &Api = &s;
    let t = api.add_task(&alice, "claude-code", "30m").await;
    let path = format!("/v1/tasks/{}/narrow", t["id"].as_str().unwrap());
    // Widening: a repo the task does not have.
    let r = refused!(
        api,
        422,
        "invalid_scope",
        api.post(&alice, &path, json!({"scope": {"repos": ["acme/ops"]}}))
            .await
    );
    assert!(r.detail().contains("acme/ops"), "{}", r.detail());
    refused!(
        api,
        422,
        "invalid_scope",
        api.post(&alice, &path, json!({"scope": {"actions": ["deploy"]}}))
            .await
    );
    refused!(
        api,
        422,
        "invalid_scope",
        api.post(&alice, &path, json!({"scope": {"repos": ["not a repo"]}}))
            .await
    );
    // A longer life, or a bad ttl.
    refused!(
        api,
        422,
        "invalid_ttl",
        api.post(&alice, &path, json!({"ttl": "2h"})).await
    );
    refused!(
        api,
        422,
        "invalid_ttl",
        api.post(&alice, &path, json!({"ttl": "10s"})).await
    );
    refused!(
        api,
        422,
        "invalid_ttl",
        api.post(&alice, &path, json!({"ttl": "whenever"})).await
    );
    // Nothing to narrow, unknown fields.
    refused!(
        api,
        422,
        "invalid_body",
        api.post(&alice, &path, json!({})).await
    );
    refused!(
        api,
        422,
        "invalid_body",
        api.post(&alice, &path, json!({"ttl": "5m", "purpose": "x"}))
            .await
    );
    s.stop().await.unwrap();
}

/// Without a Content-Length the limit is hit while the body streams in;
/// that path must answer the same problem.
#[tokio::test]
async fn oversize_chunked_bodies_are_payload_too_large() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (s, _alice) = setup().await;
    let api: &Api = &s;
    let before = api.snapshot().await;
    let mut stream = tokio::net::TcpStream::connect(s.ready.addr).await.unwrap();
    let head = format!(
        "POST /v1/users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        api.admin
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", " ".repeat(0x400));
    // The server may answer and close before the whole body is sent.
    let _ = stream.write_all(b"9\r\n{\"name\":\"\r\n").await;
    for _ in 0..80 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"2\r\n\"}\r\n0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 413"), "{response}");
    assert!(
        response.contains("content-type: application/problem+json"),
        "{response}"
    );
    assert!(
        response.contains("\"code\":\"payload_too_large\""),
        "{response}"
    );
    assert_eq!(before, api.snapshot().await);
    s.stop().await.unwrap();
}
