//! Signing and verification through the public API, and every way an
//! envelope is refused.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use warrant_attest::{
    AttestError, Envelope, MAX_ENVELOPE_LEN, PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE,
    Statement, Subject, TrustedKeys, pae, sign, sign_payload, verify,
};
use warrant_crypto::SigningKey;
use warrant_crypto::jws::{self, Jwks, JwsAlg, PublicJwk};

use super::{COMMIT, DIGEST, OTHER_COMMIT, commit, predicate, statement};

fn key() -> SigningKey {
    SigningKey::generate().unwrap()
}

fn signed(key: &SigningKey) -> Envelope {
    sign(&statement(), key).unwrap()
}

fn bytes(envelope: &Envelope) -> Vec<u8> {
    envelope.to_json().unwrap().into_bytes()
}

fn payload_of(envelope: &Envelope) -> Vec<u8> {
    STANDARD.decode(&envelope.payload).unwrap()
}

fn with_payload(envelope: &Envelope, payload: &[u8]) -> Envelope {
    Envelope {
        payload: STANDARD.encode(payload),
        ..envelope.clone()
    }
}

#[test]
fn a_signed_approval_verifies_for_each_of_its_subjects() {
    let k = key();
    let keys = TrustedKeys::from_signing_key(&k);
    let env = bytes(&signed(&k));

    let v = verify(&env, &keys, Some(&commit())).unwrap();
    assert_eq!(v.keyid, k.kid());
    assert_eq!(v.statement, statement());
    assert_eq!(v.matched, Some(commit()));
    assert_eq!(v.statement.predicate.approvers[0].name, "bob");

    let image = Subject::sha256_hex(DIGEST).unwrap();
    assert_eq!(
        verify(&env, &keys, Some(&image)).unwrap().matched,
        Some(image)
    );
    assert_eq!(verify(&env, &keys, None).unwrap().matched, None);
}

#[test]
fn the_envelope_is_standard_dsse_over_an_in_toto_statement() {
    let k = key();
    let env = signed(&k);
    let json: Value = serde_json::from_str(&env.to_json().unwrap()).unwrap();
    assert_eq!(json["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(json["signatures"][0]["keyid"], k.kid());
    let sig = STANDARD
        .decode(json["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    assert_eq!(sig.len(), 64);
    // The signature is plain Ed25519 over PAE(type, payload): checked here
    // with the crypto crate directly, not through `verify`.
    let payload = payload_of(&env);
    warrant_crypto::verify_ed25519(&k.public_key(), &pae(PAYLOAD_TYPE, &payload), &sig).unwrap();

    let statement: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["_type"], STATEMENT_TYPE);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], PREDICATE_TYPE);
    assert_eq!(
        statement["predicateType"],
        "https://warrant.dev/attestation/approval/v1"
    );
    assert_eq!(
        statement["subject"],
        json!([
            {"name": "acme/api", "digest": {"gitCommit": COMMIT}},
            {"name": "registry.example/acme/api", "digest": {"sha256": DIGEST}},
        ])
    );
    let p = &statement["predicate"];
    assert_eq!(p["action"], "deploy");
    assert_eq!(p["resource"], json!({"type": "environment", "id": "prod"}));
    assert_eq!(p["delegator"], "alice");
    assert_eq!(
        p["approvers"],
        json!([{"name": "bob", "reason": "release 1.4 signed off", "at": "2026-03-01T10:05:00Z"}])
    );
    assert_eq!(p["expires_at"], "2026-03-01T10:30:00Z");
    assert_eq!(p["quorum"], 1);
}

#[test]
fn an_approval_for_one_commit_is_refused_for_another() {
    let k = key();
    let env = bytes(&signed(&k));
    let other = Subject::git_commit(OTHER_COMMIT).unwrap();
    let err = verify(&env, &TrustedKeys::from_signing_key(&k), Some(&other)).unwrap_err();
    assert!(matches!(err, AttestError::SubjectMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("`sha1:{OTHER_COMMIT}`")), "{msg}");
    assert!(msg.contains(&format!("`sha1:{COMMIT}`")), "{msg}");
}

#[test]
fn a_modified_payload_is_refused() {
    let k = key();
    let keys = TrustedKeys::from_signing_key(&k);
    let env = signed(&k);
    let payload = payload_of(&env);

    // Still a valid statement, so only the signature can catch it.
    let text = String::from_utf8(payload.clone()).unwrap();
    let forged = text.replace("\"bob\"", "\"eve\"");
    assert_ne!(forged, text);
    let err = verify(&bytes(&with_payload(&env, forged.as_bytes())), &keys, None).unwrap_err();
    assert_eq!(
        err,
        AttestError::BadSignature {
            keyid: k.kid().to_owned()
        }
    );

    // The commit swapped for another: refused before any subject check.
    let forged = text.replace(COMMIT, OTHER_COMMIT);
    let other = Subject::git_commit(OTHER_COMMIT).unwrap();
    let err = verify(
        &bytes(&with_payload(&env, forged.as_bytes())),
        &keys,
        Some(&other),
    );
    assert!(
        matches!(err, Err(AttestError::BadSignature { .. })),
        "{err:?}"
    );

    // Any single flipped bit.
    for i in [0, payload.len() / 2, payload.len() - 1] {
        let mut flipped = payload.clone();
        flipped[i] ^= 0x01;
        let err = verify(&bytes(&with_payload(&env, &flipped)), &keys, None).unwrap_err();
        assert!(
            matches!(err, AttestError::BadSignature { .. }),
            "byte {i}: {err}"
        );
    }

    // A signature flipped instead.
    let mut sig = STANDARD.decode(&env.signatures[0].sig).unwrap();
    sig[10] ^= 0x80;
    let mut tampered = env.clone();
    tampered.signatures[0].sig = STANDARD.encode(&sig);
    let err = verify(&bytes(&tampered), &keys, None).unwrap_err();
    assert!(matches!(err, AttestError::BadSignature { .. }), "{err}");
}

#[test]
fn the_same_payload_in_url_safe_base64_verifies() {
    // DSSE: verifiers accept standard and URL-safe base64; the signature is
    // over the decoded bytes, so the encoding does not matter.
    let k = key();
    let env = signed(&k);
    let mut url = env.clone();
    url.payload = URL_SAFE_NO_PAD.encode(payload_of(&env));
    url.signatures[0].sig =
        URL_SAFE_NO_PAD.encode(STANDARD.decode(&env.signatures[0].sig).unwrap());
    verify(
        &bytes(&url),
        &TrustedKeys::from_signing_key(&k),
        Some(&commit()),
    )
    .unwrap();
}

#[test]
fn a_foreign_key_is_refused_under_its_own_or_a_trusted_key_id() {
    let trusted = key();
    let keys = TrustedKeys::from_signing_key(&trusted);
    let foreign = key();
    let env = signed(&foreign);

    // Under its own kid: nothing to verify it with.
    let err = verify(&bytes(&env), &keys, Some(&commit())).unwrap_err();
    match &err {
        AttestError::UnknownKey { keyids, trusted: t } => {
            assert!(keyids.contains(foreign.kid()), "{err}");
            assert!(t.contains(trusted.kid()), "{err}");
        }
        other => panic!("expected an unknown key, got {other:?}"),
    }

    // Claiming the trusted kid: the signature does not verify.
    let mut claimed = env.clone();
    claimed.signatures[0].keyid = trusted.kid().to_owned();
    let err = verify(&bytes(&claimed), &keys, Some(&commit())).unwrap_err();
    assert_eq!(
        err,
        AttestError::BadSignature {
            keyid: trusted.kid().to_owned()
        }
    );

    // Without a key id every trusted key is tried, and none verifies.
    let mut anonymous = env;
    anonymous.signatures[0].keyid = String::new();
    let err = verify(&bytes(&anonymous), &keys, None).unwrap_err();
    assert!(matches!(err, AttestError::BadSignature { .. }), "{err}");
}

#[test]
fn signatures_by_unknown_keys_are_skipped_not_trusted() {
    let trusted = key();
    let keys = TrustedKeys::from_signing_key(&trusted);
    let good = signed(&trusted);
    let foreign = signed(&key());
    // A foreign signature first, then the trusted one: accepted on the
    // trusted one.
    let mut both = good.clone();
    both.signatures.insert(0, foreign.signatures[0].clone());
    let v = verify(&bytes(&both), &keys, Some(&commit())).unwrap();
    assert_eq!(v.keyid, trusted.kid());

    // A signature without a key id is tried against the trusted keys.
    let mut anonymous = good;
    anonymous.signatures[0].keyid = String::new();
    let v = verify(&bytes(&anonymous), &keys, None).unwrap();
    assert_eq!(v.keyid, trusted.kid());
}

#[test]
fn a_wrong_payload_type_is_refused() {
    let k = key();
    let keys = TrustedKeys::from_signing_key(&k);
    let payload = serde_json::to_vec(&statement()).unwrap();

    // Signed as another type.
    let env = sign_payload("application/json", &payload, &k);
    let err = verify(&bytes(&env), &keys, None).unwrap_err();
    assert_eq!(
        err,
        AttestError::PayloadType {
            found: "application/json".into(),
            expected: PAYLOAD_TYPE
        }
    );

    // Signed as in-toto, then relabelled: refused as well.
    let mut relabelled = signed(&k);
    relabelled.payload_type = "application/vnd.in-toto+json; v=2".into();
    let err = verify(&bytes(&relabelled), &keys, None).unwrap_err();
    assert!(matches!(err, AttestError::PayloadType { .. }), "{err}");
}

#[test]
fn malformed_envelopes_are_refused() {
    let k = key();
    let keys = TrustedKeys::from_signing_key(&k);
    let good: Value = serde_json::from_str(&signed(&k).to_json().unwrap()).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };

    let malformed = [
        b"not json".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        edit(&|v| {
            v.as_object_mut().unwrap().remove("payload");
        }),
        edit(&|v| {
            v.as_object_mut().unwrap().remove("signatures");
        }),
        edit(&|v| v["payload"] = json!(42)),
        edit(&|v| v["payload"] = json!("not base64!")),
        edit(&|v| {
            v["signatures"][0].as_object_mut().unwrap().remove("sig");
        }),
    ];
    for (i, input) in malformed.iter().enumerate() {
        let err = verify(input, &keys, None).unwrap_err();
        assert!(matches!(err, AttestError::Malformed(_)), "case {i}: {err}");
    }

    let err = verify(&edit(&|v| v["signatures"] = json!([])), &keys, None).unwrap_err();
    assert_eq!(err, AttestError::NoSignatures);

    let err = verify(
        &edit(&|v| v["signatures"][0]["sig"] = json!("@@")),
        &keys,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, AttestError::BadSignature { .. }), "{err}");

    let huge = vec![b' '; MAX_ENVELOPE_LEN + 1];
    let err = verify(&huge, &keys, None).unwrap_err();
    assert!(matches!(err, AttestError::TooLarge { .. }), "{err}");

    // Unknown members are ignored, as DSSE requires.
    let extra = edit(&|v| v["comment"] = json!("hello"));
    verify(&extra, &keys, Some(&commit())).unwrap();
}

#[test]
fn no_trusted_keys_is_its_own_error() {
    let env = bytes(&signed(&key()));
    let err = verify(&env, &TrustedKeys::new(), None).unwrap_err();
    assert_eq!(err, AttestError::NoTrustedKeys);
}

#[test]
fn signed_payloads_that_are_not_warrant_approvals_are_refused() {
    let k = key();
    let keys = TrustedKeys::from_signing_key(&k);
    let good: Value = serde_json::to_value(statement()).unwrap();
    let check = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        let env = sign_payload(PAYLOAD_TYPE, &serde_json::to_vec(&v).unwrap(), &k);
        verify(&bytes(&env), &keys, None).unwrap_err()
    };

    let err = check(&|v| v["_type"] = json!("https://in-toto.io/Statement/v0.1"));
    assert!(matches!(err, AttestError::StatementType { .. }), "{err}");
    let err = check(&|v| v["predicateType"] = json!("https://slsa.dev/provenance/v1"));
    assert!(matches!(err, AttestError::PredicateType { .. }), "{err}");
    assert!(err.to_string().contains("https://slsa.dev/provenance/v1"));
    let err = check(&|v| {
        v["predicate"].as_object_mut().unwrap().remove("approvers");
    });
    assert!(matches!(err, AttestError::Predicate(_)), "{err}");
    let err = check(&|v| v["predicate"]["approvers"] = json!([]));
    assert!(matches!(err, AttestError::Predicate(_)), "{err}");
    let err = check(&|v| v["predicate"]["approved_at"] = json!("yesterday"));
    assert!(matches!(err, AttestError::Predicate(_)), "{err}");
    let err = check(&|v| v["subject"] = json!([]));
    assert_eq!(err, AttestError::NoSubject);
    let err = check(&|v| v["subject"] = json!([{"name": "x", "digest": {}}]));
    assert!(matches!(err, AttestError::Statement(_)), "{err}");
    let err = check(&|v| *v = json!("a string"));
    assert!(matches!(err, AttestError::Statement(_)), "{err}");

    let env = sign_payload(PAYLOAD_TYPE, b"{not json", &k);
    let err = verify(&bytes(&env), &keys, None).unwrap_err();
    assert!(matches!(err, AttestError::Statement(_)), "{err}");
}

#[test]
fn signing_refuses_a_statement_without_subject_or_approver() {
    let k = key();
    let err = sign(&Statement::approval(vec![], predicate()), &k).unwrap_err();
    assert_eq!(err, AttestError::NoSubject);
    let mut p = predicate();
    p.approvers.clear();
    let err = sign(&Statement::approval(vec![commit().descriptor("r")], p), &k).unwrap_err();
    assert!(matches!(err, AttestError::Predicate(_)), "{err}");
}

#[test]
fn trusted_keys_come_from_a_jwks() {
    let (a, b) = (key(), key());
    let published = Jwks::from_signing_keys([&a, &b]).to_json();
    let jwks = Jwks::from_json(&published).unwrap();
    let keys = TrustedKeys::from_jwks(&jwks);
    assert_eq!(keys.len(), 2);
    let v = verify(&bytes(&signed(&b)), &keys, Some(&commit())).unwrap();
    assert_eq!(v.keyid, b.kid());
}

/// The DSSE protocol's own test vector (protocol.md, "Test Vectors"): the
/// PAE bytes, and the spec's ECDSA P-256 signature verifies over the PAE
/// computed here. A PAE off by one byte would fail the signature.
#[test]
fn pae_matches_the_dsse_spec_vector() {
    let encoded = pae("http://example.com/HelloWorld", b"hello world");
    assert_eq!(
        encoded,
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    );
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ");

    let hex = |s: &str| -> [u8; 32] {
        (0..32)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap()
    };
    // X and Y of the spec's key, converted from decimal.
    let key = PublicJwk::P256 {
        x: hex("67cd390f77aa359cb08c2235f652270493a9ed832b0abcc01f70954c0390d238"),
        y: hex("0c782bd54e269125a44f4433aff1432ce94e12bca73aa67ac80cea12608ddf74"),
    };
    let spec_envelope = r#"{"payload": "aGVsbG8gd29ybGQ=",
 "payloadType": "http://example.com/HelloWorld",
 "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}"#;
    let env: Envelope = serde_json::from_str(spec_envelope).unwrap();
    assert_eq!(env.signatures[0].keyid, "");
    let sig = STANDARD.decode(&env.signatures[0].sig).unwrap();
    let body = STANDARD.decode(&env.payload).unwrap();
    jws::verify_signature(JwsAlg::ES256, &key, &pae(&env.payload_type, &body), &sig).unwrap();
    // And not over a PAE with a different length field.
    let off = b"DSSEv1 29 http://example.com/HelloWorld 12 hello world";
    assert!(jws::verify_signature(JwsAlg::ES256, &key, off, &sig).is_err());
}
