//! DAG fan-out, `when` skips, and definitions the engine refuses.

use super::*;

const FAN_OUT: &str = r#"
name: fan_out
version: 1
steps:
  - id: start
    capability: echo
    input: { n: input.n }
  - id: a
    capability: echo
    needs: [start]
    input: { n: "steps.start.output.echo.n + 1", sleep_ms: "700" }
  - id: b
    capability: echo
    needs: [start]
    input: { n: "steps.start.output.echo.n * 10", sleep_ms: "700" }
  - id: c
    capability: echo
    needs: [start]
    input: { n: "steps.start.output.echo.n * 100", sleep_ms: "700" }
  - id: join
    capability: echo
    needs: [a, b, c]
    input: { sum: "steps.a.output.echo.n + steps.b.output.echo.n + steps.c.output.echo.n" }
  - id: finish
    capability: echo
    needs: [join]
    input: { total: "steps.join.output.echo.sum * 2" }
output: "{'total': steps.finish.output.echo.total, 'parts': [steps.a.output.echo.n, steps.b.output.echo.n, steps.c.output.echo.n]}"
"#;

/// A 6-step DAG with a fan-out of 3: the three parallel steps' execution windows overlap, and the output is what CEL computes (n = 2: 3 + 20 + 200 = 223, doubled 446).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_fan_out_runs_in_parallel() {
    let sys = Sys::start().await;
    sys.put(FAN_OUT).await;
    let id = RequestId::generate();
    let mut ev = client::workflow_request(&id, SOURCE, "fan_out", None, json!({"n": 2}));
    ev.set_extension("traceparent", TRACEPARENT);
    let out = sys.acme.submit(&ev, Duration::from_secs(60)).await.unwrap();
    assert_eq!(out.ty, "io.agentry.workflow.completed", "{:?}", out.data);
    assert_eq!(
        out.data["output"],
        json!({"total": 446, "parts": [3, 20, 200]})
    );
    let run = sys.state(&out.request_id).await;
    assert_eq!(run.status, RunStatus::Completed);
    // Execution window of each parallel step: [end - agent duration, end].
    let windows: Vec<(i64, i64)> = ["a", "b", "c"]
        .iter()
        .map(|s| {
            let u = &run.steps[*s].unit;
            let end = u.ended_at.unwrap().timestamp_millis();
            let dur = u.duration_ms.unwrap() as i64;
            assert!(dur >= 700, "{s} ran {dur} ms");
            (end - dur, end)
        })
        .collect();
    for i in 0..3 {
        for j in (i + 1)..3 {
            let (a, b) = (windows[i], windows[j]);
            assert!(
                a.0 < b.1 && b.0 < a.1,
                "windows {i} and {j} do not overlap: {windows:?}"
            );
        }
    }
    // Every lifecycle event of the run carries its trace context.
    let evs = events(&sys.js, Some(&out.request_id)).await;
    assert!(evs.len() >= 14, "{} events", evs.len());
    assert!(
        evs.iter()
            .all(|e| e.traceparent.as_deref() == Some(TRACEPARENT))
    );
    // The diamond example from the repository gives its hand-computed output.
    let diamond =
        std::fs::read_to_string(repo_root().join("schemas/examples/workflows/echo_diamond.yaml"))
            .unwrap();
    sys.put(&diamond).await;
    let out = sys.run("echo_diamond", json!({"n": 3})).await;
    assert_eq!(
        out.data["output"],
        json!({"n": 3, "total": 19, "parts": 3, "right": "completed"})
    );
    // Lifecycle events carry the run id; scheduled and completed per step.
    let evs = events(&sys.js, Some(&out.request_id)).await;
    for step in ["start", "left", "middle", "right", "join", "finish"] {
        assert_eq!(
            step_events(&evs, "io.agentry.step.scheduled", step).len(),
            1,
            "{step}"
        );
        assert_eq!(
            step_events(&evs, "io.agentry.step.completed", step).len(),
            1,
            "{step}"
        );
    }
    assert_eq!(
        evs.first().map(|e| e.ty.as_str()),
        Some("io.agentry.run.started")
    );
    assert_eq!(
        evs.last().map(|e| e.ty.as_str()),
        Some("io.agentry.run.completed")
    );
    sys.parts.stop().await;
}

/// The `expect:` text of an invalid example (its `$comment`).
fn expectation(text: &str) -> String {
    let start = text.find("expect:").expect("an expect: comment") + "expect:".len();
    let rest = &text[start..];
    let end = rest.find('"').unwrap_or(rest.len());
    rest[..end].trim().to_owned()
}

/// `when: false` skips a step and its dependants still run (seeing it `skipped`); every `*.invalid.*` example is refused by `agentry workflow put` with the path and kind of its error, over at least 10 kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_skips_and_invalid_definitions_are_refused() {
    let sys = Sys::start().await;
    let nats = &sys.nats;
    let diamond = repo_root().join("schemas/examples/workflows/echo_diamond.yaml");
    let (code, out, err) = cli(nats, &["workflow", "put", diamond.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created echo_diamond.1"), "{out}");
    let (code, out, _) = cli(nats, &["workflow", "put", diamond.to_str().unwrap()]).await;
    assert_eq!(code, 0);
    assert!(out.contains("unchanged echo_diamond.1"), "{out}");
    let out = sys.run("echo_diamond", json!({"n": 0})).await;
    assert_eq!(
        out.data["output"],
        json!({"n": 0, "total": 1, "parts": 2, "right": "skipped"})
    );
    let run = sys.state(&out.request_id).await;
    assert_eq!(run.steps["right"].unit.status.as_str(), "skipped");
    assert_eq!(run.steps["join"].unit.status.as_str(), "completed");
    let evs = events(&sys.js, Some(&out.request_id)).await;
    let skipped = step_events(&evs, "io.agentry.step.skipped", "right");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].data["attempt"], 0);
    assert!(step_events(&evs, "io.agentry.step.scheduled", "right").is_empty());

    let dir = repo_root().join("schemas/examples/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".invalid."))
        .collect();
    files.sort();
    let mut kinds = HashSet::new();
    for path in &files {
        let expected = expectation(&std::fs::read_to_string(path).unwrap());
        let (code, out, err) =
            cli(nats, &["--json", "workflow", "put", path.to_str().unwrap()]).await;
        assert_eq!(code, 1, "{}: {out}{err}", path.display());
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{}: {e}: {out}", path.display()));
        assert_eq!(v["valid"], false);
        let errors = v["errors"].as_array().unwrap();
        if let Some(rest) = expected.strip_prefix('[') {
            let (kind, rest) = rest.split_once("] ").unwrap();
            let (at, fragment) = rest
                .split_once(": ")
                .unwrap_or((rest.trim_end_matches(':'), ""));
            assert!(
                errors.iter().any(|e| e["kind"] == kind
                    && e["path"] == at
                    && e["message"].as_str().unwrap().contains(fragment)),
                "{}: expected [{kind}] {at}: {fragment}, got {errors:?}",
                path.display()
            );
            kinds.insert(kind.to_owned());
        } else {
            let norm = |s: &str| s.replace(['\'', '"'], "");
            assert!(
                errors.iter().any(|e| e["kind"] == "schema"
                    && norm(e["message"].as_str().unwrap()).contains(&norm(&expected))),
                "{}: expected a schema error with {expected:?}, got {errors:?}",
                path.display()
            );
            kinds.insert("schema".to_owned());
        }
    }
    assert!(
        files.len() >= 20 && kinds.len() >= 10,
        "{} files, kinds {kinds:?}",
        files.len()
    );
    // Humans get one line per error: path, message, kind.
    let (code, out, _) = cli(
        nats,
        &[
            "workflow",
            "put",
            dir.join("unknown_need.invalid.json").to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        out.contains("steps[1].needs[0]: no step `forcast`") && out.contains("[unknown_need]"),
        "{out}"
    );
    // Nothing invalid was stored.
    let kv = agentry::workflow::store::open(&sys.js).await.unwrap();
    let stored = agentry::workflow::store::versions(&kv).await.unwrap();
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["echo_diamond"]);
    sys.parts.stop().await;
}
