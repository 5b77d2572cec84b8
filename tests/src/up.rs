//! `agentry up` as a child process, the way a person runs it: its own
//! process group (a terminal's Ctrl-C signals the whole group), its output
//! in files, its state in a temp folder that is also the working directory
//! of the commands run against it (they find it through `.agentry/context`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, wait_until};

/// A running `agentry up`; killed (whole group) on drop.
pub struct Up {
    child: Child,
    pub dir: tempfile::TempDir,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Up {
    /// Starts `agentry up <args> --dir <tmp>/.agentry --http-addr 127.0.0.1:0`
    /// with `env` added, and waits for its "ready" line.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let stdout = dir.path().join("up.stdout");
        let stderr = dir.path().join("up.stderr");
        let mut cmd = Command::new(bin("agentry"));
        cmd.arg("up")
            .args(args)
            .arg("--dir")
            .arg(dir.path().join(".agentry"))
            .args(["--http-addr", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env_remove("AGENTRY_NATS_URL")
            .env_remove("NATS_URL")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start agentry up (built by cargo test)");
        let mut up = Self {
            child,
            dir,
            stdout,
            stderr,
        };
        let limit = Duration::from_secs(60);
        let start = Instant::now();
        while !up.out().contains("ready; Ctrl-C stops everything") {
            if let Ok(Some(status)) = up.child.try_wait() {
                panic!(
                    "agentry up exited with {status}:\n{}\n{}",
                    up.out(),
                    up.err()
                );
            }
            assert!(
                start.elapsed() < limit,
                "agentry up not ready within {limit:?}:\n{}\n{}",
                up.out(),
                up.err()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        up
    }

    /// The folder commands run in (holds `.agentry/context`).
    pub fn workdir(&self) -> &Path {
        self.dir.path()
    }

    pub fn out(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn err(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// What a terminal's Ctrl-C does: SIGINT to every process of the group.
    pub fn ctrl_c(&self) {
        let status = Command::new("kill")
            .args(["-s", "INT", "--"])
            .arg(format!("-{}", self.child.id()))
            .status()
            .expect("kill");
        assert!(status.success(), "kill -INT -{} failed", self.child.id());
    }

    /// Waits for `up` to exit (panics after `limit`).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status.expect("exit status")
    }

    /// An `agentry` client command run in the work folder (no log
    /// settings inherited, so its output is what a person sees).
    pub fn agentry(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("agentry"));
        cmd.args(args)
            .current_dir(self.workdir())
            .env_remove("AGENTRY_NATS_URL")
            .env_remove("NATS_URL")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--"])
                .arg(format!("-{}", self.child.id()))
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The server runs in its own process group (so Ctrl-C does not reach
        // it before the components have drained): its pid is in the name of
        // its ports file, `nats-server_<pid>.ports`.
        let ports = self.dir.path().join(".agentry/nats/ports");
        for e in std::fs::read_dir(ports).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_suffix(".ports")
                .and_then(|n| n.rsplit('_').next())
                .filter(|p| p.parse::<u32>().is_ok())
            {
                let _ = Command::new("kill").arg("-KILL").arg(pid).status();
            }
        }
    }
}
