//! Compiling a definition's CEL: every expression with the scope it is
//! written in (which steps it may see, whether `item`/`index` exist), plus
//! the default output and the `input_schema` validator. Runs inside
//! [`Definition::check`].

use std::collections::HashMap;

use cel::Program;

use super::cel::{self as wcel, Expect, Scope, StepRef};
use super::compiled::{CompiledInput, CompiledStep};
use super::dag::Dag;
use super::definition::{Definition, Expr, InputMapping, StepId};
use super::error::{ErrorKind, field_path};
use super::validate::Report;

impl Report {
    pub(crate) fn cel(
        &mut self,
        path: &str,
        source: &str,
        scope: &Scope<'_>,
        expect: Expect,
    ) -> Option<Program> {
        match wcel::compile(source, scope, expect) {
            Ok(program) => Some(program),
            Err(problems) => {
                for p in problems {
                    self.push(path, p.kind, p.message);
                }
                None
            }
        }
    }

    pub(crate) fn mapping(
        &mut self,
        base: &str,
        mapping: Option<&InputMapping>,
        scope: &Scope<'_>,
    ) -> Option<CompiledInput> {
        match mapping {
            None => Some(CompiledInput::Empty),
            Some(InputMapping::Expr(expr)) => self
                .cel(base, expr.as_str(), scope, Expect::Map)
                .map(|program| CompiledInput::Expr {
                    at: base.to_owned(),
                    program,
                }),
            Some(InputMapping::Fields(fields)) => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, expr) in fields {
                    let path = field_path(base, name);
                    if let Some(program) = self.cel(&path, expr.as_str(), scope, Expect::Any) {
                        out.push((name.clone(), path, program));
                    }
                }
                (out.len() == fields.len()).then_some(CompiledInput::Fields(out))
            }
        }
    }
}

impl Definition {
    /// Compiles every step expression; `None` if any failed.
    pub(crate) fn compile_steps(
        &self,
        index: &HashMap<StepId, usize>,
        dag: Option<&Dag>,
        report: &mut Report,
    ) -> Option<Vec<CompiledStep>> {
        let mut out = Vec::with_capacity(self.steps.len());
        let mut complete = true;
        for (i, step) in self.steps.iter().enumerate() {
            let base = format!("steps[{i}]");
            let sees = |own: bool| {
                move |id: &str| -> StepRef {
                    match index.get(id) {
                        None => StepRef::Unknown,
                        Some(&j) if j == i && own => StepRef::Visible,
                        Some(&j) if j == i => StepRef::Hidden(format!(
                            "step `{id}` cannot read its own result here (only its compensate input can)"
                        )),
                        // With a cycle there is no order to judge by: syntax only.
                        Some(&j) if dag.is_none_or(|d| d.is_ancestor(j, i)) => StepRef::Visible,
                        Some(_) => StepRef::Hidden(format!(
                            "step `{id}` is not among the needs of `{}` (directly or through other steps), \
                             so it may not have run yet: add it to `needs`",
                            step.id
                        )),
                    }
                }
            };
            let before = sees(false);
            let after = sees(true);
            let plain = Scope {
                foreach: false,
                step: &before,
            };
            let per_item = Scope {
                foreach: step.foreach.is_some(),
                step: &before,
            };
            let compensation = Scope {
                foreach: false,
                step: &after,
            };

            let mut compile = |field: &str, expr: &Expr, expect: Expect| {
                let path = format!("{base}.{field}");
                report
                    .cel(&path, expr.as_str(), &plain, expect)
                    .map(|p| (path, p))
            };
            let when = step.when.as_ref().map(|e| compile("when", e, Expect::Bool));
            let foreach = step
                .foreach
                .as_ref()
                .map(|e| compile("foreach", e, Expect::List));
            let input = report.mapping(&format!("{base}.input"), step.input.as_ref(), &per_item);
            let compensate = step.compensate.as_ref().map(|c| {
                report.mapping(
                    &format!("{base}.compensate.input"),
                    c.input.as_ref(),
                    &compensation,
                )
            });

            match (when, foreach, input, compensate) {
                (Some(None), ..) | (_, Some(None), ..) | (_, _, None, _) | (.., Some(None)) => {
                    complete = false
                }
                (when, foreach, Some(input), compensate) => out.push(CompiledStep {
                    when: when.flatten(),
                    foreach: foreach.flatten(),
                    input,
                    compensate: compensate.flatten(),
                }),
            }
        }
        complete.then_some(out)
    }

    pub(crate) fn compile_output(
        &self,
        index: &HashMap<StepId, usize>,
        report: &mut Report,
    ) -> Option<Program> {
        let every = |id: &str| {
            if index.contains_key(id) {
                StepRef::Visible
            } else {
                StepRef::Unknown
            }
        };
        let scope = Scope {
            foreach: false,
            step: &every,
        };
        match &self.output {
            Some(expr) => report.cel("output", expr.as_str(), &scope, Expect::Any),
            None => {
                // A generated map of every step's output; ids are CEL-safe identifiers.
                let entries: Vec<String> = self
                    .steps
                    .iter()
                    .map(|s| format!("'{0}': has(steps.{0}) ? steps.{0}.output : null", s.id))
                    .collect();
                let source = format!("{{{}}}", entries.join(", "));
                match wcel::env().compile(&source) {
                    Ok(program) => Some(program),
                    Err(e) => {
                        report.push(
                            "output",
                            ErrorKind::CelSyntax,
                            format!("generated output failed to compile: {e}"),
                        );
                        None
                    }
                }
            }
        }
    }

    pub(crate) fn compile_input_schema(
        &self,
        report: &mut Report,
    ) -> Option<jsonschema::Validator> {
        let schema = self.input_schema.as_ref()?;
        match jsonschema::draft202012::new(schema) {
            Ok(validator) => Some(validator),
            Err(e) => {
                report.push("input_schema", ErrorKind::InvalidInputSchema, e.to_string());
                None
            }
        }
    }
}
