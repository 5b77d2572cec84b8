//! CloudEvent -> NATS message: [`encode`] for a whole [`Event`], and
//! [`Outbound`] for hot paths that write the headers directly.

use async_nats::header::IntoHeaderName;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cloudevents::event::Data;
use cloudevents::{AttributesReader, Event};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value;

use super::{EncodeError, JSON, Mode, SPEC_VERSION, STRUCTURED_CONTENT_TYPE, ext, header};

/// Characters percent-encoded in binary-mode header values: space, `"`, `%`
/// and anything outside U+0021..U+007E (non-ASCII is always encoded).
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%').add(0x7f);

/// A header value, percent-encoded only when it has to be (the common case
/// of plain ASCII ids, types and sources is copied as is).
fn header_value(v: &str) -> std::borrow::Cow<'_, str> {
    if v.bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%')
    {
        std::borrow::Cow::Borrowed(v)
    } else {
        std::borrow::Cow::Owned(utf8_percent_encode(v, HEADER_VALUE).to_string())
    }
}

/// `ce-<name>` without formatting for the attributes every event has.
fn ce_header(name: &str) -> std::borrow::Cow<'static, str> {
    match name {
        "specversion" => "ce-specversion".into(),
        "id" => "ce-id".into(),
        "source" => "ce-source".into(),
        "type" => "ce-type".into(),
        "datacontenttype" => "ce-datacontenttype".into(),
        "dataschema" => "ce-dataschema".into(),
        "subject" => "ce-subject".into(),
        "time" => "ce-time".into(),
        other => format!("ce-{other}").into(),
    }
}

/// `ce-<name>` as a header name; the attributes and extensions agentry sets
/// are static names (no validation, no allocation).
fn ce_name(name: &str) -> HeaderName {
    match name {
        "specversion" => HeaderName::from_static("ce-specversion"),
        "id" => HeaderName::from_static("ce-id"),
        "source" => HeaderName::from_static("ce-source"),
        "type" => HeaderName::from_static("ce-type"),
        "datacontenttype" => HeaderName::from_static("ce-datacontenttype"),
        "time" => HeaderName::from_static("ce-time"),
        ext::REPLYTO => HeaderName::from_static("ce-replyto"),
        ext::TRACEPARENT => HeaderName::from_static("ce-traceparent"),
        ext::DEADLINE => HeaderName::from_static("ce-deadline"),
        ext::RUNID => HeaderName::from_static("ce-runid"),
        ext::STEPID => HeaderName::from_static("ce-stepid"),
        ext::ATTEMPT => HeaderName::from_static("ce-attempt"),
        ext::REQUESTID => HeaderName::from_static("ce-requestid"),
        ext::TENANT => HeaderName::from_static("ce-tenant"),
        other => format!("ce-{other}").into_header_name(),
    }
}

/// A header value as [`header_value`] spells it, without copying when it
/// had to be encoded.
fn ce_value(v: &str) -> HeaderValue {
    match header_value(v) {
        std::borrow::Cow::Borrowed(b) => HeaderValue::from(b),
        std::borrow::Cow::Owned(o) => HeaderValue::from(o),
    }
}

/// Encodes an event as a NATS message in the given mode.
pub fn encode(event: &Event, mode: Mode) -> Result<(HeaderMap, Bytes), EncodeError> {
    let mut headers = HeaderMap::new();
    match mode {
        Mode::Structured => {
            headers.insert(header::CONTENT_TYPE, STRUCTURED_CONTENT_TYPE);
            let body = serde_json::to_vec(event)?;
            Ok((headers, Bytes::from(body)))
        }
        Mode::Binary => {
            for (name, value) in event.iter() {
                let text = if name == "time" {
                    event
                        .time()
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| value.to_string())
                } else {
                    value.to_string()
                };
                headers.insert(ce_header(name).as_ref(), header_value(&text).as_ref());
            }
            let body = match event.data() {
                None => Bytes::new(),
                Some(Data::Json(v)) => Bytes::from(serde_json::to_vec(v)?),
                Some(Data::String(s)) => Bytes::from(s.clone().into_bytes()),
                Some(Data::Binary(b)) => Bytes::from(b.clone()),
            };
            Ok((headers, body))
        }
    }
}

/// Sets (or replaces) extension `name` on a binary-mode message's headers,
/// for forwarding a decoded message without re-encoding it.
pub fn set_binary_extension(headers: &mut HeaderMap, name: &str, value: &str) {
    headers.insert(ce_name(name), ce_value(value));
}

/// An outbound binary-mode event written straight into NATS headers, with
/// no intermediate [`Event`]: the headers [`encode`] writes in
/// [`Mode::Binary`] for an event made by [`new_event`] (JSON data, a time)
/// plus its extensions, for hot paths that publish one event per message.
#[derive(Debug)]
pub struct Outbound {
    headers: HeaderMap,
}

impl Outbound {
    /// An event stamped with the current time.
    pub fn new(id: &str, source: &str, ty: &str) -> Self {
        Self::at(id, source, ty, Utc::now())
    }

    /// An event stamped with `time`.
    pub fn at(id: &str, source: &str, ty: &str, time: DateTime<Utc>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(ce_name("specversion"), SPEC_VERSION);
        headers.insert(ce_name("id"), ce_value(id));
        headers.insert(ce_name("source"), ce_value(source));
        headers.insert(ce_name("type"), ce_value(ty));
        headers.insert(ce_name("datacontenttype"), JSON);
        headers.insert(ce_name("time"), time.to_rfc3339());
        Self { headers }
    }

    /// Sets extension attribute `name` (a valid extension name).
    pub fn extension(&mut self, name: &str, value: &str) -> &mut Self {
        set_binary_extension(&mut self.headers, name, value);
        self
    }

    /// Sets a NATS header outside the `ce-` namespace (e.g. [`header::MSG_ID`]).
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.headers.insert(name, value);
        self
    }

    /// The headers and the JSON body `data`.
    pub fn finish(
        self,
        data: &(impl serde::Serialize + ?Sized),
    ) -> Result<(HeaderMap, Bytes), EncodeError> {
        Ok((self.headers, Bytes::from(serde_json::to_vec(data)?)))
    }
}

/// A new agentry event with JSON data and the current time.
pub fn new_event(id: &str, source: &str, ty: &str, data: Value) -> Event {
    let mut e = Event::default();
    use cloudevents::AttributesWriter;
    e.set_id(id);
    e.set_source(source);
    e.set_type(ty);
    e.set_time(Some(Utc::now()));
    e.set_data(JSON, data);
    e
}
