//! The example workflows: valid ones check, invalid ones fail as labelled.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn examples() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(EXAMPLES_DIR)
        .unwrap_or_else(|e| panic!("{EXAMPLES_DIR}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "yaml" | "yml")
            )
        })
        .collect();
    files.sort();
    files
}

fn is_invalid(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(".invalid."))
}

/// The expectation of an invalid example: its `$comment` (`expect: ...`), or
/// a first line `# expect: ...` for YAML that cannot carry one.
fn expectation(text: &str) -> String {
    if let Some(rest) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect:"))
    {
        return rest.trim().to_owned();
    }
    let doc = parse::parse_document(text).unwrap();
    let comment = doc["$comment"].as_str().unwrap_or_default();
    comment
        .strip_prefix("expect:")
        .unwrap_or_else(|| panic!("no `expect:` in $comment {comment:?}"))
        .trim()
        .to_owned()
}

fn normalise(s: &str) -> String {
    s.replace(['\'', '"'], "")
}

/// Every valid example parses and checks; every invalid one fails as its `$comment` says.
#[test]
fn examples_behave_as_labelled() {
    let files = examples();
    let valid: Vec<Definition> = files
        .iter()
        .filter(|p| !is_invalid(p))
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            Definition::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect();
    let known = |name: &str, version: Option<u32>| {
        valid
            .iter()
            .any(|d| d.name == name && version.is_none_or(|v| v == d.version))
    };
    for def in &valid {
        if let Err(e) = def.check(&caps, &known) {
            panic!("{}: {e}", def.name);
        }
    }
    let mut invalid = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for path in files.iter().filter(|p| is_invalid(p)) {
        invalid += 1;
        let text = std::fs::read_to_string(path).unwrap();
        let expected = expectation(&text);
        let errs = match Definition::parse(&text) {
            Ok(def) => match def.check(&caps, &known) {
                Ok(_) => panic!("{}: checked fine, expected {expected}", path.display()),
                Err(e) => e,
            },
            Err(e) => e,
        };
        // `[kind] path: text` for semantic errors, plain text for schema errors.
        if let Some(rest) = expected.strip_prefix('[') {
            let (kind, rest) = rest.split_once("] ").unwrap();
            let (at, fragment) = rest
                .split_once(": ")
                .map_or((rest.trim_end_matches(':'), ""), |(a, f)| (a, f));
            let kind = ErrorKind::from_name(kind)
                .unwrap_or_else(|| panic!("{}: unknown kind {kind}", path.display()));
            kinds.insert(kind);
            assert!(
                errs.errors()
                    .iter()
                    .any(|e| e.kind == kind && e.path == at && e.message.contains(fragment)),
                "{}: expected [{kind}] {at}: {fragment}\ngot: {errs}",
                path.display()
            );
        } else {
            kinds.insert(ErrorKind::Schema);
            assert!(
                errs.errors().iter().any(|e| e.kind == ErrorKind::Schema
                    && normalise(&e.to_string()).contains(&normalise(&expected))),
                "{}: expected schema error containing {expected:?}\ngot: {errs}",
                path.display()
            );
        }
    }
    assert!(valid.len() >= 5, "valid examples: {}", valid.len());
    assert!(
        invalid >= 10 && kinds.len() >= 10,
        "{invalid} invalid examples over {} kinds",
        kinds.len()
    );
}

/// echo_diamond run by a miniature executor (echo answers `{echo: input}`) gives the hand-computed output.
#[test]
fn echo_diamond_runs_to_the_expected_output() {
    let text = std::fs::read_to_string(format!("{EXAMPLES_DIR}/echo_diamond.yaml")).unwrap();
    let wf = Definition::parse(&text)
        .unwrap()
        .check(&caps, &workflows)
        .unwrap();
    assert_eq!(wf.definition().steps.len(), 6);
    for (n, total, parts, right) in [(3, 19, 3, "completed"), (0, 1, 2, "skipped")] {
        let input = json!({"n": n});
        let run = wf.run_info(format!("run-{n}"), None);
        let mut states: BTreeMap<StepId, StepState> = BTreeMap::new();
        let mut rounds = 0;
        loop {
            let ready = wf.ready_steps(&states);
            if ready.is_empty() {
                break;
            }
            rounds += 1;
            // Evaluate the whole wave against one snapshot, as the engine would.
            let ctx = wf.context(&input, &states, &run).unwrap();
            let mut wave = Vec::new();
            for step in ready {
                let state = if wf.eval_when(step.as_str(), &ctx).unwrap() {
                    let input = wf.eval_input(step.as_str(), &ctx).unwrap();
                    StepState::completed(json!({"echo": input, "attempt": 1}), 1)
                } else {
                    StepState::skipped()
                };
                wave.push((step, state));
            }
            states.extend(wave);
        }
        assert_eq!(rounds, 4, "start, fan-out, join, finish");
        assert_eq!(wf.progress(&states), Progress::Completed);
        let ctx = wf.context(&input, &states, &run).unwrap();
        assert_eq!(
            wf.eval_output(&ctx).unwrap(),
            json!({"n": n, "total": total, "parts": parts, "right": right})
        );
    }
}

/// The stored JSON form of every valid example reads back (through the schema) as the same definition.
#[test]
fn stored_form_round_trips() {
    for path in examples().iter().filter(|p| !is_invalid(p)) {
        let text = std::fs::read_to_string(path).unwrap();
        let def = Definition::parse(&text).unwrap();
        let stored = serde_json::to_value(&def).unwrap();
        let back =
            Definition::from_value(stored).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(back, def, "{}", path.display());
    }
}
