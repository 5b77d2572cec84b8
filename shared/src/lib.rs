//! `agentry`: the protocol and everything the agentry binaries share.
//!
//! Module map:
//! - [`id`]: validated identifiers (request, run, agent ids, capability names);
//! - [`subject`]: every subject, stream, consumer and bucket name;
//! - [`event`]: the CloudEvents <-> NATS binding (structured and binary mode);
//! - [`reason`]: the closed set of rejection and dead-letter reasons;

pub mod event;
pub mod id;
pub mod reason;
pub mod subject;

pub use id::{AgentId, Capability, RequestId, RunId};
