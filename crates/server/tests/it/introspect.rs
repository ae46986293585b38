//! `POST /v1/introspect` (RFC 7662) against the real server.

use reqwest::Method;
use serde_json::{Value, json};
use warrant_crypto::jws::JwsAlg;

use crate::support::{Api, Resp};
use crate::tokens::{Dpop, assert_oauth, me_status, redeem, setup, urlencode};

/// Introspects `token` as the holder of API token `caller` (if any).
pub async fn introspect(api: &Api, caller: Option<&str>, token: &str) -> Resp {
    api.send(
        Method::POST,
        "/v1/introspect",
        caller,
        Some("application/x-www-form-urlencoded"),
        Some(format!("token={}", urlencode(token)).into_bytes()),
    )
    .await
}

#[tokio::test]
async fn a_live_token_is_active_until_its_task_ends() {
    let (server, bob, task) = setup().await;
    let (client, token) = redeem(&server, &task).await;

    // Any user may introspect, not only the token's delegator.
    let carol = server.add_user("carol", false).await;
    let r = introspect(&server, Some(&carol), &token).await;
    let body = r.assert_ok(200).clone();
    assert_eq!(body["active"], true, "{}", r.text);
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["task"], task["id"]);
    assert_eq!(body["agent"], "claude");
    assert_eq!(body["delegator"], "bob");
    assert_eq!(body["iss"], server.base);
    assert!(body["aud"].is_string());
    assert!(body["sub"].as_str().unwrap().starts_with("spiffe://"));
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());
    let jkt = body["cnf"]["jkt"].as_str().unwrap().to_owned();
    let me_url = format!("{}/v1/runs/me", server.base);
    let r = crate::tokens::me(
        &server,
        &token,
        Some(&client.proof("GET", &me_url, Some(&token))),
        "DPoP",
    )
    .await;
    assert_eq!(
        r.body["jkt"],
        jkt.as_str(),
        "the binding matches the run's key"
    );

    let id = task["id"].as_str().unwrap();
    let r = server
        .post(&bob, &format!("/v1/tasks/{id}/end"), json!({}))
        .await;
    r.assert_ok(200);
    let r = introspect(&server, Some(&carol), &token).await;
    assert_eq!(r.assert_ok(200), &json!({"active": false}));
    assert_eq!(me_status(&server, &client, &token).await, 401);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn garbage_forged_and_foreign_tokens_are_inactive() {
    let (server, bob, task) = setup().await;
    let (_, token) = redeem(&server, &task).await;
    // A token with a flipped signature byte, and one signed by another key.
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let other = Dpop::new(JwsAlg::EdDSA);
    let foreign = other.proof("GET", "https://example.test/", None);
    for bad in [
        "garbage",
        "a.b.c",
        "",
        &forged,
        &foreign,
        &"x".repeat(10_000),
    ] {
        let r = introspect(&server, Some(&bob), bad).await;
        assert_eq!(r.assert_ok(200), &json!({"active": false}), "{bad:.40}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn introspection_needs_an_api_token_and_a_token_parameter() {
    let (server, bob, task) = setup().await;
    let (_, token) = redeem(&server, &task).await;
    let r = introspect(&server, None, &token).await;
    r.assert_problem(401, "unauthenticated");
    let r = introspect(&server, Some("wat_not-a-real-token"), &token).await;
    r.assert_problem(401, "unauthenticated");
    let r = server
        .send(
            Method::POST,
            "/v1/introspect",
            Some(&bob),
            Some("application/x-www-form-urlencoded"),
            Some(b"nothing=here".to_vec()),
        )
        .await;
    assert_oauth(&r, 400, "invalid_request");
    let r = server
        .send(
            Method::GET,
            "/.well-known/openid-configuration",
            None,
            None,
            None,
        )
        .await;
    let conf: Value = r.assert_ok(200).clone();
    assert_eq!(
        conf["introspection_endpoint"],
        format!("{}/v1/introspect", server.base)
    );
    server.stop().await.unwrap();
}
