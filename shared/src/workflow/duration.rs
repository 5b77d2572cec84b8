//! Durations as workflow definitions spell them: a whole number and one unit,
//! `250ms`, `30s`, `5m`, `1h`, `7d`.
//!
//! The text form is kept short and unambiguous on purpose (no `1h30m`, no
//! fractions): it is what the schema's `duration` pattern accepts, and what a
//! [`Duration`] serialises back to (the largest unit that divides it exactly).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration a definition may use anywhere (365 days): timers far
/// beyond that are almost surely a typo, and it keeps deadline arithmetic far
/// away from overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// A non-negative span of time written `<digits><unit>` with unit
/// `ms|s|m|h|d`. Zero parses (the schema's pattern allows it); whether zero is
/// acceptable is for [`crate::workflow::Definition::check`] to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration `{0}` is not <digits><unit> with unit ms, s, m, h or d")]
    Syntax(String),
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }

    /// Whole milliseconds, saturating (a parsed duration always fits).
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| DurationError::Syntax(s.to_owned()))?;
        let (digits, unit) = s.split_at(split);
        if digits.is_empty() {
            return Err(DurationError::Syntax(s.to_owned()));
        }
        let factor_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(DurationError::Syntax(s.to_owned())),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| DurationError::Overflow(s.to_owned()))?;
        let ms = n
            .checked_mul(factor_ms)
            .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
        Ok(Self::from_millis(ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (factor, unit) in units {
            if ms != 0 && ms.is_multiple_of(factor) {
                return write!(f, "{}{unit}", ms / factor);
            }
        }
        if ms == 0 {
            return f.write_str("0s");
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every unit parses to the number of milliseconds it names.
    #[test]
    fn parses_each_unit() {
        let cases = [
            ("250ms", 250),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_millis(), ms, "{text}");
        }
    }

    /// Malformed strings and overflowing numbers are refused with the right variant.
    #[test]
    fn refuses_bad_text() {
        for bad in ["", "s", "10", "1.5s", "-1s", "10x", "1h30m", " 1s", "1S"] {
            assert!(
                matches!(bad.parse::<Duration>(), Err(DurationError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "99999999999999999999d".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            "18446744073709551615d".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
    }

    /// Display picks the largest exact unit, and round-trips through serde.
    #[test]
    fn displays_canonically() {
        assert_eq!(Duration::from_secs(3600).to_string(), "1h");
        assert_eq!(Duration::from_secs(90).to_string(), "90s");
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(Duration::from_secs(0).to_string(), "0s");
        assert_eq!(Duration::from_secs(86_400 * 3).to_string(), "3d");
        let json = serde_json::to_string(&Duration::from_secs(120)).unwrap();
        assert_eq!(json, "\"2m\"");
        let back: Duration = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Duration::from_secs(120));
        assert!(serde_json::from_str::<Duration>("\"soon\"").is_err());
    }
}
