//! Every error kind of the semantic check, at its path.

use serde_json::{Value, json};

use super::*;

/// Syntax, TooLarge and Schema come from parsing.
#[test]
fn parse_error_kinds() {
    assert_eq!(
        Definition::parse("{").unwrap_err().kinds(),
        [ErrorKind::Syntax]
    );
    let big = "#".repeat(MAX_DEFINITION_BYTES + 1);
    assert_eq!(
        Definition::parse(&big).unwrap_err().kinds(),
        [ErrorKind::TooLarge]
    );
    let errs = Definition::parse("name: w\nversion: 1\nsteps: []\n").unwrap_err();
    assert!(errs.has(ErrorKind::Schema, "steps"), "{errs}");
}

/// Workflow-level fields: name, version, steps, timeout, max_parallel, input_schema.
#[test]
fn workflow_field_kinds() {
    let step = json!([{"id": "a", "capability": "echo"}]);
    let errs = errors_of(json!({"name": "Bad Name", "version": 1, "steps": step}));
    only(&errs, ErrorKind::InvalidName, "name");

    let errs = errors_of(json!({"name": "w", "version": 0, "steps": step}));
    only(&errs, ErrorKind::InvalidVersion, "version");

    let errs = errors_of(json!({"name": "w", "version": 1, "steps": []}));
    only(&errs, ErrorKind::NoSteps, "steps");

    let many: Vec<Value> = (0..=MAX_STEPS)
        .map(|i| json!({"id": format!("s{i}"), "capability": "echo"}))
        .collect();
    let errs = errors_of(workflow(Value::Array(many)));
    assert!(only(&errs, ErrorKind::TooManySteps, "steps").contains("201 steps"));

    let errs = errors_of(json!({"name": "w", "version": 1, "timeout": "0s", "steps": step}));
    only(&errs, ErrorKind::InvalidDuration, "timeout");
    let errs = errors_of(json!({"name": "w", "version": 1, "timeout": "366d", "steps": step}));
    only(&errs, ErrorKind::InvalidDuration, "timeout");

    let errs = errors_of(json!({"name": "w", "version": 1, "max_parallel": 0, "steps": step}));
    only(&errs, ErrorKind::InvalidMaxParallel, "max_parallel");

    let errs = errors_of(
        json!({"name": "w", "version": 1, "input_schema": {"type": "text"}, "steps": step}),
    );
    only(&errs, ErrorKind::InvalidInputSchema, "input_schema");
}

/// Step graph errors, with the cycle named in `needs` order.
#[test]
fn graph_kinds() {
    let errs = errors_of(workflow(json!([
        {"id": "a", "capability": "echo"},
        {"id": "a", "capability": "echo"}
    ])));
    assert!(only(&errs, ErrorKind::DuplicateStepId, "steps[1].id").contains("steps[0]"));

    let errs = errors_of(workflow(json!([
        {"id": "a", "capability": "echo"},
        {"id": "b", "capability": "echo", "needs": ["a", "nope"]}
    ])));
    only(&errs, ErrorKind::UnknownNeed, "steps[1].needs[1]");

    let errs = errors_of(workflow(
        json!([{"id": "a", "capability": "echo", "needs": ["a"]}]),
    ));
    only(&errs, ErrorKind::SelfDependency, "steps[0].needs[0]");

    let errs = errors_of(workflow(json!([
        {"id": "start", "capability": "echo"},
        {"id": "a", "capability": "echo", "needs": ["start", "b"]},
        {"id": "b", "capability": "echo", "needs": ["c"]},
        {"id": "c", "capability": "echo", "needs": ["a"]}
    ])));
    let message = only(&errs, ErrorKind::Cycle, "steps[1].needs");
    assert!(message.ends_with("a -> b -> c -> a"), "{message}");
}

/// Two separate cycles are both reported.
#[test]
fn every_cycle_is_reported() {
    let errs = errors_of(workflow(json!([
        {"id": "a", "capability": "echo", "needs": ["b"]},
        {"id": "b", "capability": "echo", "needs": ["a"]},
        {"id": "c", "capability": "echo", "needs": ["d"]},
        {"id": "d", "capability": "echo", "needs": ["c"]}
    ])));
    assert_eq!(errs.kinds(), [ErrorKind::Cycle, ErrorKind::Cycle]);
    assert!(errs.errors()[0].message.ends_with("a -> b -> a"));
    assert!(errs.errors()[1].message.ends_with("c -> d -> c"));
    assert_eq!(errs.errors()[1].path, "steps[2].needs");
}

/// What a step refers to outside the workflow: capabilities and child workflows.
#[test]
fn reference_kinds() {
    let errs = errors_of(workflow(json!([{"id": "a", "capability": "teleport"}])));
    only(&errs, ErrorKind::UnknownCapability, "steps[0].capability");

    let errs = errors_of(workflow(json!([{"id": "a", "capability": "Not-A-Cap"}])));
    only(&errs, ErrorKind::InvalidName, "steps[0].capability");

    let errs = errors_of(workflow(json!([
        {"id": "a", "capability": "echo", "compensate": {"capability": "undo"}}
    ])));
    only(
        &errs,
        ErrorKind::UnknownCapability,
        "steps[0].compensate.capability",
    );

    let errs = errors_of(workflow(
        json!([{"id": "a", "workflow": {"name": "other", "version": 3}}]),
    ));
    only(&errs, ErrorKind::UnknownWorkflow, "steps[0].workflow");
    assert!(
        check_doc(workflow(
            json!([{"id": "a", "workflow": {"name": "other"}}])
        ))
        .is_ok()
    );

    let errs = errors_of(workflow(json!([{"id": "a", "workflow": {"name": "w"}}])));
    only(&errs, ErrorKind::RecursiveWorkflow, "steps[0].workflow");

    let errs = errors_of(workflow(
        json!([{"id": "a", "workflow": {"name": "other", "version": 0}}]),
    ));
    only(
        &errs,
        ErrorKind::InvalidVersion,
        "steps[0].workflow.version",
    );
}

/// Step options: durations, retry, max_parallel, fields a step kind does not take, signals.
#[test]
fn step_option_kinds() {
    let errs = errors_of(workflow(
        json!([{"id": "a", "capability": "echo", "timeout": "0ms"}]),
    ));
    only(&errs, ErrorKind::InvalidDuration, "steps[0].timeout");

    for (retry, path) in [
        (json!({"max_attempts": 0}), "steps[0].retry.max_attempts"),
        (json!({"max_attempts": 101}), "steps[0].retry.max_attempts"),
        (json!({"multiplier": 0.5}), "steps[0].retry.multiplier"),
        (json!({"initial": "1m", "max": "10s"}), "steps[0].retry.max"),
    ] {
        let errs = errors_of(workflow(
            json!([{"id": "a", "capability": "echo", "retry": retry}]),
        ));
        only(&errs, ErrorKind::InvalidRetry, path);
    }

    let errs = errors_of(workflow(json!([
        {"id": "a", "capability": "echo", "foreach": "input.xs", "max_parallel": 101}
    ])));
    only(
        &errs,
        ErrorKind::InvalidMaxParallel,
        "steps[0].max_parallel",
    );

    let errs = errors_of(workflow(
        json!([{"id": "a", "capability": "echo", "max_parallel": 4}]),
    ));
    only(&errs, ErrorKind::FieldNotAllowed, "steps[0].max_parallel");

    let errs = errors_of(workflow(json!([{
        "id": "a", "wait_for": {"signal": "go"}, "input": {"x": "1"}, "timeout": "1m",
        "foreach": "[1]", "retry": {}, "compensate": {"capability": "echo"}
    }])));
    assert_eq!(errs.kinds(), [ErrorKind::FieldNotAllowed; 5], "{errs}");
    for field in ["input", "retry", "timeout", "foreach", "compensate"] {
        assert!(
            errs.has(ErrorKind::FieldNotAllowed, &format!("steps[0].{field}")),
            "{field}"
        );
    }

    let errs = errors_of(workflow(json!([{"id": "a", "wait_for": {"signal": ""}}])));
    only(&errs, ErrorKind::MissingSignal, "steps[0].wait_for.signal");
    let errs = errors_of(workflow(
        json!([{"id": "a", "wait_for": {"signal": "Go!"}}]),
    ));
    only(&errs, ErrorKind::InvalidName, "steps[0].wait_for.signal");
    let errs = errors_of(workflow(
        json!([{"id": "a", "wait_for": {"signal": "go", "timeout": "0s"}}]),
    ));
    only(
        &errs,
        ErrorKind::InvalidDuration,
        "steps[0].wait_for.timeout",
    );
}

/// Every CEL kind, at the path of the expression.
#[test]
fn cel_kinds() {
    let base = |step_b: Value| {
        workflow(json!([
            {"id": "a", "capability": "echo"},
            step_b,
            {"id": "c", "capability": "echo"}
        ]))
    };
    let cases = [
        (
            json!({"id": "b", "capability": "echo", "needs": ["a"], "when": "steps.a.output >"}),
            ErrorKind::CelSyntax,
            "steps[1].when",
        ),
        (
            json!({"id": "b", "capability": "echo", "needs": ["a"], "input": {"x": format!("'{}'", "x".repeat(4100))}}),
            ErrorKind::CelTooLong,
            "steps[1].input.x",
        ),
        (
            json!({"id": "b", "capability": "echo", "needs": ["a"], "input": {"x": format!("{}1{}", "[".repeat(33), "]".repeat(33))}}),
            ErrorKind::CelTooDeep,
            "steps[1].input.x",
        ),
        (
            json!({"id": "b", "capability": "echo", "when": "input.a.all(x, input.b.all(y, input.c.all(z, true)))"}),
            ErrorKind::CelTooComplex,
            "steps[1].when",
        ),
        (
            json!({"id": "b", "capability": "echo", "needs": ["a"], "input": {"x": "steps.nope.output"}}),
            ErrorKind::CelUnknownStep,
            "steps[1].input.x",
        ),
        (
            json!({"id": "b", "capability": "echo", "needs": ["a"], "input": "{'x': steps.c.output}"}),
            ErrorKind::CelStepNotVisible,
            "steps[1].input",
        ),
        (
            json!({"id": "b", "capability": "echo", "when": "steps.b.status == 'completed'"}),
            ErrorKind::CelStepNotVisible,
            "steps[1].when",
        ),
        (
            json!({"id": "b", "capability": "echo", "input": {"x": "item"}}),
            ErrorKind::CelUnknownVariable,
            "steps[1].input.x",
        ),
        (
            json!({"id": "b", "capability": "echo", "foreach": "input.xs", "when": "index > 0"}),
            ErrorKind::CelUnknownVariable,
            "steps[1].when",
        ),
        (
            json!({"id": "b", "capability": "echo", "input": {"x": "inptu.x"}}),
            ErrorKind::CelUnknownVariable,
            "steps[1].input.x",
        ),
        (
            json!({"id": "b", "capability": "echo", "when": "'yes'"}),
            ErrorKind::CelWrongType,
            "steps[1].when",
        ),
        (
            json!({"id": "b", "capability": "echo", "foreach": "{'a': 1}"}),
            ErrorKind::CelWrongType,
            "steps[1].foreach",
        ),
        (
            json!({"id": "b", "capability": "echo", "input": "[1, 2]"}),
            ErrorKind::CelWrongType,
            "steps[1].input",
        ),
        (
            json!({"id": "b", "capability": "echo", "compensate": {"capability": "echo", "input": {"x": "steps.c.output"}}}),
            ErrorKind::CelStepNotVisible,
            "steps[1].compensate.input.x",
        ),
    ];
    for (step, kind, path) in cases {
        let errs = errors_of(base(step));
        only(&errs, kind, path);
    }
    // Transitive needs are visible; a compensation sees its own step.
    let ok = workflow(json!([
        {"id": "a", "capability": "echo"},
        {"id": "b", "capability": "echo", "needs": ["a"]},
        {"id": "c", "capability": "echo", "needs": ["b"], "input": {"x": "steps.a.output"},
         "compensate": {"capability": "echo", "input": {"undo": "steps.c.output"}}}
    ]));
    assert!(check_doc(ok).is_ok());
    let errs = errors_of(
        json!({"name": "w", "version": 1, "steps": [{"id": "a", "capability": "echo"}],
        "output": "steps.zz.output"}),
    );
    only(&errs, ErrorKind::CelUnknownStep, "output");
}

/// All problems come back at once, not just the first.
#[test]
fn errors_are_collected() {
    let errs = errors_of(
        json!({"name": "w", "version": 1, "timeout": "0s", "steps": [
        {"id": "a", "capability": "teleport", "needs": ["ghost"]},
        {"id": "a", "capability": "echo", "when": "nope.x"},
        {"id": "c", "wait_for": {"signal": ""}, "retry": {"max_attempts": 0}}
    ], "output": "steps.zz"}),
    );
    let mut kinds = errs.kinds();
    kinds.sort_by_key(|k| k.as_str());
    assert_eq!(
        kinds,
        [
            ErrorKind::CelUnknownStep,
            ErrorKind::CelUnknownVariable,
            ErrorKind::DuplicateStepId,
            ErrorKind::FieldNotAllowed,
            ErrorKind::InvalidDuration,
            ErrorKind::InvalidRetry,
            ErrorKind::MissingSignal,
            ErrorKind::UnknownCapability,
            ErrorKind::UnknownNeed,
        ],
        "{errs}"
    );
}
