//! Reading a decoded event (data as JSON, extensions), and best-effort hints
//! from a message that failed to decode.

use async_nats::HeaderMap;
use cloudevents::event::{Data, ExtensionValue};
use cloudevents::{AttributesReader, Event};
use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::error::DataError;
use super::{DecodeError, JSON};
use crate::id::RequestId;

/// The event's data as JSON: JSON data as is, text or bytes parsed as JSON.
pub fn data_json(event: &Event) -> Result<Value, DecodeError> {
    let ct = event.datacontenttype().unwrap_or(JSON).to_owned();
    match event.data() {
        None => Ok(Value::Null),
        Some(Data::Json(v)) => Ok(v.clone()),
        Some(Data::String(s)) => serde_json::from_str(s).map_err(|e| DecodeError::BadData {
            content_type: ct,
            source: DataError::Json(e),
        }),
        Some(Data::Binary(b)) => serde_json::from_slice(b).map_err(|e| DecodeError::BadData {
            content_type: ct,
            source: DataError::Json(e),
        }),
    }
}

/// Like [`data_json`], but moves the data out of the event (no copy of a
/// large payload); the event is left without data.
pub fn take_data_json(event: &mut Event) -> Result<Value, DecodeError> {
    let ct = event.datacontenttype().unwrap_or(JSON).to_owned();
    let (_, _, data) = event.take_data();
    match data {
        None => Ok(Value::Null),
        Some(Data::Json(v)) => Ok(v),
        Some(Data::String(s)) => serde_json::from_str(&s).map_err(|e| DecodeError::BadData {
            content_type: ct,
            source: DataError::Json(e),
        }),
        Some(Data::Binary(b)) => serde_json::from_slice(&b).map_err(|e| DecodeError::BadData {
            content_type: ct,
            source: DataError::Json(e),
        }),
    }
}

/// A string extension attribute, whatever its stored type.
pub fn ext_str(event: &Event, name: &str) -> Option<String> {
    event.extension(name).map(|v| match v {
        ExtensionValue::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// A string extension attribute borrowed from the event (`None` when
/// absent or stored as another type): no copy on hot paths.
pub fn ext_ref<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    match event.extension(name)? {
        ExtensionValue::String(s) => Some(s),
        _ => None,
    }
}

/// An integer extension attribute (binary mode carries it as a string).
pub fn ext_i64(event: &Event, name: &str) -> Option<i64> {
    match event.extension(name)? {
        ExtensionValue::Integer(i) => Some(*i),
        ExtensionValue::String(s) => s.parse().ok(),
        ExtensionValue::Boolean(_) => None,
    }
}

/// Best-effort request id of a message that failed to decode, so its sender
/// can still be told why (read from `ce-id` or a structured body's `id`).
pub fn request_id_hint(headers: Option<&HeaderMap>, payload: &[u8]) -> Option<RequestId> {
    if let Some(h) = headers {
        for (name, values) in h.iter() {
            let name: &str = name.as_ref();
            if name.eq_ignore_ascii_case("ce-id") {
                let raw = values.first()?.as_str();
                let v = percent_decode_str(raw).decode_utf8().ok()?;
                return RequestId::new(v.as_ref()).ok();
            }
        }
    }
    if payload.first() == Some(&b'{') && payload.len() <= 2 * 1024 * 1024 {
        #[derive(serde::Deserialize)]
        struct IdOnly {
            id: String,
        }
        let parsed: IdOnly = serde_json::from_slice(payload).ok()?;
        return RequestId::new(parsed.id).ok();
    }
    None
}

/// Best-effort `traceparent` of a message that failed to decode (its
/// rejection's span still joins the client's trace).
pub fn traceparent_hint(headers: Option<&HeaderMap>, payload: &[u8]) -> Option<String> {
    attribute_hint(headers, payload, "traceparent")
}

/// Best-effort `source` of a message that failed to decode (rate limiting and
/// probing detection still need a caller).
pub fn source_hint(headers: Option<&HeaderMap>, payload: &[u8]) -> Option<String> {
    attribute_hint(headers, payload, "source")
}

/// Context attribute `name` of a message that failed to decode: its
/// `ce-<name>` header, or the top-level string `<name>` of a structured
/// body (bodies over 2 MiB are not read).
fn attribute_hint(headers: Option<&HeaderMap>, payload: &[u8], name: &str) -> Option<String> {
    if let Some(h) = headers {
        let header = format!("ce-{name}");
        for (key, values) in h.iter() {
            let key: &str = key.as_ref();
            if key.eq_ignore_ascii_case(&header) {
                let raw = values.first()?.as_str();
                return percent_decode_str(raw)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned());
            }
        }
    }
    if payload.first() == Some(&b'{') && payload.len() <= 2 * 1024 * 1024 {
        let body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(payload).ok()?;
        return body.get(name)?.as_str().map(str::to_owned);
    }
    None
}
