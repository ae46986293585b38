//! Workload tokens (RFC 7523 assertions) from a real issuer: the good one is
//! accepted, each kind of bad one is refused by the check it fails.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::SignedDuration;
use serde_json::{Map, Value, json};
use warrant_crypto::jws::testing::{dangerous_hs256, dangerous_unsigned};
use warrant_identity::{IdentityError, Issuer, verify_workload_token};
use warrant_token::OAuthError;

use crate::harness::{
    GITHUB_RULES, MockIssuer, clock, config_with_algorithms, github_claims, issuer, now_secs, task,
    with,
};

const REPOS: &[&str] = &["acme/web", "acme/api"];
const BRANCHES: &[&str] = &["main", "feature/*"];

/// Verifies `token` for a fresh GitHub-style issuer and the standard task,
/// returning the refusal.
async fn refusal(mock: &MockIssuer, token: &str) -> IdentityError {
    let issuer = issuer(&mock.url, GITHUB_RULES);
    let err = verify_workload_token(token, &issuer, &task(REPOS, BRANCHES), &clock())
        .await
        .expect_err("the token must be refused");
    // Refusals name the check, never the token.
    assert!(!err.to_string().contains(token), "{err}");
    assert_eq!(err.oauth_error(), OAuthError::InvalidGrant, "{err}");
    err
}

#[tokio::test]
async fn a_token_whose_repository_and_ref_match_the_task_is_accepted() {
    let mut mock = MockIssuer::start();
    let issuer = issuer(&mock.url, GITHUB_RULES);
    let task = task(REPOS, BRANCHES);
    let token = mock.token(github_claims());
    let p = verify_workload_token(&token, &issuer, &task, &clock())
        .await
        .unwrap();
    assert_eq!(p.issuer, mock.url);
    assert_eq!(p.subject, "repo:acme/web:ref:refs/heads/feature/login");
    assert_eq!(p.task, task.id);
    assert_eq!(p.repository.as_deref(), Some("acme/web"));
    assert_eq!(p.branch.as_deref(), Some("feature/login"));
    assert_eq!(p.jti.as_deref(), Some("run-1"));
    assert_eq!(p.spiffe_id, None);
    // A second token within the TTL is verified from the cache.
    let main = mock.token(with(github_claims(), json!({"ref": "refs/heads/main"})));
    verify_workload_token(&main, &issuer, &task, &clock())
        .await
        .unwrap();
    assert_eq!(mock.jwks_fetches(), 1);
}

#[tokio::test]
async fn another_repository_is_refused() {
    let mut mock = MockIssuer::start();
    let token = mock.token(with(github_claims(), json!({"repository": "evil/web"})));
    let err = refusal(&mock, &token).await;
    assert!(
        matches!(&err, IdentityError::TaskMismatch { claim, .. } if claim == "repository"),
        "{err}"
    );
    assert_eq!(err.check(), "task_binding");
}

#[tokio::test]
async fn a_ref_outside_the_branch_globs_is_refused() {
    let mut mock = MockIssuer::start();
    for r in [
        "refs/heads/hotfix/x",
        "refs/heads/feature/a/b",
        "refs/tags/feature/x",
        "feature/login",
    ] {
        let token = mock.token(with(github_claims(), json!({"ref": r})));
        let err = refusal(&mock, &token).await;
        assert!(
            matches!(&err, IdentityError::TaskMismatch { claim, .. } if claim == "ref"),
            "{r}: {err}"
        );
    }
}

#[tokio::test]
async fn a_missing_binding_claim_is_refused() {
    let mut mock = MockIssuer::start();
    let token = mock.token(with(github_claims(), json!({"repository": null})));
    let err = refusal(&mock, &token).await;
    assert_eq!(err, IdentityError::MissingClaim("repository".into()));
}

#[tokio::test]
async fn another_audience_is_refused() {
    let mut mock = MockIssuer::start();
    for (aud, check) in [
        (json!("someone-else"), "audience"),
        (json!(["a", "b"]), "audience"),
        (json!(null), "claims"),
    ] {
        let token = mock.token(with(github_claims(), json!({"aud": aud})));
        let err = refusal(&mock, &token).await;
        assert_eq!(err.check(), check, "{err}");
    }
    // A list that includes ours is fine.
    let token = mock.token(with(github_claims(), json!({"aud": ["x", "warrant"]})));
    let issuer = issuer(&mock.url, GITHUB_RULES);
    verify_workload_token(&token, &issuer, &task(REPOS, BRANCHES), &clock())
        .await
        .unwrap();
}

#[tokio::test]
async fn another_issuer_is_refused() {
    let mut mock = MockIssuer::start();
    let token = mock.token(with(
        github_claims(),
        json!({"iss": "https://token.actions.githubusercontent.com"}),
    ));
    let err = refusal(&mock, &token).await;
    assert!(matches!(err, IdentityError::WrongIssuer(_)), "{err}");
    // A trailing slash is another issuer too: `iss` is compared exactly.
    let token = mock.token(with(
        github_claims(),
        json!({"iss": format!("{}/", mock.url)}),
    ));
    assert!(matches!(
        refusal(&mock, &token).await,
        IdentityError::WrongIssuer(_)
    ));
}

#[tokio::test]
async fn an_expired_token_is_refused_past_the_skew() {
    let mut mock = MockIssuer::start();
    let now = now_secs();
    let token = mock.token(with(
        github_claims(),
        json!({"iat": now - 1200, "nbf": now - 1200, "exp": now - 600}),
    ));
    assert_eq!(refusal(&mock, &token).await, IdentityError::Expired);
    // Within the 60 s skew it still passes.
    let token = mock.token(with(github_claims(), json!({"exp": now - 20})));
    let issuer = issuer(&mock.url, GITHUB_RULES);
    verify_workload_token(&token, &issuer, &task(REPOS, BRANCHES), &clock())
        .await
        .unwrap();
    // And the injected clock, not the system's, decides.
    let token = mock.token(github_claims());
    let late = clock();
    late.advance(SignedDuration::from_hours(2));
    let err = verify_workload_token(&token, &issuer, &task(REPOS, BRANCHES), &late)
        .await
        .unwrap_err();
    // Two hours on, the cached keys are stale too; either refusal is right,
    // but the token must not pass.
    assert!(
        matches!(
            err,
            IdentityError::Expired | IdentityError::KeysUnavailable(_)
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let mut mock = MockIssuer::start();
    let now = now_secs();
    let token = mock.token(with(github_claims(), json!({"nbf": now + 600})));
    assert_eq!(refusal(&mock, &token).await, IdentityError::NotYetValid);
    let token = mock.token(with(
        github_claims(),
        json!({"iat": now + 600, "nbf": null}),
    ));
    assert_eq!(refusal(&mock, &token).await, IdentityError::IssuedInFuture);
    let token = mock.token(with(github_claims(), json!({"exp": null})));
    assert_eq!(
        refusal(&mock, &token).await,
        IdentityError::MissingClaim("exp".into())
    );
}

fn forged_claims(mock: &MockIssuer) -> Value {
    let now = now_secs();
    with(
        github_claims(),
        json!({"iss": mock.url, "iat": now, "exp": now + 600}),
    )
}

fn header(kid: &str) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("typ".into(), "JWT".into());
    h.insert("kid".into(), kid.into());
    h
}

#[tokio::test]
async fn alg_none_is_refused() {
    let mock = MockIssuer::start();
    let token = dangerous_unsigned(&header(&mock.kid), &forged_claims(&mock));
    let err = refusal(&mock, &token).await;
    assert_eq!(err, IdentityError::AlgorithmNotAllowed("none".into()));
}

#[tokio::test]
async fn hs256_keyed_with_the_public_key_is_refused() {
    let mock = MockIssuer::start();
    let jwks = mock.published_jwks().await;
    let public = &jwks["keys"][0];
    assert_eq!(public["kid"], mock.kid.as_str());
    for secret in [public.to_string(), jwks.to_string()] {
        let token = dangerous_hs256(&header(&mock.kid), &forged_claims(&mock), secret.as_bytes());
        let err = refusal(&mock, &token).await;
        assert_eq!(err, IdentityError::AlgorithmNotAllowed("HS256".into()));
    }
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_a_published_kid_is_refused() {
    let mut mock = MockIssuer::start();
    let token = mock.token_from("impostor", github_claims());
    assert_eq!(refusal(&mock, &token).await, IdentityError::BadSignature);
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_rate_limited_refetch_then_is_refused() {
    let mut mock = MockIssuer::start();
    let issuer = issuer(&mock.url, GITHUB_RULES);
    let task = task(REPOS, BRANCHES);
    let clock = clock();
    let good = mock.token(github_claims());
    verify_workload_token(&good, &issuer, &task, &clock)
        .await
        .unwrap();
    assert_eq!(mock.jwks_fetches(), 1);

    let stranger = mock.token_from("unpublished", github_claims());
    // Right after a fetch the rate limit holds: no new fetch.
    let err = verify_workload_token(&stranger, &issuer, &task, &clock)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::UnknownKey(_)), "{err}");
    assert_eq!(mock.jwks_fetches(), 1);

    // Past the interval: exactly one refetch, still refused.
    clock.advance(SignedDuration::from_secs(31));
    let err = verify_workload_token(&stranger, &issuer, &task, &clock)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::UnknownKey(_)), "{err}");
    assert_eq!(err.check(), "key");
    assert_eq!(mock.jwks_fetches(), 2);
    // Hammering with unknown kids does not hammer the issuer.
    for _ in 0..5 {
        verify_workload_token(&stranger, &issuer, &task, &clock)
            .await
            .unwrap_err();
    }
    assert_eq!(mock.jwks_fetches(), 2);
    // The known key still works throughout.
    verify_workload_token(&good, &issuer, &task, &clock)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rotated_in_key_is_picked_up_by_the_unknown_kid_refetch() {
    let mut mock = MockIssuer::start();
    let issuer = issuer(&mock.url, GITHUB_RULES);
    let task = task(REPOS, BRANCHES);
    let clock = clock();
    verify_workload_token(&mock.token(github_claims()), &issuer, &task, &clock)
        .await
        .unwrap();
    let kid = mock.add_key("ES256");
    let rotated = mock.token_from(&kid, github_claims());
    clock.advance(SignedDuration::from_secs(31));
    verify_workload_token(&rotated, &issuer, &task, &clock)
        .await
        .unwrap();
    assert_eq!(mock.jwks_fetches(), 2);
}

#[tokio::test]
async fn an_unreachable_issuer_is_refused_once_cached_keys_pass_the_staleness_bound() {
    let mut mock = MockIssuer::start();
    let issuer = issuer(&mock.url, GITHUB_RULES);
    let task = task(REPOS, BRANCHES);
    let clock = clock();
    let token = mock.token(github_claims());
    verify_workload_token(&token, &issuer, &task, &clock)
        .await
        .unwrap();
    mock.stop();

    // Past the 60 s TTL but within the 5 min bound: the refetch fails and
    // the cached keys still serve.
    clock.advance(SignedDuration::from_mins(2));
    verify_workload_token(&token, &issuer, &task, &clock)
        .await
        .unwrap();
    // Past the bound: refused, never accepted on stale trust.
    clock.advance(SignedDuration::from_mins(4));
    let err = verify_workload_token(&token, &issuer, &task, &clock)
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::KeysUnavailable(_)), "{err}");
    assert_eq!(err.check(), "keys_unavailable");
    assert_eq!(err.oauth_error(), OAuthError::InvalidGrant);
}

#[tokio::test]
async fn an_issuer_never_reached_refuses_every_token() {
    let mut mock = MockIssuer::start();
    let token = mock.token(github_claims());
    mock.stop();
    let err = refusal(&mock, &token).await;
    assert!(matches!(err, IdentityError::KeysUnavailable(_)), "{err}");
}

#[tokio::test]
async fn an_ended_task_is_refused() {
    let mut mock = MockIssuer::start();
    let issuer = issuer(&mock.url, GITHUB_RULES);
    let mut task = task(REPOS, BRANCHES);
    task.state = warrant_core::TaskState::Ended;
    let err = verify_workload_token(&mock.token(github_claims()), &issuer, &task, &clock())
        .await
        .unwrap_err();
    assert_eq!(err, IdentityError::TaskNotLive);
}

#[tokio::test]
async fn required_claims_must_hold_one_accepted_value() {
    let mut mock = MockIssuer::start();
    let rules = format!("{GITHUB_RULES}\n[workload.required]\nrepository_owner = [\"acme\"]\n");
    let issuer = issuer(&mock.url, &rules);
    let task = task(REPOS, BRANCHES);
    verify_workload_token(&mock.token(github_claims()), &issuer, &task, &clock())
        .await
        .unwrap();
    let token = mock.token(with(github_claims(), json!({"repository_owner": "evil"})));
    let err = verify_workload_token(&token, &issuer, &task, &clock())
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::RequiredClaim { .. }), "{err}");
}

const SPIFFE_RULES: &str = r#"
[workload]
subject = "spiffe"
spiffe_trust_domain = "example.org"
[workload.required]
pipeline = "deploy"
"#;

#[tokio::test]
async fn a_jwt_svid_needs_a_strict_spiffe_id_in_the_trust_domain() {
    let mut mock = MockIssuer::start();
    let issuer = issuer(&mock.url, SPIFFE_RULES);
    let task = task(REPOS, BRANCHES);
    let svid = |sub: &str| json!({"aud": "warrant", "sub": sub, "pipeline": "deploy"});
    let p = verify_workload_token(
        &mock.token(svid("spiffe://example.org/ci/deploy")),
        &issuer,
        &task,
        &clock(),
    )
    .await
    .unwrap();
    assert_eq!(
        p.spiffe_id.unwrap().to_string(),
        "spiffe://example.org/ci/deploy"
    );
    for bad in [
        "spiffe://example.org/ci/../deploy",
        "spiffe://Example.org/ci",
        "spiffe://example.org:443/ci",
        "spiffe://example.org/ci?x=1",
        "https://example.org/ci",
    ] {
        let err = verify_workload_token(&mock.token(svid(bad)), &issuer, &task, &clock())
            .await
            .unwrap_err();
        assert!(matches!(err, IdentityError::Spiffe(_)), "{bad}: {err}");
    }
    let err = verify_workload_token(
        &mock.token(svid("spiffe://other.org/ci/deploy")),
        &issuer,
        &task,
        &clock(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, IdentityError::WrongTrustDomain(_)), "{err}");
}

/// GitHub Actions and many IdPs sign RS256: accepted when the issuer's
/// allowlist names it, refused when it does not.
#[tokio::test]
async fn rs256_tokens_follow_the_issuers_allowlist() {
    let mut mock = MockIssuer::start();
    let kid = mock.add_key("RS256");
    let token = mock.token_from(&kid, github_claims());
    let task = task(REPOS, BRANCHES);
    let rsa = Issuer::new(config_with_algorithms(
        &mock.url,
        r#"["RS256", "ES256"]"#,
        GITHUB_RULES,
    ))
    .unwrap();
    let p = verify_workload_token(&token, &rsa, &task, &clock())
        .await
        .unwrap();
    assert_eq!(p.repository.as_deref(), Some("acme/web"));
    let err = refusal(&mock, &token).await;
    assert_eq!(err, IdentityError::AlgorithmNotAllowed("RS256".into()));
    // An RS256 token under the ES256 key's kid does not verify.
    let mut header = header(&mock.kid);
    header.insert("alg".into(), "RS256".into());
    let forged = mock.token_from(&kid, github_claims());
    let [_, payload, sig] = forged.split('.').collect::<Vec<_>>()[..] else {
        panic!("not a JWS")
    };
    let h = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    let swapped = format!("{h}.{payload}.{sig}");
    let err = verify_workload_token(&swapped, &rsa, &task, &clock())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::UnknownKey(_) | IdentityError::BadSignature
        ),
        "{err}"
    );
}
