//! Key separation and small primitives shared by the security code.
//!
//! `SECRET_KEY` itself is the HS512 JWT key (as in the original service, so tokens keep verifying
//! across the platform's services). Every other purpose gets its own key derived with HKDF.

use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const SALT: &[u8] = b"kyros-orchestrator/v1";

/// A 256-bit key for one purpose (e.g. "csrf", "token-hash"), derived from the secret.
pub fn derive_key(secret: &SecretString, purpose: &str) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(SALT), secret.expose_secret().as_bytes());
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit, so expansion cannot fail.
    hk.expand(purpose.as_bytes(), &mut okm)
        .unwrap_or_else(|_| unreachable!("HKDF output length is valid"));
    okm
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The hex keyed hash a high-entropy token is stored as (never the token itself).
pub fn token_hash(key: &[u8; 32], token: &str) -> String {
    hex::encode(hmac_sha256(key, &[token.as_bytes()]))
}

/// Constant-time equality for secrets and MACs.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// `n` random bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::fill(&mut out);
    out
}
