//! Run slots of a crashed engine replica (issue 12, acceptance 6): two
//! `agentry-engine` child processes at their run limit under the production
//! accounts, one killed with SIGKILL. The survivor adopts the dead replica's
//! runs within the documented bound (docs/reliability.md, "Run limits"), the
//! cluster never runs more than 2 × max_runs, and every run completes once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentry::event::{self, Mode};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject::{self, Tenant};
use agentry::workflow::state::{RunState, RunStatus};
use agentry_echo::Echo;
use agentry_tests::*;
use async_nats::jetstream;
use futures::StreamExt;
use serde_json::json;

const MAX_RUNS: usize = 5;
const RUNS: usize = 20;
/// Five steps of 2 s: a run lasts about 10 s, so runs of the killed replica
/// still have steps to go when it is taken for dead (5 s).
const SLOW: &str = r#"
name: slow
version: 1
steps:
  - id: a
    capability: echo
    input: { n: input.n, sleep_ms: "2000", counter_key: "run.id + '-a'" }
  - id: b
    capability: echo
    needs: [a]
    input: { n: "steps.a.output.echo.n", sleep_ms: "2000", counter_key: "run.id + '-b'" }
  - id: c
    capability: echo
    needs: [b]
    input: { n: "steps.b.output.echo.n", sleep_ms: "2000", counter_key: "run.id + '-c'" }
  - id: d
    capability: echo
    needs: [c]
    input: { n: "steps.c.output.echo.n", sleep_ms: "2000", counter_key: "run.id + '-d'" }
  - id: e
    capability: echo
    needs: [d]
    input: { n: "steps.d.output.echo.n", sleep_ms: "2000", counter_key: "run.id + '-e'" }
output: "steps.e.output.echo.n"
"#;
/// The documented bound (docs/reliability.md): silence before a replica is
/// dead (5 s) + the engine consumers' ack_wait (30 s, a step result the dead
/// replica had taken) + one step (2 s), with a margin for a loaded machine.
const ADOPTION_BOUND: Duration = Duration::from_secs(45);

/// `GET path` on `addr`; `None` when the replica does not answer.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split("\r\n\r\n").nth(1).map(str::to_owned)
}

/// `agentry_workflow_runs_active` of the replica at `addr`.
async fn runs_active(addr: &str) -> Option<i64> {
    let text = http_get(addr, "/metrics").await?;
    const METRIC: &str = "agentry_workflow_runs_active";
    text.lines()
        .find(|l| {
            l.strip_prefix(METRIC)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as i64)
}

/// Every run in the store, by key.
async fn all_runs(kv: &jetstream::kv::Store) -> BTreeMap<String, RunState> {
    let mut out = BTreeMap::new();
    let Ok(mut keys) = kv.keys().await else {
        return out;
    };
    while let Some(Ok(k)) = keys.next().await {
        if let Ok(Some(v)) = kv.get(&k).await
            && let Ok(s) = serde_json::from_slice::<RunState>(&v)
        {
            out.insert(k, s);
        }
    }
    out
}

/// Running runs (not ended, not parked): the ones a run slot counts.
fn running(runs: &BTreeMap<String, RunState>) -> Vec<&RunState> {
    runs.values()
        .filter(|r| !r.status.is_terminal() && !r.is_parked())
        .collect()
}

#[derive(Default)]
struct Samples {
    /// Most running runs in the store at once.
    max_running: usize,
    /// Most runs counted by the live replicas' gauges at once.
    max_gauges: i64,
    n: usize,
}

/// Two replicas with max_runs 5 each, 20 five-step runs; SIGKILL of one at
/// the limit: the survivor counts the dead replica's runs within the bound,
/// the cluster never has more than 10 running runs (store and gauges sampled
/// every 100 ms throughout), and every run completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_replica_runs_are_adopted_and_limit_holds() {
    let server = AuthServer::start();
    let (_admin, ajs) = server.setup().await;
    agentry::workflow::store::put(&ajs, SLOW)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let runs_kv = ajs.get_key_value(subject::RUNS_BUCKET).await.unwrap();

    // One echo agent with room for every task at once, as its own role.
    let echo = Echo::default();
    let mut parts = InProcess::new();
    {
        let role = if server.has_user("agent_echo") {
            "agent_echo"
        } else {
            "agent"
        };
        let (nats, echo) = (server.nats(role), echo.clone());
        parts.spawn(move |t| async move {
            let mut rc = agentry::agent::Config::new(nats);
            rc.capacity = 32;
            rc.heartbeat = Duration::from_secs(1);
            rc.topology = test_settings();
            agentry::agent::run(vec![Arc::new(echo)], rc, Observer::new(), t).await
        });
    }

    // Two engine replicas as child processes, connecting as `engine`.
    let addrs: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let max = MAX_RUNS.to_string();
    let mut engines: Vec<ChildProc> = addrs
        .iter()
        .map(|addr| {
            let mut env = server.env("engine");
            env.push(("AGENTRY_MAX_RUNS".to_owned(), max.clone()));
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            ChildProc::spawn("agentry-engine", &["--http-addr", addr], &env)
        })
        .collect();
    eventually(
        Duration::from_secs(30),
        "both replicas serve /metrics",
        || {
            let addrs = addrs.clone();
            async move {
                runs_active(&addrs[0]).await.is_some() && runs_active(&addrs[1]).await.is_some()
            }
        },
    )
    .await;

    // Sample the running count throughout, from the store and the gauges.
    let samples = Arc::new(Mutex::new(Samples::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let dead = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, stop, dead, kv, addrs) = (
            samples.clone(),
            stop.clone(),
            dead.clone(),
            runs_kv.clone(),
            addrs.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let runs = all_runs(&kv).await;
                let n = running(&runs).len();
                let mut gauges = 0;
                for (i, addr) in addrs.iter().enumerate() {
                    if i == 0 && dead.load(Ordering::SeqCst) {
                        continue;
                    }
                    gauges += runs_active(addr).await.unwrap_or(0);
                }
                {
                    let mut s = samples.lock().unwrap();
                    s.max_running = s.max_running.max(n);
                    s.max_gauges = s.max_gauges.max(gauges);
                    s.n += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // acme submits 30 runs; both replicas fill up to their limit.
    let acme = Tenant::new("acme").unwrap();
    let client = server.client("client_acme").await;
    let cjs = jetstream::new(client);
    let ids: Vec<String> = (0..RUNS).map(|i| format!("slot-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let rid = RequestId::new(id.as_str()).unwrap();
        let ev =
            agentry::client::workflow_request(&rid, "/tests/slots", "slow", None, json!({"n": i}));
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(
            event::header::MSG_ID,
            subject::request_key(Some(&acme), &rid).as_str(),
        );
        cjs.publish_with_headers(subject::requests_for(Some(&acme)), h, body)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let keys: Vec<String> = ids
        .iter()
        .map(|id| subject::request_key(Some(&acme), &RequestId::new(id.as_str()).unwrap()))
        .collect();
    eventually(
        Duration::from_secs(30),
        "both replicas at the limit",
        || {
            let (kv, addrs) = (runs_kv.clone(), addrs.clone());
            async move {
                let runs = all_runs(&kv).await;
                let owners: HashSet<Option<String>> =
                    running(&runs).iter().map(|r| r.owner.clone()).collect();
                running(&runs).len() == 2 * MAX_RUNS
                    && owners.len() == 2
                    && runs_active(&addrs[0]).await == Some(MAX_RUNS as i64)
                    && runs_active(&addrs[1]).await == Some(MAX_RUNS as i64)
            }
        },
    )
    .await;

    // SIGKILL replica 0 at the limit.
    let before = all_runs(&runs_kv).await;
    dead.store(true, Ordering::SeqCst);
    engines[0].kill9();
    let killed = Instant::now();
    let owner_at_kill: HashMap<String, String> = running(&before)
        .iter()
        .map(|r| (r.run_id.clone(), r.owner.clone().unwrap_or_default()))
        .collect();

    // Within the bound every running run is counted by the survivor: all
    // have one owner, at least one of them adopted from the dead replica,
    // and the survivor's gauge counts them all.
    eventually(
        ADOPTION_BOUND,
        "the survivor counts every running run",
        || {
            let (kv, addr, owner_at_kill) =
                (runs_kv.clone(), addrs[1].clone(), owner_at_kill.clone());
            async move {
                let runs = all_runs(&kv).await;
                let live = running(&runs);
                let owners: HashSet<&str> =
                    live.iter().filter_map(|r| r.owner.as_deref()).collect();
                let Some(survivor) = owners.iter().next().copied() else {
                    return false;
                };
                let adopted = live
                    .iter()
                    .any(|r| owner_at_kill.get(&r.run_id).is_some_and(|o| o != survivor));
                let gauge = runs_active(&addr).await.unwrap_or(-1);
                owners.len() == 1 && adopted && gauge >= live.len() as i64
            }
        },
    )
    .await;
    let adoption = killed.elapsed();

    // Every run completes; exactly one result each, every step executed once.
    eventually(Duration::from_secs(180), "every run completed", || {
        let (kv, keys) = (runs_kv.clone(), keys.clone());
        async move {
            let runs = all_runs(&kv).await;
            keys.iter().all(|k| {
                runs.get(k).is_some_and(|r| {
                    assert_ne!(r.status, RunStatus::Failed, "{k}: {:?}", r.error);
                    r.status == RunStatus::Completed
                })
            })
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let s = std::mem::take(&mut *samples.lock().unwrap());
    eprintln!(
        "adopted within {adoption:?}; samples {}; most running runs at once: {} (store), {} (gauges); limit {}",
        s.n,
        s.max_running,
        s.max_gauges,
        2 * MAX_RUNS
    );
    assert!(s.n >= 20, "too few samples: {}", s.n);
    assert!(
        s.max_running <= 2 * MAX_RUNS,
        "{} runs were running at once",
        s.max_running
    );
    assert!(
        s.max_gauges <= (2 * MAX_RUNS) as i64,
        "the replicas counted {} runs at once",
        s.max_gauges
    );
    let counts = subject_counts(&ajs, subject::RESULTS_STREAM, "agentry.results.acme.slot-*").await;
    assert_eq!(counts.len(), RUNS, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // `run.id` in expressions is the run's id, not its key (docs/tenancy.md).
    for id in &ids {
        for step in ["a", "b", "c", "d", "e"] {
            assert_eq!(
                echo.executions_of(&format!("{id}-{step}")),
                1,
                "{id} {step}"
            );
        }
    }
    drop(engines);
    parts.stop().await;
}
