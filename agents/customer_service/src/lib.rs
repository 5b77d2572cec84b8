//! customer_service agent logic: intent classification, sentiment, FAQ
//! retrieval, conversation memory, guided resolution and escalation.
//!
//! The logic modules are pure: no I/O, no clock. The caller passes in
//! stored state (the [`Conversation`] from Redis, a stored [`Ticket`] from
//! KV) and the time and ids it chose, and stores what comes back.
//!
//! The agent around them: [`agent`] (the capabilities and the escalation
//! event), [`memory_store`] (conversations in Redis or in process) and
//! [`ticket_store`] (tickets in KV `agentry-tickets`).
//!
//! | capability | function |
//! |---|---|
//! | `customer_inquiry` | [`customer_inquiry`] |
//! | `issue_resolution` | [`issue_resolution`] |
//! | `escalation` | [`escalation()`] |

pub mod agent;
pub mod escalation;
pub mod faq;
mod inquiry;
pub mod intent;
pub mod memory;
pub mod memory_store;
pub mod resolution;
pub mod sentiment;
mod text;
pub mod ticket;
mod ticket_store;

pub use agent::{Config, CustomerService};

pub use agentry_agent_kit::LogicError;
pub use escalation::escalation;
pub use inquiry::{conversation_id, customer_inquiry};
pub use intent::{EvalReport, Intent, evaluate};
pub use memory::{Conversation, Entities, Turn};
pub use resolution::issue_resolution;
pub use sentiment::{Label, Sentiment};
pub use ticket::{Priority, Queue, Status, Ticket, Tier};
