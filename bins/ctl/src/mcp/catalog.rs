//! The tool catalog: one MCP tool per live capability and one per stored
//! workflow, rebuilt whenever `agentry-agents` or `agentry-workflows`
//! changes. Only what a client sees (names, descriptions, schemas) counts as
//! a change, so heartbeats that move an agent's load do not make clients
//! list the tools again. A watch lost to a nats-server restart is reopened
//! and the catalog re-read, so the list keeps following the registry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use agentry::consume::watch;
use agentry::registry::{Registry, Status};
use agentry::schema;
use agentry::workflow::store;
use async_nats::jetstream::{self, kv};
use rmcp::model::{JsonObject, Tool};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Prefix of workflow tool names (`workflow_<name>`).
pub const WORKFLOW_PREFIX: &str = "workflow_";

/// After a change, more changes within this window are folded into one
/// rebuild (an agent start writes several registry entries in a row).
const SETTLE: Duration = Duration::from_millis(150);

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("agent registry")]
    Registry(#[from] agentry::registry::RegistryError),
    #[error("workflow store")]
    Workflows(#[from] store::StoreError),
}

/// What a tool call runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Capability(String),
    Workflow {
        name: String,
        version: u32,
        steps: usize,
    },
}

/// One snapshot of the tools.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Catalog {
    tools: BTreeMap<String, (Tool, Target)>,
}

impl Catalog {
    pub fn tools(&self) -> Vec<Tool> {
        self.tools.values().map(|(t, _)| t.clone()).collect()
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.tools.get(name).map(|(_, t)| t)
    }

    pub fn names(&self) -> Vec<&str> {
        self.tools.keys().map(String::as_str).collect()
    }
}

/// The input schema of `capability` from `schemas/capabilities`, or an open
/// object for a capability without one (custom agents).
fn capability_schema(capability: &str) -> JsonObject {
    let path = format!("capabilities/{capability}.input.json");
    match schema::global().document(&path) {
        Some(Value::Object(o)) => o.clone(),
        _ => open_object(),
    }
}

fn open_object() -> JsonObject {
    let mut o = JsonObject::new();
    o.insert("type".into(), "object".into());
    o
}

/// A tool for `capability` served by `servers` (kind, version) pairs.
fn capability_tool(capability: &str, servers: &BTreeSet<(String, String)>) -> Tool {
    let schema = capability_schema(capability);
    let about = schema
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Run the agentry capability `{capability}`."));
    let by: Vec<String> = servers
        .iter()
        .map(|(kind, version)| format!("{kind} {version}"))
        .collect();
    let description = format!(
        "{about}\n\nServed by the live agentry agent(s): {}. Runs as a durable request (retries, dead-letter queue).",
        by.join(", ")
    );
    let mut tool = Tool::new(capability.to_owned(), description, schema);
    tool.title = Some(format!("agentry {capability}"));
    tool
}

/// A tool for a stored workflow definition.
fn workflow_tool(def: &agentry::workflow::Definition) -> Tool {
    let schema = match &def.input_schema {
        Some(Value::Object(o)) => o.clone(),
        _ => open_object(),
    };
    let about = def
        .description
        .clone()
        .unwrap_or_else(|| format!("Run the agentry workflow `{}`.", def.name));
    let steps: Vec<&str> = def.steps.iter().map(|s| s.id.as_str()).collect();
    let description = format!(
        "{about}\n\nWorkflow {} version {} ({} steps: {}). Reports progress per step; cancelling the call cancels the run.",
        def.name,
        def.version,
        steps.len(),
        steps.join(", ")
    );
    let mut tool = Tool::new(
        format!("{WORKFLOW_PREFIX}{}", def.name),
        description,
        schema,
    );
    tool.title = Some(format!("agentry workflow {}", def.name));
    tool
}

/// Reads both buckets and builds the catalog.
pub async fn build(registry: &Registry, workflows: &kv::Store) -> Result<Catalog, CatalogError> {
    let mut servers: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for rec in registry.list().await? {
        if rec.status != Status::Live {
            continue;
        }
        for cap in &rec.capabilities {
            servers
                .entry(cap.clone())
                .or_default()
                .insert((rec.kind.clone(), rec.version.clone()));
        }
    }
    let mut tools = BTreeMap::new();
    for (cap, by) in &servers {
        tools.insert(
            cap.clone(),
            (capability_tool(cap, by), Target::Capability(cap.clone())),
        );
    }
    for (name, versions) in store::versions(workflows).await? {
        let Some(&version) = versions.last() else {
            continue;
        };
        let Some(def) = store::get(workflows, &name, Some(version)).await? else {
            continue;
        };
        let tool = workflow_tool(&def);
        let tool_name = tool.name.to_string();
        if tools.contains_key(&tool_name) {
            tracing::warn!(tool = %tool_name, "a capability has the workflow tool's name; the workflow is not offered");
            continue;
        }
        let steps = def.steps.len();
        tools.insert(
            tool_name,
            (
                tool,
                Target::Workflow {
                    name,
                    version,
                    steps,
                },
            ),
        );
    }
    Ok(Catalog { tools })
}

/// Keeps a [`Catalog`] current: the first one is built before this returns;
/// later ones are published on the returned channel when they differ.
///
/// Both buckets are followed with [`watch::kv_tracked`], which reopens a
/// watch that ends or fails (a nats-server restart) with backoff. Each
/// (re)opened watch asks for a rebuild as well as each change: the watch is
/// open before that rebuild reads, so a change made while the watch was
/// down, or between the first build and the first watch, is never missed.
pub async fn follow(
    js: &jetstream::Context,
    shutdown: CancellationToken,
) -> Result<tokio::sync::watch::Receiver<Arc<Catalog>>, CatalogError> {
    let registry = Registry::open(js).await?;
    let workflows = store::open(js).await?;
    let first = build(&registry, &workflows).await?;
    tracing::info!(tools = ?first.names(), "tool catalog ready");
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(first));
    // One stored permit at most: a burst of changes wakes the rebuild once.
    let changed = Arc::new(Notify::new());
    for store in [registry.store().clone(), workflows.clone()] {
        let changed = changed.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            watch::kv_tracked(&store, watch::From::Now, &shutdown, |update| {
                if !matches!(update, watch::Update::Stale) {
                    changed.notify_one();
                }
            })
            .await
        });
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = changed.notified() => {}
            }
            // Fold the burst that usually follows one change.
            while tokio::time::timeout(SETTLE, changed.notified())
                .await
                .is_ok()
            {}
            match build(&registry, &workflows).await {
                Ok(next) => {
                    let changed = **tx.borrow() != next;
                    if changed {
                        tracing::info!(tools = ?next.names(), "tool list changed");
                        if tx.send(Arc::new(next)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %agentry::error::Chain(&e), "tool catalog not rebuilt; keeping the last one")
                }
            }
        }
    });
    Ok(rx)
}

/// The structured content of a result: the outcome's data when it is an
/// object (MCP wants an object), else `{"value": data}`.
pub fn structured(data: Value) -> Value {
    match data {
        Value::Object(_) => data,
        other => json!({ "value": other }),
    }
}
