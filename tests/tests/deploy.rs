//! Kubernetes manifests against the code: every KEDA ScaledObject names a
//! stream and consumer that `shared::topology` defines, and every built-in
//! capability has one (a typo would make KEDA fall back to the stream's
//! last sequence and over-scale silently).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is a failed assertion

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

/// The GitHub Actions workflows parse and have the jobs CI/CD needs, with the steps that matter.
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
    let text = serde_json::to_string(&ci).unwrap();
    for needle in [
        "cargo fmt",
        "cargo clippy",
        "cargo test",
        "nats-server",
        "redis",
        "cargo deny",
        "cargo audit",
        "validate.sh",
        "docker/build-push-action",
    ] {
        assert!(text.contains(needle), "ci.yml never mentions {needle}");
    }
    let cd = load("cd.yml");
    for job in ["image", "canary", "promote"] {
        assert!(cd["jobs"][job].is_object(), "cd.yml lacks job {job}");
    }
    let text = serde_json::to_string(&cd).unwrap();
    assert!(
        text.contains("github.sha") && text.contains("overlays/canary"),
        "cd.yml must tag by commit and deploy the canary overlay"
    );
    assert!(
        cd["jobs"]["promote"]["needs"]
            .to_string()
            .contains("canary"),
        "promotion must wait for the canary analysis"
    );
}
