//! The `threat_detection` capability: rules over parsed log lines and events.
//!
//! | rule | kind | fires when | severity |
//! |---|---|---|---|
//! | `auth.brute_force` | brute_force | >= 5 failed logins for one user from one source within the window | medium; high at >= 20 in a window; critical when that user then logs in from that source |
//! | `auth.credential_stuffing` | credential_stuffing | failed logins for >= 5 distinct users from one source within the window | high; critical when any login from that source then succeeds |
//! | `signature.sql_injection` | sql_injection | a request path or payload matches an SQL injection signature | high; critical when a matching request got a 2xx answer |
//! | `signature.xss` | xss | ... an XSS signature | medium; high on a 2xx answer |
//! | `signature.path_traversal` | path_traversal | ... a traversal signature (`../`, `%2e%2e`, /etc/passwd) | high; critical on a 2xx answer |
//! | `net.port_scan` | port_scan | connections to >= 10 distinct ports from one source within the window | medium; high at >= 100 ports |
//! | `http.scanner` | scanner | a scanner user agent (sqlmap, nikto, ...), or >= 20 answers 404 to one source within the window | medium for an agent; low for 404s alone, medium at >= 100 |
//!
//! The window defaults to 300 s. Findings are sorted by first_seen, kind,
//! source and user, so the output is deterministic for a given input.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::LogicError;
use super::parse::{self, EventInput};
use super::signatures;
use super::types::{Event, EventKind, Finding, Severity, ThreatKind};

/// Default correlation window in seconds.
pub const DEFAULT_WINDOW_S: u64 = 300;
/// Largest accepted window (one day).
pub const MAX_WINDOW_S: u64 = 86_400;
/// Failed logins for one user from one source within the window.
pub const BRUTE_FORCE_MIN: usize = 5;
/// Failed logins within a window from which brute force is high severity.
pub const BRUTE_FORCE_HIGH: usize = 20;
/// Distinct failing users from one source within the window.
pub const STUFFING_MIN_USERS: usize = 5;
/// Distinct destination ports from one source within the window.
pub const PORT_SCAN_MIN: usize = 10;
/// Distinct ports from which a port scan is high severity.
pub const PORT_SCAN_HIGH: usize = 100;
/// 404 answers to one source within the window that mark a scanner.
pub const NOT_FOUND_MIN: usize = 20;
/// 404 answers from which the scanner finding is medium.
pub const NOT_FOUND_MEDIUM: usize = 100;
/// Evidence strings kept per finding.
pub const MAX_EVIDENCE: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    #[serde(default)]
    lines: Vec<String>,
    #[serde(default)]
    events: Vec<EventInput>,
    #[serde(default)]
    window_s: Option<u64>,
}

/// Largest number of items in any window of `window` over sorted times,
/// with an item key when `distinct` is given (then the count is of distinct keys).
fn peak_in_window(times: &[DateTime<Utc>], window: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Largest number of distinct keys in any window over (time, key) sorted by time.
fn peak_distinct_in_window<K: std::hash::Hash + Eq + Clone>(
    items: &[(DateTime<Utc>, K)],
    window: Duration,
) -> usize {
    let mut counts: HashMap<K, usize> = HashMap::new();
    let mut best = 0;
    let mut start = 0;
    for end in 0..items.len() {
        *counts.entry(items[end].1.clone()).or_insert(0) += 1;
        while items[end].0 - items[start].0 >= window {
            let k = &items[start].1;
            if let Some(c) = counts.get_mut(k) {
                *c -= 1;
                if *c == 0 {
                    counts.remove(k);
                }
            }
            start += 1;
        }
        best = best.max(counts.len());
    }
    best
}

fn evidence<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<String> {
    events
        .into_iter()
        .take(MAX_EVIDENCE)
        .map(|e| e.raw.clone())
        .collect()
}

fn span(events: &[&Event]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    Some((events.first()?.ts, events.last()?.ts))
}

/// Runs every rule over events sorted by time.
pub fn detect(events: &[Event], window: Duration) -> Result<Vec<Finding>, LogicError> {
    let mut findings = Vec::new();
    auth_rules(events, window, &mut findings);
    signature_rules(events, &mut findings)?;
    port_scan_rule(events, window, &mut findings);
    scanner_rule(events, window, &mut findings)?;
    findings.sort_by(|a, b| {
        (a.first_seen, a.kind, &a.source, &a.user).cmp(&(b.first_seen, b.kind, &b.source, &b.user))
    });
    Ok(findings)
}

fn auth_rules(events: &[Event], window: Duration, out: &mut Vec<Finding>) {
    let mut by_user: BTreeMap<(&str, &str), Vec<&Event>> = BTreeMap::new();
    let mut by_source: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == EventKind::AuthFailure) {
        let user = e.user.as_deref().unwrap_or("");
        by_user.entry((&e.source, user)).or_default().push(e);
        by_source.entry(&e.source).or_default().push(e);
    }
    let success_after = |source: &str, user: Option<&str>, after: DateTime<Utc>| {
        events.iter().find(|e| {
            e.kind == EventKind::AuthSuccess
                && e.source == source
                && e.ts >= after
                && user.is_none_or(|u| e.user.as_deref() == Some(u))
        })
    };
    for ((source, user), fails) in &by_user {
        let times: Vec<_> = fails.iter().map(|e| e.ts).collect();
        let peak = peak_in_window(&times, window);
        let Some((first, last)) = span(fails) else {
            continue;
        };
        if peak < BRUTE_FORCE_MIN {
            continue;
        }
        let mut severity = if peak >= BRUTE_FORCE_HIGH {
            Severity::High
        } else {
            Severity::Medium
        };
        let mut ev = evidence(fails.iter().copied());
        if let Some(ok) = success_after(source, Some(user), first) {
            severity = Severity::Critical;
            ev.truncate(MAX_EVIDENCE - 1);
            ev.push(ok.raw.clone());
        }
        out.push(Finding {
            rule: "auth.brute_force".into(),
            kind: ThreatKind::BruteForce,
            severity,
            source: source.to_string(),
            count: fails.len() as u64,
            first_seen: first,
            last_seen: last,
            evidence: ev,
            user: Some(user.to_string()),
            peak_in_window: Some(peak as u64),
            signatures: Vec::new(),
        });
    }
    for (source, fails) in &by_source {
        let items: Vec<_> = fails
            .iter()
            .map(|e| (e.ts, e.user.as_deref().unwrap_or("")))
            .collect();
        let peak = peak_distinct_in_window(&items, window);
        let Some((first, last)) = span(fails) else {
            continue;
        };
        if peak < STUFFING_MIN_USERS {
            continue;
        }
        let mut severity = Severity::High;
        // One evidence line per distinct user shows the spread.
        let mut seen = BTreeSet::new();
        let mut ev = evidence(
            fails
                .iter()
                .copied()
                .filter(|e| seen.insert(e.user.clone())),
        );
        if let Some(ok) = success_after(source, None, first) {
            severity = Severity::Critical;
            ev.truncate(MAX_EVIDENCE - 1);
            ev.push(ok.raw.clone());
        }
        out.push(Finding {
            rule: "auth.credential_stuffing".into(),
            kind: ThreatKind::CredentialStuffing,
            severity,
            source: source.to_string(),
            count: fails.len() as u64,
            first_seen: first,
            last_seen: last,
            evidence: ev,
            user: None,
            peak_in_window: Some(peak as u64),
            signatures: Vec::new(),
        });
    }
}

fn signature_rules(events: &[Event], out: &mut Vec<Finding>) -> Result<(), LogicError> {
    let sigs = signatures::bundled()?;
    // (kind, source) -> (matching events, signature ids, any 2xx answer, base severity)
    type Acc<'a> = (Vec<&'a Event>, BTreeSet<&'a str>, bool, Severity);
    let mut acc: BTreeMap<(ThreatKind, &str), Acc<'_>> = BTreeMap::new();
    for e in events {
        let mut matched: Vec<&signatures::Signature> = Vec::new();
        for text in [e.path.as_deref(), e.payload.as_deref()]
            .into_iter()
            .flatten()
        {
            matched.extend(sigs.matching(text));
        }
        let mut kinds_seen = BTreeSet::new();
        for s in matched {
            let entry = acc
                .entry((s.kind, &e.source))
                .or_insert_with(|| (Vec::new(), BTreeSet::new(), false, s.severity));
            entry.1.insert(s.id.as_str());
            entry.3 = entry.3.max(s.severity);
            if kinds_seen.insert(s.kind) {
                entry.0.push(e);
                entry.2 |= e.status.is_some_and(|st| (200..300).contains(&st));
            }
        }
    }
    for ((kind, source), (evs, ids, succeeded, base)) in acc {
        let Some((first, last)) = span(&evs) else {
            continue;
        };
        let rule = match kind {
            ThreatKind::SqlInjection => "signature.sql_injection",
            ThreatKind::Xss => "signature.xss",
            ThreatKind::PathTraversal => "signature.path_traversal",
            other => {
                return Err(agentry_agent_kit::missing_data(format!(
                    "signature kind {other} has no signature rule"
                )));
            }
        };
        out.push(Finding {
            rule: rule.into(),
            kind,
            severity: if succeeded { base.raised() } else { base },
            source: source.to_string(),
            count: evs.len() as u64,
            first_seen: first,
            last_seen: last,
            evidence: evidence(evs.iter().copied()),
            user: None,
            peak_in_window: None,
            signatures: ids.into_iter().map(str::to_string).collect(),
        });
    }
    Ok(())
}

fn port_scan_rule(events: &[Event], window: Duration, out: &mut Vec<Finding>) {
    let mut by_source: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.kind == EventKind::Connection && e.port.is_some())
    {
        by_source.entry(&e.source).or_default().push(e);
    }
    for (source, conns) in by_source {
        let items: Vec<_> = conns.iter().map(|e| (e.ts, e.port)).collect();
        let peak = peak_distinct_in_window(&items, window);
        if peak < PORT_SCAN_MIN {
            continue;
        }
        let Some((first, last)) = span(&conns) else {
            continue;
        };
        let ports: BTreeSet<u16> = conns.iter().filter_map(|e| e.port).collect();
        let mut seen = BTreeSet::new();
        out.push(Finding {
            rule: "net.port_scan".into(),
            kind: ThreatKind::PortScan,
            severity: if peak >= PORT_SCAN_HIGH {
                Severity::High
            } else {
                Severity::Medium
            },
            source: source.to_string(),
            count: ports.len() as u64,
            first_seen: first,
            last_seen: last,
            evidence: evidence(conns.iter().copied().filter(|e| seen.insert(e.port))),
            user: None,
            peak_in_window: Some(peak as u64),
            signatures: Vec::new(),
        });
    }
}

fn scanner_rule(
    events: &[Event],
    window: Duration,
    out: &mut Vec<Finding>,
) -> Result<(), LogicError> {
    let sigs = signatures::bundled()?;
    // source -> (requests with a scanner agent, 404 answers, agent names)
    type Acc<'a> = (Vec<&'a Event>, Vec<&'a Event>, BTreeSet<&'a str>);
    let mut by_source: BTreeMap<&str, Acc<'_>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == EventKind::HttpRequest) {
        let agent = e
            .user_agent
            .as_deref()
            .and_then(|ua| sigs.scanner_agent(ua));
        let not_found = e.status == Some(404);
        if agent.is_none() && !not_found {
            continue;
        }
        let entry = by_source.entry(&e.source).or_default();
        if let Some(a) = agent {
            entry.0.push(e);
            entry.2.insert(a);
        }
        if not_found {
            entry.1.push(e);
        }
    }
    for (source, (agent_hits, not_found, agents)) in by_source {
        let times: Vec<_> = not_found.iter().map(|e| e.ts).collect();
        let peak = peak_in_window(&times, window);
        let by_404 = peak >= NOT_FOUND_MIN;
        if agent_hits.is_empty() && !by_404 {
            continue;
        }
        let severity = if !agent_hits.is_empty() || peak >= NOT_FOUND_MEDIUM {
            Severity::Medium
        } else {
            Severity::Low
        };
        let mut all: Vec<&Event> = agent_hits.iter().chain(not_found.iter()).copied().collect();
        all.sort_by_key(|e| e.ts);
        all.dedup_by(|a, b| std::ptr::eq(*a, *b));
        let Some((first, last)) = span(&all) else {
            continue;
        };
        out.push(Finding {
            rule: "http.scanner".into(),
            kind: ThreatKind::Scanner,
            severity,
            source: source.to_string(),
            count: all.len() as u64,
            first_seen: first,
            last_seen: last,
            evidence: evidence(all.iter().copied()),
            user: None,
            peak_in_window: by_404.then_some(peak as u64),
            signatures: agents.into_iter().map(|a| format!("agent:{a}")).collect(),
        });
    }
    Ok(())
}

/// The `threat_detection` capability. `now` resolves syslog timestamps
/// without a year.
pub fn threat_detection(input: &Value, now: DateTime<Utc>) -> Result<Value, LogicError> {
    let input: Input = agentry_agent_kit::input::decode(input)?;
    let window_s = input.window_s.unwrap_or(DEFAULT_WINDOW_S);
    if window_s == 0 || window_s > MAX_WINDOW_S {
        return Err(LogicError::InvalidInput(format!(
            "window_s must be in 1..={MAX_WINDOW_S}"
        )));
    }
    if input.lines.is_empty() && input.events.is_empty() {
        return Err(LogicError::InvalidInput(
            "give at least one of lines or events".into(),
        ));
    }
    let mut events = Vec::with_capacity(input.lines.len() + input.events.len());
    let mut unparsed = 0u64;
    for line in &input.lines {
        match parse::parse_line(line, now)? {
            Some(e) => events.push(e),
            None => unparsed += 1,
        }
    }
    for (i, e) in input.events.into_iter().enumerate() {
        events.push(e.into_event(i)?);
    }
    // Stable: equal timestamps keep input order.
    events.sort_by_key(|e| e.ts);
    let window = Duration::seconds(window_s as i64);
    let findings = detect(&events, window)?;

    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_severity: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &findings {
        *by_kind.entry(f.kind.as_str()).or_insert(0) += 1;
        *by_severity.entry(f.severity.as_str()).or_insert(0) += 1;
    }
    let max_severity = findings.iter().map(|f| f.severity).max();
    Ok(json!({
        "findings": findings,
        "summary": {
            "by_kind": by_kind,
            "by_severity": by_severity,
            "max_severity": max_severity,
            "findings": findings.len(),
            "events": events.len(),
            "unparsed_lines": unparsed,
            "window_s": window_s,
        }
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
