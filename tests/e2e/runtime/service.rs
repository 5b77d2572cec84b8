//! The service API and A2A end to end.

use super::*;

/// Every running agent answers $SRV.PING; $SRV.STATS counts endpoint requests; A2A asks by id and delegates by capability across processes; a missing target is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_api_and_a2a() {
    let mut sys = System::builder().engine(|_| {}).monitor().start().await;
    let js = sys.admin.clone();
    let admin = sys.server.client("admin").await;
    let acme = sys.tenant("acme").await;
    start_echo(&mut sys, agentry_echo::Echo::default());
    let _child = ChildProc::echo_agent(&sys.server.agent_env("echo"));
    let reg = wait_for_agents(&js, "echo", 2).await;
    let agents = reg.find("echo").await.unwrap();

    // $SRV.PING from the operator (admin): every agent answers.
    let inbox = admin.new_inbox();
    let mut replies = admin.subscribe(inbox.clone()).await.unwrap();
    admin
        .publish_with_reply("$SRV.PING", inbox.clone(), "".into())
        .await
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(700), replies.next()).await {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["type"], "io.nats.micro.v1.ping_response");
        assert_eq!(v["name"], "echo");
        ids.insert(
            v["metadata"]["agent_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    for a in &agents {
        assert!(
            ids.contains(&a.id),
            "{} did not answer $SRV.PING ({ids:?})",
            a.id
        );
    }

    // A2A: ask the *other* agent by id (across processes) and delegate by capability.
    let (first, second) = (&agents[0], &agents[1]);
    let ask = submit(
        &acme,
        json!({"call": {"ask": second.id, "input": {"hi": 1}}}),
    )
    .await;
    assert!(ask.is_success(), "{:?}", ask.data);
    assert_eq!(ask.data["output"]["called"]["agent_id"], second.id.as_str());
    let del = submit(
        &acme,
        json!({"call": {"delegate": "echo", "input": {"nested": true}}}),
    )
    .await;
    assert!(del.is_success(), "{:?}", del.data);
    assert_eq!(del.data["output"]["called"]["echo"]["nested"], true);
    let missing = submit(
        &acme,
        json!({"call": {"ask": "echo-000000", "input": {}, "timeout_ms": 500}}),
    )
    .await;
    assert_eq!(missing.ty, "io.agentry.task.failed");
    let msg = missing.data["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("no agent answers on agentry.a2a.echo-000000")
            || msg.contains("did not answer"),
        "{msg}"
    );
    let slow = submit(
        &acme,
        json!({"call": {"ask": first.id, "input": {"sleep_ms": 3000}, "timeout_ms": 300}}),
    )
    .await;
    assert_eq!(slow.ty, "io.agentry.task.failed");
    assert!(
        slow.data["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer within"),
        "{:?}",
        slow.data
    );

    // $SRV.STATS counts requests on the a2a endpoint of the agent we asked
    // (the slow ask is counted when its late reply is sent).
    eventually(
        Duration::from_secs(10),
        "STATS counts 2 a2a requests",
        || {
            let admin = admin.clone();
            async move {
                let inbox = admin.new_inbox();
                let mut replies = admin.subscribe(inbox.clone()).await.unwrap();
                admin
                    .publish_with_reply("$SRV.STATS.echo", inbox, "".into())
                    .await
                    .unwrap();
                let mut total = 0u64;
                while let Ok(Some(m)) =
                    tokio::time::timeout(Duration::from_millis(700), replies.next()).await
                {
                    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                    for ep in v["endpoints"].as_array().cloned().unwrap_or_default() {
                        total += ep["num_requests"].as_u64().unwrap_or(0);
                    }
                }
                total >= 2
            }
        },
    )
    .await;
    sys.stop().await;
}
