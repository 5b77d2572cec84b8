//! The battery of bad input, each case answered by a rejection or a dead-letter copy.

use super::*;

/// At least 30 kinds of bad input through the real request path (client_acme on agentry.requests.acme, as in production): each gets its documented rejection reason (a result where an id is readable) and a DLQ copy; valid requests interleaved keep completing; the engine never stops or reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_battery() {
    let server = AuthServer::start();
    let (admin, admin_js) = server.setup().await;
    store_invalid_workflows(&admin_js).await;
    let sys = Stack::start(&server, |_| {}, false);
    let (c, js) = tenant_client(&server, "acme").await;
    let cases = bad_inputs();
    let kinds = cases.len();
    assert!(kinds >= 30, "only {kinds} kinds of bad input");

    // Warm-up: the system serves before the battery starts.
    let out = echo_as(&c, &js, &acme(), "/valid", json!({"n": -1})).await;
    assert!(out.is_success(), "{:?}", out.data);
    // More than 64 KiB of headers never enters the stream: the publisher is told (err 10097).
    let mut huge = HeaderMap::new();
    for (k, v) in ce("bad-huge-headers") {
        huge.insert(k.as_str(), v.as_str());
    }
    for i in 0..6000 {
        huge.insert(format!("X-Pad-{i}").as_str(), "vv");
    }
    let err = js
        .publish_with_headers(subject::requests_for(Some(&acme())), huge, ECHO_DATA.into())
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10097"), "{err}");
    let mut published: Vec<(u64, &Bad)> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut h = HeaderMap::new();
        for (k, v) in &case.headers {
            h.append(k.as_str(), v.as_str());
        }
        let body = Bytes::from(case.body.clone());
        let (ctx, to) = match case.subject {
            None => (js.clone(), subject::requests_for(Some(&acme()))),
            Some(s) => (jetstream::new(admin.clone()), s.to_owned()),
        };
        let ack = ctx
            .publish_with_headers(to, h, body)
            .await
            .unwrap_or_else(|e| panic!("{}: publish: {e}", case.what))
            .await
            .unwrap_or_else(|e| panic!("{}: PubAck: {e}", case.what));
        published.push((ack.sequence, case));
        // A valid request right behind every bad one completes.
        let out = echo_as(&c, &js, &acme(), "/valid", json!({"n": i})).await;
        assert!(out.is_success(), "after {:?}: {:?}", case.what, out.data);
        assert_eq!(out.data["output"]["echo"]["n"], i);
    }

    let mut problems = Vec::new();
    for (_, case) in &published {
        let Some(id) = &case.id else { continue };
        let rid = RequestId::new(id.as_str()).unwrap();
        let mut got = None;
        for _ in 0..200 {
            got = client::fetch_result_as(&js, Some(&acme()), &rid).await;
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match got {
            None => problems.push(format!(
                "{}: no result on agentry.results.acme.{id}",
                case.what
            )),
            Some(o) if o.ty != "io.agentry.request.rejected" || o.data["reason"] != case.reason => {
                problems.push(format!(
                    "{}: expected rejection {}, got {} {}",
                    case.what, case.reason, o.ty, o.data
                ))
            }
            Some(_) => {}
        }
    }
    let mut dlq = HashMap::new();
    for _ in 0..100 {
        dlq = dlq_by_request_seq(&admin_js).await;
        if published.iter().all(|(seq, _)| dlq.contains_key(seq)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (seq, case) in &published {
        match dlq.get(seq) {
            None => problems.push(format!("{}: no DLQ entry", case.what)),
            Some((subj, h)) => {
                if *subj != subject::dlq(case.reason) {
                    problems.push(format!(
                        "{}: dead-lettered on {subj} ({:?}), expected agentry.dlq.{}",
                        case.what,
                        h.get(event::header::DLQ_DETAIL)
                            .map(|v| v.as_str().to_owned()),
                        case.reason
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {kinds} kinds wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Nothing left behind, no redelivery, no reconnect, the same engine task throughout.
    let consumer = admin_js
        .get_stream(subject::REQUESTS_STREAM)
        .await
        .unwrap()
        .consumer_info(subject::ENGINE_CONSUMER)
        .await
        .unwrap()
        .clone();
    assert_eq!((consumer.num_pending, consumer.num_ack_pending), (0, 0));
    assert_eq!(consumer.num_redelivered, 0);
    assert_eq!(
        connections_named(&server, "agentry-engine").await,
        1,
        "the engine reconnected"
    );
    let rejected: f64 = sys
        .engine_obs
        .metrics_text()
        .lines()
        .filter(|l| l.starts_with("agentry_rejections_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(rejected as usize, kinds);
    eprintln!(
        "{kinds} kinds of bad input rejected and dead-lettered, {} valid requests served",
        kinds + 1
    );
    sys.stop().await;
}
