//! Fault injection: kill -9 of each component, nats-server restarts, a
//! cluster node loss, Redis loss and an overload burst. For each, every
//! request ends with exactly one terminal result (completed, failed, or an
//! explicit rejection such as `queue_full`), none lost, none duplicated,
//! and the services reconnect on their own. Assertions read AGENTRY_RESULTS.
//! Under the production accounts: engine, monitor and agents as their roles
//! (child processes get their user from the environment), requests from
//! tenant `acme`, results counted as `admin`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agentry::client::{self, task_request};
use agentry::event::Mode;
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject;
use agentry_tests::*;
use serde_json::json;

const TENANT: &str = "acme";

fn acme() -> subject::Tenant {
    subject::Tenant::new(TENANT).unwrap()
}

/// A connection as `nats` says (user, password, inbox prefix) that keeps
/// retrying and reconnecting, as a load generator must across restarts.
async fn connect(nats: &agentry::config::Nats) -> async_nats::Client {
    let mut opts = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None);
    if let (Some(u), Some(p)) = (&nats.user, &nats.password) {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(prefix) = &nats.inbox_prefix {
        opts = opts.custom_inbox_prefix(prefix.clone());
    }
    opts.connect(agentry::connect::servers(nats.url.as_deref().unwrap()).unwrap())
        .await
        .unwrap()
}

/// Publishes `n` echo requests `<prefix>-<i>` as tenant `acme` (`client`
/// holds its settings), retrying each publish (same id, so JetStream
/// dedups) until the server acknowledges it or `give_up`.
async fn load(
    client: &agentry::config::Nats,
    prefix: &str,
    n: usize,
    input: serde_json::Value,
    give_up: Duration,
) -> usize {
    let js = async_nats::jetstream::new(connect(client).await);
    let mut accepted = 0;
    for i in 0..n {
        let id = RequestId::new(format!("{prefix}-{i}")).unwrap();
        let ev = task_request(&id, "/faults", "echo", input.clone(), None);
        let start = Instant::now();
        loop {
            match tokio::time::timeout(
                Duration::from_secs(3),
                client::publish_request_as(&js, Some(&acme()), &ev, Mode::Binary),
            )
            .await
            {
                Ok(Ok(())) => {
                    accepted += 1;
                    break;
                }
                _ if start.elapsed() > give_up => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    accepted
}

/// Waits until `n` of `acme`'s results with `prefix` are stored (read as
/// `admin`, whose settings `admin` holds); returns per-subject counts.
async fn results(
    admin: &agentry::config::Nats,
    prefix: &str,
    n: usize,
    limit: Duration,
) -> HashMap<String, usize> {
    let js = async_nats::jetstream::new(connect(admin).await);
    let start = Instant::now();
    loop {
        let counts: HashMap<String, usize> =
            subject_counts(&js, subject::RESULTS_STREAM, subject::RESULTS_ALL)
                .await
                .into_iter()
                .filter(|(k, _)| k.starts_with(&format!("agentry.results.{TENANT}.{prefix}-")))
                .collect();
        if counts.len() >= n || start.elapsed() > limit {
            if counts.len() < n {
                eprintln!(
                    "{prefix}: {} of {n} results; queues:{}",
                    counts.len(),
                    queues(&js).await
                );
            }
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where requests stand (messages per stream, each consumer's pending,
/// unacknowledged and delivered counts): printed when results are missing,
/// so a failure says at which hop they stopped.
async fn queues(js: &async_nats::jetstream::Context) -> String {
    use async_nats::jetstream::consumer::pull;
    let mut out = String::new();
    for name in [
        subject::REQUESTS_STREAM,
        subject::HELD_STREAM,
        subject::TASKS_STREAM,
        subject::RESULTS_STREAM,
    ] {
        let Ok(mut stream) = js.get_stream(name).await else {
            out += &format!("\n{name}: not readable");
            continue;
        };
        if let Ok(i) = stream.info().await {
            out += &format!("\n{name}: {} messages", i.state.messages);
        }
        let mut names = stream.consumer_names();
        while let Some(Ok(c)) = futures::StreamExt::next(&mut names).await {
            let Ok(mut consumer) = stream.get_consumer::<pull::Config>(&c).await else {
                continue;
            };
            if let Ok(i) = consumer.info().await
                && i.delivered.stream_sequence > 0
            {
                out += &format!(
                    "\n  {c}: pending {} unacked {} delivered up to {}",
                    i.num_pending, i.num_ack_pending, i.delivered.stream_sequence
                );
            }
        }
    }
    out
}

fn assert_exactly_once(counts: &HashMap<String, usize>, n: usize, what: &str) {
    assert_eq!(
        counts.len(),
        n,
        "{what}: {} of {n} requests have a result",
        counts.len()
    );
    let dup: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(dup.is_empty(), "{what}: duplicated results {dup:?}");
}

/// (b) kill -9 of the engine under load, then a restart: every request gets exactly one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_engine_under_load() {
    let nats = AuthServer::start();
    nats.setup().await;
    let (client, admin) = (nats.nats("client_acme"), nats.nats("admin"));
    let mut engine = ChildProc::engine(&nats.env("engine"));
    let _agent = ChildProc::echo_agent(&nats.agent_env("echo"));
    let n = 600;
    let loader = tokio::spawn({
        let client = client.clone();
        async move {
            load(
                &client,
                "ke",
                n,
                json!({"sleep_ms": 1}),
                Duration::from_secs(60),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    engine.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _engine2 = ChildProc::engine(&nats.env("engine"));
    assert_eq!(loader.await.unwrap(), n);
    assert_exactly_once(
        &results(&admin, "ke", n, Duration::from_secs(90)).await,
        n,
        "engine kill -9",
    );
}

/// (a) kill -9 of an agent under load: its tasks are redelivered to the other agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_agent_under_load() {
    let nats = AuthServer::start();
    nats.setup().await;
    let (client, admin) = (nats.nats("client_acme"), nats.nats("admin"));
    let _engine = ChildProc::engine(&nats.env("engine"));
    let mut a = ChildProc::echo_agent(&nats.agent_env("echo"));
    let _b = ChildProc::echo_agent(&nats.agent_env("echo"));
    let n = 400;
    let loader = tokio::spawn({
        let client = client.clone();
        async move {
            load(
                &client,
                "ka",
                n,
                json!({"sleep_ms": 20}),
                Duration::from_secs(60),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.kill9();
    assert_eq!(loader.await.unwrap(), n);
    // Redelivery after AckWait (5 s in test settings).
    assert_exactly_once(
        &results(&admin, "ka", n, Duration::from_secs(90)).await,
        n,
        "agent kill -9",
    );
}

/// (c) kill -9 of the monitor: the registry recovers after restart and requests keep flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_monitor() {
    let nats = AuthServer::start();
    let (_admin, js) = nats.setup().await;
    let (client, admin) = (nats.nats("client_acme"), nats.nats("admin"));
    let _engine = ChildProc::engine(&nats.env("engine"));
    let _agent = ChildProc::echo_agent(&nats.agent_env("echo"));
    let mut monitor = ChildProc::spawn(
        "agentry-monitor",
        &["--http-addr", "off", "--sweep-interval", "300ms"],
        &nats.env("monitor"),
    );
    let reg = wait_for_agents(&js, "echo", 1).await;
    monitor.kill9();
    let n = 200;
    assert_eq!(
        load(&client, "km", n, json!({}), Duration::from_secs(30)).await,
        n
    );
    let _monitor2 = ChildProc::spawn(
        "agentry-monitor",
        &["--http-addr", "off", "--sweep-interval", "300ms"],
        &nats.env("monitor"),
    );
    assert_exactly_once(
        &results(&admin, "km", n, Duration::from_secs(60)).await,
        n,
        "monitor kill -9",
    );
    // Heartbeats keep the agent live across the monitor restart (no false expiry).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(reg.find("echo").await.unwrap().len(), 1);
}

/// (d) nats-server restart (file store) under load: services reconnect, nothing lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_under_load() {
    let mut nats = AuthServer::start();
    nats.setup().await;
    let (client, admin) = (nats.nats("client_acme"), nats.nats("admin"));
    let _engine = ChildProc::engine(&nats.env("engine"));
    let _agent = ChildProc::echo_agent(&nats.agent_env("echo"));
    let n = 400;
    let loader = tokio::spawn({
        let client = client.clone();
        async move {
            load(
                &client,
                "nr",
                n,
                json!({"sleep_ms": 2}),
                Duration::from_secs(90),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    nats.restart();
    assert_eq!(loader.await.unwrap(), n);
    assert_exactly_once(
        &results(&admin, "nr", n, Duration::from_secs(120)).await,
        n,
        "nats-server restart",
    );
}

/// (e) 3-node cluster with R3 streams: kill one node under load, bring it back; nothing lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_loss() {
    let mut cluster = Cluster::start();
    let (client, admin) = (cluster.nats("client_acme"), cluster.nats("admin"));
    let js = async_nats::jetstream::new(connect(&admin).await);
    let settings = agentry::topology::Settings {
        replicas: 3,
        task_ack_wait_secs: 5,
        ..Default::default()
    };
    let topo = agentry::topology::Topology::new(&settings);
    eventually(Duration::from_secs(30), "R3 topology created", || async {
        agentry::topology::ensure(&js, &topo).await.is_ok()
    })
    .await;
    let info = js
        .get_stream("AGENTRY_TASKS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    let _engine = ChildProc::engine(&cluster.env("engine"));
    let _agent = ChildProc::echo_agent(&cluster.agent_env("echo"));
    let n = 300;
    let loader = tokio::spawn({
        let client = client.clone();
        async move {
            load(
                &client,
                "cl",
                n,
                json!({"sleep_ms": 2}),
                Duration::from_secs(90),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.nodes[2].kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(loader.await.unwrap(), n);
    cluster.restart(2);
    assert_exactly_once(
        &results(&admin, "cl", n, Duration::from_secs(120)).await,
        n,
        "cluster node loss",
    );
}

/// (f) Redis killed and restarted: rate limiting fails open and requests keep completing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_loss() {
    let nats = AuthServer::start();
    nats.setup().await;
    let (client, admin) = (nats.nats("client_acme"), nats.nats("admin"));
    let mut redis = Redis::start();
    let mut sys = InProcess::new();
    let mut ecfg = nats.engine_config();
    ecfg.redis.url = Some(redis.url.clone());
    sys.spawn(move |t| agentry_engine::run_with(ecfg, Observer::new(), t));
    let mut acfg = nats.agent_config("echo");
    acfg.redis.url = Some(redis.url.clone());
    sys.spawn(move |t| agentry_agent::run_with(acfg, Observer::new(), t));
    assert_eq!(
        load(&client, "rd1", 100, json!({}), Duration::from_secs(30)).await,
        100
    );
    redis.kill();
    assert_eq!(
        load(&client, "rd2", 100, json!({}), Duration::from_secs(30)).await,
        100
    );
    redis.restart();
    assert_eq!(
        load(&client, "rd3", 100, json!({}), Duration::from_secs(30)).await,
        100
    );
    for p in ["rd1", "rd2", "rd3"] {
        assert_exactly_once(
            &results(&admin, p, 100, Duration::from_secs(60)).await,
            100,
            "redis loss",
        );
    }
    sys.stop().await;
}

/// (g) A burst against bounded queues: every request is either refused at
/// publish (the publisher sees it), or completed, or rejected `queue_full`;
/// nothing is dropped silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long drill (100,000 requests): run by `make reliability`, which .ci/run runs"]
async fn burst_against_bounded_queues() {
    let nats = AuthServer::start();
    let (_admin, js) = nats.admin().await;
    let acme = nats.tenant(TENANT).await;
    let settings = agentry::topology::Settings {
        requests_max_msgs: 20_000,
        tasks_max_per_capability: 5_000,
        task_ack_wait_secs: 5,
        ..Default::default()
    };
    agentry::topology::ensure(&js, &agentry::topology::Topology::new(&settings))
        .await
        .unwrap();
    let admin = nats.nats("admin");
    let _engine = ChildProc::engine(&nats.env("engine"));
    let _agent = ChildProc::echo_agent(&nats.agent_env("echo"));
    let n = 100_000usize;
    let mut refused = 0usize;
    let mut acks = Vec::with_capacity(n);
    for i in 0..n {
        let id = RequestId::new(format!("bu-{i}")).unwrap();
        let ev = task_request(&id, "/burst", "echo", json!({"sleep_ms": 5}), None);
        let (mut h, body) = agentry::event::encode(&ev, Mode::Binary).unwrap();
        h.insert(
            agentry::event::header::MSG_ID,
            subject::request_key(Some(&acme.tenant), &id).as_str(),
        );
        acks.push(
            acme.js
                .publish_with_headers(acme.requests_subject(), h, body)
                .await
                .unwrap(),
        );
        if acks.len() >= 2000 {
            for a in acks.drain(..) {
                if a.await.is_err() {
                    refused += 1;
                }
            }
        }
    }
    for a in acks.drain(..) {
        if a.await.is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0, "the bounded request queue never pushed back");
    let accepted = n - refused;
    let counts = results(&admin, "bu", accepted, Duration::from_secs(600)).await;
    assert_exactly_once(&counts, accepted, "burst");
}
