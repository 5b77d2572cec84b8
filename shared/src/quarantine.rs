//! Quarantined request sources (KV `agentry-quarantine`), written by the
//! security monitor, read by the engine.
//!
//! What is quarantined is a *principal*: the tenant (taken from the subject
//! the request arrived on, never from the event) and the CloudEvent `source`
//! the client asserted. One tenant's abuse therefore never locks out another
//! tenant's client that happens to use the same `source`.
//!
//! One entry per principal under [`key`]`(tenant, source)`, its value a JSON
//! [`QuarantineEntry`]. Releasing a principal deletes its key; an entry whose
//! `until` has passed is no longer in force even while it is still stored.

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::subject::Tenant;

/// Why and until when a source is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// The tenant whose requests from `source` are refused (`None`: the
    /// untenanted dev/admin subjects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The CloudEvent `source` refused.
    pub source: String,
    #[serde(default)]
    pub reason: String,
    /// Incident (key in `agentry-incidents`) that caused the quarantine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    /// End of the quarantine; `None` means until released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl QuarantineEntry {
    /// Whether the entry refuses requests at `now`.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("reading quarantine entry {key}: {source}")]
    Kv {
        key: String,
        #[source]
        source: kv::EntryError,
    },
    #[error("quarantine entry {key} is not valid JSON: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Tenant token of untenanted requests in a key (a tenant starts with a
/// letter, so `_` never collides with one).
pub const NO_TENANT: &str = "_";

/// The KV key of a principal: `<tenant>.<source key>` (`_` for no tenant),
/// with the source written by [`source_key`].
pub fn key(tenant: Option<&Tenant>, source: &str) -> String {
    let t = tenant.map_or(NO_TENANT, Tenant::as_str);
    format!("{t}.{}", source_key(source))
}

/// The key part of a source: bytes outside `[A-Za-z0-9_/-]`, and a `.` that
/// would begin or end the key or touch another `.`, are written as `=XX`
/// (upper-case hex of each UTF-8 byte), so `=` itself becomes `=3D`; the
/// empty source is `=00`. Injective and stable, so writer and reader agree.
pub fn source_key(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'/' | b'-')
            || (b == b'.'
                && i > 0
                && i + 1 < bytes.len()
                && bytes[i - 1] != b'.'
                && bytes[i + 1] != b'.');
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("=00");
    }
    out
}

/// The quarantine in force for the principal, if any (an expired or deleted entry is `None`).
pub async fn lookup(
    kv: &kv::Store,
    tenant: Option<&Tenant>,
    source: &str,
) -> Result<Option<QuarantineEntry>, LookupError> {
    let key = key(tenant, source);
    let Some(bytes) = kv
        .get(key.as_str())
        .await
        .map_err(|source| LookupError::Kv {
            key: key.clone(),
            source,
        })?
    else {
        return Ok(None);
    };
    let entry: QuarantineEntry =
        serde_json::from_slice(&bytes).map_err(|source| LookupError::Decode { key, source })?;
    Ok(entry.in_force(Utc::now()).then_some(entry))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Keys are KV-safe, stable, and distinct sources get distinct keys.
    #[test]
    fn keys() {
        let key = source_key;
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
        assert_eq!(key("/clients/alice"), "/clients/alice");
        assert_eq!(key("https://x.example/a"), "https=3A//x.example/a");
        assert_eq!(key(".a..b."), "=2Ea=2E=2Eb=2E");
        assert_eq!(key("a=b"), "a=3Db");
        assert_eq!(key("::1"), "=3A=3A1");
        assert_eq!(key(""), "=00");
        assert_eq!(key("é"), "=C3=A9");
        assert_ne!(key("a:b"), key("a_b"));
        assert_ne!(key("a=3Ab"), key("a:b"));
        let valid = |k: &str| {
            !k.is_empty()
                && !k.starts_with('.')
                && !k.ends_with('.')
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
        };
        for s in ["a b", "..", "x.", "*", ">", "a\nb", "/attacker"] {
            assert!(valid(&key(s)), "{s:?} -> {}", key(s));
        }
    }

    /// The same source in two tenants (and untenanted) gives three keys.
    #[test]
    fn principal_keys() {
        let acme = Tenant::new("acme").unwrap();
        let mallory = Tenant::new("mallory").unwrap();
        assert_eq!(super::key(Some(&acme), "/billing"), "acme./billing");
        assert_eq!(super::key(None, "/billing"), "_./billing");
        assert_ne!(
            super::key(Some(&acme), "/billing"),
            super::key(Some(&mallory), "/billing")
        );
    }

    /// An entry is in force until `until`; without `until` until released.
    #[test]
    fn in_force() {
        let now = Utc::now();
        let mut e = QuarantineEntry {
            tenant: None,
            source: "s".into(),
            reason: "r".into(),
            incident_id: None,
            until: Some(now + chrono::Duration::minutes(1)),
        };
        assert!(e.in_force(now));
        e.until = Some(now - chrono::Duration::seconds(1));
        assert!(!e.in_force(now));
        e.until = None;
        assert!(e.in_force(now));
        let json: QuarantineEntry =
            serde_json::from_str(r#"{"source":"/x","reason":"probing","incident_id":"inc-1","until":"2030-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(json.incident_id.as_deref(), Some("inc-1"));
    }
}
