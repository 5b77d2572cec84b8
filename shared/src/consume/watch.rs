//! A KV watch that stays open: reopened with backoff whenever it ends or
//! cannot be opened, until shutdown.
//!
//! [`kv`] hands over entries only. [`kv_tracked`] also says when a copy
//! built from the watch holds the bucket's current state ([`Update::Current`],
//! once the replay of a `History` watch is through) and when it may have
//! fallen behind ([`Update::Stale`], the watch was lost), for owners that
//! must know whether to trust their copy (the engine's quarantine list).

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::Delays;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// Every key's latest value first, then updates.
    History,
    /// Updates from now on.
    Now,
}

/// What a tracked watch reports.
#[derive(Debug)]
pub enum Update {
    /// A key's value (replayed or new) or its deletion.
    Entry(kv::Entry),
    /// Every entry up to the bucket's state when the watch (re)opened has
    /// been handed over: an idempotent copy built from them is current.
    Current,
    /// The watch ended or could not be opened: the copy may miss changes
    /// until the next [`Update::Current`].
    Stale,
}

/// Hands every entry of `store` to `apply` until `shutdown`. A reopened
/// `History` watch replays the latest values, so `apply` must be idempotent.
pub async fn kv(
    store: &kv::Store,
    from: From,
    shutdown: &CancellationToken,
    mut apply: impl FnMut(kv::Entry),
) {
    kv_tracked(store, from, shutdown, |update| {
        if let Update::Entry(entry) = update {
            apply(entry);
        }
    })
    .await
}

/// [`kv`], also reporting when the watch is current and when it was lost.
pub async fn kv_tracked(
    store: &kv::Store,
    from: From,
    shutdown: &CancellationToken,
    mut apply: impl FnMut(Update),
) {
    let mut delays = Delays::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = follow(store, from, &mut delays, &mut apply) => {}
        }
        apply(Update::Stale);
        if !delays.pause(shutdown).await {
            return;
        }
    }
}

/// One opened watch, until it ends or fails.
async fn follow(
    store: &kv::Store,
    from: From,
    delays: &mut Delays,
    apply: &mut impl FnMut(Update),
) {
    let opened = match from {
        From::History => store.watch_with_history(">").await,
        From::Now => store.watch_all().await,
    };
    let mut updates = match opened {
        Ok(updates) => updates,
        Err(e) => {
            warn!(bucket = %store.name, error = %e, "cannot watch, retrying");
            return;
        }
    };
    // Nothing to replay: current at once. Else the last replayed entry has
    // no more pending after it (`delta` 0).
    let mut current = match from {
        From::Now => true,
        From::History => match store.status().await {
            Ok(status) => status.values() == 0,
            Err(e) => {
                warn!(bucket = %store.name, error = %e, "cannot read bucket status, retrying");
                return;
            }
        },
    };
    if current {
        apply(Update::Current);
    }
    loop {
        match updates.next().await {
            Some(Ok(entry)) => {
                delays.reset();
                let replayed = !current && entry.delta == 0;
                apply(Update::Entry(entry));
                if replayed {
                    current = true;
                    apply(Update::Current);
                }
            }
            Some(Err(e)) => warn!(bucket = %store.name, error = %e, "watch error"),
            None => {
                warn!(bucket = %store.name, "watch ended, reopening");
                return;
            }
        }
    }
}
