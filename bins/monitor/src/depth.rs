//! Queue depth and ack-pending per consumer, read from consumer info over
//! the JetStream API (what KEDA reads from /jsz: num_pending + num_ack_pending),
//! and DLQ size by reason.

use std::sync::Arc;

use agentry::subject;
use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::Monitor;

const WATCHED: &[&str] = &[
    subject::REQUESTS_STREAM,
    subject::TASKS_STREAM,
    subject::STEPS_STREAM,
    subject::TIMERS_STREAM,
];

pub async fn run(
    mon: Arc<Monitor>,
    _kv: kv::Store,
    pulse: agentry::http::Pulse,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(mon.cfg.depth_interval);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {
                pulse.beat();
                if let Err(e) = refresh(&mon).await {
                    warn!(error = %e, "queue depth refresh failed");
                }
            }
        }
    }
}

pub(crate) async fn refresh(mon: &Monitor) -> anyhow::Result<()> {
    for stream_name in WATCHED {
        let stream = mon.js.get_stream_no_info(*stream_name).await?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info?;
            mon.metrics
                .depth
                .with_label_values(&[stream_name, info.name.as_str()])
                .set(info.num_pending as i64);
            mon.metrics
                .ack_pending
                .with_label_values(&[stream_name, info.name.as_str()])
                .set(info.num_ack_pending as i64);
        }
    }
    let dlq = mon.js.get_stream(subject::DLQ_STREAM).await?;
    let mut subjects = dlq.info_with_subjects(subject::DLQ_ALL).await?;
    mon.metrics.dlq_messages.reset();
    while let Some(item) = subjects.next().await {
        let (subj, n) = item?;
        let reason = subj.rsplit('.').next().unwrap_or("unknown");
        mon.metrics
            .dlq_messages
            .with_label_values(&[reason])
            .set(n as i64);
    }
    Ok(())
}
