//! Monitor metrics: registry, queues, DLQ.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use agentry::telemetry::register;

#[derive(Clone)]
pub struct Metrics {
    pub agents: IntGaugeVec,
    pub heartbeats: IntCounter,
    pub expirations: IntCounter,
    pub depth: IntGaugeVec,
    pub ack_pending: IntGaugeVec,
    pub dlq_messages: IntGaugeVec,
    pub dlq_entries: IntCounterVec,
}

impl Metrics {
    pub fn new(r: &Registry) -> Self {
        // Constant names and labels: construction fails only on a typo, at start-up.
        Self {
            agents: register(
                r,
                IntGaugeVec::new(
                    Opts::new("agentry_agents", "Agents by capability and status"),
                    &["capability", "status"],
                )
                .expect("metric"),
            ),
            heartbeats: register(
                r,
                IntCounter::new("agentry_heartbeats_total", "Registry events received")
                    .expect("metric"),
            ),
            expirations: register(
                r,
                IntCounter::new(
                    "agentry_agent_expirations_total",
                    "Agents expired for missing heartbeats",
                )
                .expect("metric"),
            ),
            depth: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "agentry_queue_depth",
                        "Messages not yet delivered (num_pending)",
                    ),
                    &["stream", "consumer"],
                )
                .expect("metric"),
            ),
            ack_pending: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "agentry_queue_ack_pending",
                        "Delivered, unacknowledged messages",
                    ),
                    &["stream", "consumer"],
                )
                .expect("metric"),
            ),
            dlq_messages: register(
                r,
                IntGaugeVec::new(
                    Opts::new("agentry_dlq_messages", "Messages in AGENTRY_DLQ by reason"),
                    &["reason"],
                )
                .expect("metric"),
            ),
            dlq_entries: register(
                r,
                IntCounterVec::new(
                    Opts::new("agentry_dlq_entries_total", "Dead letters written"),
                    &["reason"],
                )
                .expect("metric"),
            ),
        }
    }
}
