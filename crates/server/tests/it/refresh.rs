//! Run-token refresh (`urn:warrant:grant-type:refresh`) against the real
//! server on a fake clock: a run and the runs it delegated to outlive their
//! first tokens by refreshing with their own keys, never past the task or
//! the parent; another key, an expired token or an ended task is refused
//! and audited.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use warrant_core::{Clock as _, FakeClock};
use warrant_crypto::jws::JwsAlg;

use crate::exchange::{claims, exchange};
use crate::support::{Api, Resp, TestApp};
use crate::tokens::{Dpop, post_token, redeem};

const REFRESH: &str = "urn:warrant:grant-type:refresh";

async fn refresh(api: &Api, client: &Dpop, token: &str, at: Timestamp) -> Resp {
    let url = format!("{}/v1/token", api.base);
    post_token(
        api,
        &[("grant_type", REFRESH), ("subject_token", token)],
        Some(&client.proof_at("POST", &url, Some(token), at)),
    )
    .await
    .0
}

async fn me_at(api: &Api, client: &Dpop, token: &str, at: Timestamp) -> u16 {
    let url = format!("{}/v1/runs/me", api.base);
    crate::tokens::me(
        api,
        token,
        Some(&client.proof_at("GET", &url, Some(token), at)),
        "DPoP",
    )
    .await
    .status
}

async fn refusals(api: &Api) -> Vec<Value> {
    api.audit_events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "token.refused" && e["data"]["grant_type"] == REFRESH)
        .collect()
}

#[tokio::test]
async fn runs_and_their_children_refresh_within_the_task_and_parent() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let app = TestApp::start(clock.clone()).await;
    let bob = app.add_user("bob", false).await;
    app.add_agent("claude").await;
    let task = app.add_task(&bob, "claude", "1h").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let (root, first) = redeem(&app, &task).await;
    let child = Dpop::new(JwsAlg::EdDSA);
    let r = exchange(&app, &root, &first, &child, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let child_first = r.body["access_token"].as_str().unwrap().to_owned();
    let first_claims = claims(&first);
    assert_eq!(
        first_claims["exp"].as_i64().unwrap() - first_claims["iat"].as_i64().unwrap(),
        600
    );

    // Eight minutes on, the root refreshes with its own key: same run, same
    // key, a new jti and a later expiry.
    clock.advance(SignedDuration::from_mins(8));
    let now = clock.now();
    let r = refresh(&app, &root, &first, now).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["token_type"], "DPoP");
    let second = r.body["access_token"].as_str().unwrap().to_owned();
    let c2 = claims(&second);
    assert_eq!(c2["sub"], first_claims["sub"]);
    assert_eq!(c2["cnf"], first_claims["cnf"]);
    assert_ne!(c2["jti"], first_claims["jti"]);
    assert_eq!(c2["exp"].as_i64().unwrap(), now.as_second() + 600);
    assert_eq!(
        r.body["run_id"],
        first_claims["sub"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
    );

    // The child refreshes too; its chain and scope are kept.
    let r = refresh(&app, &child, &child_first, now).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let child_second = r.body["access_token"].as_str().unwrap().to_owned();
    let cc1 = claims(&child_first);
    let cc2 = claims(&child_second);
    assert_eq!(cc2["act"], cc1["act"]);
    assert_eq!(cc2["warrant_scope"], cc1["warrant_scope"]);
    assert!(cc2["exp"].as_i64().unwrap() <= c2["exp"].as_i64().unwrap());

    // Past the first tokens' expiry: the old ones are dead, the refreshed
    // ones (root and child) work.
    clock.advance(SignedDuration::from_mins(4));
    let now = clock.now();
    assert_eq!(me_at(&app, &root, &first, now).await, 401);
    assert_eq!(me_at(&app, &root, &second, now).await, 200);
    assert_eq!(me_at(&app, &child, &child_second, now).await, 200);

    // Refusals: another key's proof, an expired token. Each is audited and
    // issues nothing.
    let before = refusals(&app).await.len();
    let thief = Dpop::new(JwsAlg::ES256);
    let r = refresh(&app, &thief, &second, now).await;
    assert!(r.status == 400 || r.status == 401, "{}", r.text);
    assert!(r.body["access_token"].is_null(), "{}", r.text);
    let r = refresh(&app, &root, &first, now).await;
    assert!(r.status == 400 || r.status == 401, "{}", r.text);
    assert_eq!(r.body["error"], "invalid_token", "{}", r.text);
    assert_eq!(refusals(&app).await.len(), before + 2);
    let refreshed = app
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "run.refreshed")
        .count();
    assert_eq!(refreshed, 2);

    // Once the task has ended, nothing refreshes.
    app.post(
        &bob,
        &format!("/v1/tasks/{task_id}/end"),
        serde_json::json!({}),
    )
    .await
    .assert_ok(200);
    let r = refresh(&app, &root, &second, now).await;
    assert!(r.status == 400 || r.status == 401, "{}", r.text);
    assert!(r.body["access_token"].is_null(), "{}", r.text);
    let r = refresh(&app, &child, &child_second, now).await;
    assert!(r.body["access_token"].is_null(), "{}", r.text);
    app.stop().await;
}

#[tokio::test]
async fn a_child_cannot_outlive_a_parent_that_stops_refreshing() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let app = TestApp::start(clock.clone()).await;
    let bob = app.add_user("bob", false).await;
    app.add_agent("claude").await;
    let task = app.add_task(&bob, "claude", "1h").await;
    let (root, first) = redeem(&app, &task).await;
    let child = Dpop::new(JwsAlg::ES256);
    let r = exchange(&app, &root, &first, &child, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let child_first = r.body["access_token"].as_str().unwrap().to_owned();
    let root_exp = claims(&first)["exp"].as_i64().unwrap();

    // The child refreshes, but its parent never does: capped at the
    // parent's expiry, and once the parent has expired, refused.
    clock.advance(SignedDuration::from_mins(5));
    let r = refresh(&app, &child, &child_first, clock.now()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let child_second = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&child_second)["exp"].as_i64().unwrap(), root_exp);
    clock.advance(SignedDuration::from_mins(4));
    let r = refresh(&app, &child, &child_second, clock.now()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let child_third = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&child_third)["exp"].as_i64().unwrap(), root_exp);
    clock.advance(SignedDuration::from_secs(61));
    let before = refusals(&app).await.len();
    let r = refresh(&app, &child, &child_third, clock.now()).await;
    assert!(r.status == 400 || r.status == 401, "{}", r.text);
    assert!(r.body["access_token"].is_null(), "{}", r.text);
    assert_eq!(refusals(&app).await.len(), before + 1);
    app.stop().await;
}
