//! At most N running runs per replica, by backpressure: a
//! `workflow.requested` message waits for a run slot (its delivery kept
//! alive with progress acks) instead of starting a run, and is never
//! dropped. The limits (docs/reliability.md, "Run limits"):
//!
//! - *running* runs (started by this replica, not finished, not parked) hold
//!   a slot; new starts wait while `running >= max`;
//! - *parked* runs (waiting for a signal, nothing else out) hold no slot, so
//!   runs awaiting approval never starve the runs that would complete;
//!   a signal resumes a parked run at once, without waiting for a slot, so
//!   `running` may exceed `max` by the runs resumed that way; starts then
//!   wait until it is below `max` again;
//! - a start waiting for a slot holds no engine concurrency permit, only a
//!   place in a waiting room of [`WAITING_ROOM`] (below the requests
//!   consumer's `max_ack_pending`), so signals, cancels, tasks and step
//!   results are never blocked behind workflow starts. Beyond the room a
//!   start waits holding its engine permit (the message is still kept).
//!
//! A slot is released when its run ends, whichever replica ends it: locally
//! at once, otherwise through a watch on `agentry-runs`, with a periodic
//! sweep as a backstop.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentry::subject;
use agentry::workflow::state::RunState;
use async_nats::jetstream::{self, AckKind, kv};
use futures::StreamExt;
use prometheus::IntGauge;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How often a waiting request tells JetStream it is still being handled.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often held runs are checked against the store.
const SWEEP_EVERY: Duration = Duration::from_secs(3);
/// Workflow starts that may wait for a run slot without an engine permit.
pub(crate) const WAITING_ROOM: usize = 5_000;

#[derive(Default)]
struct Slots {
    running: HashSet<String>,
    parked: HashSet<String>,
    /// Slots handed to starts that have not created their run yet.
    reserved: usize,
}

pub(crate) struct Limiter {
    max: usize,
    slots: Mutex<Slots>,
    freed: Notify,
    room: Arc<Semaphore>,
    active: IntGauge,
    parked: IntGauge,
}

/// A slot taken for a run about to be created; given back on drop unless
/// [`Limiter::hold`] turned it into a running run.
pub(crate) struct Reservation {
    limiter: Arc<Limiter>,
    live: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.live {
            self.limiter
                .update(|s| s.reserved = s.reserved.saturating_sub(1));
        }
    }
}

impl Limiter {
    pub fn new(max: usize, active: IntGauge, parked: IntGauge) -> Self {
        Self {
            max: max.max(1),
            slots: Mutex::new(Slots::default()),
            freed: Notify::new(),
            room: Arc::new(Semaphore::new(WAITING_ROOM)),
            active,
            parked,
        }
    }

    /// Changes the slots; wakes the waiting starts when a slot may have
    /// come free (waking them on every change would make them spin).
    fn update<R>(&self, f: impl FnOnce(&mut Slots) -> R) -> R {
        let mut guard = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = guard.running.len() + guard.reserved;
        let r = f(&mut guard);
        let after = guard.running.len() + guard.reserved;
        self.active.set(guard.running.len() as i64);
        self.parked.set(guard.parked.len() as i64);
        drop(guard);
        if after < before {
            self.freed.notify_waiters();
        }
        r
    }

    /// A slot now, if one is free.
    pub fn try_reserve(self: &Arc<Self>) -> Option<Reservation> {
        let max = self.max;
        let got = self.update(|s| {
            let free = s.running.len() + s.reserved < max;
            if free {
                s.reserved += 1;
            }
            free
        });
        got.then(|| Reservation {
            limiter: self.clone(),
            live: true,
        })
    }

    /// A place in the waiting room, if there is one.
    pub fn waiting_room(&self) -> Option<OwnedSemaphorePermit> {
        self.room.clone().try_acquire_owned().ok()
    }

    /// Waits for a slot; `None` when shutting down (the message is then
    /// handed back for another replica).
    pub async fn acquire(
        self: &Arc<Self>,
        msg: &jetstream::Message,
        shutdown: &CancellationToken,
    ) -> Option<Reservation> {
        if let Some(r) = self.try_reserve() {
            return Some(r);
        }
        debug!("at the active-run limit, holding the request");
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(r) = self.try_reserve() {
                return Some(r);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = &mut freed => {}
                _ = tick.tick() => {
                    if let Err(e) = msg.ack_with(AckKind::Progress).await {
                        warn!(error = %e, "progress ack of a waiting request failed");
                    }
                }
            }
        }
    }

    /// Counts run `run_id` as running with the slot of `res`.
    pub fn hold(&self, run_id: &str, mut res: Reservation) {
        res.live = false;
        self.update(|s| {
            s.reserved = s.reserved.saturating_sub(1);
            if !s.parked.contains(run_id) {
                s.running.insert(run_id.to_owned());
            }
        });
    }

    /// Whether this replica counts `run_id` (running or parked).
    pub fn holds(&self, run_id: &str) -> bool {
        self.slots
            .lock()
            .map(|s| s.running.contains(run_id) || s.parked.contains(run_id))
            .unwrap_or(false)
    }

    /// Forgets `run_id` (it ended).
    pub fn release(&self, run_id: &str) {
        if self.holds(run_id) {
            self.update(|s| {
                s.running.remove(run_id);
                s.parked.remove(run_id);
            });
        }
    }

    /// Follows a durable state of a run this replica counts: ended runs are
    /// released, parked ones give their slot back, resumed ones take one
    /// again (even above the limit: a signal never waits for a slot).
    pub fn observe(&self, state: &RunState) {
        if !self.holds(&state.run_id) {
            return;
        }
        if state.status.is_terminal() {
            self.release(&state.run_id);
            return;
        }
        let parked = state.is_parked();
        self.update(|s| {
            if parked {
                if s.running.remove(&state.run_id) {
                    s.parked.insert(state.run_id.clone());
                }
            } else if s.parked.remove(&state.run_id) {
                s.running.insert(state.run_id.clone());
            }
        });
    }

    fn held(&self) -> Vec<String> {
        self.slots
            .lock()
            .map(|s| s.running.iter().chain(s.parked.iter()).cloned().collect())
            .unwrap_or_default()
    }
}

/// Releases slots of runs that ended elsewhere, follows parking, and keeps
/// the pending-timer gauge current. Runs until shutdown; store errors are
/// logged and retried.
pub(crate) async fn watch(
    limiter: Arc<Limiter>,
    runs: kv::Store,
    js: jetstream::Context,
    timers_pending: IntGauge,
    shutdown: CancellationToken,
) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    loop {
        let mut updates = match runs.watch_all().await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot watch agentry-runs, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sweep.tick() => {
                    sweep_held(&limiter, &runs).await;
                    if let Ok(mut st) = js.get_stream(subject::TIMERS_STREAM).await
                        && let Ok(info) = st.info().await
                    {
                        timers_pending.set(info.state.messages as i64);
                    }
                }
                next = updates.next() => match next {
                    Some(Ok(entry)) => {
                        if limiter.holds(&entry.key) {
                            apply(&limiter, &entry.key, entry.operation, &entry.value);
                        }
                    }
                    Some(Err(e)) => warn!(error = %e, "agentry-runs watch error"),
                    None => break,
                },
            }
        }
    }
}

fn apply(limiter: &Limiter, run_id: &str, op: kv::Operation, value: &[u8]) {
    if op != kv::Operation::Put {
        limiter.release(run_id);
        return;
    }
    match serde_json::from_slice::<RunState>(value) {
        Ok(state) => limiter.observe(&state),
        Err(e) => debug!(error = %e, run = run_id, "unreadable run state in the watch"),
    }
}

async fn sweep_held(limiter: &Limiter, runs: &kv::Store) {
    for run_id in limiter.held() {
        match runs.entry(&run_id).await {
            Ok(Some(e)) => apply(limiter, &run_id, e.operation, &e.value),
            // Not written yet (being created) or expired: the creator or the next sweep decides.
            Ok(None) => {}
            Err(e) => debug!(error = %e, "sweep read failed"),
        }
    }
}
