//! The format of API keys: `kyr_<lookup id>_<secret>`, and what a legacy (`API_KEYS`) value of
//! the original service may be. Parsing only; hashing and verification are `auth::api_keys`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The prefix of every key this service issues.
pub const KEY_PREFIX: &str = "kyr_";
/// Hex characters of the lookup id (8 random bytes).
pub const LOOKUP_ID_LEN: usize = 16;
/// Characters of the base64url secret (32 random bytes, unpadded).
pub const SECRET_LEN: usize = 43;
/// Length of a whole key: `kyr_` + lookup id + `_` + secret.
pub const KEY_LEN: usize = KEY_PREFIX.len() + LOOKUP_ID_LEN + 1 + SECRET_LEN;
/// Longest presented value looked at; anything longer is refused without a database query.
pub const MAX_PRESENTED_BYTES: usize = 256;
/// The parts of a well-formed `kyr_…` key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub lookup_id: &'a str,
    secret: &'a str,
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("lookup_id", &self.lookup_id)
            .finish_non_exhaustive()
    }
}

impl ParsedKey<'_> {
    pub fn secret_len(&self) -> usize {
        self.secret.len()
    }
}

/// Parses `kyr_<16 lowercase hex>_<43 base64url chars encoding 32 bytes>`; anything else is
/// `None`. (The secret may itself contain `_` and `-`, so the parts are cut by position.)
pub fn parse_key(value: &str) -> Option<ParsedKey<'_>> {
    let rest = value.strip_prefix(KEY_PREFIX)?;
    if value.len() != KEY_LEN || !rest.is_ascii() {
        return None;
    }
    let (lookup_id, rest) = rest.split_at(LOOKUP_ID_LEN);
    let secret = rest.strip_prefix('_')?;
    if !lookup_id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let decoded = URL_SAFE_NO_PAD.decode(secret).ok()?;
    (decoded.len() == 32).then_some(ParsedKey { lookup_id, secret })
}

/// A legacy (`API_KEYS`) value must be something a header can carry: 1 to 256 visible ASCII
/// characters, without the `kyr_` prefix of real keys.
pub fn legacy_value_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() || value.len() > MAX_PRESENTED_BYTES {
        return Some("must have 1 to 256 characters");
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Some("must consist of visible ASCII characters");
    }
    if value.starts_with(KEY_PREFIX) && parse_key(value).is_none() {
        return Some("starts with kyr_ but is not a well-formed key");
    }
    None
}
