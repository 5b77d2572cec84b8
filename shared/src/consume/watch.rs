//! A KV watch that stays open: reopened with backoff whenever it ends or
//! cannot be opened, until shutdown.

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

/// Hands every entry of `store` to `apply` until `shutdown`. A reopened
/// `History` watch replays the latest values, so `apply` must be idempotent.
pub async fn kv(
    store: &kv::Store,
    from: From,
    shutdown: &CancellationToken,
    mut apply: impl FnMut(kv::Entry),
) {
    let mut delays = Delays::new();
    loop {
        let opened = match from {
            From::History => store.watch_with_history(">").await,
            From::Now => store.watch_all().await,
        };
        match opened {
            Ok(mut updates) => loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = updates.next() => match next {
                        Some(Ok(entry)) => {
                            delays.reset();
                            apply(entry);
                        }
                        Some(Err(e)) => warn!(bucket = %store.name, error = %e, "watch error"),
                        None => {
                            warn!(bucket = %store.name, "watch ended, reopening");
                            break;
                        }
                    },
                }
            },
            Err(e) => warn!(bucket = %store.name, error = %e, "cannot watch, retrying"),
        }
        if !delays.pause(shutdown).await {
            return;
        }
    }
}
