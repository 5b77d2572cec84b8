//! The export pipeline: [`init`] reads the standard `OTEL_*` variables
//! ([`super::settings`]), installs the batch queue and sampler, and starts
//! the export thread ([`super::batch`], [`super::transport`]). Nothing is
//! built, and no thread started, when no endpoint is set: every span helper
//! then returns at its first check.
//!
//! A collector that is down, unreachable or misconfigured never stops a
//! component: a configuration the exporter cannot be built from (unknown
//! protocol, unreadable certificate file) is a warning at start, and every
//! failed export a warning when exports start failing; the spans of failed
//! exports are dropped and counted in `agentry_trace_spans_dropped_total`
//! ([`super::watch`]).

use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use super::batch::Queue;
use super::sampler::Sampler;
use super::settings::{self, Settings, TraceError};
use super::tls::TlsFiles;
use super::transport::Transport;
use super::wire::Envelope;

/// The installed pipeline (set once by [`init`]).
pub(crate) struct Pipeline {
    pub(crate) queue: Queue,
    pub(crate) sampler: Sampler,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// The pipeline, when export is on.
#[inline]
pub(crate) fn pipeline() -> Option<&'static Pipeline> {
    PIPELINE.get()
}

/// `true` when spans are exported (an endpoint was configured at start).
#[inline]
pub fn enabled() -> bool {
    PIPELINE.get().is_some()
}

/// How long [`Guard`] waits for the last spans to go out at exit.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Sends what is queued and stops the export thread when dropped (keep it
/// alive in `main` until the component has stopped).
#[must_use = "dropping the guard stops span export"]
pub struct Guard {
    /// Signalled by the export thread when it has sent everything.
    done: Option<mpsc::Receiver<()>>,
}

impl Guard {
    /// `true` when this guard owns a running pipeline.
    pub fn is_active(&self) -> bool {
        self.done.is_some()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (Some(done), Some(p)) = (self.done.take(), PIPELINE.get()) else {
            return;
        };
        p.queue.stop();
        if let Err(mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(FLUSH_LIMIT) {
            tracing::warn!(
                "spans not all exported within {FLUSH_LIMIT:?} at exit: the rest are lost"
            );
        }
    }
}

fn warn_misconfigured(e: &TraceError) {
    tracing::warn!(error = %crate::error::Chain(e), "span export misconfigured: spans are dropped and counted (agentry_trace_spans_dropped_total)");
}

/// Sets up span export from the process environment for component
/// `service` (the default `service.name`). Off, at no cost, without an
/// endpoint. A second call returns an inactive guard. Never fails: a
/// configuration the exporter cannot be built from is logged as a warning
/// and its spans are dropped and counted.
pub fn init(service: &str) -> Guard {
    let var = |k: &str| std::env::var(k).ok();
    let (settings, mut problem) = match Settings::from_vars(service, var) {
        Ok(None) => return Guard { done: None },
        Ok(Some(s)) => (s, None),
        Err(e) => (Settings::fallback(service, var), Some(e)),
    };
    if PIPELINE.get().is_some() {
        return Guard { done: None };
    }
    let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    if let Err(e) = settings::sampler(&set) {
        tracing::warn!(error = %e, "span sampler");
    }
    let files = match TlsFiles::from_vars(set) {
        Ok(f) => f,
        Err(e) => {
            problem.get_or_insert(TraceError::Tls(e));
            TlsFiles::default()
        }
    };
    if let Some(e) = &problem {
        warn_misconfigured(e);
    }
    let pipeline = Pipeline {
        queue: Queue::new(settings.limits),
        sampler: settings.sampler,
    };
    if PIPELINE.set(pipeline).is_err() {
        return Guard { done: None };
    }
    let envelope = Envelope::new(&settings.resource, "agentry", env!("CARGO_PKG_VERSION"));
    let (tx, done) = mpsc::channel();
    let protocol = settings.protocol;
    let configured = problem.is_none();
    let spawned = std::thread::Builder::new()
        .name("agentry-otlp".into())
        .spawn(move || {
            let Some(p) = PIPELINE.get() else {
                return;
            };
            let mut transport = match problem {
                Some(_) => Transport::Unavailable,
                None => Transport::new(&settings, &files).unwrap_or_else(|e| {
                    warn_misconfigured(&e);
                    Transport::Unavailable
                }),
            };
            p.queue.export(&envelope, &mut transport);
            drop(transport);
            // The guard may have stopped waiting.
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        // The queue fills and its spans are dropped and counted.
        warn_misconfigured(&TraceError::Runtime(e));
        return Guard { done: None };
    }
    if configured {
        tracing::info!(?protocol, "exporting spans over OTLP");
    }
    Guard { done: Some(done) }
}
