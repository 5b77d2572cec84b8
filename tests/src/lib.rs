//! Test harness: real `nats-server` and `redis-server` processes on free
//! loopback ports with temporary stores, killed and cleaned up on drop (also
//! when a test panics), plus helpers to run components and wait on
//! observable conditions instead of sleeping.
//!
//! The default server is the production one: [`AuthServer::start`] runs
//! `nats/dev-auth.conf` (the accounts and permissions of
//! `nats/accounts.conf`), and every component connects as its own role
//! ([`AuthServer::engine_config`], [`AuthServer::monitor_config`],
//! [`AuthServer::agent_config`], [`AuthServer::env`] for child processes),
//! clients as tenants ([`AuthServer::tenant`]). The open server without
//! auth, [`DevNats`], is for tests about dev mode (named `dev_mode_*`).
//! See `docs/testing.md`.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod auth;
pub mod cluster;
pub mod llm;
pub mod otlp;
pub mod system;
pub mod tenant;
pub mod up;

pub use agentry_ctl::nats_child::{NatsServer, Options as NatsOptions};
pub use auth::{AuthServer, Certs};
pub use cluster::Cluster;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use system::System;
use tempfile::TempDir;
pub use tenant::TenantClient;

/// A single JetStream server WITHOUT auth (dev mode: `agentry up`, the open
/// `nats/dev.conf`), with its own temp store. Only for tests about dev mode;
/// everything else uses [`AuthServer`].
pub struct DevNats {
    pub server: NatsServer,
    _dir: TempDir,
}

impl DevNats {
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    pub fn start_with(extra_args: Vec<String>) -> Self {
        let dir = keep_if_asked(tempfile::tempdir().expect("temp dir"), "dev nats-server");
        let server = NatsServer::start(NatsOptions {
            dir: dir.path().to_owned(),
            extra_args,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Self { server, _dir: dir }
    }

    pub fn url(&self) -> String {
        self.server.url.clone()
    }

    pub fn config(&self) -> agentry::config::Nats {
        agentry::config::Nats::plain(self.url())
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to test nats-server")
    }

    /// Connects and creates the full topology (memory storage off: file store like production).
    pub async fn with_topology(&self) -> (async_nats::Client, async_nats::jetstream::Context) {
        let client = self.client().await;
        let js = async_nats::jetstream::new(client.clone());
        agentry::topology::ensure(&js, &agentry::topology::Topology::new(&test_settings()))
            .await
            .expect("topology");
        (client, js)
    }
}

/// With `AGENTRY_TEST_KEEP` set, `dir` (stores, logs) survives the test and
/// its path is printed.
pub(crate) fn keep_if_asked(mut dir: TempDir, what: &str) -> TempDir {
    if std::env::var_os("AGENTRY_TEST_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("{what} dir: {}", dir.path().display());
    }
    dir
}

/// Topology settings for tests: short AckWait so redelivery drills are quick.
pub fn test_settings() -> agentry::topology::Settings {
    agentry::topology::Settings {
        task_ack_wait_secs: 5,
        ..Default::default()
    }
}

/// A free TCP port on 127.0.0.1 (for servers without a ports file).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A private redis-server.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    dir: TempDir,
}

impl Redis {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut r = Self {
            child: None,
            port,
            url: format!("redis://127.0.0.1:{port}"),
            dir,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} (install redis-server): {e}"));
        self.child = Some(child);
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it holds or `limit` passes; panics on timeout.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("condition not met within {limit:?}");
}

/// Async version of [`wait_until`].
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not true within {limit:?}");
}

/// Polls `f` until it yields a value or `limit` passes (then panics with
/// `what`); returns the value. For conditions whose witness the test checks
/// further, such as the first rejected answer.
pub async fn eventually_some<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not true within {limit:?}");
}

/// The workspace root (for reading repository files in tests).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of a workspace binary built by cargo (`agentry`, `agentry-agent`, ...).
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join(name)
}

/// Messages stored per subject in `stream` matching `filter`. Retries for a
/// while: right after a cluster node restarts, stream info requests can fail
/// during leader election.
pub async fn subject_counts(
    js: &async_nats::jetstream::Context,
    stream: &str,
    filter: &str,
) -> std::collections::HashMap<String, usize> {
    use futures::StreamExt as _;
    let mut last_err = String::new();
    for _ in 0..50 {
        let st = match js.get_stream(stream).await {
            Ok(st) => st,
            Err(e) => {
                last_err = e.to_string();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut out = std::collections::HashMap::new();
        let mut it = match st.info_with_subjects(filter).await {
            Ok(it) => it,
            Err(e) => {
                last_err = e.to_string();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut failed = false;
        while let Some(item) = it.next().await {
            match item {
                Ok((subject, n)) => {
                    out.insert(subject, n);
                }
                Err(e) => {
                    last_err = e.to_string();
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("stream {stream} subjects unavailable for 10 s: {last_err}");
}

/// Components running in this test process; cancelled on drop.
pub struct InProcess {
    pub token: tokio_util::sync::CancellationToken,
    handles: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    pub fn new() -> Self {
        Self {
            token: tokio_util::sync::CancellationToken::new(),
            handles: Vec::new(),
        }
    }

    /// Spawns a component future built from a child token of this group.
    pub fn spawn<F, Fut>(&mut self, f: F) -> tokio_util::sync::CancellationToken
    where
        F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let t = self.token.child_token();
        self.handles.push(tokio::spawn(f(t.clone())));
        t
    }

    /// Cancels everything and waits for each component to return.
    pub async fn stop(mut self) {
        self.token.cancel();
        for h in self.handles.drain(..) {
            match tokio::time::timeout(Duration::from_secs(40), h).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("component failed: {e:#}"),
                Ok(Err(e)) => panic!("component panicked: {e}"),
                Err(_) => panic!("component did not stop within 40s"),
            }
        }
    }
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A component child process (killed on drop).
pub struct ChildProc {
    pub child: std::process::Child,
}

/// `agentry-engine` arguments of a child engine under test: no HTTP port,
/// rate limits out of the way.
pub const ENGINE_ARGS: &[&str] = &[
    "--http-addr",
    "off",
    "--rate-limit",
    "4000000000",
    "--rate-limit-tenant",
    "0",
];

/// `agentry-agent` arguments of a child echo agent: no HTTP port, 1 s
/// heartbeats.
pub const ECHO_AGENT_ARGS: &[&str] = &[
    "--agents",
    "echo",
    "--http-addr",
    "off",
    "--heartbeat",
    "1s",
];

impl ChildProc {
    /// `agentry-engine` with [`ENGINE_ARGS`] as the user of `envs`
    /// ([`AuthServer::env`], [`Cluster::env`]).
    pub fn engine<K: AsRef<OsStr>, V: AsRef<OsStr>>(envs: &[(K, V)]) -> Self {
        Self::spawn("agentry-engine", ENGINE_ARGS, envs)
    }

    /// `agentry-agent` with [`ECHO_AGENT_ARGS`] as the user of `envs`
    /// ([`AuthServer::agent_env`]).
    pub fn echo_agent<K: AsRef<OsStr>, V: AsRef<OsStr>>(envs: &[(K, V)]) -> Self {
        Self::spawn("agentry-agent", ECHO_AGENT_ARGS, envs)
    }

    pub fn spawn<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        name: &str,
        args: &[&str],
        envs: &[(K, V)],
    ) -> Self {
        let mut cmd = Command::new(bin(name));
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if std::env::var_os("AGENTRY_TEST_LOGS").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (built by `cargo test --workspace`): {e}",
                bin(name).display()
            )
        });
        Self { child }
    }

    /// Like [`ChildProc::spawn`], with stdout and stderr appended to `log`.
    pub fn spawn_logged<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        name: &str,
        args: &[&str],
        envs: &[(K, V)],
        log: &Path,
    ) -> Self {
        let file = std::fs::File::create(log).expect("log file");
        let err = file.try_clone().expect("log file");
        let mut cmd = Command::new(bin(name));
        cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin(name).display()));
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for exit; `None` on timeout.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Engine + monitor config helpers with test-friendly timings.
/// Engine config for tests: per-source and per-tenant rate limiting
/// effectively off (tests that exercise it set their own limits).
pub fn engine_config(url: &str) -> agentry_engine::Config {
    let mut e = agentry_engine::Config::for_url(url);
    e.rate_limit = 4_000_000_000;
    e.rate_limit_tenant = 0;
    e
}

pub fn monitor_config(url: &str) -> agentry_monitor::Config {
    let mut m = agentry_monitor::Config::for_url(url);
    m.sweep_interval = Duration::from_millis(300);
    m.depth_interval = Duration::from_millis(500);
    m
}

pub fn agent_config(url: &str, agents: &str) -> agentry_agent::Config {
    let mut a = agentry_agent::Config::for_url(url, agents);
    a.heartbeat = Duration::from_secs(1);
    a.topology = test_settings();
    a.capacity = Some(16);
    a
}

/// Opens the registry and waits until exactly `n` live agents serve `capability`.
pub async fn wait_for_agents(
    js: &async_nats::jetstream::Context,
    capability: &str,
    n: usize,
) -> agentry::registry::Registry {
    let start = Instant::now();
    let reg = loop {
        if let Ok(r) = agentry::registry::Registry::open(js).await {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "registry bucket never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let what = format!("{n} live agent(s) for {capability}");
    eventually(Duration::from_secs(20), &what, || {
        let reg = reg.clone();
        async move {
            reg.find(capability)
                .await
                .map(|v| v.len() == n)
                .unwrap_or(false)
        }
    })
    .await;
    reg
}

/// `msg` decoded as a CloudEvent (panics, naming its subject, when it is not one).
pub fn event_of(msg: &async_nats::Message) -> cloudevents::Event {
    agentry::event::decode(
        msg.headers.as_ref(),
        &msg.payload,
        &agentry::event::Limits::default(),
    )
    .unwrap_or_else(|e| panic!("{} is not a CloudEvent: {e}", msg.subject))
    .event
}
