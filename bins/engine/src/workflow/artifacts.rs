//! Large values in the object store `agentry-artifacts`: step outputs (and
//! the run output) above [`INLINE_OUTPUT_LIMIT`] are stored there under
//! `runs/<run>/<slot>` and the run state keeps an [`ArtifactRef`].

use std::collections::BTreeMap;

use agentry::subject;
use agentry::workflow::state::{ArtifactRef, INLINE_OUTPUT_LIMIT, RunState};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::ids::{self, Slot};
use crate::Engine;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ArtifactError {
    /// The object store's lookup, put, get and read errors differ in type.
    #[error("object store {bucket}")]
    Store {
        bucket: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("artifact {name} is not JSON")]
    Corrupt {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

fn store_err(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ArtifactError {
    ArtifactError::Store {
        bucket: subject::ARTIFACTS_BUCKET.to_owned(),
        source: e.into(),
    }
}

pub(crate) async fn put(
    engine: &Engine,
    name: &str,
    bytes: Vec<u8>,
) -> Result<ArtifactRef, ArtifactError> {
    let store = engine
        .js
        .get_object_store(subject::ARTIFACTS_BUCKET)
        .await
        .map_err(store_err)?;
    let len = bytes.len() as u64;
    store
        .put(name, &mut bytes.as_slice())
        .await
        .map_err(store_err)?;
    Ok(ArtifactRef {
        bucket: subject::ARTIFACTS_BUCKET.to_owned(),
        name: name.to_owned(),
        bytes: len,
    })
}

pub(crate) async fn get(engine: &Engine, r: &ArtifactRef) -> Result<Value, ArtifactError> {
    let store = engine
        .js
        .get_object_store(&r.bucket)
        .await
        .map_err(store_err)?;
    let mut object = store.get(&r.name).await.map_err(store_err)?;
    let mut bytes = Vec::with_capacity(r.bytes as usize);
    object.read_to_end(&mut bytes).await.map_err(store_err)?;
    serde_json::from_slice(&bytes).map_err(|source| ArtifactError::Corrupt {
        name: r.name.clone(),
        source,
    })
}

/// The values of the run's artifacts, by slot spelling.
pub(crate) async fn resolve(
    engine: &Engine,
    run: &RunState,
) -> Result<BTreeMap<String, Value>, ArtifactError> {
    let mut out = BTreeMap::new();
    for (id, rec) in &run.steps {
        if let Some(r) = &rec.unit.output_ref {
            out.insert(id.clone(), get(engine, r).await?);
        }
        for (i, u) in rec.items.iter().enumerate() {
            if let Some(r) = &u.output_ref {
                out.insert(Slot::Item(id.clone(), i).to_string(), get(engine, r).await?);
            }
        }
    }
    Ok(out)
}

/// The serialised form of `v` when it is too large to keep inline.
fn oversized(v: &Option<Value>) -> Option<Vec<u8>> {
    let bytes = serde_json::to_vec(v.as_ref()?).ok()?;
    (bytes.len() > INLINE_OUTPUT_LIMIT).then_some(bytes)
}

/// Moves inline values above the limit into the object store.
pub(crate) async fn offload(engine: &Engine, run: &mut RunState) -> Result<(), ArtifactError> {
    let run_id = run.run_id.clone();
    for (id, rec) in run.steps.iter_mut() {
        if let Some(bytes) = oversized(&rec.unit.output) {
            rec.unit.output_ref = Some(put(engine, &ids::artifact(&run_id, id), bytes).await?);
            rec.unit.output = None;
        }
        for (i, u) in rec.items.iter_mut().enumerate() {
            if let Some(bytes) = oversized(&u.output) {
                let name = ids::artifact(&run_id, &Slot::Item(id.clone(), i).to_string());
                u.output_ref = Some(put(engine, &name, bytes).await?);
                u.output = None;
            }
        }
    }
    if let Some(bytes) = oversized(&run.output) {
        run.output_ref = Some(put(engine, &ids::artifact(&run_id, "output"), bytes).await?);
        run.output = None;
    }
    Ok(())
}
