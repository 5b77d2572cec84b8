//! The durable workflow engine: runs of checked definitions, their state in
//! KV `agentry-runs` (compare-and-set on revision), step tasks through
//! `agentry.tasks.*` with results back on `agentry.steps.<run>`, durable
//! timers for deadlines, retries and signal waits, child runs, signals,
//! cancellation and compensation.
//!
//! - `machine`, `steps`, `signals`, `compensate`: the pure state machine;
//! - `driver`: the run-state transition driver (load, apply, CAS write, effects);
//! - `hot`: the state this replica last wrote per run (saves reads and outbox clears);
//! - `effects`: what transitions do outside the state;
//! - `run`: creating runs; `defs`: compiled definitions; `artifacts`: large values;
//! - `limiter`: at most N active runs per replica; `ids`: derived names.

use std::sync::Arc;
use std::time::Duration;

use agentry::consume::{self, DeadLetter};
use agentry::error::Chain;
use agentry::event::{self, Limits, ext, types};
use agentry::id::{RunId, SignalName, WorkflowName};
use agentry::reason::Reason;
use agentry::subject;
use agentry::workflow::state::ErrorInfo;
use async_nats::jetstream::{self, kv};
use cloudevents::AttributesReader;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::timers::Timer;
use crate::validate::{Accepted, Rejection};
use crate::{Disposition, Engine};

mod artifacts;
mod compensate;
mod defs;
mod driver;
mod effects;
mod hot;
mod ids;
mod limiter;
mod machine;
mod run;
mod signals;
mod steps;
#[cfg(test)]
mod tests;

use driver::{Driven, DriverError};
use machine::{Input, StepResult};

/// The workflow half of an engine replica.
pub(crate) struct Runs {
    pub kv: kv::Store,
    pub defs: defs::Definitions,
    pub limiter: Arc<limiter::Limiter>,
    pub hot: hot::Hot,
}

impl Runs {
    /// Opens the buckets, waiting for `agentry setup` if they do not exist yet.
    pub async fn open(
        js: &jetstream::Context,
        max_runs: usize,
        runs_active: prometheus::IntGauge,
        runs_parked: prometheus::IntGauge,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let runs = consume::ready::bucket(js, subject::RUNS_BUCKET, shutdown).await?;
        let workflows = consume::ready::bucket(js, subject::WORKFLOWS_BUCKET, shutdown).await?;
        Ok(Self {
            kv: runs,
            defs: defs::Definitions::new(workflows),
            limiter: Arc::new(limiter::Limiter::new(max_runs, runs_active, runs_parked)),
            hot: hot::Hot::default(),
        })
    }
}

/// Releases run permits of runs that ended anywhere, keeps the index of
/// definition versions current and clears settled outboxes; runs until
/// shutdown.
pub(crate) async fn watch(engine: Arc<Engine>, shutdown: CancellationToken) {
    let permits = limiter::watch(
        engine.runs.limiter.clone(),
        engine.runs.kv.clone(),
        engine.js.clone(),
        engine.metrics.timers_pending.clone(),
        shutdown.clone(),
    );
    let sweep = hot::sweep(engine.clone(), shutdown.clone());
    let alive = limiter::heartbeat(
        engine.runs.limiter.clone(),
        engine.js.client(),
        shutdown.clone(),
    );
    tokio::join!(permits, engine.runs.defs.watch(shutdown), sweep, alive);
}

/// Clears every outbox this replica carried out (at shutdown, once no
/// transition is running any more).
pub(crate) async fn settle(engine: &Engine) {
    hot::settle_all(engine).await;
}

fn rejection(req: &Accepted, reason: Reason, detail: String) -> Rejection {
    req.reject(reason, detail)
}

fn transient(e: &DriverError) -> Disposition {
    warn!(error = %Chain(e), "workflow store trouble, retrying later");
    Disposition::Nak(Duration::from_secs(1))
}

/// `io.agentry.workflow.requested`: start a run (run id = request id).
/// `engine_permit` is dropped while the start waits for a run slot.
#[allow(clippy::too_many_arguments)] // the request's fields, decoded once at the edge
pub(crate) async fn start(
    engine: &Engine,
    msg: &jetstream::Message,
    req: &Accepted,
    workflow: &WorkflowName,
    version: Option<u32>,
    input: &Value,
    timeout_ms: Option<u64>,
    engine_permit: crate::EnginePermit,
) -> Result<Disposition, Rejection> {
    let limiter = &engine.runs.limiter;
    let permit = match limiter.try_reserve() {
        Some(r) => r,
        None => {
            // Wait for a slot without the engine permit (signals, cancels and
            // step results keep flowing), in the waiting room while it has space.
            let room = limiter.waiting_room();
            if room.is_some() {
                drop(engine_permit);
            }
            let Some(r) = limiter.acquire(msg, &engine.shutdown).await else {
                return Ok(Disposition::Nak(Duration::ZERO));
            };
            drop(room);
            r
        }
    };
    let (key, compiled) = match engine.runs.defs.resolve(workflow.as_str(), version).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            let v = version.map(|v| format!(" version {v}")).unwrap_or_default();
            return Err(rejection(
                req,
                Reason::UnknownWorkflow,
                format!("no workflow definition {workflow}{v}"),
            ));
        }
        Err(agentry::workflow::store::StoreError::Corrupt { key, source }) => {
            return Err(rejection(
                req,
                Reason::InvalidWorkflow,
                format!("{key}: {}", Chain(&source)),
            ));
        }
        Err(e) => {
            warn!(error = %Chain(&e), "definition lookup failed, retrying later");
            return Ok(Disposition::Nak(Duration::from_secs(1)));
        }
    };
    if let Err(e) = compiled.validate_input(input) {
        return Err(rejection(req, Reason::SchemaInvalid, e.to_string()));
    }
    // Run id = request id; the key names the tenant, so two tenants may
    // reuse an id without meeting.
    let run_id = subject::request_key(req.tenant.as_ref(), &req.id);
    engine.runs.limiter.hold(&run_id, permit);
    let new = run::NewRun {
        run_id: run_id.clone(),
        request_id: req.id.to_string(),
        tenant: req.tenant.as_ref().map(|t| t.to_string()),
        source: req.source.clone(),
        traceparent: event::ext_str(&req.event, ext::TRACEPARENT),
        input: input.clone(),
        timeout: timeout_ms.map(Duration::from_millis),
        parent: None,
        depth: 0,
        owner: Some(limiter.id().to_owned()),
    };
    match run::create(engine, key, &compiled, new).await {
        Ok(run::Started::Created(status)) => {
            info!(run = %run_id, workflow = %workflow, "run started");
            if status.is_terminal() {
                engine.runs.limiter.release(&run_id);
            }
            Ok(Disposition::Ack)
        }
        Ok(run::Started::Existed(status)) => {
            info!(run = %run_id, "duplicate workflow request: the run exists, not started again");
            if status.is_terminal() {
                engine.runs.limiter.release(&run_id);
            }
            Ok(Disposition::Ack)
        }
        Err(e) => {
            engine.runs.limiter.release(&run_id);
            Ok(transient(&e))
        }
    }
}

/// `io.agentry.workflow.signal`.
pub(crate) async fn signal(
    engine: &Engine,
    req: &Accepted,
    run_id: &RunId,
    name: &SignalName,
    payload: &Value,
) -> Result<Disposition, Rejection> {
    let input = Input::Signal {
        request_id: req.id.to_string(),
        name: name.to_string(),
        payload: payload.clone(),
    };
    apply_request(engine, req, run_id, &input).await
}

/// `io.agentry.workflow.cancel`.
pub(crate) async fn cancel(
    engine: &Engine,
    req: &Accepted,
    run_id: &RunId,
    reason: Option<&str>,
) -> Result<Disposition, Rejection> {
    let input = Input::Cancel {
        reason: reason.map(str::to_owned),
    };
    apply_request(engine, req, run_id, &input).await
}

async fn apply_request(
    engine: &Engine,
    req: &Accepted,
    run_id: &RunId,
    input: &Input,
) -> Result<Disposition, Rejection> {
    // Only the owning tenant's runs are addressable: another tenant's run
    // id resolves to a key that does not exist, refused exactly like an
    // unknown run (existence does not leak).
    let key = subject::run_key(req.tenant.as_ref(), run_id);
    match driver::drive(engine, &key, input).await {
        Ok(Driven::NotFound) => Err(rejection(
            req,
            Reason::UnknownRun,
            format!("no workflow run {run_id}"),
        )),
        Ok(_) => Ok(Disposition::Ack),
        Err(e) if e.is_transient() => Ok(transient(&e)),
        Err(e) => Err(rejection(
            req,
            Reason::UnknownRun,
            agentry::error::chain(&e),
        )),
    }
}

/// A step result on `agentry.steps.<run>` (from an agent or a child run).
pub(crate) async fn on_step_result(engine: &Engine, msg: &jetstream::Message) -> Disposition {
    let limits = Limits {
        max_payload: usize::MAX,
        ..Limits::default()
    };
    let ev = match event::decode(msg.headers.as_ref(), &msg.payload, &limits) {
        Ok(d) => d.event,
        Err(e) => {
            warn!(error = %e, subject = %msg.subject, "unreadable step result, dead-lettering");
            return Disposition::dead_letter(e.reason(), agentry::error::chain(&e));
        }
    };
    let run_id = event::ext_str(&ev, ext::RUNID);
    let slot = event::ext_str(&ev, ext::STEPID);
    let attempt = event::ext_i64(&ev, ext::ATTEMPT).and_then(|a| u32::try_from(a).ok());
    let (Some(run_id), Some(slot), Some(attempt)) = (run_id, slot, attempt) else {
        warn!(subject = %msg.subject, "step result without runid/stepid/attempt, dead-lettering");
        return Disposition::DeadLetter(
            DeadLetter::new(
                Reason::MissingAttribute,
                "step result without runid/stepid/attempt",
            )
            .request(Some(ev.id()), Some(&ev.source().to_string())),
        );
    };
    let data = event::data_json(&ev).unwrap_or(Value::Null);
    let outcome = if ev.ty() == types::TASK_COMPLETED {
        Ok(data.get("output").cloned().unwrap_or(Value::Null))
    } else {
        Err(data
            .get("error")
            .cloned()
            .and_then(|e| serde_json::from_value::<ErrorInfo>(e).ok())
            .unwrap_or_else(|| {
                ErrorInfo::new("handler", "the step failed without an error object")
            }))
    };
    let result = StepResult {
        slot,
        attempt,
        outcome,
        agent_id: data["agent_id"].as_str().map(str::to_owned),
        duration_ms: data["duration_ms"].as_u64(),
    };
    match driver::drive(engine, &run_id, &Input::StepResult(result)).await {
        Ok(_) => Disposition::Ack,
        Err(e) if e.is_transient() => transient(&e),
        Err(e) => {
            warn!(error = %Chain(&e), run = %run_id, "step result cannot be applied, dead-lettering");
            Disposition::DeadLetter(
                DeadLetter::new(Reason::UnknownRun, agentry::error::chain(&e))
                    .request(Some(ev.id()), Some(&ev.source().to_string())),
            )
        }
    }
}

/// A workflow timer fired.
pub(crate) async fn on_timer(engine: &Engine, timer: Timer) -> Disposition {
    let (run_id, input) = match timer {
        Timer::RunTimeout { run_id } => (run_id, Input::RunTimeout),
        Timer::StepTimeout {
            run_id,
            step,
            attempt,
        } => (
            run_id,
            Input::StepTimeout {
                slot: step,
                attempt,
            },
        ),
        Timer::StepRetry {
            run_id,
            step,
            attempt,
        } => (
            run_id,
            Input::StepRetry {
                slot: step,
                attempt,
            },
        ),
        Timer::SignalTimeout { run_id, step } => (run_id, Input::SignalTimeout { step }),
        Timer::TaskTimeout { .. } => return Disposition::Ack,
    };
    match driver::drive(engine, &run_id, &input).await {
        Ok(_) => Disposition::Ack,
        Err(e) if e.is_transient() => transient(&e),
        Err(e) => {
            warn!(error = %Chain(&e), run = %run_id, "timer cannot be applied, dropped");
            Disposition::Ack
        }
    }
}
