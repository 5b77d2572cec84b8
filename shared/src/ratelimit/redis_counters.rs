//! Counters in Redis, shared by every engine replica: one Lua script reads,
//! decides and writes atomically, on the Redis server's clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::window::WINDOW;
use super::{Counter, Decision, FailMode, REDIS_PREFIX};

/// `KEYS[i]` counters hashes, `ARGV[1]` window (ms), `ARGV[i + 1]` the
/// limit of `KEYS[i]`. Counts in every key when all have room. Returns
/// `{1, 0, 0}` when admitted, `{0, wait_ms, i}` when key `i` refused.
pub(super) const SCRIPT: &str = r"
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

/// A Redis connection with its script, timeout and fail mode.
pub(super) struct Redis {
    pub(super) conn: ConnectionManager,
    pub(super) script: redis::Script,
    pub(super) timeout: Duration,
    pub(super) fail: FailMode,
    /// Redis is skipped until this instant after a failure.
    pub(super) paused_until: Mutex<Option<Instant>>,
}

/// Why Redis gave no decision (the fail mode then applies).
#[derive(Debug, thiserror::Error)]
pub enum RedisCheckError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis error")]
    Redis(#[source] redis::RedisError),
    #[error("Redis script named counter {0}, which was not asked for")]
    UnknownCounter(i64),
}

impl Redis {
    /// Runs the script over `counters`: admitted in all, or the first refusal.
    pub(super) async fn check(&self, counters: &[Counter]) -> Result<Decision, RedisCheckError> {
        let mut conn = self.conn.clone();
        let mut call = self.script.prepare_invoke();
        call.arg(WINDOW.as_millis() as u64);
        for c in counters {
            call.key(format!("{REDIS_PREFIX}{}", c.key)).arg(c.limit);
        }
        let (admitted, wait, i): (i64, i64, i64) =
            tokio::time::timeout(self.timeout, call.invoke_async(&mut conn))
                .await
                .map_err(|_| RedisCheckError::Timeout(self.timeout))?
                .map_err(RedisCheckError::Redis)?;
        if admitted == 1 {
            return Ok(Decision::Admitted);
        }
        let c = usize::try_from(i - 1)
            .ok()
            .and_then(|i| counters.get(i))
            .ok_or(RedisCheckError::UnknownCounter(i))?;
        Ok(Decision::Limited {
            limit: c.limit,
            retry_after: Duration::from_millis(wait.max(1) as u64),
            scope: c.scope,
        })
    }
}
