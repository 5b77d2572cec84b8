//! W3C trace context (`traceparent`) as it travels in the CloudEvent
//! `traceparent` extension: parsing, formatting, child contexts and the
//! deterministic span ids of spans recorded after the fact.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceId};

/// The trace context of one span: what a `traceparent` header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The `sampled` flag: the caller records this trace.
    pub sampled: bool,
}

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
const LEN: usize = 55;

impl TraceParent {
    /// Parses a W3C `traceparent`. Version `00` must be exactly 55
    /// characters; a later version may append fields (kept compatible as
    /// the specification asks); `ff`, upper-case hex, all-zero ids and
    /// anything malformed read as `None` (the hop starts a new trace).
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let b = header.as_bytes();
        if b.len() < LEN || (b.len() > LEN && (b[LEN] != b'-' || header.starts_with("00"))) {
            return None;
        }
        let (version, trace, span, flags) = (
            &header[0..2],
            &header[3..35],
            &header[36..52],
            &header[53..55],
        );
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' || version == "ff" {
            return None;
        }
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        };
        if ![version, trace, span, flags].iter().all(|s| lower_hex(s)) {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok()?;
        let span_id = SpanId::from_hex(span).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The same trace with `span_id` as the current span.
    pub fn child(&self, span_id: SpanId) -> Self {
        Self { span_id, ..*self }
    }

    /// The `traceparent` header value (version 00). Written byte by byte
    /// into one allocation: it is built for every span that propagates
    /// (twice per routed task in the engine), and `format!` with the ids'
    /// hex `Display` cost several times as many instructions.
    pub fn header(&self) -> String {
        let mut out = Vec::with_capacity(LEN);
        push_hex(&mut out, &[0]);
        out.push(b'-');
        push_hex(&mut out, &self.trace_id.to_bytes());
        out.push(b'-');
        push_hex(&mut out, &self.span_id.to_bytes());
        out.push(b'-');
        push_hex(&mut out, &[u8::from(self.sampled)]);
        // Only ASCII hex digits and dashes were written.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Appends `bytes` as lower-case hex.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header())
    }
}

/// A fresh random span id (never the invalid all-zero one).
pub fn new_span_id() -> SpanId {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return SpanId::from_bytes(id.to_be_bytes());
        }
    }
}

/// A fresh random trace id (never the invalid all-zero one).
pub fn new_trace_id() -> TraceId {
    loop {
        let id = rand::random::<u128>();
        if id != 0 {
            return TraceId::from_bytes(id.to_be_bytes());
        }
    }
}

/// The span id of a span whose identity is known before it is recorded
/// (a workflow run, one step attempt): FNV-1a over the trace id and `key`.
/// Every engine replica derives the same id, so the step task can carry
/// its step span as parent long before that span ends, with no state kept.
pub fn derived_span_id(trace_id: TraceId, key: &str) -> SpanId {
    derived_span_id_of(trace_id, &[key])
}

/// [`derived_span_id`] of the key made of `parts` in order (the same id
/// as of their concatenation, without building it).
pub fn derived_span_id_of(trace_id: TraceId, parts: &[&str]) -> SpanId {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let key = parts.iter().flat_map(|p| p.as_bytes());
    for byte in trace_id.to_bytes().iter().chain(key) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(PRIME);
    }
    SpanId::from_bytes(h.max(1).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_round_trip() {
        let tp = TraceParent::parse(TP).unwrap();
        assert!(tp.sampled);
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(tp.header(), TP);
        let unsampled = TraceParent::parse(&TP.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
        assert_eq!(unsampled.header(), TP.replace("-01", "-00"));
        assert_eq!(unsampled.to_string(), unsampled.header());
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more")
                .is_some()
        );
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let t = TraceParent::parse(TP).unwrap().trace_id;
        assert_eq!(derived_span_id(t, "acme.r1"), derived_span_id(t, "acme.r1"));
        assert_ne!(derived_span_id(t, "acme.r1"), derived_span_id(t, "acme.r2"));
        assert_ne!(derived_span_id(t, "acme.r1"), SpanId::INVALID);
        assert_eq!(
            derived_span_id_of(t, &["step/", "acme.r1", "/", "a"]),
            derived_span_id(t, "step/acme.r1/a")
        );
        let other = new_trace_id();
        assert_ne!(derived_span_id(t, "x"), derived_span_id(other, "x"));
    }
}
