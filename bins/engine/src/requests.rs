//! Handles one request from `AGENTRY_REQUESTS`.

use agentry::reason::Reason;
use async_nats::jetstream;
use tracing::{Instrument, info_span};

use crate::intake::{self, Rejection, Request};
use crate::{Disposition, Engine, reject, tasks};

pub(crate) async fn handle(engine: &Engine, msg: jetstream::Message) -> Disposition {
    let accepted = match intake::decode(msg.headers.as_ref(), &msg.payload, &engine.limits) {
        Ok(a) => a,
        Err(r) => {
            reject::reject(engine, &msg, &r).await;
            return Disposition::Ack;
        }
    };
    if let Some(r) = crate::guard::check(engine, msg.subject.as_str(), &accepted).await {
        reject::reject(engine, &msg, &r).await;
        return Disposition::Ack;
    }
    let tp = agentry::event::ext_str(&accepted.event, agentry::event::ext::TRACEPARENT)
        .unwrap_or_default();
    let span = info_span!("request", agentry.request_id = %accepted.id, agentry.type = accepted.request.type_label(), trace = %tp);
    async {
        let label = accepted.request.type_label();
        let result = match &accepted.request {
            Request::Task {
                capability,
                timeout_ms,
            } => tasks::route(engine, &msg, &accepted, capability, *timeout_ms).await,
            Request::Workflow { workflow, .. } => Err(Rejection {
                reason: Reason::UnknownWorkflow,
                detail: format!("no workflow definition named {workflow}"),
                id: Some(accepted.id.clone()),
                source: Some(accepted.source.clone()),
            }),
            Request::Signal { run_id, .. } | Request::Cancel { run_id, .. } => Err(Rejection {
                reason: Reason::UnknownRun,
                detail: format!("no workflow run {run_id}"),
                id: Some(accepted.id.clone()),
                source: Some(accepted.source.clone()),
            }),
        };
        match result {
            Ok(d) => {
                engine
                    .metrics
                    .requests
                    .with_label_values(&[label, "accepted"])
                    .inc();
                d
            }
            Err(r) => {
                reject::reject(engine, &msg, &r).await;
                Disposition::Ack
            }
        }
    }
    .instrument(span)
    .await
}
