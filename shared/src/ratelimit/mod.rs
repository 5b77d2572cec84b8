//! Rate limiting of requests per principal: the tenant (from the subject a
//! request arrived on) and the CloudEvent `source` (asserted by the client),
//! plus a total per tenant over all its sources, so a tenant cannot escape
//! its limit by rotating sources ([`Limiter::check_principal`]). A request
//! is admitted only when every counter it touches has room, and then counts
//! in all of them (atomically: one Lua call in Redis, one lock in process).
//!
//! A sliding-window counter: per key, the count of the current fixed window
//! (one minute) and of the previous one; a request is admitted while
//! `previous * (time left of the current window / window) + current + 1 <= limit`.
//! It needs three numbers per key, so memory stays bounded, and from a quiet
//! start a burst gets exactly `limit` admissions.
//!
//! With Redis ([`Limiter::with_redis`]) every engine replica shares the
//! counters: one atomic Lua script reads, decides and writes, on the Redis
//! server's clock. Each call is bounded by a short timeout so the engine
//! never stalls on Redis; when Redis cannot answer, the [`FailMode`] decides:
//! `open` falls back to a per-process limiter with the same limits, `closed`
//! refuses the request. After a failure Redis is skipped for a short pause
//! (then tried again), so an outage costs one timeout per pause, not one per
//! request. Without Redis ([`Limiter::in_process`]) the counters are per process.
//!
//! Module map: [`limits`](Limits) (configuration), [`window`](admit) (the
//! admission rule), `local` (in-process counters), `redis_counters` (the
//! shared counters and their script).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod limits;
mod local;
mod redis_counters;
mod window;

pub use limits::{
    DEFAULT_PER_MINUTE, DEFAULT_PER_TENANT, DEFAULT_REDIS_TIMEOUT, FailMode, Limits, Overrides,
    OverridesError, REDIS_PREFIX, REDIS_RETRY_PAUSE,
};
pub use window::{Window, admit, admit_all};

use local::Local;
use redis::aio::ConnectionManager;
pub use redis_counters::RedisCheckError;
use redis_counters::{Redis, SCRIPT};

/// Longest key kept verbatim; longer ones are shortened with a digest.
const MAX_KEY_BYTES: usize = 200;

/// Which counter refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The principal's own counter (tenant and source, or the plain key).
    Principal,
    /// The tenant's total over all its sources.
    Tenant,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Admitted,
    /// Over the limit of `scope`; worth retrying after `retry_after`.
    Limited {
        limit: u32,
        retry_after: Duration,
        scope: Scope,
    },
    /// Redis did not answer and the fail mode is `closed`.
    Unavailable(Unavailable),
}

/// Why a request could not be counted (Redis down, failing closed).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    /// Redis failed a moment ago and is skipped until its pause ends.
    #[error("rate limiter unavailable and failing closed: Redis is unavailable (retrying shortly)")]
    Paused,
    /// This check's call to Redis failed.
    #[error("rate limiter unavailable and failing closed")]
    Failed(#[source] Arc<RedisCheckError>),
}

/// Equal when of the same kind (and, for a failure, the same one).
impl PartialEq for Unavailable {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Paused, Self::Paused) => true,
            (Self::Failed(a), Self::Failed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One counter a request is checked against.
#[derive(Debug, Clone)]
struct Counter {
    key: String,
    limit: u32,
    scope: Scope,
}

/// A rate limiter (see the module docs).
pub struct Limiter {
    limits: Limits,
    local: Local,
    redis: Option<Redis>,
}

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("invalid Redis URL: {0}")]
    Url(#[source] redis::RedisError),
}

impl Limiter {
    /// Counters in this process only.
    pub fn in_process(limits: Limits) -> Self {
        Self {
            limits,
            local: Local::new(),
            redis: None,
        }
    }

    /// Counters in Redis at `url`, shared by every replica. Connects lazily
    /// (Redis may be down at start-up) and reconnects by itself.
    pub fn with_redis(
        limits: Limits,
        url: &str,
        fail: FailMode,
        timeout: Duration,
    ) -> Result<Self, RateLimitError> {
        let client = redis::Client::open(url).map_err(RateLimitError::Url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn =
            ConnectionManager::new_lazy_with_config(client, cfg).map_err(RateLimitError::Url)?;
        Ok(Self {
            limits,
            local: Local::new(),
            redis: Some(Redis {
                conn,
                script: redis::Script::new(SCRIPT),
                timeout,
                fail,
                paused_until: Mutex::new(None),
            }),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts one request under `key` with the limit of `source`. `key`
    /// scopes the counter (e.g. tenant and source); `source` picks the limit.
    pub async fn check(&self, key: &str, source: &str) -> Decision {
        let Some(limit) = self.limits.for_source(source) else {
            return Decision::Admitted;
        };
        let counters = [Counter {
            key: counter_key(key),
            limit,
            scope: Scope::Principal,
        }];
        self.check_counters(&counters).await
    }

    /// Counts one request of the principal (`tenant`, `source`): against the
    /// principal's limit (the source's, see [`Limits::for_source`]) and, for
    /// a tenant, against the tenant's total over all its sources.
    pub async fn check_principal(&self, tenant: Option<&str>, source: &str) -> Decision {
        let mut counters = Vec::with_capacity(2);
        if let Some(limit) = self.limits.for_source(source) {
            counters.push(Counter {
                key: counter_key(&format!("{}:{source}", tenant.unwrap_or_default())),
                limit,
                scope: Scope::Principal,
            });
        }
        if let Some(t) = tenant
            && self.limits.per_tenant > 0
        {
            // `=` cannot start a tenant or a principal key's tenant part.
            counters.push(Counter {
                key: format!("={t}"),
                limit: self.limits.per_tenant,
                scope: Scope::Tenant,
            });
        }
        if counters.is_empty() {
            return Decision::Admitted;
        }
        self.check_counters(&counters).await
    }

    async fn check_counters(&self, counters: &[Counter]) -> Decision {
        let Some(r) = &self.redis else {
            return self.local.check(counters);
        };
        let paused = r
            .paused_until
            .lock()
            .map(|p| p.is_some_and(|until| Instant::now() < until))
            .unwrap_or(false);
        let cause = if paused {
            Unavailable::Paused
        } else {
            match r.check(counters).await {
                Ok(d) => {
                    if let Ok(mut p) = r.paused_until.lock() {
                        *p = None;
                    }
                    return d;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::error::Chain(&e), fail_mode = ?r.fail, "rate limiter: Redis unavailable");
                    if let Ok(mut p) = r.paused_until.lock() {
                        *p = Some(Instant::now() + REDIS_RETRY_PAUSE);
                    }
                    Unavailable::Failed(Arc::new(e))
                }
            }
        };
        match r.fail {
            FailMode::Open => self.local.check(counters),
            FailMode::Closed => Decision::Unavailable(cause),
        }
    }
}

/// A bounded counter key: verbatim up to 200 bytes, else a prefix plus a
/// 64-bit FNV-1a digest of the whole key (stable across processes).
fn counter_key(key: &str) -> String {
    if key.len() <= MAX_KEY_BYTES {
        return key.to_owned();
    }
    let mut end = 128;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{}#{h:016x}", &key[..end])
}

#[cfg(test)]
mod tests;
