use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, 0, 0, 0).unwrap()
}

fn ssh_fail(sec: u32, user: &str, ip: &str) -> String {
    format!(
        "Mar  9 08:{:02}:{:02} web1 sshd[77]: Failed password for {user} from {ip} port {} ssh2",
        sec / 60,
        sec % 60,
        40000 + sec
    )
}

fn findings(input: Value) -> Vec<Finding> {
    let out = threat_detection(&input, now()).unwrap();
    serde_json::from_value(out["findings"].clone()).unwrap()
}

/// Five failures for one user within the window are brute force; four are not.
#[test]
fn brute_force_threshold() {
    let four: Vec<String> = (0..4)
        .map(|i| ssh_fail(i * 10, "root", "192.0.2.5"))
        .collect();
    assert!(findings(json!({"lines": four})).is_empty());
    let five: Vec<String> = (0..5)
        .map(|i| ssh_fail(i * 10, "root", "192.0.2.5"))
        .collect();
    let f = findings(json!({"lines": five}));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, ThreatKind::BruteForce);
    assert_eq!(f[0].severity, Severity::Medium);
    assert_eq!(f[0].user.as_deref(), Some("root"));
    assert_eq!(f[0].count, 5);
    assert_eq!(f[0].evidence.len(), 5);
    assert_eq!(
        f[0].first_seen,
        Utc.with_ymd_and_hms(2025, 3, 9, 8, 0, 0).unwrap()
    );
    assert_eq!(
        f[0].last_seen,
        Utc.with_ymd_and_hms(2025, 3, 9, 8, 0, 40).unwrap()
    );
}

/// Failures spread wider than the window do not count together.
#[test]
fn brute_force_respects_window() {
    // One failure every 100 s: at most 3 inside 300 s, 5 inside 600 s.
    let lines: Vec<String> = (0..6)
        .map(|i| ssh_fail(i * 100, "root", "192.0.2.5"))
        .collect();
    assert!(findings(json!({"lines": lines, "window_s": 300})).is_empty());
    let f = findings(json!({"lines": lines, "window_s": 600}));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].peak_in_window, Some(6));
}

/// A success after the failures makes brute force critical.
#[test]
fn brute_force_then_success_is_critical() {
    let mut lines: Vec<String> = (0..6)
        .map(|i| ssh_fail(i * 5, "deploy", "198.51.100.20"))
        .collect();
    lines.push(
        "Mar  9 08:01:00 web1 sshd[78]: Accepted password for deploy from 198.51.100.20 port 50000 ssh2"
            .into(),
    );
    let f = findings(json!({"lines": lines}));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Critical);
    assert!(f[0].evidence.last().unwrap().contains("Accepted password"));
}

/// Many users failing from one source is credential stuffing, not brute force.
#[test]
fn credential_stuffing() {
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let lines: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, u)| ssh_fail(i as u32 * 3, &format!("invalid user {u}"), "203.0.113.50"))
        .collect();
    let f = findings(json!({"lines": lines}));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].kind, ThreatKind::CredentialStuffing);
    assert_eq!(f[0].severity, Severity::High);
    assert_eq!(f[0].peak_in_window, Some(6));
    assert_eq!(f[0].count, 6);
}

/// SQLi, XSS and traversal requests give one finding per kind and source.
#[test]
fn signature_findings() {
    let lines = [
        r#"203.0.113.9 - - [09/Mar/2025:10:00:00 +0000] "GET /item?id=1%27%20OR%201=1-- HTTP/1.1" 500 10 "-" "curl/8""#,
        r#"203.0.113.9 - - [09/Mar/2025:10:00:05 +0000] "GET /item?id=1+UNION+SELECT+password+FROM+users HTTP/1.1" 200 10 "-" "curl/8""#,
        r#"203.0.113.9 - - [09/Mar/2025:10:00:09 +0000] "GET /q?s=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1" 404 10 "-" "curl/8""#,
        r#"198.51.100.3 - - [09/Mar/2025:10:01:00 +0000] "GET /download?f=..%2f..%2f..%2fetc%2fpasswd HTTP/1.1" 403 10 "-" "curl/8""#,
        r#"198.51.100.3 - - [09/Mar/2025:10:01:10 +0000] "GET /index.html HTTP/1.1" 200 10 "-" "curl/8""#,
    ];
    let f = findings(json!({"lines": lines}));
    let kinds: Vec<(ThreatKind, &str, Severity, u64)> = f
        .iter()
        .map(|x| (x.kind, x.source.as_str(), x.severity, x.count))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                ThreatKind::SqlInjection,
                "203.0.113.9",
                Severity::Critical,
                2
            ),
            (ThreatKind::Xss, "203.0.113.9", Severity::Medium, 1),
            (ThreatKind::PathTraversal, "198.51.100.3", Severity::High, 1),
        ]
    );
    assert!(f[0].signatures.contains(&"sqli-union-select".to_string()));
    assert!(f[2].signatures.contains(&"traversal-encoded".to_string()));
}

/// Payloads of JSON events are checked too.
#[test]
fn payload_signatures() {
    let f = findings(json!({"events": [
        {"ts": "2025-03-09T10:00:00Z", "source": "10.9.9.9", "kind": "http_request",
         "path": "/api/comment", "status": 201, "payload": "{\"body\":\"<img src=x onerror=alert(1)>\"}"}
    ]}));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, ThreatKind::Xss);
    assert_eq!(f[0].severity, Severity::High); // stored with a 2xx answer
}

/// Ten distinct ports within the window are a port scan; nine are not.
#[test]
fn port_scan_threshold() {
    let conn = |i: u16| {
        json!({"ts": 1741510800000i64 + i64::from(i) * 1000, "source": "192.0.2.99",
               "kind": "connection", "port": 20 + i})
    };
    let nine: Vec<Value> = (0..9).map(conn).collect();
    assert!(findings(json!({"events": nine})).is_empty());
    let mut ten: Vec<Value> = (0..10).map(conn).collect();
    ten.push(conn(0)); // a repeated port does not count twice
    let f = findings(json!({"events": ten}));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, ThreatKind::PortScan);
    assert_eq!(f[0].count, 10);
    assert_eq!(f[0].severity, Severity::Medium);
}

/// A scanner user agent, or many 404s, is a scanner.
#[test]
fn scanner_detection() {
    let by_agent =
        [r#"192.0.2.1 - - [09/Mar/2025:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "Nikto/2.5.0""#];
    let f = findings(json!({"lines": by_agent}));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].kind, ThreatKind::Scanner);
    assert_eq!(f[0].severity, Severity::Medium);
    assert_eq!(f[0].signatures, vec!["agent:nikto".to_string()]);
    let many_404: Vec<String> = (0..20)
        .map(|i| format!(r#"192.0.2.2 - - [09/Mar/2025:10:00:{i:02} +0000] "GET /wp-admin{i}.php HTTP/1.1" 404 1 "-" "Mozilla/5.0""#))
        .collect();
    let f = findings(json!({"lines": many_404}));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Low);
    assert_eq!(f[0].count, 20);
}

/// The summary counts findings; unknown lines are counted, not fatal.
#[test]
fn summary_and_unparsed() {
    let mut lines: Vec<String> = (0..5).map(|i| ssh_fail(i, "root", "192.0.2.5")).collect();
    lines.push("garbage".into());
    let out = threat_detection(&json!({"lines": lines}), now()).unwrap();
    assert_eq!(out["summary"]["by_kind"], json!({"brute_force": 1}));
    assert_eq!(out["summary"]["by_severity"], json!({"medium": 1}));
    assert_eq!(out["summary"]["unparsed_lines"], 1);
    assert_eq!(out["summary"]["events"], 5);
}

/// Output does not depend on input order.
#[test]
fn deterministic_under_reordering() {
    let mut lines: Vec<String> = (0..5)
        .map(|i| ssh_fail(i * 7, "root", "192.0.2.5"))
        .collect();
    lines.extend((0..5).map(|i| ssh_fail(i * 7 + 1, "admin", "192.0.2.6")));
    let a = threat_detection(&json!({"lines": lines.clone()}), now()).unwrap();
    lines.reverse();
    let b = threat_detection(&json!({"lines": lines}), now()).unwrap();
    assert_eq!(a["findings"].as_array().unwrap().len(), 2);
    assert_eq!(
        a["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| &f["source"])
            .collect::<Vec<_>>(),
        b["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| &f["source"])
            .collect::<Vec<_>>()
    );
}

/// Bad input is rejected.
#[test]
fn rejects_bad_input() {
    for bad in [
        json!({}),
        json!({"lines": ["x"], "window_s": 0}),
        json!({"events": [{"ts": "2025-01-01T00:00:00Z", "source": "a", "kind": "teleport"}]}),
        json!({"lines": "not a list"}),
    ] {
        assert!(matches!(
            threat_detection(&bad, now()),
            Err(LogicError::InvalidInput(_))
        ));
    }
}

/// A value of the wrong shape is named by its JSON path.
#[test]
fn bad_input_names_the_json_path() {
    let bad = json!({"events": [
        {"ts": "2025-01-01T00:00:00Z", "source": "a", "kind": "auth_failure"},
        {"ts": "2025-01-01T00:00:01Z", "source": "a", "kind": "teleport"},
    ]});
    let err = threat_detection(&bad, now()).unwrap_err();
    assert!(
        matches!(&err, LogicError::InvalidInput(m) if m.starts_with("events[1].kind: unknown variant `teleport`")),
        "{err}"
    );
}
