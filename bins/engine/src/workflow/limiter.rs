//! At most N active runs per replica ("active": started by this replica and
//! not finished), by backpressure: a `workflow.requested` message waits for
//! a permit (its delivery kept alive with progress acks) instead of starting
//! a run, and is never dropped. A permit is released when its run ends,
//! whichever replica ends it: locally at once, otherwise through a watch on
//! `agentry-runs`, with a periodic sweep as a backstop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentry::subject;
use async_nats::jetstream::{self, AckKind, kv};
use futures::StreamExt;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How often a waiting request tells JetStream it is still being handled.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often held runs are checked against the store.
const SWEEP_EVERY: Duration = Duration::from_secs(3);

pub(crate) struct Limiter {
    sem: Arc<Semaphore>,
    active: Mutex<HashMap<String, OwnedSemaphorePermit>>,
    gauge: IntGauge,
}

impl Limiter {
    pub fn new(max: usize, gauge: IntGauge) -> Self {
        Self {
            sem: Arc::new(Semaphore::new(max.max(1))),
            active: Mutex::new(HashMap::new()),
            gauge,
        }
    }

    /// Waits for a permit; `None` when shutting down (the message is then
    /// handed back for another replica).
    pub async fn acquire(
        &self,
        msg: &jetstream::Message,
        shutdown: &CancellationToken,
    ) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Some(p);
        }
        debug!("at the active-run limit, holding the request");
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                p = self.sem.clone().acquire_owned() => return p.ok(),
                _ = tick.tick() => {
                    if let Err(e) = msg.ack_with(AckKind::Progress).await {
                        warn!(error = %e, "progress ack of a waiting request failed");
                    }
                }
            }
        }
    }

    /// Keeps `permit` until run `run_id` ends.
    pub fn hold(&self, run_id: &str, permit: OwnedSemaphorePermit) {
        if let Ok(mut a) = self.active.lock() {
            a.entry(run_id.to_owned()).or_insert(permit);
            self.gauge.set(a.len() as i64);
        }
    }

    /// Whether this replica holds a permit for `run_id`.
    pub fn holds(&self, run_id: &str) -> bool {
        self.active
            .lock()
            .map(|a| a.contains_key(run_id))
            .unwrap_or(false)
    }

    /// Frees the permit of `run_id`, if this replica holds one.
    pub fn release(&self, run_id: &str) {
        if let Ok(mut a) = self.active.lock()
            && a.remove(run_id).is_some()
        {
            self.gauge.set(a.len() as i64);
        }
    }

    fn held(&self) -> Vec<String> {
        self.active
            .lock()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(serde::Deserialize)]
struct StatusOnly {
    status: agentry::workflow::RunStatus,
}

fn ended(value: &[u8]) -> bool {
    serde_json::from_slice::<StatusOnly>(value).is_ok_and(|s| s.status.is_terminal())
}

/// Releases permits of runs that ended elsewhere, and keeps the pending-timer
/// gauge current. Runs until shutdown; store errors are logged and retried.
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
                        if limiter.holds(&entry.key)
                            && (entry.operation != kv::Operation::Put || ended(&entry.value))
                        {
                            limiter.release(&entry.key);
                        }
                    }
                    Some(Err(e)) => warn!(error = %e, "agentry-runs watch error"),
                    None => break,
                },
            }
        }
    }
}

async fn sweep_held(limiter: &Limiter, runs: &kv::Store) {
    for run_id in limiter.held() {
        match runs.entry(&run_id).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put && !ended(&e.value) => {}
            Ok(Some(_)) => limiter.release(&run_id),
            // Not written yet (being created) or expired: the creator or the next sweep decides.
            Ok(None) => {}
            Err(e) => debug!(error = %e, "sweep read failed"),
        }
    }
}
