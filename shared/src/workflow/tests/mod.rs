//! Tests across the module: every error kind with its path (`check`), the
//! executor helpers over real graphs and CEL mappings end to end
//! (`runtime`), and the example workflows under `schemas/examples/workflows/`
//! (`examples`).

mod check;
mod examples;
mod runtime;

use serde_json::{Value, json};

use super::*;

/// The built-in capabilities: the list `agentry setup` creates consumers for.
pub(super) const BUILTIN: &[&str] = crate::topology::BUILTIN_CAPABILITIES;

pub(super) fn caps(name: &str) -> bool {
    BUILTIN.contains(&name)
}

/// One other workflow exists: `other`, version 2.
pub(super) fn workflows(name: &str, version: Option<u32>) -> bool {
    name == "other" && version.is_none_or(|v| v == 2)
}

pub(super) fn id(s: &str) -> StepId {
    StepId::new(s).unwrap()
}

pub(super) fn run_info() -> RunInfo {
    RunInfo {
        id: "run-1".into(),
        tenant: None,
        workflow: "w".into(),
        version: 1,
    }
}

pub(super) fn compile_yaml(yaml: &str) -> Compiled {
    let def = Definition::parse(yaml).unwrap_or_else(|e| panic!("{e}"));
    def.check(&caps, &workflows)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Checks a document without the schema (as for a definition built in code),
/// so the semantic check itself is what is tested.
pub(super) fn check_doc(doc: Value) -> Result<Compiled, DefinitionErrors> {
    let def: Definition = serde_json::from_value(doc).unwrap();
    def.check(&caps, &workflows)
}

pub(super) fn errors_of(doc: Value) -> DefinitionErrors {
    match check_doc(doc) {
        Ok(c) => panic!("expected errors, {} checked fine", c.definition().key()),
        Err(e) => e,
    }
}

pub(super) fn workflow(steps: Value) -> Value {
    json!({"name": "w", "version": 1, "steps": steps})
}

/// Asserts exactly one error, of `kind` at `path`, and returns its message.
pub(super) fn only(errs: &DefinitionErrors, kind: ErrorKind, path: &str) -> String {
    assert_eq!(errs.errors().len(), 1, "{errs}");
    assert!(errs.has(kind, path), "want {kind} at {path}: {errs}");
    errs.errors()[0].message.clone()
}
