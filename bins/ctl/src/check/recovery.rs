//! Recovery rows, read from the real streams and buckets: every one exists
//! with the replicas and storage the topology asks for and has a leader,
//! and the registry, workflows and runs export to a snapshot file that
//! matches what the buckets hold.

use std::path::Path;

use agentry::subject;
use agentry::topology::{Settings, Topology};
use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Row, Verdict, row};

pub async fn recovery(
    js: &jetstream::Context,
    replicas: usize,
    snapshot: &Path,
    rows: &mut Vec<Row>,
) {
    let topo = Topology::new(&Settings::default());
    let mut expected: Vec<(String, stream::StorageType)> = topo
        .streams
        .iter()
        .map(|s| (s.name.clone(), s.storage))
        .collect();
    expected.extend(
        topo.buckets
            .iter()
            .map(|b| (format!("KV_{}", b.bucket), b.storage)),
    );
    let (mut missing, mut wrong, mut leaderless) = (Vec::new(), Vec::new(), Vec::new());
    for (name, storage) in &expected {
        let info = match js.get_stream(name).await {
            Ok(mut st) => st.info().await.cloned().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match info {
            Err(e) => missing.push(format!("{name} ({e})")),
            Ok(info) => {
                if info.config.num_replicas != replicas {
                    wrong.push(format!(
                        "{name} has {} replica(s)",
                        info.config.num_replicas
                    ));
                }
                if info.config.storage != *storage {
                    wrong.push(format!("{name} stores in {:?}", info.config.storage));
                }
                if let Some(c) = &info.cluster
                    && replicas > 1
                    && c.leader.as_deref().unwrap_or_default().is_empty()
                {
                    leaderless.push(name.clone());
                }
            }
        }
    }
    let verdict = |bad: &[String]| {
        if bad.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    };
    rows.push(row(
        "recovery",
        format!("{} streams and buckets present", expected.len()),
        verdict(&missing),
        if missing.is_empty() {
            "all present".to_owned()
        } else {
            format!(
                "missing: {} (run `agentry setup`; restore data from a snapshot)",
                missing.join(", ")
            )
        },
    ));
    rows.push(row(
        "recovery",
        format!("replicas = {replicas}, storage as configured"),
        verdict(&wrong),
        if wrong.is_empty() {
            "all as configured".to_owned()
        } else {
            wrong.join("; ")
        },
    ));
    rows.push(row(
        "recovery",
        "stream leaders",
        verdict(&leaderless),
        if leaderless.is_empty() {
            "every stream has a current leader (or runs on one node)".to_owned()
        } else {
            format!("no leader: {}", leaderless.join(", "))
        },
    ));
    let (verdict, detail) = match export(js, snapshot).await {
        Ok(d) => (Verdict::Pass, d),
        Err(e) => (Verdict::Fail, format!("{e:#}")),
    };
    rows.push(row(
        "recovery",
        "snapshot of registry, workflows and runs",
        verdict,
        detail,
    ));
}

/// Writes every key of the live buckets with its revision to `path`, reads
/// the file back and checks each entry against the bucket: same bytes, or a
/// newer revision (the system kept running meanwhile).
async fn export(js: &jetstream::Context, path: &Path) -> anyhow::Result<String> {
    let buckets = [
        subject::AGENTS_BUCKET,
        subject::WORKFLOWS_BUCKET,
        subject::RUNS_BUCKET,
    ];
    let mut snapshot = serde_json::Map::new();
    for bucket in buckets {
        let kv = js.get_key_value(bucket).await?;
        let mut keys = kv.keys().await?;
        let mut entries = serde_json::Map::new();
        while let Some(k) = keys.next().await {
            let k = k?;
            if let Some(e) = kv.entry(&k).await? {
                entries.insert(
                    k,
                    json!({"revision": e.revision, "value": base64_encode(&e.value)}),
                );
            }
        }
        snapshot.insert(bucket.to_owned(), Value::Object(entries));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(&snapshot)?)?;
    let back: serde_json::Map<String, Value> = serde_json::from_slice(&std::fs::read(path)?)?;
    let mut total = 0;
    for bucket in buckets {
        let kv = js.get_key_value(bucket).await?;
        let entries = back
            .get(bucket)
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow::anyhow!("{bucket} missing from {}", path.display()))?;
        for (k, v) in entries {
            let rev = v["revision"].as_u64().unwrap_or_default();
            let value = v["value"].as_str().unwrap_or_default();
            if let Some(live) = kv.entry(k).await?
                && live.revision == rev
            {
                anyhow::ensure!(
                    base64_encode(&live.value) == value,
                    "{bucket}/{k} in the snapshot differs from the bucket at the same revision"
                );
            }
            total += 1;
        }
    }
    Ok(format!(
        "{total} entries of {} exported to {} and verified against the buckets",
        buckets.join(", "),
        path.display()
    ))
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
