//! Optional Redis cache of weather answers. Redis trouble never fails a
//! request: a failed or slow command logs a warning, counts as a miss, and
//! the cache is bypassed for a cool-down so that requests do not each wait
//! out a dead Redis; the first command after it tries again.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

/// Every key starts with this; `<kind>` is `current`, `forecast` or `geocode`.
pub(crate) const KEY_PREFIX: &str = "agentry:weather:";

/// `agentry:weather:<kind>:<normalised query>`.
pub(crate) fn key(kind: &str, normalised: &str) -> String {
    format!("{KEY_PREFIX}{kind}:{normalised}")
}

pub(crate) struct Cache {
    conn: Option<ConnectionManager>,
    ttl_secs: u64,
    op_timeout: Duration,
    cooldown: Duration,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// Skip Redis until then.
    bypass_until: Option<Instant>,
    /// A failure was logged and no success since.
    degraded: bool,
}

/// Timeout for one Redis command, and how long to bypass Redis after a failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub op_timeout: Duration,
    pub cooldown: Duration,
}

impl Cache {
    pub(crate) fn new(conn: Option<ConnectionManager>, ttl: Duration, timing: Timing) -> Self {
        // SET EX takes whole seconds, at least one.
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        Self {
            conn,
            ttl_secs: ttl_secs.max(1),
            op_timeout: timing.op_timeout,
            cooldown: timing.cooldown,
            health: Mutex::default(),
        }
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        // A poisoned lock only means a panic elsewhere; the state is still usable.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection, unless there is none or Redis is being bypassed.
    fn connection(&self) -> Option<ConnectionManager> {
        let conn = self.conn.clone()?;
        let mut health = self.health();
        match health.bypass_until {
            Some(until) if Instant::now() < until => None,
            Some(_) => {
                health.bypass_until = None;
                Some(conn)
            }
            None => Some(conn),
        }
    }

    fn succeeded(&self) {
        let mut health = self.health();
        if health.degraded {
            health.degraded = false;
            info!("weather cache reachable again");
        }
    }

    fn failed(&self, op: &'static str, error: &dyn std::fmt::Display) {
        let mut health = self.health();
        health.bypass_until = Some(Instant::now() + self.cooldown);
        health.degraded = true;
        warn!(
            op,
            error = %error,
            bypass_ms = self.cooldown.as_millis() as u64,
            "weather cache unavailable; continuing without it"
        );
    }

    async fn run<T: redis::FromRedisValue>(&self, op: &'static str, cmd: redis::Cmd) -> Option<T> {
        let mut conn = self.connection()?;
        match tokio::time::timeout(self.op_timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(op, &e);
                None
            }
            Err(_) => {
                self.failed(op, &format_args!("no answer within {:?}", self.op_timeout));
                None
            }
        }
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let Some(text) = self.run::<Option<String>>("GET", cmd).await.flatten() else {
            debug!(key, "weather cache miss");
            return None;
        };
        match serde_json::from_str(&text) {
            Ok(v) => {
                debug!(key, "weather cache hit");
                Some(v)
            }
            Err(e) => {
                warn!(key, error = %e, "unreadable weather cache entry ignored");
                None
            }
        }
    }

    pub(crate) async fn put<T: Serialize>(&self, key: &str, value: &T) {
        if self.conn.is_none() {
            return;
        }
        let text = match serde_json::to_string(value) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "weather cache entry not serialisable");
                return;
            }
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(text).arg("EX").arg(self.ttl_secs);
        self.run::<()>("SET", cmd).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ttl_rounding() {
        assert_eq!(
            key("current", "city=berlin,cc=-"),
            "agentry:weather:current:city=berlin,cc=-"
        );
        let t = Timing {
            op_timeout: Duration::from_millis(1),
            cooldown: Duration::from_millis(1),
        };
        assert_eq!(Cache::new(None, Duration::from_millis(1500), t).ttl_secs, 2);
        assert_eq!(Cache::new(None, Duration::ZERO, t).ttl_secs, 1);
        assert_eq!(Cache::new(None, Duration::from_secs(600), t).ttl_secs, 600);
    }
}
