//! The `security_monitor` agent: `threat_detection`, `security_analysis`
//! and `incident_response` on request, and continuous monitoring of the
//! event stream, the DLQ and task results in the background
//! ([`crate::stream_watch`]).
//!
//! Incident ids are `inc-<request id>` when a task opens an incident
//! without naming one, so a redelivered task writes the same incident.

use std::time::Duration;

use agentry::agent::{Agent, Context, Descriptor, Task, TaskError};
use agentry::error::chain;
use agentry::id::Capability;
use agentry::subject;
use chrono::Utc;
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::alert_rules::{AlertKind, DetectorConfig};
use super::respond::{self, ApplyError, Buckets, Change};
use super::{LogicError, security_analysis, stream_watch, threat_detection};

/// The capabilities, in descriptor order.
pub const CAPABILITIES: [&str; 3] = ["threat_detection", "security_analysis", "incident_response"];

/// Settings of the security_monitor agent.
#[derive(Debug, Clone)]
pub struct Config {
    /// Thresholds of the continuous detector.
    pub detector: DetectorConfig,
    /// Alert kinds whose source is quarantined automatically.
    pub auto_quarantine: Vec<AlertKind>,
    /// Length of an automatic quarantine.
    pub quarantine_minutes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            detector: DetectorConfig::default(),
            auto_quarantine: vec![AlertKind::Flood, AlertKind::Probing],
            quarantine_minutes: 15,
        }
    }
}

/// Alert kinds whose source is quarantined automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoQuarantine(pub Vec<AlertKind>);

/// Parses `AGENTRY_SECURITY_AUTO_QUARANTINE`: `on`/`true` (flood and
/// probing), `off`/`false`/`none`, or a comma-separated list of `flood`, `probing`.
pub fn parse_auto_quarantine(s: &str) -> Result<AutoQuarantine, NotQuarantinable> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "all" => {
            return Ok(AutoQuarantine(vec![AlertKind::Flood, AlertKind::Probing]));
        }
        "off" | "false" | "no" | "0" | "none" | "" => return Ok(AutoQuarantine(Vec::new())),
        _ => {}
    }
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| match k {
            "flood" => Ok(AlertKind::Flood),
            "probing" => Ok(AlertKind::Probing),
            other => Err(NotQuarantinable(other.to_owned())),
        })
        .collect::<Result<_, _>>()
        .map(AutoQuarantine)
}

/// An `AGENTRY_SECURITY_AUTO_QUARANTINE` item that names no quarantinable alert kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} cannot be quarantined automatically (use on, off, or a list of flood, probing)")]
pub struct NotQuarantinable(pub String);

/// A bucket the agent needs could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("KV {bucket}")]
pub struct BucketError {
    bucket: &'static str,
    #[source]
    source: async_nats::jetstream::context::KeyValueError,
}

/// The security_monitor agent.
pub struct SecurityMonitor {
    pub(super) config: Config,
    buckets: OnceCell<Buckets>,
    /// `agentry_security_incidents_total{kind, severity, tenant}`: incidents
    /// opened, by the monitor's alerts (kind flood, probing,
    /// failure_anomaly) or by `incident_response` tasks (kind `task`).
    incidents_total: prometheus::IntCounterVec,
}

/// Name of the incidents counter (the security dashboard reads it).
pub const INCIDENTS_TOTAL: &str = "agentry_security_incidents_total";

impl SecurityMonitor {
    pub fn new(config: Config) -> Self {
        // A constant name and labels: construction fails only on a typo.
        #[allow(clippy::expect_used)]
        let incidents_total = prometheus::IntCounterVec::new(
            prometheus::Opts::new(INCIDENTS_TOTAL, "Security incidents opened"),
            &["kind", "severity", "tenant"],
        )
        .expect("metric");
        Self {
            config,
            buckets: OnceCell::new(),
            incidents_total,
        }
    }

    /// Counts an opened incident (`tenant` `None`: untenanted, label `_`).
    pub(super) fn count_incident(&self, kind: &str, severity: &str, tenant: Option<&str>) {
        self.incidents_total
            .with_label_values(&[
                kind,
                severity,
                tenant.unwrap_or(agentry::quarantine::NO_TENANT),
            ])
            .inc();
    }

    pub(super) async fn buckets(&self, ctx: &Context) -> Result<&Buckets, BucketError> {
        self.buckets
            .get_or_try_init(|| async {
                let js = ctx.jetstream();
                let open = |bucket: &'static str| async move {
                    js.get_key_value(bucket)
                        .await
                        .map_err(|source| BucketError { bucket, source })
                };
                let incidents = open(subject::INCIDENTS_BUCKET).await?;
                let quarantine = open(subject::QUARANTINE_BUCKET).await?;
                Ok(Buckets {
                    incidents,
                    quarantine,
                })
            })
            .await
    }

    async fn incident(&self, task: &Task, ctx: &Context) -> Result<Value, TaskError> {
        let buckets = self
            .buckets(ctx)
            .await
            .map_err(|e| TaskError::retryable(chain(&e)))?;
        let incident_id = task
            .input
            .get("incident_id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("inc-{}", task.request_id), str::to_owned);
        // A tenant's task acts only on its own principals and incidents.
        let mut input = task.input.clone();
        if let Some(t) = ctx.tenant() {
            match input.get("tenant").and_then(Value::as_str) {
                Some(asked) if asked != t.as_str() => {
                    return Err(TaskError::invalid_input(format!(
                        "tenant {asked} is not the requesting tenant"
                    )));
                }
                _ => input["tenant"] = Value::from(t.as_str()),
            }
        }
        let change = Change {
            input: &input,
            incident_id: &incident_id,
            change_id: task.request_id.as_str(),
            announce_opening: true,
        };
        let out = respond::apply(buckets, ctx, &change)
            .await
            .map_err(|e| match e {
                ApplyError::Logic(l) => TaskError::from(l),
                ApplyError::Store(s) if !s.is_transient() => TaskError::permanent(chain(&s)),
                other => TaskError::retryable(chain(&other)),
            })?;
        if out["event"] == "opened" {
            let severity = out["incident"]["severity"].as_str().unwrap_or("unknown");
            self.count_incident("task", severity, input["tenant"].as_str());
        }
        Ok(out)
    }
}

/// Runs CPU-bound analysis (up to 100,000 lines or findings) on the blocking pool.
async fn blocking(
    f: impl FnOnce() -> Result<Value, LogicError> + Send + 'static,
) -> Result<Value, TaskError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TaskError::Permanent {
            code: "internal",
            message: format!("analysis task failed: {e}"),
        })?
        .map_err(TaskError::from)
}

#[async_trait::async_trait]
impl Agent for SecurityMonitor {
    fn register_metrics(&self, registry: &prometheus::Registry) {
        agentry::telemetry::register(registry, self.incidents_total.clone());
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "security_monitor".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Log threat detection, per-source risk correlation, incidents and quarantine; watches events, the DLQ and results for floods, probing and failure anomalies".into(),
            capabilities: CAPABILITIES
                .iter()
                .filter_map(|c| Capability::new(*c).ok())
                .collect(),
        }
    }

    async fn handle(&self, task: Task, ctx: Context) -> Result<Value, TaskError> {
        let now = Utc::now();
        match task.capability.as_str() {
            "threat_detection" => blocking(move || threat_detection(&task.input, now)).await,
            "security_analysis" => blocking(move || security_analysis(&task.input, now)).await,
            "incident_response" => self.incident(&task, &ctx).await,
            other => Err(TaskError::permanent(format!(
                "security_monitor does not serve {other}"
            ))),
        }
    }

    async fn background(&self, ctx: Context, shutdown: CancellationToken) -> anyhow::Result<()> {
        stream_watch::run(self, ctx, shutdown).await
    }

    fn default_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The auto-quarantine setting accepts on/off and lists of quarantinable kinds.
    #[test]
    fn auto_quarantine_setting() {
        let kinds = |k: &[AlertKind]| Ok(AutoQuarantine(k.to_vec()));
        let both = [AlertKind::Flood, AlertKind::Probing];
        assert_eq!(parse_auto_quarantine("on"), kinds(&both));
        assert_eq!(parse_auto_quarantine("TRUE"), kinds(&both));
        assert_eq!(parse_auto_quarantine("off"), kinds(&[]));
        assert_eq!(parse_auto_quarantine("none"), kinds(&[]));
        assert_eq!(
            parse_auto_quarantine("probing"),
            kinds(&[AlertKind::Probing])
        );
        assert_eq!(parse_auto_quarantine(" flood , probing "), kinds(&both));
        assert!(parse_auto_quarantine("failure_anomaly").is_err());
    }
}
