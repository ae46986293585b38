//! `POST /v1/keys/rotate` (what `warrant keys rotate` calls): a new key
//! signs from now on, the retired one keeps verifying until every token it
//! signed has expired, then leaves the JWKS.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use warrant_core::FakeClock;
use warrant_crypto::jws::decode_header;
use warrant_server::bootstrap;

use crate::introspect::introspect;
use crate::support::TestApp;
use crate::tokens::{me_status, redeem};

fn kid_of(token: &str) -> String {
    decode_header(token).unwrap().kid.unwrap()
}

async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let r = app.get(&app.admin, "/.well-known/jwks.json").await;
    let body: &Value = r.assert_ok(200);
    let mut kids: Vec<String> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_they_expire() {
    let clock = Arc::new(FakeClock::new(Timestamp::now()));
    let app = TestApp::start(clock.clone()).await;
    let bob = app.add_user("bob", false).await;
    app.add_agent("claude").await;
    let before = app.add_task(&bob, "claude", "30m").await;
    let (old_client, old_token) = redeem(&app, &before).await;
    let old_kid = app.key.kid().to_owned();
    assert_eq!(kid_of(&old_token), old_kid);

    // Only admins rotate; a refused rotation changes nothing.
    app.post(&bob, "/v1/keys/rotate", json!({}))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(jwks_kids(&app).await, vec![old_kid.clone()]);

    let r = app.post(&app.admin, "/v1/keys/rotate", json!({})).await;
    let body = r.assert_ok(200).clone();
    let new_kid = body["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(body["retired_kid"], old_kid.as_str());
    let file = app.dir.path().join(format!("keys/{new_kid}.pem"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The token signed before the rotation still works and is active.
    assert_eq!(me_status(&app, &old_client, &old_token).await, 200);
    let r = introspect(&app, Some(&bob), &old_token).await;
    assert_eq!(r.assert_ok(200)["active"], true, "{}", r.text);

    // New tokens carry the new kid and verify.
    let after = app.add_task(&bob, "claude", "30m").await;
    let (new_client, new_token) = redeem(&app, &after).await;
    assert_eq!(kid_of(&new_token), new_kid);
    assert_eq!(me_status(&app, &new_client, &new_token).await, 200);

    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert_eq!(jwks_kids(&app).await, both);

    // Both events, in order, by the admin.
    let r = app.get(&app.admin, "/v1/audit?kind=keys.rotated").await;
    let events = r.assert_ok(200).clone();
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["actor"], "user:admin");
    assert_eq!(events[0]["data"]["retired"], old_kid.as_str());

    // Still published right up to the end of the longest token lifetime
    // plus leeway; gone after it.
    let publish_for = app.state.issuer.run_token_ttl + app.state.issuer.dpop.max_future_skew;
    clock.advance(publish_for - SignedDuration::from_secs(1));
    assert_eq!(jwks_kids(&app).await, both);
    clock.advance(SignedDuration::from_secs(2));
    assert_eq!(jwks_kids(&app).await, vec![new_kid.clone()]);
    let r = introspect(&app, Some(&bob), &old_token).await;
    assert_eq!(r.assert_ok(200)["active"], false, "{}", r.text);

    // A restart on the same data directory and store signs with the new key.
    let boot = bootstrap::run(&*app.store, &*clock, app.dir.path(), &[])
        .await
        .unwrap();
    assert_eq!(boot.key.kid(), new_kid);
}
