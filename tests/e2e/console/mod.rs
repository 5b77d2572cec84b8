//! The web console (issue 20) against a real system under the production
//! accounts, the console connecting as its own user `console`: a headless
//! Chromium driven by `browser.py` (Python selenium), and HTTP-level checks
//! of its security (token, CSRF, origin, escaping).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use agentry_ctl::console::{self, Console};
use agentry_tests::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

mod http;

const TOKEN: &str = "console-test-token-0123456789abcdef";

/// Starts the console in this process as NATS user `console`.
async fn start_console(sys: &System) -> SocketAddr {
    let client = sys.server.client("console").await;
    console::spawn(
        Console::new(client, TOKEN.to_owned()),
        "127.0.0.1:0".parse().unwrap(),
        sys.parts.token.child_token(),
    )
    .await
    .expect("console listens")
}

/// Set to `1` to write the screenshots over the tracked `docs/console/*.png`.
const UPDATE_SCREENSHOTS: &str = "AGENTRY_UPDATE_SCREENSHOTS";

/// Where `browser.py` saves screenshots (failure screenshots too): the
/// tracked `docs/console/` only when [`UPDATE_SCREENSHOTS`] is `1`, else
/// the target dir's scratch space, so a test run leaves the tree clean.
fn shots_dir() -> std::path::PathBuf {
    if std::env::var(UPDATE_SCREENSHOTS).is_ok_and(|v| v == "1") {
        repo_root().join("docs/console")
    } else {
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
    }
}

/// `browser.py` running one scenario; killed on drop.
struct Browser {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    stdin: ChildStdin,
}

impl Browser {
    fn start(addr: SocketAddr, scenario: &str) -> Self {
        let shots = shots_dir();
        std::fs::create_dir_all(&shots).unwrap();
        let mut child = tokio::process::Command::new("python3")
            .arg(repo_root().join("tests/e2e/console/browser.py"))
            .arg(format!("http://{addr}"))
            .arg(TOKEN)
            .arg(&shots)
            .arg(scenario)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs browser.py (scripts/install-deps.sh installs selenium)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stdin = child.stdin.take().unwrap();
        Self {
            child,
            lines,
            stdin,
        }
    }

    /// Reads the script's output until `STEP <name>`; returns the rest of
    /// that line. Fails the test on `FAIL`, on exit, or after 90 s.
    async fn step(&mut self, name: &str) -> String {
        let want = format!("STEP {name}");
        let read = async {
            let mut seen = Vec::new();
            loop {
                match self.lines.next_line().await.unwrap() {
                    Some(line) if line.starts_with(&want) => {
                        return line[want.len()..].trim().to_owned();
                    }
                    Some(line) => seen.push(line),
                    None => panic!("browser.py ended before step {name}:\n{}", seen.join("\n")),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(90), read)
            .await
            .unwrap_or_else(|_| panic!("browser.py: no step {name} within 90 s"))
    }

    /// Tells the waiting script to go on.
    async fn go(&mut self) {
        self.stdin.write_all(b"go\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn finish(mut self) {
        self.step("done").await;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("browser.py exits")
            .unwrap();
        assert!(status.success(), "browser.py exited with {status}");
    }
}

/// In Chromium: after logging in with the token the Agents page goes live, an echo agent started afterwards appears without a reload, and an echo task submitted from the generated form shows its completed result, a `<script>` in it as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sees_live_agents_and_submits_echo() {
    let mut sys = System::builder().engine(|_| {}).monitor().start().await;
    let addr = start_console(&sys).await;
    let mut browser = Browser::start(addr, "agents-submit");
    browser.step("agents-live").await;
    sys.echo_agent(4);
    browser.go().await;
    browser.step("agent-seen").await;
    let id = browser.step("result").await;
    assert!(!id.is_empty(), "the result page names its request id");
    assert_eq!(
        sys.echo.executions_of("console-browser"),
        1,
        "the echo agent ran the submitted task once"
    );
    browser.finish().await;
    sys.stop().await;
}

/// In Chromium: echo_diamond started from the Runs page; its run page follows it to `completed` with the six steps drawn in the graph, all completed, and the output computed by hand (total 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_follows_echo_diamond_to_completed() {
    let sys = System::builder()
        .engine(|_| {})
        .monitor()
        .echo(8)
        .start()
        .await;
    wait_for_agents(&sys.admin, "echo", 1).await;
    let diamond =
        std::fs::read_to_string(repo_root().join("schemas/examples/workflows/echo_diamond.yaml"))
            .unwrap();
    agentry::workflow::store::put(&sys.admin, &diamond)
        .await
        .expect("echo_diamond stored");
    let addr = start_console(&sys).await;
    let mut browser = Browser::start(addr, "run");
    let run = browser.step("run").await;
    let state = sys
        .admin
        .get_key_value(agentry::subject::RUNS_BUCKET)
        .await
        .unwrap()
        .get(&run)
        .await
        .unwrap()
        .expect("the run the page showed is stored");
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["status"], "completed");
    assert_eq!(state["steps"].as_object().unwrap().len(), 6);
    browser.finish().await;
    sys.stop().await;
}

/// A run that waits for the signal `go` and returns its payload.
const WAIT_WORKFLOW: &str = "name: console_wait
version: 1
description: Waits for the signal go and returns its payload (console browser test).
steps:
  - id: hold
    wait_for: { signal: go, timeout: 1h }
output: \"{'said': steps.hold.output.said}\"
";

/// In Chromium: two runs of a workflow waiting for a signal, started from the Runs page; the signal `go` sent from the first run's page completes it with the payload as output (its events end in run.completed); Cancel on the second's page ends it `cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signals_one_run_and_cancels_another() {
    let sys = System::builder().engine(|_| {}).monitor().start().await;
    agentry::workflow::store::put(&sys.admin, WAIT_WORKFLOW)
        .await
        .expect("console_wait stored");
    let addr = start_console(&sys).await;
    let mut browser = Browser::start(addr, "signal-cancel");
    let runs = sys
        .admin
        .get_key_value(agentry::subject::RUNS_BUCKET)
        .await
        .unwrap();
    let state = |key: String| {
        let runs = runs.clone();
        async move {
            let bytes = runs.get(&key).await.unwrap().expect("the run is stored");
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        }
    };
    let signalled = state(browser.step("signalled").await).await;
    assert_eq!(signalled["status"], "completed");
    assert_eq!(signalled["output"]["said"], "<b>go</b> now");
    let cancelled = state(browser.step("cancelled").await).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    browser.finish().await;
    sys.stop().await;
}

/// In Chromium: a task that exhausted its retries is on the DLQ page under reason task_failed with its body; Replay (with the handler healed) re-publishes it as a new generation whose result is completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_replays_a_dead_letter() {
    let sys = System::builder()
        .engine(|_| {})
        .monitor()
        .echo(4)
        .start()
        .await;
    wait_for_agents(&sys.admin, "echo", 1).await;
    let admin = sys.server.client("admin").await;
    let id = agentry::id::RequestId::generate();
    let ev = agentry::client::task_request(
        &id,
        "/test",
        "echo",
        serde_json::json!({"fail": "retryable"}),
        None,
    );
    let out = agentry::client::submit(
        &admin,
        &sys.admin,
        &ev,
        agentry::event::Mode::Binary,
        Duration::from_secs(60),
    )
    .await
    .expect("a terminal result");
    assert_eq!(out.ty, "io.agentry.task.failed");
    sys.echo
        .healed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let addr = start_console(&sys).await;
    let mut browser = Browser::start(addr, "dlq");
    let new_id = browser.step("replayed").await;
    assert!(new_id.starts_with(&format!("{id}-r")), "{new_id}");
    let new_id = agentry::id::RequestId::new(new_id).unwrap();
    let got = eventually_some(Duration::from_secs(30), "replayed result", || {
        let (js, new_id) = (sys.admin.clone(), new_id.clone());
        async move { agentry::client::fetch_result(&js, &new_id).await }
    })
    .await;
    assert!(got.is_success(), "{:?}", got.data);
    browser.finish().await;
    sys.stop().await;
}

/// In Chromium: five echo tasks wait with no agent; the Queues page shows 5 pending, no live agent and a sparkline that reached 5; an echo agent started afterwards drains the queue, and the page shows 0 pending with a live agent without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_watches_a_queue_fill_and_drain() {
    let mut sys = System::builder().engine(|_| {}).monitor().start().await;
    for i in 0..5 {
        let id = agentry::id::RequestId::generate();
        let ev = agentry::client::task_request(
            &id,
            "/test",
            "echo",
            serde_json::json!({"message": format!("queued {i}"), "counter_key": "console-queues"}),
            None,
        );
        agentry::client::publish_request(&sys.admin, &ev, agentry::event::Mode::Binary)
            .await
            .expect("request published");
    }
    let addr = start_console(&sys).await;
    let mut browser = Browser::start(addr, "queues");
    browser.step("queued").await;
    let tasks = sys
        .admin
        .get_stream(agentry::subject::TASKS_STREAM)
        .await
        .unwrap();
    let info = tasks.consumer_info("cap-echo").await.unwrap();
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (5, 0),
        "the page showed what the consumer holds"
    );
    sys.echo_agent(4);
    browser.go().await;
    browser.step("drained").await;
    eventually(Duration::from_secs(30), "all five executed", || {
        let n = sys.echo.executions_of("console-queues");
        async move { n == 5 }
    })
    .await;
    browser.finish().await;
    sys.stop().await;
}

/// One HTTP/1.1 exchange; returns (status, headers, body).
async fn exchange(addr: SocketAddr, request: String) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_owned(), body.to_owned())
}
