//! DSSE, the Dead Simple Signing Envelope
//! (<https://github.com/secure-systems-lab/dsse>, protocol v1.0.0):
//! the signature covers `PAE(payloadType, payload)`, so neither the payload
//! nor its type can be swapped without breaking it.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::{Deserialize, Serialize};
use warrant_crypto::SigningKey;
use warrant_crypto::jws::{Jwks, PublicJwk};

use crate::error::{AttestError, shown};
use crate::statement::Statement;
use crate::subject::Subject;

/// The payload type of an in-toto statement in a DSSE envelope.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The largest envelope [`verify`] looks at. An approval statement is a
/// few KiB; the bound keeps hostile input cheap to refuse.
pub const MAX_ENVELOPE_LEN: usize = 1024 * 1024;

/// How many signatures [`verify`] tries before giving up.
const MAX_SIGNATURES: usize = 16;

/// The DSSE pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
/// decimal bytes without leading zeros.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let (t_len, b_len) = (payload_type.len().to_string(), body.len().to_string());
    let mut out =
        Vec::with_capacity(10 + t_len.len() + payload_type.len() + b_len.len() + body.len());
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(t_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(b_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// A DSSE JSON envelope:
/// `{"payload": <base64>, "payloadType": ..., "signatures": [{"keyid", "sig"}]}`.
/// Warrant writes standard base64 with padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// A hint naming the key; never trusted, only used to pick a key. DSSE
    /// makes it optional: a missing one reads as empty.
    #[serde(default)]
    pub keyid: String,
    pub sig: String,
}

impl Envelope {
    /// The envelope as JSON text.
    pub fn to_json(&self) -> Result<String, AttestError> {
        serde_json::to_string(self)
            .map_err(|e| AttestError::Internal(format!("cannot serialize the envelope: {e}")))
    }
}

/// Signs `statement` with Warrant's key: a DSSE envelope of type
/// [`PAYLOAD_TYPE`] whose one signature has `keyid` = `key.kid()`, the key's
/// RFC 7638 thumbprint as published in the JWKS.
///
/// Refused: a statement without subjects or without approvers.
pub fn sign(statement: &Statement, key: &SigningKey) -> Result<Envelope, AttestError> {
    let payload = statement.to_payload()?;
    Ok(sign_payload(PAYLOAD_TYPE, &payload, key))
}

/// Signs arbitrary bytes as a DSSE envelope. [`sign`] is what Warrant uses;
/// this is the layer below it, for other payloads and for tests.
pub fn sign_payload(payload_type: &str, payload: &[u8], key: &SigningKey) -> Envelope {
    let sig = key.sign(&pae(payload_type, payload));
    Envelope {
        payload: STANDARD.encode(payload),
        payload_type: payload_type.to_owned(),
        signatures: vec![EnvelopeSignature {
            keyid: key.kid().to_owned(),
            sig: STANDARD.encode(sig),
        }],
    }
}

/// The Ed25519 public keys an envelope may be signed by, by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: BTreeMap<String, [u8; 32]>,
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `public_key` for signatures naming `kid`.
    pub fn insert(&mut self, kid: impl Into<String>, public_key: [u8; 32]) -> &mut Self {
        self.keys.insert(kid.into(), public_key);
        self
    }

    /// Trusts a signing key's public half under its own `kid`.
    pub fn from_signing_key(key: &SigningKey) -> Self {
        let mut keys = Self::new();
        keys.insert(key.kid(), key.public_key());
        keys
    }

    /// The Ed25519 keys of a JWKS (Warrant's `/.well-known/jwks.json`),
    /// under their `kid`s. Keys of other types are left out: Warrant signs
    /// attestations with Ed25519 only.
    pub fn from_jwks(jwks: &Jwks) -> Self {
        let mut keys = Self::new();
        for k in jwks.keys() {
            if let PublicJwk::Ed25519(x) = &k.key {
                keys.insert(k.kid.clone(), *x);
            }
        }
        keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted key ids, sorted.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// An envelope whose signature verified, with its statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub statement: Statement,
    /// The trusted key whose signature verified.
    pub keyid: String,
    /// The expected subject, when one was given (it is then among the
    /// statement's subjects).
    pub matched: Option<Subject>,
}

/// Verifies a DSSE envelope holding a Warrant approval statement.
///
/// In order, each failure with its own [`AttestError`]: the envelope must
/// be at most [`MAX_ENVELOPE_LEN`] bytes of DSSE JSON (base64 standard or
/// URL-safe, as DSSE allows); its payload type [`PAYLOAD_TYPE`]; at least
/// one signature by a key in `keys` must verify over the PAE of the decoded
/// payload (signatures naming unknown key ids are skipped, never trusted);
/// only then is the payload parsed: an in-toto Statement v1 with Warrant's
/// approval predicate; and, when `expected` is given, one of its subjects
/// must be that artifact.
pub fn verify(
    envelope_json: &[u8],
    keys: &TrustedKeys,
    expected: Option<&Subject>,
) -> Result<Verified, AttestError> {
    let (payload, keyid) = verify_envelope(envelope_json, keys)?;
    let statement = Statement::from_payload(&payload)?;
    if let Some(expected) = expected
        && !statement.subject.iter().any(|s| expected.matches(s))
    {
        let found: Vec<String> = statement
            .subject
            .iter()
            .flat_map(Subject::describe)
            .map(|s| format!("`{s}`"))
            .collect();
        return Err(AttestError::SubjectMismatch {
            expected: expected.to_string(),
            found: found.join(", "),
        });
    }
    Ok(Verified {
        statement,
        keyid,
        matched: expected.cloned(),
    })
}

/// The DSSE layer of [`verify`]: the decoded payload, once a trusted key's
/// signature over it verified, and that key's id.
fn verify_envelope(
    envelope_json: &[u8],
    keys: &TrustedKeys,
) -> Result<(Vec<u8>, String), AttestError> {
    if envelope_json.len() > MAX_ENVELOPE_LEN {
        return Err(AttestError::TooLarge {
            max: MAX_ENVELOPE_LEN,
        });
    }
    let envelope: Envelope =
        serde_json::from_slice(envelope_json).map_err(|e| AttestError::Malformed(e.to_string()))?;
    // DSSE checks the type after the signature; checking it first refuses
    // the same envelopes and names the actual problem. The signature covers
    // the type too, so a changed type would also fail below.
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(AttestError::PayloadType {
            found: shown(&envelope.payload_type),
            expected: PAYLOAD_TYPE,
        });
    }
    let payload = decode_base64(&envelope.payload)
        .ok_or_else(|| AttestError::Malformed("the payload is not base64".into()))?;
    if envelope.signatures.is_empty() {
        return Err(AttestError::NoSignatures);
    }
    if keys.is_empty() {
        return Err(AttestError::NoTrustedKeys);
    }
    // INVARIANT: the signature is checked over the PAE of exactly the bytes
    // that are parsed afterwards, never over a re-encoding of them.
    let message = pae(&envelope.payload_type, &payload);
    let mut failed: Option<&str> = None;
    for signature in envelope.signatures.iter().take(MAX_SIGNATURES) {
        // DSSE: the key id only narrows the keys to try; an empty one
        // means any trusted key.
        let candidates: Vec<(&String, &[u8; 32])> = if signature.keyid.is_empty() {
            keys.keys.iter().collect()
        } else {
            keys.keys
                .get_key_value(&signature.keyid)
                .into_iter()
                .collect()
        };
        if candidates.is_empty() {
            continue;
        }
        let Some(sig) = decode_base64(&signature.sig) else {
            failed.get_or_insert(signature.keyid.as_str());
            continue;
        };
        for (kid, public_key) in candidates {
            if warrant_crypto::verify_ed25519(public_key, &message, &sig).is_ok() {
                return Ok((payload, kid.clone()));
            }
        }
        failed.get_or_insert(signature.keyid.as_str());
    }
    match failed {
        Some(keyid) => Err(AttestError::BadSignature {
            keyid: if keyid.is_empty() {
                "(none)".to_owned()
            } else {
                shown(keyid)
            },
        }),
        None => Err(AttestError::UnknownKey {
            keyids: quoted(envelope.signatures.iter().map(|s| s.keyid.as_str())),
            trusted: quoted(keys.kids()),
        }),
    }
}

/// `` `a`, `b` `` for messages, bounded.
fn quoted<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items
        .take(MAX_SIGNATURES)
        .map(|s| format!("`{}`", shown(s)))
        .collect();
    items.join(", ")
}

/// DSSE allows standard and URL-safe base64; verifiers must accept both.
/// Padding may be present or not; trailing bits must be zero (a string
/// decodes to one byte sequence only).
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&alphabet::STANDARD, config);
    let url_safe = GeneralPurpose::new(&alphabet::URL_SAFE, config);
    standard.decode(s).or_else(|_| url_safe.decode(s)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_either_alphabet_and_padding_decodes() {
        let bytes = [0xfb, 0xff, 0x01];
        for s in ["+/8B", "-_8B"] {
            assert_eq!(decode_base64(s).unwrap(), bytes);
        }
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        // Non-zero trailing bits: another string for the same bytes.
        assert!(decode_base64("aGl=").is_none());
        assert!(decode_base64("a b").is_none());
        assert!(decode_base64("+_8B").is_none(), "mixed alphabets");
    }
}
