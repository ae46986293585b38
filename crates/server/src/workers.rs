//! Background work inside `warrant serve`: the reaper ends expired tasks,
//! the checkpointer signs the audit chain's head.
//!
//! Both run as tokio tasks until [`Workers::stop`]; a store error is
//! logged and retried at the next tick, never fatal.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use warrant_audit::Checkpoint;
use warrant_core::{Clock, EndReason};
use warrant_crypto::SigningKey;
use warrant_store::{Store, StoreError};

use crate::events::{self, ACTOR_REAPER};
use crate::state::AppState;

/// Expired tasks ended per store round trip.
const REAP_BATCH: u32 = 100;
/// How often the checkpointer looks at the chain head at most.
const CHECKPOINT_POLL: Duration = Duration::from_secs(1);

/// How often the workers run.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    pub reaper_interval: Duration,
    /// Sign when the head is this many events past the last checkpoint...
    pub checkpoint_every: u64,
    /// ...or when this much time passed and the head moved.
    pub checkpoint_interval: Duration,
}

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    pub fn spawn(state: AppState, settings: WorkerSettings) -> Self {
        let (stop, stopped) = watch::channel(false);
        let reaper = tokio::spawn(reaper(
            state.clone(),
            settings.reaper_interval,
            stopped.clone(),
        ));
        let checkpointer = tokio::spawn(checkpointer(state, settings, stopped));
        Self {
            stop,
            handles: vec![reaper, checkpointer],
        }
    }

    /// Signals the workers and waits for the work in hand to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            if let Err(e) = handle.await {
                tracing::error!(error = %e, "a background worker failed");
            }
        }
    }
}

async fn wait_stop(stopped: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn reaper(state: AppState, every: Duration, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = wait_stop(&mut stopped) => return,
            _ = ticks.tick() => {}
        }
        match reap_once(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "ended expired tasks"),
            Err(e) => tracing::warn!(error = %e, "reaper could not end expired tasks"),
        }
        match crate::leases::revoke_due(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "revoked due leases"),
            Err(e) => tracing::warn!(error = %e, "reaper could not revoke leases"),
        }
        crate::refusals::flush(&state).await;
        match expire_approvals_once(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, "expired approval requests"),
            Err(e) => tracing::warn!(error = %e, "reaper could not expire approvals"),
        }
    }
}

/// Marks every pending or approved approval past its expiry as `expired`
/// (an `approval.expired` event each, actor `system:reaper`) and tells the
/// webhooks. Returns how many.
pub async fn expire_approvals_once(state: &AppState) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let now = state.now();
        let event = |a: &warrant_store::Approval| warrant_audit::NewEvent {
            time: now,
            kind: "approval.expired".to_owned(),
            actor: ACTOR_REAPER.to_owned(),
            subject: format!("approval:{}", a.id),
            task_id: Some(a.task_id.to_string()),
            data: serde_json::json!({
                "approval_id": a.id.to_string(),
                "action": a.action,
                "expires_at": a.expires_at,
            }),
        };
        let expired = state
            .store
            .expire_approvals(now, REAP_BATCH, &event)
            .await?;
        for a in &expired {
            crate::approvals::notify_state(state, a, None).await;
        }
        total += expired.len();
        if expired.len() < REAP_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Ends every live task whose expiry has passed (by the state's clock), as
/// `expired` with actor `system:reaper`. Returns how many it ended.
///
/// A task that cannot be ended is logged and skipped, so one bad row does
/// not stop every other task from expiring; it is tried again next pass.
/// An unavailable store ends the pass (the next tick retries).
pub async fn reap_once(state: &AppState) -> Result<usize, StoreError> {
    let mut ended = 0;
    loop {
        let now = state.now();
        let expired = state.store.expired_tasks(now, REAP_BATCH).await?;
        let mut progress = false;
        for task in expired {
            let event = events::task_ended(&task, EndReason::Expired, None, ACTOR_REAPER, now);
            match state
                .store
                .end_task(task.id, EndReason::Expired, None, now, event)
                .await
            {
                Ok(_) => {
                    ended += 1;
                    progress = true;
                }
                // Ended by someone else since the query: nothing to do.
                Err(StoreError::InvalidState(_) | StoreError::NotFound(_)) => progress = true,
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                Err(e) => {
                    tracing::error!(task = %task.id, error = %e, "reaper cannot end an expired task; skipping it");
                }
            }
        }
        // Skipped tasks come back first in the next query: stop when a
        // batch changed nothing rather than loop on them.
        if !progress {
            return Ok(ended);
        }
    }
}

async fn checkpointer(
    state: AppState,
    settings: WorkerSettings,
    mut stopped: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(CHECKPOINT_POLL.min(settings.checkpoint_interval));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_signed = Instant::now();
    loop {
        tokio::select! {
            _ = wait_stop(&mut stopped) => return,
            _ = ticks.tick() => {}
        }
        let due = last_signed.elapsed() >= settings.checkpoint_interval;
        // The issuer's key of the moment: a rotation takes effect here too.
        let key = state.issuer.key();
        match checkpoint_if(&*state.store, &*state.clock, &key, |behind| {
            behind >= settings.checkpoint_every || due
        })
        .await
        {
            Ok(Some(cp)) => {
                last_signed = Instant::now();
                tracing::debug!(seq = cp.seq, "signed an audit checkpoint");
            }
            Ok(None) => {
                if due {
                    last_signed = Instant::now();
                }
            }
            Err(e) => tracing::warn!(error = %e, "checkpointer could not sign the chain head"),
        }
    }
}

/// Signs and stores a checkpoint of the chain head if the head is past the
/// last checkpoint. Used at shutdown.
pub async fn checkpoint_now(
    store: &dyn Store,
    clock: &dyn Clock,
    key: &SigningKey,
) -> Result<Option<Checkpoint>, StoreError> {
    checkpoint_if(store, clock, key, |_| true).await
}

/// Signs the head when it moved past the last checkpoint and `wanted`
/// (given how many events the head is ahead) says so.
async fn checkpoint_if(
    store: &dyn Store,
    clock: &dyn Clock,
    key: &SigningKey,
    wanted: impl FnOnce(u64) -> bool,
) -> Result<Option<Checkpoint>, StoreError> {
    let Some((seq, hash)) = store.audit_head().await? else {
        return Ok(None);
    };
    let last = store.last_checkpoint().await?.map_or(0, |c| c.seq);
    if seq <= last || !wanted(seq - last) {
        return Ok(None);
    }
    let checkpoint = Checkpoint::sign(seq, hash, clock.now(), key);
    store.put_checkpoint(&checkpoint).await?;
    Ok(Some(checkpoint))
}
