//! The repository's multi-node configs start and work under the accounts:
//! `nats/cluster/node-{1,2,3}.conf` (routes, JetStream R3) and
//! `nats/gateway/region-{a,b}.conf` (two regions joined by gateways). Each
//! file runs as written except its ports, which move to free ones (the
//! files name fixed ports, and gateway URLs cannot be moved by flags).

use super::*;

use async_nats::jetstream::stream;
use std::path::Path;
use std::process::Child;

/// One nats-server started from a copied repository config; killed on
/// drop, its log printed when the test failed.
struct Node {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} ({})", self.log.display(), self.url);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Copies `nats/<conf>` and `nats/accounts.conf` under `dir` (so the
/// file's `include "../accounts.conf"` resolves), every port of `ports`
/// replaced by its free counterpart (the file's client port is
/// `client_port`), and starts nats-server on it with the
/// passwords and store directory in the environment, as in production.
fn start_node(
    dir: &Path,
    conf: &str,
    client_port: u16,
    ports: &HashMap<u16, u16>,
    passwords: &HashMap<String, String>,
) -> Node {
    let nats = repo_root().join("nats");
    let mut text = std::fs::read_to_string(nats.join(conf)).unwrap();
    let re = regex::Regex::new(r"\b(4\d{3}|6\d{3}|7\d{3}|8\d{3})\b").unwrap();
    text = re
        .replace_all(&text, |c: &regex::Captures| {
            let p: u16 = c[1].parse().unwrap();
            ports.get(&p).map_or(c[1].to_owned(), u16::to_string)
        })
        .into_owned();
    let copy = dir.join(conf);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::write(&copy, text).unwrap();
    // Copied once per test directory: copying it again while an earlier
    // node is still reading its include would hand that node a truncated
    // file (it then starts without the accounts, and its routes fail with
    // "Unable to lookup account").
    let accounts = dir.join("accounts.conf");
    if !accounts.exists() {
        let staged = dir.join("accounts.conf.partial");
        std::fs::copy(nats.join("accounts.conf"), &staged).unwrap();
        std::fs::rename(&staged, &accounts).unwrap();
    }
    let store = dir.join(format!("{conf}.store"));
    std::fs::create_dir_all(&store).unwrap();
    let log = dir.join(format!("{conf}.log"));
    let mut cmd = Command::new(agentry_ctl::nats_child::find_binary().unwrap());
    cmd.arg("-c")
        .arg(&copy)
        .arg("-l")
        .arg(&log)
        .env("AGENTRY_NATS_STORE", &store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (user, pw) in passwords {
        cmd.env(format!("AGENTRY_PW_{}", user.to_uppercase()), pw);
    }
    Node {
        child: cmd.spawn().unwrap(),
        url: format!("nats://127.0.0.1:{}", ports[&client_port]),
        log,
    }
}

/// Each fixed port of the repository files mapped to a free one.
fn free_ports(fixed: &[u16]) -> HashMap<u16, u16> {
    fixed.iter().map(|p| (*p, free_port())).collect()
}

async fn connect(
    node: &Node,
    passwords: &HashMap<String, String>,
    role: &str,
) -> async_nats::Client {
    let cfg = agentry_tests::auth::role_nats(&node.url, passwords, role);
    eventually_some(
        Duration::from_secs(30),
        &format!("{role} connects to {}", node.url),
        // connect_once gives up after a few reconnects: a node still
        // starting on a loaded machine gets a fresh client per attempt.
        || async {
            let c = agentry::connect::connect_once(&cfg, role).await.ok()?;
            tokio::time::timeout(Duration::from_secs(2), c.flush())
                .await
                .ok()?
                .ok()?;
            Some(c)
        },
    )
    .await
}

/// Creates `config` as admin, retried until the meta leader is elected
/// (slow on a loaded machine: three JetStream servers elect it).
async fn create_stream(js: &jetstream::Context, config: stream::Config) -> stream::Info {
    let name = config.name.clone();
    eventually_some(
        Duration::from_secs(120),
        &format!("stream {name} created"),
        || async {
            let mut s = js.create_stream(config.clone()).await.ok()?;
            s.info().await.ok().cloned()
        },
    )
    .await
}

/// Reads message `seq` of `stream` through `js` (the stream may still be settling).
async fn read_back(js: &jetstream::Context, stream: &str, seq: u64) -> Bytes {
    eventually_some(
        Duration::from_secs(30),
        &format!("{stream} message {seq} readable"),
        || async {
            let s = js.get_stream(stream).await.ok()?;
            s.get_raw_message(seq).await.ok().map(|m| m.payload)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_configs_route_and_replicate() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = agentry_tests::auth::generate_passwords();
    let ports = free_ports(&[4222, 4223, 4224, 6222, 6223, 6224, 8222, 8223, 8224]);
    let nodes: Vec<Node> = (1..=3)
        .map(|i| {
            start_node(
                dir.path(),
                &format!("cluster/node-{i}.conf"),
                4221 + i,
                &ports,
                &passwords,
            )
        })
        .collect();
    let first = jetstream::new(connect(&nodes[0], &passwords, "admin").await);
    let third = jetstream::new(connect(&nodes[2], &passwords, "admin").await);
    // R3 needs all three nodes routed to each other.
    let info = create_stream(
        &first,
        stream::Config {
            name: "AGENTRY_R3".into(),
            subjects: vec!["agentry.r3.>".into()],
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await;
    let replicas = info.cluster.as_ref().map_or(0, |c| c.replicas.len()) + 1;
    assert_eq!(replicas, 3, "{:?}", info.cluster);
    let ack = first.publish("agentry.r3.x", "r3".into()).await.unwrap();
    let seq = ack.await.unwrap().sequence;
    assert_eq!(read_back(&third, "AGENTRY_R3", seq).await, "r3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_configs_join_two_regions() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = agentry_tests::auth::generate_passwords();
    let ports = free_ports(&[4225, 4226, 6225, 6226, 7222, 7223, 8225, 8226]);
    let a = start_node(
        dir.path(),
        "gateway/region-a.conf",
        4225,
        &ports,
        &passwords,
    );
    let b = start_node(
        dir.path(),
        "gateway/region-b.conf",
        4226,
        &ports,
        &passwords,
    );

    // A request in region-a is answered by an agent in region-b.
    let agent_b = connect(&b, &passwords, "agent").await;
    let mut sub = agent_b.subscribe("agentry.a2a.gw-echo").await.unwrap();
    let replier = agent_b.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = replier.publish(reply, "pong from region-b".into()).await;
            }
        }
    });
    agent_b.flush().await.unwrap();
    let admin_a = connect(&a, &passwords, "admin").await;
    let answer = eventually_some(
        Duration::from_secs(30),
        "request across the gateway answered",
        || async {
            tokio::time::timeout(
                Duration::from_secs(1),
                admin_a.request("agentry.a2a.gw-echo", "ping".into()),
            )
            .await
            .ok()?
            .ok()
        },
    )
    .await;
    assert_eq!(answer.payload, "pong from region-b");

    // A stream placed in region-b, written from region-a, read in region-b.
    let js_a = jetstream::new(admin_a);
    let js_b = jetstream::new(connect(&b, &passwords, "admin").await);
    let info = create_stream(
        &js_a,
        stream::Config {
            name: "AGENTRY_GW".into(),
            subjects: vec!["agentry.gw.>".into()],
            placement: Some(stream::Placement {
                cluster: Some("region-b".into()),
                tags: Vec::new(),
            }),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        info.cluster.as_ref().and_then(|c| c.name.as_deref()),
        Some("region-b")
    );
    let ack = eventually_some(Duration::from_secs(30), "publish across", || async {
        let ack = js_a.publish("agentry.gw.x", "across".into()).await.ok()?;
        ack.await.ok()
    })
    .await;
    assert_eq!(read_back(&js_b, "AGENTRY_GW", ack.sequence).await, "across");
}
