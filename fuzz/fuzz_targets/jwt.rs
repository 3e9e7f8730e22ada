//! Access-token verification with arbitrary input: never panics, and nothing forged verifies.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use kyros::auth::tokens::TokenService;
use libfuzzer_sys::fuzz_target;

static TOKENS: LazyLock<TokenService> = LazyLock::new(|| TokenService::new(&common::settings()));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let verdict = TOKENS.verify(text, chrono::Utc::now());
    // The key is secret and fresh per run: an input that verifies is a forgery.
    assert!(verdict.is_err(), "a forged token verified: {text:?}");
});
