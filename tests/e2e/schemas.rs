//! Every schema example validates (valid ones pass, `*.invalid.*` ones fail
//! with the error their `$comment` names), with the same embedded schemas
//! the services use.

use agentry::schema;
use agentry_tests::repo_root;
use serde_json::Value;

fn norm(s: &str) -> String {
    s.replace(['\'', '"'], "")
}

fn check_dir(
    dir: &str,
    schema_for: impl Fn(&str, &Value) -> Vec<&'static jsonschema::Validator>,
) -> usize {
    let root = repo_root().join("schemas/examples").join(dir);
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        let mut doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let expect = doc
            .as_object_mut()
            .and_then(|o| o.remove("$comment"))
            .and_then(|c| c.as_str().map(str::to_owned));
        let validators = schema_for(&name, &doc);
        assert!(!validators.is_empty(), "{name}: no schema found");
        let errors: Vec<String> = validators
            .iter()
            .flat_map(|v| {
                let target = if name.contains("task") || dir == "tasks" {
                    None
                } else {
                    Some(&doc)
                };
                let _ = target;
                v.iter_errors(&doc)
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        if name.contains(".invalid.") {
            let exp = norm(
                expect
                    .unwrap_or_default()
                    .trim_start_matches("expect:")
                    .trim(),
            );
            assert!(
                errors.iter().any(|e| norm(e).contains(&exp)),
                "{name}: expected error containing {exp:?}, got {errors:?}"
            );
        } else {
            assert!(errors.is_empty(), "{name}: {errors:?}");
        }
        n += 1;
    }
    n
}

/// Event data examples against their type's schema.
#[test]
fn event_examples() {
    let s = schema::global();
    let mut types: Vec<String> = s
        .paths()
        .iter()
        .filter_map(|p| {
            p.strip_prefix("events/")
                .and_then(|p| p.strip_suffix(".json"))
                .map(str::to_owned)
        })
        .collect();
    types.sort_by_key(|t| std::cmp::Reverse(t.len()));
    let n = check_dir("events", |name, _| {
        let ty = types
            .iter()
            .find(|t| name.starts_with(&format!("{t}.")))
            .unwrap_or_else(|| panic!("{name}: no type"));
        vec![s.event(ty).unwrap()]
    });
    assert!(n >= 40, "only {n} event examples");
}

/// Task examples against `task.requested` and their capability's input schema.
#[test]
fn task_examples() {
    let s = schema::global();
    let root = repo_root().join("schemas/examples/tasks");
    let mut count = 0;
    for path in std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
    {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let expect = doc
            .as_object_mut()
            .and_then(|o| o.remove("$comment"))
            .and_then(|c| c.as_str().map(str::to_owned));
        let mut errors: Vec<String> = s
            .event("io.agentry.task.requested")
            .unwrap()
            .iter_errors(&doc)
            .map(|e| e.to_string())
            .collect();
        let cap = doc["capability"].as_str().unwrap_or_default().to_owned();
        if let Some(v) = s.capability_input(&cap) {
            errors.extend(v.iter_errors(&doc["input"]).map(|e| e.to_string()));
        }
        if name.contains(".invalid.") {
            let exp = norm(
                expect
                    .unwrap_or_default()
                    .trim_start_matches("expect:")
                    .trim(),
            );
            assert!(
                errors.iter().any(|e| norm(e).contains(&exp)),
                "{name}: expected {exp:?}, got {errors:?}"
            );
        } else {
            assert!(errors.is_empty(), "{name}: {errors:?}");
            assert!(
                s.capability_input(&cap).is_some(),
                "{name}: capability {cap} has no input schema"
            );
        }
        count += 1;
    }
    assert!(count >= 3);
}

/// Every capability in the built-in list has input and output schemas.
#[test]
fn builtin_capabilities_have_schemas() {
    let s = schema::global();
    let missing: Vec<&str> = agentry::topology::BUILTIN_CAPABILITIES
        .iter()
        .copied()
        .filter(|c| s.capability_input(c).is_none() || s.capability_output(c).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "capabilities without schemas: {missing:?}"
    );
}

/// The rejection schema lists exactly the reasons in `shared::reason`.
#[test]
fn rejection_reasons_match_schema() {
    let doc = schema::global()
        .document("events/io.agentry.request.rejected.json")
        .unwrap();
    let text = doc.to_string();
    for r in agentry::reason::Reason::REJECTIONS {
        assert!(
            text.contains(&format!("\"{}\"", r.as_str())),
            "schema lacks {r}"
        );
    }
}
