//! Engine metrics.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use agentry::telemetry::register;

#[derive(Clone)]
pub struct Metrics {
    pub requests: IntCounterVec,
    /// `agentry_requests_total{outcome="accepted"}` per request type,
    /// resolved once (not a label lookup per request).
    pub accepted: Accepted,
    pub rejections: IntCounterVec,
    pub dlq: IntCounterVec,
    pub duplicates: IntCounter,
    pub runs: IntCounterVec,
    pub run_duration: HistogramVec,
    pub step_duration: HistogramVec,
    pub runs_active: IntGauge,
    pub runs_parked: IntGauge,
    pub timers_pending: IntGauge,
    pub task_timeouts: IntCounterVec,
    /// Tenants' tasks held and released by fairness (docs/tenancy.md).
    pub fair_tasks: IntCounterVec,
}

impl Metrics {
    pub fn new(r: &Registry) -> Self {
        // Constant names and labels: construction fails only on a typo, at start-up.
        let buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            900.0, 3600.0,
        ];
        let requests = register(
            r,
            IntCounterVec::new(
                Opts::new("agentry_requests_total", "Requests by type and outcome"),
                &["type", "outcome"],
            )
            .expect("metric"),
        );
        let accepted = |ty: &str| requests.with_label_values(&[ty, "accepted"]);
        Self {
            accepted: Accepted {
                task: accepted("task.requested"),
                workflow: accepted("workflow.requested"),
                signal: accepted("workflow.signal"),
                cancel: accepted("workflow.cancel"),
            },
            requests,
            rejections: register(
                r,
                IntCounterVec::new(
                    Opts::new("agentry_rejections_total", "Rejected requests by reason"),
                    &["reason"],
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
                IntCounter::new(
                    "agentry_results_duplicates_refused_total",
                    "Second results refused for a request id",
                )
                .expect("metric"),
            ),
            runs: register(
                r,
                IntCounterVec::new(
                    Opts::new("agentry_workflow_runs_total", "Workflow runs by outcome"),
                    &["workflow", "outcome"],
                )
                .expect("metric"),
            ),
            run_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "agentry_workflow_run_duration_seconds",
                        "Workflow run duration",
                    )
                    .buckets(buckets.clone()),
                    &["workflow"],
                )
                .expect("metric"),
            ),
            step_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "agentry_workflow_step_duration_seconds",
                        "Workflow step duration",
                    )
                    .buckets(buckets),
                    &["workflow", "step"],
                )
                .expect("metric"),
            ),
            runs_active: register(
                r,
                IntGauge::new(
                    "agentry_workflow_runs_active",
                    "Runs this replica is advancing",
                )
                .expect("metric"),
            ),
            runs_parked: register(
                r,
                IntGauge::new(
                    "agentry_workflow_runs_parked",
                    "Runs this replica started that wait for a signal (not counted against the run limit)",
                )
                .expect("metric"),
            ),
            timers_pending: register(
                r,
                IntGauge::new(
                    "agentry_workflow_timers_pending",
                    "Durable timers scheduled and not yet fired",
                )
                .expect("metric"),
            ),
            task_timeouts: register(
                r,
                IntCounterVec::new(
                    Opts::new("agentry_tasks_total", "Tasks by capability and outcome"),
                    &["capability", "outcome"],
                )
                .expect("metric"),
            ),
            fair_tasks: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "agentry_fair_tasks_total",
                        "Tenants' tasks held at a congested capability and released in turn",
                    ),
                    &["capability", "action"],
                )
                .expect("metric"),
            ),
        }
    }
}

/// The accepted-requests counters, one per request type.
#[derive(Clone)]
pub struct Accepted {
    pub task: IntCounter,
    pub workflow: IntCounter,
    pub signal: IntCounter,
    pub cancel: IntCounter,
}
