//! Log line parsing, JSON event normalisation and URL decoding.
//!
//! Line formats:
//! - nginx/apache common and combined access logs:
//!   `IP - USER [10/Oct/2024:13:55:36 +0000] "GET /path HTTP/1.1" 200 123 "ref" "agent"`;
//! - sshd via syslog: `Oct 10 13:55:36 host sshd[123]: Failed password for
//!   (invalid user )?X from IP port P ssh2` (also `Accepted password|publickey
//!   for X from IP ...`), with the classic or an RFC 3339 timestamp;
//! - kernel firewall lines (UFW, iptables LOG) with `SRC=` and `DPT=`.
//!
//! Classic syslog timestamps have no year: the year of `now` is used, or
//! the previous year when that would put the line more than a day in the
//! future.

use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Utc};
use regex::Regex;
use serde::Deserialize;

use super::LogicError;
use super::types::{Event, EventKind};
use agentry_agent_kit::bad_data;

/// Longest evidence string kept, in characters.
pub const MAX_EVIDENCE_CHARS: usize = 300;

struct Patterns {
    access: Regex,
    syslog: Regex,
    ssh_failed: Regex,
    ssh_accepted: Regex,
    firewall: Regex,
}

fn patterns() -> Result<&'static Patterns, LogicError> {
    static P: OnceLock<Result<Patterns, LogicError>> = OnceLock::new();
    P.get_or_init(|| {
        let re = |p: &str| Regex::new(p).map_err(|e| bad_data("pattern", e));
        Ok(Patterns {
            access: re(
                r#"^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<ts>[^\]]+)\] "(?P<req>[^"]*)" (?P<status>\d{3}) \S+(?: "(?P<referer>[^"]*)" "(?P<ua>[^"]*)")?"#,
            )?,
            syslog: re(
                r"^(?P<ts>\d{4}-\d{2}-\d{2}T\S+|[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}) (?P<host>\S+) (?P<prog>[\w./-]+)(?:\[\d+\])?: (?P<msg>.*)$",
            )?,
            ssh_failed: re(
                r"^Failed (?:password|publickey|keyboard-interactive/pam|none) for (?:invalid user )?(?P<user>\S+) from (?P<ip>\S+) port (?P<port>\d+)",
            )?,
            ssh_accepted: re(
                r"^Accepted (?:password|publickey|keyboard-interactive/pam) for (?P<user>\S+) from (?P<ip>\S+) port (?P<port>\d+)",
            )?,
            firewall: re(r"\bSRC=(?P<src>\S+) .*\bDPT=(?P<dpt>\d+)")?,
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Percent-decodes a string (`%41` -> `A`); malformed escapes stay as they
/// are and invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The form signatures are matched against: percent-decoded twice (to undo
/// double encoding), `+` read as a space, lowercased.
pub fn normalise_for_matching(s: &str) -> String {
    percent_decode(&percent_decode(s))
        .replace('+', " ")
        .to_lowercase()
}

/// Cuts a string to [`MAX_EVIDENCE_CHARS`] characters.
pub fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_EVIDENCE_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_EVIDENCE_CHARS - 1).collect();
        t.push('…');
        t
    }
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn parse_syslog_ts(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    let compact = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let at_year = |y: i32| {
        NaiveDateTime::parse_from_str(&format!("{y} {compact}"), "%Y %b %d %H:%M:%S")
            .ok()
            .map(|n| Utc.from_utc_datetime(&n))
    };
    let t = at_year(now.year())?;
    if t > now + Duration::days(1) {
        at_year(now.year() - 1)
    } else {
        Some(t)
    }
}

/// Parses one log line into an event, or `None` for a line in no known format
/// (or one that records nothing the rules use).
pub fn parse_line(line: &str, now: DateTime<Utc>) -> Result<Option<Event>, LogicError> {
    let p = patterns()?;
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(c) = p.access.captures(line) {
        let Some(ts) = DateTime::parse_from_str(&c["ts"], "%d/%b/%Y:%H:%M:%S %z")
            .ok()
            .map(|t| t.with_timezone(&Utc))
        else {
            return Ok(None);
        };
        let mut req = c["req"].split(' ');
        // "METHOD TARGET PROTOCOL", or a bare target in malformed requests.
        let target = match (req.next(), req.next()) {
            (Some(_method), Some(t)) => t.to_string(),
            (Some(t), None) => t.to_string(),
            _ => String::new(),
        };
        let user = Some(&c["user"]).filter(|u| *u != "-").map(str::to_string);
        let status = c["status"].parse::<u16>().ok();
        return Ok(Some(Event {
            ts,
            source: c["ip"].to_string(),
            kind: EventKind::HttpRequest,
            path: Some(target),
            status,
            user,
            port: None,
            payload: None,
            user_agent: c
                .name("ua")
                .map(|m| m.as_str().to_string())
                .filter(|u| !u.is_empty() && u != "-"),
            raw: clip(line),
        }));
    }
    let Some(c) = p.syslog.captures(line) else {
        return Ok(None);
    };
    let Some(ts) = parse_syslog_ts(&c["ts"], now) else {
        return Ok(None);
    };
    let msg = &c["msg"];
    let (kind, m) = if let Some(m) = p.ssh_failed.captures(msg) {
        (EventKind::AuthFailure, m)
    } else if let Some(m) = p.ssh_accepted.captures(msg) {
        (EventKind::AuthSuccess, m)
    } else if let Some(m) = p.firewall.captures(msg) {
        return Ok(Some(Event {
            ts,
            source: m["src"].to_string(),
            kind: EventKind::Connection,
            path: None,
            status: None,
            user: None,
            port: m["dpt"].parse().ok(),
            payload: None,
            user_agent: None,
            raw: clip(line),
        }));
    } else {
        return Ok(None);
    };
    Ok(Some(Event {
        ts,
        source: m["ip"].to_string(),
        kind,
        path: None,
        status: None,
        user: Some(m["user"].to_string()),
        // The client's source port: not a scan target, kept out of `port`.
        port: None,
        payload: None,
        user_agent: None,
        raw: clip(line),
    }))
}

/// A timestamp given as RFC 3339 text or as milliseconds since the epoch.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TsInput {
    Millis(i64),
    Text(String),
}

impl TsInput {
    /// The instant, if valid.
    pub fn resolve(&self) -> Option<DateTime<Utc>> {
        match self {
            TsInput::Millis(ms) => Utc.timestamp_millis_opt(*ms).single(),
            TsInput::Text(s) => parse_rfc3339(s),
        }
    }
}

/// An event as given in a task input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub ts: TsInput,
    pub source: String,
    pub kind: EventKind,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
}

impl EventInput {
    /// Validates and normalises the event; `index` names it in errors.
    pub fn into_event(self, index: usize) -> Result<Event, LogicError> {
        let ts = self.ts.resolve().ok_or_else(|| {
            LogicError::InvalidInput(format!("events[{index}].ts is not a valid timestamp"))
        })?;
        if self.source.trim().is_empty() {
            return Err(LogicError::InvalidInput(format!(
                "events[{index}].source is empty"
            )));
        }
        let kind_name = serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut raw = format!("{} {} source={}", ts.to_rfc3339(), kind_name, self.source);
        for (k, v) in [
            ("user", self.user.clone()),
            ("port", self.port.map(|p| p.to_string())),
            ("path", self.path.clone()),
            ("status", self.status.map(|s| s.to_string())),
            ("payload", self.payload.clone()),
        ] {
            if let Some(v) = v {
                raw.push_str(&format!(" {k}={v}"));
            }
        }
        Ok(Event {
            ts,
            source: self.source,
            kind: self.kind,
            path: self.path,
            status: self.status,
            user: self.user,
            port: self.port,
            payload: self.payload,
            user_agent: self.user_agent,
            raw: clip(&raw),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 10, 0, 0, 0).unwrap()
    }

    /// A combined log line yields source, time (in UTC), path, status, user and agent.
    #[test]
    fn parses_combined_access_log() {
        let line = r#"203.0.113.7 - alice [09/Mar/2025:22:15:01 +0100] "GET /search?q=%27%20OR%201%3D1 HTTP/1.1" 200 512 "-" "sqlmap/1.7""#;
        let e = parse_line(line, now()).unwrap().unwrap();
        assert_eq!(e.source, "203.0.113.7");
        assert_eq!(e.kind, EventKind::HttpRequest);
        assert_eq!(e.ts, Utc.with_ymd_and_hms(2025, 3, 9, 21, 15, 1).unwrap());
        assert_eq!(e.path.as_deref(), Some("/search?q=%27%20OR%201%3D1"));
        assert_eq!(e.status, Some(200));
        assert_eq!(e.user.as_deref(), Some("alice"));
        assert_eq!(e.user_agent.as_deref(), Some("sqlmap/1.7"));
        let common =
            r#"198.51.100.2 - - [09/Mar/2025:10:00:00 +0000] "POST /login HTTP/1.0" 401 0"#;
        let e = parse_line(common, now()).unwrap().unwrap();
        assert_eq!(e.user, None);
        assert_eq!(e.user_agent, None);
        assert_eq!(e.status, Some(401));
    }

    /// sshd failures (with and without "invalid user") and successes are parsed.
    #[test]
    fn parses_sshd_lines() {
        let f = "Mar  9 08:01:02 web1 sshd[4242]: Failed password for invalid user admin from 192.0.2.10 port 51234 ssh2";
        let e = parse_line(f, now()).unwrap().unwrap();
        assert_eq!(e.kind, EventKind::AuthFailure);
        assert_eq!(e.user.as_deref(), Some("admin"));
        assert_eq!(e.source, "192.0.2.10");
        assert_eq!(e.ts, Utc.with_ymd_and_hms(2025, 3, 9, 8, 1, 2).unwrap());
        let f = "Mar 9 08:01:03 web1 sshd[4242]: Failed password for root from 192.0.2.10 port 51236 ssh2";
        assert_eq!(
            parse_line(f, now()).unwrap().unwrap().user.as_deref(),
            Some("root")
        );
        let ok = "2025-03-09T08:05:00+00:00 web1 sshd[4250]: Accepted password for root from 192.0.2.10 port 51300 ssh2";
        let e = parse_line(ok, now()).unwrap().unwrap();
        assert_eq!(e.kind, EventKind::AuthSuccess);
        assert_eq!(e.ts, Utc.with_ymd_and_hms(2025, 3, 9, 8, 5, 0).unwrap());
    }

    /// A syslog date after "now" belongs to the previous year.
    #[test]
    fn syslog_year_rolls_back() {
        let f = "Dec 31 23:59:59 web1 sshd[1]: Failed password for bob from 192.0.2.1 port 1 ssh2";
        let e = parse_line(f, now()).unwrap().unwrap();
        assert_eq!(
            e.ts,
            Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59).unwrap()
        );
    }

    /// Firewall lines give connection events with the destination port.
    #[test]
    fn parses_firewall_lines() {
        let l = "Mar  9 10:00:00 gw kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00 SRC=198.51.100.9 DST=10.0.0.5 LEN=44 PROTO=TCP SPT=40000 DPT=3389 WINDOW=1024";
        let e = parse_line(l, now()).unwrap().unwrap();
        assert_eq!(e.kind, EventKind::Connection);
        assert_eq!(e.source, "198.51.100.9");
        assert_eq!(e.port, Some(3389));
    }

    /// Unknown lines and irrelevant sshd messages are skipped.
    #[test]
    fn skips_unknown_lines() {
        assert_eq!(parse_line("hello world", now()).unwrap(), None);
        let l = "Mar  9 10:00:00 web1 sshd[1]: Connection closed by 192.0.2.1 port 22";
        assert_eq!(parse_line(l, now()).unwrap(), None);
    }

    /// Decoding undoes single and double percent-encoding and keeps bad escapes.
    #[test]
    fn decodes_urls() {
        assert_eq!(percent_decode("%27%20OR%201%3D1"), "' OR 1=1");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(normalise_for_matching("%252e%252e%252f"), "../");
        assert_eq!(normalise_for_matching("UNION+SELECT"), "union select");
    }

    /// JSON events accept RFC 3339 or epoch milliseconds and reject bad times.
    #[test]
    fn normalises_json_events() {
        let e: EventInput = serde_json::from_value(serde_json::json!({
            "ts": 1741564800000i64, "source": "10.1.1.1", "kind": "connection", "port": 22
        }))
        .unwrap();
        let e = e.into_event(0).unwrap();
        assert_eq!(e.ts, now());
        assert_eq!(
            e.raw,
            "2025-03-10T00:00:00+00:00 connection source=10.1.1.1 port=22"
        );
        let bad: EventInput = serde_json::from_value(serde_json::json!({
            "ts": "yesterday", "source": "x", "kind": "http_request"
        }))
        .unwrap();
        assert!(matches!(
            bad.into_event(3),
            Err(LogicError::InvalidInput(_))
        ));
    }
}
