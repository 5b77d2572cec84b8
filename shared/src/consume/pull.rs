//! [`Pull`]: the pull loop every consumer in agentry runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use futures::StreamExt;
use prometheus::IntCounterVec;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::{Delays, Disposition, dead_letter, record_retry};
use crate::http::Pulse;

/// Pulls from a durable consumer with at most as many handlers in flight
/// as it has permits, until shutdown. Each message is handed to the handler
/// with one permit (held until the handler drops it) and settled by the
/// [`Disposition`] it returns. Pull errors and ended pull streams (also a
/// deleted consumer) are retried with backoff.
pub struct Pull {
    js: jetstream::Context,
    consumer: PullConsumer,
    pulse: Pulse,
    batch: usize,
    permits: Arc<Semaphore>,
    expires: Duration,
    drain: bool,
    dlq_counter: Option<IntCounterVec>,
}

impl Pull {
    /// Pulls `consumer` (liveness reported on `pulse`); 64 in flight by
    /// default, a batch as large as the permits.
    pub fn new(js: jetstream::Context, consumer: PullConsumer, pulse: Pulse) -> Self {
        Self {
            js,
            consumer,
            pulse,
            batch: 64,
            permits: Arc::new(Semaphore::new(64)),
            expires: Duration::from_secs(30),
            drain: false,
            dlq_counter: None,
        }
    }

    /// Messages requested per pull (the prefetch).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.clamp(1, 1000);
        self
    }

    /// At most `n` handlers in flight.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.permits = Arc::new(Semaphore::new(n.max(1)));
        self
    }

    /// Shares the in-flight bound with other work (several consumers, a service).
    pub fn permits(mut self, permits: Arc<Semaphore>) -> Self {
        self.permits = permits;
        self
    }

    /// After shutdown, still hand over the messages already delivered to
    /// this puller (in flight from the server's view) instead of leaving
    /// them to their ack wait.
    pub fn drain_delivered(mut self) -> Self {
        self.drain = true;
        self
    }

    /// Counts dead letters (by reason) in `counter`.
    pub fn count_dead_letters(mut self, counter: IntCounterVec) -> Self {
        self.dlq_counter = Some(counter);
        self
    }

    async fn open(&self) -> Result<jetstream::consumer::pull::Stream, PullError> {
        self.consumer
            .stream()
            .max_messages_per_batch(self.batch)
            .heartbeat(Duration::from_secs(5))
            .expires(self.expires)
            .messages()
            .await
            .map_err(PullError::Open)
    }

    /// Runs until `stop`; handlers are spawned on `work` (wait on it to let
    /// them finish).
    pub async fn run<F, Fut>(self, stop: CancellationToken, work: TaskTracker, handler: F)
    where
        F: Fn(Arc<jetstream::Message>, OwnedSemaphorePermit) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Disposition> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let settler = Arc::new(Settler {
            js: self.js.clone(),
            dlq_counter: self.dlq_counter.clone(),
        });
        let name = self.consumer.cached_info().name.clone();
        let mut delays = Delays::new();
        let mut stopping = false;
        loop {
            let mut messages = match self.open().await {
                Ok(m) => self.pulse.track(m),
                Err(e) => {
                    warn!(consumer = %name, error = %e, "cannot open pull stream, retrying");
                    if stopping || !delays.pause(&stop).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let permit = tokio::select! {
                    _ = stop.cancelled(), if !stopping => {
                        if !self.drain { return }
                        stopping = true;
                        continue;
                    }
                    p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                };
                // After stop: take only what was already delivered, then let go.
                let next = if stopping {
                    match tokio::time::timeout(Duration::from_millis(100), messages.next()).await {
                        Ok(m) => m,
                        Err(_) => return,
                    }
                } else {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            if !self.drain { return }
                            stopping = true;
                            continue;
                        }
                        m = messages.next() => m,
                    }
                };
                match next {
                    Some(Ok(msg)) => {
                        delays.reset();
                        let handler = handler.clone();
                        let settler = settler.clone();
                        let msg = Arc::new(msg);
                        // Owned by `work`; the handler's outcome settles the message.
                        work.spawn(async move {
                            let outcome = handler(msg.clone(), permit).await;
                            settler.settle(&msg, outcome).await;
                        });
                    }
                    Some(Err(e)) => {
                        warn!(consumer = %name, error = %e, "pull error, continuing");
                        if stopping || !delays.pause(&stop).await {
                            return;
                        }
                    }
                    None => {
                        if stopping {
                            return;
                        }
                        // Also after its consumer was deleted: retry calmly until it is back.
                        warn!(consumer = %name, "pull stream ended, reopening");
                        if !delays.pause(&stop).await {
                            return;
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// Why a pull stream could not be opened.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("open pull stream")]
    Open(#[source] jetstream::consumer::StreamError),
}

struct Settler {
    js: jetstream::Context,
    dlq_counter: Option<IntCounterVec>,
}

impl Settler {
    async fn settle(&self, msg: &jetstream::Message, outcome: Disposition) {
        let kind = match outcome {
            Disposition::Ack => AckKind::Ack,
            Disposition::Nak(d) => AckKind::Nak(Some(d)),
            Disposition::Term => AckKind::Term,
            Disposition::DeadLetter(dl) => {
                if dead_letter::record(&self.js, msg, &dl, self.dlq_counter.as_ref()).await {
                    AckKind::Term
                } else {
                    AckKind::Nak(Some(record_retry(msg)))
                }
            }
        };
        if let Err(e) = msg.ack_with(kind).await {
            warn!(error = %e, "ack failed; the message will be redelivered");
        }
    }
}
