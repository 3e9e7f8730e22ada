//! CSRF token verification with arbitrary input: never panics, nothing forged is accepted.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use kyros::security::csrf::CsrfKeys;
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<CsrfKeys> = LazyLock::new(|| CsrfKeys::new(&common::settings()));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let session = uuid::Uuid::from_u128(0x5e55_1011);
    let verdict = KEYS.verify(text, session, chrono::Utc::now());
    assert!(verdict.is_err(), "a forged CSRF token verified: {text:?}");
    // A genuine token still verifies, and a change in it does not.
    let real = KEYS.issue(session, chrono::Utc::now());
    assert!(KEYS.verify(&real, session, chrono::Utc::now()).is_ok());
    if !text.is_empty() && text != real {
        assert!(KEYS.verify(&format!("{real}{text}"), session, chrono::Utc::now()).is_err());
    }
});
