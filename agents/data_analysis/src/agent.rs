//! The `data_analysis` agent: `data_processing`, `statistical_analysis` and
//! `visualization` (the algorithms are in the crate's other modules).
//!
//! A chart larger than [`INLINE_SVG_LIMIT`] is not returned inline: it goes
//! to the JetStream object store `agentry-artifacts` under
//! `<request-id>.svg` (a redelivery overwrites the same object) and the
//! output carries an `artifact` reference instead of `svg`.

use std::collections::HashMap;
use std::time::Duration;

use agentry::agent::{Agent, Context, Descriptor, Task, TaskError};
use agentry::id::Capability;
use agentry::subject;
use async_nats::jetstream::object_store::ObjectMetadata;
use serde_json::{Value, json};

use agentry_agent_kit::run_blocking;

/// Capabilities of the `data_analysis` kind.
pub const CAPABILITIES: [&str; 3] = ["data_processing", "statistical_analysis", "visualization"];
/// Largest SVG returned inline in a result (64 KiB).
pub const INLINE_SVG_LIMIT: usize = 64 * 1024;
const SVG_CONTENT_TYPE: &str = "image/svg+xml";

/// The data-analysis agent.
#[derive(Debug, Default)]
pub struct DataAnalysisAgent;

#[async_trait::async_trait]
impl Agent for DataAnalysisAgent {
    fn descriptor(&self) -> Descriptor {
        Descriptor {
            kind: "data_analysis".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "CSV/JSON processing, statistics and regression, SVG charts".into(),
            capabilities: CAPABILITIES
                .iter()
                .filter_map(|c| Capability::new(*c).ok())
                .collect(),
        }
    }

    async fn handle(&self, task: Task, ctx: Context) -> Result<Value, TaskError> {
        let input = task.input;
        match task.capability.as_str() {
            "data_processing" => run_blocking(move || crate::data_processing(&input)).await,
            "statistical_analysis" => {
                run_blocking(move || crate::statistical_analysis(&input)).await
            }
            "visualization" => {
                let out = run_blocking(move || crate::visualization(&input)).await?;
                offload_large_svg(out, task.request_id.as_str(), &ctx).await
            }
            other => Err(TaskError::permanent(format!(
                "the data_analysis agent does not serve {other}"
            ))),
        }
    }

    /// Size guards bound the work to seconds; this leaves room for a slow machine.
    fn default_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }
}

/// Moves an SVG over [`INLINE_SVG_LIMIT`] into the artifacts bucket and
/// replaces it by a reference.
async fn offload_large_svg(
    mut out: Value,
    request_id: &str,
    ctx: &Context,
) -> Result<Value, TaskError> {
    let Some(obj) = out.as_object_mut() else {
        return Ok(out);
    };
    let large = obj
        .get("svg")
        .and_then(Value::as_str)
        .is_some_and(|svg| svg.len() > INLINE_SVG_LIMIT);
    if !large {
        return Ok(out);
    }
    let Some(Value::String(svg)) = obj.remove("svg") else {
        return Ok(out);
    };
    let key = format!("{request_id}.svg");
    let store = ctx
        .jetstream()
        .get_object_store(subject::ARTIFACTS_BUCKET)
        .await
        .map_err(|e| {
            TaskError::retryable(format!("object store {}: {e}", subject::ARTIFACTS_BUCKET))
        })?;
    let meta = ObjectMetadata {
        name: key.clone(),
        description: Some(format!("visualization result of request {request_id}")),
        metadata: HashMap::from([("content_type".to_owned(), SVG_CONTENT_TYPE.to_owned())]),
        ..ObjectMetadata::default()
    };
    let info = store.put(meta, &mut svg.as_bytes()).await.map_err(|e| {
        TaskError::retryable(format!(
            "storing {key} in {}: {e}",
            subject::ARTIFACTS_BUCKET
        ))
    })?;
    obj.insert(
        "artifact".into(),
        json!({
            "bucket": subject::ARTIFACTS_BUCKET,
            "key": key,
            "bytes": info.size,
            "content_type": SVG_CONTENT_TYPE,
        }),
    );
    Ok(out)
}
