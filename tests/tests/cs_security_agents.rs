//! customer_service and security_monitor end to end: every task example of
//! their six capabilities, conversation memory in Redis, escalation events
//! and tickets, quarantine and release, and continuous probing detection.
//! Under the production accounts: the engine and each agent kind as their
//! roles (one agent process per kind), tenant `acme` as the client and
//! operator, tenant `globex` as the attacker, `admin` for inspection.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentry::client::{Outcome, task_request};
use agentry::event::{self, Limits, Mode};
use agentry::http::Observer;
use agentry::id::RequestId;
use agentry::subject::Tenant;
use agentry::{quarantine, subject};
use agentry_tests::{AuthServer, InProcess, Redis, TenantClient, eventually, repo_root};
use async_nats::jetstream;
use cloudevents::AttributesReader;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
    for _ in 0..100 {
        let id = format!("probe-{}", SEQ.fetch_add(1, Ordering::Relaxed));
        let out = submit(
            client,
            &id,
            source,
            "threat_detection",
            json!({"lines": ["hello"]}),
        )
        .await;
        if out.ty == ty {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {ty} for a request from {source}");
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

/// Minimal RESP client: sends one command, returns the reply (bulk string, integer or status) as text.
async fn redis_cmd(port: u16, args: &[&str]) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("redis");
    let mut stream = BufReader::new(stream);
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream
        .get_mut()
        .write_all(req.as_bytes())
        .await
        .expect("write");
    let mut line = String::new();
    stream.read_line(&mut line).await.expect("read");
    let line = line.trim_end();
    match line.as_bytes().first() {
        Some(b'$') => {
            let n: i64 = line[1..].parse().expect("length");
            if n < 0 {
                return None;
            }
            let mut buf = vec![0; n as usize + 2];
            stream.read_exact(&mut buf).await.expect("bulk");
            buf.truncate(n as usize);
            Some(String::from_utf8(buf).expect("utf-8"))
        }
        Some(b':' | b'+') => Some(line[1..].to_owned()),
        _ => panic!("redis error: {line}"),
    }
}

/// A follow-up question uses the order number remembered in Redis, where the conversation is stored with a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_uses_conversation_memory_in_redis() {
    let nats = AuthServer::start();
    let redis = Redis::start();
    nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, Some(&redis));

    let first = submit(&acme, "mem-1", "/tests/memory", "customer_inquiry", json!({"message": "I returned order #4471092 two weeks ago and I still have no refund", "conversation_id": "conv-mem-1"})).await;
    let first = completed(&first, "customer_inquiry");
    assert_eq!(first["entities"]["order_number"], "4471092");
    assert_eq!(first["turn"], 1);

    let follow = submit(
        &acme,
        "mem-2",
        "/tests/memory",
        "customer_inquiry",
        json!({"message": "what about my order?", "conversation_id": "conv-mem-1"}),
    )
    .await;
    let follow = completed(&follow, "customer_inquiry");
    assert_eq!(follow["entities"]["order_number"], "4471092", "{follow:#}");
    assert_eq!(follow["used_context"], true);
    assert!(
        follow["context"]
            .as_array()
            .unwrap()
            .contains(&json!("order_number"))
    );
    assert_eq!(follow["turn"], 2);

    let stored = redis_cmd(redis.port, &["GET", "agentry:conv:acme/conv-mem-1"])
        .await
        .expect("conversation in Redis");
    let stored: Value = serde_json::from_str(&stored).expect("json");
    assert_eq!(stored["id"], "conv-mem-1");
    assert_eq!(stored["turns"].as_array().map(Vec::len), Some(2));
    assert_eq!(stored["turns"][1]["text"], "what about my order?");
    assert_eq!(stored["last_request_id"], "mem-2");
    let ttl: i64 = redis_cmd(redis.port, &["TTL", "agentry:conv:acme/conv-mem-1"])
        .await
        .expect("ttl")
        .parse()
        .expect("int");
    assert!(ttl > 24 * 3600 - 120 && ttl <= 24 * 3600, "ttl {ttl}");
    sys.stop().await;
}

/// An angry enterprise message escalates as p1: io.agentry.escalation.created is published and the ticket is stored in KV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn angry_enterprise_message_escalates() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, None);
    let mut events = admin
        .subscribe(subject::events_for_type("io.agentry.escalation.created"))
        .await
        .unwrap();
    admin.flush().await.unwrap();

    let input = json!({
        "message": "This is UNACCEPTABLE!!! Your support has ignored us for three weeks. I want to complain to a manager.",
        "tier": "enterprise",
        "customer_id": "acme-corp",
        "reason": "third contact about the same outage"
    });
    let out = submit(&acme, "esc-1", "/tests/escalation", "escalation", input).await;
    let out = completed(&out, "escalation");
    assert_eq!(out["escalated"], true, "{out:#}");
    assert_eq!(out["priority"], "p1");
    assert_eq!(out["ticket"]["ticket_id"], "tkt-esc-1");

    let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("escalation event")
        .unwrap();
    let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
    let data = event::data_json(&d.event).unwrap();
    let v = agentry::schema::global()
        .event("io.agentry.escalation.created")
        .unwrap();
    agentry::schema::check(v, &data).unwrap();
    assert_eq!(data["ticket_id"], "tkt-esc-1");
    assert_eq!(data["priority"], "p1");
    assert_eq!(data["customer_id"], "acme-corp");
    assert_eq!(data["reason"], "third contact about the same outage");
    assert_eq!(data["request_id"], "esc-1");

    let kv = js.get_key_value(subject::TICKETS_BUCKET).await.unwrap();
    let ticket: Value = serde_json::from_slice(
        &kv.get("acme.tkt-esc-1")
            .await
            .unwrap()
            .expect("ticket in KV"),
    )
    .unwrap();
    assert_eq!(ticket["status"], "escalated");
    assert_eq!(ticket["priority"], "p1");
    assert_eq!(ticket["queue"], "management");
    assert_eq!(ticket["customer_id"], "acme-corp");
    sys.stop().await;
}

/// incident_response quarantines a source (KV entry, event) and releases it (entry deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_then_release() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, None);
    let mut events = admin.subscribe("agentry.events.source.>").await.unwrap();
    admin.flush().await.unwrap();
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    let source = "/clients/mallory";

    let out = submit(&acme, "q-1", "/tests/operator", "incident_response", json!({"action": "quarantine", "source": source, "quarantine_minutes": 30, "note": "credential stuffing"})).await;
    let out = completed(&out, "incident_response");
    assert_eq!(out["event"], "contained", "{out:#}");
    assert_eq!(out["incident"]["id"], "inc-q-1");
    assert_eq!(
        out["quarantine"]["key"],
        quarantine::key(Some(&tenant("acme")), source)
    );

    let entry = quarantine::lookup(&kv, Some(&tenant("acme")), source)
        .await
        .unwrap()
        .expect("quarantined");
    assert_eq!(entry.source, source);
    assert_eq!(entry.reason, "credential stuffing");
    assert_eq!(entry.incident_id.as_deref(), Some("inc-q-1"));
    let left = entry.until.expect("until").timestamp_millis() - now_ms();
    assert!(
        left > 29 * MINUTE_MS && left <= 30 * MINUTE_MS,
        "{left} ms left"
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("quarantined event")
        .unwrap();
    assert_eq!(msg.subject.as_str(), "agentry.events.source.quarantined");

    let incidents = js.get_key_value(subject::INCIDENTS_BUCKET).await.unwrap();
    let stored: Value =
        serde_json::from_slice(&incidents.get("inc-q-1").await.unwrap().expect("incident"))
            .unwrap();
    assert_eq!(stored["status"], "contained");

    // The engine refuses the quarantined source...
    let refused = until_outcome(&acme, source, "io.agentry.request.rejected").await;
    assert_eq!(refused.data["reason"], "quarantined", "{:#}", refused.data);
    assert!(
        refused.data["detail"]
            .as_str()
            .unwrap()
            .contains("credential stuffing"),
        "{:#}",
        refused.data
    );

    let out = submit(
        &acme,
        "q-2",
        "/tests/operator",
        "incident_response",
        json!({"action": "release", "incident_id": "inc-q-1", "note": "false positive"}),
    )
    .await;
    let out = completed(&out, "incident_response");
    assert_eq!(out["event"], "released", "{out:#}");
    assert!(
        quarantine::lookup(&kv, Some(&tenant("acme")), source)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        kv.get(quarantine::key(Some(&tenant("acme")), source))
            .await
            .unwrap()
            .is_none(),
        "key deleted"
    );
    let msg = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("released event")
        .unwrap();
    assert_eq!(msg.subject.as_str(), "agentry.events.source.released");
    let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
    let data = event::data_json(&d.event).unwrap();
    assert_eq!(
        data,
        json!({"source": source, "reason": "false positive", "incident_id": "inc-q-1"})
    );

    // ...and accepts it again once released.
    let accepted = until_outcome(&acme, source, "io.agentry.task.completed").await;
    assert_eq!(accepted.data["output"]["summary"]["unparsed_lines"], 1);
    sys.stop().await;
}

/// Eight malformed requests from one source reach the DLQ and, within seconds, a probing incident is published and the source quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_is_detected_from_the_dlq() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let globex = nats.tenant("globex").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, None);
    let mut incidents = admin
        .subscribe(subject::events_for_type("io.agentry.security.incident"))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    // No need to wait for the monitor: its durable consumer `security-dlq`
    // exists since the topology was created and keeps what arrives meanwhile.
    for n in 0..8 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("ce-specversion", "1.0");
        h.insert("ce-id", format!("probe{n}").as_str());
        h.insert("ce-source", "/attacker");
        h.insert("ce-type", "io.agentry.nope");
        h.insert("ce-datacontenttype", "application/json");
        globex
            .js
            .publish_with_headers(globex.requests_subject(), h, "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let data = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let msg = incidents.next().await.expect("subscription");
            let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
            let data = event::data_json(&d.event).unwrap();
            if data["kind"] == "probing" && data["source"] == "/attacker" {
                return data;
            }
        }
    })
    .await
    .expect("probing incident within 15 s");
    let v = agentry::schema::global()
        .event("io.agentry.security.incident")
        .unwrap();
    agentry::schema::check(v, &data).unwrap();
    assert!(
        data["evidence"]
            .as_array()
            .unwrap()
            .contains(&json!("unknown_type x5")),
        "{data:#}"
    );
    let incident_id = data["incident_id"].as_str().unwrap().to_owned();
    assert!(incident_id.starts_with("inc-probing-"), "{incident_id}");

    // Opened in KV and, by default, the source quarantined.
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    let inc_kv = js.get_key_value(subject::INCIDENTS_BUCKET).await.unwrap();
    eventually(Duration::from_secs(10), "attacker quarantined", || {
        let (kv, t) = (kv.clone(), globex.tenant.clone());
        async move {
            quarantine::lookup(&kv, Some(&t), "/attacker")
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await;
    let entry = quarantine::lookup(&kv, Some(&globex.tenant), "/attacker")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.incident_id.as_deref(), Some(incident_id.as_str()));
    let left = entry.until.unwrap().timestamp_millis() - now_ms();
    assert!(
        left > 14 * MINUTE_MS && left <= 15 * MINUTE_MS,
        "{left} ms left"
    );
    let stored: Value = serde_json::from_slice(
        &inc_kv
            .get(incident_id.as_str())
            .await
            .unwrap()
            .expect("incident"),
    )
    .unwrap();
    assert_eq!(stored["status"], "contained");
    assert_eq!(stored["source"], "/attacker");

    // The loop is closed: the engine now refuses even a valid request from it.
    let refused = until_outcome(&globex, "/attacker", "io.agentry.request.rejected").await;
    assert_eq!(refused.data["reason"], "quarantined", "{:#}", refused.data);
    sys.stop().await;
}

/// Publishes the task the engine would route for `input`, as a second
/// delivery would arrive: same request id, a fresh JetStream message.
async fn publish_task(
    js: &jetstream::Context,
    id: &str,
    capability: &str,
    input: Value,
    copy: &str,
) {
    let rid = RequestId::new(id).unwrap();
    let mut ev = task_request(&rid, "/tests/redelivery", capability, input, None);
    // As the engine routes a request of tenant acme.
    let acme = tenant("acme");
    ev.set_extension(event::ext::TENANT, acme.as_str());
    ev.set_extension(event::ext::REPLYTO, subject::results_for(Some(&acme), &rid));
    let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
    h.insert(event::header::MSG_ID, format!("{id}-{copy}").as_str());
    js.publish_with_headers(format!("agentry.tasks.{capability}"), h, body)
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Waits until the capability's consumer has nothing pending or unacknowledged.
async fn drained(js: &jetstream::Context, capability: &str) {
    let js = js.clone();
    let consumer = format!("cap-{capability}");
    eventually(
        Duration::from_secs(30),
        &format!("{consumer} drained"),
        || {
            let (js, consumer) = (js.clone(), consumer.clone());
            async move {
                let Ok(stream) = js.get_stream(subject::TASKS_STREAM).await else {
                    return false;
                };
                stream
                    .consumer_info(consumer)
                    .await
                    .map(|i| i.num_pending == 0 && i.num_ack_pending == 0)
                    .unwrap_or(false)
            }
        },
    )
    .await;
}

/// A task delivered twice changes its ticket and its incident once: the second delivery is recognised by its request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_tasks_are_applied_once() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let _acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, None);
    // Tasks are published as the engine publishes them (only it may).
    let engine_js = jetstream::new(nats.client("engine").await);
    let mut results = admin.subscribe("agentry.results.>").await.unwrap();
    admin.flush().await.unwrap();

    let esc =
        json!({"intent": "complaint", "sentiment": -0.8, "tier": "premium", "customer_id": "c-9"});
    let inc = json!({"action": "quarantine", "source": "/clients/twice", "quarantine_minutes": 10});
    for copy in ["a", "b"] {
        publish_task(&engine_js, "dup-esc", "escalation", esc.clone(), copy).await;
        publish_task(
            &engine_js,
            "dup-inc",
            "incident_response",
            inc.clone(),
            copy,
        )
        .await;
    }
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(30), results.next())
            .await
            .expect("result")
            .unwrap();
        let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
        assert_eq!(
            d.event.ty(),
            "io.agentry.task.completed",
            "{:?}",
            event::data_json(&d.event)
        );
    }
    drained(&js, "escalation").await;
    drained(&js, "incident_response").await;

    // One result each: the first wins.
    for id in ["dup-esc", "dup-inc"] {
        let subj = subject::results_for(
            Some(&tenant("acme")),
            &RequestId::new(id.to_string()).unwrap(),
        );
        let counts = agentry_tests::subject_counts(&js, subject::RESULTS_STREAM, &subj).await;
        assert_eq!(counts.get(&subj), Some(&1), "{subj}");
    }

    // 32 (sentiment) + 20 (complaint) + 14 (premium) = 66: p2, applied once (a repeat would add 10).
    let tickets = js.get_key_value(subject::TICKETS_BUCKET).await.unwrap();
    let ticket: Value = serde_json::from_slice(
        &tickets
            .get("acme.tkt-dup-esc")
            .await
            .unwrap()
            .expect("ticket"),
    )
    .unwrap();
    let history = ticket["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{ticket:#}");
    assert!(history.iter().all(|h| h["request_id"] == "dup-esc"));
    assert_eq!(ticket["priority"], "p2");

    let incidents = js.get_key_value(subject::INCIDENTS_BUCKET).await.unwrap();
    let incident: Value = serde_json::from_slice(
        &incidents
            .get("inc-dup-inc")
            .await
            .unwrap()
            .expect("incident"),
    )
    .unwrap();
    let actions: Vec<&str> = incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["action"].as_str())
        .collect();
    assert_eq!(actions, ["open", "quarantine"], "{incident:#}");
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    assert_eq!(
        quarantine::lookup(&kv, Some(&tenant("acme")), "/clients/twice")
            .await
            .unwrap()
            .unwrap()
            .incident_id
            .as_deref(),
        Some("inc-dup-inc")
    );
    sys.stop().await;
}

/// With Redis configured but down, inquiries still complete and the conversation is remembered in process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_to_in_process_memory() {
    let nats = AuthServer::start();
    let mut redis = Redis::start();
    let (_admin, _js) = nats.setup().await;
    let acme = nats.tenant("acme").await;
    let mut sys = InProcess::new();
    start(&mut sys, &nats, Some(&redis));
    let out = submit(
        &acme,
        "down-0",
        "/tests/outage",
        "customer_inquiry",
        json!({"message": "hello", "conversation_id": "conv-up"}),
    )
    .await;
    assert_eq!(completed(&out, "customer_inquiry")["turn"], 1);
    redis.kill();

    let first = submit(&acme, "down-1", "/tests/outage", "customer_inquiry", json!({"message": "I returned order #5550123 and still have no refund", "conversation_id": "conv-down"})).await;
    assert_eq!(completed(&first, "customer_inquiry")["turn"], 1);
    let follow = submit(
        &acme,
        "down-2",
        "/tests/outage",
        "customer_inquiry",
        json!({"message": "what about my order?", "conversation_id": "conv-down"}),
    )
    .await;
    let follow = completed(&follow, "customer_inquiry");
    assert_eq!(follow["entities"]["order_number"], "5550123", "{follow:#}");
    assert_eq!(follow["turn"], 2);
    sys.stop().await;
}

/// A scripted flood from one source (rate limit 100/min) raises a flood incident within seconds and quarantines the source, while another source is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_is_detected() {
    let nats = AuthServer::start();
    let (admin, js) = nats.setup().await;
    let globex = nats.tenant("globex").await;
    let mut sys = InProcess::new();
    let mut engine = nats.engine_config();
    engine.rate_limit = 100;
    sys.spawn(move |t| agentry_engine::run_with(engine, Observer::new(), t));
    for kind in ["echo", "security_monitor"] {
        let cfg = nats.agent_config(kind);
        sys.spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));
    }
    let mut incidents = admin
        .subscribe(subject::events_for_type("io.agentry.security.incident"))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    let mut acks = Vec::new();
    for n in 0..300 {
        let id = RequestId::new(format!("flood{n}")).unwrap();
        let ev = task_request(&id, "/flooder", "echo", json!({"n": n}), None);
        let (mut h, body) = event::encode(&ev, Mode::Binary).unwrap();
        h.insert(
            event::header::MSG_ID,
            subject::request_key(Some(&globex.tenant), &id).as_str(),
        );
        acks.push(
            globex
                .js
                .publish_with_headers(globex.requests_subject(), h, body)
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    let started = std::time::Instant::now();
    let data = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let msg = incidents.next().await.expect("subscription");
            let d = event::decode(msg.headers.as_ref(), &msg.payload, &Limits::default()).unwrap();
            let data = event::data_json(&d.event).unwrap();
            if data["kind"] == "flood" && data["source"] == "/flooder" {
                return data;
            }
        }
    })
    .await
    .expect("flood incident within 20 s");
    assert!(started.elapsed() < Duration::from_secs(20));
    agentry::schema::check(
        agentry::schema::global()
            .event("io.agentry.security.incident")
            .unwrap(),
        &data,
    )
    .unwrap();
    let kv = js.get_key_value(subject::QUARANTINE_BUCKET).await.unwrap();
    eventually(Duration::from_secs(10), "flooder quarantined", || {
        let (kv, t) = (kv.clone(), globex.tenant.clone());
        async move {
            quarantine::lookup(&kv, Some(&t), "/flooder")
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await;
    // Another source of the same tenant still gets served.
    let ok = submit(&globex, "calm-1", "/calm", "echo", json!({})).await;
    assert_eq!(ok.ty, "io.agentry.task.completed");
    sys.stop().await;
}
