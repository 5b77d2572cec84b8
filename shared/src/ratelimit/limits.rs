//! The configured limits: defaults, per-source overrides, the tenant
//! total, and what to do when Redis does not answer.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

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
