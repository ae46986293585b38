//! Replaying recorded decisions under a candidate policy set: which
//! answers would change if it shipped.

use serde::Serialize;

use crate::engine::Engine;
use crate::input::{DecisionInput, ResourceRef};
use crate::outcome::Outcome;

/// One recorded decision whose answer would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The audit event's sequence number.
    pub seq: i64,
    pub action: String,
    pub resource: ResourceRef,
    pub run: String,
    pub before: Outcome,
    pub after: Outcome,
}

/// Decides every recorded input again with `candidate` and lists those
/// whose decision or reason code differs, in the order given.
pub fn replay(
    records: impl IntoIterator<Item = (i64, DecisionInput, Outcome)>,
    candidate: &Engine,
) -> Vec<Change> {
    records
        .into_iter()
        .filter_map(|(seq, input, before)| {
            let after = candidate.decide(&input);
            let changed = after.decision != before.decision || after.code != before.code;
            changed.then_some(Change {
                seq,
                action: input.action,
                resource: input.resource,
                run: input.principal.run,
                before,
                after,
            })
        })
        .collect()
}
