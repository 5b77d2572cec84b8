//! A field-by-field reader for JSON objects whose errors name the offending
//! path. Capability inputs use [`decode`](crate::input::decode) on a derived
//! struct; this reader is for foreign payloads read leniently, field by
//! field (the planning agent's Open-Meteo or `weather_forecast` forecast).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{LogicError, invalid};

/// A JSON kind name for error messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the fields of one JSON object, prefixing every error with the
/// object's path so the caller sees `filter[1].op: unknown variant ...`.
pub struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Checks that `value` is an object with no fields outside `allowed`.
    /// `path` is empty for the input root.
    pub fn of(value: &'a Value, path: &str, allowed: &[&str]) -> Result<Self, LogicError> {
        let shown = if path.is_empty() { "input" } else { path };
        let map = value.as_object().ok_or_else(|| {
            invalid(format!(
                "{shown}: expected an object, found {}",
                kind_of(value)
            ))
        })?;
        if let Some(unknown) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
            return Err(invalid(format!(
                "{shown}: unknown field `{unknown}` (expected one of: {})",
                allowed.join(", ")
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            map,
        })
    }

    /// The path of a field of this object.
    pub fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of a field; an explicit `null` counts as absent.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    /// An optional field, deserialized.
    pub fn opt<T: Deserialize<'a>>(&self, key: &str) -> Result<Option<T>, LogicError> {
        match self.raw(key) {
            None => Ok(None),
            Some(value) => T::deserialize(value)
                .map(Some)
                .map_err(|err| invalid(format!("{}: {err}", self.path(key)))),
        }
    }

    /// A required field, deserialized.
    pub fn req<T: Deserialize<'a>>(&self, key: &str) -> Result<T, LogicError> {
        self.opt(key)?
            .ok_or_else(|| invalid(format!("{}: required field is missing", self.path(key))))
    }

    /// An optional array field, as a slice.
    pub fn array(&self, key: &str) -> Result<Option<&'a [Value]>, LogicError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(invalid(format!(
                "{}: expected an array, found {}",
                self.path(key),
                kind_of(other)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_name_the_offending_path() {
        let value = serde_json::json!({"a": {"b": "x"}});
        let root = Fields::of(&value, "", &["a"]).unwrap();
        let inner = Fields::of(root.raw("a").unwrap(), &root.path("a"), &["b"]).unwrap();
        let err = inner.req::<f64>("b").unwrap_err();
        assert!(matches!(&err, LogicError::InvalidInput(m) if m.starts_with("a.b: invalid type")));
        let err = Fields::of(&value, "", &["z"]).err().unwrap();
        assert!(matches!(&err, LogicError::InvalidInput(m) if m.contains("unknown field `a`")));
    }
}
