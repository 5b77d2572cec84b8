//! One way to consume: every pull loop in agentry (engine requests, timers
//! and step results; agents' task consumers; the monitor's registrar) is
//! built from these parts.
//!
//! - [`ready`]: wait, with backoff, for what `agentry setup` creates (a
//!   durable consumer, a KV bucket) and bind it;
//! - [`Pull`]: pull with bounded concurrency, stop on shutdown, back off on
//!   pull errors, settle each message by the [`Disposition`] its handler
//!   returns;
//! - [`dead_letter`]: copy a message to the DLQ; a message is only let go
//!   once its copy is stored (else it is NAKed and comes back);
//! - [`watch`]: a KV watch that is reopened with backoff when it ends;
//! - [`supervise`]: tasks whose failure stops the component, with backoff
//!   helpers built on `backon`.
//!
//! Handler error types say how their message is settled by implementing
//! [`Settle`].

use std::time::Duration;

use backon::BackoffBuilder as _;

use crate::reason::Reason;

pub mod dead_letter;
mod pull;
pub mod ready;
pub mod supervise;
pub mod watch;

pub use dead_letter::DeadLetter;
pub use pull::Pull;

/// What to do with a message once handled.
#[derive(Debug)]
pub enum Disposition {
    /// Done: remove it.
    Ack,
    /// Not now: redeliver after the delay.
    Nak(Duration),
    /// Never again (its outcome is recorded elsewhere).
    Term,
    /// Poison: copy it to the DLQ, then terminate it; if the copy cannot be
    /// stored it is NAKed instead (never lost).
    DeadLetter(DeadLetter),
}

impl Disposition {
    /// Dead-letters with `reason` and `detail` (no request id or source read).
    pub fn dead_letter(reason: Reason, detail: impl Into<String>) -> Self {
        Self::DeadLetter(DeadLetter::new(reason, detail))
    }
}

/// How a handler error settles its message.
pub trait Settle {
    fn disposition(&self) -> Disposition;
}

impl<E: Settle> Settle for &E {
    fn disposition(&self) -> Disposition {
        (*self).disposition()
    }
}

/// How long a message whose outcome could not be recorded waits before it
/// is redelivered: grows with its delivery count (1 s, 2 s, 4 s, 8 s) so a
/// short NATS outage is outlasted within the consumer's `max_deliver`.
pub fn record_retry(msg: &async_nats::jetstream::Message) -> Duration {
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).clamp(1, 4);
    Duration::from_secs(1 << (delivered - 1))
}

/// Delays between tries of something that is expected to come back (setup
/// not run yet, a watch or pull stream that ended): 100 ms doubling to
/// 2.5 s, plus up to as much again of jitter so replicas do not retry in
/// step (a `backon` exponential backoff that never gives up).
pub struct Delays(backon::ExponentialBackoff);

impl Delays {
    pub fn new() -> Self {
        Self(
            backon::ExponentialBuilder::new()
                .with_min_delay(MIN_DELAY)
                .with_max_delay(MAX_DELAY)
                .with_jitter()
                .without_max_times()
                .build(),
        )
    }

    /// The delay before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.0.next().unwrap_or(MAX_DELAY)
    }

    /// Starts again from the shortest delay (after a success).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Sleeps the next delay unless `shutdown` comes first; `false` on shutdown.
    pub async fn pause(&mut self, shutdown: &tokio_util::sync::CancellationToken) -> bool {
        let d = self.next_delay();
        pause(shutdown, d).await
    }
}

impl Default for Delays {
    fn default() -> Self {
        Self::new()
    }
}

const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_millis(2500);

/// Sleeps `delay` unless `shutdown` comes first; `false` on shutdown.
pub async fn pause(shutdown: &tokio_util::sync::CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delays grow from the minimum, stay within twice the cap (jitter), and reset.
    #[test]
    fn delays_grow_cap_and_reset() {
        let mut d = Delays::new();
        let first = d.next_delay();
        assert!(first >= MIN_DELAY && first <= MIN_DELAY * 2, "{first:?}");
        let later: Vec<Duration> = (0..20).map(|_| d.next_delay()).collect();
        assert!(later.iter().all(|x| *x <= MAX_DELAY * 2), "{later:?}");
        assert!(later.last().is_some_and(|x| *x >= MAX_DELAY), "{later:?}");
        d.reset();
        assert!(d.next_delay() <= MIN_DELAY * 2);
    }
}
