//! What the executor asks of a compiled workflow, and CEL end to end.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::*;

const DIAMOND: &str = r#"
name: diamond
version: 1
steps:
  - { id: d, capability: echo, needs: [b, c] }
  - { id: b, capability: echo, needs: [a] }
  - { id: c, capability: echo, needs: [a], on_error: continue }
  - { id: a, capability: echo }
"#;

/// ready_steps walks a diamond: a, then b and c together, then d once both settled.
#[test]
fn ready_steps_over_a_diamond() {
    let wf = compile_yaml(DIAMOND);
    assert_eq!(wf.order(), [id("a"), id("b"), id("c"), id("d")]);
    let mut st: HashMap<StepId, StepStatus> = HashMap::new();
    assert_eq!(wf.ready_steps(&st), [id("a")]);
    st.insert(id("a"), StepStatus::Running);
    assert!(wf.ready_steps(&st).is_empty());
    st.insert(id("a"), StepStatus::Completed);
    assert_eq!(wf.ready_steps(&st), [id("b"), id("c")]);
    st.insert(id("b"), StepStatus::Completed);
    st.insert(id("c"), StepStatus::Retrying);
    assert!(wf.ready_steps(&st).is_empty());
    // c failed, but with on_error: continue, so d may run.
    st.insert(id("c"), StepStatus::Failed);
    assert_eq!(wf.ready_steps(&st), [id("d")]);
    assert_eq!(wf.progress(&st), Progress::Running);
    st.insert(id("d"), StepStatus::Completed);
    assert!(wf.ready_steps(&st).is_empty());
    assert_eq!(wf.progress(&st), Progress::Completed);

    // A skipped need settles too; a failed need with on_error: fail does not.
    let mut st: BTreeMap<StepId, StepStatus> = BTreeMap::new();
    st.insert(id("a"), StepStatus::Completed);
    st.insert(id("b"), StepStatus::Skipped);
    st.insert(id("c"), StepStatus::Completed);
    assert_eq!(wf.ready_steps(&st), [id("d")]);
    st.insert(id("b"), StepStatus::Failed);
    assert!(wf.ready_steps(&st).is_empty());
    assert_eq!(wf.progress(&st), Progress::Failed { step: id("b") });
    st.insert(id("d"), StepStatus::Cancelled);
    assert_eq!(wf.progress(&st), Progress::Failed { step: id("b") });
    st.insert(id("b"), StepStatus::Completed);
    assert_eq!(wf.progress(&st), Progress::Cancelled);
    assert_eq!(wf.dependants("a"), [&id("b"), &id("c")]);
}

/// Compensations run latest-completed first, only for steps that have one.
#[test]
fn compensation_order_is_reverse_completion() {
    let wf = compile_yaml(
        r#"
name: saga
version: 1
steps:
  - { id: book_hotel, capability: echo, compensate: { capability: echo, input: { cancel: steps.book_hotel.output.ref } } }
  - { id: book_flight, capability: echo, compensate: { capability: echo } }
  - { id: notify, capability: echo, needs: [book_hotel, book_flight] }
"#,
    );
    let done = [id("book_flight"), id("book_hotel"), id("notify")];
    assert_eq!(
        wf.compensation_order(&done),
        [id("book_hotel"), id("book_flight")]
    );
    let mut states = BTreeMap::new();
    states.insert(
        id("book_hotel"),
        StepState::completed(json!({"ref": "H-1"}), 1),
    );
    let ctx = wf.context(&json!({}), &states, &run_info()).unwrap();
    assert_eq!(
        wf.eval_compensation_input("book_hotel", &ctx).unwrap(),
        Some(json!({"cancel": "H-1"}))
    );
    assert_eq!(
        wf.eval_compensation_input("book_flight", &ctx).unwrap(),
        Some(json!({}))
    );
    assert_eq!(wf.eval_compensation_input("notify", &ctx).unwrap(), None);
}

// ---------------------------------------------------------------- CEL end to end

/// Mappings compute arithmetic, concatenation, literals, has(), size(), comparisons and ternaries.
#[test]
fn cel_mappings() {
    let wf = compile_yaml(
        r#"
name: mapping
version: 1
steps:
  - id: first
    capability: echo
  - id: second
    capability: echo
    needs: [first]
    when: "steps.first.output.rain_mm > 1.0 || input.force"
    input:
      next: input.n + 1
      ratio: "double(input.n) / 4.0"
      greeting: "'Hello, ' + input.name + '!'"
      list: "[input.n, input.n * 2, steps.first.output.rain_mm]"
      map: "{'city': input.city, 'days': 3}"
      has_optional: "has(input.missing)"
      count: "size(input.tags) + size(input.name)"
      compare: "input.n >= 41 && input.name != 'Bob' && 'b' in input.tags"
      choice: "input.n > 100 ? 'big' : 'small'"
      nested: "steps.first.output.daily.map(d, d.mm).filter(mm, mm > 0.5)"
      lower: "input.name.lowerAscii()"
      rounded: "math.round(2.6)"
"#,
    );
    let input =
        json!({"n": 41, "name": "Ada", "city": "Paris", "tags": ["a", "b"], "force": false});
    let mut states = BTreeMap::new();
    states.insert(
        id("first"),
        StepState::completed(
            json!({"rain_mm": 1.5, "daily": [{"mm": 0.2}, {"mm": 3.0}, {"mm": 0.7}]}),
            1,
        ),
    );
    let ctx = wf.context(&input, &states, &run_info()).unwrap();
    assert!(wf.eval_when("second", &ctx).unwrap());
    assert!(wf.eval_when("first", &ctx).unwrap(), "no when means true");
    let got = wf.eval_input("second", &ctx).unwrap();
    assert_eq!(
        got,
        json!({
            "next": 42,
            "ratio": 10.25,
            "greeting": "Hello, Ada!",
            "list": [41, 82, 1.5],
            "map": {"city": "Paris", "days": 3},
            "has_optional": false,
            "count": 5,
            "compare": true,
            "choice": "small",
            "nested": [3.0, 0.7],
            "lower": "ada",
            "rounded": 3.0,
        })
    );
    assert_eq!(wf.eval_input("first", &ctx).unwrap(), json!({}));

    // A dry first step and no force: skip.
    states.insert(
        id("first"),
        StepState::completed(json!({"rain_mm": 0.0, "daily": []}), 1),
    );
    let ctx = wf.context(&input, &states, &run_info()).unwrap();
    assert!(!wf.eval_when("second", &ctx).unwrap());
}

/// Runtime failures are EvalErrors naming the expression's path.
#[test]
fn eval_errors_name_the_expression() {
    let wf = compile_yaml(
        r#"
name: errs
version: 1
steps:
  - id: a
    capability: echo
    when: input.flag
    input: "input.payload"
  - id: b
    capability: echo
    foreach: input.items
    input: { x: "item / input.divisor" }
"#,
    );
    let ctx = wf
        .context(
            &json!({"flag": "yes", "payload": [1], "items": 7, "divisor": 0}),
            &BTreeMap::new(),
            &run_info(),
        )
        .unwrap();
    assert!(
        matches!(wf.eval_when("a", &ctx), Err(EvalError::WrongType { at, expected: "bool", .. }) if at == "steps[0].when")
    );
    assert!(
        matches!(wf.eval_input("a", &ctx), Err(EvalError::WrongType { at, expected: "map", .. }) if at == "steps[0].input")
    );
    assert!(
        matches!(wf.eval_foreach("b", &ctx), Err(EvalError::WrongType { at, expected: "list", .. }) if at == "steps[1].foreach")
    );
    let ctx = ctx.with_item(&json!(10), 0).unwrap();
    assert!(
        matches!(wf.eval_input("b", &ctx), Err(EvalError::Execution { at, .. }) if at == "steps[1].input.x")
    );
    assert!(matches!(wf.eval_when("zz", &ctx), Err(EvalError::UnknownStep(s)) if s == "zz"));
    let ctx = wf
        .context(&json!({}), &BTreeMap::new(), &run_info())
        .unwrap();
    assert!(matches!(
        wf.eval_when("a", &ctx),
        Err(EvalError::Execution { .. })
    ));
}

/// foreach produces the items, and each item's input sees item and index.
#[test]
fn foreach_items_and_inputs() {
    let wf = compile_yaml(
        r#"
name: fan
version: 1
max_parallel: 7
steps:
  - id: cities
    capability: weather_forecast
    foreach: "input.cities.filter(c, c != '')"
    max_parallel: 2
    input: { city: item, days: "index + 1" }
  - id: after
    capability: echo
    needs: [cities]
    input: { count: "size(steps.cities.output)" }
"#,
    );
    assert_eq!(wf.max_parallel("cities"), Some(2));
    assert_eq!(wf.max_parallel("after"), Some(7));
    let mut ctx = wf
        .context(
            &json!({"cities": ["Oslo", "", "Lima"]}),
            &BTreeMap::new(),
            &run_info(),
        )
        .unwrap();
    let items = wf.eval_foreach("cities", &ctx).unwrap().unwrap();
    assert_eq!(items, [json!("Oslo"), json!("Lima")]);
    let inputs: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            ctx.set_item(item, i).unwrap();
            wf.eval_input("cities", &ctx).unwrap()
        })
        .collect();
    assert_eq!(
        inputs,
        [
            json!({"city": "Oslo", "days": 1}),
            json!({"city": "Lima", "days": 2})
        ]
    );
    ctx.clear_item();
    assert_eq!(wf.eval_foreach("after", &ctx).unwrap(), None);

    let many: Vec<u32> = (0..=1000).collect();
    let ctx = wf
        .context(&json!({"cities": many}), &BTreeMap::new(), &run_info())
        .unwrap();
    let wf2 = compile_yaml(
        "name: f\nversion: 1\nsteps:\n  - { id: s, capability: echo, foreach: input.cities }\n",
    );
    assert!(matches!(
        wf2.eval_foreach("s", &ctx),
        Err(EvalError::TooManyItems {
            count: 1001,
            max: 1000,
            ..
        })
    ));
}

/// The output expression sees every step; without one, the output maps step ids to outputs.
#[test]
fn output_expression_and_default() {
    let with = compile_yaml(
        r#"
name: out
version: 3
steps:
  - { id: a, capability: echo }
  - { id: b, capability: echo, when: "false" }
output: "{'a': steps.a.output.v * 2, 'b': steps.b.status, 'run': run.workflow + '@' + string(run.version)}"
"#,
    );
    let mut states = BTreeMap::new();
    states.insert(id("a"), StepState::completed(json!({"v": 21}), 1));
    states.insert(id("b"), StepState::skipped());
    let run = with.run_info("r-9", None);
    let ctx = with.context(&json!({}), &states, &run).unwrap();
    assert_eq!(
        with.eval_output(&ctx).unwrap(),
        json!({"a": 42, "b": "skipped", "run": "out@3"})
    );

    let without = compile_yaml(
        "name: out\nversion: 1\nsteps:\n  - { id: a, capability: echo }\n  - { id: b, capability: echo }\n",
    );
    let ctx = without.context(&json!({}), &states, &run).unwrap();
    assert_eq!(
        without.eval_output(&ctx).unwrap(),
        json!({"a": {"v": 21}, "b": null})
    );
    // Even with a bare context that lacks some steps.
    let ctx = EvalContext::new(&json!({}), &BTreeMap::new(), &run).unwrap();
    assert_eq!(
        without.eval_output(&ctx).unwrap(),
        json!({"a": null, "b": null})
    );
}

/// input_schema is compiled once and checks run inputs.
#[test]
fn input_schema_validates_run_input() {
    let wf = compile_yaml(
        r#"
name: typed
version: 1
input_schema:
  type: object
  required: [city]
  properties: { city: { type: string } }
steps:
  - { id: a, capability: echo }
"#,
    );
    assert!(wf.validate_input(&json!({"city": "Rome"})).is_ok());
    let err = wf.validate_input(&json!({"city": 3})).unwrap_err();
    assert!(err.0[0].starts_with("input.city:"), "{err}");
    assert!(wf.validate_input(&json!({})).is_err());
}

/// Compiled can be shared across threads.
#[test]
fn compiled_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Compiled>();
    assert_send_sync::<EvalContext>();
    assert_send_sync::<DefinitionErrors>();
    assert_send_sync::<EvalError>();
}

/// The deepest expressions the check accepts evaluate on a 2 MiB stack (a tokio worker's default).
#[test]
fn deepest_accepted_expressions_evaluate_on_a_small_stack() {
    let depth = cel::MAX_EXPRESSION_NESTING;
    let sources = [
        format!("{}input.n{}", "(".repeat(depth), ")".repeat(depth)),
        format!("{}input.n{}", "[".repeat(depth), "]".repeat(depth)),
        format!(
            "{}input.n{}",
            "size([".repeat(depth / 2),
            "])".repeat(depth / 2)
        ),
        format!("{}input.n{}", "{'k': ".repeat(depth), "}".repeat(depth)),
    ];
    let steps: Vec<Value> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"id": format!("s{i}"), "capability": "echo", "input": {"x": s}}))
        .collect();
    let wf = check_doc(workflow(Value::Array(steps))).unwrap();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let ctx = wf
                .context(&json!({"n": 7}), &BTreeMap::new(), &run_info())
                .unwrap();
            for i in 0..4 {
                wf.eval_input(&format!("s{i}"), &ctx).unwrap();
            }
            let first = wf.eval_input("s0", &ctx).unwrap();
            assert_eq!(first, json!({"x": 7}));
        })
        .unwrap()
        .join()
        .unwrap();
}
