//! Human sign-in with an ID token from a real IdP on loopback.

use serde_json::json;
use warrant_core::Name;
use warrant_identity::{IdentityError, verify_id_token, verify_workload_token};

use crate::harness::{GITHUB_RULES, MockIssuer, clock, issuer, task};

const HUMAN: &str = r#"
[human]
user_claim = "preferred_username"
groups_claim = "groups"
[human.required]
email_verified = "true"
"#;

fn id_claims(user: &str) -> serde_json::Value {
    json!({
        "aud": "warrant",
        "sub": "00u1abc",
        "preferred_username": user,
        "email_verified": true,
        "groups": ["dev", "ops", "Not A Name", "dev"],
        "nonce": "n-0S6_WzA2Mj",
    })
}

#[tokio::test]
async fn an_id_token_maps_to_a_user_and_groups() {
    let mut mock = MockIssuer::start();
    let issuer = issuer(&mock.url, HUMAN);
    let token = mock.token(id_claims("alice"));
    let p = verify_id_token(&token, &issuer, Some("n-0S6_WzA2Mj"), &clock())
        .await
        .unwrap();
    assert_eq!(p.user, Name::parse("user", "alice").unwrap());
    assert_eq!(p.subject, "00u1abc");
    let groups: Vec<&str> = p.groups.iter().map(Name::as_str).collect();
    assert_eq!(groups, ["dev", "ops"]);
}

#[tokio::test]
async fn an_id_token_that_fails_a_mapping_rule_is_refused() {
    let mut mock = MockIssuer::start();
    let issuer = issuer(&mock.url, HUMAN);
    let token = mock.token(id_claims("Alice@example.com"));
    let err = verify_id_token(&token, &issuer, None, &clock())
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::BadUserName { .. }), "{err}");

    let token = mock.token(id_claims("alice"));
    let err = verify_id_token(&token, &issuer, Some("another-nonce"), &clock())
        .await
        .unwrap_err();
    assert_eq!(err, IdentityError::NonceMismatch);

    let mut claims = id_claims("alice");
    claims["email_verified"] = json!(false);
    let err = verify_id_token(&mock.token(claims), &issuer, None, &clock())
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::RequiredClaim { .. }), "{err}");

    let mut claims = id_claims("alice");
    claims["aud"] = json!("another-app");
    let err = verify_id_token(&mock.token(claims), &issuer, None, &clock())
        .await
        .unwrap_err();
    assert_eq!(err, IdentityError::WrongAudience);
}

#[tokio::test]
async fn issuers_are_used_only_for_their_role() {
    let mut mock = MockIssuer::start();
    let token = mock.token(id_claims("alice"));
    let humans = issuer(&mock.url, HUMAN);
    let err = verify_workload_token(&token, &humans, &task(&["acme/web"], &["main"]), &clock())
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::WrongRole { .. }), "{err}");
    let workloads = issuer(&mock.url, GITHUB_RULES);
    let err = verify_id_token(&token, &workloads, None, &clock())
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::WrongRole { .. }), "{err}");
}
