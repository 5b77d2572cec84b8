//! CloudEvents 1.0 <-> NATS message binding for `async-nats`, on the
//! `cloudevents-sdk` types.
//!
//! Both content modes of the CloudEvents NATS protocol binding are decoded:
//! - structured: `Content-Type: application/cloudevents+json`, the body is the
//!   JSON event format (also accepted without the header when the body is a
//!   JSON object carrying `specversion` and no `ce-*` header is present);
//! - binary: every attribute in a `ce-<name>` header (values percent-encoded),
//!   including `ce-datacontenttype`; a plain `Content-Type` is the fallback
//!   when `ce-datacontenttype` is absent, and a conflict between the two is
//!   rejected.
//!
//! Outbound events use binary mode unless structured is asked for.

use async_nats::header::IntoHeaderName;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cloudevents::event::{Data, EventBuilder, EventBuilderV10, ExtensionValue};
use cloudevents::{AttributesReader, Event};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::id::{IdError, RequestId};
use crate::reason::Reason;

pub const SPEC_VERSION: &str = "1.0";
pub const TYPE_PREFIX: &str = "io.agentry.";
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const JSON: &str = "application/json";

/// Event types (`io.agentry.*`).
pub mod types {
    pub const TASK_REQUESTED: &str = "io.agentry.task.requested";
    pub const WORKFLOW_REQUESTED: &str = "io.agentry.workflow.requested";
    pub const WORKFLOW_SIGNAL: &str = "io.agentry.workflow.signal";
    pub const WORKFLOW_CANCEL: &str = "io.agentry.workflow.cancel";
    pub const TASK_COMPLETED: &str = "io.agentry.task.completed";
    pub const TASK_FAILED: &str = "io.agentry.task.failed";
    pub const WORKFLOW_COMPLETED: &str = "io.agentry.workflow.completed";
    pub const WORKFLOW_FAILED: &str = "io.agentry.workflow.failed";
    pub const WORKFLOW_CANCELLED: &str = "io.agentry.workflow.cancelled";
    pub const WORKFLOW_TIMED_OUT: &str = "io.agentry.workflow.timed_out";
    pub const REQUEST_REJECTED: &str = "io.agentry.request.rejected";
    pub const AGENT_REGISTERED: &str = "io.agentry.agent.registered";
    pub const AGENT_HEARTBEAT: &str = "io.agentry.agent.heartbeat";
    pub const AGENT_DEREGISTERED: &str = "io.agentry.agent.deregistered";
    pub const AGENT_EXPIRED: &str = "io.agentry.agent.expired";
    pub const TASK_DEAD_LETTERED: &str = "io.agentry.task.dead_lettered";
    pub const DLQ_REPLAYED: &str = "io.agentry.dlq.replayed";
    pub const SECURITY_INCIDENT: &str = "io.agentry.security.incident";
    pub const ESCALATION_CREATED: &str = "io.agentry.escalation.created";
    pub const SOURCE_QUARANTINED: &str = "io.agentry.source.quarantined";
    pub const SOURCE_RELEASED: &str = "io.agentry.source.released";
    pub const REQUEST_ACCEPTED: &str = "io.agentry.request.accepted";
}

/// Extension attribute names used by agentry.
pub mod ext {
    /// Subject the result of a task goes to (set by the engine only).
    pub const REPLYTO: &str = "replyto";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// Original request id of a DLQ replay.
    pub const REPLAYOF: &str = "replayof";
    /// Absolute deadline of a task, milliseconds since the Unix epoch.
    pub const DEADLINE: &str = "deadline";
    /// Workflow run a step task belongs to.
    pub const RUNID: &str = "runid";
    /// Step id within the run.
    pub const STEPID: &str = "stepid";
    /// The attempt of the step (1-based) or the request.
    pub const ATTEMPT: &str = "attempt";
    /// The request id a result answers.
    pub const REQUESTID: &str = "requestid";
    /// Tenant a task or step belongs to (set by the engine only, from the
    /// subject the request arrived on; a client's own value is never trusted).
    pub const TENANT: &str = "tenant";
}

/// NATS header names outside the `ce-` namespace.
pub mod header {
    pub const MSG_ID: &str = "Nats-Msg-Id";
    pub const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
    pub const CONTENT_TYPE: &str = "Content-Type";
    pub const DLQ_REASON: &str = "Agentry-Dlq-Reason";
    pub const DLQ_DETAIL: &str = "Agentry-Dlq-Detail";
    pub const DLQ_SUBJECT: &str = "Agentry-Dlq-Subject";
    pub const DLQ_STREAM: &str = "Agentry-Dlq-Stream";
    pub const DLQ_SEQ: &str = "Agentry-Dlq-Seq";
    pub const DLQ_ATTEMPTS: &str = "Agentry-Dlq-Attempts";
    pub const DLQ_REQUEST_ID: &str = "Agentry-Dlq-Request-Id";
    pub const DLQ_SOURCE: &str = "Agentry-Dlq-Source";
    pub const DLQ_HEADERS: &str = "Agentry-Dlq-Headers";
}

/// Size and shape limits applied before anything is parsed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload: usize,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload: 1024 * 1024,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Binary,
    Structured,
}

/// Why a NATS message is not an acceptable CloudEvent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {size} bytes exceeds the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("{count} headers exceed the limit of {limit}")]
    TooManyHeaders { count: usize, limit: usize },
    #[error("{size} bytes of headers exceed the limit of {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("not a CloudEvent: {0}")]
    NotCloudEvent(String),
    #[error("required attribute `{0}` is missing")]
    MissingAttribute(&'static str),
    #[error("unsupported specversion {0:?} (only 1.0)")]
    BadSpecVersion(String),
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error("attribute `{name}` is invalid: {detail}")]
    BadAttribute { name: String, detail: String },
    #[error("bad encoding in {what}: {detail}")]
    BadEncoding { what: String, detail: String },
    #[error("ce-datacontenttype {ce:?} conflicts with Content-Type {plain:?}")]
    ContentTypeConflict { ce: String, plain: String },
    #[error("structured event JSON is invalid: {0}")]
    BadJson(String),
    #[error("data is not valid for content type {content_type}: {detail}")]
    BadData {
        content_type: String,
        detail: String,
    },
}

impl DecodeError {
    pub fn reason(&self) -> Reason {
        match self {
            Self::TooLarge { .. } => Reason::TooLarge,
            Self::TooManyHeaders { .. } | Self::HeadersTooLarge { .. } => Reason::TooManyHeaders,
            Self::NotCloudEvent(_) | Self::BadJson(_) => Reason::NotCloudevent,
            Self::MissingAttribute(_) => Reason::MissingAttribute,
            Self::BadSpecVersion(_) => Reason::BadSpecversion,
            Self::InvalidId(_) => Reason::InvalidId,
            Self::BadAttribute { .. } | Self::BadEncoding { .. } | Self::BadData { .. } => {
                Reason::BadEncoding
            }
            Self::ContentTypeConflict { .. } => Reason::ContentTypeConflict,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot serialise event: {0}")]
    Json(#[from] serde_json::Error),
}

/// A decoded event and the mode it arrived in.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub event: Event,
    pub mode: Mode,
}

/// Decodes a NATS message into a CloudEvent, checking limits first.
pub fn decode(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    limits: &Limits,
) -> Result<Decoded, DecodeError> {
    if payload.len() > limits.max_payload {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            limit: limits.max_payload,
        });
    }
    let mut content_type: Option<&str> = None;
    let mut has_ce = false;
    if let Some(headers) = headers {
        let (mut count, mut bytes) = (0usize, 0usize);
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            count += values.len();
            for v in values {
                bytes += name.len() + v.as_str().len() + 4;
            }
            if name.eq_ignore_ascii_case(header::CONTENT_TYPE) {
                content_type = values.first().map(|v| v.as_str());
            } else if is_ce_header(name) {
                has_ce = true;
            }
        }
        if count > limits.max_headers {
            return Err(DecodeError::TooManyHeaders {
                count,
                limit: limits.max_headers,
            });
        }
        if bytes > limits.max_header_bytes {
            return Err(DecodeError::HeadersTooLarge {
                size: bytes,
                limit: limits.max_header_bytes,
            });
        }
    }
    let structured_ct = content_type.is_some_and(|ct| {
        ct.as_bytes()
            .get(..23)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/cloudevents"))
    });
    if structured_ct {
        return decode_structured(payload).map(|event| Decoded {
            event,
            mode: Mode::Structured,
        });
    }
    match headers {
        Some(h) if has_ce => decode_binary(h, content_type, payload).map(|event| Decoded {
            event,
            mode: Mode::Binary,
        }),
        _ => {
            // Lenient: a JSON body carrying `specversion` is a structured event
            // published without its Content-Type (a common `nats pub` mistake).
            let looks_structured =
                payload.first() == Some(&b'{') && memchr_str(payload, b"\"specversion\"");
            if looks_structured && content_type.is_none() {
                decode_structured(payload).map(|event| Decoded {
                    event,
                    mode: Mode::Structured,
                })
            } else {
                Err(DecodeError::NotCloudEvent(
                    "no ce-specversion header and no application/cloudevents content type".into(),
                ))
            }
        }
    }
}

fn memchr_str(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn is_ce_header(name: &str) -> bool {
    name.len() > 3 && name.as_bytes()[..3].eq_ignore_ascii_case(b"ce-")
}

fn decode_header_value(name: &str, raw: &str) -> Result<String, DecodeError> {
    // A `%` that does not start a two-digit hex escape is kept literally
    // (lenient on purpose: the Python SDK sends `100% sure` unescaped).
    percent_decode_str(raw)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|e| DecodeError::BadEncoding {
            what: format!("header {name}"),
            detail: e.to_string(),
        })
}

fn decode_binary(
    headers: &HeaderMap,
    content_type: Option<&str>,
    payload: &[u8],
) -> Result<Event, DecodeError> {
    let mut attrs = Attrs::default();
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        if !is_ce_header(name) {
            continue;
        }
        let attr = name[3..].to_ascii_lowercase();
        if values.len() > 1 {
            return Err(DecodeError::BadAttribute {
                name: attr,
                detail: "header given more than once".into(),
            });
        }
        let Some(raw) = values.first() else { continue };
        let value = decode_header_value(name, raw.as_str())?;
        attrs.insert(attr, value);
    }
    let spec = attrs
        .remove("specversion")
        .ok_or(DecodeError::MissingAttribute("specversion"))?;
    if spec != SPEC_VERSION {
        return Err(DecodeError::BadSpecVersion(spec));
    }
    let ce_ct = attrs.remove("datacontenttype");
    let plain_ct = content_type.map(str::to_owned);
    let ct = match (ce_ct, plain_ct) {
        (Some(ce), Some(plain)) if !same_media_type(&ce, &plain) => {
            return Err(DecodeError::ContentTypeConflict { ce, plain });
        }
        (Some(ce), _) => Some(ce),
        (None, plain) => plain,
    };
    let data = if payload.is_empty() && ct.is_none() {
        None
    } else {
        Some(data_from_bytes(ct.as_deref(), payload)?)
    };
    build(attrs, ct, data, |_, v| Ok(ExtensionValue::String(v)))
}

fn same_media_type(a: &str, b: &str) -> bool {
    let base = |s: &str| {
        s.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    base(a) == base(b)
}

fn is_json_type(ct: Option<&str>) -> bool {
    match ct {
        None => true,
        Some(ct) => {
            let base = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            base == "application/json" || base == "text/json" || base.ends_with("+json")
        }
    }
}

fn data_from_bytes(ct: Option<&str>, payload: &[u8]) -> Result<Data, DecodeError> {
    if is_json_type(ct) {
        serde_json::from_slice::<Value>(payload)
            .map(Data::Json)
            .map_err(|e| DecodeError::BadData {
                content_type: ct.unwrap_or(JSON).to_owned(),
                detail: e.to_string(),
            })
    } else if ct.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/")) {
        String::from_utf8(payload.to_vec())
            .map(Data::String)
            .map_err(|e| DecodeError::BadData {
                content_type: ct.unwrap_or_default().to_owned(),
                detail: e.to_string(),
            })
    } else {
        Ok(Data::Binary(payload.to_vec()))
    }
}

/// Attribute name -> value while decoding: a handful of entries, so a
/// vector searched in place (no hashing, one allocation).
#[derive(Default)]
struct Attrs(Vec<(String, String)>);

impl Attrs {
    /// Sets `name`, replacing an earlier value (as a map would).
    fn insert(&mut self, name: String, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.swap_remove(i).1)
    }
}

impl IntoIterator for Attrs {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Builds an event from string attributes; `ext` converts extension values.
fn build(
    mut attrs: Attrs,
    ct: Option<String>,
    data: Option<Data>,
    ext: impl Fn(&str, String) -> Result<ExtensionValue, DecodeError>,
) -> Result<Event, DecodeError> {
    let id = attrs
        .remove("id")
        .ok_or(DecodeError::MissingAttribute("id"))?;
    RequestId::new(id.as_str())?;
    let source = attrs
        .remove("source")
        .ok_or(DecodeError::MissingAttribute("source"))?;
    if source.is_empty() {
        return Err(DecodeError::MissingAttribute("source"));
    }
    let ty = attrs
        .remove("type")
        .ok_or(DecodeError::MissingAttribute("type"))?;
    if ty.is_empty() {
        return Err(DecodeError::MissingAttribute("type"));
    }
    let mut b = EventBuilderV10::new().id(id).source(source.as_str()).ty(ty);
    if let Some(subject) = attrs.remove("subject") {
        b = b.subject(subject);
    }
    if let Some(time) = attrs.remove("time") {
        let t = DateTime::parse_from_rfc3339(&time).map_err(|e| DecodeError::BadAttribute {
            name: "time".into(),
            detail: e.to_string(),
        })?;
        b = b.time(t.with_timezone(&Utc));
    }
    let schema = attrs.remove("dataschema");
    match (data, schema) {
        (Some(d), Some(s)) => {
            let url = url_parse(&s)?;
            b = b.data_with_schema(ct.unwrap_or_else(|| JSON.into()), url, d);
        }
        (Some(d), None) => b = b.data(ct.unwrap_or_else(|| JSON.into()), d),
        (None, Some(_)) | (None, None) => {}
    }
    for (name, value) in attrs {
        if !valid_extension_name(&name) {
            return Err(DecodeError::BadAttribute {
                name,
                detail: "extension names are lower-case letters and digits".into(),
            });
        }
        let v = ext(&name, value)?;
        b = b.extension(&name, v);
    }
    b.build().map_err(|e| DecodeError::BadAttribute {
        name: "event".into(),
        detail: e.to_string(),
    })
}

fn url_parse(s: &str) -> Result<url::Url, DecodeError> {
    url::Url::parse(s).map_err(|e| DecodeError::BadAttribute {
        name: "dataschema".into(),
        detail: e.to_string(),
    })
}

fn valid_extension_name(name: &str) -> bool {
    // `data` and `data_base64` are reserved by the JSON event format.
    name != "data"
        && !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn decode_structured(payload: &[u8]) -> Result<Event, DecodeError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError::BadJson(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(DecodeError::NotCloudEvent(
            "structured body is not a JSON object".into(),
        ));
    };
    let spec = match obj.remove("specversion") {
        None => return Err(DecodeError::MissingAttribute("specversion")),
        Some(Value::String(s)) => s,
        Some(other) => return Err(DecodeError::BadSpecVersion(other.to_string())),
    };
    if spec != SPEC_VERSION {
        return Err(DecodeError::BadSpecVersion(spec));
    }
    let data = obj.remove("data");
    let data_b64 = obj.remove("data_base64");
    let mut attrs = Attrs::default();
    let mut exts: Map<String, Value> = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "id" | "source" | "type" | "subject" | "time" | "dataschema" | "datacontenttype" => {
                let Value::String(s) = v else {
                    return Err(DecodeError::BadAttribute {
                        name: k,
                        detail: "must be a string".into(),
                    });
                };
                attrs.insert(k, s);
            }
            _ => {
                exts.insert(k.clone(), v);
                attrs.insert(k, String::new());
            }
        }
    }
    let mut ct = attrs.remove("datacontenttype");
    let data = match (data, data_b64) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::BadAttribute {
                name: "data".into(),
                detail: "both data and data_base64 are present".into(),
            });
        }
        (Some(v), None) => Some(if is_json_type(ct.as_deref()) {
            Data::Json(v)
        } else if let Value::String(s) = v {
            Data::String(s)
        } else {
            return Err(DecodeError::BadData {
                content_type: ct.clone().unwrap_or_default(),
                detail: "non-JSON content type needs string data".into(),
            });
        }),
        (None, Some(Value::String(b))) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| DecodeError::BadEncoding {
                    what: "data_base64".into(),
                    detail: e.to_string(),
                })?;
            // Bytes under a JSON (or text) content type must be what it says,
            // as in binary mode; without one they are opaque bytes.
            match ct.as_deref() {
                None => {
                    ct = Some("application/octet-stream".to_owned());
                    Some(Data::Binary(bytes))
                }
                Some(c) => {
                    data_from_bytes(Some(c), &bytes)?;
                    Some(Data::Binary(bytes))
                }
            }
        }
        (None, Some(_)) => {
            return Err(DecodeError::BadAttribute {
                name: "data_base64".into(),
                detail: "must be a string".into(),
            });
        }
        (None, None) => None,
    };
    build(attrs, ct, data, |name, _| match exts.get(name) {
        Some(Value::String(s)) => Ok(ExtensionValue::String(s.clone())),
        Some(Value::Bool(b)) => Ok(ExtensionValue::Boolean(*b)),
        Some(Value::Number(n)) if n.is_i64() => {
            Ok(ExtensionValue::Integer(n.as_i64().unwrap_or(0)))
        }
        _ => Err(DecodeError::BadAttribute {
            name: name.to_owned(),
            detail: "extension values are strings, booleans or integers".into(),
        }),
    })
}

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

/// The event's data as JSON: JSON data as is, text or bytes parsed as JSON.
pub fn data_json(event: &Event) -> Result<Value, DecodeError> {
    let ct = event.datacontenttype().unwrap_or(JSON).to_owned();
    match event.data() {
        None => Ok(Value::Null),
        Some(Data::Json(v)) => Ok(v.clone()),
        Some(Data::String(s)) => serde_json::from_str(s).map_err(|e| DecodeError::BadData {
            content_type: ct,
            detail: e.to_string(),
        }),
        Some(Data::Binary(b)) => serde_json::from_slice(b).map_err(|e| DecodeError::BadData {
            content_type: ct,
            detail: e.to_string(),
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
            detail: e.to_string(),
        }),
        Some(Data::Binary(b)) => serde_json::from_slice(&b).map_err(|e| DecodeError::BadData {
            content_type: ct,
            detail: e.to_string(),
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

/// Best-effort `source` of a message that failed to decode (rate limiting and
/// probing detection still need a caller).
pub fn source_hint(headers: Option<&HeaderMap>, payload: &[u8]) -> Option<String> {
    if let Some(h) = headers {
        for (name, values) in h.iter() {
            let name: &str = name.as_ref();
            if name.eq_ignore_ascii_case("ce-source") {
                let raw = values.first()?.as_str();
                return percent_decode_str(raw)
                    .decode_utf8()
                    .ok()
                    .map(|s| s.into_owned());
            }
        }
    }
    if payload.first() == Some(&b'{') && payload.len() <= 2 * 1024 * 1024 {
        #[derive(serde::Deserialize)]
        struct SourceOnly {
            source: String,
        }
        let parsed: SourceOnly = serde_json::from_slice(payload).ok()?;
        return Some(parsed.source);
    }
    None
}

#[cfg(test)]
mod tests;
