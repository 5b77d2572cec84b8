//! Workflow definitions in KV `agentry-workflows`: key `<name>.<version>`,
//! value the definition's JSON form. A stored version never changes (a put
//! of different content under an existing key is refused), so runs pinned
//! to a key are unaffected by later versions; "latest" is the highest version.

use std::collections::{BTreeMap, BTreeSet};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;

use super::compiled::Compiled;
use super::definition::Definition;
use super::error::DefinitionErrors;
use crate::subject;
use crate::topology::BUILTIN_CAPABILITIES;

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// The same definition was already stored under its key.
    Unchanged,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(DefinitionErrors),
    #[error(
        "{key} is already stored with different content; versions are immutable, bump `version`"
    )]
    VersionExists { key: String },
    #[error("stored definition {key} is unreadable")]
    Corrupt {
        key: String,
        #[source]
        source: Unreadable,
    },
    #[error("definition {key} cannot be encoded")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what}")]
    Nats {
        what: &'static str,
        /// async-nats errors of several operations, each its own type.
        #[source]
        source: async_nats::Error,
    },
}

/// Why a stored definition cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("not JSON")]
    Json(#[source] serde_json::Error),
    #[error("{0}")]
    Invalid(DefinitionErrors),
}

impl StoreError {
    fn nats(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Nats {
            what,
            source: Box::new(e),
        }
    }
}

/// The KV key of a definition.
pub fn key(name: &str, version: u32) -> String {
    format!("{name}.{version}")
}

/// `(name, version)` of a key written by [`key`].
pub fn parse_key(key: &str) -> Option<(&str, u32)> {
    let (name, version) = key.rsplit_once('.')?;
    Some((name, version.parse().ok()?))
}

pub async fn open(js: &jetstream::Context) -> Result<kv::Store, StoreError> {
    js.get_key_value(subject::WORKFLOWS_BUCKET)
        .await
        .map_err(|e| StoreError::nats("opening the agentry-workflows bucket", e))
}

/// Every stored name with its versions, ascending.
pub async fn versions(store: &kv::Store) -> Result<BTreeMap<String, Vec<u32>>, StoreError> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut keys = store
        .keys()
        .await
        .map_err(|e| StoreError::nats("listing workflow definitions", e))?;
    while let Some(k) = keys.next().await {
        let k = k.map_err(|e| StoreError::nats("listing workflow definitions", e))?;
        if let Some((name, version)) = parse_key(&k) {
            out.entry(name.to_owned()).or_default().push(version);
        }
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    Ok(out)
}

/// The highest stored version of `name`.
pub async fn latest_version(store: &kv::Store, name: &str) -> Result<Option<u32>, StoreError> {
    Ok(versions(store)
        .await?
        .get(name)
        .and_then(|v| v.last().copied()))
}

/// The definition stored under `key`, read back through the schema.
pub async fn get_key(store: &kv::Store, key: &str) -> Result<Option<Definition>, StoreError> {
    let Some(bytes) = store
        .get(key)
        .await
        .map_err(|e| StoreError::nats("reading a workflow definition", e))?
    else {
        return Ok(None);
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            key: key.to_owned(),
            source: Unreadable::Json(e),
        })?;
    Definition::from_value(doc)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            key: key.to_owned(),
            source: Unreadable::Invalid(e),
        })
}

/// The definition `name` at `version`, or its latest version.
pub async fn get(
    store: &kv::Store,
    name: &str,
    version: Option<u32>,
) -> Result<Option<Definition>, StoreError> {
    let version = match version {
        Some(v) => v,
        None => match latest_version(store, name).await? {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    get_key(store, &key(name, version)).await
}

/// Capabilities a definition may name: the built-in ones and every
/// capability with a `cap-<capability>` consumer.
pub async fn known_capabilities(js: &jetstream::Context) -> Result<BTreeSet<String>, StoreError> {
    let mut caps: BTreeSet<String> = BUILTIN_CAPABILITIES
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let stream = js
        .get_stream_no_info(subject::TASKS_STREAM)
        .await
        .map_err(|e| StoreError::nats("opening AGENTRY_TASKS", e))?;
    let mut names = stream.consumer_names();
    while let Some(name) = names.next().await {
        let name = name.map_err(|e| StoreError::nats("listing task consumers", e))?;
        if let Some(cap) = subject::capability_of_consumer(&name) {
            caps.insert(cap.to_owned());
        }
    }
    Ok(caps)
}

/// Parses and checks `text` against the capabilities and workflows known to
/// the system; every problem is reported with its path.
pub async fn check_text(
    js: &jetstream::Context,
    store: &kv::Store,
    text: &str,
) -> Result<(Definition, Compiled), StoreError> {
    let def = Definition::parse(text).map_err(StoreError::Invalid)?;
    let caps = known_capabilities(js).await?;
    let workflows = versions(store).await?;
    let compiled = check_with(&def, &caps, &workflows).map_err(StoreError::Invalid)?;
    Ok((def, compiled))
}

/// [`Definition::check`] against known capabilities and stored workflows.
pub fn check_with(
    def: &Definition,
    caps: &BTreeSet<String>,
    workflows: &BTreeMap<String, Vec<u32>>,
) -> Result<Compiled, DefinitionErrors> {
    def.check(
        &|c: &str| caps.contains(c),
        &|name: &str, version: Option<u32>| {
            workflows
                .get(name)
                .is_some_and(|vs| version.is_none_or(|v| vs.contains(&v)))
        },
    )
}

/// Stores a checked definition under `<name>.<version>` unless that key holds
/// something else.
pub async fn put_checked(store: &kv::Store, def: &Definition) -> Result<PutOutcome, StoreError> {
    let k = def.key();
    let value = serde_json::to_vec(def).map_err(|source| StoreError::Encode {
        key: k.clone(),
        source,
    })?;
    match store.create(&k, value.into()).await {
        Ok(_) => Ok(PutOutcome::Created),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            match get_key(store, &k).await? {
                Some(existing) if existing == *def => Ok(PutOutcome::Unchanged),
                _ => Err(StoreError::VersionExists { key: k }),
            }
        }
        Err(e) => Err(StoreError::nats("storing a workflow definition", e)),
    }
}

/// Parses, checks and stores `text`.
pub async fn put(
    js: &jetstream::Context,
    text: &str,
) -> Result<(Definition, PutOutcome), StoreError> {
    let store = open(js).await?;
    let (def, _) = check_text(js, &store, text).await?;
    let outcome = put_checked(&store, &def).await?;
    Ok((def, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys split at the last dot; names may not contain one.
    #[test]
    fn keys() {
        assert_eq!(key("trip-planning", 3), "trip-planning.3");
        assert_eq!(parse_key("trip-planning.3"), Some(("trip-planning", 3)));
        assert_eq!(parse_key("nodot"), None);
        assert_eq!(parse_key("a.x"), None);
    }
}
