//! CEL mappings: a fuzzed expression as a step's input mapping (first byte
//! even) or `when` condition (odd), checked with the workflow's limits and,
//! if accepted, evaluated against a fixed run context. Never a panic or a hang.
#![no_main]

use std::collections::BTreeMap;

use agentry::workflow::{Definition, StepId, StepState};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(expr) = std::str::from_utf8(rest) else {
        return;
    };
    let mut step =
        json!({"id": "b", "capability": "echo", "needs": ["a"], "input": {"v": "input.n"}});
    if selector % 2 == 0 {
        step["input"] = json!({"v": expr});
    } else {
        step["when"] = json!(expr);
    }
    let doc = json!({"name": "fuzz", "version": 1, "steps": [
        {"id": "a", "capability": "echo", "input": {"n": "input.n"}},
        step,
    ]});
    let Ok(def) = Definition::from_value(doc) else {
        return;
    };
    let Ok(compiled) = def.check(&|c: &str| c == "echo", &|_: &str, _: Option<u32>| true) else {
        return;
    };
    let input = json!({"n": 3, "x": -2.5, "s": "Abc, déf", "l": [1, 2, 3], "m": {"k": "v"}, "b": true, "z": null});
    let mut states = BTreeMap::new();
    if let Ok(a) = StepId::new("a") {
        states.insert(
            a,
            StepState::completed(json!({"echo": {"n": 3, "tags": ["x", "y"]}}), 1),
        );
    }
    let Ok(ctx) = compiled.context(&input, &states, &compiled.run_info("run-1")) else {
        return;
    };
    let _ = compiled.eval_when("b", &ctx);
    let _ = compiled.eval_input("b", &ctx);
});
