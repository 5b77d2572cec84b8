//! Every subject, stream, consumer and bucket name. The only place that knows
//! their spelling: everything else calls these functions.

use std::fmt;

use crate::id::{AgentId, Capability, IdError, RequestId, RunId};

/// Client requests (tasks, workflows, signals, cancellations) enter here.
pub const REQUESTS: &str = "agentry.requests";
/// Requests of a client tenant enter on `agentry.requests.<tenant>`.
pub const REQUESTS_ALL: &str = "agentry.requests.>";
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
/// Tenants' tasks held back while a capability's queue is congested
/// (`agentry.held.<capability>.<tenant>`, docs/tenancy.md).
pub const HELD_PREFIX: &str = "agentry.held";
pub const HELD_ALL: &str = "agentry.held.>";
pub const TIMERS_FIRE_ALL: &str = "agentry.timers.fire.>";

pub const REQUESTS_STREAM: &str = "AGENTRY_REQUESTS";
pub const TASKS_STREAM: &str = "AGENTRY_TASKS";
pub const STEPS_STREAM: &str = "AGENTRY_STEPS";
pub const RESULTS_STREAM: &str = "AGENTRY_RESULTS";
pub const REGISTRY_STREAM: &str = "AGENTRY_REGISTRY";
pub const EVENTS_STREAM: &str = "AGENTRY_EVENTS";
pub const DLQ_STREAM: &str = "AGENTRY_DLQ";
pub const TIMERS_STREAM: &str = "AGENTRY_TIMERS";
pub const HELD_STREAM: &str = "AGENTRY_HELD";

pub const ENGINE_CONSUMER: &str = "engine";
pub const ENGINE_STEPS_CONSUMER: &str = "engine-steps";
pub const ENGINE_TIMERS_CONSUMER: &str = "engine-timers";
pub const REGISTRAR_CONSUMER: &str = "registrar";
pub const SECURITY_EVENTS_CONSUMER: &str = "security-events";
pub const SECURITY_DLQ_CONSUMER: &str = "security-dlq";
pub const SECURITY_RESULTS_CONSUMER: &str = "security-results";

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

/// The prefix of a capability's durable task consumer (`cap-<capability>`).
pub const TASK_CONSUMER_PREFIX: &str = "cap-";

pub fn task_consumer(cap: &Capability) -> String {
    format!("{TASK_CONSUMER_PREFIX}{cap}")
}

/// The capability a `cap-<capability>` consumer serves.
pub fn capability_of_consumer(consumer: &str) -> Option<&str> {
    consumer.strip_prefix("cap-")
}

/// Where the engine holds tenant `tenant`'s tasks for `cap` while the
/// capability's queue is congested: `agentry.held.<capability>.<tenant>`.
pub fn held(cap: &Capability, tenant: &Tenant) -> String {
    format!("{HELD_PREFIX}.{cap}.{tenant}")
}

/// The capability and tenant a [`held`] subject names.
pub fn held_of(subject: &str) -> Option<(Capability, Tenant)> {
    let rest = subject.strip_prefix(HELD_PREFIX)?.strip_prefix('.')?;
    let (cap, tenant) = rest.split_once('.')?;
    Some((Capability::new(cap).ok()?, Tenant::new(tenant).ok()?))
}

/// The engine's consumer of one tenant's held tasks for `cap`.
pub fn held_consumer(cap: &Capability, tenant: &Tenant) -> String {
    format!("held-{cap}-{tenant}")
}

pub fn results(id: &RequestId) -> String {
    format!("{RESULTS_PREFIX}.{id}")
}

/// The JetStream API subject of a direct get from `stream` whose request
/// names the subjects in its body (batched `multi_last`).
pub fn direct_get_api(stream: &str) -> String {
    format!("$JS.API.DIRECT.GET.{stream}")
}

/// A client tenant: one subject token, `^[a-z][a-z0-9_-]{0,63}$`. Its NATS
/// user is `client_<tenant>`; its requests enter on `agentry.requests.<tenant>`
/// and its results live on `agentry.results.<tenant>.<request-id>`, which NATS
/// permissions confine to that user (nats/README.md, option A).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

impl Tenant {
    pub const PATTERN: &'static str = "^[a-z][a-z0-9_-]{0,63}$";

    /// Validates and wraps `value`.
    pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
        let value = value.into();
        let b = value.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 64
            && b[0].is_ascii_lowercase()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-');
        if ok {
            Ok(Self(value))
        } else {
            Err(IdError {
                kind: "tenant",
                value: value.chars().take(80).collect(),
                pattern: Self::PATTERN,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Tenant {
    type Err = IdError;
    fn from_str(value: &str) -> Result<Self, IdError> {
        Self::new(value)
    }
}

/// The subject a request is published to: `agentry.requests[.<tenant>]`.
pub fn requests_for(tenant: Option<&Tenant>) -> String {
    match tenant {
        Some(t) => format!("{REQUESTS}.{t}"),
        None => REQUESTS.to_owned(),
    }
}

/// The result subject of a request: `agentry.results[.<tenant>].<id>`.
pub fn results_for(tenant: Option<&Tenant>, id: &RequestId) -> String {
    match tenant {
        Some(t) => format!("{RESULTS_PREFIX}.{t}.{id}"),
        None => results(id),
    }
}

/// A request arrived on a subject that names no valid tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subject:?} is not a request subject (agentry.requests or agentry.requests.<tenant>, tenant {pattern})", pattern = Tenant::PATTERN)]
pub struct RequestSubjectError {
    pub subject: String,
}

/// The tenant a request belongs to, taken only from the subject it arrived
/// on: `agentry.requests` has none, `agentry.requests.<tenant>` has one;
/// anything else (more tokens, an invalid tenant) is refused.
pub fn tenant_of_request(subject: &str) -> Result<Option<Tenant>, RequestSubjectError> {
    let err = || RequestSubjectError {
        subject: subject.chars().take(160).collect(),
    };
    match subject.strip_prefix(REQUESTS) {
        Some("") => Ok(None),
        Some(rest) => {
            let token = rest.strip_prefix('.').ok_or_else(err)?;
            Tenant::new(token).map(Some).map_err(|_| err())
        }
        None => Err(err()),
    }
}

/// A key unique per request across tenants (`Nats-Msg-Id`s, timer keys):
/// `<id>` without a tenant, `<tenant>.<id>` with one.
pub fn request_key(tenant: Option<&Tenant>, id: &RequestId) -> String {
    match tenant {
        Some(t) => format!("{t}.{id}"),
        None => id.to_string(),
    }
}

/// The inbox prefix of a NATS user (`custom_inbox_prefix`): `_INBOX.<user>`.
/// Under auth every role may subscribe only below its own prefix.
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX.{user}")
}

pub fn steps(run: &RunId) -> String {
    format!("{STEPS_PREFIX}.{run}")
}

/// The key of a run in `agentry-runs` (and the name every derived id starts
/// with): `<tenant>.<id>` for a tenant's run, `<id>` without a tenant. Two
/// tenants may use the same run id; their keys differ.
pub fn run_key(tenant: Option<&Tenant>, run: &RunId) -> String {
    match tenant {
        Some(t) => format!("{t}.{run}"),
        None => run.to_string(),
    }
}

/// Splits a [`run_key`] (or a name derived from one, such as a task id
/// `<tenant>.<id>`) into its tenant and the rest, validating both.
pub fn split_run_key(key: &str) -> Result<(Option<Tenant>, RunId), IdError> {
    match key.split_once('.') {
        None => Ok((None, RunId::new(key)?)),
        Some((t, id)) => Ok((Some(Tenant::new(t)?), RunId::new(id)?)),
    }
}

/// The run id in a [`run_key`]: the part after `<tenant>.` (the key itself
/// when untenanted). This is what events, results and `run.id` carry; the
/// key stays internal to `agentry-runs` and derived names.
pub fn run_id_of_key(key: &str) -> &str {
    key.split_once('.').map_or(key, |(_, id)| id)
}

/// Where the step results of run `key` ([`run_key`]) go:
/// `agentry.steps[.<tenant>].<run-id>`.
pub fn steps_for_key(key: &str) -> Result<String, IdError> {
    split_run_key(key)?;
    Ok(format!("{STEPS_PREFIX}.{key}"))
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

/// Timer key of a single task's deadline: `task-<id>`, or `task-<tenant>.<id>`.
pub fn task_timer_key(tenant: Option<&Tenant>, id: &RequestId) -> String {
    format!("task-{}", request_key(tenant, id))
}

/// The tenant and request id of a fired task-deadline timer, read from its
/// subject (`agentry.timers.fire.task-[<tenant>.]<id>`).
pub fn task_timer_of(subject: &str) -> Option<(Option<Tenant>, RequestId)> {
    let key = subject.strip_prefix("agentry.timers.fire.task-")?;
    match key.split_once('.') {
        None => Some((None, RequestId::new(key).ok()?)),
        Some((t, id)) => Some((Some(Tenant::new(t).ok()?), RequestId::new(id).ok()?)),
    }
}

/// Subjects a task's `replyto` may point at: `agentry.results.<id>`,
/// `agentry.results.<tenant>.<id>`, `agentry.steps.<run-id>` and
/// `agentry.steps.<tenant>.<run-id>`.
pub fn is_allowed_reply(subject: &str) -> bool {
    let tail = |prefix: &str| {
        subject
            .strip_prefix(prefix)
            .and_then(|s| s.strip_prefix('.'))
    };
    if let Some(rest) = tail(RESULTS_PREFIX) {
        return match rest.split_once('.') {
            None => RequestId::new(rest).is_ok(),
            Some((tenant, id)) => Tenant::new(tenant).is_ok() && RequestId::new(id).is_ok(),
        };
    }
    tail(STEPS_PREFIX).is_some_and(|key| split_run_key(key).is_ok())
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
        // Two tokens are `<tenant>.<id>`; three are nothing.
        assert!(!is_allowed_reply("agentry.results.a.b.c"));
        assert!(!is_allowed_reply("agentry.tasks.echo"));
        assert!(!is_allowed_reply("$JS.API.STREAM.DELETE.X"));
        assert!(!is_allowed_reply("agentry.results.>"));
        assert!(is_allowed_reply("agentry.results.acme.r1"));
        assert!(!is_allowed_reply("agentry.results.acme.r1.x"));
        assert!(!is_allowed_reply("agentry.results.Acme.r1"));
        assert!(!is_allowed_reply("agentry.results.acme.>"));
        assert!(!is_allowed_reply("agentry.results.*.r1"));
        assert!(!is_allowed_reply("agentry.results.acme."));
        assert!(is_allowed_reply("agentry.steps.acme.run1"));
        assert!(!is_allowed_reply("agentry.steps.a.b.c"));
        assert!(!is_allowed_reply("agentry.steps.Acme.b"));
        assert!(!is_allowed_reply("agentry.steps.acme.>"));
    }

    fn acme_t() -> Tenant {
        Tenant::new("acme").unwrap()
    }

    #[test]
    fn tenants() {
        let acme = Tenant::new("acme").unwrap();
        let id = RequestId::new("r1").unwrap();
        assert_eq!(requests_for(None), "agentry.requests");
        assert_eq!(requests_for(Some(&acme)), "agentry.requests.acme");
        assert_eq!(results_for(None, &id), "agentry.results.r1");
        assert_eq!(results_for(Some(&acme), &id), "agentry.results.acme.r1");
        assert_eq!(request_key(Some(&acme), &id), "acme.r1");
        assert_eq!(request_key(None, &id), "r1");
        assert_eq!(inbox_prefix("client_acme"), "_INBOX.client_acme");
        assert_eq!(tenant_of_request("agentry.requests"), Ok(None));
        assert_eq!(tenant_of_request("agentry.requests.acme"), Ok(Some(acme)));
        for bad in [
            "agentry.requests.",
            "agentry.requests.acme.x",
            "agentry.requests.Acme",
            "agentry.requests.*",
            "agentry.requests.>",
            "agentry.requestsx",
            "agentry.tasks.echo",
            "",
        ] {
            assert!(tenant_of_request(bad).is_err(), "{bad}");
        }
        let key = task_timer_key(Some(&Tenant::new("acme").unwrap()), &id);
        assert_eq!(key, "task-acme.r1");
        assert_eq!(
            task_timer_of(&timer_fire(&key)),
            Some((Some(Tenant::new("acme").unwrap()), id.clone()))
        );
        assert_eq!(
            task_timer_of(&timer_fire(&task_timer_key(None, &id))),
            Some((None, id.clone()))
        );
        assert_eq!(task_timer_of("agentry.timers.fire.run-1.step"), None);
        let run = RunId::new("r1").unwrap();
        assert_eq!(run_key(Some(&acme_t()), &run), "acme.r1");
        assert_eq!(run_key(None, &run), "r1");
        assert_eq!(split_run_key("acme.r1"), Ok((Some(acme_t()), run.clone())));
        assert_eq!(split_run_key("r1"), Ok((None, run.clone())));
        assert!(split_run_key("acme.r1.x").is_err());
        assert_eq!(run_id_of_key("acme.r1"), "r1");
        assert_eq!(run_id_of_key("r1"), "r1");
        assert!(split_run_key("Acme.r1").is_err());
        assert_eq!(steps_for_key("acme.r1").unwrap(), "agentry.steps.acme.r1");
        assert_eq!(steps_for_key("r1").unwrap(), "agentry.steps.r1");
        let echo = Capability::new("echo").unwrap();
        assert_eq!(held(&echo, &acme_t()), "agentry.held.echo.acme");
        assert_eq!(
            held_of("agentry.held.echo.acme"),
            Some((echo.clone(), acme_t()))
        );
        assert_eq!(held_of("agentry.held.echo"), None);
        assert_eq!(held_of("agentry.held.echo.acme.x"), None);
        assert_eq!(held_consumer(&echo, &acme_t()), "held-echo-acme");
        assert!(Tenant::new("globex-2").is_ok());
        assert!(Tenant::new("a".repeat(64)).is_ok());
        assert!(Tenant::new("a".repeat(65)).is_err());
        assert!(Tenant::new("1acme").is_err());
        assert!(Tenant::new("").is_err());
    }
}
