//! Fuzzing regressions (`scripts/fuzz.sh`; inputs from `fuzz/artifacts/`).

use super::*;

/// The fuzz invariant of `cloudevent_decode` for one input: the decoder
/// refuses it, or its re-encoding in both modes decodes again.
fn decode_roundtrip_holds(input: &[u8]) -> Result<(), String> {
    let (block, body) = match input.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&input[..i], &input[i + 2..]),
        None => (input, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in block.split(|b| *b == b'\n') {
        if let Some((n, v)) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.split_once(':'))
            && let (Ok(n), Ok(v)) = (
                n.trim().parse::<async_nats::HeaderName>(),
                v.trim().parse::<async_nats::HeaderValue>(),
            )
        {
            headers.append(n, v);
        }
    }
    let headers = (!block.is_empty()).then_some(headers);
    let Ok(decoded) = event::decode(headers.as_ref(), body, &event::Limits::default()) else {
        return Ok(());
    };
    for mode in [Mode::Binary, Mode::Structured] {
        let (h, b) = event::encode(&decoded.event, mode).map_err(|e| e.to_string())?;
        event::decode(Some(&h), &b, &event::Limits::default())
            .map_err(|e| format!("{mode:?} re-encoding does not decode: {e}"))?;
    }
    Ok(())
}

/// Fuzz crash cloudevent_decode 399fa4eb: a structured event whose `data_base64` is not JSON while its content type is (absent means application/json) must be refused, as binary mode refuses non-JSON data under a JSON content type.
#[test]
fn fuzz_regression_data_base64_contradicting_json() {
    use base64::Engine as _;
    let input = base64::engine::general_purpose::STANDARD
        .decode("Cgp7InNwZWN2ZXJzaW9uIjoiMS4wIiwiaWQiOiJyMyIsInNvdXJjZSI6Ii94IiwidHlwZSI6ImlvLmFnZW50cnkud29ya2Zsb3cucmVxdWVzdGVkIiwidGltZSI6IjIwMjYtMDEtMDFUMDA6MDA6MDBaIiwiZGF0YV9iYXNlNjQiOiJleUozYjNKclpteXZkeUk2SW5jaUxDSnBibkIxZENJNmUzMTkifQ==")
        .unwrap();
    decode_roundtrip_holds(&input).unwrap();
}

/// Fuzz crash cloudevent_decode 053b30b0: a binary-mode header `ce-data` must not become an extension named `data`, which the structured format cannot carry beside the event's data (CloudEvents reserves it).
#[test]
fn fuzz_regression_extension_named_data() {
    use base64::Engine as _;
    let input = base64::engine::general_purpose::STANDARD
        .decode("Y2Utc3BlY3ZlcnNpb246IDEuMApjZS1pZDogcjQKY2Utc291cmNlOiAvJUNpZEE5CmNlLXR5cGU6IGlvLmFnZW50cnkudGFzay5yZXF1ZXN0ZWQKQ29udGVudC1UeXBlOiB0ZXh0aW9uImluOyBjaGFycwoAAAAAAAAACmNlLWRhdGE6IGx0dHBzOi8vYWdlInNwZWN2ZXJzaW9uIm9uCgpoZWxsbw==")
        .unwrap();
    decode_roundtrip_holds(&input).unwrap();
}

/// Fuzz crash cloudevent_decode ea3e6b0e: a Content-Type header whose byte 23 falls inside a multi-byte character made the decoder panic (`ct[..23]` in shared/src/event/decode.rs) instead of rejecting or decoding.
#[test]
fn fuzz_regression_content_type_char_boundary() {
    use base64::Engine as _;
    let input = base64::engine::general_purpose::STANDARD
        .decode("Y2Utc3AmZWN2ZXJzaW9uOiAxLjAKY2UtaWQ6IHI0CmNlLXNvdXJjZTogLyVDMiVBOQpjZS10eXBlOiBpby5hZ2VudHJ5LnRhc2sucmVxdWVzdGVkCkNvbnRlbnQtVHlwZTogdGVhOiBodHRwczovL2FnZW50cnl2ZMqa0YwuanNvbgoKaGVsbG8=")
        .unwrap();
    let outcome = std::panic::catch_unwind(|| decode_roundtrip_holds(&input));
    assert!(outcome.is_ok(), "the decoder panicked");
    outcome.unwrap().unwrap();
    // The short form a client can send: 22 ASCII bytes, then 'é'.
    let mut h = HeaderMap::new();
    h.insert("ce-specversion", "1.0");
    h.insert("ce-id", "r1");
    h.insert("ce-source", "/x");
    h.insert("ce-type", "io.agentry.task.requested");
    h.insert("Content-Type", "application/cloudevent\u{e9}+json");
    let res = std::panic::catch_unwind(|| {
        event::decode(Some(&h), b"{}", &event::Limits::default()).is_ok()
    });
    assert!(res.is_ok(), "the decoder panicked");
}
