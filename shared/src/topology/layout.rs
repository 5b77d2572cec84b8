//! The streams, consumers, buckets and object stores that make up agentry,
//! as configuration values built from [`Settings`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{
    consumer::{self, AckPolicy, DeliverPolicy},
    kv, object_store,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use serde_json::Value;

use super::{BUILTIN_CAPABILITIES, Settings};
use crate::id::Capability;
use crate::subject as s;

/// A durable consumer and the stream it reads.
#[derive(Debug, Clone)]
pub struct ConsumerDef {
    pub stream: &'static str,
    pub config: consumer::pull::Config,
}

/// The whole topology as data.
#[derive(Debug, Clone)]
pub struct Topology {
    pub streams: Vec<stream::Config>,
    pub consumers: Vec<ConsumerDef>,
    pub buckets: Vec<kv::Config>,
    pub object_stores: Vec<object_store::Config>,
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl Topology {
    pub fn new(cfg: &Settings) -> Self {
        let storage = if cfg.memory {
            StorageType::Memory
        } else {
            StorageType::File
        };
        let base = |name: &str, subjects: &[&str], description: &str| stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            description: Some(description.to_owned()),
            storage,
            num_replicas: cfg.replicas,
            max_message_size: cfg.max_msg_size,
            duplicate_window: secs(cfg.dedup_window_secs),
            ..Default::default()
        };
        let streams = vec![
            stream::Config {
                retention: RetentionPolicy::WorkQueue,
                discard: DiscardPolicy::New,
                max_messages: cfg.requests_max_msgs,
                ..base(
                    s::REQUESTS_STREAM,
                    &[s::REQUESTS, s::REQUESTS_ALL],
                    "Client requests: tasks, workflows, signals, cancellations",
                )
            },
            stream::Config {
                retention: RetentionPolicy::WorkQueue,
                discard: DiscardPolicy::New,
                max_messages: cfg.tasks_max_msgs,
                max_messages_per_subject: cfg.tasks_max_per_capability,
                discard_new_per_subject: true,
                ..base(
                    s::TASKS_STREAM,
                    &[s::TASKS_ALL],
                    "Tasks per capability, pulled by agents",
                )
            },
            stream::Config {
                retention: RetentionPolicy::WorkQueue,
                discard: DiscardPolicy::New,
                max_messages: cfg.tasks_max_msgs,
                max_messages_per_subject: cfg.tasks_max_per_capability,
                discard_new_per_subject: true,
                ..base(
                    s::HELD_STREAM,
                    &[s::HELD_ALL],
                    "Tenants' tasks held by the engine while their capability's queue is congested",
                )
            },
            stream::Config {
                retention: RetentionPolicy::WorkQueue,
                discard: DiscardPolicy::New,
                max_messages: cfg.requests_max_msgs,
                ..base(
                    s::STEPS_STREAM,
                    &[s::STEPS_ALL],
                    "Workflow step results back to the engine",
                )
            },
            stream::Config {
                max_age: secs(cfg.results_max_age_secs),
                allow_direct: true,
                ..base(
                    s::RESULTS_STREAM,
                    &[s::RESULTS_ALL],
                    "Exactly one terminal result per request id",
                )
            },
            stream::Config {
                max_age: secs(3600),
                max_messages_per_subject: 100,
                ..base(
                    s::REGISTRY_STREAM,
                    &[s::REGISTRY_ALL],
                    "Agent registrations and heartbeats",
                )
            },
            stream::Config {
                max_age: secs(cfg.events_max_age_secs),
                ..base(
                    s::EVENTS_STREAM,
                    &[s::EVENTS_ALL],
                    "Lifecycle facts: runs, steps, incidents, escalations",
                )
            },
            stream::Config {
                max_age: secs(cfg.dlq_max_age_secs),
                allow_direct: true,
                ..base(
                    s::DLQ_STREAM,
                    &[s::DLQ_ALL],
                    "Dead letters: original bytes plus reason headers",
                )
            },
            stream::Config {
                retention: RetentionPolicy::WorkQueue,
                allow_message_schedules: true,
                allow_message_ttl: true,
                ..base(
                    s::TIMERS_STREAM,
                    &[s::TIMERS_SCHEDULE_ALL, s::TIMERS_FIRE_ALL],
                    "Durable timers: message schedules firing into agentry.timers.fire",
                )
            },
        ];

        let pull = |name: &str, filter: &str, ack_wait: u64, max_deliver: i64, backoff: &[u64]| {
            consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                description: None,
                filter_subject: filter.to_owned(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: secs(ack_wait),
                max_deliver,
                backoff: backoff.iter().map(|b| secs(*b)).collect(),
                max_ack_pending: 10_000,
                num_replicas: 0,
                ..Default::default()
            }
        };
        let mut consumers = vec![
            // Both request forms: `agentry.requests` and `agentry.requests.<tenant>`.
            ConsumerDef {
                stream: s::REQUESTS_STREAM,
                config: consumer::pull::Config {
                    filter_subjects: vec![s::REQUESTS.to_owned(), s::REQUESTS_ALL.to_owned()],
                    ..pull(s::ENGINE_CONSUMER, "", 30, 5, &[])
                },
            },
            ConsumerDef {
                stream: s::STEPS_STREAM,
                config: pull(s::ENGINE_STEPS_CONSUMER, s::STEPS_ALL, 30, 5, &[]),
            },
            ConsumerDef {
                stream: s::TIMERS_STREAM,
                config: pull(s::ENGINE_TIMERS_CONSUMER, s::TIMERS_FIRE_ALL, 30, 10, &[]),
            },
            ConsumerDef {
                stream: s::REGISTRY_STREAM,
                config: pull(s::REGISTRAR_CONSUMER, s::REGISTRY_ALL, 30, 10, &[]),
            },
            ConsumerDef {
                stream: s::EVENTS_STREAM,
                config: consumer::pull::Config {
                    deliver_policy: DeliverPolicy::New,
                    ..pull(s::SECURITY_EVENTS_CONSUMER, s::EVENTS_ALL, 30, 5, &[])
                },
            },
            ConsumerDef {
                stream: s::DLQ_STREAM,
                config: consumer::pull::Config {
                    deliver_policy: DeliverPolicy::New,
                    ..pull(s::SECURITY_DLQ_CONSUMER, s::DLQ_ALL, 30, 5, &[])
                },
            },
            // The security monitor's view of task outcomes: its agent user may
            // not subscribe to `agentry.results.>`, but may pull from this.
            ConsumerDef {
                stream: s::RESULTS_STREAM,
                config: consumer::pull::Config {
                    deliver_policy: DeliverPolicy::New,
                    ..pull(s::SECURITY_RESULTS_CONSUMER, s::RESULTS_ALL, 30, 5, &[])
                },
            },
        ];
        for cap in BUILTIN_CAPABILITIES {
            if let Ok(cap) = Capability::new(*cap) {
                consumers.push(task_consumer(&cap, cfg));
            }
        }

        let bucket = |name: &str, description: &str, history: i64, max_age: u64| kv::Config {
            bucket: name.to_owned(),
            description: description.to_owned(),
            history,
            max_age: secs(max_age),
            storage,
            num_replicas: cfg.replicas,
            max_value_size: 1024 * 1024,
            ..Default::default()
        };
        let buckets = vec![
            bucket(
                s::AGENTS_BUCKET,
                "Agent registry materialised by the monitor",
                5,
                0,
            ),
            bucket(
                s::WORKFLOWS_BUCKET,
                "Workflow definitions, key name.version",
                10,
                0,
            ),
            bucket(
                s::RUNS_BUCKET,
                "Workflow run state, CAS-updated",
                5,
                cfg.runs_max_age_secs,
            ),
            bucket(
                s::TICKETS_BUCKET,
                "Customer service tickets",
                20,
                90 * 24 * 3600,
            ),
            bucket(
                s::INCIDENTS_BUCKET,
                "Security incidents with timelines",
                20,
                90 * 24 * 3600,
            ),
            bucket(s::QUARANTINE_BUCKET, "Quarantined request sources", 5, 0),
        ];
        let object_stores = vec![object_store::Config {
            bucket: s::ARTIFACTS_BUCKET.to_owned(),
            description: Some("Large task artefacts (charts, reports)".to_owned()),
            max_age: secs(7 * 24 * 3600),
            storage,
            num_replicas: cfg.replicas,
            ..Default::default()
        }];
        Self {
            streams,
            consumers,
            buckets,
            object_stores,
        }
    }

    /// Files for `nats/`: path relative to `nats/` -> pretty JSON.
    /// Streams: `nats stream add --config nats/streams/<name>.json`;
    /// consumers: `nats consumer add <stream> --config nats/consumers/<stream>/<name>.json`;
    /// buckets: the bucket settings `nats kv add` takes, as flags in the file's `_cli` key.
    pub fn cli_files(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
        for st in &self.streams {
            let v = serde_json::to_value(st).unwrap_or(Value::Null);
            out.insert(format!("streams/{}.json", st.name), pretty(&v));
        }
        for c in &self.consumers {
            let v = serde_json::to_value(&c.config).unwrap_or(Value::Null);
            let name = c.config.durable_name.clone().unwrap_or_default();
            out.insert(format!("consumers/{}/{}.json", c.stream, name), pretty(&v));
        }
        for b in &self.buckets {
            let cli = format!(
                "nats kv add {} --history {} --ttl {}s --replicas {} --storage {} --max-value-size {}",
                b.bucket,
                b.history,
                b.max_age.as_secs(),
                b.num_replicas,
                if b.storage == StorageType::Memory {
                    "memory"
                } else {
                    "file"
                },
                b.max_value_size
            );
            let v = serde_json::json!({
                "bucket": b.bucket,
                "description": b.description,
                "history": b.history,
                "max_age_secs": b.max_age.as_secs(),
                "replicas": b.num_replicas,
                "max_value_size": b.max_value_size,
                "_cli": cli,
            });
            out.insert(format!("kv/{}.json", b.bucket), pretty(&v));
        }
        out
    }
}

/// The `cap-<capability>` consumer definition (also used by the agent
/// runtime for a custom capability).
pub fn task_consumer(cap: &Capability, cfg: &Settings) -> ConsumerDef {
    let max_deliver = cfg.task_max_deliver.max(2);
    // No `backoff` list: on nats-server 2.15.1 a consumer with BackOff ignores
    // the delay of a NAK after the first redelivery and waits for the backoff
    // step instead (checked here), which would turn a 1 s retry into minutes.
    // Retry delays come from the runtime's NAK delay; a crashed agent's task
    // is redelivered after AckWait.
    ConsumerDef {
        stream: s::TASKS_STREAM,
        config: consumer::pull::Config {
            durable_name: Some(s::task_consumer(cap)),
            description: Some(format!("Tasks for capability {cap}")),
            filter_subject: s::tasks(cap),
            ack_policy: AckPolicy::Explicit,
            ack_wait: secs(cfg.task_ack_wait_secs),
            max_deliver,
            max_ack_pending: 20_000,
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_deliver_exceeds_backoff() {
        let topo = Topology::new(&Settings::default());
        for c in &topo.consumers {
            assert!(
                c.config.max_deliver > c.config.backoff.len() as i64,
                "{:?}",
                c.config.durable_name
            );
        }
    }

    #[test]
    fn every_builtin_capability_has_a_consumer() {
        let topo = Topology::new(&Settings::default());
        for cap in BUILTIN_CAPABILITIES {
            let name = format!("cap-{cap}");
            assert!(
                topo.consumers
                    .iter()
                    .any(|c| c.config.durable_name.as_deref() == Some(&name))
            );
        }
    }

    #[test]
    fn work_queue_filters_are_disjoint() {
        let topo = Topology::new(&Settings::default());
        let mut seen = std::collections::HashSet::new();
        for c in &topo.consumers {
            assert!(
                seen.insert((c.stream, c.config.filter_subject.clone())),
                "duplicate filter"
            );
        }
    }
}
