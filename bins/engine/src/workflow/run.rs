//! Starting runs: a top-level run for a `workflow.requested` request, or a
//! child run for a parent's `workflow` step. The run is created with
//! create-if-absent, so a duplicate request (or a repeated effect) never
//! starts a second run.

use std::collections::BTreeMap;

use agentry::workflow::Compiled;
use agentry::workflow::state::{ErrorInfo, ParentRef, RUN_SCHEMA_VERSION, RunState, RunStatus};
use chrono::Utc;
use serde_json::Value;
use tracing::warn;

use super::driver::{self, DriverError};
use super::effects::{self, ChildSpec};
use super::machine::{Input, Machine};
use super::steps::chrono;
use crate::Engine;

/// What a new run needs besides its definition.
pub(crate) struct NewRun {
    pub run_id: String,
    pub request_id: String,
    pub source: String,
    /// The owning tenant (`run_id` is then `<tenant>.<id>`).
    pub tenant: Option<String>,
    pub traceparent: Option<String>,
    pub input: Value,
    /// Overrides the definition's timeout.
    pub timeout: Option<std::time::Duration>,
    pub parent: Option<ParentRef>,
    pub depth: u32,
    /// The replica counting the run (top-level runs), see `RunState::owner`.
    pub owner: Option<String>,
}

/// The run's status after [`create`].
pub(crate) enum Started {
    Created(RunStatus),
    /// The run existed already (a duplicate request or a redelivery).
    Existed(RunStatus),
}

/// Creates the run pinned to definition `key` and carries out its first transition.
pub(crate) async fn create(
    engine: &Engine,
    key: String,
    compiled: &Compiled,
    new: NewRun,
) -> Result<Started, DriverError> {
    let now = Utc::now();
    let run_id = new.run_id.clone();
    let mut state = initial_state(key, compiled, new, now);
    let mut machine = Machine::new(&mut state, compiled, now, BTreeMap::new());
    machine.start();
    let (effects, notes) = (
        std::mem::take(&mut machine.effects),
        std::mem::take(&mut machine.notes),
    );
    let status = state.status;
    let slot = engine.runs.hot.slot(&run_id);
    {
        let mut known = slot.lock().await;
        if let Some(k) = driver::commit(engine, state, None, effects, notes).await? {
            driver::remember(engine, &mut known, k).await;
            return Ok(Started::Created(status));
        }
    }
    // It exists: finish what a crashed predecessor may have left undone.
    driver::drive(engine, &run_id, &Input::Touch).await?;
    let status = driver::load(&engine.runs.kv, &run_id)
        .await?
        .map_or(RunStatus::Running, |l| l.state.status);
    Ok(Started::Existed(status))
}

/// The state of a run about to start.
pub(crate) fn initial_state(
    key: String,
    compiled: &Compiled,
    new: NewRun,
    now: chrono::DateTime<Utc>,
) -> RunState {
    let def = compiled.definition();
    let timeout = new.timeout.unwrap_or_else(|| def.timeout.as_std());
    RunState {
        schema_version: RUN_SCHEMA_VERSION,
        run_id: new.run_id.clone(),
        request_id: new.request_id,
        tenant: new.tenant,
        source: new.source,
        owner: new.owner,
        traceparent: new.traceparent,
        workflow: def.name.clone(),
        version: def.version,
        definition: key,
        status: RunStatus::Running,
        input: new.input,
        output: None,
        output_ref: None,
        error: None,
        created_at: now,
        updated_at: now,
        deadline: now + chrono(timeout),
        ended_at: None,
        parent: new.parent,
        depth: new.depth,
        steps: BTreeMap::new(),
        completed_order: Vec::new(),
        compensation: None,
        signals: BTreeMap::new(),
        seen_signals: Vec::new(),
        event_seq: 0,
        outbox: Vec::new(),
        outbox_id: None,
    }
}

/// Starts a parent's child run; a child that cannot start fails the parent's step.
pub(crate) async fn start_child(engine: &Engine, spec: &ChildSpec) -> Result<(), DriverError> {
    let fail = |code: &str, message: String| ErrorInfo::new(code, message);
    let err = match engine.runs.defs.resolve(&spec.workflow, spec.version).await {
        Ok(Some((key, compiled))) => match compiled.validate_input(&spec.input) {
            Ok(()) => {
                // The child's id is a task id of the parent: it carries the
                // parent's tenant in front, and so does the child's run.
                let tenant = spec.run_id.split_once('.').map(|(t, _)| t.to_owned());
                let new = NewRun {
                    run_id: spec.run_id.clone(),
                    request_id: super::ids::bare(&spec.run_id).to_owned(),
                    tenant,
                    source: spec.source.clone(),
                    traceparent: spec.traceparent.clone(),
                    input: spec.input.clone(),
                    timeout: None,
                    parent: Some(spec.parent.clone()),
                    depth: spec.depth,
                    owner: None,
                };
                create(engine, key, &compiled, new).await?;
                return Ok(());
            }
            Err(e) => fail("invalid_input", e.to_string()),
        },
        Ok(None) => fail(
            "unknown_workflow",
            format!(
                "no workflow definition {}{}",
                spec.workflow,
                spec.version
                    .map(|v| format!(" version {v}"))
                    .unwrap_or_default()
            ),
        ),
        Err(e) => return Err(e.into()),
    };
    warn!(child = %spec.run_id, error = %err.message, "child run not started");
    effects::publish_step_result(
        engine,
        &spec.parent,
        &spec.run_id,
        None,
        Some(&err),
        spec.traceparent.as_deref(),
    )
    .await
    .map_err(DriverError::from)
}
