//! The sliding-window admission rule on one key's counters (the Lua script
//! in [`super::redis_counters`] is the same computation).

use std::time::Duration;

/// Length of one fixed window.
pub(super) const WINDOW: Duration = Duration::from_secs(60);

/// One key's counters (all times in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Window {
    pub start: i64,
    pub current: u64,
    pub previous: u64,
}

/// The admission rule; the Lua script is the same computation.
/// Returns `Ok(())` and counts the request, or `Err(wait_ms)`.
pub fn admit(w: &mut Window, now: i64, window: i64, limit: u64) -> Result<(), i64> {
    if w.start == 0 && w.current == 0 && w.previous == 0 {
        w.start = now;
    }
    let mut elapsed = (now - w.start).max(0);
    if elapsed >= window {
        let k = elapsed / window;
        w.previous = if k == 1 { w.current } else { 0 };
        w.current = 0;
        w.start += k * window;
        elapsed = (now - w.start).max(0);
    }
    let left = (window - elapsed) as f64 / window as f64;
    let estimate = w.previous as f64 * left + w.current as f64;
    if estimate + 1.0 <= limit as f64 {
        w.current += 1;
        return Ok(());
    }
    Err(wait_ms(w, elapsed, window, limit))
}

/// [`admit`] over several counters at once: counts in all of them when
/// every one has room, else in none; `Err((index, wait_ms))` names the first
/// counter without room.
pub fn admit_all(ws: &mut [(&mut Window, u64)], now: i64, window: i64) -> Result<(), (usize, i64)> {
    let mut trial: Vec<Window> = ws.iter().map(|(w, _)| **w).collect();
    for (i, (t, (_, limit))) in trial.iter_mut().zip(ws.iter()).enumerate() {
        admit(t, now, window, *limit).map_err(|wait| (i, wait))?;
    }
    for ((w, _), t) in ws.iter_mut().zip(trial) {
        **w = t;
    }
    Ok(())
}

/// Time until one more request fits, from the state after a refusal.
fn wait_ms(w: &Window, elapsed: i64, window: i64, limit: u64) -> i64 {
    let (limit, window_f) = (limit as f64, window as f64);
    let wait = if w.current as f64 + 1.0 > limit {
        // Only the next window helps: there `current` becomes `previous`.
        let fraction = (1.0 - (limit - 1.0) / w.current as f64).max(0.0);
        (window - elapsed) as f64 + window_f * fraction
    } else {
        let need = window_f - (limit - w.current as f64 - 1.0) * window_f / w.previous as f64;
        need - elapsed as f64
    };
    (wait.ceil() as i64).max(1)
}
