//! `workflow run --wait`: start a run and wait for its result, showing on a
//! terminal how many of its steps are done.

use std::time::Duration;

use agentry::client::{self, Outcome, SubmitError};
use agentry::event::Mode;
use agentry::subject::Tenant;
use agentry::workflow::store;
use async_nats::jetstream;
use cloudevents::{AttributesReader, Event};

use super::runs::load_run;
use crate::output::Progress;

/// How often the progress line re-reads the run state.
const POLL: Duration = Duration::from_millis(500);

/// Submits `event` (a workflow request) and waits up to `timeout` for the
/// run's result; the progress line (terminal only) shows steps done of total.
pub(super) async fn submit_and_wait(
    nats: &async_nats::Client,
    js: &jetstream::Context,
    tenant: Option<&Tenant>,
    event: &Event,
    timeout: Duration,
) -> Result<Outcome, SubmitError> {
    let run_id = event.id().to_owned();
    let key = super::run_key(tenant, &run_id).ok();
    let progress = Progress::waiting(&format!("run {run_id}: starting"));
    let submit = client::submit_as(nats, js, tenant, event, Mode::Binary, timeout);
    tokio::pin!(submit);
    let mut total: Option<usize> = None;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            outcome = &mut submit => return outcome,
            _ = tick.tick(), if progress.visible() && key.is_some() => {
                // Progress is cosmetic: a failed read leaves the line as it was.
                let key = key.as_deref().unwrap_or_default();
                if let Ok(Some(run)) = load_run(js, key).await {
                    if total.is_none() {
                        total = step_count(js, &run.workflow, run.version).await;
                    }
                    let done = run
                        .steps
                        .keys()
                        .filter(|s| run.step_status(s).is_terminal())
                        .count();
                    let total = total.map_or_else(|| "?".to_owned(), |t| t.to_string());
                    progress.set_message(format!(
                        "run {run_id} ({}): {done} of {total} steps done",
                        run.status.as_str()
                    ));
                }
            }
        }
    }
}

async fn step_count(js: &jetstream::Context, workflow: &str, version: u32) -> Option<usize> {
    let kv = store::open(js).await.ok()?;
    let def = store::get(&kv, workflow, Some(version)).await.ok()??;
    Some(def.steps.len())
}
