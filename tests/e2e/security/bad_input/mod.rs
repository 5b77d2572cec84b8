//! Bad input through the real request path.

use super::*;

mod battery;
mod raw;

/// One kind of bad input: what is published, and what must come of it.
struct Bad {
    what: &'static str,
    /// Publish as admin to this subject instead of as client_acme to `agentry.requests.acme`.
    subject: Option<&'static str>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    reason: &'static str,
    /// The request id the engine can read (then a rejection result is due).
    id: Option<String>,
}

/// Binary-mode headers of a valid task request with id `id`.
fn ce(id: &str) -> Vec<(String, String)> {
    [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/bad-input"),
        ("ce-type", "io.agentry.task.requested"),
        ("ce-datacontenttype", "application/json"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn set(mut h: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    h.retain(|(k, _)| k != name);
    h.push((name.to_owned(), value.to_owned()));
    h
}

fn without(mut h: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    h.retain(|(k, _)| k != name);
    h
}

const ECHO_DATA: &[u8] = br#"{"capability":"echo","input":{}}"#;

/// A structured-mode event (JSON body) with `fields` merged over a valid request.
fn structured(id: &str, fields: Value) -> Vec<u8> {
    let mut ev = json!({"specversion": "1.0", "id": id, "source": "/bad-input",
        "type": "io.agentry.task.requested", "datacontenttype": "application/json",
        "data": {"capability": "echo", "input": {}}});
    for (k, v) in fields.as_object().unwrap() {
        if v.is_null() {
            ev.as_object_mut().unwrap().remove(k);
        } else {
            ev[k] = v.clone();
        }
    }
    serde_json::to_vec(&ev).unwrap()
}

fn structured_ct() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "application/cloudevents+json".into())]
}

fn workflow_data(name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"workflow": name, "input": {"n": 1}})).unwrap()
}

fn bad_inputs() -> Vec<Bad> {
    let id = |n: u32| format!("bad-{n:02}");
    let b = |what, headers, body: &[u8], reason, id: Option<String>| Bad {
        what,
        subject: None,
        headers,
        body: body.to_vec(),
        reason,
        id,
    };
    let mut oversized = br#"{"capability":"echo","input":{"pad":""#.to_vec();
    oversized.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 1024));
    oversized.extend(br#""}}"#);
    let mut many = ce(&id(29));
    // 3,000 headers (~35 KB): JetStream itself refuses header blocks over 64 KiB (see below).
    for i in 0..3000 {
        many.push((format!("X-P-{i}"), "v".into()));
    }
    let truncated = structured(&id(4), json!({}));
    let truncated = truncated[..truncated.len() / 2].to_vec();
    vec![
        b(
            "garbage bytes, no headers",
            vec![],
            b"\x00\xff\xfegarbage\x01\x02",
            "not_cloudevent",
            None,
        ),
        b("empty message", vec![], b"", "not_cloudevent", None),
        b(
            "plain JSON data without any CloudEvent attribute",
            vec![],
            ECHO_DATA,
            "not_cloudevent",
            None,
        ),
        b(
            "truncated structured JSON",
            structured_ct(),
            &truncated,
            "not_cloudevent",
            None,
        ),
        b(
            "structured body that is a JSON array",
            structured_ct(),
            b"[1,2,3]",
            "not_cloudevent",
            None,
        ),
        b(
            "structured content type, binary garbage body",
            structured_ct(),
            b"\xff\xd8\xff\xe0 jpeg?",
            "not_cloudevent",
            None,
        ),
        b(
            "binary mode, specversion 0.3",
            set(ce(&id(7)), "ce-specversion", "0.3"),
            ECHO_DATA,
            "bad_specversion",
            Some(id(7)),
        ),
        b(
            "structured, specversion 2.0",
            structured_ct(),
            &structured(&id(8), json!({"specversion": "2.0"})),
            "bad_specversion",
            Some(id(8)),
        ),
        b(
            "structured, specversion as a number",
            structured_ct(),
            &structured(&id(9), json!({"specversion": 1.0})),
            "bad_specversion",
            Some(id(9)),
        ),
        b(
            "binary mode, no ce-id",
            without(ce("x"), "ce-id"),
            ECHO_DATA,
            "missing_attribute",
            None,
        ),
        b(
            "binary mode, no ce-source",
            without(ce(&id(11)), "ce-source"),
            ECHO_DATA,
            "missing_attribute",
            Some(id(11)),
        ),
        b(
            "binary mode, no ce-type",
            without(ce(&id(12)), "ce-type"),
            ECHO_DATA,
            "missing_attribute",
            Some(id(12)),
        ),
        b(
            "binary mode, empty ce-source",
            set(ce(&id(13)), "ce-source", ""),
            ECHO_DATA,
            "missing_attribute",
            Some(id(13)),
        ),
        b(
            "ce-* headers without ce-specversion",
            without(ce(&id(14)), "ce-specversion"),
            ECHO_DATA,
            "missing_attribute",
            Some(id(14)),
        ),
        b(
            "structured, no id",
            structured_ct(),
            &structured("x", json!({"id": null})),
            "missing_attribute",
            None,
        ),
        b(
            "id with a dot (a subject token separator)",
            set(ce("bad.16"), "ce-id", "bad.16"),
            ECHO_DATA,
            "invalid_id",
            None,
        ),
        b(
            "id of 129 characters",
            set(ce("x"), "ce-id", &"a".repeat(129)),
            ECHO_DATA,
            "invalid_id",
            None,
        ),
        b(
            "id with a percent-encoded space",
            set(ce("x"), "ce-id", "bad%2018"),
            ECHO_DATA,
            "invalid_id",
            None,
        ),
        b(
            "unknown event type",
            set(ce(&id(19)), "ce-type", "io.agentry.nope"),
            ECHO_DATA,
            "unknown_type",
            Some(id(19)),
        ),
        b(
            "a result type sent as a request",
            set(ce(&id(20)), "ce-type", "io.agentry.task.completed"),
            ECHO_DATA,
            "unknown_type",
            Some(id(20)),
        ),
        b(
            "data without capability",
            ce(&id(21)),
            br#"{"input":{}}"#,
            "schema_invalid",
            Some(id(21)),
        ),
        b(
            "capability is a number",
            ce(&id(22)),
            br#"{"capability":7,"input":{}}"#,
            "schema_invalid",
            Some(id(22)),
        ),
        b(
            "unexpected data property",
            ce(&id(23)),
            br#"{"capability":"echo","input":{},"sudo":true}"#,
            "schema_invalid",
            Some(id(23)),
        ),
        b(
            "timeout_ms of 0",
            ce(&id(24)),
            br#"{"capability":"echo","input":{},"timeout_ms":0}"#,
            "schema_invalid",
            Some(id(24)),
        ),
        b(
            "capability breaking its pattern",
            ce(&id(25)),
            br#"{"capability":"Echo>","input":{}}"#,
            "schema_invalid",
            Some(id(25)),
        ),
        b(
            "data is not JSON although declared JSON",
            ce(&id(26)),
            br#"{"capability":"#,
            "bad_encoding",
            Some(id(26)),
        ),
        b(
            "data is text/plain",
            set(ce(&id(27)), "ce-datacontenttype", "text/plain"),
            b"hello",
            "schema_invalid",
            Some(id(27)),
        ),
        b(
            "body over 1 MiB",
            ce(&id(28)),
            &oversized,
            "too_large",
            Some(id(28)),
        ),
        b(
            "3,000 headers",
            many,
            ECHO_DATA,
            "too_many_headers",
            Some(id(29)),
        ),
        b(
            "one 20 KiB header",
            set(ce(&id(30)), "X-Big", &"b".repeat(20 * 1024)),
            ECHO_DATA,
            "too_many_headers",
            Some(id(30)),
        ),
        b(
            "percent-encoded invalid UTF-8 in ce-source",
            set(ce(&id(31)), "ce-source", "%C3%28"),
            ECHO_DATA,
            "bad_encoding",
            Some(id(31)),
        ),
        b(
            "ce-datacontenttype and Content-Type disagree",
            set(ce(&id(32)), "Content-Type", "text/plain"),
            ECHO_DATA,
            "content_type_conflict",
            Some(id(32)),
        ),
        b(
            "structured Content-Type over binary-mode headers and a data body",
            [ce(&id(33)), structured_ct()].concat(),
            ECHO_DATA,
            "missing_attribute",
            Some(id(33)),
        ),
        b(
            "ce-id given twice",
            [ce(&id(34)), vec![("ce-id".into(), "other".into())]].concat(),
            ECHO_DATA,
            "bad_encoding",
            Some(id(34)),
        ),
        b(
            "time that is not RFC 3339",
            set(ce(&id(35)), "ce-time", "yesterday"),
            ECHO_DATA,
            "bad_encoding",
            Some(id(35)),
        ),
        b(
            "extension name with an underscore",
            set(ce(&id(36)), "ce-bad_ext", "x"),
            ECHO_DATA,
            "bad_encoding",
            Some(id(36)),
        ),
        b(
            "dataschema that is not a URI",
            set(ce(&id(37)), "ce-dataschema", "::not a uri"),
            ECHO_DATA,
            "bad_encoding",
            Some(id(37)),
        ),
        b(
            "structured data_base64 that is not base64",
            structured_ct(),
            &structured(&id(38), json!({"data": null, "data_base64": "%%%"})),
            "bad_encoding",
            Some(id(38)),
        ),
        b(
            "unknown capability",
            ce(&id(39)),
            br#"{"capability":"no_such_cap","input":{}}"#,
            "unknown_capability",
            Some(id(39)),
        ),
        b(
            "workflow that does not exist",
            set(ce(&id(40)), "ce-type", "io.agentry.workflow.requested"),
            &workflow_data("no_such_flow"),
            "unknown_workflow",
            Some(id(40)),
        ),
        b(
            "signal for a run that does not exist",
            set(ce(&id(41)), "ce-type", "io.agentry.workflow.signal"),
            br#"{"run_id":"no-such-run","signal":"approve"}"#,
            "unknown_run",
            Some(id(41)),
        ),
        b(
            "cancel of a run that does not exist",
            set(ce(&id(42)), "ce-type", "io.agentry.workflow.cancel"),
            br#"{"run_id":"no-such-run"}"#,
            "unknown_run",
            Some(id(42)),
        ),
        Bad {
            what: "request subject naming no valid tenant (published by admin)",
            subject: Some("agentry.requests.acme.extra"),
            headers: ce(&id(43)),
            body: ECHO_DATA.to_vec(),
            reason: "invalid_id",
            id: None,
        },
        b(
            "workflow whose stored definition has a cycle",
            set(ce(&id(44)), "ce-type", "io.agentry.workflow.requested"),
            &workflow_data("cyclic"),
            "invalid_workflow",
            Some(id(44)),
        ),
        b(
            "workflow with a 100 KB CEL expression",
            set(ce(&id(45)), "ce-type", "io.agentry.workflow.requested"),
            &workflow_data("cel_huge"),
            "invalid_workflow",
            Some(id(45)),
        ),
        b(
            "workflow with CEL nested 200 deep",
            set(ce(&id(46)), "ce-type", "io.agentry.workflow.requested"),
            &workflow_data("cel_deep"),
            "invalid_workflow",
            Some(id(46)),
        ),
        b(
            "workflow whose stored definition is not JSON",
            set(ce(&id(47)), "ce-type", "io.agentry.workflow.requested"),
            &workflow_data("garbage_def"),
            "invalid_workflow",
            Some(id(47)),
        ),
    ]
}

/// Invalid definitions written straight into `agentry-workflows` (the KV
/// put path, bypassing `agentry workflow put`'s checks).
async fn store_invalid_workflows(admin_js: &jetstream::Context) {
    let kv = admin_js
        .get_key_value(subject::WORKFLOWS_BUCKET)
        .await
        .unwrap();
    let step = |id: &str, needs: Vec<&str>, input: Value| json!({"id": id, "capability": "echo", "needs": needs, "input": input});
    let cyclic = json!({"name": "cyclic", "version": 1, "steps": [
        step("a", vec!["c"], json!({})), step("b", vec!["a"], json!({})), step("c", vec!["b"], json!({}))]});
    let huge = vec!["input.n"; 100_000 / 10].join(" + ");
    let cel_huge = json!({"name": "cel_huge", "version": 1, "steps": [step("a", vec![], json!({"total": huge}))]});
    let deep = format!("{}input.n{}", "(".repeat(200), ")".repeat(200));
    let cel_deep =
        json!({"name": "cel_deep", "version": 1, "steps": [step("a", vec![], json!({"n": deep}))]});
    for (key, value) in [
        ("cyclic.1", serde_json::to_vec(&cyclic).unwrap()),
        ("cel_huge.1", serde_json::to_vec(&cel_huge).unwrap()),
        ("cel_deep.1", serde_json::to_vec(&cel_deep).unwrap()),
        ("garbage_def.1", b"\x00not json at all".to_vec()),
    ] {
        kv.put(key, value.into()).await.unwrap();
    }
}

/// Every DLQ entry, keyed by the stream sequence of the request it copies.
async fn dlq_by_request_seq(admin_js: &jetstream::Context) -> HashMap<u64, (String, HeaderMap)> {
    let mut st = admin_js.get_stream(subject::DLQ_STREAM).await.unwrap();
    let last = st.info().await.unwrap().state.last_sequence;
    let mut out = HashMap::new();
    for seq in 1..=last {
        if let Ok(m) = st.get_raw_message(seq).await {
            let from = m
                .headers
                .get(event::header::DLQ_SEQ)
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(0);
            out.insert(from, (m.subject.to_string(), m.headers.clone()));
        }
    }
    out
}
