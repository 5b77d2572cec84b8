//! The OTLP protobuf agentry sends, encoded by hand: a span is written to
//! bytes once, when it ends, from the values its callers lent it, and an
//! export request is those bytes behind a short header
//! (`opentelemetry/proto/trace/v1/trace.proto` and
//! `collector/trace/v1/trace_service.proto`; the schema is small and
//! stable). No message structs are built and nothing is converted on the
//! export thread. `opentelemetry-proto` decodes the output in the tests.
//!
//! The fields written (protobuf allows any order; a decoder merges a
//! message field that appears twice, so a second status's code and
//! message override the first's):
//!
//! ```text
//! ExportTraceServiceRequest { 1: ResourceSpans }
//! ResourceSpans  { 1: Resource { 1: KeyValue* }, 2: ScopeSpans }
//! ScopeSpans     { 1: InstrumentationScope { 1: name, 2: version }, 2: Span* }
//! Span           { 1: trace_id, 2: span_id, 4: parent_span_id, 5: name, 6: kind,
//!                  7: start (fixed64), 8: end (fixed64), 9: KeyValue*,
//!                  15: Status { 2: message, 3: code }, 16: flags (fixed32) }
//! KeyValue       { 1: key, 2: AnyValue { 1: string | 2: bool | 3: int64 } }
//! ```

/// Field tags (field number and wire type) of the fields written; every
/// field number below 16 fits one byte.
mod tag {
    const fn t(field: u8, wire: u8) -> u8 {
        (field << 3) | wire
    }
    const VARINT: u8 = 0;
    const I64: u8 = 1;
    const LEN: u8 = 2;
    pub const REQUEST_RESOURCE_SPANS: u8 = t(1, LEN);
    pub const RESOURCE: u8 = t(1, LEN);
    pub const SCOPE_SPANS: u8 = t(2, LEN);
    pub const RESOURCE_ATTRIBUTE: u8 = t(1, LEN);
    pub const SCOPE: u8 = t(1, LEN);
    pub const SCOPE_NAME: u8 = t(1, LEN);
    pub const SCOPE_VERSION: u8 = t(2, LEN);
    pub const SPAN: u8 = t(2, LEN);
    pub const TRACE_ID: u8 = t(1, LEN);
    pub const SPAN_ID: u8 = t(2, LEN);
    pub const PARENT_SPAN_ID: u8 = t(4, LEN);
    pub const NAME: u8 = t(5, LEN);
    pub const KIND: u8 = t(6, VARINT);
    pub const START: u8 = t(7, I64);
    pub const END: u8 = t(8, I64);
    pub const ATTRIBUTE: u8 = t(9, LEN);
    pub const STATUS: u8 = t(15, LEN);
    pub const STATUS_MESSAGE: u8 = t(2, LEN);
    pub const STATUS_CODE: u8 = t(3, VARINT);
    /// Field 16, wire type fixed32: two bytes as a varint.
    pub const FLAGS: [u8; 2] = [0x85, 0x01];
    pub const KEY: u8 = t(1, LEN);
    pub const VALUE: u8 = t(2, LEN);
    pub const STRING: u8 = t(1, LEN);
    pub const BOOL: u8 = t(2, VARINT);
    pub const INT: u8 = t(3, VARINT);
}

/// `Status.code` of a failed span (`STATUS_CODE_ERROR`).
const STATUS_ERROR: u8 = 2;
/// `Span.flags`: the W3C sampled flag, and "the parent's remoteness is known".
const FLAGS_SAMPLED_HAS_IS_REMOTE: u32 = 0x101;
/// `Span.flags`: the parent is remote.
const FLAGS_IS_REMOTE: u32 = 0x200;

pub(crate) fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(crate) const fn varint_len(v: u64) -> usize {
    // 1 byte per 7 significant bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Size of a length-delimited field with a one-byte tag and `len` bytes.
const fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Writes a length-delimited field's tag and length (the caller writes
/// the `len` bytes of its body next).
fn open(buf: &mut Vec<u8>, tag: u8, len: usize) {
    buf.push(tag);
    varint(buf, len as u64);
}

/// Text written as a protobuf string without being joined into a `String`
/// first: a `&str`, a `String`, or [`Joined`] parts.
pub trait Text {
    /// Length in bytes.
    fn text_len(&self) -> usize;
    /// Appends the bytes.
    fn write(&self, buf: &mut Vec<u8>);
}

impl Text for str {
    #[inline]
    fn text_len(&self) -> usize {
        self.len()
    }
    #[inline]
    fn write(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.as_bytes());
    }
}

impl Text for String {
    #[inline]
    fn text_len(&self) -> usize {
        self.as_str().text_len()
    }
    #[inline]
    fn write(&self, buf: &mut Vec<u8>) {
        self.as_str().write(buf);
    }
}

impl<T: Text + ?Sized> Text for &T {
    #[inline]
    fn text_len(&self) -> usize {
        (**self).text_len()
    }
    #[inline]
    fn write(&self, buf: &mut Vec<u8>) {
        (**self).write(buf);
    }
}

/// Two strings written as one (`"process "` and a subject): a span name or
/// attribute value made of a fixed word and a borrowed one, with no
/// `format!` per span.
#[derive(Clone, Copy, Debug)]
pub struct Joined<'a>(pub &'a str, pub &'a str);

impl Text for Joined<'_> {
    #[inline]
    fn text_len(&self) -> usize {
        self.0.len() + self.1.len()
    }
    #[inline]
    fn write(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.0.as_bytes());
        buf.extend_from_slice(self.1.as_bytes());
    }
}

/// An attribute value, written as an OTLP `AnyValue` straight from what
/// the caller holds: text ([`Text`]), an integer or a boolean.
pub trait AttrValue {
    /// Length of the encoded `AnyValue` body.
    fn value_len(&self) -> usize;
    /// Appends the `AnyValue` body.
    fn write_value(&self, buf: &mut Vec<u8>);
}

macro_rules! text_value {
    ($($t:ty),*) => {$(
        impl AttrValue for $t {
            #[inline]
            fn value_len(&self) -> usize {
                field_len(self.text_len())
            }
            #[inline]
            fn write_value(&self, buf: &mut Vec<u8>) {
                open(buf, tag::STRING, self.text_len());
                self.write(buf);
            }
        }
    )*};
}
text_value!(str, String, Joined<'_>);

impl AttrValue for i64 {
    #[inline]
    fn value_len(&self) -> usize {
        1 + varint_len(*self as u64)
    }
    #[inline]
    fn write_value(&self, buf: &mut Vec<u8>) {
        buf.push(tag::INT);
        // int64: negative values as their two's complement (ten bytes).
        varint(buf, *self as u64);
    }
}

impl AttrValue for bool {
    #[inline]
    fn value_len(&self) -> usize {
        2
    }
    #[inline]
    fn write_value(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&[tag::BOOL, u8::from(*self)]);
    }
}

impl<T: AttrValue + ?Sized> AttrValue for &T {
    #[inline]
    fn value_len(&self) -> usize {
        (**self).value_len()
    }
    #[inline]
    fn write_value(&self, buf: &mut Vec<u8>) {
        (**self).write_value(buf);
    }
}

/// Appends a `KeyValue` as field `field_tag`.
fn key_value(buf: &mut Vec<u8>, field_tag: u8, key: &str, value: &(impl AttrValue + ?Sized)) {
    let v = value.value_len();
    open(buf, field_tag, field_len(key.len()) + field_len(v));
    open(buf, tag::KEY, key.len());
    buf.extend_from_slice(key.as_bytes());
    open(buf, tag::VALUE, v);
    value.write_value(buf);
}

/// Appends the span's `name`.
#[inline]
pub(crate) fn name(buf: &mut Vec<u8>, name: &(impl Text + ?Sized)) {
    open(buf, tag::NAME, name.text_len());
    name.write(buf);
}

/// Appends one span attribute.
#[inline]
pub(crate) fn attribute(buf: &mut Vec<u8>, key: &str, value: &(impl AttrValue + ?Sized)) {
    key_value(buf, tag::ATTRIBUTE, key, value);
}

/// Appends an error status with `message`.
pub(crate) fn error_status(buf: &mut Vec<u8>, message: &str) {
    let body = if message.is_empty() {
        0
    } else {
        field_len(message.len())
    } + 2;
    open(buf, tag::STATUS, body);
    if !message.is_empty() {
        open(buf, tag::STATUS_MESSAGE, message.len());
        buf.extend_from_slice(message.as_bytes());
    }
    buf.extend_from_slice(&[tag::STATUS_CODE, STATUS_ERROR]);
}

/// The identity and times of an ended span: what [`finish`] appends.
pub(crate) struct Ends {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// `None` for a root span.
    pub parent: Option<[u8; 8]>,
    pub remote_parent: bool,
    /// OTLP `SpanKind` (1 internal .. 5 consumer).
    pub kind: u8,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

/// Appends the fields known when a span ends; `buf` then holds a whole
/// `Span` message body.
pub(crate) fn finish(buf: &mut Vec<u8>, e: &Ends) {
    buf.extend_from_slice(&[tag::TRACE_ID, 16]);
    buf.extend_from_slice(&e.trace_id);
    buf.extend_from_slice(&[tag::SPAN_ID, 8]);
    buf.extend_from_slice(&e.span_id);
    if let Some(p) = &e.parent {
        buf.extend_from_slice(&[tag::PARENT_SPAN_ID, 8]);
        buf.extend_from_slice(p);
    }
    buf.extend_from_slice(&[tag::KIND, e.kind]);
    buf.push(tag::START);
    buf.extend_from_slice(&e.start_unix_nano.to_le_bytes());
    buf.push(tag::END);
    buf.extend_from_slice(&e.end_unix_nano.to_le_bytes());
    let flags = FLAGS_SAMPLED_HAS_IS_REMOTE | if e.remote_parent { FLAGS_IS_REMOTE } else { 0 };
    buf.extend_from_slice(&tag::FLAGS);
    buf.extend_from_slice(&flags.to_le_bytes());
}

/// Appends one encoded span (a `Span` body from [`finish`]) to a batch:
/// the `ScopeSpans.spans` field.
#[inline]
pub(crate) fn push_span(batch: &mut Vec<u8>, span: &[u8]) {
    open(batch, tag::SPAN, span.len());
    batch.extend_from_slice(span);
}

/// The resource and scope of this process, encoded once: wraps a batch of
/// spans into an `ExportTraceServiceRequest`.
#[derive(Clone, Debug)]
pub(crate) struct Envelope {
    /// `ResourceSpans.resource`, tag included.
    resource: Vec<u8>,
    /// `ScopeSpans.scope`, tag included.
    scope: Vec<u8>,
}

impl Envelope {
    pub(crate) fn new(
        resource: &[(String, String)],
        scope_name: &str,
        scope_version: &str,
    ) -> Self {
        let mut attrs = Vec::new();
        for (k, v) in resource {
            key_value(&mut attrs, tag::RESOURCE_ATTRIBUTE, k, v.as_str());
        }
        let mut r = Vec::with_capacity(attrs.len() + 8);
        open(&mut r, tag::RESOURCE, attrs.len());
        r.extend_from_slice(&attrs);
        let mut s = Vec::new();
        open(
            &mut s,
            tag::SCOPE,
            field_len(scope_name.len()) + field_len(scope_version.len()),
        );
        open(&mut s, tag::SCOPE_NAME, scope_name.len());
        s.extend_from_slice(scope_name.as_bytes());
        open(&mut s, tag::SCOPE_VERSION, scope_version.len());
        s.extend_from_slice(scope_version.as_bytes());
        Self {
            resource: r,
            scope: s,
        }
    }

    /// The `ExportTraceServiceRequest` of a batch (spans from [`push_span`]).
    pub(crate) fn request(&self, spans: &[u8]) -> Vec<u8> {
        let scope_spans = self.scope.len() + spans.len();
        let resource_spans = self.resource.len() + field_len(scope_spans);
        let mut out = Vec::with_capacity(field_len(resource_spans));
        open(&mut out, tag::REQUEST_RESOURCE_SPANS, resource_spans);
        out.extend_from_slice(&self.resource);
        open(&mut out, tag::SCOPE_SPANS, scope_spans);
        out.extend_from_slice(&self.scope);
        out.extend_from_slice(spans);
        out
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
