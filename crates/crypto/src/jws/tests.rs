use serde_json::json;

use super::testing::{dangerous_hs256, dangerous_unsigned};
use super::*;

/// RFC 9449 §4.1: the example DPoP proof, line breaks removed.
const RFC9449_PROOF: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
/// The `jkt` RFC 9449 publishes for that proof's key (§6.1).
const RFC9449_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn provider_installs_idempotently() {
    install_provider().unwrap();
    install_provider().unwrap();
}

#[test]
fn signed_jwt_verifies_against_the_published_jwks() {
    let key = SigningKey::generate().unwrap();
    let token = sign_jwt(&key, "test+jwt", &json!({"sub": "x", "n": 1})).unwrap();
    let jwks = Jwks::from_json(&Jwks::from_signing_keys([&key]).to_json()).unwrap();

    let header = decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(key.kid()));
    assert!(header.typ_is("test+jwt"));
    assert!(header.typ_is("TEST+JWT"));
    let mut prefixed = header.clone();
    prefixed.typ = Some("application/test+JWT".into());
    assert!(prefixed.typ_is("test+jwt"));
    assert!(!header.typ_is("jwt"));

    let public = jwks.find(key.kid()).unwrap();
    let v = verify(&token, public, &[JwsAlg::EdDSA]).unwrap();
    assert_eq!(v.claims.get("sub"), Some(&json!("x")));
    assert_eq!(v.header.alg, JwsAlg::EdDSA);
}

#[test]
fn jwks_kid_is_the_rfc7638_thumbprint_an_independent_library_computes() {
    let key = SigningKey::generate().unwrap();
    let published = Jwks::from_signing_keys([&key]).to_json();
    let entry = &published["keys"][0];
    assert_eq!(entry["kty"], "OKP");
    assert_eq!(entry["crv"], "Ed25519");
    assert_eq!(entry["alg"], "EdDSA");
    assert_eq!(entry["use"], "sig");
    assert_eq!(entry["kid"], key.kid());
    assert!(entry.get("d").is_none());
    // jsonwebtoken's own thumbprint of the published JWK agrees with ours.
    let theirs: jsonwebtoken::jwk::Jwk = serde_json::from_value(entry.clone()).unwrap();
    assert_eq!(
        theirs
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap(),
        key.kid()
    );
}

#[test]
fn rfc9449_example_key_has_the_published_thumbprint() {
    let header = decode_header(RFC9449_PROOF).unwrap();
    assert_eq!(header.alg, JwsAlg::ES256);
    assert!(header.typ_is("dpop+jwt"));
    let jwk = header.jwk.unwrap();
    assert_eq!(jwk.thumbprint(), RFC9449_JKT);
    let theirs: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.to_json()).unwrap();
    assert_eq!(
        theirs
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap(),
        RFC9449_JKT
    );
}

#[test]
fn rfc9449_example_proof_signature_verifies() {
    let jwk = decode_header(RFC9449_PROOF).unwrap().jwk.unwrap();
    let v = verify(RFC9449_PROOF, &jwk, &[JwsAlg::ES256, JwsAlg::EdDSA]).unwrap();
    assert_eq!(v.claims["htm"], "POST");
    assert_eq!(v.claims["htu"], "https://server.example.com/token");
    assert_eq!(v.claims["iat"], 1_562_262_616);
    // The signature's first character changed ('2' to '3').
    let bad = RFC9449_PROOF.replace(".2-GxA6", ".3-GxA6");
    assert_ne!(bad, RFC9449_PROOF);
    assert_eq!(
        verify(&bad, &jwk, &[JwsAlg::ES256]).unwrap_err(),
        JwsError::BadSignature
    );
}

#[test]
fn algorithms_outside_the_allowlist_are_refused() {
    let key = SigningKey::generate().unwrap();
    let public = PublicJwk::Ed25519(key.public_key());
    let token = sign_jwt(&key, "jwt", &json!({})).unwrap();
    assert_eq!(
        verify(&token, &public, &[JwsAlg::ES256]).unwrap_err(),
        JwsError::AlgorithmNotAllowed("EdDSA".into())
    );
    assert!(verify(&token, &public, &[]).is_err());
}

#[test]
fn alg_none_is_refused() {
    let key = SigningKey::generate().unwrap();
    let public = PublicJwk::Ed25519(key.public_key());
    let header = obj(json!({"typ": "jwt", "kid": key.kid()}));
    let token = dangerous_unsigned(&header, &json!({"sub": "x"}));
    assert_eq!(
        verify(&token, &public, &[JwsAlg::EdDSA, JwsAlg::ES256]).unwrap_err(),
        JwsError::AlgorithmNotAllowed("none".into())
    );
    assert!(decode_header(&token).is_err());
}

#[test]
fn hs256_keyed_with_the_public_key_is_refused() {
    let key = SigningKey::generate().unwrap();
    let public = PublicJwk::Ed25519(key.public_key());
    let header = obj(json!({"typ": "jwt", "kid": key.kid()}));
    for secret in [
        key.public_key().to_vec(),
        serde_json::to_vec(&public.to_json()).unwrap(),
    ] {
        let token = dangerous_hs256(&header, &json!({"sub": "x"}), &secret);
        assert_eq!(
            verify(&token, &public, &[JwsAlg::EdDSA, JwsAlg::ES256]).unwrap_err(),
            JwsError::AlgorithmNotAllowed("HS256".into())
        );
    }
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let key = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    let token = sign_jwt(&other, "jwt", &json!({})).unwrap();
    assert_eq!(
        verify(
            &token,
            &PublicJwk::Ed25519(key.public_key()),
            &[JwsAlg::EdDSA]
        )
        .unwrap_err(),
        JwsError::BadSignature
    );
}

#[test]
fn a_tampered_payload_is_refused() {
    let key = SigningKey::generate().unwrap();
    let token = sign_jwt(&key, "jwt", &json!({"admin": false})).unwrap();
    let [h, _, s] = split(&token).unwrap();
    let forged = format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(br#"{"admin":true}"#));
    assert_eq!(
        verify(
            &forged,
            &PublicJwk::Ed25519(key.public_key()),
            &[JwsAlg::EdDSA]
        )
        .unwrap_err(),
        JwsError::BadSignature
    );
}

#[test]
fn a_key_of_the_wrong_type_is_refused() {
    let proof_key = ProofKey::generate(JwsAlg::ES256).unwrap();
    let token = proof_key.sign_with_jwk("dpop+jwt", &json!({})).unwrap();
    let ed = SigningKey::generate().unwrap();
    assert_eq!(
        verify(
            &token,
            &PublicJwk::Ed25519(ed.public_key()),
            &[JwsAlg::ES256, JwsAlg::EdDSA]
        )
        .unwrap_err(),
        JwsError::KeyMismatch("ES256")
    );
}

#[test]
fn proof_keys_of_both_algorithms_sign_verifiable_jwts() {
    for alg in [JwsAlg::ES256, JwsAlg::EdDSA] {
        let k = ProofKey::generate(alg).unwrap();
        let token = k.sign_with_jwk("dpop+jwt", &json!({"jti": "1"})).unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, alg);
        let jwk = header.jwk.unwrap();
        assert_eq!(&jwk, k.public_jwk());
        assert_eq!(jwk.thumbprint(), k.thumbprint());
        verify(&token, &jwk, &[alg]).unwrap();
        let other = ProofKey::generate(alg).unwrap();
        assert_eq!(
            verify(&token, other.public_jwk(), &[alg]).unwrap_err(),
            JwsError::BadSignature
        );
    }
}

#[test]
fn private_key_material_in_a_jwk_is_refused() {
    let k = ProofKey::generate(JwsAlg::ES256).unwrap();
    let mut jwk = k.public_jwk().to_json();
    jwk["d"] = json!("AAAA");
    assert_eq!(
        PublicJwk::from_json(&jwk).unwrap_err(),
        JwsError::PrivateKeyInJwk
    );
    let header = obj(json!({"typ": "dpop+jwt", "jwk": jwk}));
    let token = k.sign_with_header(&header, &json!({})).unwrap();
    assert_eq!(
        decode_header(&token).unwrap_err(),
        JwsError::PrivateKeyInJwk
    );
    assert_eq!(
        PublicJwk::from_json(&json!({"kty": "oct", "k": "c2VjcmV0"})).unwrap_err(),
        JwsError::PrivateKeyInJwk
    );
}

#[test]
fn unsupported_or_broken_jwks_are_refused() {
    for bad in [
        json!("not an object"),
        json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}),
        json!({"kty": "OKP", "crv": "Ed448", "x": "AA"}),
        json!({"kty": "OKP", "crv": "Ed25519", "x": "too-short"}),
        json!({"kty": "OKP", "crv": "Ed25519"}),
        json!({"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs"}),
    ] {
        assert!(PublicJwk::from_json(&bad).is_err(), "{bad}");
    }
}

#[test]
fn jwks_reading_skips_foreign_keys_and_refuses_leaked_private_keys() {
    let key = SigningKey::generate().unwrap();
    let mut published = Jwks::from_signing_keys([&key]).to_json();
    let keys = published["keys"].as_array_mut().unwrap();
    keys.push(json!({"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}));
    keys.push(json!({"kty": "OKP", "crv": "Ed25519", "x": keys[0]["x"].clone()}));
    keys.push(json!({"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": keys[0]["x"].clone()}));
    let set = Jwks::from_json(&published).unwrap();
    assert_eq!(set.keys().len(), 1);
    assert!(set.find(key.kid()).is_some());
    assert!(set.find("rsa").is_none());

    published["keys"][0]["d"] = json!("AAAA");
    assert_eq!(
        Jwks::from_json(&published).unwrap_err(),
        JwsError::PrivateKeyInJwk
    );
    assert!(Jwks::from_json(&json!({})).is_err());
}

#[test]
fn critical_headers_are_refused() {
    let k = ProofKey::generate(JwsAlg::EdDSA).unwrap();
    let header = obj(json!({"typ": "jwt", "crit": ["exp"], "exp": 1}));
    let token = k.sign_with_header(&header, &json!({})).unwrap();
    assert_eq!(decode_header(&token).unwrap_err(), JwsError::CriticalHeader);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let k = ProofKey::generate(JwsAlg::EdDSA).unwrap();
    let long = "a".repeat(MAX_JWS_LEN + 1);
    for bad in [
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d",
        "!!!.e30.",
        "e30.e30.",
        "eyJhbGciOiJFZERTQSJ9.!!!.AAAA",
        "eyJhbGciOiJFZERTQSJ9.e30.!!!",
        "W10.e30.AAAA",
        long.as_str(),
    ] {
        assert!(
            verify(bad, k.public_jwk(), &[JwsAlg::EdDSA]).is_err(),
            "{bad}"
        );
    }
    // Claims that are valid JSON but not an object.
    let token = k.sign_with_header(&Map::new(), &json!([1, 2])).unwrap();
    assert!(verify(&token, k.public_jwk(), &[JwsAlg::EdDSA]).is_err());
}

/// RFC 7638 §3.1's example RSA key and its published thumbprint. RSA keys
/// exist only for outside issuers (RS256); Warrant never signs with one.
#[test]
fn rfc7638_rsa_example_key_has_the_published_thumbprint() {
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let key = PublicJwk::from_json(&jwk).unwrap();
    assert_eq!(key.alg(), JwsAlg::RS256);
    assert_eq!(
        key.thumbprint(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    assert_eq!(PublicJwk::from_json(&key.to_json()).unwrap(), key);
    // Short moduli and even exponents are refused.
    let mut short = jwk.clone();
    short["n"] = json!(URL_SAFE_NO_PAD.encode([0xC3u8; 128]));
    assert!(PublicJwk::from_json(&short).is_err());
    let mut even = jwk;
    even["e"] = json!("AQAA");
    assert!(PublicJwk::from_json(&even).is_err());
    // Proof keys are never RSA.
    assert!(ProofKey::generate(JwsAlg::RS256).is_err());
}
