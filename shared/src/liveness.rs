//! Liveness of the long-running loops of a component: each loop has a
//! [`Pulse`] that says whether it runs, fails, waits or is stuck, which
//! [`crate::http::Observer`] turns into `/ready` and `/health`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Liveness of one long-running loop (a pull loop, a periodic task).
///
/// A pull loop wraps its message stream with [`Pulse::track`]: the loop is
/// running while the wrapper lives, waiting while the stream is pending,
/// busy from the moment it yields an item until it is polled again, and
/// failing after it yields an error (until the next message). A periodic
/// loop calls [`Pulse::beat`] on every round instead.
#[derive(Clone)]
pub struct Pulse(Arc<PulseState>);

struct PulseState {
    name: String,
    epoch: Instant,
    running: AtomicBool,
    /// Which [`Tracked`] stream is current (a loop may reopen its stream).
    generation: AtomicU64,
    waiting: AtomicBool,
    /// Milliseconds since `epoch` of the last progress.
    last_ms: AtomicU64,
    /// The last pull error and when (ms since `epoch`).
    fault: Mutex<Option<(String, u64)>>,
}

/// How long a pull error keeps a loop "failing" without a newer one: a
/// stream that stays broken keeps reporting (missed heartbeats every few
/// seconds); one that recovered while idle delivers nothing to clear it.
pub const FAULT_WINDOW: Duration = Duration::from_secs(15);

/// What one loop is doing, as `/health` and `/ready` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopState {
    /// Not started yet, or ended (its stream closed, its task returned).
    Stopped,
    /// Running; its last pull failed with this error.
    Failing(String),
    /// Busy with one item for longer than the stall bound.
    Stalled(Duration),
    /// Running and making progress (or waiting for input).
    Live,
}

impl Pulse {
    /// A pulse for a loop that no [`crate::http::Observer`] reports (a
    /// component's own side loop); `Observer::add_loop` makes reported ones.
    pub fn unobserved(name: impl Into<String>) -> Self {
        Self::named(name.into())
    }

    pub(crate) fn named(name: String) -> Self {
        Self(Arc::new(PulseState {
            name,
            epoch: Instant::now(),
            running: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
            fault: Mutex::new(None),
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    fn now_ms(&self) -> u64 {
        self.0.epoch.elapsed().as_millis() as u64
    }

    fn set_fault(&self, fault: Option<String>) {
        let now = self.now_ms();
        if let Ok(mut g) = self.0.fault.lock() {
            *g = fault.map(|f| (f, now));
        }
    }

    /// A periodic loop made one round of progress (it is running and busy
    /// until its next beat, which must come within the stall bound).
    pub fn beat(&self) {
        self.0.last_ms.store(self.now_ms(), Ordering::Relaxed);
        self.0.waiting.store(false, Ordering::Relaxed);
        self.0.running.store(true, Ordering::Relaxed);
    }

    /// Wraps a pull loop's message stream; the loop counts as running until
    /// the wrapper is dropped or the stream ends.
    pub fn track<S>(&self, stream: S) -> Tracked<S> {
        self.beat();
        self.0.waiting.store(true, Ordering::Relaxed);
        self.set_fault(None);
        Tracked {
            inner: stream,
            pulse: self.clone(),
            generation: self.0.generation.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// The loop's state against the stall bound `stall_after`.
    pub fn state(&self, stall_after: Duration) -> LoopState {
        let s = &self.0;
        if !s.running.load(Ordering::Relaxed) {
            return LoopState::Stopped;
        }
        if !s.waiting.load(Ordering::Relaxed) {
            let busy = Duration::from_millis(
                self.now_ms()
                    .saturating_sub(s.last_ms.load(Ordering::Relaxed)),
            );
            if busy > stall_after {
                return LoopState::Stalled(busy);
            }
        }
        let window = FAULT_WINDOW.as_millis() as u64;
        match s.fault.lock().ok().and_then(|g| g.clone()) {
            Some((f, at)) if self.now_ms().saturating_sub(at) <= window => LoopState::Failing(f),
            _ => LoopState::Live,
        }
    }
}

/// A message stream whose polling reports to a [`Pulse`].
pub struct Tracked<S> {
    inner: S,
    pulse: Pulse,
    generation: u64,
}

impl<S> Tracked<S> {
    fn current(&self) -> bool {
        self.pulse.0.generation.load(Ordering::Relaxed) == self.generation
    }
}

impl<S> Drop for Tracked<S> {
    fn drop(&mut self) {
        // A stream replaced by a newer one leaves the loop running.
        if self.current() {
            self.pulse.0.running.store(false, Ordering::Relaxed);
        }
    }
}

impl<S, T, E> futures::Stream for Tracked<S>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    type Item = Result<T, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        let pulse = &self.pulse;
        match &polled {
            Poll::Pending => pulse.0.waiting.store(true, Ordering::Relaxed),
            Poll::Ready(Some(item)) => {
                pulse.beat();
                pulse.set_fault(item.as_ref().err().map(|e| e.to_string()));
            }
            Poll::Ready(None) => {
                if self.current() {
                    pulse.0.running.store(false, Ordering::Relaxed);
                }
            }
        }
        polled
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a failed assertion
mod tests {
    use super::*;
    use crate::http::Observer;
    use futures::StreamExt;

    fn pause() {
        // Lets the busy time exceed a zero stall bound (millisecond clock).
        std::thread::sleep(Duration::from_millis(3));
    }

    #[tokio::test]
    async fn a_loop_is_stalled_only_while_busy_past_the_bound() {
        let obs = Observer::new();
        obs.set_stall_after(Duration::ZERO);
        let pulse = obs.add_loop("l");
        assert_eq!(pulse.state(Duration::ZERO), LoopState::Stopped);
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<u32, std::io::Error>>();
        let mut s = pulse.track(rx);
        tx.unbounded_send(Ok(1)).unwrap();
        assert_eq!(s.next().await.unwrap().unwrap(), 1);
        pause();
        assert!(matches!(pulse.state(Duration::ZERO), LoopState::Stalled(_)));
        assert_eq!(obs.health().status, "wedged");
        // Back for the next item, nothing there: waiting, not stalled.
        assert!(futures::poll!(s.next()).is_pending());
        pause();
        assert_eq!(pulse.state(Duration::ZERO), LoopState::Live);
        assert_eq!(obs.health().status, "ok");
    }

    #[tokio::test]
    async fn errors_fail_the_loop_until_the_next_message_and_an_end_stops_it() {
        let pulse = Observer::new().add_loop("l");
        let items: Vec<Result<u32, std::io::Error>> =
            vec![Err(std::io::Error::other("broken")), Ok(2)];
        let mut s = pulse.track(futures::stream::iter(items));
        assert!(s.next().await.unwrap().is_err());
        assert_eq!(
            pulse.state(Duration::from_secs(60)),
            LoopState::Failing("broken".to_owned())
        );
        assert!(s.next().await.unwrap().is_ok());
        assert_eq!(pulse.state(Duration::from_secs(60)), LoopState::Live);
        assert!(s.next().await.is_none());
        assert_eq!(pulse.state(Duration::from_secs(60)), LoopState::Stopped);
    }

    #[tokio::test]
    async fn a_replaced_stream_leaves_the_loop_running_and_readiness_names_it() {
        let obs = Observer::new();
        let pulse = obs.add_loop("pull x");
        let first = pulse.track(futures::stream::pending::<Result<u32, std::io::Error>>());
        let second = pulse.track(futures::stream::pending::<Result<u32, std::io::Error>>());
        drop(first);
        assert_eq!(pulse.state(Duration::from_secs(60)), LoopState::Live);
        assert!(obs.readiness().await.ready);
        drop(second);
        let r = obs.readiness().await;
        assert!(!r.ready);
        assert_eq!(r.checks[0].name, "loop pull x");
    }
}
