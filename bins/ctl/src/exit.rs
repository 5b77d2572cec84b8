//! Exit codes of the client commands, the same for every command (listed in
//! `agentry --help` and the README):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | completed |
//! | 1 | the task or run failed (or the command itself failed) |
//! | 2 | the request was rejected, or the command line was wrong |
//! | 3 | timed out waiting for a result |

use std::process::ExitCode;

use agentry::client::Outcome;
use agentry::event::types;

/// The request or run completed.
pub const COMPLETED: u8 = 0;
/// The task or run failed, was cancelled or timed out in the engine; or the
/// command could not do its work (e.g. NATS unreachable).
pub const FAILED: u8 = 1;
/// The engine rejected the request, or the command line was wrong (clap's
/// own usage errors exit 2 as well).
pub const REJECTED: u8 = 2;
/// No result within `--timeout`; the request stays queued.
pub const TIMED_OUT: u8 = 3;

/// The text `--help` shows after the command list.
pub const HELP: &str = "\
Exit codes:
  0  completed
  1  task or run failed (or the command failed)
  2  request rejected, or usage error
  3  timed out waiting for the result

Output: only results on stdout, warnings and errors on stderr; -v or RUST_LOG
for logs. No colour when stderr is not a terminal or NO_COLOR is set.";

/// The exit code a terminal result maps to.
pub fn for_outcome(o: &Outcome) -> ExitCode {
    ExitCode::from(code_for_type(&o.ty))
}

/// The exit code of a terminal result type.
pub fn code_for_type(ty: &str) -> u8 {
    if ty == types::REQUEST_REJECTED {
        REJECTED
    } else if ty.ends_with(".completed") {
        COMPLETED
    } else {
        FAILED
    }
}

/// A command line that cannot be acted on: exits [`REJECTED`] (2), like
/// clap's own usage errors.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("{what} is not valid JSON")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read {what} from {path}")]
    Read {
        what: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The exit code for an error that ended a command: [`REJECTED`] when a
/// [`UsageError`] is anywhere in its chain, [`FAILED`] otherwise.
pub fn for_error(e: &anyhow::Error) -> ExitCode {
    let usage = e.chain().any(|c| c.downcast_ref::<UsageError>().is_some())
        || e.chain()
            .any(|c| c.downcast_ref::<agentry::id::IdError>().is_some());
    ExitCode::from(if usage { REJECTED } else { FAILED })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a failed assertion
mod tests {
    use super::*;

    #[test]
    fn result_types_map_to_documented_codes() {
        assert_eq!(code_for_type(types::TASK_COMPLETED), COMPLETED);
        assert_eq!(code_for_type(types::WORKFLOW_COMPLETED), COMPLETED);
        assert_eq!(code_for_type(types::TASK_FAILED), FAILED);
        assert_eq!(code_for_type(types::WORKFLOW_FAILED), FAILED);
        assert_eq!(code_for_type(types::WORKFLOW_CANCELLED), FAILED);
        assert_eq!(code_for_type(types::WORKFLOW_TIMED_OUT), FAILED);
        assert_eq!(code_for_type(types::REQUEST_REJECTED), REJECTED);
    }

    #[test]
    fn usage_errors_exit_two_through_context() {
        let source = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = anyhow::Error::new(UsageError::Json {
            what: "--input".into(),
            source,
        })
        .context("submitting");
        assert_eq!(for_error(&e), ExitCode::from(REJECTED));
        assert_eq!(
            for_error(&anyhow::anyhow!("nats down")),
            ExitCode::from(FAILED)
        );
    }
}
