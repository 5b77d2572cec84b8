use super::*;
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use cloudevents::AttributesReader;
use cloudevents::event::Data;

use crate::reason::Reason;
use proptest::prelude::*;

fn h(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(*k, *v);
    }
    m
}

fn sample() -> Event {
    let mut e = new_event(
        "req-1",
        "/tests",
        types::TASK_REQUESTED,
        serde_json::json!({"capability": "echo", "input": {"x": 1}}),
    );
    e.set_extension(
        ext::TRACEPARENT,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    e
}

#[test]
fn binary_round_trip() {
    let e = sample();
    let (headers, body) = encode(&e, Mode::Binary).unwrap();
    assert_eq!(headers.get("ce-id").map(|v| v.as_str()), Some("req-1"));
    assert!(headers.get(header::CONTENT_TYPE).is_none());
    let d = decode(Some(&headers), &body, &Limits::default()).unwrap();
    assert_eq!(d.mode, Mode::Binary);
    assert_eq!(d.event.id(), "req-1");
    assert_eq!(d.event.ty(), types::TASK_REQUESTED);
    assert_eq!(data_json(&d.event).unwrap(), data_json(&e).unwrap());
    assert_eq!(
        ext_str(&d.event, ext::TRACEPARENT),
        ext_str(&e, ext::TRACEPARENT)
    );
    assert_eq!(
        d.event.time().map(|t| t.timestamp_millis()),
        e.time().map(|t| t.timestamp_millis())
    );
}

#[test]
fn structured_round_trip() {
    let e = sample();
    let (headers, body) = encode(&e, Mode::Structured).unwrap();
    assert_eq!(
        headers.get(header::CONTENT_TYPE).map(|v| v.as_str()),
        Some(STRUCTURED_CONTENT_TYPE)
    );
    let d = decode(Some(&headers), &body, &Limits::default()).unwrap();
    assert_eq!(d.mode, Mode::Structured);
    assert_eq!(d.event.id(), "req-1");
    assert_eq!(data_json(&d.event).unwrap(), data_json(&e).unwrap());
}

#[test]
fn structured_without_content_type_is_accepted() {
    let body = br#"{"specversion":"1.0","id":"a1","source":"/cli","type":"io.agentry.task.requested","data":{"capability":"echo","input":1}}"#;
    let d = decode(None, body, &Limits::default()).unwrap();
    assert_eq!(d.mode, Mode::Structured);
}

#[test]
fn plain_content_type_is_the_binary_fallback() {
    let headers = h(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "a"),
        ("ce-source", "/x"),
        ("ce-type", "t"),
        ("Content-Type", "text/plain"),
    ]);
    let d = decode(Some(&headers), b"hello", &Limits::default()).unwrap();
    assert_eq!(d.event.datacontenttype(), Some("text/plain"));
    assert!(matches!(d.event.data(), Some(Data::String(s)) if s == "hello"));
}

#[test]
fn binary_data_round_trips_both_modes() {
    let mut e = Event::default();
    use cloudevents::AttributesWriter;
    e.set_id("b1");
    e.set_source("/bin");
    e.set_type("io.agentry.test");
    e.set_data("application/octet-stream", vec![0u8, 159, 146, 150, 255]);
    for mode in [Mode::Binary, Mode::Structured] {
        let (hd, body) = encode(&e, mode).unwrap();
        let d = decode(Some(&hd), &body, &Limits::default()).unwrap();
        assert_eq!(d.event.data(), e.data(), "{mode:?}");
    }
}

#[test]
fn percent_encoding_of_header_values() {
    let mut e = sample();
    e.set_extension("note", "größe 50% \"quoted\"");
    let (headers, body) = encode(&e, Mode::Binary).unwrap();
    let raw = headers.get("ce-note").unwrap().as_str();
    assert!(raw.is_ascii());
    assert!(!raw.contains(' ') && !raw.contains('"'));
    assert!(raw.contains("%25"));
    let d = decode(Some(&headers), &body, &Limits::default()).unwrap();
    assert_eq!(
        ext_str(&d.event, "note").as_deref(),
        Some("größe 50% \"quoted\"")
    );
}

fn ext_value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[\\PC]{0,40}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip_property(
        id in "[A-Za-z0-9_-]{1,128}",
        source in "/[a-z0-9/._-]{0,30}",
        ty in "io\\.agentry\\.[a-z]{1,10}\\.[a-z]{1,10}",
        note in ext_value(),
        subject in proptest::option::of("[\\PC]{1,20}"),
        payload in prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            "[\\PC]{0,50}".prop_map(serde_json::Value::from),
            proptest::collection::vec(any::<i32>(), 0..5).prop_map(|v| serde_json::json!(v)),
        ],
        structured in any::<bool>(),
    ) {
        let mut e = new_event(&id, &source, &ty, serde_json::json!({"v": payload}));
        e.set_extension("note", note.clone());
        if let Some(s) = &subject {
            use cloudevents::AttributesWriter;
            e.set_subject(Some(s.clone()));
        }
        let mode = if structured { Mode::Structured } else { Mode::Binary };
        let (hd, body) = encode(&e, mode).unwrap();
        let d = decode(Some(&hd), &body, &Limits::default()).unwrap();
        prop_assert_eq!(d.event.id(), id.as_str());
        prop_assert_eq!(d.event.source().to_string(), source);
        prop_assert_eq!(d.event.ty(), ty.as_str());
        prop_assert_eq!(d.event.subject(), subject.as_deref());
        prop_assert_eq!(ext_str(&d.event, "note"), Some(note));
        prop_assert_eq!(data_json(&d.event).unwrap(), data_json(&e).unwrap());
    }

    #[test]
    fn binary_bytes_property(data in proptest::collection::vec(any::<u8>(), 0..200), structured in any::<bool>()) {
        let mut e = Event::default();
        use cloudevents::AttributesWriter;
        e.set_id("x");
        e.set_source("/p");
        e.set_type("io.agentry.bytes");
        e.set_data("application/octet-stream", data.clone());
        let mode = if structured { Mode::Structured } else { Mode::Binary };
        let (hd, body) = encode(&e, mode).unwrap();
        let d = decode(Some(&hd), &body, &Limits::default()).unwrap();
        prop_assert_eq!(d.event.data(), Some(&Data::Binary(data)));
    }

    #[test]
    fn arbitrary_input_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        names in proptest::collection::vec("(ce-|Ce-|CE-)?[a-z]{1,12}", 0..6),
        values in proptest::collection::vec("[\\PC]{0,20}", 6),
        ct in proptest::option::of(prop_oneof![Just("application/cloudevents+json"), Just("application/json"), Just("text/plain")]),
    ) {
        let mut hd = HeaderMap::new();
        for (n, v) in names.iter().zip(values.iter()) {
            hd.append(n.as_str(), v.as_str());
        }
        if let Some(ct) = ct { hd.insert("Content-Type", ct); }
        let _ = decode(Some(&hd), &body, &Limits::default());
        let _ = decode(None, &body, &Limits::default());
        let _ = request_id_hint(Some(&hd), &body);
    }
}

/// Malformed messages, each mapped to its specific error.
#[test]
fn malformed_table() {
    type Check = fn(&DecodeError) -> bool;
    let ok_hdrs = |extra: &[(&str, &str)]| {
        let mut base = vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "r1"),
            ("ce-source", "/t"),
            ("ce-type", "io.agentry.task.requested"),
        ];
        base.retain(|(k, _)| !extra.iter().any(|(ek, _)| ek == k));
        base.extend_from_slice(extra);
        base.retain(|(_, v)| *v != "<drop>");
        h(&base)
    };
    let structured = h(&[("Content-Type", "application/cloudevents+json")]);
    let many: Vec<(String, String)> = (0..100)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    let mut many_hdrs = ok_hdrs(&[]);
    for (k, v) in &many {
        many_hdrs.insert(k.as_str(), v.as_str());
    }
    let mut big_hdr = ok_hdrs(&[]);
    big_hdr.insert("x-big", "a".repeat(20_000).as_str());
    let huge = vec![b' '; 2 * 1024 * 1024];
    let cases: Vec<(&str, Option<HeaderMap>, Vec<u8>, Check)> = vec![
        ("garbage, no headers", None, b"\x00\x01garbage".to_vec(), |e| matches!(e, DecodeError::NotCloudEvent(_))),
        ("empty message", None, vec![], |e| matches!(e, DecodeError::NotCloudEvent(_))),
        ("plain json without specversion", None, br#"{"id":"x"}"#.to_vec(), |e| matches!(e, DecodeError::NotCloudEvent(_))),
        ("truncated structured json", Some(structured.clone()), br#"{"specversion":"1.0","id":"#.to_vec(), |e| matches!(e, DecodeError::BadJson(_))),
        ("structured not an object", Some(structured.clone()), b"[1,2]".to_vec(), |e| matches!(e, DecodeError::NotCloudEvent(_))),
        ("structured missing specversion", Some(structured.clone()), br#"{"id":"a","source":"/s","type":"t"}"#.to_vec(), |e| matches!(e, DecodeError::MissingAttribute("specversion"))),
        ("structured specversion 0.3", Some(structured.clone()), br#"{"specversion":"0.3","id":"a","source":"/s","type":"t"}"#.to_vec(), |e| matches!(e, DecodeError::BadSpecVersion(v) if v == "0.3")),
        ("structured specversion number", Some(structured.clone()), br#"{"specversion":1.0,"id":"a","source":"/s","type":"t"}"#.to_vec(), |e| matches!(e, DecodeError::BadSpecVersion(_))),
        ("structured missing id", Some(structured.clone()), br#"{"specversion":"1.0","source":"/s","type":"t"}"#.to_vec(), |e| matches!(e, DecodeError::MissingAttribute("id"))),
        ("structured missing source", Some(structured.clone()), br#"{"specversion":"1.0","id":"a","type":"t"}"#.to_vec(), |e| matches!(e, DecodeError::MissingAttribute("source"))),
        ("structured missing type", Some(structured.clone()), br#"{"specversion":"1.0","id":"a","source":"/s"}"#.to_vec(), |e| matches!(e, DecodeError::MissingAttribute("type"))),
        ("structured id with dots", Some(structured.clone()), br#"{"specversion":"1.0","id":"a.b","source":"/s","type":"t"}"#.to_vec(), |e| matches!(e, DecodeError::InvalidId(_))),
        ("structured id not a string", Some(structured.clone()), br#"{"specversion":"1.0","id":7,"source":"/s","type":"t"}"#.to_vec(), |e| matches!(e, DecodeError::BadAttribute { name, .. } if name == "id")),
        ("structured bad time", Some(structured.clone()), br#"{"specversion":"1.0","id":"a","source":"/s","type":"t","time":"yesterday"}"#.to_vec(), |e| matches!(e, DecodeError::BadAttribute { name, .. } if name == "time")),
        ("structured bad base64", Some(structured.clone()), br#"{"specversion":"1.0","id":"a","source":"/s","type":"t","data_base64":"!!!"}"#.to_vec(), |e| matches!(e, DecodeError::BadEncoding { .. })),
        ("structured data and data_base64", Some(structured.clone()), br#"{"specversion":"1.0","id":"a","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#.to_vec(), |e| matches!(e, DecodeError::BadAttribute { name, .. } if name == "data")),
        ("structured nested extension", Some(structured.clone()), br#"{"specversion":"1.0","id":"a","source":"/s","type":"t","myext":{"a":1}}"#.to_vec(), |e| matches!(e, DecodeError::BadAttribute { name, .. } if name == "myext")),
        ("structured uppercase extension", Some(structured.clone()), br#"{"specversion":"1.0","id":"a","source":"/s","type":"t","MyExt":"x"}"#.to_vec(), |e| matches!(e, DecodeError::BadAttribute { name, .. } if name == "MyExt")),
        ("binary missing specversion", Some(ok_hdrs(&[("ce-specversion", "<drop>")])), b"{}".to_vec(), |e| matches!(e, DecodeError::MissingAttribute("specversion"))),
        ("binary specversion 2.0", Some(ok_hdrs(&[("ce-specversion", "2.0")])), b"{}".to_vec(), |e| matches!(e, DecodeError::BadSpecVersion(_))),
        ("binary missing id", Some(ok_hdrs(&[("ce-id", "<drop>")])), b"{}".to_vec(), |e| matches!(e, DecodeError::MissingAttribute("id"))),
        ("binary missing source", Some(ok_hdrs(&[("ce-source", "<drop>")])), b"{}".to_vec(), |e| matches!(e, DecodeError::MissingAttribute("source"))),
        ("binary missing type", Some(ok_hdrs(&[("ce-type", "<drop>")])), b"{}".to_vec(), |e| matches!(e, DecodeError::MissingAttribute("type"))),
        ("binary id too long", Some(ok_hdrs(&[("ce-id", &"x".repeat(129))])), b"{}".to_vec(), |e| matches!(e, DecodeError::InvalidId(_))),
        ("binary id with space (encoded)", Some(ok_hdrs(&[("ce-id", "a%20b")])), b"{}".to_vec(), |e| matches!(e, DecodeError::InvalidId(_))),
        ("binary invalid utf-8 percent-encoding", Some(ok_hdrs(&[("ce-source", "%FF%FE")])), b"{}".to_vec(), |e| matches!(e, DecodeError::BadEncoding { .. })),
        ("binary content type conflict", Some(ok_hdrs(&[("ce-datacontenttype", "application/json"), ("Content-Type", "text/plain")])), b"{}".to_vec(), |e| matches!(e, DecodeError::ContentTypeConflict { .. })),
        ("binary json data invalid", Some(ok_hdrs(&[("ce-datacontenttype", "application/json")])), b"{not json".to_vec(), |e| matches!(e, DecodeError::BadData { .. })),
        ("binary text data invalid utf-8", Some(ok_hdrs(&[("ce-datacontenttype", "text/plain")])), vec![0xff, 0xfe], |e| matches!(e, DecodeError::BadData { .. })),
        ("binary duplicate header", Some({ let mut m = ok_hdrs(&[]); m.append("ce-type", "again"); m }), b"{}".to_vec(), |e| matches!(e, DecodeError::BadAttribute { .. })),
        ("binary bad dataschema", Some(ok_hdrs(&[("ce-dataschema", "not a url")])), b"{}".to_vec(), |e| matches!(e, DecodeError::BadAttribute { name, .. } if name == "dataschema")),
        ("binary bad extension name", Some(ok_hdrs(&[("ce-my_ext", "1")])), b"{}".to_vec(), |e| matches!(e, DecodeError::BadAttribute { name, .. } if name == "my_ext")),
        ("too many headers", Some(many_hdrs), b"{}".to_vec(), |e| matches!(e, DecodeError::TooManyHeaders { .. })),
        ("headers too large", Some(big_hdr), b"{}".to_vec(), |e| matches!(e, DecodeError::HeadersTooLarge { .. })),
        ("oversized body", Some(ok_hdrs(&[])), huge, |e| matches!(e, DecodeError::TooLarge { .. })),
    ];
    assert!(cases.len() >= 20);
    for (name, headers, body, check) in cases {
        let result =
            std::panic::catch_unwind(|| decode(headers.as_ref(), &body, &Limits::default()));
        let Ok(result) = result else {
            panic!("{name}: decoder panicked")
        };
        match result {
            Ok(_) => panic!("{name}: accepted a malformed message"),
            Err(e) => assert!(check(&e), "{name}: wrong error {e:?}"),
        }
    }
}

#[test]
fn hints_from_broken_messages() {
    let hd = h(&[("ce-id", "abc"), ("ce-source", "/probe")]);
    assert_eq!(
        request_id_hint(Some(&hd), b"")
            .map(|r| r.to_string())
            .as_deref(),
        Some("abc")
    );
    assert_eq!(source_hint(Some(&hd), b"").as_deref(), Some("/probe"));
    assert_eq!(
        request_id_hint(None, br#"{"id":"zz","specversion":"9"}"#)
            .map(|r| r.to_string())
            .as_deref(),
        Some("zz")
    );
    assert!(request_id_hint(None, b"garbage").is_none());
    assert!(request_id_hint(None, br#"{"id":"bad id"}"#).is_none());
}

#[test]
fn reasons_map() {
    assert_eq!(
        DecodeError::MissingAttribute("id").reason(),
        Reason::MissingAttribute
    );
    assert_eq!(
        DecodeError::TooLarge { size: 2, limit: 1 }.reason(),
        Reason::TooLarge
    );
    assert_eq!(
        DecodeError::BadJson(serde_json::from_str::<serde_json::Value>("x").unwrap_err()).reason(),
        Reason::NotCloudevent
    );
}

/// A rejection's detail keeps the cause: the chain names what was wrong and why.
#[test]
fn decode_error_keeps_its_cause() {
    let headers = h(&[
        ("ce-specversion", "1.0"),
        ("ce-id", "a"),
        ("ce-source", "/s"),
        ("ce-type", "t"),
        ("ce-time", "yesterday"),
    ]);
    let e = decode(Some(&headers), b"{}", &Limits::default()).unwrap_err();
    assert!(matches!(
        &e,
        DecodeError::BadAttribute { name, problem: AttributeError::Time(_) } if name == "time"
    ));
    let text = crate::error::chain(&e);
    assert!(
        text.starts_with("attribute `time` is invalid: not an RFC 3339 time: "),
        "{text}"
    );
}

/// `Outbound` writes exactly the headers and body `encode` writes for the same event.
#[test]
fn outbound_matches_encode() {
    use cloudevents::AttributesWriter;
    let time = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
        .unwrap()
        .with_timezone(&Utc);
    let data = serde_json::json!({"request_id": "r 1", "output": {"n": [1, 2.5, "x"]}});
    let mut e = new_event(
        "id-1",
        "/agents/echo 1",
        types::TASK_COMPLETED,
        data.clone(),
    );
    e.set_time(Some(time));
    e.set_extension(ext::REQUESTID, "r%1");
    e.set_extension(ext::ATTEMPT, "2");
    let (want_h, want_b) = encode(&e, Mode::Binary).unwrap();
    let mut out = Outbound::at("id-1", "/agents/echo 1", types::TASK_COMPLETED, time);
    out.extension(ext::REQUESTID, "r%1")
        .extension(ext::ATTEMPT, "2");
    let (got_h, got_b) = out.finish(&data).unwrap();
    assert_eq!(got_b, want_b);
    let sorted = |h: &HeaderMap| {
        let mut v: Vec<(String, Vec<String>)> = h
            .iter()
            .map(|(k, vs)| {
                let k: &str = k.as_ref();
                (
                    k.to_owned(),
                    vs.iter().map(|v| v.as_str().to_owned()).collect(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&got_h), sorted(&want_h));
    assert_eq!(
        got_h.get("ce-source").map(|v| v.as_str()),
        Some("/agents/echo%201")
    );
    let d = decode(Some(&got_h), &got_b, &Limits::default()).unwrap();
    assert_eq!(d.event.time(), Some(&time));
    assert_eq!(ext_str(&d.event, ext::REQUESTID).as_deref(), Some("r%1"));
}

/// `take_data_json` yields what `data_json` reads, and leaves no data behind.
#[test]
fn take_data_json_moves_the_data() {
    let mut e = sample();
    let want = data_json(&e).unwrap();
    assert_eq!(take_data_json(&mut e).unwrap(), want);
    assert!(e.data().is_none());
    assert_eq!(take_data_json(&mut e).unwrap(), serde_json::Value::Null);
}
