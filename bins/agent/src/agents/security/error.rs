//! Errors of the security_monitor logic.

/// Why a security capability could not produce an output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogicError {
    /// The task input is malformed; retrying cannot help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The action does not apply to the incident's current state (for
    /// example updating a closed incident); retrying cannot help.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bundled data file failed to load (a build defect).
    #[error("bundled data: {0}")]
    Data(String),
}

impl LogicError {
    /// Whether retrying the same task can succeed (never, for pure logic).
    pub fn is_permanent(&self) -> bool {
        match self {
            LogicError::InvalidInput(_) | LogicError::Conflict(_) | LogicError::Data(_) => true,
        }
    }
}
