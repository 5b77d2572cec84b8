//! Date-times as the agents read and write them, through `chrono`.
//!
//! A reading keeps the wall-clock time and the offset it was written with
//! (if any), because the planning agent reports its schedule in the offset
//! of its `start` and Open-Meteo writes local times without offset.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// A date-time reading: milliseconds of the wall clock since 1970-01-01T00:00
/// (as if it were UTC) and the UTC offset it was written with, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub local_ms: i64,
    pub offset_s: Option<i32>,
}

impl Timestamp {
    /// Milliseconds since the Unix epoch, reading a missing offset as
    /// `default_offset_s`.
    pub fn utc_ms(&self, default_offset_s: i32) -> i64 {
        self.local_ms - i64::from(self.offset_s.unwrap_or(default_offset_s)) * 1000
    }
}

/// What [`parse_datetime`] accepts besides a full RFC 3339 date-time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leniency {
    /// Exactly RFC 3339 `date-time`: seconds and offset required.
    Rfc3339,
    /// Also a local time without offset, seconds optional
    /// (`2024-06-01T13:00`, as Open-Meteo writes), and a space separator.
    LocalAllowed,
    /// Also a bare date (`2024-06-01`, midnight).
    DateAllowed,
}

/// Local forms, tried in order when no offset is written.
const LOCAL_FORMATS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
];

/// Parses `YYYY-MM-DD[Tt ]HH:MM[:SS[.fff]][Z|z|+HH:MM|-HH:MM]`, as far as
/// `leniency` allows. Fractions finer than a millisecond are truncated.
pub fn parse_datetime(text: &str, leniency: Leniency) -> Option<Timestamp> {
    // chrono's year field takes any width and a sign; the forms here have
    // exactly four digits, and a date exactly ten characters.
    let b = text.as_bytes();
    if b.len() < 10 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    if b.len() == 10 {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        return (leniency == Leniency::DateAllowed).then(|| Timestamp {
            local_ms: local_ms(date.and_time(chrono::NaiveTime::MIN)),
            offset_s: None,
        });
    }
    if b[10] == b' ' && leniency == Leniency::Rfc3339 {
        return None;
    }
    if let Some(at) = with_offset(text) {
        return Some(Timestamp {
            local_ms: local_ms(at.naive_local()),
            offset_s: Some(at.offset().local_minus_utc()),
        });
    }
    if leniency == Leniency::Rfc3339 {
        return None;
    }
    let local = text.replace('t', "T");
    LOCAL_FORMATS.iter().find_map(|format| {
        NaiveDateTime::parse_from_str(&local, format)
            .ok()
            .map(|at| Timestamp {
                local_ms: local_ms(at),
                offset_s: None,
            })
    })
}

/// An RFC 3339 date-time with seconds and a `Z` or `±HH:MM` offset.
fn with_offset(text: &str) -> Option<DateTime<FixedOffset>> {
    // RFC 3339 offsets have a colon; chrono would also take `+0100`.
    let offset_ok = text.ends_with(['Z', 'z'])
        || text
            .len()
            .checked_sub(6)
            .and_then(|at| text.get(at..))
            .is_some_and(|o| o.starts_with(['+', '-']) && o.as_bytes()[3] == b':');
    if !offset_ok {
        return None;
    }
    DateTime::parse_from_rfc3339(text).ok()
}

fn local_ms(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp_millis()
}

/// Formats an instant as RFC 3339 in the given UTC offset
/// (`2025-03-03T08:00:00+01:00`, `Z` for offset 0); milliseconds are shown
/// only when not zero.
pub fn format_rfc3339(utc_ms: i64, offset_s: i32) -> String {
    let Some(offset) = FixedOffset::east_opt(offset_s) else {
        return format_rfc3339(utc_ms, 0);
    };
    match Utc.timestamp_millis_opt(utc_ms).single() {
        Some(at) => at
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("@{utc_ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day_ms(y: i32, m: u32, d: u32) -> i64 {
        local_ms(
            NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_time(chrono::NaiveTime::MIN),
        )
    }

    #[test]
    fn parses_rfc3339_and_open_meteo_times() {
        let t = parse_datetime("2024-02-29T13:45:10.25+02:00", Leniency::Rfc3339).unwrap();
        assert_eq!(t.offset_s, Some(7200));
        assert_eq!(
            t.utc_ms(0),
            day_ms(2024, 2, 29) + (11 * 3600 + 45 * 60 + 10) * 1000 + 250
        );
        assert!(parse_datetime("2024-06-01T13:00", Leniency::Rfc3339).is_none());
        let local = parse_datetime("2024-06-01T13:00", Leniency::LocalAllowed).unwrap();
        assert_eq!(local.offset_s, None);
        assert_eq!(local.utc_ms(3600), local.local_ms - 3_600_000);
        assert!(parse_datetime("2024-06-01 13:00:30", Leniency::LocalAllowed).is_some());
        assert!(parse_datetime("2024-06-01 13:00:30Z", Leniency::Rfc3339).is_none());
        assert!(parse_datetime("2023-02-29T00:00:00Z", Leniency::Rfc3339).is_none());
        assert!(parse_datetime("2024-06-01", Leniency::LocalAllowed).is_none());
        assert_eq!(
            parse_datetime("2024-06-01", Leniency::DateAllowed).map(|t| t.local_ms),
            Some(day_ms(2024, 6, 1))
        );
        assert!(parse_datetime("2024-06-01T24:00:00Z", Leniency::Rfc3339).is_none());
        assert!(parse_datetime("2024-06-01T10:00:00+0100", Leniency::Rfc3339).is_none());
        assert!(parse_datetime("+2024-06-01", Leniency::DateAllowed).is_none());
        assert!(parse_datetime("2024-6-1", Leniency::DateAllowed).is_none());
    }

    #[test]
    fn formats_with_offset() {
        let t = parse_datetime("2025-03-03T08:00:00+01:00", Leniency::Rfc3339).unwrap();
        let utc = t.utc_ms(0);
        assert_eq!(format_rfc3339(utc, 3600), "2025-03-03T08:00:00+01:00");
        assert_eq!(format_rfc3339(utc, 0), "2025-03-03T07:00:00Z");
        assert_eq!(
            format_rfc3339(utc + 1500, -5400),
            "2025-03-03T05:30:01.500-01:30"
        );
    }
}
