//! Workflow definitions, runs and the CLI are per tenant.

use super::*;

/// A run that waits for an `approve` signal between two echo steps.
const GATE: &str = r#"
name: gate
version: 1
steps:
  - id: draft
    capability: echo
    input: { doc: input.doc }
  - id: approve
    needs: [draft]
    wait_for: { signal: approve, timeout: 10m }
  - id: publish
    capability: echo
    needs: [approve]
    input: { doc: steps.draft.output.echo.doc, by: steps.approve.output.by }
output: "{'doc': steps.publish.output.echo.doc, 'by': steps.approve.output.by}"
"#;

/// Runs the `agentry` CLI connected as `role`; (exit code, stdout, stderr).
async fn cli_as(server: &AuthServer, role: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(bin("agentry"));
    cmd.args(args);
    for (k, v) in server.env(role) {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run agentry (cargo build -p agentry-ctl): {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends a signal or cancel with the CLI as tenant `t`; returns the CLI's
/// exit code and the request id it printed.
async fn cli_request_as(server: &AuthServer, t: &Tenant, args: &[&str]) -> (i32, RequestId) {
    let role = format!("client_{t}");
    let mut full = vec!["--json", "workflow"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--tenant", t.as_str()]);
    let (code, out, err) = cli_as(server, &role, &full).await;
    assert!(code == 0 || code == 1, "exit {code}: {out}{err}");
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let id = RequestId::new(v["request_id"].as_str().unwrap()).unwrap();
    (code, id)
}

/// The rejection the engine stored for tenant `t`'s request `id`.
async fn rejection_of(server: &AuthServer, t: &Tenant, id: &RequestId) -> serde_json::Value {
    let (_c, js) = as_tenant(server, t.as_str()).await;
    eventually(Duration::from_secs(20), "the request's rejection", || {
        let (js, id, t) = (js.clone(), id.clone(), t.clone());
        async move { client::fetch_result_as(&js, Some(&t), &id).await.is_some() }
    })
    .await;
    let o = client::fetch_result_as(&js, Some(t), id).await.unwrap();
    assert_eq!(o.ty, event::types::REQUEST_REJECTED, "{:?}", o.data);
    o.data
}

/// Acceptance 2: acme and globex run `echo_diamond` under the same run id and each gets its own result on its own subject; globex's signal and cancel of acme's waiting run are refused exactly like an unknown run's, and acme's run is unaffected and completes on acme's own signal (CLI `--tenant` throughout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_per_tenant() {
    let mut sys = System::builder().start().await;
    let admin_js = sys.admin.clone();
    let diamond =
        std::fs::read_to_string(repo_root().join("schemas/examples/workflows/echo_diamond.yaml"))
            .unwrap();
    agentry::workflow::store::put(&admin_js, &diamond)
        .await
        .unwrap();
    agentry::workflow::store::put(&admin_js, GATE)
        .await
        .unwrap();
    sys.engine(|_| {});
    sys.echo_agent(16);
    let (acme, globex) = (tenant("acme"), tenant("globex"));

    // Same run id, two tenants, different inputs: two runs, two results.
    let run = RequestId::new("shared-run").unwrap();
    let submit = |t: Tenant, n: i64| {
        let (server, run) = (&sys.server, run.clone());
        async move {
            let (c, js) = as_tenant(server, t.as_str()).await;
            let ev = workflow_request(&run, "/app", "echo_diamond", None, json!({"n": n}));
            client::submit_as(
                &c,
                &js,
                Some(&t),
                &ev,
                Mode::Binary,
                Duration::from_secs(60),
            )
            .await
            .unwrap()
        }
    };
    let (a, g) = tokio::join!(submit(acme.clone(), 3), submit(globex.clone(), 0));
    assert_eq!(a.ty, event::types::WORKFLOW_COMPLETED, "{:?}", a.data);
    assert_eq!(g.ty, event::types::WORKFLOW_COMPLETED, "{:?}", g.data);
    assert_eq!(a.data["output"]["total"], 19, "{:?}", a.data);
    assert_eq!(g.data["output"]["total"], 1, "{:?}", g.data);
    for (t, total) in [(&acme, 3), (&globex, 0)] {
        let st = run_state(&admin_js, &format!("{t}.shared-run"))
            .await
            .unwrap();
        assert_eq!(st.tenant.as_deref(), Some(t.as_str()));
        assert_eq!(st.input["n"], total);
    }
    // Each result lives on its tenant's subject only.
    let mut results = admin_js.get_stream(subject::RESULTS_STREAM).await.unwrap();
    for t in [&acme, &globex] {
        let m = results
            .get_last_raw_message_by_subject(&subject::results_for(Some(t), &run))
            .await
            .unwrap();
        assert!(!m.payload.is_empty() || !m.headers.is_empty());
    }
    assert!(
        results
            .get_last_raw_message_by_subject(&subject::results(&run))
            .await
            .is_err(),
        "no untenanted result"
    );
    let info = results.info().await.unwrap();
    assert!(info.state.messages >= 2);

    // `agentry submit --workflow --tenant` gets its result as the tenant's user.
    let (code, out, err) = cli_as(
        &sys.server,
        "client_globex",
        &[
            "--json",
            "submit",
            "--workflow",
            "echo_diamond",
            "--input",
            r#"{"n": 2}"#,
            "--tenant",
            "globex",
            "--id",
            "shared-run-2",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["data"]["output"]["total"], 11, "{v}");

    // Acme's run waits for approval; globex tries to approve and to cancel it.
    let (code, out, err) = cli_as(
        &sys.server,
        "client_acme",
        &[
            "workflow",
            "run",
            "gate",
            "--id",
            "gate-1",
            "--input",
            r#"{"doc": "q3"}"#,
            "--tenant",
            "acme",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    eventually(
        Duration::from_secs(20),
        "acme's run waits for approval",
        || {
            let admin_js = admin_js.clone();
            async move {
                run_state(&admin_js, "acme.gate-1").await.is_some_and(|r| {
                    r.steps
                        .get("approve")
                        .is_some_and(|s| s.unit.status.as_str() == "waiting")
                })
            }
        },
    )
    .await;
    let signal = [
        "signal",
        "gate-1",
        "approve",
        "--payload",
        r#"{"by": "mallory"}"#,
    ];
    let mut refused = Vec::new();
    for args in [
        &signal[..],
        &["cancel", "gate-1"],
        &["cancel", "no-such-run"],
    ] {
        let (_code, id) = cli_request_as(&sys.server, &globex, args).await;
        refused.push(rejection_of(&sys.server, &globex, &id).await);
    }
    let (forged, cancel, unknown) = (&refused[0], &refused[1], &refused[2]);
    for o in [forged, cancel, unknown] {
        assert_eq!(o["reason"], "unknown_run", "{o:?}");
    }
    // The same words as for a run that does not exist: existence does not leak.
    assert_eq!(forged["detail"], "no workflow run gate-1");
    assert_eq!(cancel["detail"], "no workflow run gate-1");
    assert_eq!(unknown["detail"], "no workflow run no-such-run");
    let st = run_state(&admin_js, "acme.gate-1").await.unwrap();
    assert_eq!(st.status.as_str(), "running");
    assert_eq!(st.steps["approve"].unit.status.as_str(), "waiting");
    assert!(run_state(&admin_js, "globex.gate-1").await.is_none());

    // The operator's views by tenant.
    let (code, out, err) = cli_as(
        &sys.server,
        "admin",
        &["--json", "workflow", "runs", "--tenant", "acme"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"gate-1") && ids.contains(&"shared-run"));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["tenant"] == "acme")
    );
    let (code, out, err) = cli_as(
        &sys.server,
        "admin",
        &["workflow", "show", "gate-1", "--tenant", "acme"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("tenant    acme") && out.contains("approve"),
        "{out}"
    );
    let (code, _, err) = cli_as(
        &sys.server,
        "admin",
        &["workflow", "show", "gate-1", "--tenant", "globex"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no workflow run gate-1"), "{err}");

    // Acme approves its own run: it completes and answers on acme's subject.
    let (ac, ajs) = as_tenant(&sys.server, "acme").await;
    let gate = RequestId::new("gate-1").unwrap();
    let mut sub = ac
        .subscribe(subject::results_for(Some(&acme), &gate))
        .await
        .unwrap();
    ac.flush().await.unwrap();
    let signal = [
        "signal",
        "gate-1",
        "approve",
        "--payload",
        r#"{"by": "ana"}"#,
    ];
    let (code, _) = cli_request_as(&sys.server, &acme, &signal).await;
    assert_eq!(code, 0, "acme's own signal was refused");
    let done = match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
        Ok(Some(_)) => client::fetch_result_as(&ajs, Some(&acme), &gate)
            .await
            .unwrap(),
        _ => panic!("acme's run did not finish"),
    };
    assert_eq!(done.ty, event::types::WORKFLOW_COMPLETED, "{:?}", done.data);
    assert_eq!(done.data["output"], json!({"doc": "q3", "by": "ana"}));
    sys.stop().await;
}
