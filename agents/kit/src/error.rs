//! [`LogicError`]: why a capability refused its input.

use agentry::agent::TaskError;

/// Why a capability could not produce an output.
///
/// Every variant is permanent: pure logic fails the same input the same way
/// on every attempt, so the runtime must not retry it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogicError {
    /// The input does not have the documented shape or violates a rule; the
    /// message names the field (`tasks[2].duration_h: must be > 0`).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The task graph has a dependency cycle; the ids are listed in
    /// precedence order and the first id is repeated at the end.
    #[error("invalid input: cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// The input exceeds a size guard (cells, points, tasks).
    #[error("input too large: {0}")]
    TooLarge(String),
    /// The action does not apply to the current state (for example updating
    /// a closed incident).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A bundled data file failed to load (a build defect).
    #[error("bundled data: {0}")]
    Data(String),
}

impl LogicError {
    /// A short machine-readable code for the error payload of a failed task.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Cycle(_) => "cycle",
            Self::TooLarge(_) => "too_large",
            Self::Conflict(_) => "conflict",
            Self::Data(_) => "internal",
        }
    }
}

impl From<LogicError> for TaskError {
    /// A permanent failure with the error's [code](LogicError::code).
    fn from(e: LogicError) -> Self {
        TaskError::Permanent {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// Shorthand for a [`LogicError::InvalidInput`].
pub fn invalid(message: impl Into<String>) -> LogicError {
    LogicError::InvalidInput(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_a_permanent_task_error_with_its_code() {
        let cases = [
            (invalid("x: bad"), "invalid_input"),
            (LogicError::Cycle(vec!["a".into(), "a".into()]), "cycle"),
            (LogicError::TooLarge("n".into()), "too_large"),
            (LogicError::Conflict("closed".into()), "conflict"),
            (LogicError::Data("faq".into()), "internal"),
        ];
        for (e, code) in cases {
            let shown = e.to_string();
            match TaskError::from(e) {
                TaskError::Permanent { code: got, message } => {
                    assert_eq!(got, code);
                    assert_eq!(message, shown);
                }
                other => panic!("{other:?} is not permanent"),
            }
        }
        assert_eq!(
            LogicError::Cycle(vec!["a".into(), "b".into(), "a".into()]).to_string(),
            "invalid input: cycle: a -> b -> a"
        );
    }
}
