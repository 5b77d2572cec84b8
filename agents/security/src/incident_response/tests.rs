use super::*;
use chrono::TimeZone;

fn t(m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 9, 12, m, 0).unwrap()
}

fn finding(severity: Severity, kind: ThreatKind) -> Value {
    json!({"rule": "r", "kind": kind, "severity": severity, "source": "203.0.113.9",
           "count": 3, "first_seen": t(0), "last_seen": t(1), "evidence": []})
}

/// Open -> update -> quarantine -> release -> close walks the states with a timeline.
#[test]
fn full_lifecycle() {
    let (out, inc, q) = incident_response(
        &json!({"action": "open", "findings": [finding(Severity::Medium, ThreatKind::Xss)], "note": "from analysis"}),
        None,
        t(0),
        "inc-1",
    )
    .unwrap();
    assert_eq!(out["event"], "opened");
    assert_eq!(inc.id, "inc-1");
    assert_eq!(inc.source, "203.0.113.9");
    assert_eq!(inc.severity, Severity::Medium);
    assert_eq!(inc.status, IncidentStatus::Open);
    assert_eq!(inc.timeline[0].note, "1 finding(s): xss; from analysis");
    assert!(q.is_none());

    let (_, inc, _) = incident_response(
        &json!({"action": "update", "incident_id": "inc-1", "findings": [finding(Severity::High, ThreatKind::SqlInjection)]}),
        Some(inc),
        t(5),
        "unused",
    )
    .unwrap();
    assert_eq!(inc.severity, Severity::High);
    assert_eq!(inc.findings_count, 6);
    assert_eq!(inc.kinds.len(), 2);

    let (out, inc, q) = incident_response(
        &json!({"action": "quarantine", "quarantine_minutes": 30}),
        Some(inc),
        t(6),
        "unused",
    )
    .unwrap();
    assert_eq!(out["event"], "contained");
    assert_eq!(inc.status, IncidentStatus::Contained);
    assert_eq!(
        q,
        Some(QuarantineChange::Set {
            source: "203.0.113.9".into(),
            tenant: None,
            key: "_.203.0.113.9".into(),
            until: t(36),
            incident_id: "inc-1".into(),
            reason: "incident inc-1 (high)".into(),
        })
    );
    assert_eq!(out["quarantine"]["op"], "set");

    let (_, inc, q) =
        incident_response(&json!({"action": "release"}), Some(inc), t(10), "x").unwrap();
    assert_eq!(inc.status, IncidentStatus::Open);
    assert!(matches!(q, Some(QuarantineChange::Remove { .. })));

    let (out, inc, q) = incident_response(
        &json!({"action": "close", "note": "fixed"}),
        Some(inc),
        t(20),
        "x",
    )
    .unwrap();
    assert_eq!(out["event"], "closed");
    assert_eq!(inc.status, IncidentStatus::Closed);
    assert!(q.is_none());
    assert_eq!(inc.timeline.len(), 5);
    assert_eq!(inc.created_at, t(0));
    assert_eq!(inc.updated_at, t(20));

    // Closed is final for update and quarantine; closing again is a no-op.
    for action in ["update", "quarantine"] {
        assert!(matches!(
            incident_response(&json!({"action": action}), Some(inc.clone()), t(30), "x"),
            Err(LogicError::Conflict(_))
        ));
    }
    let (out, again, _) =
        incident_response(&json!({"action": "close"}), Some(inc.clone()), t(31), "x").unwrap();
    assert_eq!(out["changed"], false);
    assert_eq!(again, inc);
}

/// Quarantine without an incident opens one already contained; close releases it.
#[test]
fn quarantine_opens_and_close_releases() {
    let (_, inc, q) = incident_response(
        &json!({"action": "quarantine", "source": "::1"}),
        None,
        t(0),
        "inc-2",
    )
    .unwrap();
    assert_eq!(inc.status, IncidentStatus::Contained);
    assert_eq!(inc.timeline.len(), 2);
    let Some(QuarantineChange::Set { key, until, .. }) = q else {
        panic!("{q:?}")
    };
    assert_eq!(key, "_.=3A=3A1");
    assert_eq!(until, t(0) + Duration::minutes(60));
    let (_, _, q) = incident_response(&json!({"action": "close"}), Some(inc), t(5), "x").unwrap();
    assert!(matches!(q, Some(QuarantineChange::Remove { .. })));
}

/// Opening an already open incident changes nothing (safe to redeliver).
#[test]
fn open_is_idempotent() {
    let (_, inc, _) =
        incident_response(&json!({"action": "open", "source": "a"}), None, t(0), "i").unwrap();
    let (out, same, q) = incident_response(
        &json!({"action": "open", "source": "a"}),
        Some(inc.clone()),
        t(1),
        "j",
    )
    .unwrap();
    assert_eq!(out["changed"], false);
    assert_eq!(same, inc);
    assert!(q.is_none());
}

/// A tenant's incident quarantines that tenant's principal only, and
/// another tenant cannot act on it.
#[test]
fn incidents_carry_the_tenant() {
    let (out, inc, q) = incident_response(
        &json!({"action": "quarantine", "source": "/billing", "tenant": "globex"}),
        None,
        t(0),
        "inc-g",
    )
    .unwrap();
    assert_eq!(out["event"], "contained");
    assert_eq!(inc.tenant.as_deref(), Some("globex"));
    match q {
        Some(QuarantineChange::Set { key, tenant, .. }) => {
            assert_eq!(key, "globex./billing");
            assert_eq!(tenant.as_deref(), Some("globex"));
        }
        other => panic!("{other:?}"),
    }
    let err = incident_response(
        &json!({"action": "release", "incident_id": "inc-g", "tenant": "acme"}),
        Some(inc.clone()),
        t(1),
        "inc-g",
    )
    .unwrap_err();
    assert!(matches!(err, LogicError::InvalidInput(_)), "{err:?}");
    let bad = incident_response(
        &json!({"action": "open", "source": "/x", "tenant": "Not A Tenant"}),
        None,
        t(1),
        "inc-x",
    );
    assert!(matches!(bad, Err(LogicError::InvalidInput(_))), "{bad:?}");
}

/// Keys are KV-safe and distinct sources get distinct keys.
#[test]
fn quarantine_keys() {
    assert_eq!(quarantine_key("192.0.2.1"), "_.192.0.2.1");
    assert_eq!(quarantine_key("/clients/alice"), "_./clients/alice");
    assert_eq!(
        quarantine_key("https://x.example/a"),
        "_.https=3A//x.example/a"
    );
    assert_eq!(quarantine_key(".a..b."), "_.=2Ea=2E=2Eb=2E");
    assert_eq!(quarantine_key("a=b"), "_.a=3Db");
    assert_eq!(quarantine_key(""), "_.=00");
    assert_ne!(quarantine_key("a:b"), quarantine_key("a_b"));
}

/// Invalid inputs: missing source, mismatched id, several sources, bad minutes.
#[test]
fn rejects_bad_input() {
    let (_, inc, _) =
        incident_response(&json!({"action": "open", "source": "a"}), None, t(0), "i").unwrap();
    let cases = [
        (json!({"action": "open"}), None),
        (json!({"action": "update"}), None),
        (json!({"action": "explode"}), None),
        (
            json!({"action": "update", "incident_id": "other"}),
            Some(inc.clone()),
        ),
        (
            json!({"action": "update", "source": "b"}),
            Some(inc.clone()),
        ),
        (
            json!({"action": "quarantine", "quarantine_minutes": 0}),
            Some(inc.clone()),
        ),
    ];
    for (input, current) in cases {
        assert!(
            matches!(
                incident_response(&input, current, t(1), "x"),
                Err(LogicError::InvalidInput(_))
            ),
            "{input}"
        );
    }
}
