//! Supervised tasks: a component's long-running parts (loops, other
//! components) that must all keep running. One that fails is logged and
//! cancels the `failed` token, so the component stops as a whole (an
//! orchestrator restarts it) instead of running half-working.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::error;

/// Spawns supervised tasks on a tracker; wait on the tracker to let them end.
#[derive(Clone)]
pub struct Supervisor {
    tracker: TaskTracker,
    failed: CancellationToken,
}

impl Supervisor {
    /// Tasks go to `tracker`; the first to fail cancels `failed`.
    pub fn new(tracker: TaskTracker, failed: CancellationToken) -> Self {
        Self { tracker, failed }
    }

    /// Runs `task` named `name`: its error is logged and cancels `failed`.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let failed = self.failed.clone();
        self.tracker.spawn(async move {
            if let Err(e) = task.await {
                error!(task = name, error = %format!("{e:#}"), "supervised task failed, stopping");
                failed.cancel();
            }
        });
    }

    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }
}
