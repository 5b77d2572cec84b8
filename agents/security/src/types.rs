//! Vocabulary shared by the security capabilities.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How bad a finding, an incident or an alert is.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// One level up (critical stays critical).
    pub fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of threat a finding describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreatKind {
    BruteForce,
    CredentialStuffing,
    SqlInjection,
    Xss,
    PortScan,
    PathTraversal,
    Scanner,
}

impl ThreatKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreatKind::BruteForce => "brute_force",
            ThreatKind::CredentialStuffing => "credential_stuffing",
            ThreatKind::SqlInjection => "sql_injection",
            ThreatKind::Xss => "xss",
            ThreatKind::PortScan => "port_scan",
            ThreatKind::PathTraversal => "path_traversal",
            ThreatKind::Scanner => "scanner",
        }
    }
}

impl fmt::Display for ThreatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a normalised event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A failed login (sshd "Failed password", an HTTP 401 on a login, ...).
    AuthFailure,
    /// A successful login.
    AuthSuccess,
    /// An HTTP request.
    HttpRequest,
    /// A connection attempt to `port` (firewall log, flow record).
    Connection,
}

/// One normalised event, from a parsed log line or given as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: DateTime<Utc>,
    pub source: String,
    pub kind: EventKind,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub payload: Option<String>,
    pub user_agent: Option<String>,
    /// The original line, or a rendering of the JSON event (for evidence).
    pub raw: String,
}

/// A detected threat from one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule that fired (`auth.brute_force`, `signature.sql_injection`, ...).
    pub rule: String,
    pub kind: ThreatKind,
    pub severity: Severity,
    pub source: String,
    /// Matching events (distinct ports for a port scan).
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Up to five example lines or events.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The targeted account, for brute force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Most matching events inside one window, for windowed rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_in_window: Option<u64>,
    /// Signature ids that matched, for signature rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
}
