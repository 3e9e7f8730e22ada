//! Key separation and small primitives shared by the security code.
//!
//! `SECRET_KEY` itself is the HS512 JWT key (as in the original service, so tokens keep verifying
//! across the platform's services). Every other purpose gets its own key derived with HKDF.

use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const SALT: &[u8] = b"kyros-orchestrator/v1";

/// What a derived key is for: each purpose has its own key, derived with HKDF-SHA256 from the
/// signing secret. The labels are those of the first release, so stored hashes and ciphertexts
/// stay readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Keyed hash of browser session tokens (lookup).
    SessionToken,
    /// Keyed hash of refresh tokens (lookup).
    RefreshToken,
    /// XChaCha20-Poly1305 key of stored TOTP secrets.
    TotpSecret,
    /// Keyed hash of MFA recovery codes (lookup).
    RecoveryCode,
    /// Keyed hash of MFA login challenges (lookup).
    MfaChallenge,
    /// Keyed hash of WebSocket tickets (lookup).
    WsTicket,
    /// Keyed hash of API keys (verification after the lookup id).
    ApiKeyHash,
    /// Lookup id of the original service's plaintext keys (`API_KEYS`).
    ApiKeyLegacyLookup,
    /// HMAC of CSRF tokens.
    Csrf,
    /// Keyed hash of the `state` of a sign-in with an identity provider and of its
    /// browser-binding cookie (lookup).
    OAuthState,
}

impl Purpose {
    const ALL: [Purpose; 10] = [
        Purpose::SessionToken,
        Purpose::RefreshToken,
        Purpose::TotpSecret,
        Purpose::RecoveryCode,
        Purpose::MfaChallenge,
        Purpose::WsTicket,
        Purpose::ApiKeyHash,
        Purpose::ApiKeyLegacyLookup,
        Purpose::Csrf,
        Purpose::OAuthState,
    ];

    /// The HKDF `info` label.
    pub fn label(self) -> &'static str {
        match self {
            Purpose::SessionToken => "session-token-hash",
            Purpose::RefreshToken => "refresh-token-hash",
            Purpose::TotpSecret => "totp-secret",
            Purpose::RecoveryCode => "recovery-code",
            Purpose::MfaChallenge => "mfa-challenge",
            Purpose::WsTicket => "ws-ticket",
            Purpose::ApiKeyHash => "api-key-hash",
            Purpose::ApiKeyLegacyLookup => "api-key-legacy-lookup",
            Purpose::Csrf => "csrf",
            Purpose::OAuthState => "oauth-state",
        }
    }
}

/// The derived keys of every signing secret in effect, per [`Purpose`], the current secret's
/// first.
///
/// The rule of key rotation: what is new is signed, hashed and encrypted under the current
/// secret only; what exists is accepted under any secret of the ring — `SECRET_KEY`, the
/// secrets of `PREVIOUS_SECRET_KEYS`, and a `SECRET_KEY` replaced by a live reload (kept until
/// the process restarts). Stored data found under a retired secret is rewritten under the
/// current one when it is next used (sessions, API keys, TOTP secrets); refresh tokens, tickets
/// and challenges are replaced on use anyway. Access tokens follow their own rule (see
/// `auth::tokens`). A secret can leave `PREVIOUS_SECRET_KEYS` once everything derived from it
/// has been used or has expired.
#[derive(Clone)]
pub struct KeyRing {
    /// `derived[p]`: the keys of purpose `Purpose::ALL[p]`, current first.
    derived: Vec<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("secrets", &self.derived.first().map_or(0, Vec::len))
            .finish()
    }
}

impl KeyRing {
    /// The ring of `current` and `retired` (duplicates of `current` dropped).
    pub fn new<'a>(
        current: &SecretString,
        retired: impl IntoIterator<Item = &'a SecretString>,
    ) -> KeyRing {
        let mut secrets = vec![current];
        for r in retired {
            if !secrets
                .iter()
                .any(|s| ct_eq(s.expose_secret().as_bytes(), r.expose_secret().as_bytes()))
            {
                secrets.push(r);
            }
        }
        KeyRing {
            derived: Purpose::ALL
                .iter()
                .map(|p| secrets.iter().map(|s| derive_key(s, p.label())).collect())
                .collect(),
        }
    }

    fn index(purpose: Purpose) -> usize {
        Purpose::ALL
            .iter()
            .position(|p| *p == purpose)
            .unwrap_or_else(|| unreachable!("ALL lists every purpose"))
    }

    /// The key new data of `purpose` is made with.
    pub fn current(&self, purpose: Purpose) -> &[u8; 32] {
        &self.derived[Self::index(purpose)][0]
    }

    /// Every key of `purpose` that existing data is accepted under, the current one first.
    pub fn all(&self, purpose: Purpose) -> &[[u8; 32]] {
        &self.derived[Self::index(purpose)]
    }

    /// [`token_hash`] of `token` under every key of `purpose`, the current one first.
    pub fn token_hashes(&self, purpose: Purpose, token: &str) -> Vec<String> {
        self.all(purpose)
            .iter()
            .map(|k| token_hash(k, token))
            .collect()
    }
}

/// A `SECRET_KEY` replaced by a live reload: it stays in the [`KeyRing`] until the process
/// restarts, and verifies access tokens until `retired_at` plus one access-token lifetime.
#[derive(Clone)]
pub struct RetiredSecret {
    pub secret: SecretString,
    pub retired_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for RetiredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetiredSecret")
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

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
