//! The export pipeline: OTLP exporter (HTTP/protobuf or gRPC, TLS from
//! [`super::tls`]) behind the SDK's batch span processor, configured by the
//! standard `OTEL_*` variables. Nothing is built, and no thread started,
//! when no endpoint is set: every span helper then returns at its first
//! check.
//!
//! A collector that is down, unreachable or misconfigured never stops a
//! component: a configuration the exporter cannot be built from (unknown
//! protocol, unreadable certificate file) is a warning at start, and every
//! failed export a warning when exports start failing; the spans of failed
//! exports are dropped and counted in `agentry_trace_spans_dropped_total`
//! ([`super::watch`]).

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Config, ShouldSample, SpanData, SpanProcessor,
};

/// The installed pipeline (set once by [`init`]).
pub(crate) struct Pipeline {
    processor: BatchSpanProcessor,
    pub(crate) sampler: Box<dyn ShouldSample>,
    pub(crate) scope: InstrumentationScope,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// The pipeline, when export is on.
#[inline]
pub(crate) fn pipeline() -> Option<&'static Pipeline> {
    PIPELINE.get()
}

impl Pipeline {
    /// Hands a finished span to the batch processor: a bounded channel send
    /// that never blocks (a full queue drops the span).
    #[inline]
    pub(crate) fn submit(&self, span: SpanData) {
        self.processor.on_end(span);
    }
}

/// `true` when spans are exported (an endpoint was configured at start).
#[inline]
pub fn enabled() -> bool {
    PIPELINE.get().is_some()
}

/// The OTLP transport (`OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf` (the default): `POST <endpoint>/v1/traces`.
    HttpProtobuf,
    /// `grpc`: the OTLP collector service, default port 4317.
    Grpc,
}

/// Export settings read from the `OTEL_*` environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub protocol: Protocol,
    /// `OTEL_SERVICE_NAME` is taken by the SDK; this is the default when unset.
    pub service: String,
}

/// Why the exporter could not be set up (a warning at start; the spans are
/// then dropped and counted, see [`init`]).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(
        "unsupported OTLP protocol {0:?} in OTEL_EXPORTER_OTLP_PROTOCOL (use http/protobuf or grpc)"
    )]
    Protocol(String),
    #[error("OTLP span exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    #[error("TLS to the collector")]
    Tls(#[source] super::tls::TlsError),
}

impl Settings {
    /// Reads the settings from `var` (the process environment in
    /// production, a map in tests). `None` when export is off: no endpoint
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT` or `..._TRACES_ENDPOINT`),
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_vars(
        service: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, TraceError> {
        let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            return Ok(None);
        }
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let protocol = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
            .map(str::trim)
        {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => return Err(TraceError::Protocol(other.to_owned())),
        };
        Ok(Some(Self {
            protocol,
            service: service.to_owned(),
        }))
    }
}

/// Flushes and shuts the pipeline down when dropped (keep it alive in
/// `main` until the component has stopped).
#[must_use = "dropping the guard stops span export"]
pub struct Guard {
    active: bool,
}

impl Guard {
    /// `true` when this guard owns a running pipeline.
    pub fn is_active(&self) -> bool {
        self.active
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        if let Some(p) = PIPELINE.get() {
            if let Err(e) = p.processor.force_flush() {
                tracing::warn!(error = %e, "spans not flushed at exit");
            }
            if let Err(e) = p.processor.shutdown_with_timeout(Duration::from_secs(5)) {
                tracing::warn!(error = %e, "span exporter did not shut down cleanly");
            }
        }
    }
}

/// Sets up span export from the process environment for component
/// `service` (the default `service.name`). Off, at no cost, without an
/// endpoint. Must run inside the Tokio runtime (the gRPC channel lives
/// there). A second call returns an inactive guard. Never fails: a
/// configuration the exporter cannot be built from is logged as a warning
/// and its spans are dropped and counted.
pub fn init(service: &str) -> Guard {
    let var = |k: &str| std::env::var(k).ok();
    let settings = match Settings::from_vars(service, var) {
        Ok(None) => return Guard { active: false },
        Ok(Some(s)) => Ok(s),
        Err(e) => Err(e),
    };
    if PIPELINE.get().is_some() {
        return Guard { active: false };
    }
    let exporter = settings.as_ref().map_err(|_| ()).and_then(|s| {
        exporter(s.protocol).map_err(|e| {
            tracing::warn!(error = %crate::error::Chain(&e), "span export misconfigured: spans are dropped and counted (agentry_trace_spans_dropped_total)");
        })
    });
    if let Err(e) = &settings {
        tracing::warn!(error = %crate::error::Chain(e), "span export misconfigured: spans are dropped and counted (agentry_trace_spans_dropped_total)");
    }
    let processor_exporter = match exporter {
        Ok(e) => super::watch::Watched::new(e),
        Err(()) => super::watch::Watched::unavailable(),
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut batch = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        // A few thousand tasks a second make several spans each: room for
        // a second of them between two exports before spans are dropped.
        batch = batch.with_max_queue_size(16_384);
    }
    let mut processor = BatchSpanProcessor::new(processor_exporter, batch.build());
    processor.set_resource(&resource);
    let pipeline = Pipeline {
        processor,
        // Reads OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
        // (default parentbased_always_on).
        sampler: Config::default().sampler,
        scope: InstrumentationScope::builder("agentry")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    };
    if PIPELINE.set(pipeline).is_err() {
        return Guard { active: false };
    }
    if let Ok(s) = &settings {
        tracing::info!(protocol = ?s.protocol, "exporting spans over OTLP");
    }
    Guard { active: true }
}

/// The OTLP exporter for `protocol`, with the TLS files of the standard
/// variables (read now).
fn exporter(protocol: Protocol) -> Result<SpanExporter, TraceError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let tls = super::tls::TlsFiles::from_vars(var).map_err(TraceError::Tls)?;
    match protocol {
        Protocol::HttpProtobuf => {
            let timeout = var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
                .and_then(|v| v.trim().parse().ok())
                .map_or(Duration::from_secs(10), Duration::from_millis);
            SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(tls.http(timeout).map_err(TraceError::Tls)?)
                .build()
        }
        Protocol::Grpc => {
            let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .unwrap_or_default();
            let mut b = SpanExporter::builder().with_tonic();
            // `grpcs://` is TLS too (tonic knows only `https://`).
            if let Some(rest) = endpoint.trim().strip_prefix("grpcs://") {
                b = b.with_endpoint(format!("https://{rest}"));
            }
            let secure =
                endpoint.trim().starts_with("https://") || endpoint.trim().starts_with("grpcs://");
            if secure {
                b = b.with_tls_config(tls.grpc());
            }
            b.build()
        }
    }
    .map_err(TraceError::Exporter)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<Settings>, TraceError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_vars("agentry-engine", |k| map.get(k).cloned())
    }

    #[test]
    fn off_without_endpoint_or_when_disabled() {
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).unwrap(),
            None
        );
        let ep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert_eq!(
            settings(&[ep, ("OTEL_SDK_DISABLED", "true")]).unwrap(),
            None
        );
        assert_eq!(
            settings(&[ep, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
    }

    #[test]
    fn protocol_is_chosen_by_the_standard_variables() {
        let ep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let p = |vars: &[(&str, &str)]| settings(vars).unwrap().unwrap().protocol;
        assert_eq!(p(&[ep]), Protocol::HttpProtobuf);
        assert_eq!(
            p(&[ep, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            Protocol::Grpc
        );
        assert_eq!(
            p(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ]),
            Protocol::Grpc
        );
        assert!(matches!(
            settings(&[ep, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
            Err(TraceError::Protocol(p)) if p == "http/json"
        ));
    }
}
