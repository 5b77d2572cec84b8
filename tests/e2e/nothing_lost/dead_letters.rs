//! Every error path keeps its message until its dead-letter copy or timer is stored.

use super::*;

/// Worker failure path: a task that fails permanently while the DLQ refuses
/// writes is NAKed (redelivered), not terminated; once the DLQ accepts again
/// the client gets `task.failed` and the DLQ holds exactly one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_task_is_kept_until_its_dlq_copy_is_stored() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    sys.echo_agent();
    wait_pulling(&sys.admin).await;
    let subjects = refuse(&sys.admin, subject::DLQ_STREAM).await;
    let id = RequestId::generate();
    sys.publish(&echo_task(&id, json!({"fail": "permanent"}), None))
        .await;
    wait_redelivered(&sys.admin, subject::TASKS_STREAM, "cap-echo").await;
    assert!(
        sys.stored_result(&id).await.is_none(),
        "no result while the DLQ refuses"
    );
    assert_eq!(
        stream_messages(&sys.admin, subject::TASKS_STREAM).await,
        1,
        "the task is kept"
    );
    accept(&sys.admin, subject::DLQ_STREAM, subjects).await;
    let out = sys
        .wait_result(&id, Duration::from_secs(30), "task.failed stored")
        .await;
    assert_eq!(out.ty, types::TASK_FAILED);
    let copy = wait_dlq(&sys.admin, Some(id.as_str()), subject::TASKS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
        Some("task_failed")
    );
    wait_empty(&sys.admin, subject::TASKS_STREAM, "task removed").await;
    sys.sys.stop().await;
}

/// Reject path: a request for an unknown capability while the DLQ refuses
/// writes is kept (redelivered by the engine's consumer) until its DLQ copy
/// is stored; the client gets `request.rejected` once, the DLQ one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_request_is_kept_until_its_dlq_copy_is_stored() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    let subjects = refuse(&sys.admin, subject::DLQ_STREAM).await;
    let id = RequestId::generate();
    let ev = client::task_request(&id, SOURCE, "no_such_capability", json!({}), None);
    sys.publish(&ev).await;
    wait_redelivered(
        &sys.admin,
        subject::REQUESTS_STREAM,
        subject::ENGINE_CONSUMER,
    )
    .await;
    assert_eq!(
        stream_messages(&sys.admin, subject::REQUESTS_STREAM).await,
        1,
        "the request is kept while its DLQ copy cannot be written"
    );
    accept(&sys.admin, subject::DLQ_STREAM, subjects).await;
    let copy = wait_dlq(&sys.admin, Some(id.as_str()), subject::REQUESTS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_REASON).map(|v| v.as_str()),
        Some("unknown_capability")
    );
    assert_eq!(
        copy.get(event::header::DLQ_SUBJECT).map(|v| v.as_str()),
        Some("agentry.requests.acme")
    );
    let out = sys
        .stored_result(&id)
        .await
        .expect("request.rejected stored");
    assert_eq!(out.ty, types::REQUEST_REJECTED);
    wait_empty(&sys.admin, subject::REQUESTS_STREAM, "request removed").await;
    sys.sys.stop().await;
}

/// Undecodable step results: dead-lettered (reason and stream recorded),
/// never dropped; while the DLQ refuses, the step result stays in AGENTRY_STEPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_step_result_is_dead_lettered_not_dropped() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    let subjects = refuse(&sys.admin, subject::DLQ_STREAM).await;
    let agent = jetstream::new(sys.server.client(echo_role(&sys.server)).await);
    let run = agentry::id::RunId::new("run-garbage").unwrap();
    agent
        .publish(subject::steps(&run), "not a cloudevent {".into())
        .await
        .unwrap()
        .await
        .unwrap();
    wait_redelivered(
        &sys.admin,
        subject::STEPS_STREAM,
        subject::ENGINE_STEPS_CONSUMER,
    )
    .await;
    assert_eq!(
        stream_messages(&sys.admin, subject::STEPS_STREAM).await,
        1,
        "kept"
    );
    accept(&sys.admin, subject::DLQ_STREAM, subjects).await;
    let copy = wait_dlq(&sys.admin, None, subject::STEPS_STREAM).await;
    assert_eq!(
        copy.get(event::header::DLQ_SUBJECT).map(|v| v.as_str()),
        Some("agentry.steps.run-garbage")
    );
    wait_empty(&sys.admin, subject::STEPS_STREAM, "step result removed").await;
    sys.sys.stop().await;
}

/// Task deadline timer: while timers cannot be scheduled, the request is kept
/// (not acked with an unenforced deadline); once they can, the timer is
/// scheduled and fires: the client gets `task.failed` with code `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_request_is_kept_until_its_deadline_timer_is_scheduled() {
    let mut sys = Sys::start(test_settings()).await;
    sys.engine(|_| {});
    sys.echo_agent();
    wait_pulling(&sys.admin).await;
    let subjects = refuse(&sys.admin, subject::TIMERS_STREAM).await;
    let id = RequestId::generate();
    // The agent holds the task far beyond its deadline: only the timer can answer.
    sys.publish(&echo_task(&id, json!({"sleep_ms": 60_000}), Some(2_000)))
        .await;
    wait_redelivered(
        &sys.admin,
        subject::REQUESTS_STREAM,
        subject::ENGINE_CONSUMER,
    )
    .await;
    assert_eq!(
        stream_messages(&sys.admin, subject::REQUESTS_STREAM).await,
        1,
        "kept"
    );
    accept(&sys.admin, subject::TIMERS_STREAM, subjects).await;
    let out = sys
        .wait_result(&id, Duration::from_secs(30), "timeout result")
        .await;
    assert_eq!(out.ty, types::TASK_FAILED);
    assert_eq!(error_code(&out), "timeout");
    wait_empty(&sys.admin, subject::REQUESTS_STREAM, "request acked").await;
    sys.sys.stop().await;
}
