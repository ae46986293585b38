use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;
use warrant_crypto::sha256;

/// A SHA-256 chain hash.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first event.
pub const GENESIS: Hash = [0u8; 32];

/// Version tag inside every hashed encoding, so the format can evolve.
const FORMAT_VERSION: u64 = 1;

/// An event as its producer describes it, before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    pub time: Timestamp,
    /// Dotted event kind, e.g. `task.created` (see docs/audit-log.md).
    pub kind: String,
    /// Who caused it: `user:<name>`, `run:<id>`, `system:<component>`.
    pub actor: String,
    /// What it is about: `task:<id>`, `user:<name>`, `agent:<name>`.
    pub subject: String,
    pub task_id: Option<String>,
    /// Kind-specific fields. Never secrets.
    pub data: Value,
}

impl NewEvent {
    /// Places the event at `seq` after `prev_hash` and computes its hash.
    /// The time is truncated to microseconds, the precision the store keeps.
    pub fn chain(self, seq: u64, prev_hash: Hash) -> Event {
        let time_us = to_micros(self.time);
        let time = from_micros(time_us).unwrap_or(self.time);
        let hash = compute_hash(
            seq,
            time_us,
            &self.kind,
            &self.actor,
            &self.subject,
            self.task_id.as_deref(),
            &self.data,
            &prev_hash,
        );
        Event {
            seq,
            time,
            kind: self.kind,
            actor: self.actor,
            subject: self.subject,
            task_id: self.task_id,
            data: self.data,
            prev_hash,
            hash,
        }
    }
}

/// An event in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub time: Timestamp,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub task_id: Option<String>,
    pub data: Value,
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

impl Event {
    /// The row a store keeps for this event.
    pub fn to_raw(&self) -> RawEvent {
        RawEvent {
            seq: self.seq as i64,
            time_us: to_micros(self.time),
            kind: self.kind.clone(),
            actor: self.actor.clone(),
            subject: self.subject.clone(),
            task_id: self.task_id.clone(),
            // JCS text, so the stored data is itself canonical.
            data: serde_json_canonicalizer::to_string(&self.data)
                .unwrap_or_else(|_| self.data.to_string()),
            prev_hash: self.prev_hash.to_vec(),
            hash: self.hash.to_vec(),
        }
    }
}

/// An event exactly as a store holds it. Nothing in it is trusted until
/// [`RawEvent::decode`] and the [`crate::Verifier`] have looked at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub seq: i64,
    pub time_us: i64,
    pub kind: String,
    pub actor: String,
    pub subject: String,
    pub task_id: Option<String>,
    /// JSON text.
    pub data: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("sequence number {0} is not positive")]
    Seq(i64),
    #[error("time {0} is out of range")]
    Time(i64),
    #[error("data is not valid JSON: {0}")]
    Data(String),
    #[error("{0} is not 32 bytes")]
    HashLength(&'static str),
}

impl RawEvent {
    /// Parses the row's fields. Does not check the hash: see
    /// [`RawEvent::hash_matches`].
    pub fn decode(&self) -> Result<Event, DecodeError> {
        let seq = u64::try_from(self.seq)
            .ok()
            .filter(|s| *s > 0)
            .ok_or(DecodeError::Seq(self.seq))?;
        let time = from_micros(self.time_us).ok_or(DecodeError::Time(self.time_us))?;
        let data: Value =
            serde_json::from_str(&self.data).map_err(|e| DecodeError::Data(e.to_string()))?;
        let prev_hash: Hash = self
            .prev_hash
            .as_slice()
            .try_into()
            .map_err(|_| DecodeError::HashLength("prev_hash"))?;
        let hash: Hash = self
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| DecodeError::HashLength("hash"))?;
        Ok(Event {
            seq,
            time,
            kind: self.kind.clone(),
            actor: self.actor.clone(),
            subject: self.subject.clone(),
            task_id: self.task_id.clone(),
            data,
            prev_hash,
            hash,
        })
    }
}

impl Event {
    /// The hash this event's fields would have if it stood at `seq`.
    pub fn hash_at(&self, seq: u64) -> Hash {
        compute_hash(
            seq,
            to_micros(self.time),
            &self.kind,
            &self.actor,
            &self.subject,
            self.task_id.as_deref(),
            &self.data,
            &self.prev_hash,
        )
    }
}

/// The exact bytes an event's hash is taken over: the RFC 8785 canonical
/// JSON of an object with the members `v`, `seq`, `time_us`, `kind`,
/// `actor`, `subject`, `task_id`, `data` and `prev_hash` (lowercase hex).
#[expect(
    clippy::too_many_arguments,
    reason = "one argument per hashed field keeps the encoding explicit"
)]
pub fn canonical_bytes(
    seq: u64,
    time_us: i64,
    kind: &str,
    actor: &str,
    subject: &str,
    task_id: Option<&str>,
    data: &Value,
    prev_hash: &Hash,
) -> Vec<u8> {
    let doc = json!({
        "v": FORMAT_VERSION,
        "seq": seq,
        "time_us": time_us,
        "kind": kind,
        "actor": actor,
        "subject": subject,
        "task_id": task_id,
        "data": data,
        "prev_hash": hex::encode(prev_hash),
    });
    // INVARIANT: a `Value` built from strings, integers and parsed JSON always
    // canonicalizes; the fallback keeps this total without a panic.
    serde_json_canonicalizer::to_vec(&doc).unwrap_or_else(|_| doc.to_string().into_bytes())
}

#[expect(clippy::too_many_arguments, reason = "mirrors canonical_bytes")]
fn compute_hash(
    seq: u64,
    time_us: i64,
    kind: &str,
    actor: &str,
    subject: &str,
    task_id: Option<&str>,
    data: &Value,
    prev_hash: &Hash,
) -> Hash {
    sha256(&canonical_bytes(
        seq, time_us, kind, actor, subject, task_id, data, prev_hash,
    ))
}

pub(crate) fn to_micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

pub(crate) fn from_micros(us: i64) -> Option<Timestamp> {
    Timestamp::from_microsecond(us).ok()
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(D::Error::custom)?;
        v.try_into()
            .map_err(|_| D::Error::custom("expected 32 bytes of hex"))
    }
}
