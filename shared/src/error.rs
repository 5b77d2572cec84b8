//! Showing an error with its causes.
//!
//! Error types in agentry say what failed at their own level and keep the
//! cause as [`std::error::Error::source`] (never copied into their message),
//! so `Display` shows one level. Where the whole story has to leave the
//! process as text (a rejection's `detail`, a log line, a CLI message),
//! [`Chain`] writes every level, outermost first, separated by `: ` — the
//! same as `anyhow`'s `{:#}`.

use std::error::Error;
use std::fmt;

/// An error and its sources, `outer: cause: root cause`.
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// `Chain(e).to_string()`.
pub fn chain(e: &dyn Error) -> String {
    Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn every_level_outermost_first() {
        let e = Outer(Inner(std::io::Error::other("root")));
        assert_eq!(chain(&e), "outer: inner: root");
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
    }
}
