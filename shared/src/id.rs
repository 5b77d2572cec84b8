//! Validated identifiers. Each is checked once on construction, so code that
//! holds one never re-validates and can splice it into a subject safely.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: must match {pattern}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub pattern: &'static str,
}

fn check(
    kind: &'static str,
    pattern: &'static str,
    value: &str,
    max: usize,
    first: fn(u8) -> bool,
    rest: fn(u8) -> bool,
) -> Result<(), IdError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= max
        && first(bytes[0])
        && bytes[1..].iter().all(|b| rest(*b));
    if ok {
        Ok(())
    } else {
        // Truncate what we echo back: ids come from untrusted input.
        let shown: String = value.chars().take(80).collect();
        Err(IdError {
            kind,
            value: shown,
            pattern,
        })
    }
}

fn request_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}
fn lower_start(b: u8) -> bool {
    b.is_ascii_lowercase()
}
fn cap_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}
fn agent_start(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}
fn agent_char(b: u8) -> bool {
    cap_char(b) || b == b'-'
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $pattern:literal, $max:expr, $first:path, $rest:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PATTERN: &'static str = $pattern;

            /// Validates and wraps `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($kind, $pattern, &value, $max, $first, $rest)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// A request id: the CloudEvent `id` of a request, also its idempotency key.
    RequestId, "request id", "^[A-Za-z0-9_-]{1,128}$", 128, request_char, request_char
);
id_type!(
    /// A workflow run id (same alphabet as request ids).
    RunId, "run id", "^[A-Za-z0-9_-]{1,128}$", 128, request_char, request_char
);
id_type!(
    /// A capability name: one subject token.
    Capability, "capability", "^[a-z][a-z0-9_]{0,63}$", 64, lower_start, cap_char
);
id_type!(
    /// An agent instance id, e.g. `weather-7f3a2c`: one subject token.
    AgentId, "agent id", "^[a-z0-9][a-z0-9_-]{0,63}$", 64, agent_start, agent_char
);
id_type!(
    /// A workflow name.
    WorkflowName, "workflow name", "^[a-z][a-z0-9_-]{0,63}$", 64, lower_start, agent_char
);
id_type!(
    /// A signal name sent to a waiting workflow run.
    SignalName, "signal name", "^[a-z][a-z0-9_]{0,63}$", 64, lower_start, cap_char
);

impl RequestId {
    /// A fresh, time-ordered request id (UUIDv7, simple form).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }
}

impl RunId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }
}

impl AgentId {
    /// `<kind>-<6 hex>`: stable for the life of the process, unique per instance.
    pub fn generate(kind: &str) -> Result<Self, IdError> {
        let kind: String = kind.replace('_', "-");
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        Self::new(format!("{kind}-{suffix}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(RequestId::new("abc-DEF_123").is_ok());
        assert!(RequestId::new("a".repeat(128)).is_ok());
        assert!(RequestId::new("a".repeat(129)).is_err());
        assert!(RequestId::new("").is_err());
        assert!(RequestId::new("a.b").is_err());
        assert!(RequestId::new("a b").is_err());
        assert!(RequestId::new("a*").is_err());
        assert!(RequestId::new("é").is_err());
    }

    #[test]
    fn capabilities() {
        assert!(Capability::new("weather_current").is_ok());
        assert!(Capability::new("Weather").is_err());
        assert!(Capability::new("1abc").is_err());
        assert!(Capability::new("a-b").is_err());
        assert!(Capability::new("a".repeat(65)).is_err());
    }

    #[test]
    fn agent_ids() {
        let id = AgentId::generate("customer_service").unwrap();
        assert!(id.as_str().starts_with("customer-service-"));
        assert!(AgentId::new("Bad").is_err());
        assert!(AgentId::new("-x").is_err());
    }

    #[test]
    fn serde_validates() {
        let ok: Result<Capability, _> = serde_json::from_str("\"echo\"");
        assert!(ok.is_ok());
        let bad: Result<Capability, _> = serde_json::from_str("\"Echo\"");
        assert!(bad.is_err());
    }
}
