//! The `security_analysis` capability: correlates findings per source over a
//! time window and scores each source's risk.
//!
//! For each source, the findings whose `last_seen` lies within `window_s`
//! (default 3600) of that source's latest finding are correlated; older ones
//! are only counted. Risk (0..100, rounded) is the sum of:
//!
//! | part | points |
//! |---|---|
//! | highest severity | low 10, medium 25, high 40, critical 60 |
//! | diversity | 8 per distinct kind beyond the first, at most 24 |
//! | volume | `6 * log10(1 + total count)`, at most 12 |
//! | recency of the latest finding (vs `as_of`, default now) | <= 15 min 9, <= 1 h 5, <= 24 h 2, older 0 |
//!
//! Level: >= 70 critical, >= 50 high, >= 25 medium, else low.
//! Recommendation: >= 70 `quarantine`, >= 50 `open_incident`, >= 25
//! `monitor`, else `none`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::LogicError;
use super::parse::TsInput;
use super::types::{Finding, Severity, ThreatKind};

/// Default correlation window in seconds.
pub const DEFAULT_WINDOW_S: u64 = 3600;
/// Largest accepted window (7 days).
pub const MAX_WINDOW_S: u64 = 7 * 86_400;
/// Risk from which quarantine is recommended.
pub const QUARANTINE_RISK: f64 = 70.0;

/// Points for the highest severity.
pub fn severity_points(s: Severity) -> f64 {
    match s {
        Severity::Low => 10.0,
        Severity::Medium => 25.0,
        Severity::High => 40.0,
        Severity::Critical => 60.0,
    }
}

/// How a source's risk was made up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RiskComponents {
    pub severity: f64,
    pub diversity: f64,
    pub volume: f64,
    pub recency: f64,
}

impl RiskComponents {
    /// Computes the parts for correlated findings.
    pub fn of(findings: &[&Finding], as_of: DateTime<Utc>) -> RiskComponents {
        let severity = findings
            .iter()
            .map(|f| severity_points(f.severity))
            .fold(0.0, f64::max);
        let kinds: BTreeSet<ThreatKind> = findings.iter().map(|f| f.kind).collect();
        let diversity = (8.0 * kinds.len().saturating_sub(1) as f64).min(24.0);
        let total: u64 = findings.iter().map(|f| f.count).sum();
        let volume = (6.0 * (1.0 + total as f64).log10()).min(12.0);
        let recency = match findings.iter().map(|f| f.last_seen).max() {
            Some(last) => {
                let age = as_of - last;
                if age <= Duration::minutes(15) {
                    9.0
                } else if age <= Duration::hours(1) {
                    5.0
                } else if age <= Duration::hours(24) {
                    2.0
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        RiskComponents {
            severity,
            diversity,
            volume,
            recency,
        }
    }

    /// The risk score, 0..100, rounded to an integer.
    pub fn risk(&self) -> f64 {
        (self.severity + self.diversity + self.volume + self.recency)
            .clamp(0.0, 100.0)
            .round()
    }
}

fn level(risk: f64) -> &'static str {
    if risk >= 70.0 {
        "critical"
    } else if risk >= 50.0 {
        "high"
    } else if risk >= 25.0 {
        "medium"
    } else {
        "low"
    }
}

fn recommendation(risk: f64) -> &'static str {
    if risk >= QUARANTINE_RISK {
        "quarantine"
    } else if risk >= 50.0 {
        "open_incident"
    } else if risk >= 25.0 {
        "monitor"
    } else {
        "none"
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    findings: Vec<Finding>,
    #[serde(default)]
    window_s: Option<u64>,
    #[serde(default)]
    as_of: Option<TsInput>,
}

/// The `security_analysis` capability. Recency is measured against
/// `input.as_of` when given, else `now`.
pub fn security_analysis(input: &Value, now: DateTime<Utc>) -> Result<Value, LogicError> {
    let input: Input = agentry_agent_kit::input::decode(input)?;
    let window_s = input.window_s.unwrap_or(DEFAULT_WINDOW_S);
    if window_s == 0 || window_s > MAX_WINDOW_S {
        return Err(LogicError::InvalidInput(format!(
            "window_s must be in 1..={MAX_WINDOW_S}"
        )));
    }
    let as_of = match &input.as_of {
        Some(t) => t
            .resolve()
            .ok_or_else(|| LogicError::InvalidInput("as_of is not a valid timestamp".into()))?,
        None => now,
    };
    for (i, f) in input.findings.iter().enumerate() {
        if f.first_seen > f.last_seen {
            return Err(LogicError::InvalidInput(format!(
                "findings[{i}]: first_seen is after last_seen"
            )));
        }
    }
    let window = Duration::seconds(window_s as i64);
    let mut by_source: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for f in &input.findings {
        by_source.entry(&f.source).or_default().push(f);
    }
    let mut sources = Vec::new();
    for (source, all) in by_source {
        let Some(latest) = all.iter().map(|f| f.last_seen).max() else {
            continue;
        };
        let correlated: Vec<&Finding> = all
            .iter()
            .copied()
            .filter(|f| latest - f.last_seen <= window)
            .collect();
        let parts = RiskComponents::of(&correlated, as_of);
        let risk = parts.risk();
        let kinds: BTreeSet<ThreatKind> = correlated.iter().map(|f| f.kind).collect();
        let first_seen = correlated.iter().map(|f| f.first_seen).min();
        sources.push((
            risk,
            source.to_string(),
            json!({
                "source": source,
                "risk": risk,
                "level": level(risk),
                "recommendation": recommendation(risk),
                "kinds": kinds,
                "findings": correlated.len(),
                "older_findings": all.len() - correlated.len(),
                "count": correlated.iter().map(|f| f.count).sum::<u64>(),
                "max_severity": correlated.iter().map(|f| f.severity).max(),
                "first_seen": first_seen,
                "last_seen": latest,
                "components": parts,
            }),
        ));
    }
    sources.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let top_risk = sources
        .first()
        .map(|(risk, source, _)| json!({"source": source, "risk": risk, "level": level(*risk)}));
    let quarantine: Vec<String> = sources
        .iter()
        .filter(|(r, _, _)| *r >= QUARANTINE_RISK)
        .map(|(_, s, _)| s.clone())
        .collect();
    let overall = sources
        .first()
        .map_or("none", |(risk, _, _)| recommendation(*risk));
    Ok(json!({
        "sources": sources.into_iter().map(|(_, _, v)| v).collect::<Vec<_>>(),
        "top_risk": top_risk,
        "recommendation": {"action": overall, "quarantine": quarantine},
        "window_s": window_s,
        "as_of": as_of,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 9, h, m, 0).unwrap()
    }

    fn finding(
        source: &str,
        kind: ThreatKind,
        severity: Severity,
        count: u64,
        at: DateTime<Utc>,
    ) -> Value {
        json!({"rule": "test", "kind": kind, "severity": severity, "source": source,
               "count": count, "first_seen": at, "last_seen": at, "evidence": []})
    }

    /// Risk equals the documented sum, computed by hand.
    #[test]
    fn risk_is_documented_sum() {
        // high (40) + 1 extra kind (8) + 6*log10(1+9)=6 + seen 10 min ago (9) = 63.
        let input = json!({"findings": [
            finding("203.0.113.9", ThreatKind::SqlInjection, Severity::High, 4, t(10, 0)),
            finding("203.0.113.9", ThreatKind::Xss, Severity::Medium, 5, t(10, 5)),
        ]});
        let out = security_analysis(&input, t(10, 15)).unwrap();
        let s = &out["sources"][0];
        assert_eq!(s["risk"], 63.0);
        assert_eq!(s["level"], "high");
        assert_eq!(s["recommendation"], "open_incident");
        assert_eq!(s["components"]["volume"], 6.0);
        assert_eq!(s["kinds"], json!(["sql_injection", "xss"]));
    }

    /// A diverse, recent, critical source is quarantined and ranked first.
    #[test]
    fn quarantine_recommended_at_70() {
        let input = json!({"findings": [
            finding("198.51.100.20", ThreatKind::BruteForce, Severity::Critical, 30, t(9, 0)),
            finding("198.51.100.20", ThreatKind::PortScan, Severity::Medium, 40, t(9, 2)),
            finding("192.0.2.1", ThreatKind::Scanner, Severity::Low, 20, t(9, 1)),
        ]});
        let out = security_analysis(&input, t(9, 5)).unwrap();
        // 60 + 8 + min(12, 6*log10(71)=11.1) + 9 = 88.1 -> 88
        assert_eq!(
            out["top_risk"],
            json!({"source": "198.51.100.20", "risk": 88.0, "level": "critical"})
        );
        assert_eq!(out["recommendation"]["action"], "quarantine");
        assert_eq!(
            out["recommendation"]["quarantine"],
            json!(["198.51.100.20"])
        );
        // 10 + 0 + 6*log10(21)=7.93 + 9 = 26.9 -> 27
        assert_eq!(out["sources"][1]["risk"], 27.0);
        assert_eq!(out["sources"][1]["recommendation"], "monitor");
    }

    /// Findings older than the window before a source's latest are not correlated.
    #[test]
    fn window_limits_correlation() {
        let input = json!({"window_s": 600, "as_of": "2025-03-09T12:00:00Z", "findings": [
            finding("10.0.0.1", ThreatKind::SqlInjection, Severity::High, 1, t(10, 0)),
            finding("10.0.0.1", ThreatKind::Xss, Severity::Medium, 1, t(11, 0)),
        ]});
        let out = security_analysis(&input, t(23, 0)).unwrap();
        let s = &out["sources"][0];
        assert_eq!(s["findings"], 1);
        assert_eq!(s["older_findings"], 1);
        // medium 25 + 0 + 6*log10(2)=1.8 + 1 h old -> 5 = 31.8 -> 32
        assert_eq!(s["risk"], 32.0);
    }

    /// Detection output feeds analysis as is: a brute force that ended in a
    /// successful login (critical) is recommended for quarantine.
    #[test]
    fn detection_output_feeds_analysis() {
        let mut lines: Vec<String> = (0..6)
            .map(|i| {
                format!(
                    "Mar  9 08:00:{:02} web1 sshd[1]: Failed password for root from 192.0.2.10 port {} ssh2",
                    i * 3,
                    50_000 + i
                )
            })
            .collect();
        lines.push(
            "Mar  9 08:00:30 web1 sshd[2]: Accepted password for root from 192.0.2.10 port 50100 ssh2"
                .into(),
        );
        let detected = crate::threat_detection(&json!({"lines": lines}), t(9, 0)).unwrap();
        let out = security_analysis(&json!({"findings": detected["findings"]}), t(8, 5)).unwrap();
        // critical 60 + volume 6*log10(7) = 5.07 + recency 9 = 74.07 -> 74
        assert_eq!(out["top_risk"]["risk"], 74.0);
        assert_eq!(out["recommendation"]["action"], "quarantine");
        assert_eq!(out["recommendation"]["quarantine"], json!(["192.0.2.10"]));
    }

    /// No findings: no sources, no top risk.
    #[test]
    fn empty_findings() {
        let out = security_analysis(&json!({"findings": []}), t(0, 0)).unwrap();
        assert_eq!(out["sources"], json!([]));
        assert!(out["top_risk"].is_null());
        assert_eq!(out["recommendation"]["action"], "none");
    }

    /// Malformed findings are rejected.
    #[test]
    fn rejects_bad_input() {
        let mut bad = finding("a", ThreatKind::Xss, Severity::Low, 1, t(1, 0));
        bad["first_seen"] = json!(t(2, 0));
        for input in [
            json!({}),
            json!({"findings": [bad]}),
            json!({"findings": [], "window_s": 0}),
        ] {
            assert!(matches!(
                security_analysis(&input, t(3, 0)),
                Err(LogicError::InvalidInput(_))
            ));
        }
    }
}
