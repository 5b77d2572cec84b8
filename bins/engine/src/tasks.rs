//! Single tasks: route to `agentry.tasks.<capability>` (the agent answers
//! the client directly), with the same guarantees as a one-step workflow
//! and no run state: retries by the agent runtime, a deadline enforced by a
//! durable timer, exactly one result by first-write-wins.

use std::time::Duration;

use agentry::error::Chain;
use agentry::event::{self, Mode, ext, header};
use agentry::id::Capability;
use agentry::publish;
use agentry::reason::Reason;
use agentry::subject;
use async_nats::jetstream::{
    self,
    context::{ConsumerInfoErrorKind, PublishErrorKind},
};
use chrono::Utc;
use cloudevents::Event;
use tracing::{info, warn};

use crate::timers::{self, Timer};
use crate::validate::{Accepted, Rejection};
use crate::{Disposition, Engine};

/// `intake` is the context of the request's intake span when it records
/// (the parent of the send span).
pub(crate) async fn route(
    engine: &Engine,
    msg: &jetstream::Message,
    req: &Accepted,
    cap: &Capability,
    timeout_ms: Option<u64>,
    intake: Option<agentry::trace::TraceParent>,
) -> Result<Disposition, Rejection> {
    let rejection = |reason: Reason, detail: String| req.reject(reason, detail);
    match known_capability(engine, cap).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(rejection(
                Reason::UnknownCapability,
                format!("no agent serves capability {cap}"),
            ));
        }
        Err(e) => {
            warn!(error = %Chain(&e), "capability lookup failed, retrying request later");
            return Ok(Disposition::Nak(Duration::from_secs(1)));
        }
    }
    // The tenant comes only from the subject the request arrived on (parsed
    // at intake); its result subject is the one that tenant's NATS user may read.
    let tenant = &req.tenant;
    let reply = subject::results_for(tenant.as_ref(), &req.id);
    let deadline = timeout_ms.map(|ms| Utc::now() + chrono::Duration::milliseconds(ms as i64));
    // Binary mode in: forward the original bytes and headers with our
    // extensions added (no decode/encode round trip on the hot path).
    // A client-supplied `tenant` extension is never forwarded: rare, so it
    // takes the re-encoding path below, which removes it.
    let client_tenant = req.event.extension(ext::TENANT).is_some();
    // The send span (ended when routing returns); the task carries it.
    let task_subject = subject::tasks(cap);
    let send = crate::spans::send(cap, &task_subject, intake, req.id.as_str());
    let send_tp = send.context().map(|c| c.header());
    let (mut headers, body) = match (req.mode, msg.headers.clone()) {
        (Mode::Binary, Some(mut h)) if !client_tenant => {
            event::set_binary_extension(&mut h, ext::REPLYTO, &reply);
            if let Some(tp) = &send_tp {
                event::set_binary_extension(&mut h, ext::TRACEPARENT, tp);
            }
            if let Some(t) = tenant {
                event::set_binary_extension(&mut h, ext::TENANT, t.as_str());
            }
            if let Some(d) = deadline {
                event::set_binary_extension(
                    &mut h,
                    ext::DEADLINE,
                    &d.timestamp_millis().to_string(),
                );
            }
            (h, msg.payload.clone())
        }
        _ => {
            let mut task: Event = req.event.clone();
            task.remove_extension(ext::TENANT);
            task.set_extension(ext::REPLYTO, reply);
            if let Some(tp) = send_tp {
                task.set_extension(ext::TRACEPARENT, tp);
            }
            if let Some(t) = tenant {
                task.set_extension(ext::TENANT, t.as_str());
            }
            if let Some(d) = deadline {
                task.set_extension(ext::DEADLINE, d.timestamp_millis());
            }
            match event::encode(&task, Mode::Binary) {
                Ok(x) => x,
                Err(e) => return Err(rejection(Reason::BadEncoding, e.to_string())),
            }
        }
    };
    headers.insert(
        header::MSG_ID,
        subject::request_key(tenant.as_ref(), &req.id).as_str(),
    );
    // Fairness: while the capability's queue is congested a tenant's task
    // is held and released in turn with other tenants' (crate::fair).
    let held = match tenant {
        Some(t) if engine.fair.hold(cap, Some(t)) => Some(subject::held(cap, t)),
        _ => None,
    };
    let to = held.clone().unwrap_or(task_subject);
    let ack = match engine.js.publish_with_headers(to, headers, body).await {
        Ok(a) => a.await,
        Err(e) => {
            warn!(error = %e, "task publish failed, retrying request later");
            return Ok(Disposition::Nak(Duration::from_secs(1)));
        }
    };
    match ack {
        Ok(a) if a.duplicate => {
            info!("duplicate request id within the dedup window: not routed again")
        }
        Ok(_) => {
            if held.is_some() {
                engine
                    .metrics
                    .fair_tasks
                    .with_label_values(&[cap.as_str(), "held"])
                    .inc();
            }
        }
        Err(e) if publish::stream_full(&e) => {
            return Err(rejection(
                Reason::QueueFull,
                format!("the {cap} queue is full: {}", Chain(&e)),
            ));
        }
        Err(e)
            if matches!(
                e.kind(),
                PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
            ) =>
        {
            return Ok(Disposition::Nak(Duration::from_secs(1)));
        }
        Err(e) => {
            warn!(error = %Chain(&e), "task publish refused, retrying request later");
            return Ok(Disposition::Nak(Duration::from_secs(2)));
        }
    }
    if let Some(d) = deadline {
        let timer = Timer::TaskTimeout {
            request_id: req.id.to_string(),
            capability: cap.to_string(),
        };
        let key = subject::task_timer_key(tenant.as_ref(), &req.id);
        if let Err(e) = timers::schedule(&engine.js, &key, d, &timer).await {
            // The task is queued but its deadline would go unenforced: keep the
            // request; its redelivery finds the task already queued (same
            // Nats-Msg-Id) and schedules the timer again.
            warn!(error = %e, "task deadline timer not scheduled; the request is kept");
            return Ok(Disposition::Nak(agentry::consume::record_retry(msg)));
        }
    }
    Ok(Disposition::Ack)
}

/// Why the consumer of a capability could not be looked up.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("tasks stream")]
    Stream(#[from] jetstream::context::GetStreamError),
    #[error("capability consumer")]
    Consumer(#[from] jetstream::context::ConsumerInfoError),
}

/// `true` when `cap-<capability>` exists (positive answers cached).
async fn known_capability(engine: &Engine, cap: &Capability) -> Result<bool, LookupError> {
    if engine
        .known_caps
        .read()
        .map(|s| s.contains(cap.as_str()))
        .unwrap_or(false)
    {
        return Ok(true);
    }
    let stream = engine.js.get_stream_no_info(subject::TASKS_STREAM).await?;
    match stream.consumer_info(subject::task_consumer(cap)).await {
        Ok(_) => {
            if let Ok(mut s) = engine.known_caps.write() {
                s.insert(cap.to_string());
            }
            Ok(true)
        }
        Err(e)
            if matches!(
                e.kind(),
                ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}
