//! Per-step retry policy: how many attempts, which failures are retried, and
//! the exponential backoff between attempts.
//!
//! The delays are deterministic (no jitter) so that a durable timer written
//! by one engine replica means the same thing to another; the executor may
//! add jitter when it arms the timer.

use serde::{Deserialize, Serialize};

use super::duration::Duration;

/// Most attempts a policy may ask for.
pub const MAX_ATTEMPTS: u32 = 100;

/// Which failures a policy retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// The agent reported a transient failure (`retryable: true`).
    Retryable,
    /// The attempt's timeout expired.
    Timeout,
    /// Any failure, permanent ones included.
    Error,
}

/// How an attempt failed, as the executor classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A transient error (the agent said so, or the engine could not deliver).
    Retryable,
    /// The attempt timed out.
    Timeout,
    /// A permanent error (bad input, an expression that failed, ...).
    Permanent,
}

impl RetryOn {
    fn covers(self, failure: Failure) -> bool {
        match self {
            RetryOn::Error => true,
            RetryOn::Retryable => failure == Failure::Retryable,
            RetryOn::Timeout => failure == Failure::Timeout,
        }
    }
}

fn default_attempts() -> u32 {
    3
}
fn default_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_max() -> Duration {
    Duration::from_secs(30)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_on() -> Vec<RetryOn> {
    vec![RetryOn::Retryable, RetryOn::Timeout]
}

/// `retry: { max_attempts, initial, max, multiplier, on }`. Fields left out
/// take the defaults 3, `1s`, `30s`, 2.0, `[retryable, timeout]`; a step
/// without `retry` makes one attempt ([`RetryPolicy::NONE`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (>= 1).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt.
    #[serde(default = "default_initial")]
    pub initial: Duration,
    /// Cap on any delay.
    #[serde(default = "default_max")]
    pub max: Duration,
    /// Growth of the delay per attempt (>= 1.0).
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    #[serde(default = "default_on")]
    pub on: Vec<RetryOn>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_attempts(),
            initial: default_initial(),
            max: default_max(),
            multiplier: default_multiplier(),
            on: default_on(),
        }
    }
}

impl RetryPolicy {
    /// One attempt, never retried.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
        multiplier: 2.0,
        on: Vec::new(),
    };

    /// Whether to try again after attempt number `attempt` (1-based) failed
    /// with `failure`.
    pub fn should_retry(&self, attempt: u32, failure: Failure) -> bool {
        attempt < self.max_attempts && self.on.iter().any(|on| on.covers(failure))
    }

    /// The delay after attempt number `attempt` (1-based) failed:
    /// `initial * multiplier^(attempt-1)`, capped at `max`.
    pub fn delay_after(&self, attempt: u32) -> std::time::Duration {
        let initial = self.initial.as_std().as_secs_f64();
        let cap = self.max.as_std();
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = initial * self.multiplier.max(1.0).powi(exponent);
        if !secs.is_finite() || secs >= cap.as_secs_f64() {
            return cap;
        }
        std::time::Duration::from_secs_f64(secs.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delays double from `initial` and stop at `max`.
    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            on: default_on(),
        };
        let secs: Vec<u64> = (1..=7).map(|a| p.delay_after(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(p.delay_after(u32::MAX), std::time::Duration::from_secs(30));
        let flat = RetryPolicy {
            multiplier: 1.0,
            initial: Duration::from_millis(250),
            ..p
        };
        assert_eq!(flat.delay_after(5), std::time::Duration::from_millis(250));
    }

    /// Only the listed failure classes are retried, and only while attempts remain.
    #[test]
    fn retry_decisions() {
        let p = RetryPolicy::default();
        assert!(p.should_retry(1, Failure::Retryable));
        assert!(p.should_retry(2, Failure::Timeout));
        assert!(!p.should_retry(3, Failure::Retryable));
        assert!(!p.should_retry(1, Failure::Permanent));
        let any = RetryPolicy {
            on: vec![RetryOn::Error],
            ..RetryPolicy::default()
        };
        assert!(any.should_retry(1, Failure::Permanent));
        assert!(!RetryPolicy::NONE.should_retry(1, Failure::Retryable));
    }

    /// Missing fields take the documented defaults.
    #[test]
    fn defaults_fill_in() {
        let p: RetryPolicy = serde_json::from_str(r#"{"max_attempts": 5}"#).unwrap();
        assert_eq!(
            p,
            RetryPolicy {
                max_attempts: 5,
                ..RetryPolicy::default()
            }
        );
        assert_eq!(p.on, [RetryOn::Retryable, RetryOn::Timeout]);
    }
}
