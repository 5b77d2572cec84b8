//! Typed capability inputs: a `serde`-derived struct per capability,
//! decoded by [`decode`] with the JSON path of the offending value in the
//! error (`tasks[2].duration_h: invalid type: string "x", expected f64`).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::LogicError;

/// Decodes a capability input (a JSON object) into `T`; a mismatch is a
/// [`LogicError::InvalidInput`] whose message starts with the path of the
/// value that did not fit (the path is `input` when the root itself is
/// wrong). The root must be an object: serde would otherwise read a struct
/// from an array, field by position.
pub fn decode<T: DeserializeOwned>(input: &Value) -> Result<T, LogicError> {
    if !input.is_object() {
        return Err(LogicError::InvalidInput(format!(
            "input: expected an object, found {}",
            crate::kind_of(input)
        )));
    }
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let shown = if path == "." { "input" } else { path.as_str() };
        LogicError::InvalidInput(format!("{shown}: {}", e.inner()))
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        weight: f64,
    }

    fn message(e: LogicError) -> String {
        match e {
            LogicError::InvalidInput(m) => m,
            other => panic!("{other:?} is not invalid input"),
        }
    }

    #[test]
    fn errors_name_the_json_path() {
        let e = decode::<Outer>(&json!({"name": "a", "items": [{"weight": 1}, {"weight": "x"}]}))
            .unwrap_err();
        let m = message(e);
        assert!(m.starts_with("items[1].weight: invalid type"), "{m}");

        let m = message(decode::<Outer>(&json!({"items": []})).unwrap_err());
        assert!(m.contains("missing field `name`"), "{m}");

        let m = message(decode::<Outer>(&json!({"name": "a", "nme": 1})).unwrap_err());
        assert!(m.starts_with("nme: unknown field `nme`"), "{m}");

        let m = message(decode::<Outer>(&json!("x")).unwrap_err());
        assert_eq!(m, "input: expected an object, found a string");
        let m = message(decode::<Outer>(&json!(["a", []])).unwrap_err());
        assert_eq!(m, "input: expected an object, found an array");
    }

    #[test]
    fn a_fitting_input_decodes() {
        let got: Outer = decode(&json!({"name": "a", "items": [{"weight": 2.5}]})).unwrap();
        assert_eq!(got.items.len(), 1);
    }
}
