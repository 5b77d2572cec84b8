//! The permission matrix (`nats/permissions.matrix.json`), one test per role, and refused connections.

use super::*;

mod core_probes;
mod js_probes;

/// How long an allowed operation may take; a permissions violation ends the wait at once.
const T_ALLOW: Duration = Duration::from_secs(4);

/// Subjects the server reported permission violations for, in order.
#[derive(Default)]
struct Violations(Mutex<Vec<String>>);

impl Violations {
    fn mark(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, mark: usize, subjects: &[String]) -> bool {
        self.0.lock().unwrap()[mark..]
            .iter()
            .any(|s| subjects.contains(s))
    }

    async fn wait(&self, mark: usize, subjects: &[String], limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.since(mark, subjects) {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `Permissions Violation for Publish to "<subject>"` -> `<subject>`.
fn violated_subject(text: &str) -> Option<String> {
    if !text.to_ascii_lowercase().contains("permissions violation") {
        return None;
    }
    let start = text.find("to \"")? + 4;
    let end = start + text[start..].find('"')?;
    Some(text[start..end].to_owned())
}

struct RoleConn {
    client: async_nats::Client,
    violations: Arc<Violations>,
    role: String,
}

impl RoleConn {
    /// Returns once the server has processed everything this connection sent
    /// before: async-nats' `flush` only empties the socket buffer. A request
    /// to a subject nobody serves is answered by the server itself, in order
    /// ("no responders"), or refused in order with a permissions violation.
    async fn barrier(&self) {
        let subject = format!("agentry.barrier.{}", uuid::Uuid::new_v4().simple());
        let mark = self.violations.mark();
        let subjects = vec![subject.clone()];
        tokio::select! {
            _ = self.client.request(subject, Bytes::new()) => {}
            _ = self.violations.wait(mark, &subjects, T_ALLOW) => {}
        }
    }
}

/// TLS material for a connection attempt.
#[derive(Clone, Default)]
struct Tls {
    ca: Option<PathBuf>,
    pair: Option<(PathBuf, PathBuf)>,
}

async fn connect_role(
    url: &str,
    role: &str,
    password: Option<String>,
    tls: Tls,
) -> Result<RoleConn, String> {
    let violations = Arc::new(Violations::default());
    let v = violations.clone();
    let mut opts = match password {
        Some(pw) => ConnectOptions::with_user_and_password(role.to_owned(), pw),
        None => ConnectOptions::new(),
    }
    .custom_inbox_prefix(subject::inbox_prefix(role))
    .connection_timeout(Duration::from_secs(3))
    .max_reconnects(Some(1))
    .event_callback(move |ev| {
        let v = v.clone();
        async move {
            if let async_nats::Event::ServerError(async_nats::ServerError::Other(text)) = ev
                && let Some(s) = violated_subject(&text)
            {
                v.0.lock().unwrap().push(s);
            }
        }
    });
    if let Some(ca) = tls.ca {
        opts = opts.add_root_certificates(ca).require_tls(true);
    }
    if let Some((cert, key)) = tls.pair {
        opts = opts.add_client_certificate(cert, key);
    }
    let client = tokio::time::timeout(Duration::from_secs(5), opts.connect(url))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(3), client.flush())
        .await
        .map_err(|_| "no PONG".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(RoleConn {
        client,
        violations,
        role: role.to_owned(),
    })
}

/// A JetStream API error or an error status, as text.
fn api_error(msg: &async_nats::Message) -> Option<String> {
    if let Some(st) = msg.status
        && st.as_u16() >= 400
    {
        return Some(format!(
            "status {} {}",
            st.as_u16(),
            msg.description.clone().unwrap_or_default()
        ));
    }
    if msg.payload.first() == Some(&b'{')
        && let Ok(v) = serde_json::from_slice::<Value>(&msg.payload)
        && !v["error"].is_null()
    {
        return Some(format!(
            "err {}: {}",
            v["error"]["err_code"], v["error"]["description"]
        ));
    }
    None
}

fn encode_payload(payload: &Value, probe_seq: Option<u64>) -> Bytes {
    match payload {
        Value::Null => Bytes::new(),
        Value::String(s) => Bytes::from(s.clone()),
        other => {
            let mut text = other.to_string();
            if let Some(seq) = probe_seq {
                text = text.replace("\"$PROBE_SEQ\"", &seq.to_string());
            }
            Bytes::from(text)
        }
    }
}

fn headers_of(check: &Value) -> Option<HeaderMap> {
    let obj = check["headers"].as_object()?;
    let mut h = HeaderMap::new();
    for (k, v) in obj {
        h.insert(k.as_str(), v.as_str().unwrap_or_default());
    }
    Some(h)
}

struct Matrix<'a> {
    server: &'a AuthServer,
    tls: Option<&'a AuthServer>,
    conns: HashMap<String, RoleConn>,
    n: u64,
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// `Ok(())` when the outcome is what the check expects, for the right cause.
fn judge(check: &Value, out: &Outcome) -> Result<(), String> {
    let got = if out.success { "allow" } else { "deny" };
    let expect = check["expect"].as_str().unwrap();
    if got != expect {
        return Err(format!("expected {expect}, got {got} ({})", out.detail));
    }
    let op = check["op"].as_str().unwrap();
    if expect == "allow" || op == "connect" || op == "tls_connect" {
        return Ok(());
    }
    match check["denied_by"].as_str().unwrap_or("permissions") {
        "permissions" if !out.violation => Err(format!(
            "denied, but not by a permissions violation ({})",
            out.detail
        )),
        "server" | "account" if out.violation => {
            Err("expected a server/account refusal, got a permissions violation".into())
        }
        "server" if !out.server_error => {
            Err(format!("expected a JetStream error reply ({})", out.detail))
        }
        _ => Ok(()),
    }
}

fn matrix_checks() -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join("nats/permissions.matrix.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs every check of `role` in file order on a fresh server; asserts each
/// matches and that the role has allowed operations and at least 3 denied ones.
async fn run_role(role: &str) {
    let checks: Vec<Value> = matrix_checks()
        .into_iter()
        .filter(|c| c["role"] == role)
        .collect();
    let allows = checks.iter().filter(|c| c["expect"] == "allow").count();
    let denies = checks.len() - allows;
    if role != "anonymous" {
        assert!(
            denies >= 3,
            "{role}: only {denies} forbidden operations in the matrix"
        );
        assert!(allows >= 1, "{role}: no allowed operation in the matrix");
    }
    let server = AuthServer::start();
    let needs_tls = checks.iter().any(|c| c["op"] == "tls_connect");
    let tls = needs_tls.then(|| AuthServer::start_tls(Arc::new(Certs::generate())));
    let mut m = Matrix {
        server: &server,
        tls: tls.as_ref(),
        conns: HashMap::new(),
        n: 0,
    };
    m.setup(&[role]).await;
    let mut failures = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let out = m.run(check).await;
        if std::env::var_os("AGENTRY_TEST_TRACE").is_some() {
            let state = m
                .conns
                .get(role)
                .map(|c| format!("{:?}", c.client.connection_state()));
            eprintln!(
                "#{i} {} {} -> {:?} {state:?}",
                check["op"], check["subject"], out
            );
        }
        if let Err(why) = judge(check, &out) {
            failures.push(format!(
                "#{i} {} {} {}: {why}",
                check["op"], check["subject"], check["note"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{role}: {} of {} checks mismatched:\n{}",
        failures.len(),
        checks.len(),
        failures.join("\n")
    );
    eprintln!("{role}: {allows} allowed and {denies} denied operations as expected");
}

/// client_acme: submits on its tenant subject and reads only its own results; tasks, other tenants, the registry, stream info and consumers are refused.
#[tokio::test]
async fn matrix_client_acme() {
    run_role("client_acme").await;
}

/// client_globex: the same shape as acme, isolated from acme's results and inbox.
#[tokio::test]
async fn matrix_client_globex() {
    run_role("client_globex").await;
}

/// agent (generic, custom agents): pulls tasks, writes results, registry, events, DLQ, serves A2A and $SRV; cannot delegate, touch any bucket but reading agentry-agents, delete streams, publish tasks or read results.
#[tokio::test]
async fn matrix_agent() {
    run_role("agent").await;
}

/// agent_echo: the base agent rights plus delegation (child requests on a tenant subject, the child's result); no buckets, no security consumers.
#[tokio::test]
async fn matrix_agent_echo() {
    run_role("agent_echo").await;
}

/// agent_weather: the base agent rights only; no delegation, no results, no buckets.
#[tokio::test]
async fn matrix_agent_weather() {
    run_role("agent_weather").await;
}

/// agent_planning: the base plus delegation; no buckets, no quarantine, no security-results.
#[tokio::test]
async fn matrix_agent_planning() {
    run_role("agent_planning").await;
}

/// agent_assistant: the base plus delegation (tool calls as child requests) and the registry read; no task publishing, no bucket writes.
#[tokio::test]
async fn matrix_agent_assistant() {
    run_role("agent_assistant").await;
}

/// agent_data_analysis: the base plus the artifact object store; no delegation, tickets or quarantine.
#[tokio::test]
async fn matrix_agent_data_analysis() {
    run_role("agent_data_analysis").await;
}

/// agent_customer_service: the base plus KV agentry-tickets; no incidents, quarantine, delegation or artifacts.
#[tokio::test]
async fn matrix_agent_customer_service() {
    run_role("agent_customer_service").await;
}

/// agent_security_monitor: the base plus its security-events/-dlq/-results consumers, incidents and the only agent write of agentry-quarantine.
#[tokio::test]
async fn matrix_agent_security_monitor() {
    run_role("agent_security_monitor").await;
}

/// engine: pulls requests, routes tasks, writes results, runs and DLQ; cannot create or delete streams, write the registry or feed its own queue.
#[tokio::test]
async fn matrix_engine() {
    run_role("engine").await;
}

/// monitor: reads JetStream state, owns agentry-agents and the DLQ backstop; cannot route work, answer requests, purge or read results.
#[tokio::test]
async fn matrix_monitor() {
    run_role("monitor").await;
}

/// console: submits on the untenanted subject, reads results by direct get, watches the registry and reads runs and queue depth; writes no bucket, publishes no task, reads no other inbox.
#[tokio::test]
async fn matrix_console() {
    run_role("console").await;
}

/// mcp: the MCP server, a client of tenant `mcp` that reads (never writes) agentry-agents and agentry-workflows and watches step events; other tenants, run state, tasks and the rest of the events are refused.
#[tokio::test]
async fn matrix_mcp() {
    run_role("mcp").await;
}

/// admin: manages streams and consumers inside AGENTRY; nothing of the SYS account.
#[tokio::test]
async fn matrix_admin() {
    run_role("admin").await;
}

/// sys: system-account monitoring only; AGENTRY's subjects and streams are out of reach.
#[tokio::test]
async fn matrix_sys() {
    run_role("sys").await;
}

/// With auth on, a connection without credentials or with a wrong password is refused, and it can never publish.
#[tokio::test]
async fn unauthenticated_connections_are_refused() {
    run_role("anonymous").await;
    let server = AuthServer::start();
    let err = async_nats::connect(server.url.clone()).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("authorization"),
        "{err}"
    );
    let err = ConnectOptions::with_user_and_password("client_acme".into(), "wrong".into())
        .connect(server.url.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("authorization"),
        "{err}"
    );
    // An agentry binary's connect fails fast with the server's refusal.
    let mut cfg = agentry::config::Nats::plain(server.url.clone());
    cfg.user = Some("engine".into());
    cfg.password = Some("not-the-password".into());
    let err = agentry::connect::connect_once(&cfg, "test")
        .await
        .unwrap_err();
    assert!(
        matches!(err, agentry::connect::ConnectError::Connect { .. }),
        "{err}"
    );
}
