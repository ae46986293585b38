use serde_json::{Map, json};
use warrant_core::FakeClock;
use warrant_crypto::jws::ProofKey;
use warrant_crypto::jws::testing::{dangerous_hs256, dangerous_unsigned};

use super::*;

/// RFC 9449 §4.1: the example DPoP proof, line breaks removed.
const RFC9449_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
/// The `jkt` RFC 9449 publishes for that proof's key.
const RFC9449_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
const RFC9449_IAT: i64 = 1_562_262_616;

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://warrant.example/v1/token";

fn clock() -> FakeClock {
    FakeClock::new(Timestamp::from_second(NOW).unwrap())
}

fn post() -> ProofRequest<'static> {
    ProofRequest {
        method: "POST",
        url: URL,
        access_token: None,
    }
}

fn claims() -> Value {
    json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URL, "iat": NOW})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    if let Value::Object(m) = &mut v {
        m.remove(key);
    }
    v
}

fn header(key: &ProofKey) -> Map<String, Value> {
    match json!({"typ": "dpop+jwt", "jwk": key.public_jwk().to_json()}) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn check(proof: &str) -> Result<VerifiedProof, DpopError> {
    verify_proof(proof, &post(), &DpopPolicy::default(), &clock())
}

#[test]
fn rfc9449_example_proof_verifies_and_has_the_published_jkt() {
    let at = FakeClock::new(Timestamp::from_second(RFC9449_IAT).unwrap());
    let request = ProofRequest {
        method: "POST",
        url: "https://server.example.com/token",
        access_token: None,
    };
    let p = verify_proof(RFC9449_PROOF, &request, &DpopPolicy::default(), &at).unwrap();
    assert_eq!(p.jkt, RFC9449_JKT);
    assert_eq!(p.jti, "-BwC3ESc6acc2lTc");
    assert_eq!(p.iat.as_second(), RFC9449_IAT);

    // The same proof a day later, or for another URL, is refused.
    at.advance(SignedDuration::from_hours(24));
    assert_eq!(
        verify_proof(RFC9449_PROOF, &request, &DpopPolicy::default(), &at),
        Err(DpopError::Stale)
    );
}

#[test]
fn fresh_proofs_of_both_algorithms_verify() {
    for alg in DPOP_ALGS {
        let key = ProofKey::generate(alg).unwrap();
        let p = check(&key.sign_with_jwk(DPOP_TYP, &claims()).unwrap()).unwrap();
        assert_eq!(p.jkt, key.thumbprint());
        assert_eq!(&p.key, key.public_jwk());
        assert_eq!(p.jti, "e1j3V_bKic8-LAEB");
    }
}

#[test]
fn ath_binds_the_proof_to_the_presented_token() {
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let token = "eyJhbGciOiJFZERTQSJ9.e30.c2ln";
    let request = ProofRequest {
        access_token: Some(token),
        ..post()
    };
    let policy = DpopPolicy::default();
    let good = with(claims(), "ath", json!(access_token_hash(token)));
    let proof = key.sign_with_jwk(DPOP_TYP, &good).unwrap();
    verify_proof(&proof, &request, &policy, &clock()).unwrap();

    let other = with(claims(), "ath", json!(access_token_hash("another token")));
    let proof = key.sign_with_jwk(DPOP_TYP, &other).unwrap();
    assert_eq!(
        verify_proof(&proof, &request, &policy, &clock()),
        Err(DpopError::AccessTokenHashMismatch)
    );
    let proof = key.sign_with_jwk(DPOP_TYP, &claims()).unwrap();
    assert_eq!(
        verify_proof(&proof, &request, &policy, &clock()),
        Err(DpopError::MissingAccessTokenHash)
    );
}

#[test]
fn ath_is_base64url_sha256_of_the_token() {
    // SHA-256("abc"), the FIPS 180-2 example, in base64url.
    assert_eq!(
        access_token_hash("abc"),
        "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
}

#[test]
fn alg_none_is_refused() {
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let proof = dangerous_unsigned(&header(&key), &claims());
    assert!(matches!(
        check(&proof),
        Err(DpopError::AlgorithmNotAllowed(_))
    ));
}

#[test]
fn hs256_keyed_with_the_public_key_is_refused() {
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let secret = serde_json::to_vec(&key.public_jwk().to_json()).unwrap();
    let proof = dangerous_hs256(&header(&key), &claims(), &secret);
    assert!(matches!(
        check(&proof),
        Err(DpopError::AlgorithmNotAllowed(_))
    ));
}

#[test]
fn wrong_or_missing_typ_is_refused() {
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    for typ in ["jwt", "at+jwt", "dpop"] {
        let proof = key.sign_with_jwk(typ, &claims()).unwrap();
        assert_eq!(check(&proof), Err(DpopError::WrongType), "{typ}");
    }
    let mut h = header(&key);
    h.remove("typ");
    let proof = key.sign_with_header(&h, &claims()).unwrap();
    assert_eq!(check(&proof), Err(DpopError::WrongType));
}

#[test]
fn missing_or_private_jwk_is_refused() {
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let mut h = header(&key);
    h.remove("jwk");
    let proof = key.sign_with_header(&h, &claims()).unwrap();
    assert_eq!(check(&proof), Err(DpopError::MissingJwk));

    let mut h = header(&key);
    h["jwk"]["d"] = json!("ZGVsaWJlcmF0ZWx5IG5vdCBhIHJlYWwga2V5IGF0IGFsbA");
    let proof = key.sign_with_header(&h, &claims()).unwrap();
    assert_eq!(check(&proof), Err(DpopError::PrivateKeyInJwk));
}

#[test]
fn a_proof_signed_by_another_key_than_its_jwk_is_refused() {
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let other = ProofKey::generate(JwsAlg::ES256).unwrap();
    let proof = other.sign_with_header(&header(&key), &claims()).unwrap();
    assert_eq!(check(&proof), Err(DpopError::BadSignature));
}

#[test]
fn wrong_method_is_refused() {
    let key = ProofKey::generate(JwsAlg::EdDSA).unwrap();
    for htm in ["GET", "post"] {
        let proof = key
            .sign_with_jwk(DPOP_TYP, &with(claims(), "htm", json!(htm)))
            .unwrap();
        assert_eq!(check(&proof), Err(DpopError::MethodMismatch(htm.into())));
    }
}

#[test]
fn wrong_url_is_refused() {
    let key = ProofKey::generate(JwsAlg::EdDSA).unwrap();
    for htu in [
        "https://warrant.example/v1/introspect",
        "https://evil.example/v1/token",
        "http://warrant.example/v1/token",
        "https://warrant.example:8443/v1/token",
        "https://warrant.example/v1/token/",
        "https://warrant.example/v1/../v1/token",
        "https://user@warrant.example/v1/token",
        "/v1/token",
        "not a url",
    ] {
        let proof = key
            .sign_with_jwk(DPOP_TYP, &with(claims(), "htu", json!(htu)))
            .unwrap();
        assert_eq!(
            check(&proof),
            Err(DpopError::UrlMismatch(htu.into())),
            "{htu}"
        );
    }
}

#[test]
fn equivalent_urls_match() {
    let key = ProofKey::generate(JwsAlg::EdDSA).unwrap();
    for htu in [
        "https://warrant.example/v1/token",
        "HTTPS://Warrant.Example/v1/token",
        "https://warrant.example:443/v1/token",
        "https://warrant.example/v1/token?x=1",
        "https://warrant.example/v1/token#frag",
        "https://warrant.example/v1/%74oken",
    ] {
        let proof = key
            .sign_with_jwk(DPOP_TYP, &with(claims(), "htu", json!(htu)))
            .unwrap();
        assert!(check(&proof).is_ok(), "{htu}");
    }
}

#[test]
fn htu_normalization_table() {
    let same = [
        ("http://a.example", "http://a.example:80/"),
        ("https://[::1]:443/x", "https://[::1]/x"),
        ("https://a.example/%7e", "https://a.example/~"),
        ("https://a.example/%2f", "https://a.example/%2F"),
        ("https://a.example:/x", "https://a.example/x"),
    ];
    for (a, b) in same {
        assert_eq!(Htu::parse(a), Htu::parse(b), "{a} vs {b}");
        assert!(Htu::parse(a).is_ok(), "{a}");
    }
    let different = [
        ("https://a.example/X", "https://a.example/x"),
        ("https://[::1]:8443/x", "https://[::1]/x"),
        ("https://a.example/%2F", "https://a.example//"),
    ];
    for (a, b) in different {
        assert_ne!(Htu::parse(a), Htu::parse(b), "{a} vs {b}");
    }
    for bad in [
        "ftp://a.example/",
        "https://",
        "https:///x",
        "https://a.example:99999/",
        "https://a.example:x/",
        "https://a b/",
        "https://a.example/%zz",
        "https://a.example/%4",
        "https://a.example/a b",
    ] {
        assert!(Htu::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn stale_and_future_proofs_are_refused() {
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let policy = DpopPolicy::default();
    let at = |iat: i64| {
        let proof = key
            .sign_with_jwk(DPOP_TYP, &with(claims(), "iat", json!(iat)))
            .unwrap();
        check(&proof)
    };
    let max_age = policy.max_age.as_secs();
    let skew = policy.max_future_skew.as_secs();
    assert!(at(NOW - max_age).is_ok());
    assert_eq!(at(NOW - max_age - 1), Err(DpopError::Stale));
    assert!(at(NOW + skew).is_ok());
    assert_eq!(at(NOW + skew + 1), Err(DpopError::IssuedInFuture));
    // A fractional NumericDate is accepted, a string is not.
    let proof = key
        .sign_with_jwk(DPOP_TYP, &with(claims(), "iat", json!(NOW as f64 + 0.5)))
        .unwrap();
    assert!(check(&proof).is_ok());
    let proof = key
        .sign_with_jwk(DPOP_TYP, &with(claims(), "iat", json!("1700000000")))
        .unwrap();
    assert_eq!(check(&proof), Err(DpopError::MissingClaim("iat")));
}

#[test]
fn missing_claims_are_refused() {
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    for claim in ["jti", "htm", "htu", "iat"] {
        let proof = key
            .sign_with_jwk(DPOP_TYP, &without(claims(), claim))
            .unwrap();
        assert_eq!(
            check(&proof),
            Err(DpopError::MissingClaim(claim)),
            "{claim}"
        );
    }
    let proof = key
        .sign_with_jwk(DPOP_TYP, &with(claims(), "jti", json!("")))
        .unwrap();
    assert_eq!(check(&proof), Err(DpopError::MissingClaim("jti")));
    let proof = key
        .sign_with_jwk(
            DPOP_TYP,
            &with(claims(), "jti", json!("x".repeat(MAX_JTI_LEN + 1))),
        )
        .unwrap();
    assert_eq!(check(&proof), Err(DpopError::MissingClaim("jti")));
}

#[test]
fn garbage_is_malformed() {
    for bad in ["", "a.b.c", "e30.e30.e30"] {
        assert!(matches!(check(bad), Err(DpopError::Malformed(_))), "{bad}");
    }
}

#[test]
fn errors_map_to_oauth_codes() {
    assert_eq!(
        DpopError::Stale.oauth_error().as_str(),
        "invalid_dpop_proof"
    );
    assert_eq!(
        DpopError::Replayed.oauth_error().as_str(),
        "invalid_dpop_proof"
    );
    assert_eq!(
        DpopError::ReplayCacheFull.oauth_error().as_str(),
        "temporarily_unavailable"
    );
}

#[test]
fn replay_cache_refuses_a_second_use_until_the_ttl_passes() {
    let clock = clock();
    let policy = DpopPolicy::default();
    let cache = ReplayCache::new(policy.replay_ttl(), 100);
    let key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let proof = key.sign_with_jwk(DPOP_TYP, &claims()).unwrap();
    let p = verify_proof(&proof, &post(), &policy, &clock).unwrap();

    cache.check_and_remember(&p, &clock).unwrap();
    assert_eq!(
        cache.check_and_remember(&p, &clock),
        Err(DpopError::Replayed)
    );

    // The same jti from another key is another proof.
    let other = ProofKey::generate(JwsAlg::ES256).unwrap();
    let q = verify_proof(
        &other.sign_with_jwk(DPOP_TYP, &claims()).unwrap(),
        &post(),
        &policy,
        &clock,
    )
    .unwrap();
    cache.check_and_remember(&q, &clock).unwrap();
    assert_eq!(cache.len(), 2);

    clock.advance(policy.replay_ttl() - SignedDuration::from_secs(1));
    assert_eq!(
        cache.check_and_remember(&p, &clock),
        Err(DpopError::Replayed)
    );
    // By now the proof itself is stale, so forgetting it is safe.
    clock.advance(SignedDuration::from_secs(1));
    assert_eq!(
        verify_proof(&proof, &post(), &policy, &clock),
        Err(DpopError::Stale)
    );
    cache.check_and_remember(&p, &clock).unwrap();
    assert_eq!(cache.len(), 1, "expired entries are evicted");
}

#[test]
fn a_full_replay_cache_fails_closed() {
    let clock = clock();
    let cache = ReplayCache::new(SignedDuration::from_secs(60), 2);
    let key = ProofKey::generate(JwsAlg::EdDSA).unwrap();
    let proof = |jti: &str| {
        let token = key
            .sign_with_jwk(DPOP_TYP, &with(claims(), "jti", json!(jti)))
            .unwrap();
        verify_proof(&token, &post(), &DpopPolicy::default(), &clock).unwrap()
    };
    cache.check_and_remember(&proof("a"), &clock).unwrap();
    cache.check_and_remember(&proof("b"), &clock).unwrap();
    assert_eq!(
        cache.check_and_remember(&proof("c"), &clock),
        Err(DpopError::ReplayCacheFull)
    );
    clock.advance(SignedDuration::from_secs(60));
    cache.check_and_remember(&proof("c"), &clock).unwrap();
    assert_eq!(cache.len(), 1);
}
