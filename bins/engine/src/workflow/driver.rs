//! Run state in KV `agentry-runs` and the transition driver: take the run
//! state this replica last wrote (see `hot`) or load it and finish any
//! effects a crashed predecessor left in its outbox, apply the input, write
//! the result (its effects replacing the carried-out outbox) by
//! compare-and-set on the entry revision (on a conflict: re-read and
//! re-apply), execute the effects.
//! Two replicas can never both advance a run: only one write per revision
//! succeeds.

use agentry::workflow::state::{RUN_SCHEMA_VERSION, RunState};
use async_nats::jetstream::kv;
use bytes::Bytes;
use chrono::Utc;
use tracing::warn;

use serde::Deserialize;

use super::artifacts;
use super::effects::{self, Effect, Origin};
use super::hot::{self, Known};
use super::limiter::{self, Seen};
use super::machine::{Input, Machine, Notes};
use crate::Engine;

/// Compare-and-set rounds before giving up on a very contended run.
const MAX_ROUNDS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DriverError {
    #[error("run store read")]
    Read(#[from] kv::EntryError),
    #[error("run store write")]
    Write(#[from] kv::UpdateError),
    #[error("run store create")]
    Create(#[from] kv::CreateError),
    #[error("workflow definitions")]
    Definitions(#[from] agentry::workflow::store::StoreError),
    #[error("step result to the parent run")]
    StepResult(#[from] agentry::publish::PublishError),
    #[error("run {run} is unreadable")]
    Corrupt {
        run: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "run {run} has schema_version {version}, newer than this engine ({RUN_SCHEMA_VERSION})"
    )]
    TooNew { run: String, version: u32 },
    #[error("definition {0} of a run is missing or invalid")]
    Definition(String),
    #[error("effects not carried out")]
    Effects(#[from] effects::EffectError),
    #[error("artifact")]
    Artifact(#[from] artifacts::ArtifactError),
    #[error("run {0} stayed contended for {MAX_ROUNDS} rounds")]
    Contended(String),
}

impl DriverError {
    /// Whether retrying later may succeed (otherwise the message is poison).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Corrupt { .. } | Self::TooNew { .. })
    }
}

pub(crate) struct Loaded {
    pub state: RunState,
    pub revision: u64,
}

pub(crate) async fn load(kv: &kv::Store, run_id: &str) -> Result<Option<Loaded>, DriverError> {
    let entry = kv.entry(run_id).await?;
    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
        return Ok(None);
    };
    let state: RunState =
        serde_json::from_slice(&entry.value).map_err(|source| DriverError::Corrupt {
            run: run_id.to_owned(),
            source,
        })?;
    if state.schema_version > RUN_SCHEMA_VERSION {
        return Err(DriverError::TooNew {
            run: run_id.to_owned(),
            version: state.schema_version,
        });
    }
    Ok(Some(Loaded {
        state,
        revision: entry.revision,
    }))
}

fn encode(state: &RunState) -> Result<Bytes, DriverError> {
    serde_json::to_vec(state)
        .map(Bytes::from)
        .map_err(|source| DriverError::Corrupt {
            run: state.run_id.clone(),
            source,
        })
}

/// Writes `state` if the entry is still at `revision`; `Ok(None)` on a conflict.
async fn write(
    kv: &kv::Store,
    state: &RunState,
    revision: u64,
) -> Result<Option<u64>, DriverError> {
    match kv.update(&state.run_id, encode(state)?, revision).await {
        Ok(rev) => Ok(Some(rev)),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What [`drive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driven {
    Applied,
    Unchanged,
    NotFound,
}

/// Applies `input` to run `run_id`. Transitions of one run on this replica
/// take turns and start from the state this replica last wrote, if it is
/// still known (see `hot`).
pub(crate) async fn drive(
    engine: &Engine,
    run_id: &str,
    input: &Input,
) -> Result<Driven, DriverError> {
    let slot = engine.runs.hot.slot(run_id);
    let mut known = slot.lock().await;
    drive_turn(engine, run_id, input, &mut known).await
}

async fn drive_turn(
    engine: &Engine,
    run_id: &str,
    input: &Input,
    known: &mut Option<Known>,
) -> Result<Driven, DriverError> {
    let kv = &engine.runs.kv;
    // The revision whose outbox this replica carried out, if it wrote the run.
    let mut carried = known.as_ref().map(|k| k.revision);
    for _ in 0..MAX_ROUNDS {
        // A known state's outbox was carried out by this replica; a state
        // read from KV may carry one a crashed or slower writer left.
        let from_known = known.is_some();
        let (mut state, revision) = match known.take() {
            Some(k) => (k.state, k.revision),
            None => {
                let Some(loaded) = load(kv, run_id).await? else {
                    return Ok(Driven::NotFound);
                };
                if !loaded.state.outbox.is_empty() && carried != Some(loaded.revision) {
                    flush(engine, &loaded.state).await?;
                }
                carried = None;
                (loaded.state, loaded.revision)
            }
        };
        let compiled = engine
            .runs
            .defs
            .get(&state.definition)
            .await?
            .ok_or_else(|| DriverError::Definition(state.definition.clone()))?;
        let outputs = artifacts::resolve(engine, &state).await?;
        let before = state.clone();
        let mut machine = Machine::new(&mut state, &compiled, Utc::now(), outputs);
        machine.apply(input);
        let (effects, notes) = (
            std::mem::take(&mut machine.effects),
            std::mem::take(&mut machine.notes),
        );
        if state == before {
            if from_known {
                // Another replica may have moved the run on since this one
                // wrote it (a step result this state does not wait for yet):
                // decide "nothing to do" only on the stored state.
                continue;
            }
            // Its outbox (if any) is carried out; the next transition or the sweep clears it.
            remember(engine, known, Known::new(state, revision)).await;
            return Ok(Driven::Unchanged);
        }
        if let Some(k) = commit(engine, state, Some(revision), effects, notes).await? {
            remember(engine, known, k).await;
            return Ok(Driven::Applied);
        }
    }
    Err(DriverError::Contended(run_id.to_owned()))
}

/// Keeps `k` for the run's next transition on this replica, unless the run
/// ended or too many runs are remembered: then its outbox is cleared now.
pub(crate) async fn remember(engine: &Engine, known: &mut Option<Known>, k: Known) {
    if k.state.status.is_terminal() || engine.runs.hot.len() > hot::CAPACITY {
        if k.has_outbox() {
            clear_outbox(engine, k.state, k.revision).await;
        }
        *known = None;
    } else {
        *known = Some(k);
    }
}

/// Writes a transition with its effects in the outbox (creating the run when
/// `revision` is `None`; the write replaces the previous outbox, which the
/// caller has carried out), then carries the effects out. Returns the state
/// as written, or `None` when the write lost a race (or the run already
/// exists). The outbox is cleared by the next transition or by
/// the sweep in `hot`.
pub(crate) async fn commit(
    engine: &Engine,
    mut state: RunState,
    revision: Option<u64>,
    effects: Vec<Effect>,
    notes: Notes,
) -> Result<Option<Known>, DriverError> {
    artifacts::offload(engine, &mut state).await?;
    // The run of a dead replica is counted from now on by this one.
    let limiter = &engine.runs.limiter;
    let adopted = state.owner.as_deref().is_some_and(|o| limiter.is_dead(o));
    let former_owner = if adopted {
        state.owner.replace(limiter.id().to_owned())
    } else {
        None
    };
    state.updated_at = Utc::now();
    state.outbox = effects
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    state.outbox_id = (!state.outbox.is_empty()).then(|| uuid::Uuid::now_v7().simple().to_string());
    let kv = &engine.runs.kv;
    let new_rev = match revision {
        Some(rev) => match write(kv, &state, rev).await? {
            Some(r) => r,
            None => return Ok(None),
        },
        None => match kv.create(&state.run_id, encode(&state)?).await {
            Ok(r) => r,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(e.into()),
        },
    };
    if adopted {
        engine.runs.limiter.adopt(&state);
    }
    record(engine, &state, &notes);
    // The slots follow the run: this replica's at once, its owner's by a note.
    let seen = Seen::of(&state, new_rev);
    limiter.observe(&seen);
    let owner = state.owner.as_deref().filter(|o| *o != limiter.id());
    for to in owner.into_iter().chain(former_owner.as_deref()) {
        limiter::notify(&engine.js.client(), to, &seen).await;
    }
    if !effects.is_empty() {
        let origin = Origin {
            run_id: &state.run_id,
            tenant: state.tenant.as_deref(),
            traceparent: state.traceparent.as_deref(),
        };
        effects::execute(engine, &origin, &effects).await?;
    }
    Ok(Some(Known::new(state, new_rev)))
}

/// Carries out the effects a previous transition left in the outbox.
async fn flush(engine: &Engine, state: &RunState) -> Result<(), DriverError> {
    let effects: Vec<Effect> = state
        .outbox
        .iter()
        .filter_map(|v| match Effect::deserialize(v) {
            Ok(e) => Some(e),
            Err(e) => {
                warn!(run = %state.run_id, error = %e, "unreadable effect in outbox, skipped");
                None
            }
        })
        .collect();
    let origin = Origin {
        run_id: &state.run_id,
        tenant: state.tenant.as_deref(),
        traceparent: state.traceparent.as_deref(),
    };
    effects::execute(engine, &origin, &effects).await?;
    Ok(())
}

/// Empties the (carried out) outbox of `state`, written at `revision`; a
/// run written since keeps whatever it has now.
pub(crate) async fn clear_outbox(engine: &Engine, mut state: RunState, revision: u64) {
    state.outbox.clear();
    state.outbox_id = None;
    match write(&engine.runs.kv, &state, revision).await {
        Ok(_) => {}
        Err(e) => {
            warn!(run = %state.run_id, error = %e, "outbox not cleared; its effects will be repeated (idempotently)");
        }
    }
}

/// Metrics and spans, once a transition is durable.
fn record(engine: &Engine, state: &RunState, notes: &Notes) {
    let m = &engine.metrics;
    for (step, secs) in &notes.steps {
        m.step_duration
            .with_label_values(&[state.workflow.as_str(), step.as_str()])
            .observe(*secs);
    }
    if let Some((status, secs)) = notes.finished {
        m.runs
            .with_label_values(&[state.workflow.as_str(), status.as_str()])
            .inc();
        m.run_duration
            .with_label_values(&[state.workflow.as_str()])
            .observe(secs);
    }
    // Spans of the steps that settled and of the run when it ended.
    crate::spans::record(
        state,
        notes.steps.iter().map(|(step, _)| step),
        notes.finished.is_some(),
    );
}
