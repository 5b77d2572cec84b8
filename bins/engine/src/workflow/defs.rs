//! Definitions as the engine uses them: compiled once per
//! `<name>.<version>` key (stored versions never change) and shared by every
//! run of this replica. "Latest" comes from an index of stored versions kept
//! current by a watch on `agentry-workflows` (a name the index does not
//! know yet is looked up in the bucket).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use agentry::consume::watch;
use agentry::workflow::Compiled;
use agentry::workflow::store::{self, StoreError};
use async_nats::jetstream::kv;
use tokio_util::sync::CancellationToken;

pub(crate) struct Definitions {
    kv: kv::Store,
    cache: RwLock<HashMap<String, Arc<Compiled>>>,
    versions: RwLock<HashMap<String, BTreeSet<u32>>>,
}

impl Definitions {
    pub fn new(kv: kv::Store) -> Self {
        Self {
            kv,
            cache: RwLock::new(HashMap::new()),
            versions: RwLock::new(HashMap::new()),
        }
    }

    /// The compiled definition stored under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Arc<Compiled>>, StoreError> {
        if let Some(c) = self.cache.read().ok().and_then(|c| c.get(key).cloned()) {
            return Ok(Some(c));
        }
        let Some(def) = store::get_key(&self.kv, key).await? else {
            return Ok(None);
        };
        // Checked against capabilities and workflows when it was stored; a
        // child that disappeared since fails its step when it starts.
        let compiled = def
            .check(&|_: &str| true, &|_: &str, _: Option<u32>| true)
            .map_err(|e| StoreError::Corrupt {
                key: key.to_owned(),
                source: store::Unreadable::Invalid(e),
            })?;
        let compiled = Arc::new(compiled);
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(key.to_owned(), compiled.clone());
        }
        Ok(Some(compiled))
    }

    /// `name` at `version`, or its latest version: the key and the definition.
    pub async fn resolve(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<(String, Arc<Compiled>)>, StoreError> {
        let version = match version.or_else(|| self.latest_known(name)) {
            Some(v) => v,
            None => match store::latest_version(&self.kv, name).await? {
                Some(v) => v,
                None => return Ok(None),
            },
        };
        let key = store::key(name, version);
        Ok(self.get(&key).await?.map(|c| (key, c)))
    }

    fn latest_known(&self, name: &str) -> Option<u32> {
        self.versions
            .read()
            .ok()?
            .get(name)
            .and_then(|v| v.last().copied())
    }

    fn index(&self, key: &str, present: bool) {
        let Some((name, version)) = store::parse_key(key) else {
            return;
        };
        if let Ok(mut index) = self.versions.write() {
            let versions = index.entry(name.to_owned()).or_default();
            if present {
                versions.insert(version);
            } else {
                versions.remove(&version);
            }
        }
    }

    /// Keeps the version index current until shutdown (the watch is
    /// reopened when it ends).
    pub async fn watch(&self, shutdown: CancellationToken) {
        watch::kv(&self.kv, watch::From::History, &shutdown, |entry| {
            self.index(&entry.key, entry.operation == kv::Operation::Put)
        })
        .await
    }
}
