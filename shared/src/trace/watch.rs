//! Spans that were not exported: counted in
//! `agentry_trace_spans_dropped_total`, served on every component's
//! `/metrics` (the process registry of [`crate::http::Observer`]), whether
//! the queue was full, the collector refused or could not be reached, or
//! export is misconfigured. A failed export is not retried. The first
//! failure after a success is a warning, the first success after failures
//! an info line: a collector that is down logs twice, not once per batch.

use std::sync::LazyLock;

use prometheus::IntCounter;

use super::transport::ExportError;

static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    // A constant name: construction fails only on a typo.
    IntCounter::new(
        "agentry_trace_spans_dropped_total",
        "Spans not exported: the queue was full, the collector refused them or could not be reached, or export is misconfigured",
    )
    .expect("valid metric")
});

/// The dropped-spans counter (register a clone to serve it).
pub fn dropped_counter() -> IntCounter {
    DROPPED.clone()
}

/// How many spans this process dropped so far.
pub fn dropped_spans() -> u64 {
    DROPPED.get()
}

/// Counts `n` dropped spans.
pub(crate) fn dropped(n: u64) {
    DROPPED.inc_by(n);
}

/// The export thread's view of the collector: failing or not.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    failing: bool,
}

impl Watch {
    /// Records the outcome of exporting `spans` spans.
    pub(crate) fn record(&mut self, spans: usize, outcome: Result<(), ExportError>) {
        match outcome {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(dropped = DROPPED.get(), "span export works again");
                }
            }
            Err(e) => {
                dropped(spans as u64);
                // Misconfiguration was warned about at start.
                let warned = matches!(e, ExportError::Unavailable);
                if !std::mem::replace(&mut self.failing, true) && !warned {
                    tracing::warn!(error = %crate::error::Chain(&e), spans, "span export failed: spans are dropped and counted (agentry_trace_spans_dropped_total) until the collector accepts them again");
                }
            }
        }
    }
}
