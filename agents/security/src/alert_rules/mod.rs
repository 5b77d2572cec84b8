//! The continuous detector fed from the `AGENTRY_EVENTS` and `AGENTRY_DLQ`
//! streams (consumers `security-events`, `security-dlq`).
//!
//! The caller turns each message into an [`Observation`] (one per inbound
//! request: `Request` if accepted, `Rejected` if refused; one per task
//! outcome) with the message's own timestamp, and acts on the returned
//! [`Alert`]s (e.g. `incident_response` with `open` or `quarantine`).
//!
//! Rules (defaults in [`DetectorConfig`]):
//! - **flood**: more than `flood_requests` (600) requests and rejections from
//!   one source within `flood_window` (60 s). Counted in 12 sub-buckets per
//!   window, so the window is exact to 1/12 of its length. High; critical at
//!   three times the limit. Also a flood: at least `flood_rate_limited`
//!   (50) `rate_limited` rejections of one source within `flood_window` (a
//!   source the engine has to throttle that hard is flooding, whatever the
//!   engine's limit is); the two flood rules share one cool-down.
//! - **probing**: at least `probing_rejections` (5) rejections for
//!   validation reasons (schema_invalid, unknown_capability, ...; not
//!   rate_limited, quarantined, queue_full, duplicate) from one source within
//!   `probing_window` (60 s). Medium; high at four times the limit.
//! - **failure_anomaly** per capability: the failure ratio over
//!   `failure_window` (5 min) exceeds `failure_ratio` (0.5) with at least
//!   `failure_min_tasks` (20) outcomes; or the current minute's ratio (with at
//!   least `ewma_min_tasks` outcomes) is `ewma_z` (3) standard deviations and
//!   0.2 above an EWMA baseline (alpha 0.3) of earlier minutes, once the
//!   baseline has `ewma_warmup` (5) minutes. High at a ratio >= 0.8, else medium.
//!
//! Each alert is raised at most once per window per source (or capability):
//! after an alert the same rule stays silent for one window length. Memory
//! is bounded: at most `max_sources` sources and `max_capabilities`
//! capabilities are tracked; the least recently seen is evicted first.
//! Observations older than a window behind the newest one are ignored by
//! that window.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::types::Severity;

/// Rejection reasons that mean the sender sent something malformed or
/// unknown (as opposed to load shedding or duplicates).
pub const VALIDATION_REASONS: &[&str] = &[
    "not_cloudevent",
    "missing_attribute",
    "bad_specversion",
    "invalid_id",
    "bad_encoding",
    "content_type_conflict",
    "unknown_type",
    "schema_invalid",
    "too_large",
    "too_many_headers",
    "unknown_capability",
    "unknown_workflow",
    "invalid_workflow",
    "unknown_run",
];

/// Thresholds and bounds of the detector.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    pub flood_requests: u64,
    /// `rate_limited` rejections of one source within `flood_window` that
    /// make a flood on their own.
    pub flood_rate_limited: u64,
    pub flood_window: Duration,
    pub probing_rejections: usize,
    pub probing_window: Duration,
    pub failure_window: Duration,
    pub failure_min_tasks: u64,
    pub failure_ratio: f64,
    pub ewma_bucket: Duration,
    pub ewma_alpha: f64,
    pub ewma_z: f64,
    pub ewma_min_tasks: u64,
    pub ewma_warmup: u32,
    pub max_sources: usize,
    pub max_capabilities: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            flood_requests: 600,
            flood_rate_limited: 50,
            flood_window: Duration::seconds(60),
            probing_rejections: 5,
            probing_window: Duration::seconds(60),
            failure_window: Duration::minutes(5),
            failure_min_tasks: 20,
            failure_ratio: 0.5,
            ewma_bucket: Duration::minutes(1),
            ewma_alpha: 0.3,
            ewma_z: 3.0,
            ewma_min_tasks: 10,
            ewma_warmup: 5,
            max_sources: 10_000,
            max_capabilities: 1_024,
        }
    }
}

/// What was observed.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservationKind {
    /// An inbound request that was accepted.
    Request,
    /// An inbound request that was rejected, with its rejection reason.
    Rejected {
        reason: String,
    },
    TaskFailed {
        capability: String,
    },
    TaskCompleted {
        capability: String,
    },
}

/// One fact from the event or DLQ stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub at: DateTime<Utc>,
    /// The CloudEvent source of the request, when known.
    pub source: Option<String>,
    /// The tenant the request arrived for (from its subject; `None`:
    /// untenanted). Requests are counted per principal (tenant, source).
    pub tenant: Option<String>,
    pub kind: ObservationKind,
}

/// The kind of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Flood,
    Probing,
    FailureAnomaly,
}

/// Something the detector thinks an operator (or `incident_response`) should act on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The tenant of the principal the alert is about (with `source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    pub summary: String,
    pub evidence: Vec<String>,
    pub at: DateTime<Utc>,
    /// Events counted in the window that fired.
    pub count: u64,
    pub window_s: i64,
}

/// Counts in a sliding window made of `n` equal buckets (a ring).
#[derive(Debug, Clone)]
struct BucketWindow {
    bucket_ms: i64,
    /// (bucket index, total, flagged) per slot.
    slots: Vec<(i64, u64, u64)>,
    head: i64,
}

impl BucketWindow {
    fn new(window: Duration, n: usize) -> BucketWindow {
        let n = n.max(1);
        BucketWindow {
            bucket_ms: (window.num_milliseconds() / n as i64).max(1),
            slots: vec![(i64::MIN, 0, 0); n],
            head: i64::MIN,
        }
    }

    /// Adds `(total, flagged)` at a time; returns false if too old to count.
    fn add(&mut self, at: DateTime<Utc>, flagged: bool) -> bool {
        let n = self.slots.len() as i64;
        let bucket = at.timestamp_millis().div_euclid(self.bucket_ms);
        if self.head != i64::MIN && bucket <= self.head - n {
            return false;
        }
        self.head = self.head.max(bucket);
        let slot = &mut self.slots[bucket.rem_euclid(n) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u64::from(flagged);
        true
    }

    /// `(total, flagged)` over the buckets of the current window.
    fn totals(&self) -> (u64, u64) {
        let n = self.slots.len() as i64;
        self.slots
            .iter()
            .filter(|(b, _, _)| *b != i64::MIN && *b > self.head - n && *b <= self.head)
            .fold((0, 0), |(t, f), (_, st, sf)| (t + st, f + sf))
    }
}

#[derive(Debug, Clone)]
struct SourceState {
    seq: u64,
    requests: BucketWindow,
    /// `rate_limited` rejections in the flood window.
    rate_limited: BucketWindow,
    /// Recent validation rejections (time, reason), at most 4x the threshold.
    rejections: VecDeque<(DateTime<Utc>, String)>,
    last_flood: Option<DateTime<Utc>>,
    last_probe: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct CapabilityState {
    seq: u64,
    outcomes: BucketWindow,
    /// Current EWMA bucket: (index, total, failed).
    minute: (i64, u64, u64),
    mean: f64,
    var: f64,
    baseline_minutes: u32,
    last_alert: Option<DateTime<Utc>>,
}

/// Sub-buckets per sliding window.
const BUCKETS: usize = 12;

/// The stateful detector.
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    seq: u64,
    sources: HashMap<String, SourceState>,
    source_lru: BTreeMap<u64, String>,
    capabilities: HashMap<String, CapabilityState>,
    capability_lru: BTreeMap<u64, String>,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new(DetectorConfig::default())
    }
}

impl Detector {
    /// A detector with the given thresholds.
    pub fn new(config: DetectorConfig) -> Detector {
        Detector {
            config,
            seq: 0,
            sources: HashMap::new(),
            source_lru: BTreeMap::new(),
            capabilities: HashMap::new(),
            capability_lru: BTreeMap::new(),
        }
    }

    /// Sources currently tracked.
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Capabilities currently tracked.
    pub fn tracked_capabilities(&self) -> usize {
        self.capabilities.len()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn source(&mut self, source: &str) -> &mut SourceState {
        let seq = self.next_seq();
        if !self.sources.contains_key(source) {
            while self.sources.len() >= self.config.max_sources.max(1) {
                let Some((_, oldest)) = self.source_lru.pop_first() else {
                    break;
                };
                self.sources.remove(&oldest);
            }
        }
        let window = self.config.flood_window;
        let state = self
            .sources
            .entry(source.to_string())
            .or_insert_with(|| SourceState {
                seq,
                requests: BucketWindow::new(window, BUCKETS),
                rate_limited: BucketWindow::new(window, BUCKETS),
                rejections: VecDeque::new(),
                last_flood: None,
                last_probe: None,
            });
        self.source_lru.remove(&state.seq);
        state.seq = seq;
        self.source_lru.insert(seq, source.to_string());
        state
    }

    fn capability(&mut self, capability: &str) -> &mut CapabilityState {
        let seq = self.next_seq();
        if !self.capabilities.contains_key(capability) {
            while self.capabilities.len() >= self.config.max_capabilities.max(1) {
                let Some((_, oldest)) = self.capability_lru.pop_first() else {
                    break;
                };
                self.capabilities.remove(&oldest);
            }
        }
        let window = self.config.failure_window;
        let state = self
            .capabilities
            .entry(capability.to_string())
            .or_insert_with(|| CapabilityState {
                seq,
                outcomes: BucketWindow::new(window, BUCKETS * 2),
                minute: (i64::MIN, 0, 0),
                mean: 0.0,
                var: 0.0,
                baseline_minutes: 0,
                last_alert: None,
            });
        self.capability_lru.remove(&state.seq);
        state.seq = seq;
        self.capability_lru.insert(seq, capability.to_string());
        state
    }

    /// Feeds one observation; returns the alerts it triggers (usually none).
    pub fn observe(&mut self, obs: Observation) -> Vec<Alert> {
        let mut alerts = Vec::new();
        match &obs.kind {
            ObservationKind::Request | ObservationKind::Rejected { .. } => {
                let Some(source) = obs.source.as_deref() else {
                    return alerts;
                };
                let reason = match &obs.kind {
                    ObservationKind::Rejected { reason } => Some(reason.as_str()),
                    _ => None,
                };
                alerts.extend(self.observe_request(obs.tenant.as_deref(), source, obs.at, reason));
            }
            ObservationKind::TaskFailed { capability } => {
                alerts.extend(self.observe_outcome(capability, obs.at, true));
            }
            ObservationKind::TaskCompleted { capability } => {
                alerts.extend(self.observe_outcome(capability, obs.at, false));
            }
        }
        alerts
    }

    fn observe_request(
        &mut self,
        tenant: Option<&str>,
        source: &str,
        at: DateTime<Utc>,
        rejection: Option<&str>,
    ) -> Vec<Alert> {
        let cfg = self.config.clone();
        // One state per principal; `_` (no tenant) cannot be a tenant name.
        let state = self.source(&format!("{}\u{0}{source}", tenant.unwrap_or("_")));
        let who = match tenant {
            Some(t) => format!("{source} (tenant {t})"),
            None => source.to_owned(),
        };
        let mut alerts = Vec::new();

        let counted = state.requests.add(at, rejection.is_some());
        let throttled = rejection == Some("rate_limited") && state.rate_limited.add(at, false);
        if counted || throttled {
            let (count, rejected) = state.requests.totals();
            let (rate_limited, _) = state.rate_limited.totals();
            let cooled = state
                .last_flood
                .is_none_or(|last| at - last >= cfg.flood_window);
            let by_volume = count > cfg.flood_requests;
            let by_throttling = rate_limited >= cfg.flood_rate_limited.max(1);
            if (by_volume || by_throttling) && cooled {
                state.last_flood = Some(at);
                let summary = if by_volume {
                    format!(
                        "{count} requests from {who} within {} s (limit {})",
                        cfg.flood_window.num_seconds(),
                        cfg.flood_requests
                    )
                } else {
                    format!(
                        "{rate_limited} requests from {who} rate limited within {} s (threshold {})",
                        cfg.flood_window.num_seconds(),
                        cfg.flood_rate_limited
                    )
                };
                alerts.push(Alert {
                    kind: AlertKind::Flood,
                    severity: if count >= 3 * cfg.flood_requests
                        || rate_limited >= 3 * cfg.flood_rate_limited.max(1)
                    {
                        Severity::Critical
                    } else {
                        Severity::High
                    },
                    source: Some(source.to_string()),
                    tenant: tenant.map(str::to_owned),
                    capability: None,
                    summary,
                    evidence: vec![
                        format!("requests_in_window={count}"),
                        format!("rejected_in_window={rejected}"),
                        format!("rate_limited_in_window={rate_limited}"),
                    ],
                    at,
                    count: if by_volume { count } else { rate_limited },
                    window_s: cfg.flood_window.num_seconds(),
                });
            }
        }

        let Some(reason) = rejection.filter(|r| VALIDATION_REASONS.contains(r)) else {
            return alerts;
        };
        let cap = cfg.probing_rejections.max(1) * 4;
        state.rejections.push_back((at, reason.to_string()));
        let newest = state.rejections.iter().map(|r| r.0).max().unwrap_or(at);
        state
            .rejections
            .retain(|(t, _)| newest - *t < cfg.probing_window);
        while state.rejections.len() > cap {
            state.rejections.pop_front();
        }
        let count = state.rejections.len();
        let cooled = state
            .last_probe
            .is_none_or(|last| at - last >= cfg.probing_window);
        if count >= cfg.probing_rejections && cooled {
            state.last_probe = Some(at);
            let mut reasons: BTreeMap<&str, u32> = BTreeMap::new();
            for (_, r) in &state.rejections {
                *reasons.entry(r).or_insert(0) += 1;
            }
            alerts.push(Alert {
                kind: AlertKind::Probing,
                severity: if count >= cap {
                    Severity::High
                } else {
                    Severity::Medium
                },
                source: Some(source.to_string()),
                tenant: tenant.map(str::to_owned),
                capability: None,
                summary: format!(
                    "{count} invalid requests from {who} within {} s",
                    cfg.probing_window.num_seconds()
                ),
                evidence: reasons
                    .into_iter()
                    .map(|(r, n)| format!("{r} x{n}"))
                    .take(5)
                    .collect(),
                at,
                count: count as u64,
                window_s: cfg.probing_window.num_seconds(),
            });
        }
        alerts
    }

    fn observe_outcome(&mut self, capability: &str, at: DateTime<Utc>, failed: bool) -> Vec<Alert> {
        let cfg = self.config.clone();
        let state = self.capability(capability);
        let mut alerts = Vec::new();
        if !state.outcomes.add(at, failed) {
            return alerts;
        }

        // Roll the EWMA minute: fold a finished minute into the baseline.
        let bucket_ms = cfg.ewma_bucket.num_milliseconds().max(1);
        let minute = at.timestamp_millis().div_euclid(bucket_ms);
        if minute > state.minute.0 {
            let (_, total, failed_n) = state.minute;
            if total >= cfg.ewma_min_tasks {
                let r = failed_n as f64 / total as f64;
                if state.baseline_minutes == 0 {
                    state.mean = r;
                    state.var = 0.0;
                } else {
                    let diff = r - state.mean;
                    state.mean += cfg.ewma_alpha * diff;
                    state.var = (1.0 - cfg.ewma_alpha) * (state.var + cfg.ewma_alpha * diff * diff);
                }
                state.baseline_minutes += 1;
            }
            state.minute = (minute, 0, 0);
        }
        if minute == state.minute.0 {
            state.minute.1 += 1;
            state.minute.2 += u64::from(failed);
        }

        let cooled = state
            .last_alert
            .is_none_or(|last| at - last >= cfg.failure_window);
        if !cooled {
            return alerts;
        }
        let (total, failures) = state.outcomes.totals();
        let ratio = if total == 0 {
            0.0
        } else {
            failures as f64 / total as f64
        };
        let (_, m_total, m_failed) = state.minute;
        let m_ratio = if m_total == 0 {
            0.0
        } else {
            m_failed as f64 / m_total as f64
        };
        let z = (m_ratio - state.mean) / (state.var + 1e-4).sqrt();
        let by_ratio = total >= cfg.failure_min_tasks && ratio > cfg.failure_ratio;
        let by_z = state.baseline_minutes >= cfg.ewma_warmup
            && m_total >= cfg.ewma_min_tasks
            && z >= cfg.ewma_z
            && m_ratio - state.mean >= 0.2;
        if by_ratio || by_z {
            state.last_alert = Some(at);
            let shown = if by_ratio { ratio } else { m_ratio };
            let summary = if by_ratio {
                format!(
                    "{capability}: {failures} of {total} tasks failed ({:.0} %) within {} s",
                    ratio * 100.0,
                    cfg.failure_window.num_seconds()
                )
            } else {
                format!(
                    "{capability}: failure ratio {:.0} % this minute vs baseline {:.0} % (z = {z:.1})",
                    m_ratio * 100.0,
                    state.mean * 100.0
                )
            };
            alerts.push(Alert {
                kind: AlertKind::FailureAnomaly,
                severity: if shown >= 0.8 {
                    Severity::High
                } else {
                    Severity::Medium
                },
                source: None,
                tenant: None,
                capability: Some(capability.to_string()),
                summary,
                evidence: vec![
                    format!("window_failed={failures} window_total={total}"),
                    format!("minute_failed={m_failed} minute_total={m_total}"),
                    format!(
                        "baseline_mean={:.3} baseline_sd={:.3}",
                        state.mean,
                        state.var.sqrt()
                    ),
                ],
                at,
                count: if by_ratio { failures } else { m_failed },
                window_s: if by_ratio {
                    cfg.failure_window.num_seconds()
                } else {
                    cfg.ewma_bucket.num_seconds()
                },
            });
        }
        alerts
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
