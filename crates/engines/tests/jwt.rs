//! The `jwt` engine's tokens checked by an independent verifier (Python
//! PyJWT) against a JWKS built from the signing key, as a resource server
//! would check them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/pyjwt.rs"]
mod pyjwt;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use warrant_core::TaskId;
use warrant_crypto::SigningKey;
use warrant_crypto::jws::{Jwks, JwsAlg, ProofKey};
use warrant_engines::{Engine, EngineContext, EngineError, IssueRequest, Issued};

const ISSUER: &str = "https://warrant.test";

const CONFIG: &str = r#"
name = "svc"
type = "jwt"

[[roles]]
name = "billing-read"
description = "read the billing API"
audience = "https://billing.internal"
claims = { scope = "invoices:read", tenant = { id = 7 } }

[[roles]]
name = "billing-dpop"
audience = "https://billing.internal"
max_ttl = "5m"
dpop = true

[[roles]]
name = "multi"
audience = ["https://a.internal", "https://b.internal"]
max_ttl = "1h"
"#;

struct Fixture {
    engine: Arc<dyn Engine>,
    key: Arc<SigningKey>,
    dir: tempfile::TempDir,
    jwks: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SigningKey::generate().unwrap());
    let ctx = EngineContext {
        data_dir: dir.path().to_owned(),
        signing_key: Arc::clone(&key),
        issuer: ISSUER.into(),
    };
    let engine =
        warrant_engines::jwt::build("svc", &toml::from_str(CONFIG).unwrap(), &ctx).unwrap();
    let jwks = dir.path().join("jwks.json");
    let set = Jwks::from_signing_keys([key.as_ref()]);
    std::fs::write(&jwks, set.to_json().to_string()).unwrap();
    Fixture {
        engine,
        key,
        dir,
        jwks,
    }
}

struct Request {
    lease_id: uuid::Uuid,
    task_id: TaskId,
    run_id: uuid::Uuid,
    role: String,
    expires_at: Timestamp,
    params: Value,
}

fn request(role: &str, params: Value, ttl: SignedDuration) -> Request {
    Request {
        lease_id: uuid::Uuid::now_v7(),
        task_id: TaskId::new(),
        run_id: uuid::Uuid::now_v7(),
        role: role.to_owned(),
        expires_at: Timestamp::now() + ttl,
        params,
    }
}

impl Request {
    fn get(&self) -> IssueRequest<'_> {
        IssueRequest {
            lease_id: self.lease_id,
            role: &self.role,
            task_id: self.task_id,
            run_id: self.run_id,
            agent: "claude",
            delegator: "alice",
            expires_at: self.expires_at,
            params: &self.params,
        }
    }
}

impl Fixture {
    async fn issue(&self, req: &Request) -> (Issued, String) {
        let handle = self.engine.prepare(&req.get()).unwrap();
        assert_eq!(handle, json!({ "jti": req.lease_id.to_string() }));
        let issued = self.engine.issue(&req.get(), &handle).await.unwrap();
        assert_eq!(issued.handle, handle);
        let token = issued.secrets["token"].expose_secret().to_owned();
        (issued, token)
    }

    fn bad_request(&self, req: &Request) -> String {
        match self.engine.prepare(&req.get()) {
            Err(EngineError::BadRequest(msg)) => msg,
            other => panic!("{}: expected a bad request, got {other:?}", req.params),
        }
    }
}

#[tokio::test]
async fn pyjwt_verifies_a_service_token_for_its_audience_only() {
    let f = fixture();
    let req = request("billing-read", json!({}), SignedDuration::from_mins(10));
    let (issued, token) = f.issue(&req).await;

    let verified = pyjwt::verify(&f.jwks, ISSUER, "https://billing.internal", &token).unwrap();
    let (header, claims) = (&verified["header"], &verified["claims"]);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], f.key.kid());
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "https://billing.internal");
    assert_eq!(claims["sub"], "agent:claude");
    assert_eq!(claims["client_id"], "claude");
    assert_eq!(claims["jti"], req.lease_id.to_string());
    assert_eq!(claims["task"], req.task_id.to_string());
    assert_eq!(claims["run"], req.run_id.to_string());
    assert_eq!(claims["delegator"], "alice");
    assert_eq!(claims["scope"], "invoices:read");
    assert_eq!(claims["tenant"], json!({ "id": 7 }));
    assert!(claims.get("cnf").is_none());
    assert_eq!(claims["exp"], req.expires_at.as_second());
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(issued.expires_at.as_second(), req.expires_at.as_second());
    assert_eq!(
        issued.public,
        json!({
            "jti": req.lease_id.to_string(),
            "audience": "https://billing.internal",
            "expires_at": issued.expires_at.to_string(),
        })
    );

    // Another service does not accept it.
    let refused = pyjwt::verify(&f.jwks, ISSUER, "https://payroll.internal", &token).unwrap_err();
    assert!(refused.contains("InvalidAudienceError"), "{refused}");
    // Nor does anyone trusting another issuer or another key.
    let refused = pyjwt::verify(
        &f.jwks,
        "https://elsewhere.test",
        "https://billing.internal",
        &token,
    )
    .unwrap_err();
    assert!(refused.contains("InvalidIssuerError"), "{refused}");
    let other_jwks = f.dir.path().join("other-jwks.json");
    let other = SigningKey::generate().unwrap();
    let set = Jwks::from_signing_keys([&other]);
    // Same kid, other key: only the signature check can refuse it.
    let mut json = set.to_json();
    json["keys"][0]["kid"] = f.key.kid().into();
    std::fs::write(&other_jwks, json.to_string()).unwrap();
    let refused =
        pyjwt::verify(&other_jwks, ISSUER, "https://billing.internal", &token).unwrap_err();
    assert!(refused.contains("InvalidSignatureError"), "{refused}");

    // Another token's payload under this token's signature is refused.
    let (_, second) = f
        .issue(&request(
            "billing-read",
            json!({}),
            SignedDuration::from_mins(10),
        ))
        .await;
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = second.split('.').nth(1).unwrap();
    let refused = pyjwt::verify(
        &f.jwks,
        ISSUER,
        "https://billing.internal",
        &parts.join("."),
    )
    .unwrap_err();
    assert!(refused.contains("InvalidSignatureError"), "{refused}");

    // There is nothing to recall: revoke succeeds, also twice.
    f.engine.revoke(&issued.handle).await.unwrap();
    f.engine.revoke(&issued.handle).await.unwrap();
}

#[tokio::test]
async fn a_dpop_role_binds_the_token_to_the_runs_key() {
    let f = fixture();
    let proof_key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let jkt = proof_key.thumbprint();

    let err = f.bad_request(&request(
        "billing-dpop",
        json!({}),
        SignedDuration::from_mins(1),
    ));
    assert!(err.contains("pass `jkt`"), "{err}");
    let err = f.bad_request(&request(
        "billing-dpop",
        json!({ "jkt": "not-a-thumbprint" }),
        SignedDuration::from_mins(1),
    ));
    assert!(err.contains("not a SHA-256 JWK thumbprint"), "{err}");
    let err = f.bad_request(&request(
        "billing-read",
        json!({ "jkt": jkt }),
        SignedDuration::from_mins(1),
    ));
    assert!(err.contains("leave `jkt` out"), "{err}");

    let req = request(
        "billing-dpop",
        json!({ "jkt": jkt }),
        SignedDuration::from_mins(1),
    );
    let (_, token) = f.issue(&req).await;
    let verified = pyjwt::verify(&f.jwks, ISSUER, "https://billing.internal", &token).unwrap();
    assert_eq!(verified["claims"]["cnf"], json!({ "jkt": jkt }));
}

#[tokio::test]
async fn the_ttl_is_capped_by_the_role() {
    let f = fixture();
    assert_eq!(
        f.engine.max_ttl("billing-read").unwrap(),
        SignedDuration::from_mins(15)
    );
    assert_eq!(
        f.engine.max_ttl("billing-dpop").unwrap(),
        SignedDuration::from_mins(5)
    );
    assert_eq!(
        f.engine.max_ttl("multi").unwrap(),
        SignedDuration::from_hours(1)
    );
    assert!(matches!(
        f.engine.max_ttl("nope"),
        Err(EngineError::UnknownRole(_))
    ));
    let roles = f.engine.roles();
    assert_eq!(roles.len(), 3);
    assert_eq!(roles[0].name, "billing-dpop");
    assert_eq!(roles[1].max_ttl_secs, 900);
    assert_eq!(roles[1].description, "read the billing API");

    // Even when asked for longer, the token ends within the role's maximum.
    let before = Timestamp::now().as_second();
    let req = request("billing-read", json!({}), SignedDuration::from_hours(2));
    let (issued, token) = f.issue(&req).await;
    let claims =
        &pyjwt::verify(&f.jwks, ISSUER, "https://billing.internal", &token).unwrap()["claims"];
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(iat >= before);
    assert_eq!(exp - iat, 15 * 60);
    assert_eq!(issued.expires_at.as_second(), exp);
    assert!(issued.expires_at < req.expires_at);
}

#[tokio::test]
async fn an_expired_token_is_refused_by_the_verifier() {
    let f = fixture();
    let req = request("billing-read", json!({}), SignedDuration::from_secs(2));
    let (issued, token) = f.issue(&req).await;
    while Timestamp::now() < issued.expires_at + SignedDuration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = pyjwt::verify(&f.jwks, ISSUER, "https://billing.internal", &token).unwrap_err();
    assert!(refused.contains("ExpiredSignatureError"), "{refused}");

    // And a lease that already ended gets no token.
    let ended = request("billing-read", json!({}), SignedDuration::from_secs(-5));
    let handle = f.engine.prepare(&ended.get()).unwrap();
    let err = f.engine.issue(&ended.get(), &handle).await.unwrap_err();
    assert!(matches!(err, EngineError::BadRequest(_)), "{err}");
}

#[tokio::test]
async fn a_role_with_several_audiences_mints_for_one_at_a_time() {
    let f = fixture();
    let err = f.bad_request(&request("multi", json!({}), SignedDuration::from_mins(1)));
    assert!(err.contains("pass `audience`"), "{err}");
    let err = f.bad_request(&request(
        "multi",
        json!({ "audience": "https://c.internal" }),
        SignedDuration::from_mins(1),
    ));
    assert!(err.contains("`https://c.internal` is not allowed"), "{err}");
    let err = f.bad_request(&request(
        "billing-read",
        json!({ "audiences": ["x"] }),
        SignedDuration::from_mins(1),
    ));
    assert!(err.contains("unknown field `audiences`"), "{err}");

    let req = request(
        "multi",
        json!({ "audience": "https://b.internal" }),
        SignedDuration::from_mins(1),
    );
    let (issued, token) = f.issue(&req).await;
    assert_eq!(issued.public["audience"], "https://b.internal");
    pyjwt::verify(&f.jwks, ISSUER, "https://b.internal", &token).unwrap();
    let refused = pyjwt::verify(&f.jwks, ISSUER, "https://a.internal", &token).unwrap_err();
    assert!(refused.contains("InvalidAudienceError"), "{refused}");
}
