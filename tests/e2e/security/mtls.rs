//! End to end under auth: mutual TLS, and tenant isolation of results and request ids.

use super::*;

/// Mutual TLS end to end: engine, agent and a tenant client connect with certificates from the run-time CA and a task completes; no certificate, a certificate from another CA, or plain text is refused.
#[tokio::test]
async fn mtls_end_to_end() {
    let certs = Arc::new(Certs::generate());
    let server = AuthServer::start_tls(certs.clone());
    server.setup().await;
    let sys = Stack::start(&server, |_| {}, true);
    let (c, js) = tenant_client(&server, "acme").await;
    let out = echo_as(&c, &js, &acme(), "/mtls", json!({"message": "over mTLS"})).await;
    assert_eq!(out.ty, "io.agentry.task.completed", "{:?}", out.data);
    assert_eq!(out.data["output"]["echo"]["message"], "over mTLS");

    let mut no_cert = server.nats("client_acme");
    no_cert.tls_cert = None;
    no_cert.tls_key = None;
    assert!(agentry::connect::connect_once(&no_cert, "t").await.is_err());
    let mut foreign = server.nats("client_acme");
    let (cert, key) = Certs::pair(&certs.foreign, "client_acme");
    foreign.tls_cert = Some(cert);
    foreign.tls_key = Some(key);
    assert!(agentry::connect::connect_once(&foreign, "t").await.is_err());
    let mut no_tls = server.nats("client_acme");
    no_tls.tls_ca = None;
    no_tls.tls_cert = None;
    no_tls.tls_key = None;
    assert!(agentry::connect::connect_once(&no_tls, "t").await.is_err());
    assert!(
        !plaintext_connect(server.port, "client_acme", &server.password("client_acme")).success
    );
    sys.stop().await;
}

/// Tenants: each receives results only on its own subject (also rejections), the CLI submits with --tenant, and another tenant cannot read them.
#[tokio::test]
async fn tenant_results_are_isolated() {
    let server = AuthServer::start();
    server.setup().await;
    let sys = Stack::start(&server, |_| {}, false);
    let (ac, ajs) = tenant_client(&server, "acme").await;
    let (gc, gjs) = tenant_client(&server, "globex").await;
    let globex = Tenant::new("globex").unwrap();

    let a = echo_as(&ac, &ajs, &acme(), "/acme", json!({"who": "acme"})).await;
    let g = echo_as(&gc, &gjs, &globex, "/globex", json!({"who": "globex"})).await;
    assert_eq!(a.data["output"]["echo"]["who"], "acme");
    assert_eq!(g.data["output"]["echo"]["who"], "globex");
    // Stored where each tenant (and only it) reads.
    let aid = RequestId::new(a.request_id.as_str()).unwrap();
    assert!(
        client::fetch_result_as(&ajs, Some(&acme()), &aid)
            .await
            .is_some()
    );
    assert!(
        client::fetch_result_as(&gjs, Some(&acme()), &aid)
            .await
            .is_none()
    );
    assert!(
        client::fetch_result_as(&gjs, Some(&globex), &aid)
            .await
            .is_none()
    );
    // A rejection goes to the tenant's subject too.
    let id = RequestId::new("tenant-nocap").unwrap();
    let ev = task_request(&id, "/acme", "no_such_cap", json!({}), None);
    let out = client::submit_as(
        &ac,
        &ajs,
        Some(&acme()),
        &ev,
        Mode::Binary,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(out.data["reason"], "unknown_capability");

    // The CLI as tenant acme (off the runtime thread: the engine runs on it).
    let (url, pw) = (server.url.clone(), server.password("client_acme"));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin("agentry"))
            .args(["--nats-url", &url, "--nats-user", "client_acme"])
            .args(["--nats-password", &pw])
            .args(["--nats-inbox-prefix", "_INBOX.client_acme", "--json"])
            .args([
                "submit",
                "echo",
                "--tenant",
                "acme",
                "--source",
                "/cli-acme",
            ])
            .args(["--input", r#"{"via":"cli"}"#])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["output"]["echo"]["via"], "cli");
    sys.stop().await;
}

/// A request id used by two tenants names two requests: both complete and both results are stored, each on its own subject.
#[tokio::test]
async fn same_request_id_in_two_tenants() {
    let server = AuthServer::start();
    server.setup().await;
    let sys = Stack::start(&server, |_| {}, false);
    let (ac, ajs) = tenant_client(&server, "acme").await;
    let (gc, gjs) = tenant_client(&server, "globex").await;
    let globex = Tenant::new("globex").unwrap();
    let id = RequestId::new("shared-id-1").unwrap();
    let a = client::submit_as(
        &ac,
        &ajs,
        Some(&acme()),
        &task_request(&id, "/acme", "echo", json!({"who": "acme"}), None),
        Mode::Binary,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let g = client::submit_as(
        &gc,
        &gjs,
        Some(&globex),
        &task_request(&id, "/globex", "echo", json!({"who": "globex"}), None),
        Mode::Binary,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(a.data["output"]["echo"]["who"], "acme");
    assert_eq!(g.data["output"]["echo"]["who"], "globex");
    // Live delivery is not enough: a late client reads the stored result.
    let a = client::fetch_result_as(&ajs, Some(&acme()), &id).await;
    let g = client::fetch_result_as(&gjs, Some(&globex), &id).await;
    assert_eq!(
        a.expect("acme's result stored").data["output"]["echo"]["who"],
        "acme"
    );
    assert_eq!(
        g.expect("globex's result stored").data["output"]["echo"]["who"],
        "globex"
    );
    sys.stop().await;
}
