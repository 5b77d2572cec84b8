//! The attempt limit, enforced by the runtime from the delivery count so a
//! task consumer never silently exhausts `max_deliver` (see
//! docs/reliability.md, "The attempt-limit rule").
//!
//! The handler runs on deliveries `1..=max_deliver-1`; the last delivery the
//! server makes (`max_deliver`) is reserved for recording the terminal
//! outcome (`task.failed` + DLQ copy) without running the handler again, so a
//! task whose worker crashed or timed out on every attempt still gets its
//! result from the runtime. Only when that last delivery cannot record
//! either does the monitor's max-deliveries backstop take over.

/// Attempts assumed when the consumer allows unlimited deliveries.
const UNLIMITED_ATTEMPTS: u64 = 5;

/// What one delivery of a task may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Run the handler; `last` when a retryable failure must not be retried.
    Run { last: bool },
    /// The attempts are used up: record the terminal outcome, run nothing.
    RecordOnly,
}

/// The handler runs at most this many times for a consumer's `max_deliver`.
pub(crate) fn limit(max_deliver: i64) -> u64 {
    match max_deliver {
        m if m <= 0 => UNLIMITED_ATTEMPTS,
        1 => 1,
        m => (m - 1) as u64,
    }
}

/// Classifies delivery number `delivered` (1-based, from the server).
pub(crate) fn classify(delivered: u64, max_deliver: i64) -> Delivery {
    let limit = limit(max_deliver);
    if delivered > limit {
        Delivery::RecordOnly
    } else {
        Delivery::Run {
            last: delivered >= limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_server_delivery_is_reserved_for_recording() {
        assert_eq!(classify(1, 5), Delivery::Run { last: false });
        assert_eq!(classify(3, 5), Delivery::Run { last: false });
        assert_eq!(classify(4, 5), Delivery::Run { last: true });
        assert_eq!(classify(5, 5), Delivery::RecordOnly);
        assert_eq!(classify(9, 5), Delivery::RecordOnly);
    }

    #[test]
    fn small_and_unlimited_max_deliver() {
        assert_eq!(classify(1, 2), Delivery::Run { last: true });
        assert_eq!(classify(2, 2), Delivery::RecordOnly);
        assert_eq!(classify(1, 1), Delivery::Run { last: true });
        assert_eq!(classify(5, -1), Delivery::Run { last: true });
        assert_eq!(classify(6, -1), Delivery::RecordOnly);
    }
}
