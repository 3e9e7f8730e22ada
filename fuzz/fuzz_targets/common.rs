//! Settings of a throwaway service for the fuzz targets: a secret generated per run, a data
//! directory of its own.
#![allow(dead_code)]

pub fn settings() -> kyros::Settings {
    let mut vars = kyros::config::Vars::new();
    vars.set(
        "SECRET_KEY",
        hex::encode(kyros::crypto::random_bytes::<32>()),
    );
    let dir = std::env::temp_dir().join(format!("kyros-fuzz-{}", std::process::id()));
    vars.set("KYROS_DATA_DIR", dir.display().to_string());
    vars.set("LOG_LEVEL", "ERROR");
    vars.set("RATE_LIMIT_REQUESTS", "1000000000");
    vars.set("AUTH_RATE_LIMIT_REQUESTS", "1000000000");
    vars.set("KYROS_PENALTY_STRIKES", "1000000000");
    kyros::Settings::from_vars(&vars).expect("fuzz settings")
}

/// Header values built from fuzz bytes (invalid ones are what the HTTP layer would refuse).
pub fn header_value(bytes: &[u8]) -> Option<axum::http::HeaderValue> {
    axum::http::HeaderValue::from_bytes(bytes).ok()
}
