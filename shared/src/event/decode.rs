//! NATS message -> CloudEvent, in either content mode, limits checked first.

use async_nats::HeaderMap;
use base64::Engine as _;
use cloudevents::Event;
use cloudevents::event::{Data, EventBuilder, EventBuilderV10, ExtensionValue};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use chrono::{DateTime, Utc};

use super::error::{AttributeError, DataError, EncodingError};
use super::{DecodeError, Decoded, JSON, Limits, Mode, SPEC_VERSION, header};
use crate::id::RequestId;

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
                    "no ce-specversion header and no application/cloudevents content type",
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
            source: EncodingError::Percent(e),
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
                problem: AttributeError::Repeated,
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
                source: DataError::Json(e),
            })
    } else if ct.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/")) {
        String::from_utf8(payload.to_vec())
            .map(Data::String)
            .map_err(|e| DecodeError::BadData {
                content_type: ct.unwrap_or_default().to_owned(),
                source: DataError::Utf8(e),
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
            problem: AttributeError::Time(e),
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
                problem: AttributeError::ExtensionName,
            });
        }
        let v = ext(&name, value)?;
        b = b.extension(&name, v);
    }
    b.build().map_err(|e| DecodeError::BadAttribute {
        name: "event".into(),
        problem: AttributeError::Event(e),
    })
}

fn url_parse(s: &str) -> Result<url::Url, DecodeError> {
    url::Url::parse(s).map_err(|e| DecodeError::BadAttribute {
        name: "dataschema".into(),
        problem: AttributeError::Url(e),
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
    let value: Value = serde_json::from_slice(payload).map_err(DecodeError::BadJson)?;
    let Value::Object(mut obj) = value else {
        return Err(DecodeError::NotCloudEvent(
            "structured body is not a JSON object",
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
                        problem: AttributeError::NotString,
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
                problem: AttributeError::DataTwice,
            });
        }
        (Some(v), None) => Some(if is_json_type(ct.as_deref()) {
            Data::Json(v)
        } else if let Value::String(s) = v {
            Data::String(s)
        } else {
            return Err(DecodeError::BadData {
                content_type: ct.clone().unwrap_or_default(),
                source: DataError::NotString,
            });
        }),
        (None, Some(Value::String(b))) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| DecodeError::BadEncoding {
                    what: "data_base64".into(),
                    source: EncodingError::Base64(e),
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
                problem: AttributeError::NotString,
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
            problem: AttributeError::ExtensionValue,
        }),
    })
}
