//! Conversation memory in Redis and escalation.

use super::*;

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
