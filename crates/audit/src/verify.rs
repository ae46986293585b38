//! Streaming verification of a stored chain against its signed checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use thiserror::Error;

use crate::{Checkpoint, Event, GENESIS, Hash, RawEvent};

/// How far from its stored position the verifier looks for the place a
/// moved event was written at. Only used to explain a failure.
const MOVE_WINDOW: u64 = 16;

/// What is wrong at the first bad sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The event's content no longer matches its hash.
    Modified,
    /// Events are absent: `seq` is the first one missing.
    Missing { count: u64 },
    /// An authentic event stands at the wrong place (two or more swapped).
    Reordered { belongs_at: u64 },
    /// An event was added that the chain never had, or events after it were
    /// renumbered to make room for one.
    Inserted,
    /// A row cannot even be read (bad hash length, data not JSON, ...).
    Malformed(String),
    /// A checkpoint's signature is invalid, its key unknown, or the chain
    /// does not have the hash the checkpoint signed.
    BadCheckpoint(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Modified => f.write_str("modified: the event does not match its hash"),
            Problem::Missing { count } => {
                write!(f, "missing: {count} event(s) are absent from here")
            }
            Problem::Reordered { belongs_at } => write!(
                f,
                "reordered: this position holds the event written at sequence {belongs_at}"
            ),
            Problem::Inserted => f.write_str("inserted: an event the chain never had stands here"),
            Problem::Malformed(why) => write!(f, "malformed: {why}"),
            Problem::BadCheckpoint(why) => write!(f, "bad checkpoint: {why}"),
        }
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("audit chain broken at sequence {seq}: {problem}")]
pub struct VerifyError {
    pub seq: u64,
    pub problem: Problem,
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub events: u64,
    pub head_seq: u64,
    #[serde(with = "hex::serde")]
    pub head_hash: Hash,
    pub checkpoints: u64,
    /// Events after the last checkpoint: chained, but not yet covered by
    /// a signature.
    pub unanchored: u64,
}

/// Checks events fed in sequence order, one at a time, in constant memory.
///
/// Each event is judged once the next one is seen (a one-event look-ahead
/// tells a swap from a deletion), so call [`Verifier::finish`] at the end.
pub struct Verifier {
    keys: HashMap<String, Vec<u8>>,
    checkpoints: BTreeMap<u64, Checkpoint>,
    expected: u64,
    prev_hash: Hash,
    pending: Option<RawEvent>,
    events: u64,
    checkpoints_ok: u64,
    last_anchor: u64,
}

impl Verifier {
    /// `keys` maps a `kid` to its Ed25519 public key; checkpoints signed by
    /// any other key fail.
    pub fn new(keys: HashMap<String, Vec<u8>>, checkpoints: Vec<Checkpoint>) -> Self {
        Self {
            keys,
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            expected: 1,
            prev_hash: GENESIS,
            pending: None,
            events: 0,
            checkpoints_ok: 0,
            last_anchor: 0,
        }
    }

    pub fn push(&mut self, raw: RawEvent) -> Result<(), VerifyError> {
        if let Some(pending) = self.pending.take() {
            self.judge(&pending, Some(&raw))?;
        }
        self.pending = Some(raw);
        Ok(())
    }

    pub fn finish(mut self) -> Result<Report, VerifyError> {
        if let Some(pending) = self.pending.take() {
            self.judge(&pending, None)?;
        }
        // A signed checkpoint past the end means the tail was cut off.
        if let Some((seq, cp)) = self.checkpoints.range(self.expected..).next() {
            let seq = *seq;
            self.check_signature(cp)?;
            return Err(VerifyError {
                seq: self.expected,
                problem: Problem::Missing {
                    count: seq + 1 - self.expected,
                },
            });
        }
        let head_seq = self.expected - 1;
        Ok(Report {
            events: self.events,
            head_seq,
            head_hash: self.prev_hash,
            checkpoints: self.checkpoints_ok,
            unanchored: head_seq - self.last_anchor,
        })
    }

    fn judge(&mut self, raw: &RawEvent, next: Option<&RawEvent>) -> Result<(), VerifyError> {
        let at = self.expected;
        let fail = |problem| Err(VerifyError { seq: at, problem });
        if raw.seq > at as i64 {
            return fail(Problem::Missing {
                count: (raw.seq as u64) - at,
            });
        }
        if raw.seq < at as i64 {
            // Rows arrive sorted by a unique key, so this is a duplicate
            // sequence number written beside the original.
            return fail(Problem::Inserted);
        }
        let ev = match raw.decode() {
            Ok(ev) => ev,
            Err(e) => return fail(Problem::Malformed(e.to_string())),
        };
        if ev.hash_at(at) != ev.hash {
            return Err(self.explain_moved(&ev, at, next));
        }
        // The hash covers the parsed value; the stored text must be exactly
        // its canonical form too, or a reader of the raw column (duplicate
        // keys: `{"a":"evil","a":"ok"}` parses as "ok") could be shown
        // something the hash does not cover.
        if serde_json_canonicalizer::to_string(&ev.data)
            .ok()
            .as_deref()
            != Some(raw.data.as_str())
        {
            return fail(Problem::Modified);
        }
        if ev.prev_hash != self.prev_hash {
            // Authentic at this position but it does not follow the event
            // before it: that one was forged to look valid, or put there.
            return Err(VerifyError {
                seq: at.saturating_sub(1).max(1),
                problem: Problem::Inserted,
            });
        }
        if let Some(cp) = self.checkpoints.get(&at) {
            self.check_signature(cp)?;
            if cp.hash != ev.hash {
                return fail(Problem::BadCheckpoint(
                    "the chain's hash differs from the signed one (the log was rewritten)".into(),
                ));
            }
            self.checkpoints_ok += 1;
            self.last_anchor = at;
        }
        self.prev_hash = ev.hash;
        self.expected += 1;
        self.events += 1;
        Ok(())
    }

    /// An event whose hash fails at `at`: was it written somewhere else?
    fn explain_moved(&self, ev: &Event, at: u64, next: Option<&RawEvent>) -> VerifyError {
        let err = |seq, problem| VerifyError { seq, problem };
        let lo = at.saturating_sub(MOVE_WINDOW).max(1);
        let Some(written_at) = (lo..=at + MOVE_WINDOW)
            .filter(|s| *s != at)
            .find(|s| ev.hash_at(*s) == ev.hash)
        else {
            return err(at, Problem::Modified);
        };
        if written_at < at {
            // Pushed back by `at - written_at` rows: those rows, starting
            // where this event was written, are the inserted ones.
            return err(written_at, Problem::Inserted);
        }
        // Written later than where it stands: swapped with the next row if
        // that row is the authentic event for this position.
        // Two swapped neighbours: the next row is this position's event.
        // Two swapped rows further apart: the next row is still authentic
        // where it stands (a deletion with renumbering moves it too).
        let swapped = next.and_then(|n| n.decode().ok()).is_some_and(|n| {
            (n.hash_at(at) == n.hash && n.prev_hash == self.prev_hash)
                || n.hash_at(at + 1) == n.hash
        });
        if !swapped && ev.prev_hash != self.prev_hash {
            return err(
                at,
                Problem::Missing {
                    count: written_at - at,
                },
            );
        }
        err(
            at,
            Problem::Reordered {
                belongs_at: written_at,
            },
        )
    }

    fn check_signature(&self, cp: &Checkpoint) -> Result<(), VerifyError> {
        let bad = |why: &str| {
            Err(VerifyError {
                seq: cp.seq,
                problem: Problem::BadCheckpoint(why.to_owned()),
            })
        };
        match self.keys.get(&cp.kid) {
            None => bad(&format!("signed by unknown key `{}`", cp.kid)),
            Some(pk) if !cp.verify_signature(pk) => bad("signature does not verify"),
            Some(_) => Ok(()),
        }
    }
}
