//! Retry with exponential backoff (`backon`), honouring a server's
//! `Retry-After` (capped), with a warning per retry.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use tracing::warn;

/// Errors that know whether another attempt can help.
pub(crate) trait Retryable {
    fn is_retryable(&self) -> bool;
    /// A delay the server asked for; used instead of the computed one (capped).
    fn retry_after(&self) -> Option<Duration>;
}

impl Retryable for super::WeatherError {
    fn is_retryable(&self) -> bool {
        super::WeatherError::is_retryable(self)
    }
    fn retry_after(&self) -> Option<Duration> {
        super::WeatherError::retry_after(self)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// First delay; doubles each time, plus a random jitter of up to the delay itself.
    pub initial: Duration,
    /// Cap on one delay.
    pub max: Duration,
}

/// Runs `op` until it succeeds, fails permanently, or has been retried
/// `max_retries` times; returns the last error then.
pub(crate) async fn run<T, E, F, Fut>(policy: Policy, what: &'static str, op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Retryable + Display,
{
    let schedule = ExponentialBuilder::default()
        .with_min_delay(policy.initial)
        .with_factor(2.0)
        .with_max_delay(policy.max)
        .with_max_times(usize::try_from(policy.max_retries).unwrap_or(usize::MAX))
        .with_jitter();
    op.retry(schedule)
        .sleep(tokio::time::sleep)
        .when(|e: &E| e.is_retryable())
        .adjust(|e: &E, delay| delay.map(|d| e.retry_after().map_or(d, |a| a.min(policy.max))))
        .notify(|e: &E, delay: Duration| {
            warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what} failed, retrying");
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct E {
        retryable: bool,
    }
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "e(retryable={})", self.retryable)
        }
    }
    impl Retryable for E {
        fn is_retryable(&self) -> bool {
            self.retryable
        }
        fn retry_after(&self) -> Option<Duration> {
            None
        }
    }

    fn policy(max_retries: u32) -> Policy {
        Policy {
            max_retries,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_then_gives_up() {
        let mut calls = 0;
        let r: Result<(), E> = run(policy(3), "op", || {
            calls += 1;
            async { Err(E { retryable: true }) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 4, "first attempt + 3 retries");
    }

    #[tokio::test]
    async fn stops_at_a_permanent_error_and_returns_success() {
        let mut calls = 0;
        let r: Result<(), E> = run(policy(3), "op", || {
            calls += 1;
            async { Err(E { retryable: false }) }
        })
        .await;
        assert!(matches!(r, Err(E { retryable: false })));
        assert_eq!(calls, 1);

        let mut calls = 0;
        let r: Result<u32, E> = run(policy(3), "op", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(E { retryable: true })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert!(matches!(r, Ok(3)));
    }
}
