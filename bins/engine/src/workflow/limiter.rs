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
//! at once; a replica that writes a transition of a run another replica
//! counts tells that owner in a note on `agentry.engines.runs.<owner>`
//! (core NATS: the run's status and the revision written), and a periodic
//! sweep of the held runs in `agentry-runs` is the backstop for a lost note.
//! Notes and sweeps older than what a replica already knows of a run (by
//! revision) are ignored. There is no watch of `agentry-runs`: a watch
//! would hand every replica every write of every run.
//!
//! Runs of a dead replica are adopted: every top-level run names the replica
//! that counts it (`RunState::owner`). Replicas announce themselves on
//! `agentry.engines.alive.<id>` every [`HEARTBEAT`]; an owner not heard from
//! for [`DEAD_AFTER`] is dead, and the next replica that writes a transition
//! of its run takes it over (in that same write) and counts it. Runs never
//! move between live replicas, so a replica's count only grows by its own
//! starts and by adoptions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentry::consume;
use agentry::subject;
use agentry::workflow::state::RunState;
use async_nats::jetstream::{self, AckKind, kv};
use futures::StreamExt;
use prometheus::IntGauge;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// How often a waiting request tells JetStream it is still being handled.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often held runs are checked against the store.
const SWEEP_EVERY: Duration = Duration::from_secs(3);
/// How often a replica announces that it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which a replica is taken for dead and its runs are adopted.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(5);
/// Subject prefix of the heartbeats (`<prefix>.<replica id>`).
const ALIVE_PREFIX: &str = "agentry.engines.alive";
/// Subject prefix of the notes to a run's owner (`<prefix>.<owner id>`).
const NOTES_PREFIX: &str = "agentry.engines.runs";
/// Workflow starts that may wait for a run slot without an engine permit.
pub(crate) const WAITING_ROOM: usize = 5_000;

#[derive(Default)]
struct Slots {
    running: HashSet<String>,
    parked: HashSet<String>,
    /// The newest revision seen of each held run (older news is ignored).
    revisions: HashMap<String, u64>,
    /// Slots handed to starts that have not created their run yet.
    reserved: usize,
}

/// What the slots need to know of one stored state of a run: the note a
/// replica sends to the run's owner, and what the owner's own writes and
/// sweeps tell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen {
    pub run_id: String,
    /// The entry revision of the state in `agentry-runs`.
    pub revision: u64,
    pub ended: bool,
    pub parked: bool,
    pub owner: Option<String>,
}

impl Seen {
    pub fn of(state: &RunState, revision: u64) -> Self {
        Self {
            run_id: state.run_id.clone(),
            revision,
            ended: state.status.is_terminal(),
            parked: state.is_parked(),
            owner: state.owner.clone(),
        }
    }
}

pub(crate) struct Limiter {
    max: usize,
    /// This replica's id (a fresh one per process).
    id: String,
    /// When this replica started (before [`DEAD_AFTER`] it has not heard
    /// every live replica yet, so it takes nobody for dead).
    born: Instant,
    /// When each other replica was last heard from.
    peers: Mutex<HashMap<String, Instant>>,
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
            id: uuid::Uuid::now_v7().simple().to_string(),
            born: Instant::now(),
            peers: Mutex::new(HashMap::new()),
            slots: Mutex::new(Slots::default()),
            freed: Notify::new(),
            room: Arc::new(Semaphore::new(WAITING_ROOM)),
            active,
            parked,
        }
    }

    /// This replica's id, as written in `RunState::owner`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether replica `owner` (not this one) has been silent for [`DEAD_AFTER`].
    pub fn is_dead(&self, owner: &str) -> bool {
        if owner == self.id {
            return false;
        }
        let now = Instant::now();
        let peers = match self.peers.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match peers.get(owner) {
            Some(seen) => now.duration_since(*seen) >= DEAD_AFTER,
            None => now.duration_since(self.born) >= DEAD_AFTER,
        }
    }

    fn heard(&self, peer: &str) {
        if peer != self.id {
            let mut peers = match self.peers.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            peers.insert(peer.to_owned(), Instant::now());
        }
    }

    /// Takes over the counting of `state`'s run from a dead owner: the write
    /// that carries `owner` = this replica has succeeded. May take `running`
    /// above `max` (starts then wait).
    pub fn adopt(&self, state: &RunState) {
        if state.status.is_terminal() || self.holds(&state.run_id) {
            return;
        }
        let parked = state.is_parked();
        debug!(run = %state.run_id, "adopted the run of a dead replica");
        self.update(|s| {
            if parked {
                s.parked.insert(state.run_id.clone());
            } else {
                s.running.insert(state.run_id.clone());
            }
        });
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
                s.revisions.remove(run_id);
            });
        }
    }

    /// Follows a durable state of a run this replica counts: ended runs are
    /// released, parked ones give their slot back, resumed ones take one
    /// again (even above the limit: a signal never waits for a slot). A
    /// state older than one already followed changes nothing.
    pub fn observe(&self, seen: &Seen) {
        if !self.holds(&seen.run_id) {
            return;
        }
        let taken = seen.owner.as_deref().is_some_and(|o| o != self.id);
        let run_id = &seen.run_id;
        self.update(|s| {
            if !(s.running.contains(run_id) || s.parked.contains(run_id))
                || s.revisions.get(run_id).is_some_and(|r| *r >= seen.revision)
            {
                return;
            }
            if seen.ended || taken {
                s.running.remove(run_id);
                s.parked.remove(run_id);
                s.revisions.remove(run_id);
                return;
            }
            s.revisions.insert(run_id.clone(), seen.revision);
            if seen.parked {
                if s.running.remove(run_id) {
                    s.parked.insert(run_id.clone());
                }
            } else if s.parked.remove(run_id) {
                s.running.insert(run_id.clone());
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

/// Announces this replica every [`HEARTBEAT`] and listens to the others;
/// runs until shutdown. Core NATS: a lost heartbeat only delays nothing
/// (three in a row must be lost before a replica is taken for dead).
pub(crate) async fn heartbeat(
    limiter: Arc<Limiter>,
    client: async_nats::Client,
    shutdown: CancellationToken,
) {
    let mine = format!("{ALIVE_PREFIX}.{}", limiter.id);
    let mut tick = tokio::time::interval(HEARTBEAT);
    // Subscribing fails only while the client is closed or its connection
    // is down: retried with the shared backoff (from 100 ms, with jitter).
    let mut delays = consume::Delays::new();
    loop {
        let mut sub = match client.subscribe(format!("{ALIVE_PREFIX}.*")).await {
            Ok(s) => {
                delays.reset();
                s
            }
            Err(e) => {
                warn!(error = %e, "cannot listen to engine heartbeats, retrying");
                if !delays.pause(&shutdown).await {
                    return;
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = client.publish(mine.clone(), bytes::Bytes::new()).await {
                        warn!(error = %e, "engine heartbeat not sent");
                    }
                }
                msg = sub.next() => match msg {
                    Some(m) => {
                        if let Some(peer) = m.subject.as_str().strip_prefix(ALIVE_PREFIX).and_then(|r| r.strip_prefix('.')) {
                            limiter.heard(peer);
                        }
                    }
                    None => break,
                },
            }
        }
    }
}

/// Tells the owner of a run this replica does not count what the
/// transition just written (`seen`) did to it; `to` is the owner (or a
/// former owner whose run was adopted). Core NATS: a lost note is made good
/// by the owner's sweep.
pub(crate) async fn notify(client: &async_nats::Client, to: &str, seen: &Seen) {
    let body = match serde_json::to_vec(seen) {
        Ok(b) => b,
        Err(e) => return debug!(error = %e, "run note not encoded"),
    };
    if let Err(e) = client
        .publish(format!("{NOTES_PREFIX}.{to}"), body.into())
        .await
    {
        debug!(error = %e, run = %seen.run_id, "run note to its owner not sent; the owner's sweep will see the change");
    }
}

/// Follows the notes other replicas send about runs this one counts;
/// resubscribes when the subscription ends, until shutdown.
async fn follow_notes(
    limiter: &Limiter,
    client: &async_nats::Client,
    shutdown: &CancellationToken,
) {
    let mine = format!("{NOTES_PREFIX}.{}", limiter.id);
    // Retried with the shared backoff, like the heartbeat subscription.
    let mut delays = consume::Delays::new();
    loop {
        let mut sub = match client.subscribe(mine.clone()).await {
            Ok(s) => {
                delays.reset();
                s
            }
            Err(e) => {
                warn!(error = %e, "cannot listen to run notes, retrying (the sweep still follows held runs)");
                if !delays.pause(shutdown).await {
                    return;
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = sub.next() => match msg {
                    Some(m) => match serde_json::from_slice::<Seen>(&m.payload) {
                        Ok(seen) => limiter.observe(&seen),
                        Err(e) => debug!(error = %e, "unreadable run note"),
                    },
                    None => break,
                },
            }
        }
    }
}

/// Releases slots of runs that ended elsewhere (told by notes, checked by
/// a sweep), follows parking, and keeps the pending-timer gauge current.
/// Runs until shutdown; store errors are logged and retried.
pub(crate) async fn watch(
    limiter: Arc<Limiter>,
    runs: kv::Store,
    js: jetstream::Context,
    timers_pending: IntGauge,
    shutdown: CancellationToken,
) {
    let client = js.client();
    let notes = follow_notes(&limiter, &client, &shutdown);
    let sweep = async {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            sweep_held(&limiter, &runs).await;
            if let Ok(mut st) = js.get_stream(subject::TIMERS_STREAM).await
                && let Ok(info) = st.info().await
            {
                timers_pending.set(info.state.messages as i64);
            }
        }
    };
    tokio::join!(notes, sweep);
}

fn apply(limiter: &Limiter, run_id: &str, entry: &kv::Entry) {
    if entry.operation != kv::Operation::Put {
        limiter.release(run_id);
        return;
    }
    match serde_json::from_slice::<RunState>(&entry.value) {
        Ok(state) => limiter.observe(&Seen::of(&state, entry.revision)),
        Err(e) => debug!(error = %e, run = run_id, "unreadable run state in the sweep"),
    }
}

async fn sweep_held(limiter: &Limiter, runs: &kv::Store) {
    for run_id in limiter.held() {
        match runs.entry(&run_id).await {
            Ok(Some(e)) => apply(limiter, &run_id, &e),
            // Not written yet (being created) or expired: the creator or the next sweep decides.
            Ok(None) => {}
            Err(e) => debug!(error = %e, "sweep read failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Arc<Limiter> {
        let gauge = |n: &str| IntGauge::new(n, "test").unwrap();
        Arc::new(Limiter::new(2, gauge("active"), gauge("parked")))
    }

    fn seen(revision: u64, ended: bool, parked: bool, owner: Option<&str>) -> Seen {
        Seen {
            run_id: "r1".into(),
            revision,
            ended,
            parked,
            owner: owner.map(str::to_owned),
        }
    }

    /// Notes and sweeps move a held run between running and parked in
    /// revision order: an older state arriving late changes nothing.
    #[test]
    fn older_states_are_ignored() {
        let l = limiter();
        let me = l.id().to_owned();
        l.hold("r1", l.try_reserve().unwrap());
        l.observe(&seen(3, false, true, Some(&me)));
        assert!(l.slots.lock().unwrap().parked.contains("r1"));
        // A note of revision 2 (running) overtaken by the local write of 3.
        l.observe(&seen(2, false, false, Some(&me)));
        assert!(l.slots.lock().unwrap().parked.contains("r1"));
        l.observe(&seen(4, false, false, Some(&me)));
        assert!(l.slots.lock().unwrap().running.contains("r1"));
        l.observe(&seen(5, true, false, Some(&me)));
        assert!(!l.holds("r1"));
    }

    /// A run another replica adopted is no longer counted here.
    #[test]
    fn a_taken_run_is_released() {
        let l = limiter();
        l.hold("r1", l.try_reserve().unwrap());
        l.observe(&seen(1, false, false, Some("other")));
        assert!(!l.holds("r1"));
        assert!(l.try_reserve().is_some() && l.try_reserve().is_some());
    }

    /// Notes travel as JSON.
    #[test]
    fn notes_round_trip() {
        let s = seen(7, false, true, None);
        let back: Seen = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
