//! Exhausted tasks get a terminal result; resubmission after the duplicate window.

use std::collections::HashMap;

use super::*;

/// Pulls one delivery of the echo queue as a worker that crashes (never acks,
/// never reports): the delivery number it got.
async fn crash_once(agent: &jetstream::Context) -> u64 {
    let c: PullConsumer = agent
        .get_stream_no_info(subject::TASKS_STREAM)
        .await
        .unwrap()
        .get_consumer(&subject::task_consumer(&Capability::new("echo").unwrap()))
        .await
        .unwrap();
    loop {
        let mut batch = c
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .unwrap();
        if let Some(Ok(m)) = batch.next().await {
            return m.info().unwrap().delivered as u64;
        }
    }
}

/// No reliance on advisories, monitor not running: a task whose handler always
/// fails retryably runs `max_deliver - 1` times and gets `task.failed`
/// (retries_exhausted) plus a DLQ copy; a task whose workers crashed on every
/// attempt gets the same from the runtime on the last delivery, without running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_tasks_get_a_terminal_result_without_the_monitor() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    let max_deliver = test_settings().task_max_deliver;
    // Workers that crash on every attempt but the last.
    let crashed = RequestId::generate();
    sys.publish(&echo_task(
        &crashed,
        json!({"counter_key": "crashed"}),
        None,
    ))
    .await;
    let agent = jetstream::new(sys.server.client(echo_role(&sys.server)).await);
    let mut deliveries = 0;
    while deliveries < (max_deliver - 1) as u64 {
        deliveries = crash_once(&agent).await;
    }
    sys.echo_agent();
    let out = sys
        .submit(
            &echo_task(&RequestId::generate(), json!({"fail": "retryable"}), None),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(out.ty, types::TASK_FAILED);
    assert_eq!(error_code(&out), "retries_exhausted");
    assert_eq!(out.data["attempts"], json!(max_deliver - 1));
    let id = RequestId::new(out.data["request_id"].as_str().unwrap()).unwrap();
    let copy = wait_dlq(&sys.admin, Some(id.as_str()), subject::TASKS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
        Some("task_failed")
    );

    let out = sys
        .wait_result(&crashed, Duration::from_secs(30), "crashed task answered")
        .await;
    assert_eq!(out.ty, types::TASK_FAILED);
    assert_eq!(error_code(&out), "retries_exhausted");
    assert_eq!(
        sys.echo.executions_of("crashed"),
        0,
        "the last delivery records, it does not run"
    );
    let copy = wait_dlq(&sys.admin, Some(crashed.as_str()), subject::TASKS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
        Some("max_deliveries")
    );
    assert_eq!(
        stream_messages(&sys.admin, subject::TASKS_STREAM).await,
        0,
        "nothing stranded"
    );
    sys.sys.stop().await;
}

/// The backstop, for deliveries nobody could record (every worker crashed,
/// the last one too): the monitor copies each exhausted task to the DLQ,
/// answers its client with `task.failed` and removes it, for many at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backstop_answers_tasks_exhausted_by_crashes() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    sys.monitor();
    let ids: Vec<RequestId> = (0..8).map(|_| RequestId::generate()).collect();
    for id in &ids {
        sys.publish(&echo_task(id, json!({}), None)).await;
    }
    eventually(Duration::from_secs(20), "tasks queued", || {
        let admin = sys.admin.clone();
        async move { stream_messages(&admin, subject::TASKS_STREAM).await == 8 }
    })
    .await;
    // A worker that crashes on every delivery of every task.
    let agent = jetstream::new(sys.server.client(echo_role(&sys.server)).await);
    let c: PullConsumer = agent
        .get_stream_no_info(subject::TASKS_STREAM)
        .await
        .unwrap()
        .get_consumer(&subject::task_consumer(&Capability::new("echo").unwrap()))
        .await
        .unwrap();
    // It keeps pulling (as a restarted worker would): the server announces
    // an exhausted message when it next looks for one to deliver.
    let crasher = tokio::spawn(async move {
        loop {
            let Ok(mut batch) = c
                .fetch()
                .max_messages(16)
                .expires(Duration::from_secs(2))
                .messages()
                .await
            else {
                continue;
            };
            while let Some(Ok(_dropped_without_ack)) = batch.next().await {}
        }
    });
    for id in &ids {
        let js = sys.acme_js.clone();
        let id2 = id.clone();
        eventually(Duration::from_secs(90), "backstop answer", || {
            let js = js.clone();
            let id = id2.clone();
            async move {
                client::fetch_result_as(&js, Some(&acme()), &id)
                    .await
                    .is_some()
            }
        })
        .await;
        let out = sys.stored_result(id).await.unwrap();
        assert_eq!(out.ty, types::TASK_FAILED);
        assert_eq!(error_code(&out), "retries_exhausted");
        let copy = wait_dlq(&sys.admin, Some(id.as_str()), subject::TASKS_STREAM).await;
        assert_eq!(
            copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
            Some("max_deliveries")
        );
    }
    wait_empty(&sys.admin, subject::TASKS_STREAM, "exhausted tasks removed").await;
    crasher.abort();
    sys.sys.stop().await;
}

/// Engine and echo agent on a requests stream whose duplicate window is 1 s.
async fn one_second_window() -> Sys {
    let settings = agentry::topology::Settings {
        dedup_window_secs: 1,
        ..test_settings()
    };
    let mut sys = Sys::start(settings).await;
    sys.engine(|_| {});
    sys.echo_agent();
    wait_pulling(&sys.admin).await;
    sys
}

/// Idempotency over the results' retention: with a 1 s duplicate window, a
/// task and a workflow resubmitted after the window get their stored result
/// (the same event) and run nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_after_the_duplicate_window_gets_the_stored_result() {
    let sys = one_second_window().await;
    let id = RequestId::generate();
    let task = echo_task(&id, json!({"counter_key": "once"}), None);
    let first = sys.submit(&task, Duration::from_secs(30)).await;
    assert_eq!(first.ty, types::TASK_COMPLETED);
    assert_eq!(sys.echo.executions_of("once"), 1);
    // Not a readiness wait: the duplicate window (1 s) must pass.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let again = sys.submit(&task, Duration::from_secs(30)).await;
    assert_eq!(again.ty, types::TASK_COMPLETED);
    assert_eq!(
        again.event.id(),
        first.event.id(),
        "the stored result, not a new one"
    );
    assert_eq!(sys.echo.executions_of("once"), 1, "nothing ran again");
    assert_eq!(stream_messages(&sys.admin, subject::TASKS_STREAM).await, 0);
    sys.sys.stop().await;
}

/// The stored-result lookups are batched (one multi-subject direct get for
/// the requests waiting together, bins/engine/src/answered.rs): a burst of
/// resubmissions after the duplicate window, interleaved with new requests
/// and one resubmission in structured mode, is still answered request by
/// request. Each resubmitted id gets its own stored result again, live, and
/// runs nothing; each new id runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_resubmissions_is_answered_request_by_request() {
    const N: usize = 24;
    let sys = one_second_window().await;
    let task = |id: &RequestId, key: String| echo_task(id, json!({"counter_key": key}), None);
    let old: Vec<RequestId> = (0..N).map(|_| RequestId::generate()).collect();
    for (i, id) in old.iter().enumerate() {
        sys.publish(&task(id, format!("old-{i}"))).await;
    }
    let mut first = HashMap::new();
    for id in &old {
        let r = sys
            .wait_result(id, Duration::from_secs(30), "first result")
            .await;
        assert_eq!(r.ty, types::TASK_COMPLETED);
        first.insert(id.to_string(), r.event.id().to_owned());
    }
    // Not a readiness wait: the duplicate window (1 s) must pass.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let mut live = sys.acme.subscribe("agentry.results.acme.>").await.unwrap();
    sys.acme.flush().await.unwrap();
    let new: Vec<RequestId> = (0..N).map(|_| RequestId::generate()).collect();
    for i in 0..N {
        let again = task(&old[i], format!("old-{i}"));
        if i == 0 {
            client::publish_request_as(&sys.acme_js, Some(&acme()), &again, Mode::Structured)
                .await
                .expect("request stored");
        } else {
            sys.publish(&again).await;
        }
        sys.publish(&task(&new[i], format!("new-{i}"))).await;
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    while seen.len() < 2 * N {
        let msg = tokio::time::timeout(Duration::from_secs(30), live.next())
            .await
            .expect("a result for every request")
            .unwrap();
        let ev = agentry_tests::event_of(&msg);
        let id = msg.subject.as_str().rsplit('.').next().unwrap().to_owned();
        assert!(
            seen.insert(id.clone(), ev.id().to_owned()).is_none(),
            "one result per request: {id} answered twice"
        );
    }
    for (i, id) in old.iter().enumerate() {
        assert_eq!(
            seen[id.as_str()],
            first[id.as_str()],
            "the stored result of {id}, not a new one"
        );
        assert_eq!(
            sys.echo.executions_of(&format!("old-{i}")),
            1,
            "{id} ran again"
        );
    }
    for (i, id) in new.iter().enumerate() {
        assert!(seen.contains_key(id.as_str()), "{id} answered");
        assert_eq!(sys.echo.executions_of(&format!("new-{i}")), 1);
    }
    wait_empty(&sys.admin, subject::REQUESTS_STREAM, "requests taken").await;
    assert_eq!(stream_messages(&sys.admin, subject::TASKS_STREAM).await, 0);
    sys.sys.stop().await;
}
