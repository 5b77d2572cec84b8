//! JSON Schemas (2020-12) embedded from `schemas/` at build time, each
//! compiled once on first use. Every schema is registered as a resource
//! under its `$id`, so cross-file `$ref`s resolve offline.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use jsonschema::{Draft, Resource, Validator};
use serde_json::Value;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/schemas.rs"));
}

pub const BASE: &str = "https://agentry.dev/schemas/";

/// Instance failed its schema: the first few errors, each with its path.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", errors.join("; "))]
pub struct SchemaError {
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("schema {0} is not embedded")]
    Missing(String),
    #[error("schema {id} does not compile")]
    Compile {
        id: String,
        /// Shared: the outcome of compiling is kept for the process's life.
        #[source]
        source: Arc<CompileError>,
    },
}

/// Why an embedded schema does not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("embedded schema {id} is not a usable resource")]
    Resource {
        id: String,
        #[source]
        source: jsonschema::ReferencingError,
    },
    #[error("not a valid JSON Schema 2020-12 document")]
    Schema(#[source] jsonschema::ValidationError<'static>),
}

struct Entry {
    doc: Value,
    compiled: OnceLock<Result<Validator, Arc<CompileError>>>,
}

pub struct Schemas {
    by_path: HashMap<&'static str, Entry>,
    resources: Vec<(String, Value)>,
}

static GLOBAL: OnceLock<Schemas> = OnceLock::new();

/// The process-wide schema set.
pub fn global() -> &'static Schemas {
    GLOBAL.get_or_init(Schemas::load)
}

impl Schemas {
    fn load() -> Self {
        let mut by_path = HashMap::new();
        let mut resources = Vec::new();
        for (path, text) in embedded::FILES {
            let Ok(doc) = serde_json::from_str::<Value>(text) else {
                tracing::error!(path, "embedded schema is not JSON");
                continue;
            };
            if let Some(id) = doc.get("$id").and_then(Value::as_str) {
                resources.push((id.to_owned(), doc.clone()));
            }
            by_path.insert(
                *path,
                Entry {
                    doc,
                    compiled: OnceLock::new(),
                },
            );
        }
        Self { by_path, resources }
    }

    /// Paths of every embedded schema (relative to `schemas/`).
    pub fn paths(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.by_path.keys().copied().collect();
        v.sort_unstable();
        v
    }

    pub fn contains(&self, path: &str) -> bool {
        self.by_path.contains_key(path)
    }

    pub fn document(&self, path: &str) -> Option<&Value> {
        self.by_path.get(path).map(|e| &e.doc)
    }

    /// The compiled validator for `path` (e.g. `events/io.agentry.task.requested.json`).
    pub fn validator(&self, path: &str) -> Result<&Validator, LoadError> {
        let entry = self
            .by_path
            .get(path)
            .ok_or_else(|| LoadError::Missing(path.to_owned()))?;
        entry
            .compiled
            .get_or_init(|| self.compile(&entry.doc))
            .as_ref()
            .map_err(|source| LoadError::Compile {
                id: path.to_owned(),
                source: Arc::clone(source),
            })
    }

    fn compile(&self, doc: &Value) -> Result<Validator, Arc<CompileError>> {
        let mut opts = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true);
        for (id, d) in &self.resources {
            match Resource::from_contents(d.clone()) {
                Ok(res) => opts = opts.with_resource(id.clone(), res),
                Err(source) => {
                    return Err(Arc::new(CompileError::Resource {
                        id: id.clone(),
                        source,
                    }));
                }
            }
        }
        opts.build(doc)
            .map_err(|e| Arc::new(CompileError::Schema(e)))
    }

    /// Validator for an event type's data, if the type has a schema.
    pub fn event(&self, ty: &str) -> Option<&Validator> {
        self.validator(&format!("events/{ty}.json")).ok()
    }

    pub fn capability_input(&self, cap: &str) -> Option<&Validator> {
        self.validator(&format!("capabilities/{cap}.input.json"))
            .ok()
    }

    pub fn capability_output(&self, cap: &str) -> Option<&Validator> {
        self.validator(&format!("capabilities/{cap}.output.json"))
            .ok()
    }
}

/// Validates `instance`, collecting up to 5 errors with their instance paths.
pub fn check(v: &Validator, instance: &Value) -> Result<(), SchemaError> {
    // The common case without building error iterators (which allocate per
    // keyword even when nothing fails); errors are collected only on failure.
    if v.is_valid(instance) {
        return Ok(());
    }
    let errors: Vec<String> = v
        .iter_errors(instance)
        .take(5)
        .map(|e| {
            let path = e.instance_path.to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SchemaError { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_compiles() {
        let s = global();
        assert!(!s.paths().is_empty());
        for p in s.paths() {
            assert!(s.validator(p).is_ok(), "{p}: {:?}", s.validator(p).err());
        }
    }

    #[test]
    fn task_requested_checks_capability() {
        let v = global().event("io.agentry.task.requested").expect("schema");
        assert!(check(v, &serde_json::json!({"capability": "echo", "input": {}})).is_ok());
        let err = check(v, &serde_json::json!({"input": {}})).unwrap_err();
        assert!(err.to_string().contains("capability"));
    }
}
