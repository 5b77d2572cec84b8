//! The raw baseline: a work-queue stream, a results stream and a plain
//! worker, with no agentry code on the path.

use std::sync::Arc;

use async_nats::jetstream::{self, consumer::PullConsumer, stream};
use futures::StreamExt;

pub(super) async fn setup_raw(js: &jetstream::Context) -> anyhow::Result<PullConsumer> {
    for (name, subj, retention) in [
        (
            "BENCH_RAW_IN",
            "bench.raw.in",
            stream::RetentionPolicy::WorkQueue,
        ),
        (
            "BENCH_RAW_OUT",
            "bench.raw.out.>",
            stream::RetentionPolicy::Limits,
        ),
    ] {
        let _ = js.delete_stream(name).await;
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subj.into()],
            retention,
            ..Default::default()
        })
        .await?;
    }
    let st = js.get_stream("BENCH_RAW_IN").await?;
    let c = st
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("worker".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await?;
    Ok(c)
}

/// The plain worker of the raw baseline.
pub(super) fn spawn_raw_worker(
    js: jetstream::Context,
    consumer: PullConsumer,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let Ok(mut msgs) = consumer
            .stream()
            .max_messages_per_batch(512)
            .messages()
            .await
        else {
            return;
        };
        let sem = Arc::new(tokio::sync::Semaphore::new(1024));
        loop {
            let next = tokio::select! { _ = stop.cancelled() => return, m = msgs.next() => m };
            let Some(Ok(msg)) = next else { return };
            let Ok(permit) = sem.clone().acquire_owned().await else {
                return;
            };
            let js = js.clone();
            tokio::spawn(async move {
                let id = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("id"))
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default();
                if let Ok(ack) = js
                    .publish(format!("bench.raw.out.{id}"), msg.payload.clone())
                    .await
                {
                    let _ = ack.await;
                }
                let _ = msg.ack().await;
                drop(permit);
            });
        }
    });
}
