//! The semantic check: everything the JSON Schema cannot say, every problem
//! collected with its path, and on success the [`Compiled`] workflow.
//!
//! It re-checks the limits the schema also states (names, minimums), so a
//! definition built in code or read back from storage gets the same verdict.

use std::collections::HashMap;

use super::cel as wcel;
use super::compiled::Compiled;
use super::dag::Dag;
use super::definition::{
    Definition, Step, StepId, StepKind, is_capability_name, is_signal_name, is_workflow_name,
};
use super::duration::{Duration, MAX_DURATION};
use super::error::{DefinitionError, DefinitionErrors, ErrorKind};
use super::retry::{MAX_ATTEMPTS, RetryPolicy};
use super::{MAX_PARALLEL, MAX_STEPS};

/// Collects problems while the check runs.
#[derive(Default)]
pub(crate) struct Report(pub(crate) Vec<DefinitionError>);

impl Report {
    pub(crate) fn push(
        &mut self,
        path: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) {
        self.0.push(DefinitionError::new(path, kind, message));
    }

    fn duration(&mut self, path: String, d: Duration) {
        if d.is_zero() {
            self.push(
                path,
                ErrorKind::InvalidDuration,
                "duration must be above zero",
            );
        } else if d.as_std() > MAX_DURATION {
            self.push(
                path,
                ErrorKind::InvalidDuration,
                format!("duration {d} is above the limit of 365d"),
            );
        }
    }

    fn retry(&mut self, base: &str, retry: &RetryPolicy) {
        if retry.max_attempts == 0 || retry.max_attempts > MAX_ATTEMPTS {
            self.push(
                format!("{base}.max_attempts"),
                ErrorKind::InvalidRetry,
                format!(
                    "max_attempts is {}, it must be 1..={MAX_ATTEMPTS}",
                    retry.max_attempts
                ),
            );
        }
        if !retry.multiplier.is_finite() || retry.multiplier < 1.0 {
            self.push(
                format!("{base}.multiplier"),
                ErrorKind::InvalidRetry,
                format!("multiplier is {}, it must be at least 1", retry.multiplier),
            );
        }
        if retry.initial > retry.max {
            self.push(
                format!("{base}.max"),
                ErrorKind::InvalidRetry,
                format!("max ({}) is below initial ({})", retry.max, retry.initial),
            );
        }
        for (field, d) in [("initial", retry.initial), ("max", retry.max)] {
            if d.as_std() > MAX_DURATION {
                self.push(
                    format!("{base}.{field}"),
                    ErrorKind::InvalidDuration,
                    "duration is above the limit of 365d",
                );
            }
        }
    }

    fn capability(&mut self, path: String, name: &str, caps: &dyn Fn(&str) -> bool) {
        if !is_capability_name(name) {
            self.push(
                path,
                ErrorKind::InvalidName,
                format!("`{name}` is not a capability name (^[a-z][a-z0-9_]{{0,63}}$)"),
            );
        } else if !caps(name) {
            self.push(
                path,
                ErrorKind::UnknownCapability,
                format!("no agent provides capability `{name}`"),
            );
        }
    }
}

impl Definition {
    /// Checks everything the schema cannot, collecting every problem, and
    /// compiles the result. `caps(name)` says whether a capability exists;
    /// `workflows(name, version)` whether a child workflow exists (`None`:
    /// any version).
    pub fn check(
        &self,
        caps: &dyn Fn(&str) -> bool,
        workflows: &dyn Fn(&str, Option<u32>) -> bool,
    ) -> Result<Compiled, DefinitionErrors> {
        let mut report = Report::default();
        self.check_workflow_fields(&mut report);
        if self.steps.is_empty() {
            report.push(
                "steps",
                ErrorKind::NoSteps,
                "a workflow needs at least one step",
            );
            return Err(DefinitionErrors::new(report.0));
        }
        if self.steps.len() > MAX_STEPS {
            // Stop here: the remaining checks grow with the square of the step count.
            report.push(
                "steps",
                ErrorKind::TooManySteps,
                format!("{} steps, the limit is {MAX_STEPS}", self.steps.len()),
            );
            return Err(DefinitionErrors::new(report.0));
        }

        let mut index: HashMap<StepId, usize> = HashMap::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            if let Some(&first) = index.get(&step.id) {
                report.push(
                    format!("steps[{i}].id"),
                    ErrorKind::DuplicateStepId,
                    format!("step id `{}` is already used by steps[{first}]", step.id),
                );
            } else {
                index.insert(step.id.clone(), i);
            }
        }

        let mut needs: Vec<Vec<usize>> = Vec::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            needs.push(self.check_needs(i, step, &index, &mut report));
            self.check_step(i, step, caps, workflows, &mut report);
        }

        let dag = match Dag::new(needs) {
            Ok(dag) => Some(dag),
            Err(cycles) => {
                for cycle in cycles {
                    let names: Vec<&str> =
                        cycle.iter().map(|&i| self.steps[i].id.as_str()).collect();
                    report.push(
                        format!("steps[{}].needs", cycle[0]),
                        ErrorKind::Cycle,
                        format!("needs form a cycle: {}", names.join(" -> ")),
                    );
                }
                None
            }
        };

        let compile = || {
            let mut cel_report = Report::default();
            let steps = self.compile_steps(&index, dag.as_ref(), &mut cel_report);
            let output = self.compile_output(&index, &mut cel_report);
            (cel_report, steps, output)
        };
        let (cel_report, compiled_steps, output) = wcel::on_big_stack(compile);
        report.0.extend(cel_report.0);
        let input_schema = self.compile_input_schema(&mut report);

        match (report.0.is_empty(), dag, compiled_steps, output) {
            (true, Some(dag), Some(steps), Some(output)) => {
                let order = dag
                    .order()
                    .iter()
                    .map(|&i| self.steps[i].id.clone())
                    .collect();
                Ok(Compiled {
                    definition: self.clone(),
                    dag,
                    index,
                    order,
                    steps,
                    output,
                    input_schema,
                })
            }
            _ => Err(DefinitionErrors::new(report.0)),
        }
    }

    fn check_workflow_fields(&self, report: &mut Report) {
        if !is_workflow_name(&self.name) {
            report.push(
                "name",
                ErrorKind::InvalidName,
                format!(
                    "`{}` is not a workflow name (^[a-z][a-z0-9_-]{{0,63}}$)",
                    self.name
                ),
            );
        }
        if self.version == 0 {
            report.push(
                "version",
                ErrorKind::InvalidVersion,
                "version must be at least 1",
            );
        }
        report.duration("timeout".into(), self.timeout);
        if self.max_parallel == 0 || self.max_parallel > MAX_PARALLEL {
            report.push(
                "max_parallel",
                ErrorKind::InvalidMaxParallel,
                format!(
                    "max_parallel is {}, it must be 1..={MAX_PARALLEL}",
                    self.max_parallel
                ),
            );
        }
    }

    fn check_needs(
        &self,
        i: usize,
        step: &Step,
        index: &HashMap<StepId, usize>,
        report: &mut Report,
    ) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::with_capacity(step.needs.len());
        for (k, need) in step.needs.iter().enumerate() {
            let path = format!("steps[{i}].needs[{k}]");
            match index.get(need) {
                None => report.push(path, ErrorKind::UnknownNeed, format!("no step `{need}`")),
                Some(_) if *need == step.id => {
                    report.push(
                        path,
                        ErrorKind::SelfDependency,
                        format!("step `{need}` needs itself"),
                    );
                }
                Some(&j) if !out.contains(&j) => out.push(j),
                Some(_) => {}
            }
        }
        out
    }

    fn check_step(
        &self,
        i: usize,
        step: &Step,
        caps: &dyn Fn(&str) -> bool,
        workflows: &dyn Fn(&str, Option<u32>) -> bool,
        report: &mut Report,
    ) {
        let base = format!("steps[{i}]");
        match &step.kind {
            StepKind::Task { capability } => {
                report.capability(format!("{base}.capability"), capability, caps)
            }
            StepKind::Child { name, version } => {
                let path = format!("{base}.workflow");
                if !is_workflow_name(name) {
                    report.push(
                        format!("{path}.name"),
                        ErrorKind::InvalidName,
                        format!("`{name}` is not a workflow name"),
                    );
                } else if *version == Some(0) {
                    report.push(
                        format!("{path}.version"),
                        ErrorKind::InvalidVersion,
                        "version must be at least 1",
                    );
                } else if *name == self.name {
                    report.push(
                        path,
                        ErrorKind::RecursiveWorkflow,
                        format!("workflow `{name}` cannot run itself as a child"),
                    );
                } else if !workflows(name, *version) {
                    let which =
                        version.map_or_else(|| name.clone(), |v| format!("{name} version {v}"));
                    report.push(
                        path,
                        ErrorKind::UnknownWorkflow,
                        format!("no workflow `{which}`"),
                    );
                }
            }
            StepKind::Signal { name, timeout } => {
                let path = format!("{base}.wait_for.signal");
                if name.trim().is_empty() {
                    report.push(
                        path,
                        ErrorKind::MissingSignal,
                        "wait_for needs a signal name",
                    );
                } else if !is_signal_name(name) {
                    report.push(
                        path,
                        ErrorKind::InvalidName,
                        format!("`{name}` is not a signal name (^[a-z][a-z0-9_]{{0,63}}$)"),
                    );
                }
                if let Some(t) = timeout {
                    report.duration(format!("{base}.wait_for.timeout"), *t);
                }
                let present = [
                    ("input", step.input.is_some()),
                    ("retry", step.retry.is_some()),
                    ("timeout", step.timeout.is_some()),
                    ("foreach", step.foreach.is_some()),
                    ("compensate", step.compensate.is_some()),
                ];
                for (field, _) in present.iter().filter(|(_, there)| *there) {
                    let hint = if *field == "timeout" {
                        " (use wait_for.timeout)"
                    } else {
                        ""
                    };
                    report.push(
                        format!("{base}.{field}"),
                        ErrorKind::FieldNotAllowed,
                        format!("a wait_for step takes no `{field}`{hint}"),
                    );
                }
            }
        }
        if let Some(t) = step.timeout {
            report.duration(format!("{base}.timeout"), t);
        }
        if let Some(retry) = &step.retry {
            report.retry(&format!("{base}.retry"), retry);
        }
        if let Some(n) = step.max_parallel {
            if step.foreach.is_none() {
                report.push(
                    format!("{base}.max_parallel"),
                    ErrorKind::FieldNotAllowed,
                    "max_parallel only applies to a foreach step",
                );
            } else if n == 0 || n > MAX_PARALLEL {
                report.push(
                    format!("{base}.max_parallel"),
                    ErrorKind::InvalidMaxParallel,
                    format!("max_parallel is {n}, it must be 1..={MAX_PARALLEL}"),
                );
            }
        }
        if let Some(comp) = &step.compensate {
            report.capability(
                format!("{base}.compensate.capability"),
                &comp.capability,
                caps,
            );
            if let Some(retry) = &comp.retry {
                report.retry(&format!("{base}.compensate.retry"), retry);
            }
            if let Some(t) = comp.timeout {
                report.duration(format!("{base}.compensate.timeout"), t);
            }
        }
    }
}
