//! How the CLI talks to a person: log level and colour on stderr, and the
//! progress line while a command waits.
//!
//! Client commands log warnings and errors only; `-v` adds info, `-vv`
//! debug, and `RUST_LOG` (when set) decides instead. `agentry up`,
//! `console` and `mcp` run services, so they log at info (`bench` does
//! not: its figures are what it prints). Colour only when stderr is a terminal and
//! `NO_COLOR` is unset or empty (no-color.org).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The log filter for a command: `RUST_LOG` wins, then `-v` counts.
pub fn filter(rust_log: Option<&str>, verbose: u8, service: bool) -> String {
    if let Some(f) = rust_log.filter(|f| !f.trim().is_empty()) {
        return f.to_owned();
    }
    let level = match (verbose, service) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        (2, _) => "debug",
        _ => "trace",
    };
    // async-nats logs every reconnect attempt at info; only -vv wants that.
    if verbose >= 2 {
        level.to_owned()
    } else {
        format!("{level},async_nats=warn")
    }
}

/// Whether stderr may carry ANSI colour.
pub fn colour(no_color: Option<&std::ffi::OsStr>, stderr_is_tty: bool) -> bool {
    stderr_is_tty && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the tracing subscriber for this process (stderr, text).
pub fn init_logging(verbose: u8, service: bool) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let env_filter =
        tracing_subscriber::EnvFilter::try_new(filter(rust_log.as_deref(), verbose, service))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = colour(
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::stderr().is_terminal(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(ansi)
        .with_target(verbose > 0)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A one-line spinner on stderr while a command waits (elapsed time, and
/// for runs the steps done of total). Drawn only on a terminal; invisible
/// (and free) otherwise.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn waiting(what: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(what.to_owned());
        Self { bar }
    }

    /// Whether the line is drawn (stderr is a terminal).
    pub fn visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// Updates the message (e.g. `run 0192…: 2 of 3 steps done`).
    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_commands_are_quiet_unless_asked() {
        assert_eq!(filter(None, 0, false), "warn,async_nats=warn");
        assert_eq!(filter(None, 1, false), "info,async_nats=warn");
        assert_eq!(filter(None, 0, true), "info,async_nats=warn");
        assert_eq!(filter(None, 2, false), "debug");
        assert_eq!(filter(Some("agentry=trace"), 0, false), "agentry=trace");
        assert_eq!(filter(Some(""), 0, false), "warn,async_nats=warn");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour(None, true));
        assert!(!colour(None, false));
        assert!(!colour(Some(std::ffi::OsStr::new("1")), true));
        assert!(colour(Some(std::ffi::OsStr::new("")), true));
    }
}
