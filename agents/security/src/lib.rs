//! security_monitor agent logic: log parsing and threat rules
//! (`threat_detection`), per-source risk correlation (`security_analysis`),
//! incident state transitions (`incident_response`) and the continuous
//! [`Detector`] over the event and DLQ streams.
//!
//! The logic modules are pure: no I/O, no clock. The caller passes the
//! current time, ids it chose and stored state (an [`Incident`] from KV
//! `agentry-incidents`) and stores what comes back (the incident, and a
//! [`QuarantineChange`] for KV `agentry-quarantine`).
//!
//! The agent around them: [`agent`] (the capabilities), [`monitor`] (the
//! background loop over events, DLQ and results), [`respond`] (carrying out
//! an incident change: KV and events) and [`store`] (the two buckets).

pub mod agent;
mod analysis;
mod detection;
pub mod detector;
mod incident;
pub mod monitor;
pub mod parse;
mod respond;
pub mod signatures;
mod store;
mod types;

pub use agent::{Config, SecurityMonitor};

pub use agentry_agent_kit::LogicError;
pub use analysis::{RiskComponents, security_analysis};
pub use detection::threat_detection;
pub use detector::{Alert, AlertKind, Detector, DetectorConfig, Observation, ObservationKind};
pub use incident::{
    Incident, IncidentStatus, QuarantineChange, TimelineEntry, incident_response, quarantine_key,
};
pub use types::{Event, EventKind, Finding, Severity, ThreatKind};
