//! Who may ask: after a request decodes, and before it is routed, the guard
//! checks its principal, (tenant, source) with the tenant taken from the
//! subject at intake: whether the principal is quarantined (KV
//! `agentry-quarantine`, written by the security monitor) and whether it is
//! over its rate limit or its tenant over the per-tenant total
//! (docs/tenancy.md).
//!
//! Quarantine is read from an in-memory copy kept current by a KV watch, so
//! the check costs no KV read per request. Until the watch has delivered the
//! bucket's current state (start-up, after a lost watch) each check reads the
//! key directly, bounded by a short timeout; a failed read admits the request
//! and logs (the quarantine fails open, the NATS outage that causes it stops
//! everything else anyway).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agentry::consume::ready::{self, ReadyError};
use agentry::consume::watch;
use agentry::error::Chain;
use agentry::quarantine::{self, QuarantineEntry};
use agentry::ratelimit::{Decision, Limiter, Scope};
use agentry::reason::Reason;
use agentry::subject;
use async_nats::jetstream::kv;
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Engine;
use crate::validate::{Accepted, Rejection};

/// Bound of a direct quarantine read while the watch is not current.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// The guard's state, held by [`Engine`].
pub(crate) struct Guard {
    pub limiter: Limiter,
    pub quarantine: Quarantine,
}

impl Guard {
    pub fn new(limiter: Limiter) -> Self {
        Self {
            limiter,
            quarantine: Quarantine::default(),
        }
    }
}

/// `None` when the request may proceed, else why not.
pub(crate) async fn check(engine: &Engine, req: &Accepted) -> Option<Rejection> {
    let reject = |reason: Reason, detail: String| req.reject(reason, detail);
    let tenant = &req.tenant;
    if let Some(q) = engine
        .guard
        .quarantine
        .lookup(tenant.as_ref(), &req.source)
        .await
    {
        let until = q
            .until
            .map(|u| format!(" until {}", u.to_rfc3339()))
            .unwrap_or_default();
        let why = if q.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", q.reason)
        };
        return Some(reject(
            Reason::Quarantined,
            format!("source {:?} is quarantined{until}{why}", clip(&req.source)),
        ));
    }
    // Counters are per principal (tenant, source), plus the tenant's total
    // over all its sources: one tenant cannot spend another's budget, nor
    // escape its own by rotating sources.
    match engine
        .guard
        .limiter
        .check_principal(tenant.as_ref().map(|t| t.as_str()), &req.source)
        .await
    {
        Decision::Admitted => None,
        Decision::Limited {
            limit,
            retry_after,
            scope,
        } => {
            let who = match (scope, tenant) {
                (Scope::Tenant, Some(t)) => format!("tenant {t} (all sources together)"),
                _ => format!("source {:?}", clip(&req.source)),
            };
            Some(reject(
                Reason::RateLimited,
                format!(
                    "{who} exceeded {limit} requests per minute; retry in {} ms",
                    retry_after.as_millis()
                ),
            ))
        }
        Decision::Unavailable(cause) => {
            Some(reject(Reason::RateLimited, Chain(&cause).to_string()))
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}

/// An in-memory copy of `agentry-quarantine` (key = [`quarantine::key`]).
#[derive(Default)]
pub(crate) struct Quarantine {
    entries: RwLock<HashMap<String, QuarantineEntry>>,
    /// The copy holds the bucket's current state.
    current: AtomicBool,
    store: RwLock<Option<kv::Store>>,
}

impl Quarantine {
    /// The quarantine in force for `source`, if any.
    pub async fn lookup(
        &self,
        tenant: Option<&subject::Tenant>,
        source: &str,
    ) -> Option<QuarantineEntry> {
        if self.current.load(Ordering::Acquire) {
            let entries = self.entries.read().ok()?;
            return entries
                .get(&quarantine::key(tenant, source))
                .filter(|e| e.in_force(Utc::now()))
                .cloned();
        }
        let store = self.store.read().ok()?.clone()?;
        match tokio::time::timeout(LOOKUP_TIMEOUT, quarantine::lookup(&store, tenant, source)).await
        {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) => {
                warn!(error = %e, "quarantine lookup failed; admitting");
                None
            }
            Err(_) => {
                warn!("quarantine lookup timed out; admitting");
                None
            }
        }
    }

    fn apply(&self, entry: &kv::Entry) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<QuarantineEntry>(&entry.value) {
                Ok(q) => {
                    entries.insert(entry.key.clone(), q);
                }
                Err(e) => {
                    warn!(key = %entry.key, error = %e, "unreadable quarantine entry ignored");
                    entries.remove(&entry.key);
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                entries.remove(&entry.key);
            }
        }
    }
}

/// Keeps [`Quarantine`] current until `shutdown`: waits for the bucket
/// (`consume::ready`), then follows it with a tracked watch
/// (`consume::watch`) that is reopened with backoff when lost (meanwhile
/// lookups read the bucket directly). Never fails.
pub(crate) async fn watch(engine: Arc<Engine>, shutdown: CancellationToken) {
    let q = &engine.guard.quarantine;
    let store = match ready::bucket(&engine.js, subject::QUARANTINE_BUCKET, &shutdown).await {
        Ok(store) => store,
        Err(ReadyError::Cancelled { .. }) => return,
        Err(e) => {
            // `ready::bucket` retries every lookup error; kept for completeness.
            warn!(error = %Chain(&e), "quarantine watch unavailable; lookups read the bucket");
            return;
        }
    };
    if let Ok(mut s) = q.store.write() {
        *s = Some(store.clone());
    }
    watch::kv_tracked(
        &store,
        watch::From::History,
        &shutdown,
        |update| match update {
            watch::Update::Entry(entry) => q.apply(&entry),
            watch::Update::Current => mark_current(q),
            watch::Update::Stale => q.current.store(false, Ordering::Release),
        },
    )
    .await
}

fn mark_current(q: &Quarantine) {
    let n = q.entries.read().map(|e| e.len()).unwrap_or(0);
    q.current.store(true, Ordering::Release);
    info!(entries = n, "quarantine list current");
}
