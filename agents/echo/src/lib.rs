//! `echo`: returns its input. Test and benchmark fixture with optional
//! `sleep_ms`, failure modes, agent-to-agent calls and a side-effect counter.
//!
//! Module map: `agent` (the [`Echo`] agent and its input handling).

mod agent;

pub use agent::Echo;
