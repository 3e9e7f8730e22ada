//! Cookie headers from arbitrary bytes: reading the session and CSRF cookies never panics, and
//! a value found is one the header really carried.
#![no_main]

#[path = "common.rs"]
mod common;

use axum::http::{HeaderMap, header};
use kyros::cookies;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    // Several Cookie headers, split where the input has a NUL.
    for part in data.split(|b| *b == 0) {
        if let Some(value) = common::header_value(part) {
            headers.append(header::COOKIE, value);
        }
    }
    for name in ["kyros_session", "csrf_token", ""] {
        if let Some(value) = cookies::get(&headers, name) {
            let raw: Vec<u8> = data.to_vec();
            assert!(
                value.is_empty() || raw.windows(value.len()).any(|w| w == value.as_bytes()),
                "cookie value not from the input"
            );
        }
    }
});
