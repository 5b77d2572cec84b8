//! Handles one request from `AGENTRY_REQUESTS`.

use async_nats::jetstream;
use tracing::{Instrument, info_span};

use crate::intake::{self, Request};
use crate::{Disposition, Engine, answered, reject, tasks, workflow};

pub(crate) async fn handle(
    engine: &Engine,
    msg: &jetstream::Message,
    permit: crate::EnginePermit,
) -> Disposition {
    let accepted = match intake::decode(msg.headers.as_ref(), &msg.payload, &engine.limits) {
        Ok(a) => a,
        Err(r) => {
            let recorded = reject::reject(engine, msg, &r).await;
            return reject::settle(msg, recorded, Disposition::Ack);
        }
    };
    if let Some(r) = crate::guard::check(engine, msg.subject.as_str(), &accepted).await {
        let recorded = reject::reject(engine, msg, &r).await;
        return reject::settle(msg, recorded, Disposition::Ack);
    }
    let tp = agentry::event::ext_str(&accepted.event, agentry::event::ext::TRACEPARENT)
        .unwrap_or_default();
    let span = info_span!("request", agentry.request_id = %accepted.id, agentry.type = accepted.request.type_label(), trace = %tp);
    async {
        let label = accepted.request.type_label();
        // A task or workflow request seen again after the duplicate window:
        // answer it with its stored result and run nothing.
        if matches!(
            accepted.request,
            Request::Task { .. } | Request::Workflow { .. }
        ) && let Ok(tenant) = agentry::subject::tenant_of_request(msg.subject.as_str())
        {
            match answered::replay_stored(&engine.js, tenant.as_ref(), &accepted.id).await {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(
                        "request already answered: replayed its stored result, ran nothing"
                    );
                    engine.metrics.duplicates.inc();
                    return Disposition::Ack;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stored-result lookup failed; the request is kept");
                    return Disposition::Nak(reject::record_retry(msg));
                }
            }
        }
        let result = match &accepted.request {
            Request::Task {
                capability,
                timeout_ms,
            } => tasks::route(engine, msg, &accepted, capability, *timeout_ms).await,
            Request::Workflow {
                workflow,
                version,
                input,
                timeout_ms,
            } => {
                workflow::start(
                    engine,
                    msg,
                    &accepted,
                    workflow,
                    *version,
                    input,
                    *timeout_ms,
                    permit,
                )
                .await
            }
            Request::Signal {
                run_id,
                signal,
                payload,
            } => workflow::signal(engine, &accepted, run_id, signal, payload).await,
            Request::Cancel { run_id, reason } => {
                workflow::cancel(engine, &accepted, run_id, reason.as_deref()).await
            }
        };
        match result {
            Ok(d) => {
                tracing::debug!("request accepted");
                engine
                    .metrics
                    .requests
                    .with_label_values(&[label, "accepted"])
                    .inc();
                d
            }
            Err(r) => {
                let recorded = reject::reject(engine, msg, &r).await;
                reject::settle(msg, recorded, Disposition::Ack)
            }
        }
    }
    .instrument(span)
    .await
}
