//! Warrant's audit log format: events, their canonical encoding, the hash
//! chain, signed checkpoints and a streaming verifier.
//!
//! An event's hash is SHA-256 over the RFC 8785 (JCS) canonical JSON of the
//! event's fields together with the previous event's hash, so any change to
//! a stored event, any missing event and any reordering breaks the chain.
//! A chain alone can be recomputed by whoever can write the store, so the
//! server also signs checkpoints (sequence number + head hash) with its
//! Ed25519 key; the verifier checks both.
//!
//! This crate must never do IO: the store hands it rows, it hands back
//! values and verdicts. See `docs/audit-log.md` for the format.

mod checkpoint;
mod event;
mod verify;

pub use checkpoint::{Checkpoint, checkpoint_message};
pub use event::{DecodeError, Event, GENESIS, Hash, NewEvent, RawEvent, canonical_bytes};
pub use verify::{Problem, Report, Verifier, VerifyError};

#[cfg(test)]
mod tests;
