//! `--embedded`: a private nats-server and the components as child
//! processes (so CPU and RSS are per process), stopped on drop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentry::subject;
use async_nats::jetstream;

use super::{Args, Sync};
use crate::nats_child::{self, NatsServer};

/// Processes started by --embedded (killed on drop).
pub(super) struct Embedded {
    pub(super) server: NatsServer,
    pub(super) children: Vec<(String, std::process::Child)>,
    _dir: PathBuf,
}

/// Waits up to `grace` for `child` to exit (after a SIGTERM), then kills it.
pub(super) fn terminate(child: &mut std::process::Child, grace: Duration) {
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The components `--embedded` starts: binary name and extra flags.
pub(super) const COMPONENTS: [(&str, &[&str]); 3] = [
    ("agentry-engine", &[]),
    ("agentry-monitor", &[]),
    ("agentry-agent", &["--agents", "echo"]),
];

/// Starts one component of `--embedded` against `url`.
pub(super) fn spawn_component(
    name: &str,
    extra: &[&str],
    url: &str,
    args: &Args,
) -> anyhow::Result<std::process::Child> {
    let max_runs = args
        .waiting_runs
        .unwrap_or(0)
        .max(args.backlog.unwrap_or(0))
        + 100;
    std::process::Command::new(sibling(name))
        .args(["--nats-url", url, "--http-addr", "off"])
        .args(extra)
        .env("RUST_LOG", &args.component_log)
        // The load comes from one source; per-source rate limiting would cap it at 1,000/min.
        .env("AGENTRY_RATE_LIMIT", "4000000000")
        .env("AGENTRY_MAX_RUNS", max_runs.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {name} (build the workspace first): {e}"))
}

/// Stream limits for the embedded topology: the defaults, raised so that a
/// `--backlog` of N fits in AGENTRY_REQUESTS and AGENTRY_TASKS.
fn embedded_settings(args: &Args) -> agentry::topology::Settings {
    let mut s = agentry::topology::Settings::default();
    if let Some(n) = args.backlog {
        let room = i64::try_from(n)
            .unwrap_or(i64::MAX / 2)
            .saturating_add(1_000);
        s.requests_max_msgs = s.requests_max_msgs.max(room);
        s.tasks_max_per_capability = s.tasks_max_per_capability.max(room);
        s.tasks_max_msgs = s.tasks_max_msgs.max(room.saturating_mul(2));
    }
    s
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Graceful first (components drain and exit; a profiler wrapping one writes its output).
        for (_, c) in &mut self.children {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
        }
        for (_, c) in &mut self.children {
            terminate(c, Duration::from_secs(15));
        }
        self.server.kill();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

pub(super) async fn start_embedded(args: &Args) -> anyhow::Result<Embedded> {
    let dir = std::env::temp_dir().join(format!("agentry-bench-{}", std::process::id()));
    let opts = nats_child::Options {
        dir: dir.clone(),
        sync_always: args.sync == Sync::Always,
        ..Default::default()
    };
    let server = tokio::task::spawn_blocking(move || NatsServer::start(opts)).await??;
    let url = server.url.clone();
    let js = jetstream::new(async_nats::connect(&url).await?);
    agentry::topology::ensure(
        &js,
        &agentry::topology::Topology::new(&embedded_settings(args)),
    )
    .await?;
    // Owned from here on: dropped part-way (an error, or SIGTERM while the
    // components start), it stops what was started.
    let mut emb = Embedded {
        server,
        children: Vec::new(),
        _dir: dir,
    };
    for (name, extra) in COMPONENTS {
        emb.children
            .push((name.to_owned(), spawn_component(name, extra, &url, args)?));
    }
    wait_agent_ready(&js).await?;
    Ok(emb)
}

/// Waits until an echo agent is registered and pulling from `cap-echo`.
async fn wait_agent_ready(js: &jetstream::Context) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let st = js.get_stream_no_info(subject::TASKS_STREAM).await?;
        if let Ok(info) = st.consumer_info("cap-echo").await
            && info.num_waiting > 0
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            anyhow::bail!("embedded components did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
