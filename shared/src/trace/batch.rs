//! The bounded batch queue between the spans and the export thread.
//!
//! An ended span's bytes are appended to the open batch under a mutex
//! held for one copy ([`Queue::push`]); it never waits for the export
//! thread. A batch that reaches `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` spans is
//! closed and the thread woken; otherwise the thread takes what there is
//! every `OTEL_BSP_SCHEDULE_DELAY`. When `OTEL_BSP_MAX_QUEUE_SIZE` spans
//! wait unsent (a slow or absent collector), a new span is dropped and
//! counted in `agentry_trace_spans_dropped_total`.
//!
//! One thread (`agentry-otlp`) exports: it wraps each batch in the
//! process's resource and scope ([`super::wire::Envelope`]) and sends it
//! ([`super::transport`]), one request at a time, and drains the queue
//! when [`Queue::stop`] is called.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::transport::Transport;
use super::watch::{self, Watch};
use super::wire::{self, Envelope};

/// Batching limits (the `OTEL_BSP_*` variables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Spans waiting before new ones are dropped.
    pub max_queue: usize,
    /// Spans per export request.
    pub max_batch: usize,
    /// The longest a span waits before its (partial) batch is sent.
    pub delay: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // A few thousand tasks a second make several spans each: room
            // for a second of them between two exports.
            max_queue: 16_384,
            max_batch: 512,
            delay: Duration::from_secs(5),
        }
    }
}

/// Encoded spans waiting for the export thread.
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Signalled when a batch closes or on stop.
    ready: Condvar,
    limits: Limits,
}

#[derive(Default)]
struct State {
    /// The open batch: `ScopeSpans.spans` fields.
    open: Vec<u8>,
    open_spans: usize,
    /// Closed batches and their span counts, oldest first.
    closed: Vec<(Vec<u8>, usize)>,
    /// Spans in `open` and `closed`.
    queued: usize,
    stop: bool,
}

/// What the export thread takes in one go.
struct Taken {
    batches: Vec<(Vec<u8>, usize)>,
    stop: bool,
}

impl Queue {
    pub(crate) fn new(limits: Limits) -> Self {
        let limits = Limits {
            max_queue: limits.max_queue.max(1),
            max_batch: limits.max_batch.clamp(1, limits.max_queue.max(1)),
            ..limits
        };
        Self {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent bytes behind
        // (every write completes before the next): keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one encoded span (a `Span` body); a full queue drops and
    /// counts it. Never blocks beyond one copy under the mutex.
    pub(crate) fn push(&self, span: &[u8]) {
        let mut s = self.lock();
        if s.stop || s.queued >= self.limits.max_queue {
            drop(s);
            watch::dropped(1);
            return;
        }
        if s.open.capacity() == 0 {
            s.open.reserve(self.limits.max_batch * (span.len() + 4));
        }
        wire::push_span(&mut s.open, span);
        s.open_spans += 1;
        s.queued += 1;
        if s.open_spans < self.limits.max_batch {
            return;
        }
        let n = std::mem::take(&mut s.open_spans);
        let batch = std::mem::take(&mut s.open);
        s.closed.push((batch, n));
        drop(s);
        self.ready.notify_one();
    }

    /// Asks the export thread to send what is queued and stop; later
    /// spans are dropped.
    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.ready.notify_one();
    }

    /// Waits for closed batches, the `deadline` (then the open batch is
    /// taken too) or stop (everything).
    fn take(&self, deadline: Instant) -> Taken {
        let mut s = self.lock();
        loop {
            let now = Instant::now();
            let all = s.stop || now >= deadline;
            if all && s.open_spans > 0 {
                let n = std::mem::take(&mut s.open_spans);
                let batch = std::mem::take(&mut s.open);
                s.closed.push((batch, n));
            }
            if all || !s.closed.is_empty() {
                let batches = std::mem::take(&mut s.closed);
                s.queued -= batches.iter().map(|(_, n)| n).sum::<usize>();
                return Taken {
                    batches,
                    stop: s.stop,
                };
            }
            s = self
                .ready
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The export thread's loop: sends batches until [`Queue::stop`], then
    /// what is left. Failed exports are counted and logged by [`Watch`].
    pub(crate) fn export(&self, envelope: &Envelope, transport: &mut Transport) {
        let mut watch = Watch::default();
        let mut deadline = Instant::now() + self.limits.delay;
        loop {
            let taken = self.take(deadline);
            let now = Instant::now();
            if now >= deadline {
                deadline = now + self.limits.delay;
            }
            for (batch, n) in taken.batches {
                let body = envelope.request(&batch);
                watch.record(n, transport.send(body));
            }
            if taken.stop {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_queue: usize, max_batch: usize) -> Queue {
        Queue::new(Limits {
            max_queue,
            max_batch,
            delay: Duration::from_secs(3600),
        })
    }

    #[test]
    fn a_full_batch_is_taken_at_once_and_a_partial_one_at_the_deadline() {
        let q = queue(10, 2);
        q.push(b"a");
        q.push(b"bc");
        q.push(b"d");
        let far = Instant::now() + Duration::from_secs(3600);
        let t = q.take(far);
        assert_eq!(
            t.batches,
            vec![(vec![0x12, 1, b'a', 0x12, 2, b'b', b'c'], 2)]
        );
        assert!(!t.stop);
        let t = q.take(Instant::now());
        assert_eq!(t.batches, vec![(vec![0x12, 1, b'd'], 1)]);
        assert_eq!(q.lock().queued, 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_stop_drains() {
        let q = queue(3, 2);
        let before = watch::dropped_spans();
        for _ in 0..5 {
            q.push(b"x");
        }
        // Other tests may drop spans concurrently: at least these two.
        assert!(watch::dropped_spans() >= before + 2);
        q.stop();
        let t = q.take(Instant::now() + Duration::from_secs(3600));
        assert!(t.stop);
        assert_eq!(t.batches.iter().map(|(_, n)| n).sum::<usize>(), 3);
        q.push(b"late");
        assert_eq!(q.lock().queued, 0);
    }
}
