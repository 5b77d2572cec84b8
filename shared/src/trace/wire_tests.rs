//! The hand-written encoding against `opentelemetry-proto`'s generated
//! types: what [`super`] writes decodes to the span that was meant.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use prost::Message;

use super::*;

fn ends(parent: Option<[u8; 8]>, remote_parent: bool) -> Ends {
    Ends {
        trace_id: *b"0123456789abcdef",
        span_id: *b"spanid01",
        parent,
        remote_parent,
        kind: 5,
        start_unix_nano: 1_765_000_000_123_456_789,
        end_unix_nano: 1_765_000_000_987_654_321,
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(s: &str) -> Option<Value> {
    Some(Value::StringValue(s.to_owned()))
}

#[test]
fn a_span_decodes_with_every_field() {
    let mut buf = Vec::new();
    name(&mut buf, &Joined("process ", "agentry.tasks.echo"));
    attribute(&mut buf, "messaging.system", "nats");
    attribute(&mut buf, "agentry.capability", &String::from("echo"));
    attribute(
        &mut buf,
        "messaging.consumer.group.name",
        &Joined("cap-", "echo"),
    );
    attribute(&mut buf, "messaging.nats.message.delivery_count", &3i64);
    attribute(&mut buf, "negative", &-2i64);
    attribute(&mut buf, "flag", &true);
    error_status(&mut buf, "handler failed");
    finish(&mut buf, &ends(Some(*b"parent01"), true));
    let s = ProtoSpan::decode(buf.as_slice()).unwrap();
    assert_eq!(s.trace_id, b"0123456789abcdef");
    assert_eq!(s.span_id, b"spanid01");
    assert_eq!(s.parent_span_id, b"parent01");
    assert_eq!(s.name, "process agentry.tasks.echo");
    assert_eq!(s.kind, 5);
    assert_eq!(s.start_time_unix_nano, 1_765_000_000_123_456_789);
    assert_eq!(s.end_time_unix_nano, 1_765_000_000_987_654_321);
    // Sampled, parent remoteness known, parent remote.
    assert_eq!(s.flags, 0x301);
    assert!(s.trace_state.is_empty());
    assert_eq!(s.attributes.len(), 6);
    let a = &s.attributes;
    assert_eq!(attr(a, "messaging.system").cloned(), text("nats"));
    assert_eq!(attr(a, "agentry.capability").cloned(), text("echo"));
    assert_eq!(
        attr(a, "messaging.consumer.group.name").cloned(),
        text("cap-echo")
    );
    assert_eq!(
        attr(a, "messaging.nats.message.delivery_count").cloned(),
        Some(Value::IntValue(3))
    );
    assert_eq!(attr(a, "negative").cloned(), Some(Value::IntValue(-2)));
    assert_eq!(attr(a, "flag").cloned(), Some(Value::BoolValue(true)));
    let status = s.status.unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (2, "handler failed")
    );
}

#[test]
fn a_root_span_has_no_parent_and_a_local_flag() {
    let mut buf = Vec::new();
    name(&mut buf, "process agentry.requests");
    finish(&mut buf, &ends(None, false));
    let s = ProtoSpan::decode(buf.as_slice()).unwrap();
    assert!(s.parent_span_id.is_empty());
    assert_eq!(s.flags, 0x101);
    assert!(s.status.is_none());
    assert!(s.attributes.is_empty());
}

#[test]
fn a_second_status_overrides_the_first_and_an_empty_message_is_omitted() {
    let mut buf = Vec::new();
    name(&mut buf, "x");
    error_status(&mut buf, "first");
    error_status(&mut buf, "");
    finish(&mut buf, &ends(None, false));
    let status = ProtoSpan::decode(buf.as_slice()).unwrap().status.unwrap();
    assert_eq!(status.code, 2);
    // Merged: the message of the first stays unless the second sets one.
    assert_eq!(status.message, "first");
}

#[test]
fn lengths_past_one_and_two_varint_bytes() {
    for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
        let long = "a".repeat(n);
        let mut buf = Vec::new();
        name(&mut buf, &Joined(&long, "!"));
        attribute(&mut buf, "k", long.as_str());
        finish(&mut buf, &ends(None, false));
        let s = ProtoSpan::decode(buf.as_slice()).unwrap();
        assert_eq!(s.name.len(), n + 1);
        assert_eq!(
            attr(&s.attributes, "k").cloned(),
            Some(Value::StringValue(long))
        );
    }
    for v in [
        0u64,
        1,
        127,
        128,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let mut b = Vec::new();
        varint(&mut b, v);
        assert_eq!(b.len(), varint_len(v), "{v}");
    }
}

#[test]
fn a_batch_becomes_one_export_request_with_resource_and_scope() {
    let envelope = Envelope::new(
        &[
            ("service.name".into(), "agentry-engine".into()),
            ("service.version".into(), "1.2.3".into()),
        ],
        "agentry",
        "1.2.3",
    );
    let mut batch = Vec::new();
    for i in 0..300u16 {
        let mut span = Vec::new();
        name(&mut span, &Joined("step ", &i.to_string()));
        attribute(&mut span, "agentry.attempt", &i64::from(i));
        let mut e = ends(Some(*b"parent01"), false);
        e.span_id[6..].copy_from_slice(&i.to_be_bytes());
        finish(&mut span, &e);
        push_span(&mut batch, &span);
    }
    let req = ExportTraceServiceRequest::decode(envelope.request(&batch).as_slice()).unwrap();
    assert_eq!(req.resource_spans.len(), 1);
    let rs = &req.resource_spans[0];
    let resource = rs.resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name").cloned(),
        text("agentry-engine")
    );
    assert_eq!(
        attr(&resource.attributes, "service.version").cloned(),
        text("1.2.3")
    );
    assert_eq!(rs.scope_spans.len(), 1);
    let ss = &rs.scope_spans[0];
    let scope = ss.scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("agentry", "1.2.3")
    );
    assert_eq!(ss.spans.len(), 300);
    for (i, s) in ss.spans.iter().enumerate() {
        assert_eq!(s.name, format!("step {i}"));
        assert_eq!(
            usize::from(u16::from_be_bytes([s.span_id[6], s.span_id[7]])),
            i
        );
        assert_eq!(s.flags, 0x101);
        assert_eq!(
            attr(&s.attributes, "agentry.attempt").cloned(),
            Some(Value::IntValue(i as i64))
        );
    }
    // An empty batch is still a valid request.
    let empty = ExportTraceServiceRequest::decode(envelope.request(&[]).as_slice()).unwrap();
    assert!(empty.resource_spans[0].scope_spans[0].spans.is_empty());
}
