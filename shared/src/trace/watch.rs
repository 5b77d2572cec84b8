//! The exporter as the batch processor sees it: the OTLP exporter (or none,
//! when it could not be built) with failed exports counted and logged. A
//! failed export drops its spans (the SDK does not retry them); they are
//! counted in `agentry_trace_spans_dropped_total`, served on every
//! component's `/metrics` (the process registry of [`crate::http::Observer`]).
//! The first failure after a success is a warning, the first success after
//! failures an info line: a collector that is down logs twice, not once
//! per batch.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus::IntCounter;

static DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    // A constant name: construction fails only on a typo.
    IntCounter::new(
        "agentry_trace_spans_dropped_total",
        "Spans not exported: the collector refused them, could not be reached, or export is misconfigured",
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

/// The exporter behind the batch processor.
#[derive(Debug)]
pub(crate) struct Watched {
    /// `None`: the exporter could not be built (warned at start).
    inner: Option<opentelemetry_otlp::SpanExporter>,
    failing: AtomicBool,
}

impl Watched {
    pub(crate) fn new(inner: opentelemetry_otlp::SpanExporter) -> Self {
        Self {
            inner: Some(inner),
            failing: AtomicBool::new(false),
        }
    }

    /// Drops (and counts) every span: export is misconfigured.
    pub(crate) fn unavailable() -> Self {
        Self {
            inner: None,
            // Already warned at start.
            failing: AtomicBool::new(true),
        }
    }
}

impl SpanExporter for Watched {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let Some(inner) = &self.inner else {
            DROPPED.inc_by(n);
            return Ok(());
        };
        let res = inner.export(batch).await;
        match &res {
            Err(e) => {
                DROPPED.inc_by(n);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, spans = n, "span export failed: spans are dropped and counted (agentry_trace_spans_dropped_total) until the collector accepts them again");
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(dropped = DROPPED.get(), "span export works again");
                }
            }
        }
        res
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match &self.inner {
            Some(i) => i.shutdown_with_timeout(timeout),
            None => Ok(()),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        match &self.inner {
            Some(i) => i.force_flush(),
            None => Ok(()),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(i) = &mut self.inner {
            i.set_resource(resource);
        }
    }
}
