//! [`ensure`]: make a live server's topology match the desired one, creating
//! what is missing, updating what may change and refusing, by field, what the
//! server cannot change in place.

use async_nats::jetstream::{self, consumer, kv, stream};
use serde_json::Value;

use super::{ConsumerDef, Settings, Topology, task_consumer};
use crate::id::Capability;
use crate::subject as s;

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
    #[error("JetStream request for {kind} {name} failed")]
    JetStream {
        kind: &'static str,
        name: String,
        #[source]
        source: async_nats::Error,
    },
}

fn js_err(
    kind: &'static str,
    name: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> TopologyError {
    TopologyError::JetStream {
        kind,
        name: name.to_owned(),
        source: Box::new(e),
    }
}

/// The stream does not exist (JetStream error 10059).
fn stream_missing(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The consumer does not exist (JetStream error 10014).
fn consumer_missing(e: &jetstream::context::ConsumerInfoError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::ConsumerInfoErrorKind::NotFound
    )
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
        Err(e) if stream_missing(&e) => {
            js.create_stream(desired.clone())
                .await
                .map_err(|e| js_err("stream", name, e))?;
            Ok(Change::Created)
        }
        Err(e) => Err(js_err("stream", name, e)),
    }
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
        Err(e) if consumer_missing(&e) => {
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
        Err(e) if stream_missing(&e) => {
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
        Err(e) if consumer_missing(&e) => {
            stream
                .create_consumer(def.config.clone())
                .await
                .map_err(|e| js_err("consumer", &name, e))?;
            Ok(Change::Created)
        }
        Err(e) => Err(js_err("consumer", &name, e)),
    }
}
