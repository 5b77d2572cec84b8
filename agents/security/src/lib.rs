//! The `security_monitor` agent: log parsing and threat rules
//! (`threat_detection`), per-source risk correlation (`security_analysis`),
//! incident state transitions (`incident_response`) and the continuous
//! [`alert_rules`] over the event and DLQ streams.
//!
//! The logic modules are pure: no I/O, no clock. The caller passes the
//! current time, ids it chose and stored state (an [`Incident`] from KV
//! `agentry-incidents`) and stores what comes back (the incident, and a
//! [`QuarantineChange`] for KV `agentry-quarantine`).
//!
//! | module | holds |
//! |---|---|
//! | `threat_detection/` | the `threat_detection` capability: log lines to findings |
//! | `security_analysis` | the `security_analysis` capability: risk per source |
//! | `incident_response/` | the `incident_response` capability: incident state machine |
//! | `parse`, `signatures`, `types` | log and event parsing, bundled attack signatures, shared types |
//! | [`alert_rules`] | sliding-window rules (flood, probing, failure anomaly) over observations |
//! | [`stream_watch`] | the background loop: events, DLQ and results into [`alert_rules`], alerts into incidents |
//! | `respond` | carrying out an incident change: KV writes and events |
//! | `store` | the `agentry-incidents` and `agentry-quarantine` buckets |
//! | [`agent`] | the agent on the runtime: the three capabilities and the background watch |

pub mod agent;
pub mod alert_rules;
mod incident_response;
pub mod parse;
mod respond;
mod security_analysis;
pub mod signatures;
mod store;
pub mod stream_watch;
mod threat_detection;
mod types;

pub use agent::{Config, SecurityMonitor};

pub use agentry_agent_kit::LogicError;
pub use alert_rules::{Alert, AlertKind, Detector, DetectorConfig, Observation, ObservationKind};
pub use incident_response::{
    Incident, IncidentStatus, QuarantineChange, TimelineEntry, incident_response, quarantine_key,
};
pub use security_analysis::{RiskComponents, security_analysis};
pub use threat_detection::threat_detection;
pub use types::{Event, EventKind, Finding, Severity, ThreatKind};
