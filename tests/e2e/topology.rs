//! `agentry setup` semantics and the `nats/` files, against a real server
//! with the production accounts (setup is the `admin` role's job).

use agentry::topology::{self, Change, Settings, Topology, TopologyError};
use agentry_tests::{AuthServer, bin, repo_root};
use async_nats::jetstream::stream;

/// A second `ensure` changes nothing; a conflicting stream is refused naming the field.
#[tokio::test]
async fn setup_is_idempotent_and_names_conflicts() {
    let nats = AuthServer::start();
    let (_admin, js) = nats.admin().await;
    let topo = Topology::new(&Settings::default());
    let first = topology::ensure(&js, &topo).await.unwrap();
    assert!(first.items.iter().all(|(_, c)| *c == Change::Created));
    let second = topology::ensure(&js, &topo).await.unwrap();
    assert!(
        !second.changed(),
        "{:?}",
        second
            .items
            .iter()
            .filter(|(_, c)| *c != Change::Unchanged)
            .collect::<Vec<_>>()
    );

    // A mutable difference is updated in place.
    let looser = Settings {
        results_max_age_secs: 3600,
        ..Settings::default()
    };
    let third = topology::ensure(&js, &Topology::new(&looser))
        .await
        .unwrap();
    assert!(
        third
            .items
            .iter()
            .any(|(n, c)| n == "stream AGENTRY_RESULTS"
                && matches!(c, Change::Updated(f) if f == &vec!["max_age".to_owned()]))
    );

    // An immutable difference is refused with the field named.
    js.delete_stream("AGENTRY_DLQ").await.unwrap();
    js.create_stream(stream::Config {
        name: "AGENTRY_DLQ".into(),
        subjects: vec!["agentry.dlq.>".into()],
        retention: stream::RetentionPolicy::Interest,
        ..Default::default()
    })
    .await
    .unwrap();
    match topology::ensure(&js, &topo).await {
        Err(TopologyError::Conflict { field, name, .. }) => {
            assert_eq!(field, "retention");
            assert_eq!(name, "AGENTRY_DLQ");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The CLI says "nothing changed" on a second run and exits non-zero on a conflict.
#[tokio::test]
async fn setup_cli_messages_and_exit_codes() {
    let nats = AuthServer::start();
    let admin_env = nats.env("admin");
    let run = |args: &[&str]| {
        std::process::Command::new(bin("agentry"))
            .envs(admin_env.iter().cloned())
            .args(args)
            .output()
            .expect("run agentry")
    };
    let first = run(&["setup"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run(&["setup"]);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing changed"));
    let (_admin, js) = nats.admin().await;
    js.delete_stream("AGENTRY_EVENTS").await.unwrap();
    js.create_stream(stream::Config {
        name: "AGENTRY_EVENTS".into(),
        subjects: vec!["agentry.events.>".into()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let third = run(&["setup"]);
    assert_eq!(third.status.code(), Some(2));
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(
        err.contains("`storage`") && err.contains("AGENTRY_EVENTS"),
        "{err}"
    );
}

/// The `nats/` CLI JSON files are exactly what the code creates.
#[test]
fn nats_cli_files_match_code() {
    let root = repo_root().join("nats");
    let files = Topology::new(&Settings::default()).cli_files();
    let mut drift = Vec::new();
    for (rel, text) in &files {
        match std::fs::read_to_string(root.join(rel)) {
            Ok(on_disk) if on_disk == *text => {}
            Ok(_) => drift.push(format!("{rel} differs")),
            Err(_) => drift.push(format!("{rel} missing")),
        }
    }
    for dir in ["streams", "consumers", "kv"] {
        for entry in walk(&root.join(dir)) {
            let rel = entry.strip_prefix(&root).unwrap().display().to_string();
            if !files.contains_key(&rel) {
                drift.push(format!("{rel} is not defined in code"));
            }
        }
    }
    assert!(
        drift.is_empty(),
        "nats/ drifted from shared::topology (regenerate with `agentry setup --write-cli-files nats`): {drift:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
