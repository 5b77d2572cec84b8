//! JSON <-> CEL values.
//!
//! Into CEL: JSON integers that fit `i64` become `int`, every other number
//! becomes `double` (integers beyond `i64` lose precision). Never `uint`:
//! CEL refuses `uint + int` (FACTS: "UInt + Int errors"), so `input.n + 1`
//! must see an `int`.
//!
//! Back to JSON: maps get string keys (`int`/`uint`/`bool` keys are written
//! in decimal / `true` / `false`), `bytes` become standard base64 strings,
//! timestamps RFC 3339 strings, durations the protobuf JSON form (`"1.5s"`),
//! optionals their value or `null`, type values their name (`"int"`). NaN
//! and infinities (and functions) have no JSON form and are errors.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value;
use cel::objects::{Key, Map, OptionalValue};

/// A CEL value that has no JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} has no JSON form")]
pub struct NotJson(pub String);

/// A JSON value as CEL sees it.
pub fn json_to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A CEL result as JSON.
pub fn cel_to_json(value: &Value) -> Result<serde_json::Value, NotJson> {
    Ok(match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::UInt(u) => serde_json::Value::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| NotJson(format!("double {f}")))?,
        Value::String(s) => serde_json::Value::String(s.as_str().to_owned()),
        Value::Bytes(b) => serde_json::Value::String(base64(b)),
        Value::List(items) => {
            serde_json::Value::Array(items.iter().map(cel_to_json).collect::<Result<_, _>>()?)
        }
        Value::Map(map) => {
            let mut out = serde_json::Map::with_capacity(map.map.len());
            for (k, v) in map.map.iter() {
                let key = match k {
                    Key::String(s) => s.as_str().to_owned(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, cel_to_json(v)?);
            }
            serde_json::Value::Object(out)
        }
        Value::Timestamp(t) => serde_json::Value::String(t.to_rfc3339()),
        Value::Duration(d) => {
            let nanos = d
                .num_nanoseconds()
                .ok_or_else(|| NotJson("a duration beyond 292 years".into()))?;
            serde_json::Value::String(duration_text(nanos))
        }
        Value::Opaque(opaque) => match opaque.downcast_ref::<OptionalValue>() {
            Some(optional) => match optional.value() {
                Some(inner) => cel_to_json(inner)?,
                None => serde_json::Value::Null,
            },
            None => opaque.json().ok_or_else(|| {
                NotJson(format!("a value of type {}", opaque.runtime_type_name()))
            })?,
        },
        other => return Err(NotJson(format!("a value of type {}", other.type_of()))),
    })
}

/// Seconds with up to nine decimals and no trailing zeros: `1.5s`, `-0.25s`, `3s`.
fn duration_text(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    let (secs, frac) = (abs / 1_000_000_000, abs % 1_000_000_000);
    if frac == 0 {
        return format!("{sign}{secs}s");
    }
    let digits = format!("{frac:09}");
    format!("{sign}{secs}.{}s", digits.trim_end_matches('0'))
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(source: &str, input: serde_json::Value) -> serde_json::Value {
        let env = super::super::cel::env();
        let program = env.compile(source).unwrap();
        let mut ctx = cel::Context::with_env(env.clone());
        ctx.add_variable_from_value("input", json_to_cel(&input));
        cel_to_json(&program.execute(&ctx).unwrap()).unwrap()
    }

    /// JSON integers are CEL ints, so arithmetic with int literals works (no uint).
    #[test]
    fn integers_are_ints() {
        assert_eq!(json_to_cel(&json!(41)), Value::Int(41));
        assert_eq!(json_to_cel(&json!(-3)), Value::Int(-3));
        assert_eq!(json_to_cel(&json!(1.5)), Value::Float(1.5));
        assert_eq!(json_to_cel(&json!(u64::MAX)), Value::Float(u64::MAX as f64));
        assert_eq!(eval("input.n + 1", json!({"n": 41})), json!(42));
        assert_eq!(eval("input.n * 2.0", json!({"n": 1.25})), json!(2.5));
        assert_eq!(eval("type(input.n) == int", json!({"n": 7})), json!(true));
    }

    /// Structures convert both ways unchanged.
    #[test]
    fn round_trip() {
        let v = json!({"a": [1, 2.5, "x", null, true, {"b": []}], "c": {}});
        assert_eq!(cel_to_json(&json_to_cel(&v)).unwrap(), v);
    }

    /// Bytes, timestamps, durations, non-string keys and optionals get their documented JSON form.
    #[test]
    fn special_values() {
        assert_eq!(eval("b'hello'", json!(null)), json!("aGVsbG8="));
        assert_eq!(
            eval("timestamp('2024-05-01T10:00:00Z')", json!(null)),
            json!("2024-05-01T10:00:00+00:00")
        );
        assert_eq!(eval("duration('90s')", json!(null)), json!("90s"));
        assert_eq!(eval("duration('1500ms')", json!(null)), json!("1.5s"));
        assert_eq!(eval("duration('-250ms')", json!(null)), json!("-0.25s"));
        assert_eq!(
            eval("{1: 'a', true: 'b'}", json!(null)),
            json!({"1": "a", "true": "b"})
        );
        assert_eq!(eval("optional.of(3)", json!(null)), json!(3));
        assert_eq!(eval("optional.none()", json!(null)), json!(null));
        assert_eq!(eval("2u", json!(null)), json!(2));
    }

    /// Values without a JSON form are errors, not silent nulls; type values become their names.
    #[test]
    fn not_json() {
        let env = super::super::cel::env();
        let ctx = cel::Context::with_env(env.clone());
        for src in ["1.0 / 0.0", "-1.0 / 0.0", "double('NaN')"] {
            let v = env.compile(src).unwrap().execute(&ctx).unwrap();
            assert!(cel_to_json(&v).is_err(), "{src}");
        }
        let v = env.compile("type(1)").unwrap().execute(&ctx).unwrap();
        assert_eq!(cel_to_json(&v).unwrap(), json!("int"));
    }

    /// base64 matches RFC 4648 test vectors.
    #[test]
    fn base64_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
