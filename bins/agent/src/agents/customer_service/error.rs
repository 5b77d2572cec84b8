//! Errors of the customer_service logic.

/// Why a customer_service capability could not produce an output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogicError {
    /// The task input is malformed or inconsistent; retrying cannot help.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A bundled data file failed to parse (a build defect).
    #[error("bundled data: {0}")]
    Data(String),
}

impl LogicError {
    /// Whether retrying the same task can succeed (never, for pure logic).
    pub fn is_permanent(&self) -> bool {
        match self {
            LogicError::InvalidInput(_) | LogicError::Data(_) => true,
        }
    }
}
