//! Data-analysis agent logic: the `data_processing`, `statistical_analysis`
//! and `visualization` capabilities.
//!
//! - [`data_processing`]: CSV/JSON parsing, column type inference, missing
//!   values, filters, grouping and aggregates;
//! - [`statistical_analysis`]: descriptive statistics, Pearson/Spearman
//!   correlation, OLS regression with inference, outliers;
//! - [`visualization`]: line, bar, scatter and histogram charts as SVG 1.1.
//!
//! All three are pure and deterministic; size guards bound their work
//! ([`MAX_CELLS`], [`MAX_POINTS`], [`MAX_SERIES`]).
//!
//! The agent on the runtime is [`DataAnalysisAgent`] (`agent`): the logic
//! runs on the blocking pool, a large chart goes to the object store.
//! Module map: `agent`, `table` (parsing, type inference), `processing`,
//! `numeric`, `dist`, `regression`, `stats`, `charts` (input), `layout` (geometry),
//! `render` (drawing), `svg`, `tests`.

mod agent;
mod charts;
mod dist;
mod layout;
mod numeric;
mod processing;
mod regression;
mod render;
mod stats;
mod svg;
mod table;

pub use agent::{CAPABILITIES, DataAnalysisAgent, INLINE_SVG_LIMIT};
pub use agentry_agent_kit::LogicError;

pub use charts::{MAX_POINTS, MAX_SERIES, visualization};
pub use processing::{DEFAULT_LIMIT, MAX_LIMIT, data_processing};
pub use stats::statistical_analysis;
pub use table::MAX_CELLS;

#[cfg(test)]
mod tests;
