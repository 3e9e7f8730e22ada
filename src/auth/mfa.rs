//! Multi-factor authentication with TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, one step
//! of clock skew either way).
//!
//! * The secret is encrypted at rest (XChaCha20-Poly1305, key derived from SECRET_KEY for this
//!   purpose, the user id as associated data) and shown once at enrolment, as base32, as an
//!   `otpauth://` URI and as an SVG QR code.
//! * A code works once: the step it belongs to must be later than the last accepted one
//!   (compare-and-swap in the database), so a replayed or older code is refused.
//! * Ten one-time recovery codes, stored only as keyed hashes.
//! * Login becomes two steps: the password gives a short-lived challenge (an opaque token whose
//!   keyed hash is stored with the user, the kind of login and the user's token generation),
//!   which a code turns into tokens or a session — once, and only while the credentials that
//!   created it stand.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use totp_rs::{Algorithm, Builder, Totp};
use uuid::Uuid;

use crate::crypto::{Purpose, ct_eq, random_bytes};
use crate::model::User;
use crate::state::AppState;
use crate::store::{StoreError, StoreResult, mfa};

pub const ISSUER: &str = "Kyros";
pub const STEP_SECS: i64 = 30;
pub const CHALLENGE_SECS: i64 = 300;
pub const RECOVERY_CODES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("multi-factor authentication is already enabled")]
    AlreadyEnabled,
    #[error("multi-factor authentication is not enrolled")]
    NotEnrolled,
    #[error("the stored secret cannot be read")]
    Corrupt,
    #[error(transparent)]
    Store(#[from] StoreError),
}

use crate::crypto::hmac_sha256 as hmac;

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key).into())
}

fn encrypt(state: &AppState, user_id: Uuid, secret: &[u8]) -> Result<String, MfaError> {
    let nonce = random_bytes::<24>();
    let sealed = cipher(state.live().keys.current(Purpose::TotpSecret))
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret,
                aad: user_id.as_bytes(),
            },
        )
        .map_err(|_| MfaError::Corrupt)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(STANDARD.encode(out))
}

/// The TOTP secret in `stored`, and whether it was encrypted under a retired key (then the
/// caller encrypts it again under the current one). The AEAD tag tells the key: a wrong key
/// fails authentication, it never yields a wrong secret.
fn decrypt(state: &AppState, user_id: Uuid, stored: &str) -> Result<(Vec<u8>, bool), MfaError> {
    let raw = STANDARD.decode(stored).map_err(|_| MfaError::Corrupt)?;
    if raw.len() < 24 + 16 {
        return Err(MfaError::Corrupt);
    }
    let (nonce, sealed) = raw.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| MfaError::Corrupt)?;
    let live = state.live();
    for (i, key) in live.keys.all(Purpose::TotpSecret).iter().enumerate() {
        if let Ok(secret) = cipher(key).decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: sealed,
                aad: user_id.as_bytes(),
            },
        ) {
            return Ok((secret, i > 0));
        }
    }
    Err(MfaError::Corrupt)
}

fn totp(secret: Vec<u8>, account: &str) -> Result<Totp, MfaError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP_SECS as u64)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|_| MfaError::Corrupt)
}

/// The code of the step containing `at` (for tests and tooling that hold the secret).
pub fn code_at(secret_base32: &str, at: DateTime<Utc>) -> Option<String> {
    let secret = base32_decode(secret_base32)?;
    let t = totp(secret, "x").ok()?;
    Some(t.generate(at.timestamp().max(0) as u64).to_string())
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn base32_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(B32[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(B32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = B32.iter().position(|&x| x == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

pub struct Enrolment {
    pub secret_base32: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// Starts (or restarts) enrolment: a new secret, stored encrypted, not active until confirmed.
pub async fn enroll(state: &AppState, user: &User) -> Result<Enrolment, MfaError> {
    let secret = random_bytes::<20>().to_vec();
    let t = totp(secret.clone(), &user.username)?;
    let otpauth_uri = t.to_url().map_err(|_| MfaError::Corrupt)?;
    if !mfa::set_pending_secret(&state.db, user.id, &encrypt(state, user.id, &secret)?).await? {
        return Err(MfaError::AlreadyEnabled);
    }
    let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build()
        })
        .map_err(|_| MfaError::Corrupt)?;
    Ok(Enrolment {
        secret_base32: base32_encode(&secret),
        otpauth_uri,
        qr_svg,
    })
}

/// Checks a 6-digit code and consumes its step; false for a wrong, old or replayed code.
pub async fn verify_code(state: &AppState, user: &User, code: &str) -> Result<bool, MfaError> {
    let st = mfa::state(&state.db, user.id).await?;
    let stored = st.mfa_secret.ok_or(MfaError::NotEnrolled)?;
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(false);
    }
    let (secret, under_retired_key) = decrypt(state, user.id, &stored)?;
    if under_retired_key {
        // Key rotation: filed again under the current key.
        let again = encrypt(state, user.id, &secret)?;
        mfa::replace_secret(&state.db, user.id, &again).await?;
    }
    let t = totp(secret, &user.username)?;
    let now_step = state.clock.now().timestamp().div_euclid(STEP_SECS);
    for step in [now_step - 1, now_step, now_step + 1] {
        let expected = t.generate((step * STEP_SECS).max(0) as u64).to_string();
        if ct_eq(expected.as_bytes(), code.as_bytes()) {
            return Ok(mfa::advance_step(&state.db, user.id, step).await?);
        }
    }
    Ok(false)
}

/// The keyed hashes of a recovery code under every key of the ring, the current one first.
fn recovery_hashes(state: &AppState, code: &str) -> Vec<String> {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    state
        .live()
        .keys
        .all(Purpose::RecoveryCode)
        .iter()
        .map(|key| hex::encode(hmac(key, &[normalized.as_bytes()])))
        .collect()
}

/// Enables MFA with a first valid code; returns the recovery codes (shown once).
pub async fn confirm(
    state: &AppState,
    user: &User,
    code: &str,
) -> Result<Option<Vec<String>>, MfaError> {
    let st = mfa::state(&state.db, user.id).await?;
    if st.mfa_enabled {
        return Err(MfaError::AlreadyEnabled);
    }
    if !verify_code(state, user, code).await? {
        return Ok(None);
    }
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let raw = hex::encode(random_bytes::<5>());
            format!("{}-{}", &raw[..5], &raw[5..])
        })
        .collect();
    let hashes: Vec<String> = codes
        .iter()
        .map(|c| recovery_hashes(state, c).swap_remove(0))
        .collect();
    mfa::replace_recovery_codes(&state.db, user.id, &hashes).await?;
    mfa::enable(&state.db, user.id).await?;
    Ok(Some(codes))
}

pub async fn use_recovery_code(
    state: &AppState,
    user: &User,
    code: &str,
) -> Result<bool, MfaError> {
    if code.len() > 64 {
        return Ok(false);
    }
    // Under the current key, else under a retired one (key rotation).
    for hash in recovery_hashes(state, code) {
        if mfa::use_recovery_code(&state.db, user.id, &hash, state.clock.now()).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether MFA is on, and how many recovery codes are left (0 while it is off).
pub async fn status(state: &AppState, user: &User) -> StoreResult<(bool, i64)> {
    let enabled = mfa::state(&state.db, user.id).await?.mfa_enabled;
    let left = if enabled {
        mfa::recovery_codes_left(&state.db, user.id).await?
    } else {
        0
    };
    Ok((enabled, left))
}

pub async fn is_enabled(state: &AppState, user: &User) -> Result<bool, MfaError> {
    Ok(mfa::state(&state.db, user.id).await?.mfa_enabled)
}

/// What the second step of a login produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    Bearer = 1,
    Session = 2,
}

/// A pending challenge, opened from its token.
#[derive(Debug, Clone)]
pub struct Challenge {
    row: mfa::ChallengeRow,
    pub user_id: Uuid,
    pub kind: LoginKind,
}

impl Challenge {
    /// Whether the challenge still stands for `user`: it ends with the credentials and token
    /// generation that created it (a password change, "log out everywhere", a role change or
    /// disabling all raise the generation).
    pub fn valid_for(&self, user: &User) -> bool {
        user.id == self.row.user_id && user.token_generation == self.row.token_generation
    }
}

fn challenge_hash(state: &AppState, token: &str) -> String {
    crate::crypto::token_hash(state.live().keys.current(Purpose::MfaChallenge), token)
}

/// A new challenge for `user`, whose password was just proved: an opaque token (only its keyed
/// hash is stored), valid for `CHALLENGE_SECS` and for one completed login.
pub async fn challenge(state: &AppState, user: &User, kind: LoginKind) -> StoreResult<String> {
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let row = mfa::ChallengeRow {
        challenge_hash: challenge_hash(state, &token),
        user_id: user.id,
        kind: kind as i16,
        token_generation: user.token_generation,
    };
    let expires_at = state.clock.now() + chrono::Duration::seconds(CHALLENGE_SECS);
    mfa::insert_challenge(&state.db, &row, expires_at).await?;
    Ok(token)
}

/// The pending challenge of `token`, if it is genuine, unused and unexpired.
pub async fn open_challenge(state: &AppState, token: &str) -> StoreResult<Option<Challenge>> {
    if token.is_empty() || token.len() > 200 {
        return Ok(None);
    }
    // Under the current key, else a retired one: a challenge issued just before a rotation.
    let mut found = None;
    for hash in state.live().keys.token_hashes(Purpose::MfaChallenge, token) {
        if let Some(row) = mfa::pending_challenge(&state.db, &hash, state.clock.now()).await? {
            found = Some(row);
            break;
        }
    }
    let Some(row) = found else {
        return Ok(None);
    };
    let kind = match row.kind {
        1 => LoginKind::Bearer,
        2 => LoginKind::Session,
        _ => return Ok(None),
    };
    Ok(Some(Challenge {
        user_id: row.user_id,
        kind,
        row,
    }))
}

/// Uses the challenge up; false when another request completed it first.
pub async fn consume_challenge(state: &AppState, challenge: &Challenge) -> StoreResult<bool> {
    mfa::consume_challenge(&state.db, &challenge.row.challenge_hash, state.clock.now()).await
}

/// Turns MFA off (the caller has checked password and code, or is an administrator).
pub async fn disable(state: &AppState, user: &User) -> StoreResult<()> {
    mfa::disable(&state.db, user.id).await
}

/// An administrator's reset of a user's two-step verification: false (nothing done) when the
/// user has none, so that a reset never "succeeds" on an account it cannot change.
pub async fn reset(state: &AppState, user: &User) -> StoreResult<bool> {
    if !mfa::state(&state.db, user.id).await?.mfa_enabled {
        return Ok(false);
    }
    mfa::disable(&state.db, user.id).await?;
    Ok(true)
}

/// The ids of the users with two-step verification on (the administrators' user list).
pub async fn users_with_mfa(
    state: &AppState,
) -> StoreResult<std::collections::HashSet<uuid::Uuid>> {
    Ok(crate::store::users::with_mfa(&state.db)
        .await?
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        let data = random_bytes::<20>();
        assert_eq!(base32_decode(&base32_encode(&data)).expect("decode"), data);
    }

    #[test]
    fn rfc_6238_sha1_vector() {
        // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s → 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let secret = base32_encode(b"12345678901234567890");
        let at = DateTime::from_timestamp(59, 0).expect("time");
        assert_eq!(code_at(&secret, at).as_deref(), Some("287082"));
    }
}
