use super::*;
use chrono::TimeZone;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 9, 12, 0, 0).unwrap()
}

fn ms(offset: i64) -> DateTime<Utc> {
    t0() + Duration::milliseconds(offset)
}

fn req(at: DateTime<Utc>, source: &str) -> Observation {
    Observation {
        at,
        source: Some(source.into()),
        tenant: None,
        kind: ObservationKind::Request,
    }
}

fn rejected(at: DateTime<Utc>, source: &str, reason: &str) -> Observation {
    Observation {
        at,
        source: Some(source.into()),
        tenant: None,
        kind: ObservationKind::Rejected {
            reason: reason.into(),
        },
    }
}

fn outcome(at: DateTime<Utc>, cap: &str, failed: bool) -> Observation {
    let capability = cap.to_string();
    Observation {
        at,
        source: None,
        tenant: None,
        kind: if failed {
            ObservationKind::TaskFailed { capability }
        } else {
            ObservationKind::TaskCompleted { capability }
        },
    }
}

/// 600 requests in 50 s do not alert; the 601st does, exactly once per window.
#[test]
fn flood_fires_once_above_limit() {
    let mut d = Detector::default();
    for i in 0..600 {
        assert!(
            d.observe(req(ms(i * 80), "10.0.0.1")).is_empty(),
            "request {i}"
        );
    }
    let alerts = d.observe(req(ms(48_100), "10.0.0.1"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::Flood);
    assert_eq!(alerts[0].severity, Severity::High);
    assert_eq!(alerts[0].count, 601);
    assert_eq!(alerts[0].source.as_deref(), Some("10.0.0.1"));
    // Still flooding within the cool-down: silent.
    for i in 0..100 {
        assert!(d.observe(req(ms(48_200 + i * 10), "10.0.0.1")).is_empty());
    }
    // Another source is unaffected.
    assert!(d.observe(req(ms(49_000), "10.0.0.2")).is_empty());
}

/// The same volume spread over more than a window never alerts.
#[test]
fn slow_steady_traffic_does_not_flood() {
    let mut d = Detector::default();
    // 9 requests per second for 5 minutes: 540 per minute.
    for i in 0..2700 {
        assert!(d.observe(req(ms(i * 111), "10.0.0.1")).is_empty(), "{i}");
    }
}

/// After the cool-down a continuing flood alerts again.
#[test]
fn flood_realerts_after_cooldown() {
    let mut d = Detector::default();
    let mut fired = Vec::new();
    // 20 requests per second for 160 s: alerts at 30 s, 90 s and 150 s.
    for i in 0..3200 {
        for a in d.observe(req(ms(i * 50), "10.0.0.9")) {
            fired.push(a.at);
        }
    }
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert!(fired[1] - fired[0] >= Duration::seconds(60));
    assert!(fired[2] - fired[1] >= Duration::seconds(60));
}

/// 50 `rate_limited` rejections of one source within the window are a
/// flood although the volume stays far below the request limit.
#[test]
fn hard_rate_limiting_is_a_flood() {
    let mut d = Detector::default();
    // 49 throttled and 100 accepted requests in 49 s: no alert.
    for i in 0..49 {
        assert!(
            d.observe(rejected(ms(i * 1000), "bot", "rate_limited"))
                .is_empty()
        );
        assert!(d.observe(req(ms(i * 1000 + 10), "bot")).is_empty());
        assert!(d.observe(req(ms(i * 1000 + 20), "bot")).is_empty());
    }
    // The 50th within 60 s fires, once.
    let alerts = d.observe(rejected(ms(49_000), "bot", "rate_limited"));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::Flood);
    assert_eq!(alerts[0].severity, Severity::High);
    assert_eq!(alerts[0].count, 50);
    assert!(
        alerts[0]
            .summary
            .contains("50 requests from bot rate limited")
    );
    assert!(
        alerts[0]
            .evidence
            .contains(&"rate_limited_in_window=50".to_string())
    );
    assert!(
        d.observe(rejected(ms(50_000), "bot", "rate_limited"))
            .is_empty()
    );

    // 50 throttled requests spread over 100 s never reach 50 in one window.
    let mut d = Detector::default();
    for i in 0..50 {
        assert!(
            d.observe(rejected(ms(i * 2000), "slow", "rate_limited"))
                .is_empty(),
            "{i}"
        );
    }

    // The threshold is configurable.
    let mut d = Detector::new(DetectorConfig {
        flood_rate_limited: 3,
        ..DetectorConfig::default()
    });
    assert!(d.observe(rejected(ms(0), "x", "rate_limited")).is_empty());
    assert!(d.observe(rejected(ms(1), "x", "rate_limited")).is_empty());
    assert_eq!(d.observe(rejected(ms(2), "x", "rate_limited")).len(), 1);
}

/// Five validation rejections within 60 s are probing; other reasons are not.
#[test]
fn probing_detection() {
    let mut d = Detector::default();
    for i in 0..10 {
        assert!(
            d.observe(rejected(ms(i * 1000), "cli", "rate_limited"))
                .is_empty()
        );
    }
    for (i, reason) in [
        "schema_invalid",
        "unknown_capability",
        "schema_invalid",
        "invalid_id",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            d.observe(rejected(ms(20_000 + i as i64 * 1000), "cli", reason))
                .is_empty()
        );
    }
    let alerts = d.observe(rejected(ms(30_000), "cli", "unknown_type"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::Probing);
    assert_eq!(alerts[0].severity, Severity::Medium);
    assert_eq!(alerts[0].count, 5);
    assert_eq!(
        alerts[0].evidence,
        vec![
            "invalid_id x1",
            "schema_invalid x2",
            "unknown_capability x1",
            "unknown_type x1"
        ]
    );
    // Once per window.
    assert!(
        d.observe(rejected(ms(31_000), "cli", "unknown_type"))
            .is_empty()
    );
}

/// Rejections spaced more than the window apart never add up to probing.
#[test]
fn sparse_rejections_are_not_probing() {
    let mut d = Detector::default();
    for i in 0..20 {
        assert!(
            d.observe(rejected(ms(i * 15_000), "cli", "schema_invalid"))
                .is_empty()
        );
    }
}

/// More than 50 % failures over at least 20 tasks in 5 minutes is an anomaly.
#[test]
fn failure_ratio_anomaly() {
    let mut d = Detector::default();
    // 19 outcomes, 15 failed: below the minimum count.
    for i in 0..19 {
        assert!(
            d.observe(outcome(ms(i * 1000), "weather_current", i >= 4))
                .is_empty()
        );
    }
    let alerts = d.observe(outcome(ms(19_000), "weather_current", true));
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::FailureAnomaly);
    assert_eq!(alerts[0].capability.as_deref(), Some("weather_current"));
    assert_eq!(alerts[0].count, 16);
    assert_eq!(alerts[0].severity, Severity::High); // 16/20 = 0.8
    assert!(
        d.observe(outcome(ms(20_000), "weather_current", true))
            .is_empty()
    );
}

/// A healthy ratio (here exactly 50 %) does not alert.
#[test]
fn half_failures_is_not_above_limit() {
    let mut d = Detector::default();
    for i in 0..40 {
        assert!(
            d.observe(outcome(ms(i * 1000), "echo", i % 2 == 1))
                .is_empty()
        );
    }
}

/// A jump from a ~5 % baseline to 40 % in one minute alerts by z-score
/// although the 5-minute ratio stays below 50 %.
#[test]
fn ewma_z_score_anomaly() {
    let mut d = Detector::default();
    // Six minutes of 20 tasks each, one failure per minute (5 %).
    for m in 0..6 {
        for i in 0..20 {
            let at = ms(m * 60_000 + i * 2_500);
            assert!(
                d.observe(outcome(at, "plan_tasks", i == 0)).is_empty(),
                "m{m} i{i}"
            );
        }
    }
    // Minute 6: failures start; the alert comes once the minute has 10 outcomes.
    let mut alerts = Vec::new();
    for i in 0..10 {
        alerts.extend(d.observe(outcome(ms(6 * 60_000 + i * 2_000), "plan_tasks", i % 5 < 2)));
    }
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].summary.contains("baseline 5 %"),
        "{}",
        alerts[0].summary
    );
    assert_eq!(alerts[0].count, 4);
    assert_eq!(alerts[0].severity, Severity::Medium);
}

/// Requests count per principal: the same source in two tenants is two
/// principals, and an alert names the tenant it is about.
#[test]
fn sources_count_per_tenant() {
    let cfg = DetectorConfig::default();
    let mut d = Detector::new(cfg.clone());
    let obs = |tenant: &str, i: i64| Observation {
        at: ms(i),
        source: Some("/billing".into()),
        tenant: Some(tenant.into()),
        kind: ObservationKind::Request,
    };
    let half = cfg.flood_requests / 2 + 1;
    let mut alerts = Vec::new();
    for i in 0..half {
        alerts.extend(d.observe(obs("acme", i as i64)));
        alerts.extend(d.observe(obs("globex", i as i64)));
    }
    assert!(
        alerts.is_empty(),
        "neither principal alone floods: {alerts:?}"
    );
    for i in half..=cfg.flood_requests {
        alerts.extend(d.observe(obs("globex", i as i64)));
    }
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].tenant.as_deref(), Some("globex"));
    assert_eq!(alerts[0].source.as_deref(), Some("/billing"));
    assert!(
        alerts[0].summary.contains("tenant globex"),
        "{}",
        alerts[0].summary
    );
}

/// Memory is bounded: the least recently seen source is evicted first.
#[test]
fn sources_are_bounded() {
    let mut d = Detector::new(DetectorConfig {
        max_sources: 3,
        max_capabilities: 2,
        ..DetectorConfig::default()
    });
    for (i, s) in ["a", "b", "c"].iter().enumerate() {
        d.observe(req(ms(i as i64), s));
    }
    d.observe(req(ms(10), "a")); // a is now the most recent
    d.observe(req(ms(11), "d")); // evicts b
    assert_eq!(d.tracked_sources(), 3);
    assert!(d.sources.contains_key("_\u{0}a") && !d.sources.contains_key("_\u{0}b"));
    for c in ["x", "y", "z"] {
        d.observe(outcome(ms(20), c, false));
    }
    assert_eq!(d.tracked_capabilities(), 2);
    assert_eq!(d.source_lru.len(), 3);
    assert_eq!(d.capability_lru.len(), 2);
}

/// Requests without a source are ignored by the per-source rules.
#[test]
fn sourceless_requests_are_ignored() {
    let mut d = Detector::default();
    for i in 0..1000 {
        let o = Observation {
            at: ms(i),
            source: None,
            tenant: None,
            kind: ObservationKind::Request,
        };
        assert!(d.observe(o).is_empty());
    }
    assert_eq!(d.tracked_sources(), 0);
}
