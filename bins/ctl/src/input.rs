//! JSON arguments (`--input`, `--payload`): inline JSON, `@file`, or `-`
//! (also `@-`) for standard input.

use std::io::Read;

use serde_json::Value;

use crate::exit::UsageError;

/// Where a JSON argument's text comes from.
#[derive(Debug, PartialEq, Eq)]
enum Source<'a> {
    Inline(&'a str),
    File(&'a str),
    Stdin,
}

fn source(arg: &str) -> Source<'_> {
    match arg {
        "-" | "@-" => Source::Stdin,
        _ => match arg.strip_prefix('@') {
            Some(path) => Source::File(path),
            None => Source::Inline(arg),
        },
    }
}

/// Reads and parses a JSON argument named `what` (e.g. `--input`).
pub fn read_json(arg: &str, what: &str) -> Result<Value, UsageError> {
    let text = match source(arg) {
        Source::Inline(t) => t.to_owned(),
        Source::File(path) => std::fs::read_to_string(path).map_err(|source| UsageError::Read {
            what: what.to_owned(),
            path: path.to_owned(),
            source,
        })?,
        Source::Stdin => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|source| UsageError::Read {
                    what: what.to_owned(),
                    path: "standard input".to_owned(),
                    source,
                })?;
            s
        }
    };
    serde_json::from_str(&text).map_err(|source| UsageError::Json {
        what: match source_label(arg) {
            Some(l) => format!("{what} ({l})"),
            None => what.to_owned(),
        },
        source,
    })
}

fn source_label(arg: &str) -> Option<String> {
    match source(arg) {
        Source::Inline(_) => None,
        Source::File(p) => Some(p.to_owned()),
        Source::Stdin => Some("standard input".to_owned()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is a failed assertion
mod tests {
    use super::*;

    #[test]
    fn argument_forms_are_told_apart() {
        assert_eq!(source("-"), Source::Stdin);
        assert_eq!(source("@-"), Source::Stdin);
        assert_eq!(source("@in.json"), Source::File("in.json"));
        assert_eq!(source("{\"a\":1}"), Source::Inline("{\"a\":1}"));
    }

    #[test]
    fn file_input_is_read_and_bad_json_is_a_usage_error() {
        let dir = tempfile_dir();
        let good = dir.join("good.json");
        std::fs::write(&good, r#"{"message":"hi"}"#).unwrap();
        let v = read_json(&format!("@{}", good.display()), "--input").unwrap();
        assert_eq!(v["message"], "hi");
        assert!(matches!(
            read_json("{nope", "--input"),
            Err(UsageError::Json { .. })
        ));
        assert!(matches!(
            read_json(
                &format!("@{}", dir.join("missing.json").display()),
                "--input"
            ),
            Err(UsageError::Read { .. })
        ));
        std::fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("agentry-input-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
