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

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

/// Default admissions per source and minute.
pub const DEFAULT_PER_MINUTE: u32 = 1000;
/// Default admissions per tenant and minute, over all its sources.
pub const DEFAULT_PER_TENANT: u32 = 6000;
/// How long one Redis call may take before the fail mode applies.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(200);
/// After a Redis failure, how long the limiter goes straight to the fail mode.
pub const REDIS_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Key prefix of the counters in Redis.
pub const REDIS_PREFIX: &str = "agentry:ratelimit:";
const WINDOW: Duration = Duration::from_secs(60);
/// Longest key kept verbatim; longer ones are shortened with a digest.
const MAX_KEY_BYTES: usize = 200;
/// In-process keys beyond which idle entries are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// What to do when Redis is configured but does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailMode {
    /// Admit by a per-process limiter with the same limits.
    #[default]
    Open,
    /// Refuse (`rate_limited`, detail naming the outage).
    Closed,
}

/// Per-source limits, `source=n,source2=m` (a source may contain `=`; the
/// last one separates the number). `0` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides(pub BTreeMap<String, u32>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit override {entry:?}: expected source=requests-per-minute")]
pub struct OverridesError {
    pub entry: String,
}

impl FromStr for Overrides {
    type Err = OverridesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let err = || OverridesError {
                entry: entry.to_owned(),
            };
            let (source, n) = entry.rsplit_once('=').ok_or_else(err)?;
            let n: u32 = n.trim().parse().map_err(|_| err())?;
            if source.trim().is_empty() {
                return Err(err());
            }
            out.insert(source.trim().to_owned(), n);
        }
        Ok(Self(out))
    }
}

/// Limits: a default and per-source overrides, and a total per tenant,
/// requests per minute (`0` = unlimited).
#[derive(Debug, Clone)]
pub struct Limits {
    pub per_minute: u32,
    pub overrides: Overrides,
    /// Total of one tenant over all its sources.
    pub per_tenant: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_minute: DEFAULT_PER_MINUTE,
            overrides: Overrides::default(),
            per_tenant: DEFAULT_PER_TENANT,
        }
    }
}

impl Limits {
    /// The limit for `source`; `None` when unlimited.
    pub fn for_source(&self, source: &str) -> Option<u32> {
        let n = self
            .overrides
            .0
            .get(source)
            .copied()
            .unwrap_or(self.per_minute);
        (n > 0).then_some(n)
    }
}

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
    Unavailable {
        detail: String,
    },
}

/// One key's counters (all times in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Window {
    pub start: i64,
    pub current: u64,
    pub previous: u64,
}

/// The admission rule; the Lua script is the same computation.
/// Returns `Ok(())` and counts the request, or `Err(wait_ms)`.
pub fn admit(w: &mut Window, now: i64, window: i64, limit: u64) -> Result<(), i64> {
    if w.start == 0 && w.current == 0 && w.previous == 0 {
        w.start = now;
    }
    let mut elapsed = (now - w.start).max(0);
    if elapsed >= window {
        let k = elapsed / window;
        w.previous = if k == 1 { w.current } else { 0 };
        w.current = 0;
        w.start += k * window;
        elapsed = (now - w.start).max(0);
    }
    let left = (window - elapsed) as f64 / window as f64;
    let estimate = w.previous as f64 * left + w.current as f64;
    if estimate + 1.0 <= limit as f64 {
        w.current += 1;
        return Ok(());
    }
    Err(wait_ms(w, elapsed, window, limit))
}

/// [`admit`] over several counters at once: counts in all of them when
/// every one has room, else in none; `Err((index, wait_ms))` names the first
/// counter without room.
pub fn admit_all(ws: &mut [(&mut Window, u64)], now: i64, window: i64) -> Result<(), (usize, i64)> {
    let mut trial: Vec<Window> = ws.iter().map(|(w, _)| **w).collect();
    for (i, (t, (_, limit))) in trial.iter_mut().zip(ws.iter()).enumerate() {
        admit(t, now, window, *limit).map_err(|wait| (i, wait))?;
    }
    for ((w, _), t) in ws.iter_mut().zip(trial) {
        **w = t;
    }
    Ok(())
}

/// Time until one more request fits, from the state after a refusal.
fn wait_ms(w: &Window, elapsed: i64, window: i64, limit: u64) -> i64 {
    let (limit, window_f) = (limit as f64, window as f64);
    let wait = if w.current as f64 + 1.0 > limit {
        // Only the next window helps: there `current` becomes `previous`.
        let fraction = (1.0 - (limit - 1.0) / w.current as f64).max(0.0);
        (window - elapsed) as f64 + window_f * fraction
    } else {
        let need = window_f - (limit - w.current as f64 - 1.0) * window_f / w.previous as f64;
        need - elapsed as f64
    };
    (wait.ceil() as i64).max(1)
}

/// `KEYS[i]` counters hashes, `ARGV[1]` window (ms), `ARGV[i + 1]` the
/// limit of `KEYS[i]`. Counts in every key when all have room. Returns
/// `{1, 0, 0}` when admitted, `{0, wait_ms, i}` when key `i` refused.
const SCRIPT: &str = r"
local window = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local next = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i + 1])
  local st = redis.call('HMGET', key, 's', 'c', 'p')
  local start = tonumber(st[1]) or now
  local cur = tonumber(st[2]) or 0
  local prev = tonumber(st[3]) or 0
  local elapsed = math.max(now - start, 0)
  if elapsed >= window then
    local k = math.floor(elapsed / window)
    if k == 1 then prev = cur else prev = 0 end
    cur = 0
    start = start + k * window
    elapsed = math.max(now - start, 0)
  end
  local estimate = prev * ((window - elapsed) / window) + cur
  if estimate + 1 > limit then
    local wait
    if cur + 1 > limit then
      wait = (window - elapsed) + window * math.max(1 - (limit - 1) / cur, 0)
    else
      wait = window - (limit - cur - 1) * window / prev - elapsed
    end
    return {0, math.max(math.ceil(wait), 1), i}
  end
  next[i] = {start, cur + 1, prev}
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 's', next[i][1], 'c', next[i][2], 'p', next[i][3])
  redis.call('PEXPIRE', key, window * 2)
end
return {1, 0, 0}
";

/// Counters in this process (no Redis, or Redis down with `open`).
#[derive(Debug, Default)]
struct Local {
    windows: Mutex<HashMap<String, Window>>,
    epoch: Option<Instant>,
}

impl Local {
    fn new() -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            epoch: Some(Instant::now()),
        }
    }

    fn check(&self, counters: &[Counter]) -> Decision {
        let window = WINDOW.as_millis() as i64;
        // Milliseconds since start-up, offset by 1 so that 0 means "fresh".
        let now = self
            .epoch
            .map(|e| e.elapsed().as_millis() as i64 + 1)
            .unwrap_or(1);
        let Ok(mut map) = self.windows.lock() else {
            // A poisoned lock means a panic elsewhere while counting: admit.
            return Decision::Admitted;
        };
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, w| now - w.start < 2 * window);
        }
        let mut windows: Vec<Window> = counters
            .iter()
            .map(|c| map.get(&c.key).copied().unwrap_or_default())
            .collect();
        let mut refs: Vec<(&mut Window, u64)> = windows
            .iter_mut()
            .zip(counters)
            .map(|(w, c)| (w, u64::from(c.limit)))
            .collect();
        match admit_all(&mut refs, now, window) {
            Ok(()) => {
                for (c, w) in counters.iter().zip(windows) {
                    map.insert(c.key.clone(), w);
                }
                Decision::Admitted
            }
            Err((i, wait)) => Decision::Limited {
                limit: counters[i].limit,
                retry_after: Duration::from_millis(wait as u64),
                scope: counters[i].scope,
            },
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

struct Redis {
    conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    fail: FailMode,
    /// Redis is skipped until this instant after a failure.
    paused_until: Mutex<Option<Instant>>,
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
        let detail = if paused {
            "Redis is unavailable (retrying shortly)".to_owned()
        } else {
            match self.check_redis(r, counters).await {
                Ok(d) => {
                    if let Ok(mut p) = r.paused_until.lock() {
                        *p = None;
                    }
                    return d;
                }
                Err(detail) => {
                    tracing::warn!(error = %detail, fail_mode = ?r.fail, "rate limiter: Redis unavailable");
                    if let Ok(mut p) = r.paused_until.lock() {
                        *p = Some(Instant::now() + REDIS_RETRY_PAUSE);
                    }
                    detail
                }
            }
        };
        match r.fail {
            FailMode::Open => self.local.check(counters),
            FailMode::Closed => Decision::Unavailable {
                detail: format!("rate limiter unavailable and failing closed: {detail}"),
            },
        }
    }

    async fn check_redis(&self, r: &Redis, counters: &[Counter]) -> Result<Decision, String> {
        let mut conn = r.conn.clone();
        let mut call = r.script.prepare_invoke();
        call.arg(WINDOW.as_millis() as u64);
        for c in counters {
            call.key(format!("{REDIS_PREFIX}{}", c.key)).arg(c.limit);
        }
        let res: Result<(i64, i64, i64), _> =
            tokio::time::timeout(r.timeout, call.invoke_async(&mut conn))
                .await
                .map_err(|_| format!("Redis did not answer within {:?}", r.timeout))?;
        match res {
            Ok((1, _, _)) => Ok(Decision::Admitted),
            Ok((_, wait, i)) => {
                let c = usize::try_from(i - 1)
                    .ok()
                    .and_then(|i| counters.get(i))
                    .ok_or_else(|| format!("Redis script named counter {i}"))?;
                Ok(Decision::Limited {
                    limit: c.limit,
                    retry_after: Duration::from_millis(wait.max(1) as u64),
                    scope: c.scope,
                })
            }
            Err(e) => Err(format!("Redis error: {e}")),
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// From a quiet start a burst gets exactly `limit` admissions, then one
    /// more only as the previous window's weight decays.
    #[test]
    fn burst_then_slide() {
        let mut w = Window::default();
        let mut admitted = 0;
        for i in 0..150 {
            if admit(&mut w, 1_000 + i, MIN, 100).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 100);
        // Still in the first window: refused, and told to wait for the next one.
        let wait = admit(&mut w, 30_000, MIN, 100).unwrap_err();
        // window ends at 61_000; at 61_000 + 60_000 * (1 - 99/100) = 61_600 one fits.
        assert_eq!(wait, 61_600 - 30_000);
        assert!(admit(&mut w, 61_599, MIN, 100).is_err());
        assert!(admit(&mut w, 61_600, MIN, 100).is_ok());
        // Half-way through the second window the previous 100 weigh 50, so
        // this window holds 50: the one admitted at 61_600 and 49 more.
        let mut more = 0;
        for _ in 0..100 {
            if admit(&mut w, 91_000, MIN, 100).is_ok() {
                more += 1;
            }
        }
        assert_eq!(more, 49);
        // Two idle windows later everything is forgotten.
        for _ in 0..100 {
            assert!(admit(&mut w, 300_000, MIN, 100).is_ok());
        }
        assert!(admit(&mut w, 300_001, MIN, 100).is_err());
    }

    /// The wait reported for a refusal is exactly when the next request fits.
    #[test]
    fn wait_is_exact() {
        let mut w = Window {
            start: 1,
            current: 10,
            previous: 80,
        };
        // at now = 30_001: 80 * 0.5 + 10 = 50 -> limit 50 refuses.
        let wait = admit(&mut w, 30_001, MIN, 50).unwrap_err();
        // need 80 * (60_000 - e) / 60_000 + 11 <= 50 -> e >= 30_750
        assert_eq!(wait, 750);
        assert!(admit(&mut w.clone(), 30_001 + 749, MIN, 50).is_err());
        assert!(admit(&mut w, 30_001 + 750, MIN, 50).is_ok());
    }

    #[test]
    fn overrides_parse() {
        let o: Overrides = "/a=5, https://x/y?z=1=20,,".parse().unwrap();
        assert_eq!(o.0.get("/a"), Some(&5));
        assert_eq!(o.0.get("https://x/y?z=1"), Some(&20));
        assert_eq!("".parse::<Overrides>().unwrap(), Overrides::default());
        assert!("/a".parse::<Overrides>().is_err());
        assert!("/a=x".parse::<Overrides>().is_err());
        assert!("=5".parse::<Overrides>().is_err());
        let limits = Limits {
            per_minute: 100,
            overrides: "/vip=0,/slow=3".parse().unwrap(),
            per_tenant: 0,
        };
        assert_eq!(limits.for_source("/any"), Some(100));
        assert_eq!(limits.for_source("/vip"), None);
        assert_eq!(limits.for_source("/slow"), Some(3));
    }

    /// Keys are scoped per key and a per-source override applies.
    #[tokio::test]
    async fn in_process_limits() {
        let l = Limiter::in_process(Limits {
            per_minute: 3,
            overrides: "/one=1".parse().unwrap(),
            per_tenant: 0,
        });
        for _ in 0..3 {
            assert_eq!(l.check("a/src", "/src").await, Decision::Admitted);
        }
        assert!(matches!(
            l.check("a/src", "/src").await,
            Decision::Limited { limit: 3, .. }
        ));
        assert_eq!(l.check("b/src", "/src").await, Decision::Admitted);
        assert_eq!(l.check("a/one", "/one").await, Decision::Admitted);
        assert!(matches!(
            l.check("a/one", "/one").await,
            Decision::Limited { limit: 1, .. }
        ));
    }

    /// A tenant rotating sources hits its total; a refused request counts
    /// nowhere; other tenants and untenanted requests are not affected.
    #[tokio::test]
    async fn tenant_total_bounds_rotating_sources() {
        let l = Limiter::in_process(Limits {
            per_minute: 2,
            overrides: "/vip=0".parse().unwrap(),
            per_tenant: 5,
        });
        for i in 0..5 {
            let d = l.check_principal(Some("globex"), &format!("/s{i}")).await;
            assert_eq!(d, Decision::Admitted);
        }
        let d = l.check_principal(Some("globex"), "/s9").await;
        assert!(
            matches!(
                d,
                Decision::Limited {
                    limit: 5,
                    scope: Scope::Tenant,
                    ..
                }
            ),
            "{d:?}"
        );
        // An unlimited source still counts against the tenant's total.
        assert!(matches!(
            l.check_principal(Some("globex"), "/vip").await,
            Decision::Limited {
                scope: Scope::Tenant,
                ..
            }
        ));
        // The refused /s9 was not counted against its own limit of 2.
        let fresh = Limiter::in_process(Limits {
            per_minute: 2,
            overrides: Overrides::default(),
            per_tenant: 3,
        });
        assert_eq!(
            fresh.check_principal(Some("a"), "/x").await,
            Decision::Admitted
        );
        assert_eq!(
            fresh.check_principal(Some("a"), "/x").await,
            Decision::Admitted
        );
        assert!(matches!(
            fresh.check_principal(Some("a"), "/x").await,
            Decision::Limited {
                limit: 2,
                scope: Scope::Principal,
                ..
            }
        ));
        // Only two of the tenant's three were spent.
        assert_eq!(
            fresh.check_principal(Some("a"), "/y").await,
            Decision::Admitted
        );
        assert!(matches!(
            fresh.check_principal(Some("a"), "/z").await,
            Decision::Limited {
                scope: Scope::Tenant,
                ..
            }
        ));
        // Same source, other tenant: its own counters.
        assert_eq!(
            l.check_principal(Some("acme"), "/s0").await,
            Decision::Admitted
        );
        for _ in 0..2 {
            assert_eq!(l.check_principal(None, "/s0").await, Decision::Admitted);
        }
        assert!(matches!(
            l.check_principal(None, "/s0").await,
            Decision::Limited {
                scope: Scope::Principal,
                ..
            }
        ));
    }

    #[test]
    fn admit_all_counts_in_all_or_none() {
        let (mut a, mut b) = (Window::default(), Window::default());
        assert!(admit_all(&mut [(&mut a, 2), (&mut b, 1)], 10, MIN).is_ok());
        assert_eq!((a.current, b.current), (1, 1));
        let err = admit_all(&mut [(&mut a, 2), (&mut b, 1)], 11, MIN).unwrap_err();
        assert_eq!(err.0, 1);
        assert_eq!((a.current, b.current), (1, 1));
    }

    #[test]
    fn long_keys_are_bounded() {
        let a = counter_key(&"x".repeat(5000));
        let b = counter_key(&format!("{}y", "x".repeat(4999)));
        assert!(a.len() < 150);
        assert_ne!(a, b);
        assert_eq!(counter_key("short"), "short");
        let multi = "é".repeat(200);
        assert!(counter_key(&multi).len() < 150);
    }
}
