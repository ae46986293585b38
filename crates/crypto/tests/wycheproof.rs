//! Wycheproof (C2SP) signature vectors run through
//! [`verify_signature`], the one signature check behind `jws::verify`.
//!
//! A Wycheproof vector signs an arbitrary message, not a JWS signing input,
//! so the vectors go to `verify_signature` directly; `verify` reaches the
//! same function after splitting the token. Families, as JWS uses them
//! (RFC 7518 §3): Ed25519 (`EdDSA`), ECDSA P-256 with SHA-256 in IEEE P1363
//! form `R || S` (`ES256`), and RSASSA-PKCS1-v1_5 with SHA-256 on 2048 to
//! 8192-bit keys (`RS256`).
//!
//! Every `valid` vector must verify and every `invalid` one must be refused
//! as a bad signature. `acceptable` vectors may go either way; which way
//! they go is pinned below so that a change is noticed. Each family also
//! asserts a minimum number of vectors, so an empty or renamed data set
//! fails instead of passing on nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use warrant_crypto::jws::{JwsAlg, JwsError, PublicJwk, verify_signature};
use wycheproof::{EdwardsCurve, EllipticCurve, HashFunction, TestResult};

/// What one family of vectors did.
struct Tally {
    family: &'static str,
    valid: usize,
    invalid: usize,
    acceptable_accepted: Vec<usize>,
    acceptable_refused: Vec<usize>,
    failures: Vec<String>,
}

impl Tally {
    fn new(family: &'static str) -> Self {
        Self {
            family,
            valid: 0,
            invalid: 0,
            acceptable_accepted: Vec::new(),
            acceptable_refused: Vec::new(),
            failures: Vec::new(),
        }
    }

    fn record(
        &mut self,
        tc_id: usize,
        comment: &str,
        expected: TestResult,
        outcome: Result<(), JwsError>,
    ) {
        match (expected, outcome) {
            (TestResult::Valid, Ok(())) => self.valid += 1,
            (TestResult::Invalid, Err(JwsError::BadSignature)) => self.invalid += 1,
            (TestResult::Acceptable, Ok(())) => self.acceptable_accepted.push(tc_id),
            (TestResult::Acceptable, Err(JwsError::BadSignature)) => {
                self.acceptable_refused.push(tc_id);
            }
            (expected, outcome) => self.failures.push(format!(
                "tcId {tc_id} ({comment}): expected {expected:?}, got {outcome:?}"
            )),
        }
    }

    /// Prints the counts and fails on any wrong outcome or on fewer
    /// vectors than the data set is known to hold.
    fn finish(&self, min_valid: usize, min_invalid: usize) {
        println!(
            "wycheproof {}: {} valid verified, {} invalid refused, \
             acceptable accepted {:?}, acceptable refused {:?}",
            self.family,
            self.valid,
            self.invalid,
            self.acceptable_accepted,
            self.acceptable_refused
        );
        assert!(
            self.failures.is_empty(),
            "wycheproof {}: {} vectors went the wrong way:\n{}",
            self.family,
            self.failures.len(),
            self.failures.join("\n")
        );
        assert!(
            self.valid >= min_valid && self.invalid >= min_invalid,
            "wycheproof {}: only {} valid and {} invalid vectors ran (want at least {min_valid} and {min_invalid})",
            self.family,
            self.valid,
            self.invalid
        );
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A big-endian integer without leading zero bytes (Wycheproof writes
/// moduli with a sign byte; a JWK must not).
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Keys go through the JWK parser, the way outside keys reach the verifier.
fn jwk(value: serde_json::Value) -> PublicJwk {
    PublicJwk::from_json(&value)
        .unwrap_or_else(|e| panic!("the vector's key {value} is refused: {e}"))
}

fn p256_key(uncompressed: &[u8]) -> PublicJwk {
    let [0x04, point @ ..] = uncompressed else {
        panic!("not an uncompressed P-256 point");
    };
    assert_eq!(point.len(), 64, "not an uncompressed P-256 point");
    let (x, y) = point.split_at(32);
    jwk(json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}))
}

#[test]
fn ed25519_vectors() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut tally = Tally::new("Ed25519 (EdDSA)");
    for group in &set.test_groups {
        assert_eq!(group.key.curve, EdwardsCurve::Ed25519);
        let key = jwk(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&group.key.pk)}));
        for t in &group.tests {
            let outcome = verify_signature(JwsAlg::EdDSA, &key, &t.msg, &t.sig);
            tally.record(t.tc_id, &t.comment, t.result, outcome);
            if t.result == TestResult::Valid {
                // The same good signature under another algorithm name is
                // refused before any cryptography runs.
                assert_eq!(
                    verify_signature(JwsAlg::ES256, &key, &t.msg, &t.sig),
                    Err(JwsError::KeyMismatch("ES256"))
                );
            }
        }
    }
    // The data set holds 88 valid and 63 invalid vectors.
    tally.finish(80, 60);
    assert!(tally.acceptable_accepted.is_empty() && tally.acceptable_refused.is_empty());
}

#[test]
fn ecdsa_p256_sha256_p1363_vectors() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let mut tally = Tally::new("ECDSA P-256 SHA-256 P1363 (ES256)");
    for group in &set.test_groups {
        assert_eq!(group.key.curve, EllipticCurve::Secp256r1);
        assert_eq!(group.hash, HashFunction::Sha2_256);
        let key = p256_key(&group.key.key);
        for t in &group.tests {
            let outcome = verify_signature(JwsAlg::ES256, &key, &t.msg, &t.sig);
            tally.record(t.tc_id, &t.comment, t.result, outcome);
        }
    }
    // The data set holds 173 valid and 89 invalid vectors.
    tally.finish(160, 80);
    assert!(tally.acceptable_accepted.is_empty() && tally.acceptable_refused.is_empty());
}

/// `(r, s)` from a strict DER `SEQUENCE { INTEGER r, INTEGER s }`, as a
/// 64-byte P1363 signature. Only used on vectors Wycheproof calls valid.
fn der_to_p1363(der: &[u8]) -> Vec<u8> {
    let [0x30, len, rest @ ..] = der else {
        panic!("not a DER sequence");
    };
    assert_eq!(usize::from(*len), rest.len(), "DER sequence length");
    let mut out = Vec::with_capacity(64);
    let mut rest = rest;
    for _ in 0..2 {
        let [0x02, len, tail @ ..] = rest else {
            panic!("not a DER integer");
        };
        let (int, tail) = tail.split_at(usize::from(*len));
        let int = unsigned(int);
        assert!(int.len() <= 32, "integer wider than P-256");
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        rest = tail;
    }
    assert!(rest.is_empty(), "trailing bytes after the DER sequence");
    out
}

/// JWS ES256 signatures are `R || S` (RFC 7518 §3.4); a DER-encoded one,
/// as some libraries wrongly produce, is refused even when the signature
/// itself is good, and the same signature re-encoded as `R || S` verifies.
#[test]
fn ecdsa_p256_der_signatures_are_refused() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256).unwrap();
    let mut refused = 0;
    for group in &set.test_groups {
        assert_eq!(group.hash, HashFunction::Sha2_256);
        let key = p256_key(&group.key.key);
        for t in group.tests.iter().filter(|t| t.result == TestResult::Valid) {
            assert_eq!(
                verify_signature(JwsAlg::ES256, &key, &t.msg, &t.sig),
                Err(JwsError::BadSignature),
                "tcId {}: a DER signature was accepted",
                t.tc_id
            );
            assert_eq!(
                verify_signature(JwsAlg::ES256, &key, &t.msg, &der_to_p1363(&t.sig)),
                Ok(()),
                "tcId {}: the re-encoded signature does not verify",
                t.tc_id
            );
            refused += 1;
        }
    }
    println!("wycheproof ECDSA P-256 SHA-256 DER: {refused} good DER signatures refused");
    // The data set holds 174 valid DER vectors.
    assert!(refused >= 160, "only {refused} DER vectors ran");
}

#[test]
fn rsa_pkcs1_sha256_vectors() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    // (data set, its valid and invalid vector counts at the time of writing)
    let sets = [
        (TestName::Rsa2048Sha256, 9, 249),
        (TestName::Rsa3072Sha256, 8, 250),
        (TestName::Rsa4096Sha256, 7, 250),
        (TestName::Rsa8192Sha256, 7, 250),
    ];
    for (name, valid, invalid) in sets {
        let set = TestSet::load(name).unwrap();
        let family = match name {
            TestName::Rsa2048Sha256 => "RSA-2048 PKCS#1 v1.5 SHA-256 (RS256)",
            TestName::Rsa3072Sha256 => "RSA-3072 PKCS#1 v1.5 SHA-256 (RS256)",
            TestName::Rsa4096Sha256 => "RSA-4096 PKCS#1 v1.5 SHA-256 (RS256)",
            _ => "RSA-8192 PKCS#1 v1.5 SHA-256 (RS256)",
        };
        let mut tally = Tally::new(family);
        for group in &set.test_groups {
            assert_eq!(group.hash, HashFunction::Sha2_256);
            let key = jwk(json!({
                "kty": "RSA",
                "n": b64(unsigned(&group.key.n)),
                "e": b64(unsigned(&group.key.e)),
            }));
            for t in &group.tests {
                let outcome = verify_signature(JwsAlg::RS256, &key, &t.msg, &t.sig);
                tally.record(t.tc_id, &t.comment, t.result, outcome);
            }
        }
        tally.finish(valid, invalid);
        // The one `acceptable` vector in each set is a DigestInfo without
        // the NULL parameters (RFC 8017 §9.2, note 2, lets verifiers take
        // it). aws-lc compares the encoding with NULL byte for byte, so it
        // is refused: there is one accepted encoding per signature.
        assert!(
            tally.acceptable_accepted.is_empty(),
            "{family}: acceptable vectors {:?} are now accepted",
            tally.acceptable_accepted
        );
        assert_eq!(tally.acceptable_refused.len(), 1, "{family}");
    }
}
