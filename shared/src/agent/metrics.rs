//! Agent runtime metrics.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::telemetry::register;

#[derive(Clone)]
pub struct Metrics {
    pub tasks: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGaugeVec,
    pub dlq: IntCounterVec,
    pub duplicates: prometheus::IntCounter,
    pub a2a_calls: IntCounterVec,
    pub a2a_duration: HistogramVec,
}

impl Metrics {
    pub fn new(r: &Registry) -> Self {
        // Names and labels are constants: construction fails only on a typo, at start-up.
        let buckets = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        Self {
            tasks: register(
                r,
                IntCounterVec::new(
                    Opts::new("agentry_tasks_total", "Tasks by capability and outcome"),
                    &["capability", "outcome"],
                )
                .expect("metric"),
            ),
            duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new("agentry_task_duration_seconds", "Task handling time")
                        .buckets(buckets.clone()),
                    &["capability"],
                )
                .expect("metric"),
            ),
            in_flight: register(
                r,
                IntGaugeVec::new(
                    Opts::new("agentry_tasks_in_flight", "Tasks being handled"),
                    &["capability"],
                )
                .expect("metric"),
            ),
            dlq: register(
                r,
                IntCounterVec::new(
                    Opts::new("agentry_dlq_entries_total", "Dead letters written"),
                    &["reason"],
                )
                .expect("metric"),
            ),
            duplicates: register(
                r,
                prometheus::IntCounter::new(
                    "agentry_results_duplicates_refused_total",
                    "Second results refused for a request id",
                )
                .expect("metric"),
            ),
            a2a_calls: register(
                r,
                IntCounterVec::new(
                    Opts::new("agentry_a2a_calls_total", "Agent-to-agent calls"),
                    &["kind", "outcome"],
                )
                .expect("metric"),
            ),
            a2a_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "agentry_a2a_call_duration_seconds",
                        "Agent-to-agent call time",
                    )
                    .buckets(buckets),
                    &["kind"],
                )
                .expect("metric"),
            ),
        }
    }
}

/// One capability's task series, resolved once per pull loop instead of a
/// label lookup (hash and lock) per task.
pub(crate) struct CapMetrics {
    pub in_flight: IntGauge,
    pub completed: IntCounter,
    pub failed: IntCounter,
    pub retried: IntCounter,
    pub timeout: IntCounter,
    pub duration: Histogram,
}

impl Metrics {
    pub(crate) fn for_capability(&self, cap: &str) -> CapMetrics {
        let outcome = |o: &str| self.tasks.with_label_values(&[cap, o]);
        CapMetrics {
            in_flight: self.in_flight.with_label_values(&[cap]),
            completed: outcome("completed"),
            failed: outcome("failed"),
            retried: outcome("retried"),
            timeout: outcome("timeout"),
            duration: self.duration.with_label_values(&[cap]),
        }
    }
}
