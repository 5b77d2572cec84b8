//! Workflow definitions: the model, its parsing and validation, and the CEL
//! expressions it carries.
//!
//! ```text
//! text (YAML|JSON) --Definition::parse--> Definition --Definition::check--> Compiled
//!                    schema + serde                    semantics + CEL        executor API
//! ```
//!
//! - [`definition`]: the model ([`Definition`], [`Step`], [`StepKind`], ...).
//! - [`parse`]: YAML/JSON detection and the embedded JSON Schema ([`SCHEMA`]).
//! - [`validate`]: [`Definition::check`], every semantic problem with its path
//!   (`compile`: the CEL part of it).
//! - `dag`: `needs` graph, cycles, topological order, visibility.
//! - [`cel`]: the CEL environment, cost limits and static checks.
//! - [`convert`]: JSON <-> CEL values (JSON integers are CEL `int`, never `uint`).
//! - [`eval`]: [`EvalContext`] (what expressions see) and [`EvalError`].
//! - [`compiled`]: [`Compiled`], what the executor asks at each event.
//! - [`retry`], [`duration`]: retry policies and duration strings.
//! - [`state`]: run state as stored in KV `agentry-runs`.
//! - [`store`]: definitions in KV `agentry-workflows`.
//!
//! Errors of a definition are [`DefinitionErrors`]: every problem, each a
//! [`DefinitionError`] with a path such as `steps[3].when` and an
//! [`ErrorKind`].

/// Where the workflow JSON Schema is, relative to this file. `include_str!`
/// needs a literal, so the path is a macro; point it at the repository's
/// `schemas/workflow.schema.json`.
macro_rules! workflow_schema_path {
    () => {
        "../../../schemas/workflow.schema.json"
    };
}

/// The example workflows that the tests parse and check (valid ones) or
/// expect to fail (`*.invalid.*`).
#[cfg(test)]
const EXAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/examples/workflows");

pub mod cel;
mod compile;
pub mod compiled;
pub mod convert;
pub(crate) mod dag;
pub mod definition;
pub mod duration;
pub mod error;
pub mod eval;
pub mod parse;
pub mod retry;
pub mod state;
pub mod store;
pub mod validate;

#[cfg(test)]
mod tests;

pub use compiled::{Compiled, InputError, Progress, StepStatuses};
pub use definition::{
    ChildRef, Compensation, DEFAULT_MAX_PARALLEL, DEFAULT_TIMEOUT, Definition, Expr, InputMapping,
    OnError, Step, StepId, StepKind, WaitFor,
};
pub use duration::Duration;
pub use error::{DefinitionError, DefinitionErrors, ErrorKind};
pub use eval::{EvalContext, EvalError, RunInfo, StepState, StepStatus};
pub use parse::SCHEMA;
pub use retry::{Failure, RetryOn, RetryPolicy};
pub use state::{RunState, RunStatus};

/// Longest definition text accepted by [`Definition::parse`].
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// Most steps in one workflow.
pub const MAX_STEPS: usize = 200;
/// Highest `max_parallel` (workflow default or per step).
pub const MAX_PARALLEL: u32 = 100;
/// Deepest chain of child workflows a run may start. The check refuses a
/// workflow that runs itself; longer loops (a -> b -> a) go through the
/// registry, so the executor enforces this bound when it starts a child.
pub const MAX_CHILD_DEPTH: u32 = 8;
