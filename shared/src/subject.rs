//! Every subject, stream, consumer and bucket name. The only place that knows
//! their spelling: everything else calls these functions.

use crate::id::{AgentId, Capability, RequestId, RunId};

/// Client requests (tasks, workflows, signals, cancellations) enter here.
pub const REQUESTS: &str = "agentry.requests";
pub const TASKS_PREFIX: &str = "agentry.tasks";
pub const TASKS_ALL: &str = "agentry.tasks.>";
pub const STEPS_PREFIX: &str = "agentry.steps";
pub const STEPS_ALL: &str = "agentry.steps.>";
pub const RESULTS_PREFIX: &str = "agentry.results";
pub const RESULTS_ALL: &str = "agentry.results.>";
pub const REGISTRY_PREFIX: &str = "agentry.registry";
pub const REGISTRY_ALL: &str = "agentry.registry.>";
pub const EVENTS_PREFIX: &str = "agentry.events";
pub const EVENTS_ALL: &str = "agentry.events.>";
pub const DLQ_PREFIX: &str = "agentry.dlq";
pub const DLQ_ALL: &str = "agentry.dlq.>";
pub const A2A_PREFIX: &str = "agentry.a2a";
pub const TIMERS_SCHEDULE_ALL: &str = "agentry.timers.schedule.>";
pub const TIMERS_FIRE_ALL: &str = "agentry.timers.fire.>";

pub const REQUESTS_STREAM: &str = "AGENTRY_REQUESTS";
pub const TASKS_STREAM: &str = "AGENTRY_TASKS";
pub const STEPS_STREAM: &str = "AGENTRY_STEPS";
pub const RESULTS_STREAM: &str = "AGENTRY_RESULTS";
pub const REGISTRY_STREAM: &str = "AGENTRY_REGISTRY";
pub const EVENTS_STREAM: &str = "AGENTRY_EVENTS";
pub const DLQ_STREAM: &str = "AGENTRY_DLQ";
pub const TIMERS_STREAM: &str = "AGENTRY_TIMERS";

pub const ENGINE_CONSUMER: &str = "engine";
pub const ENGINE_STEPS_CONSUMER: &str = "engine-steps";
pub const ENGINE_TIMERS_CONSUMER: &str = "engine-timers";
pub const REGISTRAR_CONSUMER: &str = "registrar";
pub const SECURITY_EVENTS_CONSUMER: &str = "security-events";
pub const SECURITY_DLQ_CONSUMER: &str = "security-dlq";

pub const AGENTS_BUCKET: &str = "agentry-agents";
pub const WORKFLOWS_BUCKET: &str = "agentry-workflows";
pub const RUNS_BUCKET: &str = "agentry-runs";
pub const TICKETS_BUCKET: &str = "agentry-tickets";
pub const INCIDENTS_BUCKET: &str = "agentry-incidents";
pub const QUARANTINE_BUCKET: &str = "agentry-quarantine";
pub const ARTIFACTS_BUCKET: &str = "agentry-artifacts";

/// Prefix of the server's max-deliveries advisories (append `.<stream>.<consumer>`).
pub const MAX_DELIVERIES_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES";

pub fn tasks(cap: &Capability) -> String {
    format!("{TASKS_PREFIX}.{cap}")
}

/// The capability a task subject names, if it is one.
pub fn capability_of_task(subject: &str) -> Option<&str> {
    subject.strip_prefix(TASKS_PREFIX)?.strip_prefix('.')
}

pub fn task_consumer(cap: &Capability) -> String {
    format!("cap-{cap}")
}

/// The capability a `cap-<capability>` consumer serves.
pub fn capability_of_consumer(consumer: &str) -> Option<&str> {
    consumer.strip_prefix("cap-")
}

pub fn results(id: &RequestId) -> String {
    format!("{RESULTS_PREFIX}.{id}")
}

pub fn steps(run: &RunId) -> String {
    format!("{STEPS_PREFIX}.{run}")
}

pub fn registry(agent: &AgentId) -> String {
    format!("{REGISTRY_PREFIX}.{agent}")
}

pub fn a2a(agent: &AgentId) -> String {
    format!("{A2A_PREFIX}.{agent}")
}

/// Lifecycle subject for an event type `io.agentry.<a>.<b>`: `agentry.events.<a>.<b>`.
pub fn events_for_type(ty: &str) -> String {
    let tail = ty.strip_prefix(crate::event::TYPE_PREFIX).unwrap_or(ty);
    format!("{EVENTS_PREFIX}.{tail}")
}

pub fn dlq(reason: &str) -> String {
    format!("{DLQ_PREFIX}.{reason}")
}

pub fn timer_schedule(key: &str) -> String {
    format!("agentry.timers.schedule.{key}")
}

pub fn timer_fire(key: &str) -> String {
    format!("agentry.timers.fire.{key}")
}

/// Subject prefixes a task's `replyto` may point at.
pub fn is_allowed_reply(subject: &str) -> bool {
    let ok = |prefix: &str| {
        subject
            .strip_prefix(prefix)
            .and_then(|s| s.strip_prefix('.'))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['.', '*', '>', ' ']))
    };
    ok(RESULTS_PREFIX) || ok(STEPS_PREFIX)
}

pub fn max_deliveries_advisory(stream: &str, consumer: &str) -> String {
    format!("{MAX_DELIVERIES_ADVISORY}.{stream}.{consumer}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        let cap = Capability::new("echo").unwrap();
        assert_eq!(tasks(&cap), "agentry.tasks.echo");
        assert_eq!(task_consumer(&cap), "cap-echo");
        assert_eq!(capability_of_consumer("cap-echo"), Some("echo"));
        assert_eq!(capability_of_task("agentry.tasks.echo"), Some("echo"));
        let id = RequestId::new("r1").unwrap();
        assert_eq!(results(&id), "agentry.results.r1");
        assert_eq!(
            events_for_type("io.agentry.run.completed"),
            "agentry.events.run.completed"
        );
    }

    #[test]
    fn reply_prefixes() {
        assert!(is_allowed_reply("agentry.results.abc"));
        assert!(is_allowed_reply("agentry.steps.run1"));
        assert!(!is_allowed_reply("agentry.results."));
        assert!(!is_allowed_reply("agentry.results.a.b"));
        assert!(!is_allowed_reply("agentry.tasks.echo"));
        assert!(!is_allowed_reply("$JS.API.STREAM.DELETE.X"));
        assert!(!is_allowed_reply("agentry.results.>"));
    }
}
