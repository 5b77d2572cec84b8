//! The built-in agents.

use std::sync::Arc;

use agentry::agent::Agent;

mod echo;

pub use echo::Echo;

/// Settings of the built-in agents.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Settings {}

/// Builds the agent of `kind`.
pub fn build(kind: &str, _settings: &Settings) -> Result<Arc<dyn Agent>, crate::AgentsError> {
    match kind {
        "echo" => Ok(Arc::new(Echo::default())),
        other => Err(crate::AgentsError::UnknownKind(other.to_owned())),
    }
}
