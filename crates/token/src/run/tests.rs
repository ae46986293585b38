use serde_json::{Map, json};
use uuid::Uuid;
use warrant_core::{EndReason, FakeClock, TaskState};
use warrant_crypto::jws::testing::{dangerous_hs256, dangerous_unsigned};
use warrant_crypto::jws::{ProofKey, PublicJwk};

use super::*;
use crate::dpop::{DPOP_TYP, DpopPolicy, ProofRequest, verify_proof};

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://warrant.example";
const AUD: &str = "https://warrant.example";

struct Fixture {
    key: SigningKey,
    td: TrustDomain,
    task: Task,
    dpop: ProofKey,
    clock: FakeClock,
}

fn fixture() -> Fixture {
    let scope = Scope {
        repos: vec!["acme/api".into(), "acme/web".into()],
        branches: vec!["feature/*".into()],
        actions: vec!["repo.read".into(), "repo.push".into()],
        ..Scope::default()
    };
    let task = Task {
        id: TaskId(Uuid::from_u128(0x0192_f5a4_7c1e_7b3a_9d2e_5f8a_1b2c_3d4e)),
        agent: Name::parse("agent", "claude-code").unwrap(),
        delegator: Name::parse("user", "alice").unwrap(),
        purpose: "fix the login bug".into(),
        ticket: None,
        scope,
        state: TaskState::Active,
        end_reason: None,
        end_note: None,
        created_at: Timestamp::from_second(NOW - 60).unwrap(),
        expires_at: Timestamp::from_second(NOW + 3600).unwrap(),
        ended_at: None,
    };
    Fixture {
        key: SigningKey::generate().unwrap(),
        td: TrustDomain::parse("warrant.example").unwrap(),
        task,
        dpop: ProofKey::generate(JwsAlg::ES256).unwrap(),
        clock: FakeClock::new(Timestamp::from_second(NOW).unwrap()),
    }
}

impl Fixture {
    fn params(&self) -> MintParams<'_> {
        MintParams {
            issuer: ISS,
            audience: AUD,
            trust_domain: &self.td,
            run: RunId(Uuid::from_u128(0x0192_f5a4_7c1e_7b3a_9d2e_0000_0000_0001)),
            task: &self.task,
            jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
            ttl: DEFAULT_RUN_TOKEN_TTL,
            scope: None,
            act: None,
        }
    }

    fn mint(&self) -> Minted {
        let jkt = self.dpop.thumbprint();
        let p = MintParams {
            jkt: &jkt,
            ..self.params()
        };
        mint(&self.key, &p, &self.clock).unwrap()
    }

    fn expect(&self) -> RunTokenExpectations<'_> {
        RunTokenExpectations {
            issuer: ISS,
            audience: AUD,
            trust_domain: &self.td,
            leeway: SignedDuration::from_secs(30),
        }
    }

    fn jwks(&self) -> Jwks {
        Jwks::from_signing_keys([&self.key])
    }

    fn verify(&self, token: &str) -> Result<RunToken, RunTokenError> {
        Unverified::<RunToken>::new(token).verify(&self.jwks(), &self.expect(), &self.clock)
    }
}

fn header(kid: &str) -> Map<String, Value> {
    match json!({"typ": RUN_TOKEN_TYP, "kid": kid}) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[test]
fn minted_token_verifies_and_carries_the_run() {
    let f = fixture();
    let minted = f.mint();
    let c = &minted.claims;
    assert_eq!(c.iss, ISS);
    assert_eq!(c.aud, AUD);
    assert_eq!(
        c.sub,
        "spiffe://warrant.example/agent/claude-code/run/0192f5a4-7c1e-7b3a-9d2e-000000000001"
    );
    assert_eq!(c.iat, NOW);
    assert_eq!(c.exp, NOW + 600, "10 minutes by default");
    assert_eq!(c.jti.len(), 32);
    assert_eq!(c.cnf.jkt, f.dpop.thumbprint());
    assert_eq!(c.task, f.task.id);
    assert_eq!(c.agent.as_str(), "claude-code");
    assert_eq!(c.delegator.as_str(), "alice");
    assert_eq!(c.warrant_scope, f.task.scope);
    assert_eq!(c.chain_depth(), 0);

    let unverified = Unverified::<RunToken>::new(minted.token.clone());
    assert_eq!(unverified.kid().unwrap().as_deref(), Some(f.key.kid()));
    let t = f.verify(&minted.token).unwrap();
    assert_eq!(t.claims(), c);
    assert_eq!(t.kid(), f.key.kid());
    assert_eq!(t.spiffe_id().to_string(), c.sub);
    assert_eq!(t.as_str(), minted.token);
    // Two tokens never share a jti.
    assert_ne!(f.mint().claims.jti, c.jti);
}

#[test]
fn the_wire_format_is_a_plain_jwt() {
    let f = fixture();
    let minted = f.mint();
    let h = warrant_crypto::jws::decode_header(&minted.token).unwrap();
    assert_eq!(h.alg, JwsAlg::EdDSA);
    assert_eq!(h.typ.as_deref(), Some(RUN_TOKEN_TYP));
    let v = warrant_crypto::jws::verify(
        &minted.token,
        &PublicJwk::Ed25519(f.key.public_key()),
        &[JwsAlg::EdDSA],
    )
    .unwrap();
    assert_eq!(v.claims["cnf"], json!({"jkt": f.dpop.thumbprint()}));
    assert_eq!(v.claims["task"], json!(f.task.id.to_string()));
    assert!(v.claims.get("act").is_none());
}

#[test]
fn exp_never_passes_the_task_expiry() {
    let mut f = fixture();
    f.task.expires_at = Timestamp::from_second(NOW + 120).unwrap();
    assert_eq!(f.mint().claims.exp, NOW + 120);
    let p = MintParams {
        ttl: SignedDuration::from_secs(30),
        ..f.params()
    };
    assert_eq!(mint(&f.key, &p, &f.clock).unwrap().claims.exp, NOW + 30);
}

#[test]
fn mint_refuses_ended_or_expired_tasks_and_bad_requests() {
    let mut f = fixture();
    f.task.expires_at = Timestamp::from_second(NOW).unwrap();
    assert_eq!(
        mint(&f.key, &f.params(), &f.clock).unwrap_err(),
        MintError::TaskExpired(f.task.id)
    );

    let mut f = fixture();
    f.task.state = TaskState::Ended;
    f.task.end_reason = Some(EndReason::Revoked);
    let e = mint(&f.key, &f.params(), &f.clock).unwrap_err();
    assert_eq!(e, MintError::TaskNotLive(f.task.id));
    assert_eq!(e.oauth_error().as_str(), "invalid_grant");

    let f = fixture();
    for ttl in [0, -5, 3601] {
        let p = MintParams {
            ttl: SignedDuration::from_secs(ttl),
            ..f.params()
        };
        assert_eq!(mint(&f.key, &p, &f.clock).unwrap_err(), MintError::BadTtl);
    }
    for jkt in [
        "",
        "short",
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4=",
        "x\"}",
    ] {
        let p = MintParams { jkt, ..f.params() };
        assert_eq!(mint(&f.key, &p, &f.clock).unwrap_err(), MintError::BadJkt);
    }
}

#[test]
fn scope_can_only_narrow() {
    let f = fixture();
    let narrower = Scope {
        repos: vec!["acme/api".into()],
        actions: vec!["repo.read".into()],
        ..Scope::default()
    };
    let p = MintParams {
        scope: Some(narrower.clone()),
        ..f.params()
    };
    assert_eq!(
        mint(&f.key, &p, &f.clock).unwrap().claims.warrant_scope,
        narrower
    );

    let wider = Scope {
        repos: vec!["acme/secrets".into()],
        ..Scope::default()
    };
    let p = MintParams {
        scope: Some(wider),
        ..f.params()
    };
    let e = mint(&f.key, &p, &f.clock).unwrap_err();
    assert!(matches!(e, MintError::ScopeNotNarrowing(_)), "{e}");
    assert_eq!(e.oauth_error().as_str(), "invalid_scope");
}

#[test]
fn the_actor_chain_nests_and_round_trips() {
    let f = fixture();
    let chain = Actor::new(
        "spiffe://warrant.example/agent/planner/run/0192f5a4-7c1e-7b3a-9d2e-000000000002",
        Some(Actor::new(
            "spiffe://warrant.example/agent/root/run/0192f5a4-7c1e-7b3a-9d2e-000000000003",
            None,
        )),
    );
    let jkt = f.dpop.thumbprint();
    let p = MintParams {
        act: Some(chain.clone()),
        jkt: &jkt,
        ..f.params()
    };
    let minted = mint(&f.key, &p, &f.clock).unwrap();
    let t = f.verify(&minted.token).unwrap();
    assert_eq!(t.claims().act.as_ref(), Some(&chain));
    assert_eq!(t.claims().chain_depth(), 2);
    let raw = warrant_crypto::jws::verify(
        &minted.token,
        &PublicJwk::Ed25519(f.key.public_key()),
        &[JwsAlg::EdDSA],
    )
    .unwrap();
    assert!(raw.claims["act"]["act"]["sub"].is_string());
    assert!(raw.claims["act"]["act"].get("act").is_none());
}

#[test]
fn expired_tokens_are_refused_after_bounded_leeway() {
    let f = fixture();
    let token = f.mint().token;
    f.clock.advance(SignedDuration::from_secs(600 + 29));
    assert!(f.verify(&token).is_ok(), "inside the 30 s leeway");
    f.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(f.verify(&token).unwrap_err(), RunTokenError::Expired);

    // A verifier configured with a huge leeway still gets at most 60 s.
    let generous = RunTokenExpectations {
        leeway: SignedDuration::from_hours(24),
        ..f.expect()
    };
    f.clock.advance(SignedDuration::from_secs(31));
    assert_eq!(
        Unverified::<RunToken>::new(token.clone())
            .verify(&f.jwks(), &generous, &f.clock)
            .unwrap_err(),
        RunTokenError::Expired
    );
}

#[test]
fn not_yet_valid_tokens_are_refused() {
    let f = fixture();
    let token = f.mint().token;
    f.clock.advance(SignedDuration::from_secs(-30));
    assert!(f.verify(&token).is_ok(), "inside the leeway");
    f.clock.advance(SignedDuration::from_secs(-1));
    assert_eq!(f.verify(&token).unwrap_err(), RunTokenError::NotYetValid);
}

#[test]
fn wrong_issuer_audience_or_trust_domain_is_refused() {
    let f = fixture();
    let token = f.mint().token;
    let jwks = f.jwks();
    let verify = |e: &RunTokenExpectations<'_>| {
        Unverified::<RunToken>::new(token.clone()).verify(&jwks, e, &f.clock)
    };
    let e = RunTokenExpectations {
        issuer: "https://evil.example",
        ..f.expect()
    };
    assert_eq!(verify(&e).unwrap_err(), RunTokenError::WrongIssuer);
    let e = RunTokenExpectations {
        audience: "https://resource.example",
        ..f.expect()
    };
    assert_eq!(verify(&e).unwrap_err(), RunTokenError::WrongAudience);
    let other_td = TrustDomain::parse("other.example").unwrap();
    let e = RunTokenExpectations {
        trust_domain: &other_td,
        ..f.expect()
    };
    assert_eq!(verify(&e).unwrap_err(), RunTokenError::WrongSubject);
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let f = fixture();
    let other = SigningKey::generate().unwrap();
    let jkt = f.dpop.thumbprint();
    let p = MintParams {
        jkt: &jkt,
        ..f.params()
    };
    let foreign = mint(&other, &p, &f.clock).unwrap().token;
    assert_eq!(
        f.verify(&foreign).unwrap_err(),
        RunTokenError::UnknownKey(other.kid().into())
    );

    // Another key claiming our kid.
    let impostor = ProofKey::generate(JwsAlg::EdDSA).unwrap();
    let claims = serde_json::to_value(&f.mint().claims).unwrap();
    let forged = impostor
        .sign_with_header(&header(f.key.kid()), &claims)
        .unwrap();
    assert_eq!(f.verify(&forged).unwrap_err(), RunTokenError::BadSignature);
}

#[test]
fn alg_none_and_hs256_with_the_public_key_are_refused() {
    let f = fixture();
    let claims = serde_json::to_value(&f.mint().claims).unwrap();
    let none = dangerous_unsigned(&header(f.key.kid()), &claims);
    assert!(matches!(
        f.verify(&none).unwrap_err(),
        RunTokenError::AlgorithmNotAllowed(_)
    ));
    let public = PublicJwk::Ed25519(f.key.public_key());
    for secret in [
        f.key.public_key().to_vec(),
        serde_json::to_vec(&public.to_json()).unwrap(),
        serde_json::to_vec(&f.jwks().to_json()).unwrap(),
    ] {
        let hs = dangerous_hs256(&header(f.key.kid()), &claims, &secret);
        let e = f.verify(&hs).unwrap_err();
        assert!(matches!(e, RunTokenError::AlgorithmNotAllowed(_)), "{e}");
        assert_eq!(e.oauth_error().as_str(), "invalid_token");
    }
}

#[test]
fn other_jwts_do_not_pass_for_run_tokens() {
    let f = fixture();
    let claims = f.mint().claims;
    // Our own key, but not a run token's typ.
    for typ in ["JWT", "dpop+jwt", "at+jwt"] {
        let t = warrant_crypto::jws::sign_jwt(&f.key, typ, &claims).unwrap();
        assert_eq!(f.verify(&t).unwrap_err(), RunTokenError::WrongType, "{typ}");
    }
    // A DPoP proof presented as a token.
    let proof = f.dpop.sign_with_jwk(DPOP_TYP, &json!({})).unwrap();
    assert_eq!(f.verify(&proof).unwrap_err(), RunTokenError::WrongType);
    // Extra or missing claims.
    let mut extra = serde_json::to_value(&claims).unwrap();
    extra["admin"] = json!(true);
    let t = warrant_crypto::jws::sign_jwt(&f.key, RUN_TOKEN_TYP, &extra).unwrap();
    assert!(matches!(
        f.verify(&t).unwrap_err(),
        RunTokenError::InvalidClaims(_)
    ));
    let mut missing = serde_json::to_value(&claims).unwrap();
    missing.as_object_mut().unwrap().remove("cnf");
    let t = warrant_crypto::jws::sign_jwt(&f.key, RUN_TOKEN_TYP, &missing).unwrap();
    assert!(matches!(
        f.verify(&t).unwrap_err(),
        RunTokenError::InvalidClaims(_)
    ));
    // A subject that is not this agent's run.
    let mut c = claims.clone();
    c.sub = c.sub.replace("claude-code", "other-agent");
    let t = warrant_crypto::jws::sign_jwt(&f.key, RUN_TOKEN_TYP, &c).unwrap();
    assert_eq!(f.verify(&t).unwrap_err(), RunTokenError::WrongSubject);
    // A lifetime longer than any run token may have.
    let mut c = claims;
    c.exp = c.iat + MAX_RUN_TOKEN_TTL.as_secs() + 1;
    let t = warrant_crypto::jws::sign_jwt(&f.key, RUN_TOKEN_TYP, &c).unwrap();
    assert!(matches!(
        f.verify(&t).unwrap_err(),
        RunTokenError::InvalidClaims(_)
    ));
}

#[test]
fn tokens_signed_before_a_rotation_verify_with_both_keys_published() {
    let f = fixture();
    let old = f.mint().token;
    let new_key = SigningKey::generate().unwrap();
    let mut jwks = Jwks::from_signing_keys([&new_key]);
    assert!(
        Unverified::<RunToken>::new(old.clone())
            .verify(&jwks, &f.expect(), &f.clock)
            .is_err()
    );
    jwks.push_ed25519(f.key.public_key());
    let t = Unverified::<RunToken>::new(old)
        .verify(&jwks, &f.expect(), &f.clock)
        .unwrap();
    assert_eq!(t.kid(), f.key.kid());
}

#[test]
fn the_token_is_bound_to_its_dpop_key() {
    let f = fixture();
    let token = f.verify(&f.mint().token).unwrap();
    let request = ProofRequest {
        method: "GET",
        url: "https://warrant.example/v1/tasks",
        access_token: Some(token.as_str()),
    };
    let proof_claims = |_: &ProofKey| {
        json!({
            "jti": "n-0S6_WzA2Mj", "htm": "GET", "htu": request.url, "iat": NOW,
            "ath": crate::dpop::access_token_hash(token.as_str()),
        })
    };
    let proof = f
        .dpop
        .sign_with_jwk(DPOP_TYP, &proof_claims(&f.dpop))
        .unwrap();
    let p = verify_proof(&proof, &request, &DpopPolicy::default(), &f.clock).unwrap();
    token.check_binding(&p).unwrap();

    let thief = ProofKey::generate(JwsAlg::ES256).unwrap();
    let proof = thief
        .sign_with_jwk(DPOP_TYP, &proof_claims(&thief))
        .unwrap();
    let p = verify_proof(&proof, &request, &DpopPolicy::default(), &f.clock).unwrap();
    let e = token.check_binding(&p).unwrap_err();
    assert_eq!(e, RunTokenError::NotBoundToProofKey);
    assert_eq!(e.oauth_error().as_str(), "invalid_token");
}

#[test]
fn debug_output_never_shows_the_token() {
    let f = fixture();
    let minted = f.mint();
    let sig = minted.token.rsplit('.').next().unwrap().to_owned();
    assert!(!format!("{minted:?}").contains(&sig));
    let t = f.verify(&minted.token).unwrap();
    assert!(!format!("{t:?}").contains(&sig));
    assert!(!format!("{:?}", Unverified::<RunToken>::new(minted.token)).contains(&sig));
}
