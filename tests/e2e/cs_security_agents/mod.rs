//! customer_service and security_monitor end to end: every task example of
//! their six capabilities, conversation memory in Redis, escalation events
//! and tickets, quarantine and release, and continuous probing detection.
//! Under the production accounts: the engine and each agent kind as their
//! roles (one agent process per kind), tenant `acme` as the client and
//! operator, tenant `globex` as the attacker, `admin` for inspection.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentry::client::{Outcome, task_request};
use agentry::event::{self, Limits, Mode};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject::Tenant;
use agentry::{quarantine, subject};
use agentry_tests::{
    AuthServer, InProcess, Redis, TenantClient, eventually, eventually_some, repo_root,
};
use async_nats::jetstream;
use cloudevents::AttributesReader;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

mod memory;
mod quarantined;
mod redelivery;

const CAPABILITIES: [&str; 6] = [
    "customer_inquiry",
    "issue_resolution",
    "escalation",
    "threat_detection",
    "security_analysis",
    "incident_response",
];

/// Engine plus the two agents (one process and user each), in process;
/// `redis` for conversation memory.
fn start(sys: &mut InProcess, nats: &AuthServer, redis: Option<&Redis>) {
    let cfg = nats.engine_config();
    sys.spawn(move |t| agentry_engine::run_with(cfg, Observer::new(), t));
    for kind in ["customer_service", "security_monitor"] {
        let mut cfg = nats.agent_config(kind);
        cfg.redis.url = redis.map(|r| r.url.clone());
        sys.spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));
    }
}

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

async fn submit(
    client: &TenantClient,
    id: &str,
    source: &str,
    capability: &str,
    input: Value,
) -> Outcome {
    let id = RequestId::new(id).expect("request id");
    let ev = task_request(&id, source, capability, input, None);
    client
        .submit(&ev, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{capability} {id}: {e}"))
}

/// Submits harmless tasks from `source` (fresh ids) until one gets a result
/// of type `ty`: the engine reads the quarantine bucket through a watch, so
/// a change reaches it shortly after the KV write. Returns that result.
async fn until_outcome(client: &TenantClient, source: &str, ty: &str) -> Outcome {
    // Fresh ids across calls: a repeated id would be deduplicated, not answered.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    eventually_some(
        Duration::from_secs(30),
        &format!("a {ty} for a request from {source}"),
        || async {
            let id = format!("probe-{}", SEQ.fetch_add(1, Ordering::Relaxed));
            let out = submit(
                client,
                &id,
                source,
                "threat_detection",
                json!({"lines": ["hello"]}),
            )
            .await;
            (out.ty == ty).then_some(out)
        },
    )
    .await
}

/// The output of a completed task, checked against the capability's output schema.
fn completed(out: &Outcome, capability: &str) -> Value {
    assert_eq!(
        out.ty, "io.agentry.task.completed",
        "{capability}: {:#}",
        out.data
    );
    let output = out.data["output"].clone();
    let v = agentry::schema::global()
        .capability_output(capability)
        .expect("output schema");
    if let Err(e) = agentry::schema::check(v, &output) {
        panic!("{capability} output does not match its schema: {e}\n{output:#}");
    }
    output
}

const MINUTE_MS: i64 = 60_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Milliseconds since the epoch of an RFC 3339 JSON string (read through
/// `QuarantineEntry`, whose `until` is one, so this crate needs no date library).
fn rfc3339_ms(v: &Value) -> i64 {
    let e: quarantine::QuarantineEntry = serde_json::from_value(json!({"source": "-", "until": v}))
        .unwrap_or_else(|e| panic!("not a date-time: {v}: {e}"));
    e.until.expect("until").timestamp_millis()
}

/// Task examples (`schemas/examples/tasks/`) of our capabilities, sorted: (file stem, data).
fn examples() -> Vec<(String, Value)> {
    let dir = repo_root().join("schemas/examples/tasks");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if !CAPABILITIES
            .iter()
            .any(|c| stem.starts_with(&format!("{c}.")))
        {
            continue;
        }
        let data: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        out.push((stem.to_owned(), data));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Checks values of one example's output, computed by hand from the example's input.
fn assert_example(name: &str, id: &str, input: &Value, out: &Value) {
    let findings =
        |o: &Value| -> Vec<Value> { o["findings"].as_array().cloned().unwrap_or_default() };
    let finding = |o: &Value, kind: &str, source: &str| -> Value {
        findings(o)
            .into_iter()
            .find(|f| f["kind"] == kind && f["source"] == source)
            .unwrap_or_else(|| panic!("{name}: no {kind} finding for {source}: {o:#}"))
    };
    match name {
        "customer_inquiry.refund-timing" => {
            assert_eq!(out["intent"], "refund", "{out:#}");
            assert_eq!(out["faq_id"], "refund-timing");
            assert_eq!(out["suggested_action"], "answer");
            // No conversation id given: `cust-<customer_id>`.
            assert_eq!(out["conversation_id"], "cust-cust-1042");
        }
        "customer_inquiry.angry-enterprise" => {
            assert_eq!(out["conversation_id"], "conv-acme-0193");
            assert_eq!(out["sentiment"]["label"], "negative", "{out:#}");
            assert_eq!(out["entities"]["order_number"], "5583021");
            assert_eq!(out["suggested_action"], "escalate");
        }
        "customer_inquiry.follow-up" => {
            // A first message in a new conversation: nothing remembered.
            assert_eq!(out["used_context"], false, "{out:#}");
            assert_eq!(out["turn"], 1);
        }
        "issue_resolution.refund-from-message" => {
            assert_eq!(out["ticket_id"], format!("tkt-{id}"));
            assert_eq!(out["intent"], "refund", "{out:#}");
            assert_eq!(out["intent_source"], "classified");
            assert_eq!(out["status"], "open");
            assert_eq!(out["missing_details"], json!(["order_number"]));
        }
        "issue_resolution.shipping-with-order" => {
            assert_eq!(out["ticket_id"], format!("tkt-{id}"));
            assert_eq!(out["status"], "resolved", "{out:#}");
            assert_eq!(out["missing_details"], json!([]));
            assert_eq!(
                out["ticket"]["details"],
                json!({"order_number": "5520193", "channel": "chat"})
            );
            assert_eq!(out["ticket"]["history"][0]["request_id"], id);
        }
        "escalation.known-sentiment" => {
            // 40 x 0.9 (sentiment) + 10 (billing) + 14 (premium) = 60: p2, tier3, 4 h.
            assert_eq!(out["score"], 60.0, "{out:#}");
            assert_eq!(out["priority"], "p2");
            assert_eq!(out["queue"], "tier3");
            assert_eq!(out["sla_hours"], 4);
            assert_eq!(out["ticket"]["ticket_id"], "tk-20250301-0042");
            assert_eq!(out["ticket"]["status"], "escalated");
        }
        "escalation.polite-free" => {
            assert_eq!(out["escalated"], false, "{out:#}");
            assert_eq!(out["priority"], "p4");
            assert_eq!(out["ticket"]["ticket_id"], format!("tkt-{id}"));
        }
        "escalation.angry-enterprise" => {
            assert_eq!(out["escalated"], true, "{out:#}");
            assert_eq!(out["priority"], "p1");
            assert_eq!(out["queue"], "management");
            assert_eq!(out["sla_hours"], 1);
        }
        "threat_detection.port-scan-events" => {
            let ports: BTreeSet<u64> = input["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["port"].as_u64())
                .collect();
            let f = finding(out, "port_scan", "192.0.2.99");
            assert_eq!(f["count"], ports.len() as u64, "{f:#}");
            assert_eq!(f["severity"], "medium");
            assert_eq!(findings(out).len(), 1);
        }
        "threat_detection.ssh-brute-force" => {
            // Six failures for root, then a successful login from the same source.
            let f = finding(out, "brute_force", "192.0.2.10");
            assert_eq!(f["user"], "root");
            assert_eq!(f["count"], 6);
            assert_eq!(f["severity"], "critical");
            // Five distinct invalid users from one source.
            let f = finding(out, "credential_stuffing", "203.0.113.50");
            assert_eq!(f["severity"], "high");
            assert_eq!(out["summary"]["findings"], 2);
        }
        "threat_detection.web-attacks" => {
            // The UNION SELECT got a 200: critical.
            assert_eq!(
                finding(out, "sql_injection", "203.0.113.9")["severity"],
                "critical"
            );
            assert_eq!(
                finding(out, "path_traversal", "198.51.100.3")["severity"],
                "high"
            );
            assert_eq!(
                finding(out, "scanner", "203.0.113.9")["signatures"],
                json!(["agent:sqlmap"])
            );
            finding(out, "xss", "198.51.100.77");
        }
        "security_analysis.correlate" => {
            // critical 60 + 3 kinds 16 + volume 6 log10(7) = 5.07 + recency (10:00:09 vs 10:15) 9 = 90.
            assert_eq!(out["top_risk"]["source"], "203.0.113.9", "{out:#}");
            assert_eq!(out["top_risk"]["risk"], 90.0);
            assert_eq!(out["top_risk"]["level"], "critical");
            assert_eq!(out["recommendation"]["quarantine"], json!(["203.0.113.9"]));
        }
        "security_analysis.brute-force-replay" => {
            // critical 60 + volume 6 log10(7) = 5.07 + recency (08:00:19 vs 08:01:40) 9 = 74.
            assert_eq!(out["sources"][0]["source"], "192.0.2.10", "{out:#}");
            assert_eq!(out["sources"][0]["risk"], 74.0);
            assert_eq!(out["sources"][0]["recommendation"], "quarantine");
        }
        "incident_response.open" => {
            assert_eq!(out["event"], "opened", "{out:#}");
            assert_eq!(out["incident"]["id"], format!("inc-{id}"));
            assert_eq!(out["incident"]["source"], "203.0.113.9");
            assert_eq!(out["incident"]["severity"], "critical");
            assert_eq!(out["incident"]["kinds"], json!(["sql_injection"]));
        }
        "incident_response.quarantine" => {
            assert_eq!(out["event"], "contained", "{out:#}");
            assert_eq!(out["quarantine"]["op"], "set");
            // incident_response acts for the caller's tenant (acme)
            assert_eq!(out["quarantine"]["key"], "acme.203.0.113.9");
            let left = rfc3339_ms(&out["quarantine"]["until"]) - now_ms();
            assert!(
                left > 118 * MINUTE_MS && left <= 120 * MINUTE_MS,
                "{left} ms left"
            );
        }
        "incident_response.close" => {
            assert_eq!(out["event"], "closed", "{out:#}");
            assert_eq!(out["incident"]["id"], "inc-20250309-0007");
            assert_eq!(out["incident"]["status"], "closed");
        }
        other => panic!("no expectations written for example {other}"),
    }
}

/// Every valid example of the six capabilities completes with a schema-valid output; every invalid one fails with invalid_input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_examples_complete_or_fail_as_documented() {
    let nats = AuthServer::start();
    nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, None);

    // The close example names an incident: open it first.
    let out = submit(
        &acme,
        "setup-open",
        "/tests/setup",
        "incident_response",
        json!({"action": "open", "incident_id": "inc-20250309-0007", "source": "198.51.100.3"}),
    )
    .await;
    assert_eq!(completed(&out, "incident_response")["event"], "opened");

    let examples = examples();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let (mut valid, mut invalid) = (0, 0);
    for (i, (name, data)) in examples.iter().enumerate() {
        let cap = data["capability"].as_str().expect("capability");
        seen.insert(cap.to_owned());
        let id = format!("ex-{i}");
        // One source per example: the invalid ones must not add up to probing.
        let source = format!("/tests/examples/{name}");
        let out = submit(&acme, &id, &source, cap, data["input"].clone()).await;
        if name.ends_with(".invalid") {
            assert_eq!(out.ty, "io.agentry.task.failed", "{name}: {:#}", out.data);
            assert_eq!(
                out.data["error"]["code"], "invalid_input",
                "{name}: {:#}",
                out.data
            );
            invalid += 1;
        } else {
            let output = completed(&out, cap);
            assert_example(name, &id, &data["input"], &output);
            valid += 1;
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(
        valid >= 15 && invalid >= 5,
        "{valid} valid, {invalid} invalid"
    );
    sys.stop().await;
}
