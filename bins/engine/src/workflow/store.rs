//! Run state in KV `agentry-runs` and the transition driver: load the run,
//! finish any effects a crashed predecessor left in its outbox, apply the
//! input, write the result by compare-and-set on the entry revision (on a
//! conflict: re-read and re-apply), execute the effects, clear the outbox.
//! Two replicas can never both advance a run: only one write per revision
//! succeeds.

use agentry::workflow::state::{RUN_SCHEMA_VERSION, RunState};
use async_nats::jetstream::kv;
use bytes::Bytes;
use chrono::Utc;
use tracing::warn;

use super::artifacts;
use super::effects::{self, Effect, Origin};
use super::machine::{Input, Machine, Notes};
use crate::Engine;

/// Compare-and-set rounds before giving up on a very contended run.
const MAX_ROUNDS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("run store: {0}")]
    Kv(String),
    #[error("run {run} is unreadable: {detail}")]
    Corrupt { run: String, detail: String },
    #[error(
        "run {run} has schema_version {version}, newer than this engine ({RUN_SCHEMA_VERSION})"
    )]
    TooNew { run: String, version: u32 },
    #[error("definition {0} of a run is missing or invalid")]
    Definition(String),
    #[error("effects not carried out: {0}")]
    Effects(#[from] effects::EffectError),
    #[error("artifact: {0}")]
    Artifact(#[from] artifacts::ArtifactError),
    #[error("run {0} stayed contended for {MAX_ROUNDS} rounds")]
    Contended(String),
}

impl StoreError {
    /// Whether retrying later may succeed (otherwise the message is poison).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Corrupt { .. } | Self::TooNew { .. })
    }
}

pub(crate) struct Loaded {
    pub state: RunState,
    pub revision: u64,
}

pub(crate) async fn load(kv: &kv::Store, run_id: &str) -> Result<Option<Loaded>, StoreError> {
    let entry = kv
        .entry(run_id)
        .await
        .map_err(|e| StoreError::Kv(e.to_string()))?;
    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
        return Ok(None);
    };
    let state: RunState =
        serde_json::from_slice(&entry.value).map_err(|e| StoreError::Corrupt {
            run: run_id.to_owned(),
            detail: e.to_string(),
        })?;
    if state.schema_version > RUN_SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            run: run_id.to_owned(),
            version: state.schema_version,
        });
    }
    Ok(Some(Loaded {
        state,
        revision: entry.revision,
    }))
}

fn encode(state: &RunState) -> Result<Bytes, StoreError> {
    serde_json::to_vec(state)
        .map(Bytes::from)
        .map_err(|e| StoreError::Corrupt {
            run: state.run_id.clone(),
            detail: e.to_string(),
        })
}

/// Writes `state` if the entry is still at `revision`; `Ok(None)` on a conflict.
async fn write(kv: &kv::Store, state: &RunState, revision: u64) -> Result<Option<u64>, StoreError> {
    match kv.update(&state.run_id, encode(state)?, revision).await {
        Ok(rev) => Ok(Some(rev)),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
        Err(e) => {
            let text = e.to_string();
            if text.contains("wrong last sequence") || text.contains("10071") {
                Ok(None)
            } else {
                Err(StoreError::Kv(text))
            }
        }
    }
}

/// What [`drive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driven {
    Applied,
    Unchanged,
    NotFound,
}

/// Applies `input` to run `run_id`.
pub(crate) async fn drive(
    engine: &Engine,
    run_id: &str,
    input: &Input,
) -> Result<Driven, StoreError> {
    let kv = &engine.runs.kv;
    for _ in 0..MAX_ROUNDS {
        let Some(mut loaded) = load(kv, run_id).await? else {
            return Ok(Driven::NotFound);
        };
        if !loaded.state.outbox.is_empty() {
            flush(engine, &loaded).await?;
            continue;
        }
        let compiled = engine
            .runs
            .defs
            .get(&loaded.state.definition)
            .await
            .map_err(|e| StoreError::Kv(e.to_string()))?
            .ok_or_else(|| StoreError::Definition(loaded.state.definition.clone()))?;
        let outputs = artifacts::resolve(engine, &loaded.state).await?;
        let before = loaded.state.clone();
        let mut machine = Machine::new(&mut loaded.state, &compiled, Utc::now(), outputs);
        machine.apply(input);
        let (effects, notes) = (
            std::mem::take(&mut machine.effects),
            std::mem::take(&mut machine.notes),
        );
        if loaded.state == before {
            return Ok(Driven::Unchanged);
        }
        if commit(engine, loaded.state, Some(loaded.revision), effects, notes).await? {
            return Ok(Driven::Applied);
        }
    }
    Err(StoreError::Contended(run_id.to_owned()))
}

/// Writes a transition with its effects in the outbox (creating the run when
/// `revision` is `None`), then carries the effects out and clears the outbox.
/// `Ok(false)`: the write lost a race (or the run already exists).
pub(crate) async fn commit(
    engine: &Engine,
    mut state: RunState,
    revision: Option<u64>,
    effects: Vec<Effect>,
    notes: Notes,
) -> Result<bool, StoreError> {
    artifacts::offload(engine, &mut state).await?;
    state.updated_at = Utc::now();
    let outbox_id = uuid::Uuid::now_v7().simple().to_string();
    state.outbox = effects
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    state.outbox_id = (!state.outbox.is_empty()).then(|| outbox_id.clone());
    let kv = &engine.runs.kv;
    let new_rev = match revision {
        Some(rev) => match write(kv, &state, rev).await? {
            Some(r) => r,
            None => return Ok(false),
        },
        None => match kv.create(&state.run_id, encode(&state)?).await {
            Ok(r) => r,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(StoreError::Kv(e.to_string())),
        },
    };
    record(engine, &state, &notes);
    if !effects.is_empty() {
        let origin = Origin {
            run_id: &state.run_id,
            traceparent: state.traceparent.as_deref(),
        };
        effects::execute(engine, &origin, &effects).await?;
        let run_id = state.run_id.clone();
        clear_outbox(engine, &run_id, &outbox_id, Some((state, new_rev))).await;
    }
    Ok(true)
}

/// Carries out the effects a previous transition left in the outbox.
async fn flush(engine: &Engine, loaded: &Loaded) -> Result<(), StoreError> {
    let effects: Vec<Effect> = loaded
        .state
        .outbox
        .iter()
        .filter_map(|v| match serde_json::from_value::<Effect>(v.clone()) {
            Ok(e) => Some(e),
            Err(e) => {
                warn!(run = %loaded.state.run_id, error = %e, "unreadable effect in outbox, skipped");
                None
            }
        })
        .collect();
    let origin = Origin {
        run_id: &loaded.state.run_id,
        traceparent: loaded.state.traceparent.as_deref(),
    };
    effects::execute(engine, &origin, &effects).await?;
    let id = loaded.state.outbox_id.clone().unwrap_or_default();
    let known = Some((loaded.state.clone(), loaded.revision));
    clear_outbox(engine, &loaded.state.run_id, &id, known).await;
    Ok(())
}

/// Empties the outbox `outbox_id` if it is still the run's. `known` is the
/// state as just written at its revision (saves a read in the common case).
async fn clear_outbox(
    engine: &Engine,
    run_id: &str,
    outbox_id: &str,
    known: Option<(RunState, u64)>,
) {
    let kv = &engine.runs.kv;
    let mut next = known;
    for _ in 0..MAX_ROUNDS {
        let (mut state, revision) = match next.take() {
            Some(k) => k,
            None => match load(kv, run_id).await {
                Ok(Some(l)) => (l.state, l.revision),
                Ok(None) => return,
                Err(e) => {
                    warn!(run = %run_id, error = %e, "outbox not cleared; its effects will be repeated (idempotently)");
                    return;
                }
            },
        };
        if state.outbox_id.as_deref() != Some(outbox_id) {
            return;
        }
        state.outbox.clear();
        state.outbox_id = None;
        match write(kv, &state, revision).await {
            Ok(Some(_)) => return,
            Ok(None) => continue,
            Err(e) => {
                warn!(run = %run_id, error = %e, "outbox not cleared; its effects will be repeated (idempotently)");
                return;
            }
        }
    }
}

/// Metrics and the concurrency permit, once a transition is durable.
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
        engine.runs.limiter.release(&state.run_id);
    }
}
