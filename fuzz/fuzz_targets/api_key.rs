//! API key parsing and matching with arbitrary input: never panics, never matches a key that
//! was not issued.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use kyros::auth::api_keys::{KeyHasher, generate_key, parse_key};
use libfuzzer_sys::fuzz_target;

static HASHER: LazyLock<KeyHasher> = LazyLock::new(|| KeyHasher::new(&common::settings()));
static STORED: LazyLock<String> = LazyLock::new(|| HASHER.hash(&generate_key().key));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(parsed) = parse_key(text) {
        let _ = parsed.secret_len();
    }
    let _ = HASHER.lookup_id(text);
    assert!(!HASHER.matches(text, &STORED), "an unissued key matched: {text:?}");
});
