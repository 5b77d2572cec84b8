//! Errors found in a workflow definition: each one says where (a path such as
//! `steps[3].when`) and what (an [`ErrorKind`]), and they are reported all at
//! once so an author fixes a definition in one round trip.

use std::fmt;

/// What is wrong with a definition. Callers branch on this (and tests assert
/// on it); the message is for humans. [`ErrorKind::as_str`] is the stable
/// spelling used in the `$comment` of the invalid examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text is neither valid JSON nor valid YAML.
    Syntax,
    /// The text is longer than [`super::MAX_DEFINITION_BYTES`].
    TooLarge,
    /// The document does not match `schemas/workflow.schema.json`.
    Schema,
    /// The JSON could not be read into the model although the schema passed
    /// (a schema/model mismatch: report it as a bug).
    Model,
    /// A workflow, capability or signal name breaks its pattern.
    InvalidName,
    /// A workflow version (or a child's) is 0.
    InvalidVersion,
    /// The workflow has no step.
    NoSteps,
    /// More than [`super::MAX_STEPS`] steps.
    TooManySteps,
    /// Two steps share an id.
    DuplicateStepId,
    /// `needs` names a step that does not exist.
    UnknownNeed,
    /// A step lists itself in `needs`.
    SelfDependency,
    /// `needs` edges form a cycle; the message names it `a -> b -> a`.
    Cycle,
    /// A step or compensation names a capability nobody provides.
    UnknownCapability,
    /// A child workflow (name, version) is not known.
    UnknownWorkflow,
    /// A step starts the workflow it belongs to as its own child.
    RecursiveWorkflow,
    /// A duration is zero where that makes no sense, or above
    /// [`super::duration::MAX_DURATION`].
    InvalidDuration,
    /// A retry policy is unusable (no attempts, too many, `initial > max`,
    /// a multiplier below 1).
    InvalidRetry,
    /// `max_parallel` is zero or above [`super::MAX_PARALLEL`].
    InvalidMaxParallel,
    /// A field that has no meaning for this kind of step (e.g. `input` on a
    /// `wait_for` step, `max_parallel` without `foreach`).
    FieldNotAllowed,
    /// A `wait_for` step without a signal name.
    MissingSignal,
    /// `input_schema` is not a usable JSON Schema.
    InvalidInputSchema,
    /// A CEL expression does not parse.
    CelSyntax,
    /// A CEL expression is longer than [`super::cel::MAX_EXPRESSION_LEN`].
    CelTooLong,
    /// A CEL expression nests brackets deeper than
    /// [`super::cel::MAX_EXPRESSION_NESTING`].
    CelTooDeep,
    /// A CEL expression nests macros (`map`, `filter`, `all`, `exists`, ...)
    /// deeper than [`super::cel::MAX_COMPREHENSION_NESTING`].
    CelTooComplex,
    /// A CEL expression names a step that does not exist (`steps.nope`).
    CelUnknownStep,
    /// A CEL expression names a step that is not an ancestor through `needs`,
    /// so it may not have run yet (or names the step itself).
    CelStepNotVisible,
    /// A CEL expression uses a variable that is not defined where it is used
    /// (`item` outside `foreach`, a typo such as `inptu`).
    CelUnknownVariable,
    /// A CEL expression is a literal of the wrong type (`when: "'yes'"`,
    /// `foreach: "3"`, an `input` expression that is a list).
    CelWrongType,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 29] = [
        Self::Syntax,
        Self::TooLarge,
        Self::Schema,
        Self::Model,
        Self::InvalidName,
        Self::InvalidVersion,
        Self::NoSteps,
        Self::TooManySteps,
        Self::DuplicateStepId,
        Self::UnknownNeed,
        Self::SelfDependency,
        Self::Cycle,
        Self::UnknownCapability,
        Self::UnknownWorkflow,
        Self::RecursiveWorkflow,
        Self::InvalidDuration,
        Self::InvalidRetry,
        Self::InvalidMaxParallel,
        Self::FieldNotAllowed,
        Self::MissingSignal,
        Self::InvalidInputSchema,
        Self::CelSyntax,
        Self::CelTooLong,
        Self::CelTooDeep,
        Self::CelTooComplex,
        Self::CelUnknownStep,
        Self::CelStepNotVisible,
        Self::CelUnknownVariable,
        Self::CelWrongType,
    ];

    /// Stable snake_case spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::TooLarge => "too_large",
            Self::Schema => "schema",
            Self::Model => "model",
            Self::InvalidName => "invalid_name",
            Self::InvalidVersion => "invalid_version",
            Self::NoSteps => "no_steps",
            Self::TooManySteps => "too_many_steps",
            Self::DuplicateStepId => "duplicate_step_id",
            Self::UnknownNeed => "unknown_need",
            Self::SelfDependency => "self_dependency",
            Self::Cycle => "cycle",
            Self::UnknownCapability => "unknown_capability",
            Self::UnknownWorkflow => "unknown_workflow",
            Self::RecursiveWorkflow => "recursive_workflow",
            Self::InvalidDuration => "invalid_duration",
            Self::InvalidRetry => "invalid_retry",
            Self::InvalidMaxParallel => "invalid_max_parallel",
            Self::FieldNotAllowed => "field_not_allowed",
            Self::MissingSignal => "missing_signal",
            Self::InvalidInputSchema => "invalid_input_schema",
            Self::CelSyntax => "cel_syntax",
            Self::CelTooLong => "cel_too_long",
            Self::CelTooDeep => "cel_too_deep",
            Self::CelTooComplex => "cel_too_complex",
            Self::CelUnknownStep => "cel_unknown_step",
            Self::CelStepNotVisible => "cel_step_not_visible",
            Self::CelUnknownVariable => "cel_unknown_variable",
            Self::CelWrongType => "cel_wrong_type",
        }
    }

    /// The kind spelled `s` by [`ErrorKind::as_str`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefinitionError {
    /// Where: `steps[3].when`, `steps[0].input.city`, `timeout`, or empty for
    /// the whole document.
    pub path: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl DefinitionError {
    pub fn new(path: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "<definition>"
        } else {
            &self.path
        };
        write!(f, "{path}: {} ({})", self.message, self.kind)
    }
}

/// Every problem found in a definition (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionErrors(Vec<DefinitionError>);

impl DefinitionErrors {
    pub(crate) fn new(errors: Vec<DefinitionError>) -> Self {
        Self(errors)
    }

    pub(crate) fn one(
        path: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self(vec![DefinitionError::new(path, kind, message)])
    }

    pub fn errors(&self) -> &[DefinitionError] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<DefinitionError> {
        self.0
    }

    /// Whether an error of `kind` was reported at exactly `path`.
    pub fn has(&self, kind: ErrorKind, path: &str) -> bool {
        self.0.iter().any(|e| e.kind == kind && e.path == path)
    }

    /// The kinds reported, in order.
    pub fn kinds(&self) -> Vec<ErrorKind> {
        self.0.iter().map(|e| e.kind).collect()
    }
}

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("invalid workflow definition"),
            [one] => write!(f, "invalid workflow definition: {one}"),
            many => {
                write!(f, "invalid workflow definition ({} errors):", many.len())?;
                for e in many {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl IntoIterator for DefinitionErrors {
    type Item = DefinitionError;
    type IntoIter = std::vec::IntoIter<DefinitionError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Builds the path of a field under a base path: `steps[0].input` + `city`
/// gives `steps[0].input.city`; names that are not identifiers are quoted,
/// `steps[0].input["the city"]`.
pub(crate) fn field_path(base: &str, field: &str) -> String {
    let simple = field
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (base.is_empty(), simple) {
        (true, true) => field.to_owned(),
        (false, true) => format!("{base}.{field}"),
        (_, false) => format!("{base}[{}]", serde_json::Value::from(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kind names round-trip and are unique.
    #[test]
    fn kind_names_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_name(kind.as_str()), Some(kind));
        }
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    /// Field paths quote names that are not identifiers.
    #[test]
    fn field_paths() {
        assert_eq!(field_path("steps[0].input", "city"), "steps[0].input.city");
        assert_eq!(field_path("", "timeout"), "timeout");
        assert_eq!(
            field_path("steps[0].input", "the city"),
            "steps[0].input[\"the city\"]"
        );
    }

    /// Display lists every error with its path and kind.
    #[test]
    fn display_lists_everything() {
        let errs = DefinitionErrors::new(vec![
            DefinitionError::new("steps[1].needs", ErrorKind::UnknownNeed, "no step `x`"),
            DefinitionError::new("", ErrorKind::Syntax, "bad"),
        ]);
        let text = errs.to_string();
        assert!(text.contains("steps[1].needs: no step `x` (unknown_need)"));
        assert!(text.contains("<definition>: bad (syntax)"));
    }
}
