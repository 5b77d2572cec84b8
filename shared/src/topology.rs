//! The JetStream topology (DESIGN §3) as data, and its idempotent creation.
//!
//! [`Topology::new`] turns [`Settings`] into stream, consumer and bucket
//! configurations; [`ensure`] creates what is missing, updates what may be
//! updated and refuses, naming the field, an existing object whose config
//! conflicts in a way the server cannot change (e.g. retention). The same
//! configurations are written to `nats/` in `nats` CLI JSON form
//! ([`Topology::cli_files`]); a test keeps the two in step.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{self, AckPolicy, DeliverPolicy},
    kv, object_store,
    stream::{self, DiscardPolicy, RetentionPolicy, StorageType},
};
use serde_json::Value;

use crate::id::Capability;
use crate::subject as s;

/// Every built-in capability: `agentry setup` creates a `cap-<capability>`
/// consumer for each, so KEDA can scale their agents from zero.
pub const BUILTIN_CAPABILITIES: &[&str] = &[
    "echo",
    "weather_current",
    "weather_forecast",
    "plan_tasks",
    "customer_inquiry",
    "issue_resolution",
    "escalation",
    "data_processing",
    "statistical_analysis",
    "visualization",
    "threat_detection",
    "security_analysis",
    "incident_response",
];

/// Sizes, ages and replica counts, each with a default and an override.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "topology_settings")]
pub struct Settings {
    /// Replicas for every stream and bucket (3 in production clusters).
    #[arg(
        long = "topology-replicas",
        env = "AGENTRY_TOPOLOGY_REPLICAS",
        default_value_t = 1
    )]
    pub replicas: usize,
    /// Use memory storage instead of files (tests, benchmarks).
    #[arg(
        long = "topology-memory",
        env = "AGENTRY_TOPOLOGY_MEMORY",
        default_value_t = false
    )]
    pub memory: bool,
    /// Maximum queued requests in AGENTRY_REQUESTS (new ones are refused beyond it).
    #[arg(long, env = "AGENTRY_REQUESTS_MAX_MSGS", default_value_t = 100_000)]
    pub requests_max_msgs: i64,
    /// Maximum queued tasks per capability in AGENTRY_TASKS.
    #[arg(
        long,
        env = "AGENTRY_TASKS_MAX_PER_CAPABILITY",
        default_value_t = 50_000
    )]
    pub tasks_max_per_capability: i64,
    /// Maximum queued tasks in AGENTRY_TASKS in total.
    #[arg(long, env = "AGENTRY_TASKS_MAX_MSGS", default_value_t = 500_000)]
    pub tasks_max_msgs: i64,
    /// How long results stay fetchable by request id, in seconds.
    #[arg(long, env = "AGENTRY_RESULTS_MAX_AGE_SECS", default_value_t = 24 * 3600)]
    pub results_max_age_secs: u64,
    /// How long lifecycle events are kept, in seconds.
    #[arg(long, env = "AGENTRY_EVENTS_MAX_AGE_SECS", default_value_t = 7 * 24 * 3600)]
    pub events_max_age_secs: u64,
    /// How long dead letters are kept, in seconds (they may hold user data).
    #[arg(long, env = "AGENTRY_DLQ_MAX_AGE_SECS", default_value_t = 14 * 24 * 3600)]
    pub dlq_max_age_secs: u64,
    /// How long finished workflow runs are kept, in seconds.
    #[arg(long, env = "AGENTRY_RUNS_MAX_AGE_SECS", default_value_t = 7 * 24 * 3600)]
    pub runs_max_age_secs: u64,
    /// Deduplication window for request ids, in seconds.
    #[arg(long, env = "AGENTRY_DEDUP_WINDOW_SECS", default_value_t = 120)]
    pub dedup_window_secs: u64,
    /// Largest message accepted by the streams, in bytes (the request size limit plus headroom).
    #[arg(long, env = "AGENTRY_MAX_MSG_SIZE", default_value_t = 1024 * 1024 + 64 * 1024)]
    pub max_msg_size: i32,
    /// AckWait for task consumers, in seconds (agents send progress for longer work).
    #[arg(long, env = "AGENTRY_TASK_ACK_WAIT_SECS", default_value_t = 30)]
    pub task_ack_wait_secs: u64,
    /// Deliveries of a task before it is dead-lettered.
    #[arg(long, env = "AGENTRY_TASK_MAX_DELIVER", default_value_t = 5)]
    pub task_max_deliver: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            replicas: 1,
            memory: false,
            requests_max_msgs: 100_000,
            tasks_max_per_capability: 50_000,
            tasks_max_msgs: 500_000,
            results_max_age_secs: 24 * 3600,
            events_max_age_secs: 7 * 24 * 3600,
            dlq_max_age_secs: 14 * 24 * 3600,
            runs_max_age_secs: 7 * 24 * 3600,
            dedup_window_secs: 120,
            max_msg_size: 1024 * 1024 + 64 * 1024,
            task_ack_wait_secs: 30,
            task_max_deliver: 5,
        }
    }
}

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

/// What `ensure` did to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated(Vec<String>),
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub items: Vec<(String, Change)>,
}

impl Report {
    pub fn changed(&self) -> bool {
        self.items.iter().any(|(_, c)| *c != Change::Unchanged)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "{kind} {name} exists with a conflicting `{field}`: has {actual}, wants {desired} (the server cannot change it in place; delete it or change the setting)"
    )]
    Conflict {
        kind: &'static str,
        name: String,
        field: String,
        actual: String,
        desired: String,
    },
    #[error("JetStream request for {kind} {name} failed: {detail}")]
    JetStream {
        kind: &'static str,
        name: String,
        detail: String,
    },
}

fn js_err(kind: &'static str, name: &str, e: impl std::fmt::Display) -> TopologyError {
    TopologyError::JetStream {
        kind,
        name: name.to_owned(),
        detail: e.to_string(),
    }
}

/// Fields the server refuses to change on an existing stream.
const STREAM_IMMUTABLE: &[&str] = &["retention", "storage"];
/// Fields the server refuses to change on an existing consumer.
const CONSUMER_IMMUTABLE: &[&str] = &[
    "deliver_policy",
    "ack_policy",
    "opt_start_seq",
    "opt_start_time",
    "replay_policy",
];

/// Keys of `desired` whose values differ in `actual` (both serialised configs).
/// Keys equal to their value in `defaults` were not set by us and are the
/// server's business (it reports its own effective defaults).
/// Immutable keys are always compared: a default we rely on is still a choice.
fn diff(
    desired: &Value,
    actual: &Value,
    defaults: &Value,
    ignore: &[&str],
    immutable: &[&str],
) -> Vec<(String, String, String)> {
    let (Some(d), Some(a)) = (desired.as_object(), actual.as_object()) else {
        return Vec::new();
    };
    d.iter()
        .filter(|(k, _)| !ignore.contains(&k.as_str()))
        .filter(|(k, v)| immutable.contains(&k.as_str()) || defaults.get(k.as_str()) != Some(*v))
        .filter_map(|(k, dv)| {
            let av = a.get(k).cloned().unwrap_or(Value::Null);
            let same = match (dv, &av) {
                (Value::Null, _) => true,
                (Value::Bool(false), Value::Null) => true,
                (Value::Array(x), Value::Null) if x.is_empty() => true,
                (Value::String(x), Value::Null) if x.is_empty() => true,
                (Value::Object(x), Value::Null) if x.is_empty() => true,
                _ => *dv == av,
            };
            (!same).then(|| (k.clone(), av.to_string(), dv.to_string()))
        })
        .collect()
}

/// Creates what is missing, updates what may be updated, refuses conflicts.
pub async fn ensure(js: &jetstream::Context, topo: &Topology) -> Result<Report, TopologyError> {
    let mut items = Vec::new();
    for st in &topo.streams {
        let change = ensure_stream(js, st).await?;
        items.push((format!("stream {}", st.name), change));
    }
    for c in &topo.consumers {
        let change = ensure_consumer(js, c).await?;
        let name = c.config.durable_name.clone().unwrap_or_default();
        items.push((format!("consumer {}/{}", c.stream, name), change));
    }
    for b in &topo.buckets {
        let change = ensure_bucket(js, b).await?;
        items.push((format!("kv {}", b.bucket), change));
    }
    for o in &topo.object_stores {
        let change = match js.get_object_store(&o.bucket).await {
            Ok(_) => Change::Unchanged,
            Err(_) => {
                js.create_object_store(o.clone())
                    .await
                    .map_err(|e| js_err("object store", &o.bucket, e))?;
                Change::Created
            }
        };
        items.push((format!("object store {}", o.bucket), change));
    }
    Ok(Report { items })
}

async fn ensure_stream(
    js: &jetstream::Context,
    desired: &stream::Config,
) -> Result<Change, TopologyError> {
    let name = desired.name.as_str();
    match js.get_stream(name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| js_err("stream", name, e))?;
            let want = serde_json::to_value(desired).unwrap_or(Value::Null);
            let have = serde_json::to_value(&info.config).unwrap_or(Value::Null);
            let defaults = serde_json::to_value(stream::Config::default()).unwrap_or(Value::Null);
            let diffs = diff(&want, &have, &defaults, &["description"], STREAM_IMMUTABLE);
            if diffs.is_empty() {
                return Ok(Change::Unchanged);
            }
            if let Some((field, actual, desired_v)) = diffs
                .iter()
                .find(|(f, _, _)| STREAM_IMMUTABLE.contains(&f.as_str()))
            {
                return Err(TopologyError::Conflict {
                    kind: "stream",
                    name: name.to_owned(),
                    field: field.clone(),
                    actual: actual.clone(),
                    desired: desired_v.clone(),
                });
            }
            js.update_stream(desired.clone())
                .await
                .map_err(|e| js_err("stream", name, e))?;
            Ok(Change::Updated(diffs.into_iter().map(|d| d.0).collect()))
        }
        Err(e) if is_not_found(&e.to_string()) => {
            js.create_stream(desired.clone())
                .await
                .map_err(|e| js_err("stream", name, e))?;
            Ok(Change::Created)
        }
        Err(e) => Err(js_err("stream", name, e)),
    }
}

fn is_not_found(msg: &str) -> bool {
    msg.contains("not found") || msg.contains("10059") || msg.contains("10014")
}

async fn ensure_consumer(
    js: &jetstream::Context,
    def: &ConsumerDef,
) -> Result<Change, TopologyError> {
    let name = def.config.durable_name.clone().unwrap_or_default();
    let stream = js
        .get_stream(def.stream)
        .await
        .map_err(|e| js_err("stream", def.stream, e))?;
    match stream.consumer_info(&name).await {
        Ok(info) => {
            let want = serde_json::to_value(&def.config).unwrap_or(Value::Null);
            let have = serde_json::to_value(&info.config).unwrap_or(Value::Null);
            let defaults =
                serde_json::to_value(consumer::pull::Config::default()).unwrap_or(Value::Null);
            // With a backoff list the server reports ack_wait = backoff[0].
            let ignore: &[&str] = if def.config.backoff.is_empty() {
                &["description", "num_replicas"]
            } else {
                &["description", "num_replicas", "ack_wait"]
            };
            let diffs = diff(&want, &have, &defaults, ignore, CONSUMER_IMMUTABLE);
            tracing::debug!(?diffs, consumer = %name, "consumer config differences");
            if diffs.is_empty() {
                return Ok(Change::Unchanged);
            }
            if let Some((field, actual, desired)) = diffs
                .iter()
                .find(|(f, _, _)| CONSUMER_IMMUTABLE.contains(&f.as_str()))
            {
                return Err(TopologyError::Conflict {
                    kind: "consumer",
                    name: format!("{}/{}", def.stream, name),
                    field: field.clone(),
                    actual: actual.clone(),
                    desired: desired.clone(),
                });
            }
            stream
                .create_consumer(def.config.clone())
                .await
                .map_err(|e| js_err("consumer", &name, e))?;
            Ok(Change::Updated(diffs.into_iter().map(|d| d.0).collect()))
        }
        Err(e) if is_not_found(&e.to_string()) => {
            stream
                .create_consumer(def.config.clone())
                .await
                .map_err(|e| js_err("consumer", &name, e))?;
            Ok(Change::Created)
        }
        Err(e) => Err(js_err("consumer", &name, e)),
    }
}

async fn ensure_bucket(
    js: &jetstream::Context,
    desired: &kv::Config,
) -> Result<Change, TopologyError> {
    let name = desired.bucket.as_str();
    let stream_name = format!("KV_{name}");
    match js.get_stream(&stream_name).await {
        Ok(mut st) => {
            let info = st.info().await.map_err(|e| js_err("kv", name, e))?;
            let mut fields = Vec::new();
            let mut cfg = info.config.clone();
            if cfg.max_messages_per_subject != desired.history {
                fields.push("history".to_owned());
                cfg.max_messages_per_subject = desired.history;
            }
            if cfg.max_age != desired.max_age {
                fields.push("max_age".to_owned());
                cfg.max_age = desired.max_age;
            }
            if cfg.storage != desired.storage {
                return Err(TopologyError::Conflict {
                    kind: "kv",
                    name: name.to_owned(),
                    field: "storage".into(),
                    actual: format!("{:?}", cfg.storage),
                    desired: format!("{:?}", desired.storage),
                });
            }
            if fields.is_empty() {
                return Ok(Change::Unchanged);
            }
            js.update_stream(cfg)
                .await
                .map_err(|e| js_err("kv", name, e))?;
            Ok(Change::Updated(fields))
        }
        Err(e) if is_not_found(&e.to_string()) => {
            js.create_key_value(desired.clone())
                .await
                .map_err(|e| js_err("kv", name, e))?;
            Ok(Change::Created)
        }
        Err(e) => Err(js_err("kv", name, e)),
    }
}

/// Creates a task consumer if it does not exist (agent runtime, custom
/// capabilities). An existing one is left as `agentry setup` made it: agents
/// never fight over consumer settings.
pub async fn ensure_task_consumer(
    js: &jetstream::Context,
    cap: &Capability,
    cfg: &Settings,
) -> Result<Change, TopologyError> {
    let def = task_consumer(cap, cfg);
    let name = s::task_consumer(cap);
    let stream = js
        .get_stream_no_info(def.stream)
        .await
        .map_err(|e| js_err("stream", def.stream, e))?;
    match stream.consumer_info(&name).await {
        Ok(_) => Ok(Change::Unchanged),
        Err(e) if is_not_found(&e.to_string()) => {
            stream
                .create_consumer(def.config.clone())
                .await
                .map_err(|e| js_err("consumer", &name, e))?;
            Ok(Change::Created)
        }
        Err(e) => Err(js_err("consumer", &name, e)),
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
