//! [`LogicError`]: why a capability refused its input.

use std::fmt;
use std::sync::Arc;

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
    /// A bundled data file failed to load (a build defect): what was being
    /// read, and the parser's error when there is one.
    #[error("bundled data: {what}")]
    Data {
        what: String,
        #[source]
        source: Option<Cause>,
    },
}

/// The cause of a [`LogicError::Data`], shared so the error stays `Clone`
/// (loaded data is cached with its outcome); equal only to itself.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A [`LogicError::Data`] for `what`, caused by `e`.
pub fn bad_data(
    what: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> LogicError {
    LogicError::Data {
        what: what.into(),
        source: Some(Cause(Arc::new(e))),
    }
}

/// A [`LogicError::Data`] for `what`, without a lower cause.
pub fn missing_data(what: impl Into<String>) -> LogicError {
    LogicError::Data {
        what: what.into(),
        source: None,
    }
}

impl LogicError {
    /// A short machine-readable code for the error payload of a failed task.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidInput(_) => "invalid_input",
            Self::Cycle(_) => "cycle",
            Self::TooLarge(_) => "too_large",
            Self::Conflict(_) => "conflict",
            Self::Data { .. } => "internal",
        }
    }
}

impl From<LogicError> for TaskError {
    /// A permanent failure with the error's [code](LogicError::code).
    fn from(e: LogicError) -> Self {
        TaskError::Permanent {
            code: e.code(),
            message: agentry::error::chain(&e),
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
            (missing_data("faq"), "internal"),
        ];
        for (e, code) in cases {
            assert_eq!(e, e.clone());
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

    /// A data error keeps the parser's error as its source; the task's
    /// message shows both.
    #[test]
    fn data_errors_keep_their_cause() {
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = bad_data("faq.json", json);
        assert_eq!(e.to_string(), "bundled data: faq.json");
        assert!(std::error::Error::source(&e).is_some());
        let TaskError::Permanent { message, .. } = TaskError::from(e) else {
            panic!("not permanent");
        };
        assert!(
            message.starts_with("bundled data: faq.json: EOF"),
            "{message}"
        );
        assert!(std::error::Error::source(&missing_data("x")).is_none());
    }
}
