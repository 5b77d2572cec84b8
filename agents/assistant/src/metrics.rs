//! The assistant's Prometheus metrics: LLM calls (by outcome, with their
//! latency), tokens (prompt and completion), tool calls and goals. Every
//! label is a fixed set: model names and tool names come from tasks and the
//! model, so they are never labels.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use crate::llm::{LlmError, Usage};

/// Outcome labels of `agentry_assistant_llm_requests_total`.
pub const LLM_OUTCOMES: [&str; 5] = [
    "ok",
    "llm_timeout",
    "llm_unreachable",
    "llm_status",
    "llm_malformed",
];

#[derive(Clone)]
pub struct Metrics {
    llm_requests: IntCounterVec,
    llm_duration: Histogram,
    tokens: IntCounterVec,
    tool_calls: IntCounterVec,
    goals: IntCounterVec,
}

impl Metrics {
    /// The metrics, not yet registered ([`Metrics::register`]).
    pub fn new() -> Self {
        // Names and labels are constants: construction fails only on a typo, at start-up.
        let counter = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("metric")
        };
        let m = Self {
            llm_requests: counter(
                "agentry_assistant_llm_requests_total",
                "Chat-completion calls to the LLM endpoint by outcome",
                "outcome",
            ),
            llm_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "agentry_assistant_llm_request_duration_seconds",
                    "Time of one chat-completion call",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                ]),
            )
            .expect("metric"),
            tokens: counter(
                "agentry_assistant_llm_tokens_total",
                "Tokens the LLM endpoint reported, by kind (prompt, completion)",
                "kind",
            ),
            tool_calls: counter(
                "agentry_assistant_tool_calls_total",
                "Tool calls delegated to live agents, by outcome (ok, error)",
                "outcome",
            ),
            goals: counter(
                "agentry_assistant_goals_total",
                "Goals by outcome (answered, step_budget, failed)",
                "outcome",
            ),
        };
        // Every series exists from the start, so rates work before the first failure.
        for o in LLM_OUTCOMES {
            m.llm_requests.with_label_values(&[o]);
        }
        for k in ["prompt", "completion"] {
            m.tokens.with_label_values(&[k]);
        }
        for o in ["ok", "error"] {
            m.tool_calls.with_label_values(&[o]);
        }
        for o in ["answered", "step_budget", "failed"] {
            m.goals.with_label_values(&[o]);
        }
        m
    }

    pub fn register(&self, registry: &Registry) {
        use agentry::telemetry::register;
        register(registry, self.llm_requests.clone());
        register(registry, self.llm_duration.clone());
        register(registry, self.tokens.clone());
        register(registry, self.tool_calls.clone());
        register(registry, self.goals.clone());
    }

    /// One LLM call: its outcome, time and (when it answered) tokens.
    pub fn llm_call(&self, result: Result<Usage, &LlmError>, seconds: f64) {
        self.llm_duration.observe(seconds);
        match result {
            Ok(usage) => {
                self.llm_requests.with_label_values(&["ok"]).inc();
                self.tokens
                    .with_label_values(&["prompt"])
                    .inc_by(usage.prompt_tokens);
                self.tokens
                    .with_label_values(&["completion"])
                    .inc_by(usage.completion_tokens);
            }
            Err(e) => self.llm_requests.with_label_values(&[e.code()]).inc(),
        }
    }

    pub fn tool_call(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.tool_calls.with_label_values(&[outcome]).inc();
    }

    /// `answered`, `step_budget` or `failed`.
    pub fn goal(&self, outcome: &'static str) {
        self.goals.with_label_values(&[outcome]).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn calls_count_tokens_and_outcomes() {
        let m = Metrics::new();
        let r = Registry::new();
        m.register(&r);
        m.llm_call(
            Ok(Usage {
                prompt_tokens: 7,
                completion_tokens: 3,
                total_tokens: 10,
            }),
            0.2,
        );
        m.llm_call(
            Err(&LlmError::Status {
                status: 503,
                detail: "busy".into(),
            }),
            0.1,
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&r.gather())
            .unwrap();
        for line in [
            r#"agentry_assistant_llm_tokens_total{kind="prompt"} 7"#,
            r#"agentry_assistant_llm_tokens_total{kind="completion"} 3"#,
            r#"agentry_assistant_llm_requests_total{outcome="ok"} 1"#,
            r#"agentry_assistant_llm_requests_total{outcome="llm_status"} 1"#,
            r#"agentry_assistant_llm_requests_total{outcome="llm_timeout"} 0"#,
            "agentry_assistant_llm_request_duration_seconds_count 2",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
