//! Runs this replica advanced a moment ago: the state it wrote, at the
//! revision the write returned, with that write's outbox already carried out.
//!
//! Transitions of one run on this replica take turns (one async lock per
//! run). The next transition starts from the known state instead of reading
//! KV, and replaces the executed outbox with its own in the same
//! compare-and-set write: a step costs one KV write instead of a read, a
//! write and a second write to clear the outbox. If anyone else wrote the run
//! meanwhile (another replica), the compare-and-set fails and the transition
//! re-reads, as before.
//!
//! A run that ended, or any run beyond [`CAPACITY`], is not remembered: its
//! outbox is cleared right after its effects, as it would be without this
//! module. An executed outbox that no transition replaced within [`SETTLE`]
//! is cleared by [`sweep`] (and at shutdown by [`settle_all`]). So an outbox
//! whose effects were carried out stays in KV for at most about `SETTLE`
//! after the fact; if this replica dies in that time, whoever drives the run
//! next repeats the effects, idempotently (deterministic message ids within
//! the streams' dedup window, first-write-wins results, create-if-absent
//! child runs), exactly as after a crash between executing and clearing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentry::workflow::state::RunState;
use tokio_util::sync::CancellationToken;

use super::driver;
use crate::Engine;

/// How long an executed outbox may wait for the next transition to replace it.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);
/// Runs remembered at once; beyond this (many runs waiting on signals or
/// timers) a transition clears its outbox at once instead, as memory is
/// worth more than the saved write for runs that will not move soon.
pub(crate) const CAPACITY: usize = 1024;
/// How often [`sweep`] looks for outboxes to clear.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// The run state as this replica last wrote it, its outbox carried out.
pub(crate) struct Known {
    /// The state, without the outbox's effects (they are done; keeping
    /// them would only hold memory). `outbox_id` still says whether KV
    /// holds an outbox that needs clearing.
    pub state: RunState,
    pub revision: u64,
    /// When the write happened (and its effects were carried out).
    pub at: Instant,
}

impl Known {
    pub fn new(mut state: RunState, revision: u64) -> Self {
        if !state.outbox.is_empty() {
            state.outbox = Vec::new();
            state.outbox_id.get_or_insert_with(String::new);
        }
        Self {
            state,
            revision,
            at: Instant::now(),
        }
    }

    /// KV holds this state with a (carried out) outbox.
    pub fn has_outbox(&self) -> bool {
        self.state.outbox_id.is_some()
    }
}

/// One run's turn lock and its known state.
pub(crate) type Slot = Arc<tokio::sync::Mutex<Option<Known>>>;

#[derive(Default)]
pub(crate) struct Hot {
    runs: Mutex<HashMap<String, Slot>>,
}

impl Hot {
    /// The slot of `run_id` (created empty if this replica knows nothing of it).
    pub fn slot(&self, run_id: &str) -> Slot {
        match self.runs.lock() {
            Ok(mut runs) => runs.entry(run_id.to_owned()).or_default().clone(),
            // A poisoned map only costs the shortcut: an unshared slot reads KV.
            Err(_) => Slot::default(),
        }
    }

    /// Runs with a slot (remembered, or being driven).
    pub fn len(&self) -> usize {
        self.runs.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn slots(&self) -> Vec<(String, Slot)> {
        self.runs
            .lock()
            .map(|runs| runs.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Drops `run_id`'s slot if nobody but the map and the caller holds it.
    fn forget(&self, run_id: &str, slot: &Slot) {
        if let Ok(mut runs) = self.runs.lock()
            && runs.get(run_id).is_some_and(|s| Arc::ptr_eq(s, slot))
            && Arc::strong_count(slot) == 2
        {
            runs.remove(run_id);
        }
    }
}

/// Clears outboxes older than `older_than` and forgets idle runs; busy runs
/// (a transition in progress) are left for the next round.
async fn settle(engine: &Engine, older_than: Duration) {
    let hot = &engine.runs.hot;
    for (run_id, slot) in hot.slots() {
        let Ok(mut known) = slot.try_lock() else {
            continue;
        };
        if known.as_ref().is_some_and(|k| k.at.elapsed() < older_than) {
            continue;
        }
        if let Some(k) = known.take()
            && k.has_outbox()
        {
            driver::clear_outbox(engine, k.state, k.revision).await;
        }
        drop(known);
        hot.forget(&run_id, &slot);
    }
}

/// Clears settled outboxes every [`SWEEP_EVERY`] until shutdown.
pub(crate) async fn sweep(engine: Arc<Engine>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => settle(&engine, SETTLE).await,
        }
    }
}

/// Clears every executed outbox now (after the last transition at shutdown).
pub(crate) async fn settle_all(engine: &Engine) {
    settle(engine, Duration::ZERO).await;
}
