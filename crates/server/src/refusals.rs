//! A budget for refusal events.
//!
//! Every refused grant or run-token use is an audit event, written before
//! the answer. An unauthenticated client could otherwise grow the audit log
//! at request rate. The budget lets a burst of refusal events through (and
//! a steady rate after it); beyond that, refusals are still refused but only
//! counted, by kind and check, and the counts are written as one
//! `audit.refusals_suppressed` event on the next worker pass (and at
//! shutdown). Nothing is lost: every refusal is either its own event or in
//! a count.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use jiff::Timestamp;
use serde_json::json;
use warrant_audit::NewEvent;

/// Refusal events per second by default, after a burst of twice as many.
pub const DEFAULT_PER_SECOND: u32 = 50;

#[derive(Debug)]
struct Inner {
    tokens: f64,
    last: Instant,
    suppressed: BTreeMap<(String, String), u64>,
    since: Option<Timestamp>,
}

/// Token bucket over refusal events; shared by every handler.
#[derive(Debug)]
pub struct RefusalBudget {
    per_second: f64,
    burst: f64,
    inner: Mutex<Inner>,
}

impl RefusalBudget {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            burst: per_second * 2.0,
            inner: Mutex::new(Inner {
                tokens: per_second * 2.0,
                last: Instant::now(),
                suppressed: BTreeMap::new(),
                since: None,
            }),
        }
    }

    /// Whether this refusal gets its own event now; if not, it is counted.
    pub fn admit(&self, kind: &str, check: &str, now: Timestamp) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = inner.last.elapsed().as_secs_f64();
        inner.last = Instant::now();
        inner.tokens = (inner.tokens + elapsed * self.per_second).min(self.burst);
        if inner.tokens >= 1.0 {
            inner.tokens -= 1.0;
            return true;
        }
        *inner
            .suppressed
            .entry((kind.to_owned(), check.to_owned()))
            .or_default() += 1;
        inner.since.get_or_insert(now);
        false
    }

    /// The summary event of what was counted since the last one, if any.
    pub fn take_summary(&self, now: Timestamp) -> Option<NewEvent> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.suppressed.is_empty() {
            return None;
        }
        let counts: Vec<_> = std::mem::take(&mut inner.suppressed)
            .into_iter()
            .map(|((kind, check), count)| json!({"kind": kind, "check": check, "count": count}))
            .collect();
        let total: u64 = counts.iter().filter_map(|c| c["count"].as_u64()).sum();
        let since = inner.since.take().unwrap_or(now);
        Some(NewEvent {
            time: now,
            kind: "audit.refusals_suppressed".to_owned(),
            actor: "system:server".to_owned(),
            subject: "audit".to_owned(),
            task_id: None,
            data: json!({"since": since, "until": now, "total": total, "counts": counts}),
        })
    }

    /// Puts a summary back after its write failed, so the counts are not
    /// lost (they go out with the next one).
    pub fn restore(&self, summary: &NewEvent) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for c in summary.data["counts"].as_array().into_iter().flatten() {
            if let (Some(kind), Some(check), Some(n)) =
                (c["kind"].as_str(), c["check"].as_str(), c["count"].as_u64())
            {
                *inner
                    .suppressed
                    .entry((kind.to_owned(), check.to_owned()))
                    .or_default() += n;
            }
        }
        if let Ok(since) = serde_json::from_value::<Timestamp>(summary.data["since"].clone()) {
            inner.since = Some(inner.since.map_or(since, |s| s.min(since)));
        }
    }
}

/// Writes the pending summary, if any (workers and shutdown call this).
pub async fn flush(state: &crate::state::AppState) {
    let Some(summary) = state.refusals.take_summary(state.now()) else {
        return;
    };
    if let Err(e) = state.store.append_audit(vec![summary.clone()]).await {
        tracing::warn!(error = %e, "cannot write the suppressed-refusals summary; keeping the counts");
        state.refusals.restore(&summary);
    }
}
