//! CPU-bound capability logic off the async workers.

use agentry::agent::TaskError;
use serde_json::Value;

use crate::LogicError;

/// Runs pure, CPU-bound capability logic on the blocking pool so that a
/// large input never stalls the async workers (heartbeats, other tasks).
/// A [`LogicError`] becomes a permanent task error; a panic too (the same
/// input would hit it again).
pub async fn run_blocking<F>(f: F) -> Result<Value, TaskError>
where
    F: FnOnce() -> Result<Value, LogicError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(TaskError::from),
        Err(e) if e.is_panic() => Err(TaskError::Permanent {
            code: "internal",
            message: "the capability logic panicked on this input".into(),
        }),
        Err(e) => Err(TaskError::retryable(format!(
            "capability logic was cancelled: {e}"
        ))),
    }
}
