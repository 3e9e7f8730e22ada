//! ETags, If-None-Match and If-Match with arbitrary headers and bodies: never panics; a
//! conditional answer is 200, 304 or 412 and a 304 carries the ETag.
#![no_main]

#[path = "common.rs"]
mod common;

use axum::http::{HeaderMap, StatusCode, header};
use kyros::http::conditional::{check_if_match, respond_conditionally};
use kyros::orchestrator::etag;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::json!({"raw": String::from_utf8_lossy(body)}));
    let tag = etag::etag(&value);
    // The Python-compatible serialisation is deterministic.
    assert_eq!(tag, etag::etag(&value));
    let text = String::from_utf8_lossy(head);
    let _ = etag::matches(&text, &tag);
    assert!(etag::matches(&tag, &tag));
    let mut headers = HeaderMap::new();
    if let Some(v) = common::header_value(head) {
        headers.insert(header::IF_NONE_MATCH, v.clone());
        headers.insert(header::IF_MATCH, v);
    }
    let response = respond_conditionally(&headers, &value);
    match response.status() {
        StatusCode::OK => {}
        StatusCode::NOT_MODIFIED => assert!(response.headers().contains_key(header::ETAG)),
        other => panic!("unexpected status {other}"),
    }
    if let Err(e) = check_if_match(&headers, &value) {
        assert_eq!(e.status, StatusCode::PRECONDITION_FAILED);
    }
});
