//! API keys for agents and services.
//!
//! A key looks like `kyr_<16 lowercase hex lookup id>_<43-char base64url secret>` (32 random
//! bytes). Only the lookup id and a keyed hash of the whole key (hex HMAC-SHA256 under a key
//! derived from `SECRET_KEY`) are stored; the key itself is shown once, at creation. Keys are
//! presented in `X-API-Key` or as `Authorization: Bearer kyr_…`.
//!
//! A key carries scopes, and can never do more than its scopes *and* its owner's current role
//! allow; the owner's account is loaded on every request, so demoting or disabling the owner
//! takes effect at once.
//!
//! Legacy keys (plaintext `API_KEYS` of the original service) are imported at start-up under a
//! lookup id derived from their hash, so they authenticate through the same path as new keys.

use std::fmt;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::principal::{AuthMethod, CurrentUser, bearer_token};

use crate::audit::{Actor, AuditEvent};
use crate::context::RequestContext;
use crate::crypto::{KeyRing, Purpose, ct_eq, random_bytes};
use crate::model::User;
pub use crate::model::key_format::{
    KEY_LEN, KEY_PREFIX, LOOKUP_ID_LEN, MAX_PRESENTED_BYTES, ParsedKey, SECRET_LEN,
    legacy_value_problem, parse_key,
};
pub use crate::model::{Scope, Scopes};
use crate::state::AppState;
use crate::store::api_keys::{self as store, ApiKeyRow};
use crate::store::{StoreError, StoreResult};

pub const NAME_MAX_CHARS: usize = 100;
pub const MAX_EXPIRES_IN_DAYS: i64 = 3650;
/// Unrevoked, unexpired keys one owner may have at a time.
pub const MAX_LIVE_KEYS_PER_OWNER: usize = 100;
/// The request header that carries a key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// `last_used_at` is written at most this often per key.
const TOUCH_EVERY_SECS: i64 = 60;

// ---------------------------------------------------------------------------------------------
// Key format and hashing

/// A freshly generated key; the value is shown once and never stored.
pub struct GeneratedKey {
    pub lookup_id: String,
    pub key: String,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("lookup_id", &self.lookup_id)
            .finish_non_exhaustive()
    }
}

pub fn generate_key() -> GeneratedKey {
    let lookup_id = hex::encode(random_bytes::<8>());
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let key = format!("{KEY_PREFIX}{lookup_id}_{secret}");
    GeneratedKey { lookup_id, key }
}

/// The keys (derived from the signing secrets of the [`KeyRing`]) that hash keys and derive
/// legacy lookup ids: new keys are hashed under the current secret; a presented key is checked
/// under every secret of the ring and, when it matched a retired one, filed again under the
/// current one.
#[derive(Clone)]
pub struct KeyHasher {
    /// Current first.
    hash_keys: Vec<[u8; 32]>,
    /// Current first.
    lookup_keys: Vec<[u8; 32]>,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher").finish_non_exhaustive()
    }
}

fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    crate::crypto::hmac_sha256(key, &[data])
}

impl KeyHasher {
    pub fn new(keys: &KeyRing) -> KeyHasher {
        KeyHasher {
            hash_keys: keys.all(Purpose::ApiKeyHash).to_vec(),
            lookup_keys: keys.all(Purpose::ApiKeyLegacyLookup).to_vec(),
        }
    }

    /// Hex HMAC-SHA256 of the whole presented key, under the current secret.
    pub fn hash(&self, key: &str) -> String {
        hex::encode(hmac(&self.hash_keys[0], key.as_bytes()))
    }

    /// The lookup id a presented value is filed under: the one inside a `kyr_` key, or for a
    /// legacy value one derived from its keyed hash (under the current secret). `None` for
    /// values that cannot be keys.
    pub fn lookup_id(&self, value: &str) -> Option<String> {
        self.lookup_ids(value).into_iter().next()
    }

    /// [`KeyHasher::lookup_id`] under every secret of the ring, the current one first (one
    /// id for a `kyr_` key, which carries its own).
    pub fn lookup_ids(&self, value: &str) -> Vec<String> {
        if value.starts_with(KEY_PREFIX) {
            return parse_key(value)
                .map(|p| vec![p.lookup_id.to_owned()])
                .unwrap_or_default();
        }
        if legacy_value_problem(value).is_some() {
            return Vec::new();
        }
        self.lookup_keys
            .iter()
            .map(|k| hex::encode(&hmac(k, value.as_bytes())[..LOOKUP_ID_LEN / 2]))
            .collect()
    }

    /// Constant-time check of a presented value against a stored hash, under every secret of
    /// the ring: `None` when it matches none, `Some(true)` when it matched a retired one.
    pub fn check(&self, value: &str, stored_hash: &str) -> Option<bool> {
        self.hash_keys.iter().enumerate().find_map(|(i, k)| {
            let hash = hex::encode(hmac(k, value.as_bytes()));
            ct_eq(hash.as_bytes(), stored_hash.as_bytes()).then_some(i > 0)
        })
    }

    /// Whether a presented value matches a stored hash (under any secret of the ring).
    pub fn matches(&self, value: &str, stored_hash: &str) -> bool {
        self.check(value, stored_hash).is_some()
    }
}

// ---------------------------------------------------------------------------------------------
// Keys as the rest of the service sees them

/// A stored key, without its hash.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub lookup_id: String,
    pub name: String,
    pub owner_id: Uuid,
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRow> for ApiKey {
    fn from(row: &ApiKeyRow) -> ApiKey {
        ApiKey {
            id: row.id,
            lookup_id: row.lookup_id.clone(),
            name: row.name.clone(),
            owner_id: row.owner_id,
            scopes: Scopes::from_db(&row.scopes),
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

impl ApiKey {
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// `active`, `expired` or `revoked`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expired_at(now) {
            "expired"
        } else {
            "active"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// Input that cannot be accepted; (field, message).
    #[error("{1}")]
    Invalid(&'static str, String),
    /// The owner's role does not allow granting this scope.
    #[error("only administrators can grant the {0} scope")]
    ScopeNotAllowed(Scope),
    #[error("the owner already has {MAX_LIVE_KEYS_PER_OWNER} live API keys; revoke some first")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key name: 1 to 100 characters after trimming, no control characters.
pub fn validate_name(name: &str) -> Result<String, ApiKeyError> {
    let name = name.trim();
    let count = name.chars().count();
    if count == 0 || count > NAME_MAX_CHARS {
        return Err(ApiKeyError::Invalid(
            "name",
            format!("name must have 1 to {NAME_MAX_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiKeyError::Invalid(
            "name",
            "name must not contain control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

pub fn validate_expires_in_days(days: i64) -> Result<Duration, ApiKeyError> {
    if !(1..=MAX_EXPIRES_IN_DAYS).contains(&days) {
        return Err(ApiKeyError::Invalid(
            "expires_in_days",
            format!("expires_in_days must be between 1 and {MAX_EXPIRES_IN_DAYS}"),
        ));
    }
    Ok(Duration::days(days))
}

pub struct NewApiKey {
    pub name: String,
    pub scopes: Scopes,
    pub expires_in_days: Option<i64>,
}

/// A created key: what is stored, and the key itself (shown once).
pub struct Created {
    pub key: ApiKey,
    pub secret: GeneratedKey,
}

impl fmt::Debug for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Created")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Creates a key for `owner` (HTTP and CLI alike). Validates the name, the scopes against the
/// owner's role (a refusal is audited as `rbac.denied`), the lifetime, and the number of live
/// keys the owner has; audits `apikey.created` by `actor`.
pub async fn create(
    state: &AppState,
    owner: &User,
    input: NewApiKey,
    actor: Actor<'_>,
) -> Result<Created, ApiKeyError> {
    let name = validate_name(&input.name)?;
    if input.scopes.is_empty() {
        return Err(ApiKeyError::Invalid(
            "scopes",
            format!("at least one scope is required ({})", Scope::names()),
        ));
    }
    if let Some(scope) = input.scopes.beyond(owner.role) {
        state.audit.record(
            AuditEvent::new("rbac.denied", "denied")
                .by(actor)
                .details(json!({"action": "apikey.create", "scope": scope, "role": owner.role})),
        );
        return Err(ApiKeyError::ScopeNotAllowed(scope));
    }
    let lifetime = input
        .expires_in_days
        .map(validate_expires_in_days)
        .transpose()?;
    let now = state.clock.now();
    let live = store::list(&state.db, Some(owner.id))
        .await?
        .iter()
        .map(ApiKey::from)
        .filter(|k| k.status(now) == "active")
        .count();
    if live >= MAX_LIVE_KEYS_PER_OWNER {
        return Err(ApiKeyError::TooMany);
    }
    let hasher = KeyHasher::new(&state.live().keys);
    // A lookup id collision (64 random bits) is next to impossible; retry anyway.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let secret = generate_key();
        let row = ApiKeyRow {
            id: Uuid::new_v4(),
            lookup_id: secret.lookup_id.clone(),
            secret_hash: hasher.hash(&secret.key),
            name: name.clone(),
            owner_id: owner.id,
            scopes: input.scopes.to_db(),
            created_at: now,
            expires_at: lifetime.map(|d| now + d),
            last_used_at: None,
            revoked_at: None,
        };
        match store::insert(&state.db, &row).await {
            Ok(()) => {
                let key = ApiKey::from(&row);
                let mut details = audit_details(&key);
                details["via"] = json!(actor.via());
                state.audit.record(
                    AuditEvent::new("apikey.created", "success")
                        .by(actor)
                        .details(details),
                );
                return Ok(Created { key, secret });
            }
            Err(StoreError::Conflict(_)) if attempt < 3 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The audit details of a key (never its secret or hash).
pub fn audit_details(key: &ApiKey) -> serde_json::Value {
    json!({
        "key_id": key.id,
        "lookup_id": key.lookup_id,
        "name": key.name,
        "scopes": key.scopes,
        "owner_id": key.owner_id,
        "expires_at": key.expires_at,
    })
}

/// The keys of `owner` (every key when `None`).
pub async fn list(state: &AppState, owner: Option<Uuid>) -> StoreResult<Vec<ApiKey>> {
    Ok(store::list(&state.db, owner)
        .await?
        .iter()
        .map(ApiKey::from)
        .collect())
}

/// The key with this id, if any.
pub async fn find(state: &AppState, id: Uuid) -> StoreResult<Option<ApiKey>> {
    Ok(store::find_by_id(&state.db, id)
        .await?
        .as_ref()
        .map(ApiKey::from))
}

/// Revokes a key, for HTTP and the CLI alike: its row, every channel it opened (through the
/// revocation deny-list, on every instance, within a second), and the `apikey.revoked` audit row
/// naming the actor. False when it was revoked already (nothing is written then).
pub async fn revoke(state: &AppState, key: &ApiKey, actor: Actor<'_>) -> StoreResult<bool> {
    let now = state.clock.now();
    let revoked = store::revoke(&state.db, key.id, now).await?;
    state.credentials.forget_key(key.id);
    if !revoked {
        return Ok(false);
    }
    // Kept as long as the key could still have been used; a key without expiry for a long while.
    let until = key.expires_at.unwrap_or(now + Duration::days(400));
    state
        .revocations
        .deny(
            &super::liveness::api_key_handle(key.id),
            Some(key.owner_id),
            until,
        )
        .await?;
    let mut details = audit_details(key);
    details["via"] = json!(actor.via());
    state.audit.record(
        AuditEvent::new("apikey.revoked", "success")
            .by(actor)
            .details(details),
    );
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// Why a presented key was refused (for the audit log; the client always gets the same 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    Unknown,
    BadSecret,
    Revoked,
    Expired,
    OwnerInactive,
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Unknown => "unknown",
            Rejection::BadSecret => "bad_secret",
            Rejection::Revoked => "revoked",
            Rejection::Expired => "expired",
            Rejection::OwnerInactive => "owner_inactive",
        }
    }
}

/// A refused key, with what is known about it.
#[derive(Debug)]
pub struct Refused {
    pub rejection: Rejection,
    pub key: Option<ApiKey>,
    pub owner: Option<User>,
}

fn refused(rejection: Rejection) -> Refused {
    Refused {
        rejection,
        key: None,
        owner: None,
    }
}

/// Checks a presented value (a `kyr_` key or a legacy value) and loads its owner.
pub async fn verify(state: &AppState, value: &str) -> StoreResult<Result<(ApiKey, User), Refused>> {
    if value.len() > MAX_PRESENTED_BYTES {
        return Ok(Err(refused(Rejection::Malformed)));
    }
    let hasher = KeyHasher::new(&state.live().keys);
    let lookup_ids = hasher.lookup_ids(value);
    let Some(lookup_id) = lookup_ids.first().cloned() else {
        return Ok(Err(refused(Rejection::Malformed)));
    };
    // A row accepted less than a second ago, unless the deny-list knows of its revocation
    // (`auth::credential_cache` states the bounds); otherwise the stored row — for a legacy
    // key, under the lookup id of any secret of the ring.
    let cached = state.credentials.key(&lookup_id).filter(|row| {
        !state
            .revocations
            .is_denied(&super::liveness::api_key_handle(row.id))
    });
    let from_store = cached.is_none();
    let row = match cached {
        Some(row) => row,
        None => {
            let mut found = None;
            for id in &lookup_ids {
                if let Some(row) = store::find_by_lookup_id(&state.db, id).await? {
                    found = Some(row);
                    break;
                }
            }
            match found {
                Some(row) => row,
                None => return Ok(Err(refused(Rejection::Unknown))),
            }
        }
    };
    let Some(under_retired_secret) = hasher.check(value, &row.secret_hash) else {
        return Ok(Err(refused(Rejection::BadSecret)));
    };
    let mut row = row;
    if under_retired_secret || row.lookup_id != lookup_id {
        // Key rotation: filed again under the current secret.
        let hash = hasher.hash(value);
        store::refile(&state.db, row.id, &lookup_id, &hash).await?;
        row.lookup_id = lookup_id.clone();
        row.secret_hash = hash;
    }
    let key = ApiKey::from(&row);
    let owner = state.user_cache.get(&state.db, key.owner_id).await?;
    let now = state.clock.now();
    let rejection = if key.revoked_at.is_some() {
        Some(Rejection::Revoked)
    } else if key.expired_at(now) {
        Some(Rejection::Expired)
    } else if !owner.as_ref().is_some_and(|o| o.active) {
        Some(Rejection::OwnerInactive)
    } else {
        None
    };
    match (rejection, owner) {
        (None, Some(owner)) => {
            if from_store {
                state.credentials.put_key(&lookup_id, row);
            }
            Ok(Ok((key, owner)))
        }
        (rejection, owner) => Ok(Err(Refused {
            rejection: rejection.unwrap_or(Rejection::OwnerInactive),
            key: Some(key),
            owner,
        })),
    }
}

/// What the request's headers said about API keys.
#[derive(Debug)]
pub enum Outcome {
    /// No key was presented; other credentials decide.
    NotPresented,
    Accepted(Box<CurrentUser>),
    /// A key was presented and refused (audited); the request has no principal.
    Rejected,
}

/// The key a request presents: `Authorization: Bearer kyr_…`, a non-JWT bearer value that is a
/// known legacy key, or `X-API-Key`. A bearer credential takes precedence over `X-API-Key`.
///
/// Takes the request's parts rather than the request (whose body is not `Sync`).
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    ctx: Option<&RequestContext>,
    path: &str,
) -> StoreResult<Outcome> {
    let (value, legacy_bearer) = match bearer_token(headers) {
        Some(token) if token.starts_with(KEY_PREFIX) => (token, false),
        // A JWT has two dots; anything else may be a legacy key presented as a bearer token.
        Some(token) if !token.contains('.') => (token, true),
        Some(_) => return Ok(Outcome::NotPresented),
        None => match api_key_header(headers) {
            Some(value) => (value, false),
            None => return Ok(Outcome::NotPresented),
        },
    };
    match verify(state, value).await? {
        Ok((key, owner)) => {
            record_use(state, ctx, &key, &owner).await?;
            Ok(Outcome::Accepted(Box::new(CurrentUser {
                user: owner,
                method: AuthMethod::ApiKey {
                    key_id: key.id,
                    scopes: key.scopes,
                },
                claims: None,
            })))
        }
        // Not a key after all: the bearer path judges (and audits) it as a token.
        Err(r)
            if legacy_bearer
                && matches!(r.rejection, Rejection::Unknown | Rejection::Malformed) =>
        {
            Ok(Outcome::NotPresented)
        }
        Err(refused) => {
            let mut details = json!({
                "reason": refused.rejection.reason(),
                "path": path,
            });
            if let Some(key) = &refused.key {
                details["key_id"] = json!(key.id);
                details["lookup_id"] = json!(key.lookup_id);
            } else if let Some(parsed) = parse_key(value) {
                details["lookup_id"] = json!(parsed.lookup_id);
            }
            let mut event = AuditEvent::new("apikey.rejected", "denied")
                .context(ctx)
                .details(details);
            if let Some(owner) = &refused.owner {
                event = event.user(owner);
            }
            state.audit.record(event);
            Ok(Outcome::Rejected)
        }
    }
}

/// The `X-API-Key` value, trimmed; `None` when absent, empty or not text.
fn api_key_header(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(API_KEY_HEADER)?.to_str().ok()?.trim();
    (!value.is_empty()).then_some(value)
}

/// Keeps `last_used_at` within a minute of the truth; the first use ever is audited.
async fn record_use(
    state: &AppState,
    ctx: Option<&RequestContext>,
    key: &ApiKey,
    owner: &User,
) -> StoreResult<()> {
    let now = state.clock.now();
    match key.last_used_at {
        None => {
            let first = store::mark_first_use(&state.db, key.id, now).await?;
            state.credentials.key_used(&key.lookup_id, now);
            if first {
                state.audit.record(
                    AuditEvent::new("apikey.first_used", "success")
                        .context(ctx)
                        .user(owner)
                        .details(
                            json!({"key_id": key.id, "lookup_id": key.lookup_id, "name": key.name}),
                        ),
                );
            }
        }
        Some(last) if (now - last).num_seconds() >= TOUCH_EVERY_SECS => {
            store::touch(&state.db, key.id, now).await?;
            state.credentials.key_used(&key.lookup_id, now);
        }
        Some(_) => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Legacy keys

/// Imports the plaintext keys of `API_KEYS` (once; idempotent across restarts and instances) as
/// keys of `API_KEYS_OWNER` (default `FIRST_SUPERUSER`) with the scopes of `API_KEYS_SCOPES`.
/// Only their keyed hash is stored. Returns how many were imported now.
pub async fn bootstrap_legacy_api_keys(state: &AppState) -> StoreResult<usize> {
    let settings = &state.settings();
    if settings.api_keys.is_empty() {
        return Ok(0);
    }
    let Some(owner_name) = settings
        .api_keys_owner
        .as_deref()
        .or(settings.first_superuser.as_deref())
    else {
        tracing::warn!(
            keys = settings.api_keys.len(),
            "API_KEYS is set but neither API_KEYS_OWNER nor FIRST_SUPERUSER names an owner; the legacy keys were not imported"
        );
        return Ok(0);
    };
    let Some(owner) = crate::auth::accounts::find_user(&state.db, owner_name).await? else {
        tracing::warn!(
            owner = owner_name,
            keys = settings.api_keys.len(),
            "the owner of the API_KEYS does not exist; the legacy keys were not imported"
        );
        return Ok(0);
    };
    let scopes = settings.api_keys_scopes;
    if let Some(scope) = scopes.beyond(owner.role) {
        tracing::warn!(
            owner = owner_name,
            %scope,
            "API_KEYS_SCOPES grants a scope the owner's role does not allow; it will have no effect"
        );
    }
    let hasher = KeyHasher::new(&state.live().keys);
    let now = state.clock.now();
    let mut imported = 0;
    for (i, value) in settings.api_keys.iter().enumerate() {
        use secrecy::ExposeSecret;
        let value = value.expose_secret();
        let Some(lookup_id) = hasher.lookup_id(value) else {
            tracing::warn!(
                entry = i + 1,
                "API_KEYS entry cannot be used as a key; skipped"
            );
            continue;
        };
        // Imported before, perhaps under a secret since rotated.
        let mut existing = None;
        for id in hasher.lookup_ids(value) {
            if let Some(row) = store::find_by_lookup_id(&state.db, &id).await? {
                existing = Some(row);
                break;
            }
        }
        if let Some(existing) = existing {
            if !hasher.matches(value, &existing.secret_hash) {
                tracing::warn!(
                    entry = i + 1,
                    "API_KEYS entry collides with another key's lookup id; skipped"
                );
            }
            continue;
        }
        let row = ApiKeyRow {
            id: Uuid::new_v4(),
            name: format!("legacy-{lookup_id}"),
            lookup_id,
            secret_hash: hasher.hash(value),
            owner_id: owner.id,
            scopes: scopes.to_db(),
            created_at: now,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        match store::insert(&state.db, &row).await {
            Ok(()) => {
                imported += 1;
                let mut details = audit_details(&ApiKey::from(&row));
                details["via"] = json!("legacy_import");
                state
                    .audit
                    .record(AuditEvent::new("apikey.created", "success").details(details));
            }
            // Another instance imported it at the same moment.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if imported > 0 {
        tracing::info!(
            imported,
            owner = owner_name,
            "imported legacy API keys from API_KEYS"
        );
    }
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    fn hasher() -> KeyHasher {
        KeyHasher {
            hash_keys: vec![[7; 32]],
            lookup_keys: vec![[9; 32]],
        }
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        for _ in 0..200 {
            let g = generate_key();
            assert_eq!(g.key.len(), KEY_LEN);
            assert_eq!(KEY_LEN, 64);
            let parsed = parse_key(&g.key).expect("a generated key parses");
            assert_eq!(parsed.lookup_id, g.lookup_id);
            assert_eq!(parsed.secret_len(), SECRET_LEN);
            assert!(
                g.lookup_id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn secrets_with_underscores_and_dashes_parse() {
        // 32 bytes of 0xff encode as `_` characters (and a final `w`).
        let secret = URL_SAFE_NO_PAD.encode([0xffu8; 32]);
        assert!(secret.starts_with("____"));
        let key = format!("kyr_0123456789abcdef_{secret}");
        let parsed = parse_key(&key).expect("parses");
        assert_eq!(parsed.lookup_id, "0123456789abcdef");
        let secret = URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert!(secret.contains('-'));
        assert!(parse_key(&format!("kyr_0123456789abcdef_{secret}")).is_some());
    }

    #[test]
    fn malformed_keys_are_refused() {
        let good = generate_key().key;
        let secret = &good[KEY_PREFIX.len() + LOOKUP_ID_LEN + 1..];
        let cases = [
            String::new(),
            "kyr_".into(),
            good[..good.len() - 1].to_owned(),
            format!("{good}A"),
            good.replacen("kyr_", "KYR_", 1),
            good.replacen("kyr_", "kyx_", 1),
            format!("kyr_0123456789ABCDEF_{secret}"),
            format!("kyr_0123456789abcdeg_{secret}"),
            format!("kyr_0123456789abcdef-{secret}"),
            format!("kyr_0123456789abcde_{secret}A"),
            format!(
                "kyr_0123456789abcdef_{}",
                &secret.replace(|_: char| true, "+")
            ),
            format!("kyr_0123456789abcdef_{}=", &secret[..42]),
            format!("kyr_0123456789abcdef_{}é", &secret[..41]),
            // Non-canonical final character: its unused low bits are set.
            format!(
                "kyr_0123456789abcdef_{}x",
                &URL_SAFE_NO_PAD.encode([0u8; 32])[..42]
            ),
        ];
        for case in &cases {
            assert!(parse_key(case).is_none(), "{case:?} must not parse");
        }
    }

    #[test]
    fn lookup_ids_come_from_the_key_or_from_the_legacy_hash() {
        let h = hasher();
        let g = generate_key();
        assert_eq!(h.lookup_id(&g.key).as_deref(), Some(g.lookup_id.as_str()));
        let legacy = h.lookup_id("ci-key").expect("legacy value");
        assert_eq!(legacy.len(), LOOKUP_ID_LEN);
        assert!(legacy.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(h.lookup_id("ci-key"), Some(legacy.clone()), "deterministic");
        assert_ne!(h.lookup_id("test-key"), Some(legacy));
        assert_eq!(h.lookup_id("kyr_not-a-key"), None);
        assert_eq!(h.lookup_id(""), None);
        assert_eq!(h.lookup_id("has space"), None);
        assert_eq!(h.lookup_id(&"x".repeat(MAX_PRESENTED_BYTES + 1)), None);
    }

    #[test]
    fn hashes_are_keyed_and_compared_exactly() {
        let h = hasher();
        let g = generate_key();
        let stored = h.hash(&g.key);
        assert_eq!(stored.len(), 64);
        assert!(h.matches(&g.key, &stored));
        let mut tampered = g.key.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert!(!h.matches(&tampered, &stored));
        let other = KeyHasher {
            hash_keys: vec![[8; 32]],
            lookup_keys: vec![[9; 32]],
        };
        assert!(
            !other.matches(&g.key, &stored),
            "another SECRET_KEY, another hash"
        );
        let rotated = KeyHasher {
            hash_keys: vec![[8; 32], [7; 32]],
            lookup_keys: vec![[10; 32], [9; 32]],
        };
        assert_eq!(
            rotated.check(&g.key, &stored),
            Some(true),
            "under the retired secret"
        );
        assert_eq!(rotated.check(&g.key, &rotated.hash(&g.key)), Some(false));
        assert_eq!(
            rotated.lookup_ids("ci-key")[1],
            h.lookup_id("ci-key").expect("legacy"),
            "a legacy key is looked up under the retired secret too"
        );
    }

    #[test]
    fn scopes_parse_store_and_limit() {
        let s = Scopes::parse_csv("jobs:write, jobs:read,jobs:read").expect("valid");
        assert_eq!(s.names(), ["jobs:read", "jobs:write"]);
        assert_eq!(s.to_db(), "jobs:read,jobs:write");
        assert_eq!(Scopes::from_db(&s.to_db()), s);
        assert_eq!(
            Scopes::from_db("jobs:read,future:thing"),
            Scopes::from_iter([Scope::JobsRead])
        );
        assert!(Scopes::parse_csv("jobs:read,jobs:delete").is_err());
        assert!(Scopes::parse_csv("Admin").is_err());
        assert!(Scopes::parse_csv("").is_err());
        assert!(Scopes::parse_csv(" , ").is_err());
        let all: Scopes = Scope::ALL.into_iter().collect();
        assert_eq!(all.names().len(), 6);
        assert_eq!(all.beyond(Role::User), Some(Scope::Admin));
        assert_eq!(all.beyond(Role::Moderator), Some(Scope::Admin));
        assert_eq!(all.beyond(Role::Admin), None);
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(
            serde_json::to_value(s).expect("json"),
            json!(["jobs:read", "jobs:write"])
        );
    }

    #[test]
    fn legacy_values_are_checked() {
        assert_eq!(legacy_value_problem("ci-key"), None);
        assert!(legacy_value_problem("").is_some());
        assert!(legacy_value_problem("with space").is_some());
        assert!(legacy_value_problem("kyr_short").is_some());
        assert_eq!(legacy_value_problem(&generate_key().key), None);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let g = generate_key();
        assert!(!format!("{g:?}").contains(&g.key));
        let parsed = parse_key(&g.key).expect("parses");
        let secret = &g.key[KEY_PREFIX.len() + LOOKUP_ID_LEN + 1..];
        assert!(!format!("{parsed:?}").contains(secret));
    }
}
