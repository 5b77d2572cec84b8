//! Retry delays of failed tasks (the NAK delay of a retryable failure).

use std::time::Duration;

/// An exponential policy: `initial * multiplier^(attempt-1)`, capped at `max`, with ±20% jitter.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }
}

impl Policy {
    /// Delay before retry number `attempt` (1 = first retry): the exact
    /// delay with ±20% jitter, never above `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let jitter: f64 = rand::random_range(0.8..=1.2);
        self.delay_exact(attempt).mul_f64(jitter).min(self.max)
    }

    /// The same without jitter (for schedules that must be reproducible).
    pub fn delay_exact(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(62) as i32);
        let ms = (self.initial.as_millis() as f64 * factor).min(self.max.as_millis() as f64);
        Duration::from_millis(ms as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let p = Policy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
        };
        assert_eq!(p.delay_exact(1), Duration::from_millis(100));
        assert_eq!(p.delay_exact(3), Duration::from_millis(400));
        assert_eq!(p.delay_exact(10), Duration::from_secs(1));
        let d = p.delay(3);
        assert!(
            d >= Duration::from_millis(300) && d <= Duration::from_millis(500),
            "{d:?}"
        );
        assert!(p.delay(30) <= Duration::from_secs(1));
    }
}
