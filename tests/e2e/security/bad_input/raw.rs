//! Raw protocol frames: a header that is not UTF-8.

use super::*;

/// Publishes with a raw socket (no client library), so the header block may
/// hold bytes a client would refuse to send; returns the PubAck's sequence.
fn raw_hpub(
    port: u16,
    user: &str,
    password: &str,
    subject: &str,
    headers: &[u8],
    body: &[u8],
) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let connect = json!({"verbose": false, "pedantic": false, "user": user, "pass": password,
                         "headers": true, "lang": "raw", "version": "0", "protocol": 1});
    let inbox = format!("{}.raw", subject::inbox_prefix(user));
    let mut hdr = b"NATS/1.0\r\n".to_vec();
    hdr.extend_from_slice(headers);
    hdr.extend_from_slice(b"\r\n");
    let mut out = format!(
        "CONNECT {connect}\r\nSUB {inbox} 1\r\nHPUB {subject} {inbox} {} {}\r\n",
        hdr.len(),
        hdr.len() + body.len()
    )
    .into_bytes();
    out.extend_from_slice(&hdr);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\nPING\r\n");
    s.write_all(&out).unwrap();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.starts_with("MSG ") {
            let mut payload = String::new();
            r.read_line(&mut payload).unwrap();
            let ack: Value = serde_json::from_str(payload.trim()).unwrap();
            return ack["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("no PubAck: {ack}"));
        }
        assert!(!line.starts_with("-ERR"), "{line}");
    }
}

/// A header value of raw invalid UTF-8 (only a raw socket can send it) is stored by the server, and the async-nats reader that receives it drops its whole connection. Pinned down here: on each of the poison's max_deliver deliveries the engine reconnects (messages in the same read are lost for that delivery), the engine task never stops, and once the poison has used up its deliveries every request completes again. The monitor's backstop then reads it through the raw JSON API, dead-letters it (header block kept base64) and deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_invalid_utf8_header() {
    let server = AuthServer::start();
    let admin = server.client("admin").await;
    let admin_js = jetstream::new(admin.clone());
    // AckWait 1 s on the engine's consumer: max_deliver (5) is used up in seconds, not minutes.
    let mut topo = Topology::new(&test_settings());
    for c in &mut topo.consumers {
        if c.config.durable_name.as_deref() == Some(subject::ENGINE_CONSUMER) {
            c.config.ack_wait = Duration::from_secs(1);
        }
    }
    ensure(&admin_js, &topo).await.unwrap();
    let sys = Stack::start(&server, |_| {}, true);
    let (c, js) = tenant_client(&server, "acme").await;
    assert!(
        echo_as(&c, &js, &acme(), "/valid", json!({"n": 0}))
            .await
            .is_success()
    );

    let headers = b"ce-specversion: 1.0\r\nce-id: utf8-1\r\nce-source: /raw\xff\xfe\xc3\x28\r\nce-type: io.agentry.task.requested\r\nce-datacontenttype: application/json\r\n";
    let (port, pw) = (server.port, server.password("client_acme"));
    let seq = tokio::task::spawn_blocking(move || {
        raw_hpub(
            port,
            "client_acme",
            &pw,
            "agentry.requests.acme",
            headers,
            ECHO_DATA,
        )
    })
    .await
    .unwrap();
    // While the poison is redelivered: valid requests, each given 3 s.
    let start = Instant::now();
    let (mut ok, mut lost) = (0, 0);
    while start.elapsed() < Duration::from_secs(8) {
        let id = RequestId::generate();
        let ev = task_request(&id, "/valid", "echo", json!({"k": ok + lost}), None);
        match client::submit_as(
            &c,
            &js,
            Some(&acme()),
            &ev,
            Mode::Binary,
            Duration::from_secs(3),
        )
        .await
        {
            Ok(o) if o.is_success() => ok += 1,
            _ => lost += 1,
        }
    }
    // Once the poison's deliveries are used up, everything completes promptly.
    for n in 0..20 {
        let started = Instant::now();
        let out = echo_as(&c, &js, &acme(), "/valid", json!({"after": n})).await;
        assert!(out.is_success(), "{:?}", out.data);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "slow after the poison: {:?}",
            started.elapsed()
        );
    }
    let reconnects = connections_named(&server, "agentry-engine").await - 1;
    let stream = admin_js.get_stream(subject::REQUESTS_STREAM).await.unwrap();
    let info = stream
        .consumer_info(subject::ENGINE_CONSUMER)
        .await
        .unwrap()
        .clone();
    // The JSON form of message get (base64 headers): async-nats' own getters cannot parse the poison.
    let raw: Value = serde_json::from_slice(
        &admin
            .request(
                format!("$JS.API.STREAM.MSG.GET.{}", subject::REQUESTS_STREAM),
                Bytes::from(json!({"seq": seq}).to_string()),
            )
            .await
            .unwrap()
            .payload,
    )
    .unwrap();
    let still_stored = raw["message"]["seq"] == seq;
    let dlq = dlq_by_request_seq(&admin_js).await;
    eprintln!(
        "raw invalid UTF-8 header: during the poison's 5 deliveries {ok} valid requests completed and {lost} did not \
         within 3 s; engine reconnects {reconnects}; consumer ack-pending {} redelivered {}; poison still stored: \
         {still_stored}; poison in DLQ: {:?}; DLQ subjects: {:?}",
        info.num_ack_pending,
        info.num_redelivered,
        dlq.get(&seq).map(|(s, _)| s.clone()),
        dlq.values().map(|(s, _)| s.clone()).collect::<Vec<_>>()
    );
    assert!(
        reconnects >= 1,
        "the engine's reader no longer trips over the poison: update the issue note"
    );
    // The monitor's backstop reads it through the raw API, dead-letters it
    // (header block kept base64) and deletes it from the work queue.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dlq = dlq_by_request_seq(&admin_js).await;
        if let Some((subj, h)) = dlq.get(&seq) {
            assert_eq!(subj, "agentry.dlq.max_deliveries");
            assert!(
                h.get(event::header::DLQ_HEADERS).is_some(),
                "raw header block not kept"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the poison never reached the DLQ"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let gone: Value = serde_json::from_slice(
        &admin
            .request(
                format!("$JS.API.STREAM.MSG.GET.{}", subject::REQUESTS_STREAM),
                Bytes::from(json!({"seq": seq}).to_string()),
            )
            .await
            .unwrap()
            .payload,
    )
    .unwrap();
    assert!(
        gone.get("error").is_some(),
        "the poison is still stored: {gone}"
    );
    assert!(
        ok >= 1,
        "nothing completed while the poison was redelivered"
    );
    sys.stop().await;
}
