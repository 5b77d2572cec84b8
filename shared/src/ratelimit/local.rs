//! Counters in this process: no Redis configured, or Redis down with
//! [`FailMode::Open`](super::FailMode::Open).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::window::{WINDOW, Window, admit_all};
use super::{Counter, Decision};

/// In-process keys beyond which idle entries are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// Counters in this process (no Redis, or Redis down with `open`).
#[derive(Debug, Default)]
pub(super) struct Local {
    windows: Mutex<HashMap<String, Window>>,
    epoch: Option<Instant>,
}

impl Local {
    pub(super) fn new() -> Self {
        Self {
            windows: Mutex::new(HashMap::new()),
            epoch: Some(Instant::now()),
        }
    }

    pub(super) fn check(&self, counters: &[Counter]) -> Decision {
        let window = WINDOW.as_millis() as i64;
        // Milliseconds since start-up, offset by 1 so that 0 means "fresh".
        let now = self
            .epoch
            .map(|e| e.elapsed().as_millis() as i64 + 1)
            .unwrap_or(1);
        let Ok(mut map) = self.windows.lock() else {
            // A poisoned lock means a panic elsewhere while counting: admit.
            return Decision::Admitted;
        };
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, w| now - w.start < 2 * window);
        }
        let mut windows: Vec<Window> = counters
            .iter()
            .map(|c| map.get(&c.key).copied().unwrap_or_default())
            .collect();
        let mut refs: Vec<(&mut Window, u64)> = windows
            .iter_mut()
            .zip(counters)
            .map(|(w, c)| (w, u64::from(c.limit)))
            .collect();
        match admit_all(&mut refs, now, window) {
            Ok(()) => {
                for (c, w) in counters.iter().zip(windows) {
                    map.insert(c.key.clone(), w);
                }
                Decision::Admitted
            }
            Err((i, wait)) => Decision::Limited {
                limit: counters[i].limit,
                retry_after: Duration::from_millis(wait as u64),
                scope: counters[i].scope,
            },
        }
    }
}
