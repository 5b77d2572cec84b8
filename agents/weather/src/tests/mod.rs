//! End-to-end tests of the client against the fixture over real HTTP, and
//! of the cache against a real `redis-server` (skipped only when it is not
//! installed).

mod cache;
mod client;
mod fixture;

use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use serde_json::Value;

use super::{Config, WeatherClient};
use agentry_weather_fixture::{FixtureControl, Server};

/// 13:07 in Berlin and Paris, 21:07 in Tokyo, 07:07 in New York.
pub(super) const FROZEN: &str = "2026-01-15T12:07:00Z";

pub(super) fn frozen() -> DateTime<Utc> {
    FROZEN.parse().expect("timestamp")
}

pub(super) async fn fixture() -> Server {
    let control = FixtureControl::new();
    control.freeze_clock(frozen());
    Server::start_with(control).await.expect("fixture starts")
}

pub(super) fn config(server: &Server) -> Config {
    Config {
        timeout: Duration::from_secs(2),
        max_retries: 3,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..Config::with_base_url(server.base_url())
    }
}

pub(super) fn client(server: &Server) -> WeatherClient {
    WeatherClient::new(config(server), None).expect("client")
}

pub(super) fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub(super) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A private `redis-server` on a free port, without persistence, killed on drop.
pub(super) struct Redis {
    child: Child,
    pub(super) port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// `None` (with a message) only when `redis-server` is not installed.
    pub(super) async fn start() -> Option<Self> {
        let port = StdListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self::start_on(port).await
    }

    pub(super) async fn start_on(port: u16) -> Option<Self> {
        match Command::new("redis-server").arg("--version").output() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED: redis-server is not installed (not on PATH)");
                return None;
            }
            Err(e) => panic!("cannot run redis-server: {e}"),
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let redis = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if redis.ping().await {
                return Some(redis);
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(super) fn client(&self) -> redis::Client {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).expect("redis url")
    }

    async fn ping(&self) -> bool {
        match self.client().get_multiplexed_async_connection().await {
            Ok(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }

    pub(super) async fn manager(&self) -> ConnectionManager {
        ConnectionManager::new(self.client())
            .await
            .expect("connection manager")
    }

    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
