//! Access tokens: HS512 JWTs, one validator for every entry point.
//!
//! Claims: `sub` (username), `user_id`, `role`, `iss`, `aud`, `iat`, `nbf`, `exp`, `jti`. A token
//! must carry all of exp, iat, iss, aud, sub and jti. Time checks use the service clock with a
//! small leeway. The header carries a `kid` derived from the signing key, so a key can be rotated:
//! tokens signed with a key listed in PREVIOUS_SECRET_KEYS verify until they expire.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uuid::Uuid;

use crate::config::Settings;
use crate::crypto::derive_key;
use crate::model::{Role, User};

/// Clock skew tolerated on exp, nbf and iat.
pub const LEEWAY_SECS: i64 = 30;

/// At most this many verified tokens are remembered (S3-FIFO eviction beyond it): ~300 bytes
/// each, so the cache stays under ~20 MiB however many tokens are presented.
pub const VERIFIED_CACHE_ENTRIES: usize = 65_536;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub iss: String,
    pub aud: serde_json::Value,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
    pub jti: String,
    /// The user's token generation at issue time (absent in tokens of other issuers: 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "gen")]
    pub generation: Option<i64>,
}

/// Why a token was refused; for logs and audit only, never shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown key id")]
    UnknownKey,
    #[error("bad signature or algorithm")]
    Signature,
    #[error("missing or invalid claims")]
    Claims,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("issued in the future")]
    IssuedInFuture,
}

struct VerifyKey {
    kid: String,
    key: DecodingKey,
    /// For a secret replaced by a live reload: the end of its last token's lifetime (Unix
    /// seconds); after it the key verifies nothing.
    until: Option<i64>,
}

pub struct TokenService {
    kid: String,
    encoding: EncodingKey,
    verify_keys: Vec<VerifyKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    lifetime: Duration,
    /// Tokens whose signature and claims checked out, keyed by the SHA-256 of the token (the
    /// token itself is never kept). Holds only the outcome of [`TokenService::verify`]'s
    /// signature and claim checks, which depend on nothing but the token and this service's
    /// keys: the time checks run on every call, and revocation and the user's state are
    /// checked by the caller on every request, so a hit answers exactly as a fresh verification.
    /// The cache belongs to this key set: a service built with other keys starts empty.
    /// Each entry also holds the end of its key's service (`VerifyKey::until`), checked on a hit.
    verified: quick_cache::sync::Cache<[u8; 32], (AccessClaims, Option<i64>)>,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The public key id of a signing secret: derived, so it reveals nothing about the secret.
pub fn key_id(secret: &SecretString) -> String {
    hex::encode(&derive_key(secret, "jwt-kid")[..8])
}

pub struct IssuedToken {
    pub token: String,
    pub claims: AccessClaims,
    pub expires_in: i64,
}

impl TokenService {
    /// Signs with `SECRET_KEY`; verifies with it and with `PREVIOUS_SECRET_KEYS`.
    pub fn new(settings: &Settings) -> Self {
        Self::with_retired(settings, &[])
    }

    /// [`TokenService::new`], also verifying with secrets a live reload replaced, each until
    /// one access-token lifetime after it was replaced: every token it signed has expired by
    /// then, and a secret rotated because it leaked stops verifying anything it could forge.
    pub fn with_retired(settings: &Settings, retired: &[crate::crypto::RetiredSecret]) -> Self {
        let current = &settings.secret_key;
        let lifetime = settings.access_token_expire_minutes * 60;
        let mut verify_keys = vec![VerifyKey {
            kid: key_id(current),
            key: DecodingKey::from_secret(current.expose_secret().as_bytes()),
            until: None,
        }];
        let keys = settings
            .previous_secret_keys
            .iter()
            .map(|k| (k, None))
            .chain(
                retired
                    .iter()
                    .map(|r| (&r.secret, Some(r.retired_at.timestamp() + lifetime))),
            );
        for (previous, until) in keys {
            let kid = key_id(previous);
            if verify_keys.iter().any(|k| k.kid == kid) {
                continue;
            }
            verify_keys.push(VerifyKey {
                kid,
                key: DecodingKey::from_secret(previous.expose_secret().as_bytes()),
                until,
            });
        }
        let mut validation = Validation::new(Algorithm::HS512);
        validation.algorithms = vec![Algorithm::HS512];
        validation.set_issuer(&[&settings.jwt_issuer]);
        validation.set_audience(&[&settings.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time claims are checked against the service clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        TokenService {
            kid: key_id(current),
            encoding: EncodingKey::from_secret(current.expose_secret().as_bytes()),
            verify_keys,
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            lifetime: Duration::minutes(settings.access_token_expire_minutes),
            verified: quick_cache::sync::Cache::new(VERIFIED_CACHE_ENTRIES),
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    pub fn issue(
        &self,
        user: &User,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
        let iat = now.timestamp();
        let claims = AccessClaims {
            sub: user.username.clone(),
            user_id: Some(user.id),
            role: Some(user.role.as_str().to_owned()),
            iss: self.issuer.clone(),
            aud: serde_json::Value::String(self.audience.clone()),
            iat,
            nbf: Some(iat),
            exp: iat + self.lifetime.num_seconds(),
            jti: Uuid::new_v4().simple().to_string(),
            generation: Some(user.token_generation),
        };
        let mut header = Header::new(Algorithm::HS512);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.lifetime.num_seconds(),
            claims,
        })
    }

    /// Verifies signature, algorithm, issuer, audience, required claims and time.
    /// The claims of an access token whose signature (HS512, a key of this service) and claims
    /// (`iss`, `aud`, `sub`, `jti`, role) are valid and which is within its time bounds at `now`
    /// (`exp`, `nbf`, `iat`, each with [`LEEWAY_SECS`]; RFC 7519 §4.1). A token verified before
    /// skips the signature check (see `verified`); a refused token is never remembered, so every
    /// forgery pays for its own check.
    ///
    /// Errors: [`TokenError`], the reason (never shown to the client).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenError> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some((claims, until)) = self.verified.get(&digest) {
            if until.is_some_and(|until| now.timestamp() >= until) {
                return Err(TokenError::UnknownKey);
            }
            return check_time(claims, now);
        }
        let (claims, until) = self.verify_signature(token, now.timestamp())?;
        let claims = check_time(claims, now)?;
        self.verified.insert(digest, (claims.clone(), until));
        Ok(claims)
    }

    /// The signature and claim checks of [`TokenService::verify`], without the time checks.
    /// The claims and the end of service of the key that verified them.
    fn verify_signature(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(AccessClaims, Option<i64>), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::HS512 {
            return Err(TokenError::Signature);
        }
        // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` names an extension it
        // does not process. This service processes none, and `[]` is forbidden outright.
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let usable = self
            .verify_keys
            .iter()
            .filter(|k| k.until.is_none_or(|until| now < until));
        let candidates: Vec<&VerifyKey> = match header.kid.as_deref() {
            Some(kid) => {
                let key = usable
                    .clone()
                    .find(|k| k.kid == kid)
                    .ok_or(TokenError::UnknownKey)?;
                vec![key]
            }
            // Tokens minted by other services of the platform with SECRET_KEY carry no kid.
            None => usable.collect(),
        };
        let mut last = TokenError::Signature;
        for candidate in candidates {
            match jsonwebtoken::decode::<AccessClaims>(token, &candidate.key, &self.validation) {
                Ok(data) => return check_claims(data.claims).map(|c| (c, candidate.until)),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match e.kind() {
                        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                            TokenError::Signature
                        }
                        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                            TokenError::Malformed
                        }
                        _ => TokenError::Claims,
                    };
                    if last != TokenError::Signature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

/// Claims every access token must carry whatever the time: a `jti` and a `sub`, and a known role.
fn check_claims(claims: AccessClaims) -> Result<AccessClaims, TokenError> {
    if claims.jti.trim().is_empty() || claims.sub.trim().is_empty() {
        return Err(TokenError::Claims);
    }
    if let Some(role) = &claims.role
        && role.parse::<Role>().is_err()
    {
        return Err(TokenError::Claims);
    }
    Ok(claims)
}

/// RFC 7519 §4.1.4–4.1.6 at `now`, with [`LEEWAY_SECS`] of clock skew either way.
fn check_time(claims: AccessClaims, now: DateTime<Utc>) -> Result<AccessClaims, TokenError> {
    let now = now.timestamp();
    if claims.exp + LEEWAY_SECS <= now {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims.nbf
        && nbf > now + LEEWAY_SECS
    {
        return Err(TokenError::NotYetValid);
    }
    if claims.iat > now + LEEWAY_SECS {
        return Err(TokenError::IssuedInFuture);
    }
    Ok(claims)
}
