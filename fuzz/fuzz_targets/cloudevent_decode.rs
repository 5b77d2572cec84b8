//! The CloudEvent <-> NATS decoder, both content modes, on arbitrary
//! headers and bodies. Input layout: header lines `name: value` separated by
//! `\n`, an empty line, then the body. Lines that are not valid UTF-8 or not
//! a valid header are skipped (the NATS client refuses them on the wire).
//! Invariants: decoding never panics, the best-effort hints never panic,
//! and an event that decodes re-encodes in both modes into something that
//! decodes to the same id, source and type.
#![no_main]

use std::str::FromStr;

use agentry::event::{self, Limits, Mode};
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use cloudevents::AttributesReader as _;
use libfuzzer_sys::fuzz_target;

fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[]),
    }
}

fn headers(block: &[u8]) -> Option<HeaderMap> {
    if block.is_empty() {
        return None;
    }
    let mut map = HeaderMap::new();
    for line in block.split(|b| *b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_str(name.trim()),
            HeaderValue::from_str(value.trim()),
        ) {
            map.append(n, v);
        }
    }
    Some(map)
}

fuzz_target!(|data: &[u8]| {
    let (block, body) = split(data);
    let headers = headers(block);
    let limits = Limits {
        max_payload: 64 * 1024,
        ..Limits::default()
    };
    let _ = event::request_id_hint(headers.as_ref(), body);
    let _ = event::source_hint(headers.as_ref(), body);
    let Ok(decoded) = event::decode(headers.as_ref(), body, &limits) else {
        return;
    };
    let unlimited = Limits {
        max_payload: usize::MAX,
        max_headers: usize::MAX,
        max_header_bytes: usize::MAX,
    };
    for mode in [Mode::Binary, Mode::Structured] {
        let Ok((h, b)) = event::encode(&decoded.event, mode) else {
            continue;
        };
        let again = match event::decode(Some(&h), &b, &unlimited) {
            Ok(a) => a,
            Err(e) => panic!("{mode:?} re-encoding of a decoded event does not decode: {e}"),
        };
        assert_eq!(again.event.id(), decoded.event.id());
        assert_eq!(again.event.source(), decoded.event.source());
        assert_eq!(again.event.ty(), decoded.event.ty());
    }
});
