//! Group commit for standalone audit events.
//!
//! A durable commit costs an fsync. Callers that append many events that
//! stand on their own hand them to a [`GroupCommitter`]: one background
//! task drains whatever has queued up (at most `max_batch` events), appends
//! them in ONE [`Store::append_audit`] transaction and only then answers
//! each caller. A caller therefore proceeds only once its event is
//! durable, and if the batch fails every caller in it gets the error (fail
//! closed).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use warrant_audit::{Event, NewEvent};

use crate::{Store, StoreError};

type Reply = oneshot::Sender<Result<Event, StoreError>>;

/// A cloneable handle to the background writer. The writer stops once
/// every handle is dropped and the queue is empty.
#[derive(Debug, Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<(NewEvent, Reply)>,
}

impl GroupCommitter {
    /// Starts the writer on the current tokio runtime. `max_batch` is
    /// raised to 1 if 0.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the writer is a tokio task).
    pub fn new(store: Arc<dyn Store>, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (queue, rx) = mpsc::channel(max_batch.saturating_mul(4));
        tokio::spawn(run(store, rx, max_batch));
        Self { queue }
    }

    /// Appends `event` and returns it chained, once its batch is committed.
    ///
    /// If the caller stops waiting, the event may still be committed.
    pub async fn append(&self, event: NewEvent) -> Result<Event, StoreError> {
        let stopped = || StoreError::Unavailable("the audit writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(NewEvent, Reply)>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    // `recv_many` waits for at least one request, then takes whatever else
    // is already queued, up to the limit.
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.drain(..).unzip();
        let count = events.len();
        match store.append_audit(events).await {
            Ok(chained) if chained.len() == count => {
                // INVARIANT: `append_audit` returns the events in the order
                // given, so the i-th caller gets the i-th event.
                for (reply, event) in replies.into_iter().zip(chained) {
                    // A caller that stopped waiting is no reason to stop.
                    let _ = reply.send(Ok(event));
                }
            }
            Ok(chained) => {
                let e = StoreError::Corrupt(format!(
                    "the store appended {} audit events for a batch of {count}",
                    chained.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, events = count, "audit group commit failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::SqliteStore;

    fn event(i: u32) -> NewEvent {
        NewEvent {
            time: Timestamp::from_second(1_900_000_000).unwrap(),
            kind: "server.started".into(),
            actor: "system:test".into(),
            subject: "server:test".into(),
            task_id: None,
            data: json!({ "i": i }),
        }
    }

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("w.db")).await.unwrap();
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn callers_get_their_own_events_in_one_gapless_chain() {
        let (_dir, store) = store().await;
        let committer = GroupCommitter::new(store.clone(), 4);
        // Sequential appends from one caller keep their order.
        let first = committer.append(event(0)).await.unwrap();
        let second = committer.append(event(1)).await.unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(second.prev_hash, first.hash);

        let callers: Vec<_> = (2..40)
            .map(|i| {
                let c = committer.clone();
                tokio::spawn(async move { (i, c.append(event(i)).await.unwrap()) })
            })
            .collect();
        let mut seqs = Vec::new();
        for caller in callers {
            let (i, ev) = caller.await.unwrap();
            assert_eq!(ev.data, json!({ "i": i }));
            seqs.push(ev.seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (3..=40).collect::<Vec<_>>());
        assert_eq!(store.audit_head().await.unwrap().map(|(s, _)| s), Some(40));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_its_callers() {
        let (_dir, store) = store().await;
        let committer = GroupCommitter::new(store.clone(), 4);
        store.close().await;
        let callers: Vec<_> = (0..6)
            .map(|i| {
                let c = committer.clone();
                tokio::spawn(async move { c.append(event(i)).await })
            })
            .collect();
        for caller in callers {
            assert!(matches!(
                caller.await.unwrap(),
                Err(StoreError::Unavailable(_))
            ));
        }
    }
}
