//! The domain example workflows on the real built-in agents.

use super::*;

/// The example workflows load as `agentry up` loads them, and the four domain examples run end to end on the real agents: trip planning (weather -> planning, also as a child run awaiting approval), customer escalation (direct, and escalated with an approval signal), incident response (contained, resolved by signal; and a cancelled run whose quarantine is released by compensation), data report (processing -> statistics and a foreach of charts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_examples_run_on_the_real_agents() {
    let sys = Sys::start().await;
    let nats = &sys.nats;
    let fixture = agentry_weather_fixture::Server::start().await.unwrap();
    let mut parts = InProcess::new();
    // One agent process per kind, each as its own user (as deployed).
    for kind in [
        "weather",
        "planning",
        "customer_service",
        "data_analysis",
        "security_monitor",
    ] {
        let mut cfg = nats.agent_config(kind);
        cfg.builtin.weather_base_url = Some(fixture.base_url());
        parts.spawn(move |t| agentry_agent::run_with(cfg, Observer::new(), t));
    }
    let loaded = agentry_ctl::workflow::load_examples(&sys.js).await.unwrap();
    for key in [
        "trip_planning.1",
        "trip_with_approval.1",
        "customer_escalation.1",
        "incident_response.1",
        "data_report.1",
        "multi_city_forecast.1",
        "echo_diamond.1",
    ] {
        assert_eq!(
            loaded.get(key).map(String::as_str),
            Some("created"),
            "{key}: {loaded:?}"
        );
    }
    let tasks = json!([
        {"id": "pack", "duration_h": 1},
        {"id": "hike", "duration_h": 3, "depends_on": ["pack"], "outdoor": true},
        {"id": "museum", "duration_h": 2, "depends_on": ["pack"]}
    ]);
    let (trip, report, direct) = tokio::join!(
        sys.run("trip_planning", json!({"city": "Berlin", "tasks": tasks})),
        sys.run("data_report", json!({
            "csv": "month,sales,visits\nJan,10,100\nFeb,12,130\nMar,15,150\nApr,11,120\n",
            "x": "month", "y": ["sales", "visits"], "title": "Q1"
        })),
        sys.run("customer_escalation", json!({"message": "How do I reset my password? The login page says my email is unknown.", "customer_id": "cust-42", "tier": "standard"})),
    );
    // Trip planning.
    assert_eq!(trip.ty, "io.agentry.workflow.completed", "{:?}", trip.data);
    let plan = &trip.data["output"]["plan"];
    assert_eq!(trip.data["output"]["city"], "Berlin");
    assert_eq!(plan["schedule"].as_array().unwrap().len(), 3, "{plan}");
    assert!(plan["total_duration_h"].as_f64().unwrap() >= 4.0, "{plan}");
    assert!(
        !trip.data["output"]["forecast"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Data report: 4 rows, statistics of both columns, a bar and a line chart.
    assert_eq!(
        report.ty, "io.agentry.workflow.completed",
        "{:?}",
        report.data
    );
    let out = &report.data["output"];
    assert_eq!(out["rows"], 4);
    assert_eq!(out["columns"], json!(["month", "sales", "visits"]));
    assert!(
        out["statistics"]["correlation"]["pearson"].is_array(),
        "{out}"
    );
    assert_eq!(out["charts"].as_array().unwrap().len(), 2);
    assert!(out["charts"][0]["bytes"].as_u64().unwrap() > 0);
    // Customer service, direct path.
    assert_eq!(
        direct.ty, "io.agentry.workflow.completed",
        "{:?}",
        direct.data
    );
    assert_eq!(direct.data["output"]["path"], "direct", "{:?}", direct.data);
    assert!(direct.data["output"]["resolution"]["ticket_id"].is_string());
    let run = sys.state(&direct.request_id).await;
    assert_eq!(run.steps["escalate"].unit.status.as_str(), "skipped");
    // Customer service, escalated: waits for a human's approval.
    sys.start_run("cs-escalated", "customer_escalation", json!({
        "message": "This is UNACCEPTABLE!!! Order #5583021 is three weeks late, nobody answers and I want to complain to a manager.",
        "customer_id": "acme-corp", "tier": "enterprise"
    })).await;
    wait_for_signal_step(&sys.js, "cs-escalated", "approval").await;
    let (code, out, err) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "cs-escalated",
            "approve",
            "--payload",
            r#"{"approved": true, "approver": "lee", "note": "refund the shipping"}"#,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let run = sys
        .wait_status(
            "cs-escalated",
            RunStatus::Completed,
            Duration::from_secs(30),
        )
        .await;
    let out = run.output.unwrap();
    assert_eq!(out["path"], "escalated", "{out}");
    assert_eq!(out["approved"], true);
    assert!(
        ["p1", "p2"].contains(&out["priority"].as_str().unwrap()),
        "{out}"
    );
    assert!(out["ticket_id"].is_string());
    // Incident response: a brute force that succeeded, from one source, just now.
    let t0 = now_ms() - 60_000;
    let mut events: Vec<Value> = (0..8)
        .map(|i| json!({"ts": t0 + i * 2_000, "source": "198.51.100.23", "kind": "auth_failure", "user": "root"}))
        .collect();
    events.push(json!({"ts": t0 + 20_000, "source": "198.51.100.23", "kind": "auth_success", "user": "root"}));
    sys.start_run(
        "ir-resolved",
        "incident_response",
        json!({"events": events}),
    )
    .await;
    sys.start_run(
        "ir-cancelled",
        "incident_response",
        json!({"events": events}),
    )
    .await;
    wait_for_signal_step(&sys.js, "ir-resolved", "resolve").await;
    wait_for_signal_step(&sys.js, "ir-cancelled", "resolve").await;
    let (code, _, _) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "ir-resolved",
            "resolve",
            "--payload",
            r#"{"note": "password rotated"}"#,
        ],
    )
    .await;
    assert_eq!(code, 0);
    let (code, _, _) = cli(
        nats,
        &[
            "workflow",
            "cancel",
            "--tenant",
            "acme",
            "ir-cancelled",
            "--reason",
            "false positive",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let run = sys
        .wait_status("ir-resolved", RunStatus::Completed, Duration::from_secs(30))
        .await;
    let out = run.output.unwrap();
    assert_eq!(out["source"], "198.51.100.23", "{out}");
    assert!(
        ["high", "critical"].contains(&out["level"].as_str().unwrap()),
        "{out}"
    );
    assert_eq!(out["contained"], true);
    assert_eq!(out["notified"], true);
    assert_eq!(out["status"], "closed");
    let run = sys
        .wait_status(
            "ir-cancelled",
            RunStatus::Cancelled,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(run.steps["contain"].unit.status.as_str(), "compensated");
    let evs = events_of(&sys.js, "ir-cancelled").await;
    let released = evs
        .iter()
        .find(|e| e.ty == "io.agentry.step.compensated")
        .expect("compensation event");
    assert_eq!(released.data["step"], "contain");
    assert_eq!(released.data["capability"], "incident_response");
    // The child-run variant of trip planning, approved by the traveller.
    sys.start_run(
        "trip-child",
        "trip_with_approval",
        json!({"city": "Berlin", "tasks": tasks}),
    )
    .await;
    wait_for_signal_step(&sys.js, "trip-child", "approval").await;
    let (code, _, _) = cli(
        nats,
        &[
            "workflow",
            "signal",
            "--tenant",
            "acme",
            "trip-child",
            "approve",
            "--payload",
            r#"{"approved": true}"#,
        ],
    )
    .await;
    assert_eq!(code, 0);
    let run = sys
        .wait_status("trip-child", RunStatus::Completed, Duration::from_secs(30))
        .await;
    let out = run.output.unwrap();
    assert_eq!(out["approved"], true);
    assert_eq!(out["plan"]["schedule"].as_array().unwrap().len(), 3);
    parts.stop().await;
    fixture.stop().await.ok();
    sys.parts.stop().await;
}

async fn events_of(js: &async_nats::jetstream::Context, run: &str) -> Vec<Lifecycle> {
    events(js, Some(run)).await
}
