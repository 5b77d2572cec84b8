//! Tracing subscriber (text or JSON, filter from `RUST_LOG`) and the metrics
//! every component has (build info, NATS connection state).

use prometheus::{IntCounter, IntGauge, Opts, Registry};

use crate::config::LogFormat;

/// Installs the global tracing subscriber. Safe to call more than once (later calls are no-ops).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A registry whose series all carry `component=<name>` (plus extra labels).
pub fn registry(component: &str, extra: &[(&str, &str)]) -> Registry {
    let mut labels = std::collections::HashMap::new();
    labels.insert("component".to_owned(), component.to_owned());
    for (k, v) in extra {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    Registry::new_custom(None, Some(labels)).unwrap_or_default()
}

/// Registers a collector, logging (not failing) on a duplicate: metrics are
/// never worth refusing to start over.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    if let Err(e) = registry.register(Box::new(c.clone())) {
        tracing::warn!(error = %e, "metric registration failed");
    }
    c
}

/// Connection metrics updated from the NATS event callback.
#[derive(Clone)]
pub struct ConnectionMetrics {
    pub connected: IntGauge,
    pub reconnects: IntCounter,
}

impl ConnectionMetrics {
    pub fn new(registry: &Registry) -> Self {
        // Metric names are constants: construction fails only on a typo, at start-up.
        let build = IntGauge::with_opts(
            Opts::new("agentry_build_info", "Build information")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build.set(1);
        register(registry, build);
        let connected = IntGauge::new("agentry_nats_connected", "1 while connected to NATS")
            .expect("valid metric");
        let reconnects = IntCounter::new("agentry_nats_reconnects_total", "NATS reconnections")
            .expect("valid metric");
        Self {
            connected: register(registry, connected),
            reconnects: register(registry, reconnects),
        }
    }
}
