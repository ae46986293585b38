use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use warrant_crypto::{SigningKey, verify_ed25519};

use crate::Hash;
use crate::event::to_micros;

/// A signed statement "the chain's event `seq` has hash `hash`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    #[serde(with = "hex::serde")]
    pub hash: Hash,
    pub time: Timestamp,
    /// The signing key's id (RFC 7638 thumbprint).
    pub kid: String,
    /// Ed25519 signature over [`checkpoint_message`], base64url.
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// The bytes a checkpoint signature covers: a domain-separation line, then
/// `seq`, the lowercase-hex hash, the time in microseconds and the kid, one
/// per line.
pub fn checkpoint_message(seq: u64, hash: &Hash, time_us: i64, kid: &str) -> Vec<u8> {
    format!(
        "warrant-audit-checkpoint/v1\n{seq}\n{}\n{time_us}\n{kid}\n",
        hex::encode(hash)
    )
    .into_bytes()
}

impl Checkpoint {
    pub fn sign(seq: u64, hash: Hash, time: Timestamp, key: &SigningKey) -> Self {
        let time_us = to_micros(time);
        let time = Timestamp::from_microsecond(time_us).unwrap_or(time);
        let signature = key
            .sign(&checkpoint_message(seq, &hash, time_us, key.kid()))
            .to_vec();
        Self {
            seq,
            hash,
            time,
            kid: key.kid().to_owned(),
            signature,
        }
    }

    /// Checks the signature with `public_key`.
    pub fn verify_signature(&self, public_key: &[u8]) -> bool {
        let msg = checkpoint_message(self.seq, &self.hash, to_micros(self.time), &self.kid);
        verify_ed25519(public_key, &msg, &self.signature).is_ok()
    }
}

mod b64 {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        URL_SAFE_NO_PAD.decode(s).map_err(D::Error::custom)
    }
}
