//! Account operations shared by the HTTP API, the CLI and start-up bootstrap: validation of
//! names and passwords, creation, password login, and the lockout gate every factor of a login
//! passes through.
//!
//! Lockout rule: every failed factor of an account (password, TOTP code, recovery code, the
//! current password of a password change) adds to one count, which only a *complete* login (or
//! an administrator's unlock) clears. At `KYROS_LOCKOUT_THRESHOLD` failures the account locks
//! for `KYROS_LOCKOUT_BASE_SECONDS`, doubling with each further failure up to
//! `KYROS_LOCKOUT_MAX_SECONDS`; while locked, no factor is checked at all.

use secrecy::{ExposeSecret, SecretString};

use super::password::{PasswordError, Verification};
use crate::audit::{Actor, AuditEvent};
use crate::config::{PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS};
use crate::model::{Role, User};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::users::{self, NewUser};

pub const NAME_MAX_CHARS: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Input that cannot be accepted; (field, message).
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error("{0} is already taken")]
    Taken(&'static str),
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(field) => AccountError::Taken(field),
            StoreError::NotFound => AccountError::NotFound,
            other => AccountError::Store(other),
        }
    }
}

/// The comparison form of a username: PRECIS UsernameCaseMapped (RFC 8265 §3.3 — width
/// mapping, case mapping to lower case, NFC, the IdentifierClass of RFC 8264 §4.2). Two names
/// with the same key are the same name, for uniqueness, login, lockout and the per-account
/// login budget, on every engine. `None` for a string the profile refuses (no user can have it).
pub fn username_key(username: &str) -> Option<String> {
    use precis_core::profile::PrecisFastInvocation;
    precis_profiles::UsernameCaseMapped::enforce(username)
        .ok()
        .map(std::borrow::Cow::into_owned)
}

pub fn validate_username(username: &str) -> Result<(), AccountError> {
    let count = username.chars().count();
    if count == 0 || count > NAME_MAX_CHARS {
        return Err(AccountError::Invalid(
            "username",
            format!("username must have 1 to {NAME_MAX_CHARS} characters"),
        ));
    }
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
    {
        return Err(AccountError::Invalid(
            "username",
            "username may contain letters, digits and . _ - @ + only".into(),
        ));
    }
    if username_key(username).is_none() {
        return Err(AccountError::Invalid(
            "username",
            "username contains characters that are not allowed in names (RFC 8265)".into(),
        ));
    }
    Ok(())
}

pub fn validate_email(email: &str) -> Result<(), AccountError> {
    let invalid = || {
        AccountError::Invalid(
            "email",
            "email must be an address like name@example.org".into(),
        )
    };
    if email.chars().count() > NAME_MAX_CHARS
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(invalid());
    }
    Ok(())
}

pub fn validate_new_password(password: &str) -> Result<(), AccountError> {
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(AccountError::Invalid(
            "password",
            format!("password must have at most {PASSWORD_MAX_BYTES} bytes"),
        ));
    }
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(AccountError::Invalid(
            "password",
            format!("password must have at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    Ok(())
}

pub struct CreateUser {
    pub username: String,
    pub email: String,
    pub password: SecretString,
    pub role: Role,
}

/// Creates a user (HTTP administration, `kyros user create`, start-up bootstrap) and audits
/// `user.created` by `actor`.
pub async fn create_user(
    state: &AppState,
    input: CreateUser,
    actor: Actor<'_>,
) -> Result<User, AccountError> {
    validate_username(&input.username)?;
    validate_email(&input.email)?;
    validate_new_password(input.password.expose_secret())?;
    let username_key = username_key(&input.username)
        .ok_or_else(|| AccountError::Invalid("username", "username is not allowed".into()))?;
    // The name is checked before the expensive hash; the unique index decides races.
    if users::find_by_username_key(&state.db, &username_key, &input.username)
        .await?
        .is_some()
    {
        return Err(AccountError::Taken("username"));
    }
    let password_hash = state.hasher.hash(input.password).await?;
    let user = users::create(
        &state.db,
        NewUser {
            username_key,
            username: input.username,
            email: input.email,
            password_hash,
            role: input.role,
            active: true,
        },
        state.clock.now(),
    )
    .await?;
    audit(
        state,
        actor,
        "user.created",
        &user,
        serde_json::json!({"role": user.role}),
    );
    Ok(user)
}

/// The stored password hash of an account that has no password (created at a first sign-in
/// with an identity provider): no hash format, so every password is refused after the same
/// work as a wrong one (`password::Hasher::verify`).
pub const NO_PASSWORD: &str = "!";

/// Whether the account has a password it can sign in with.
pub fn has_password(user: &User) -> bool {
    user.password_hash != NO_PASSWORD
}

/// Creates an account without a password for a person who signed in with an identity provider
/// (`auth::oidc`). The username is `wanted` when it is a valid name that is free, else `wanted`
/// with `-2` … `-20` appended, else with a random suffix, normalised like every username (RFC 8265); `AccountError::Taken
/// ("email")` when another account has the e-mail address. Audited as `user.created` by the
/// system, with `via_provider`.
pub async fn create_external_user(
    state: &AppState,
    wanted: &str,
    email: &str,
    role: Role,
    provider: &str,
) -> Result<User, AccountError> {
    validate_email(email)?;
    // Keep the characters a username may hold; an empty result becomes "user".
    let mut base: String = wanted
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(NAME_MAX_CHARS - 8)
        .collect();
    if base.is_empty() || validate_username(&base).is_err() {
        base = "user".into();
    }
    // The name, then -2 … -20, then random suffixes (names squatted in a row cannot block
    // the creation).
    for n in 1..=23u32 {
        let username = match n {
            1 => base.clone(),
            2..=20 => format!("{base}-{n}"),
            _ => format!("{base}-{}", hex::encode(crate::crypto::random_bytes::<4>())),
        };
        let Some(username_key) = username_key(&username) else {
            continue;
        };
        if users::find_by_username_key(&state.db, &username_key, &username)
            .await?
            .is_some()
        {
            continue;
        }
        let created = users::create(
            &state.db,
            NewUser {
                username_key,
                username,
                email: email.to_owned(),
                password_hash: NO_PASSWORD.into(),
                role,
                active: true,
            },
            state.clock.now(),
        )
        .await;
        match created {
            Ok(user) => {
                audit(
                    state,
                    Actor::System,
                    "user.created",
                    &user,
                    serde_json::json!({"role": user.role, "via_provider": provider}),
                );
                return Ok(user);
            }
            // A race for the same name: try the next one.
            Err(StoreError::Conflict("username")) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AccountError::Taken("username"))
}

/// The user's row as it is now.
async fn fresh(state: &AppState, user: &User) -> Result<User, AccountError> {
    users::find_by_id(&state.db, user.id)
        .await?
        .ok_or(AccountError::NotFound)
}

/// One administrative audit row: `event` by `actor` about `target`, with `details` added to
/// `target_user_id`, `target` and `via` (`api`, `cli`, `system`).
fn audit(
    state: &AppState,
    actor: Actor<'_>,
    event: &'static str,
    target: &User,
    mut details: serde_json::Value,
) {
    if let serde_json::Value::Object(map) = &mut details {
        map.insert("target_user_id".into(), serde_json::json!(target.id));
        map.insert("target".into(), serde_json::json!(target.username));
        map.insert("via".into(), serde_json::json!(actor.via()));
    }
    state
        .audit
        .record(AuditEvent::new(event, "success").by(actor).details(details));
}

/// Sets a new password and revokes every token and session of the user; audited as
/// `auth.password_changed` by `actor` (the user themselves, an administrator, the CLI).
pub async fn set_password(
    state: &AppState,
    user: &User,
    password: SecretString,
    actor: Actor<'_>,
) -> Result<(), AccountError> {
    validate_new_password(password.expose_secret())?;
    let hash = state.hasher.hash(password).await?;
    users::set_password_hash(&state.db, user.id, &hash, state.clock.now()).await?;
    state.user_cache.forget(user.id);
    revoke_everything(state, user).await?;
    audit(
        state,
        actor,
        "auth.password_changed",
        user,
        serde_json::json!({}),
    );
    Ok(())
}

/// Changes the role (nothing when it is the same); tokens carrying the old role are revoked.
/// Audited as `user.role_changed` by `actor`.
pub async fn set_role(
    state: &AppState,
    user: &User,
    role: Role,
    actor: Actor<'_>,
) -> Result<(), AccountError> {
    // Compared with the row as it is now (the caller's copy may be old).
    let user = &fresh(state, user).await?;
    if role == user.role {
        return Ok(());
    }
    users::set_role(&state.db, user.id, role, state.clock.now()).await?;
    state.user_cache.forget(user.id);
    revoke_everything(state, user).await?;
    audit(
        state,
        actor,
        "user.role_changed",
        user,
        serde_json::json!({"from": user.role, "to": role}),
    );
    Ok(())
}

/// Disables or re-enables a user (nothing when already so); disabling revokes every token and
/// session. Audited as `user.disabled` / `user.enabled` by `actor`.
pub async fn set_active(
    state: &AppState,
    user: &User,
    active: bool,
    actor: Actor<'_>,
) -> Result<(), AccountError> {
    let user = &fresh(state, user).await?;
    if active == user.active {
        return Ok(());
    }
    users::set_active(&state.db, user.id, active, state.clock.now()).await?;
    state.user_cache.forget(user.id);
    if !active {
        revoke_everything(state, user).await?;
    }
    let event = if active {
        "user.enabled"
    } else {
        "user.disabled"
    };
    audit(state, actor, event, user, serde_json::json!({}));
    Ok(())
}

/// Logs a user out everywhere: access tokens (generation), refresh families, browser sessions.
pub async fn revoke_everything(state: &AppState, user: &User) -> Result<(), AccountError> {
    let now = state.clock.now();
    let generation = users::bump_token_generation(&state.db, user.id).await?;
    state.user_cache.forget(user.id);
    // Live channels of the generation that just ended learn it from the deny-list, on every
    // instance at once (`auth::liveness`), kept as long as any of them could still be open.
    state
        .revocations
        .deny(
            &crate::auth::liveness::generation_handle(user.id, generation - 1),
            Some(user.id),
            now + chrono::Duration::days(2),
        )
        .await?;
    crate::store::tokens::revoke_user_families(&state.db, user.id, now).await?;
    crate::store::sessions::revoke_all_for_user(&state.db, user.id, now).await?;
    state.credentials.forget_sessions_of(user.id);
    Ok(())
}

/// The user a name designates (compared in its PRECIS form, see [`username_key`]).
pub async fn find_user(db: &crate::store::Db, username: &str) -> Result<Option<User>, StoreError> {
    match username_key(username) {
        Some(key) => users::find_by_username_key(db, &key, username).await,
        None => Ok(None),
    }
}

/// The user with this id, if any.
pub async fn user_by_id(state: &AppState, id: uuid::Uuid) -> Result<Option<User>, StoreError> {
    users::find_by_id(&state.db, id).await
}

/// Every user, oldest first.
pub async fn list_users(state: &AppState) -> Result<Vec<User>, StoreError> {
    users::list(&state.db).await
}

pub async fn require_user(state: &AppState, username: &str) -> Result<User, AccountError> {
    find_user(&state.db, username)
        .await?
        .ok_or(AccountError::NotFound)
}

/// Gives rows created before names had a stored comparison form their key. A row whose key
/// another row already holds (names that only differ in width or case, accepted by an older
/// version) keeps working by its exact name, and the operator is told to rename one of them.
pub async fn backfill_username_keys(db: &crate::store::Db) -> Result<(), StoreError> {
    for (id, username) in users::without_username_key(db).await? {
        let Some(key) = username_key(&username) else {
            tracing::warn!(user_id = %id, "a username is not valid under RFC 8265; the user logs in by the exact name");
            continue;
        };
        match users::set_username_key(db, id, &key).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => tracing::warn!(
                user_id = %id,
                "a username equals another one after normalisation; the user logs in by the exact name until one is renamed"
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The result of a password check.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The login is complete: the password was right and no second factor is enrolled.
    Accepted(User),
    /// The password was right and a second factor is enrolled: the caller issues a challenge.
    /// Earlier failures still count until the second factor is right too.
    SecondFactorRequired(User),
    /// Refused; the reason is for the audit log only, the client sees the same 401 for all.
    Refused {
        reason: &'static str,
        user: Option<User>,
    },
}

/// Password login. Unknown, inactive, locked and wrong-password cases do the same hashing work.
/// The password of a locked account is not checked at all (the work is done on a throw-away
/// comparison), so a lock cannot be raced by concurrent guesses.
pub async fn authenticate(
    state: &AppState,
    username: &str,
    password: SecretString,
) -> Result<LoginOutcome, AccountError> {
    let Some(user) = find_user(&state.db, username).await? else {
        state.hasher.verify(password, None).await?;
        return Ok(LoginOutcome::Refused {
            reason: "unknown_user",
            user: None,
        });
    };
    // An account without a password (created by an identity provider) has nothing to guess:
    // the same work, and no count towards the lockout, which would otherwise let anybody who
    // knows the name keep its owner from signing in with the provider.
    if !has_password(&user) {
        state.hasher.verify(password, None).await?;
        return Ok(LoginOutcome::Refused {
            reason: "no_password",
            user: Some(user),
        });
    }
    let attempt = match admit(state, &user).await? {
        Gate::Admitted(attempt) => attempt,
        Gate::Locked => {
            state.hasher.verify(password, None).await?;
            return Ok(LoginOutcome::Refused {
                reason: "locked",
                user: Some(user),
            });
        }
    };
    let verdict = match state
        .hasher
        .verify(password, Some(user.password_hash.clone()))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            attempt.passed(state).await?;
            return Err(e.into());
        }
    };
    let rehash = match verdict {
        Verification::Invalid => {
            attempt.failed(state, &user).await?;
            return Ok(LoginOutcome::Refused {
                reason: "bad_password",
                user: Some(user),
            });
        }
        Verification::Valid { .. } if !user.active => {
            attempt.passed(state).await?;
            return Ok(LoginOutcome::Refused {
                reason: "inactive",
                user: Some(user),
            });
        }
        Verification::Valid { rehash } => rehash,
    };
    if let Some(new_hash) = rehash {
        // Best effort: a failure here must not fail a correct login.
        if let Err(e) = users::replace_password_hash(
            &state.db,
            user.id,
            &user.password_hash,
            &new_hash,
            state.clock.now(),
        )
        .await
        {
            tracing::warn!(user_id = %user.id, error = %e, "could not upgrade the password hash");
        }
    }
    let second_factor = match crate::auth::mfa::is_enabled(state, &user).await {
        Ok(enabled) => enabled,
        Err(e) => {
            attempt.passed(state).await?;
            return Err(AccountError::Store(match e {
                crate::auth::mfa::MfaError::Store(s) => s,
                other => StoreError::Other(other.to_string()),
            }));
        }
    };
    if second_factor {
        attempt.passed(state).await?;
        Ok(LoginOutcome::SecondFactorRequired(user))
    } else {
        attempt.completed(state).await?;
        Ok(LoginOutcome::Accepted(user))
    }
}

/// The lockout gate's answer for one attempt at a factor of an account.
#[derive(Debug)]
pub enum Gate {
    /// The factor may be checked; the attempt must then be settled.
    Admitted(FactorAttempt),
    /// The account is locked: the factor must not be checked.
    Locked,
}

/// One admitted attempt at a factor of an account (password, TOTP code, recovery code, the
/// current password of a password change). It counts as a failure from the moment it is
/// admitted, so concurrent attempts cannot pass the threshold together (OWASP ASVS 2.2.1); the
/// caller settles it with exactly one of [`failed`](Self::failed), [`passed`](Self::passed)
/// or [`completed`](Self::completed).
#[derive(Debug)]
#[must_use = "an admitted attempt counts as a failure until it is settled"]
pub struct FactorAttempt {
    user_id: uuid::Uuid,
    failures: i64,
    provisional_until: chrono::DateTime<chrono::Utc>,
}

/// Admits one attempt at a factor of `user` unless the account is locked (one conditional
/// UPDATE on both engines: the decision is atomic with the count).
pub async fn admit(state: &AppState, user: &User) -> Result<Gate, StoreError> {
    let policy = state.settings().lockout;
    let now = crate::clock::at_storage_precision(state.clock.now());
    // Held while the attempt that reaches the threshold is being checked; settled after.
    let provisional_until = now + chrono::Duration::seconds(policy.max_secs as i64);
    let threshold = i32::try_from(policy.threshold).unwrap_or(i32::MAX);
    Ok(
        match users::admit_attempt(&state.db, user.id, now, threshold, provisional_until).await? {
            Some(failures) => Gate::Admitted(FactorAttempt {
                user_id: user.id,
                failures,
                provisional_until,
            }),
            None => Gate::Locked,
        },
    )
}

impl FactorAttempt {
    /// The factor was wrong. At the threshold and beyond, the account is locked for a backoff
    /// that doubles with every further failure (up to the configured maximum). Audited.
    pub async fn failed(self, state: &AppState, user: &User) -> Result<(), StoreError> {
        let policy = state.settings().lockout;
        let threshold = i64::from(policy.threshold);
        if self.failures < threshold {
            return Ok(());
        }
        let doublings = (self.failures - threshold).min(20) as u32;
        let secs = policy
            .base_secs
            .saturating_mul(1u64 << doublings)
            .min(policy.max_secs);
        let until = crate::clock::at_storage_precision(
            state.clock.now() + chrono::Duration::seconds(secs as i64),
        );
        users::settle_lock(&state.db, self.user_id, self.provisional_until, until).await?;
        state.audit.record(
            AuditEvent::new("auth.lockout", "denied")
                .user(user)
                .details(serde_json::json!({"failures": self.failures, "locked_seconds": secs, "locked_until": until})),
        );
        Ok(())
    }

    /// The factor was right but the login is not complete (a password before its second
    /// factor): the attempt is taken back, earlier failures stay.
    pub async fn passed(self, state: &AppState) -> Result<(), StoreError> {
        users::release_attempt(&state.db, self.user_id, self.provisional_until).await
    }

    /// Every factor was right: the failures and any lock are cleared.
    pub async fn completed(self, state: &AppState) -> Result<(), StoreError> {
        users::clear_failures(&state.db, self.user_id).await
    }
}

/// Lifts a lockout (administrator action), audited as `user.unlocked` by `actor`.
pub async fn unlock(state: &AppState, user: &User, actor: Actor<'_>) -> Result<(), AccountError> {
    users::clear_failures(&state.db, user.id).await?;
    audit(state, actor, "user.unlocked", user, serde_json::json!({}));
    Ok(())
}

/// Creates the FIRST_SUPERUSER admin on start-up when it does not exist yet.
pub async fn bootstrap_first_superuser(state: &AppState) -> Result<(), AccountError> {
    let settings = &state.settings();
    let (Some(name), Some(password)) = (
        &settings.first_superuser,
        &settings.first_superuser_password,
    ) else {
        return Ok(());
    };
    if find_user(&state.db, name).await?.is_some() {
        return Ok(());
    }
    let email = match &settings.first_superuser_email {
        Some(e) => e.clone(),
        None if name.contains('@') => name.clone(),
        None => {
            return Err(AccountError::Invalid(
                "email",
                "FIRST_SUPERUSER is not an email address; set FIRST_SUPERUSER_EMAIL too".into(),
            ));
        }
    };
    match create_user(
        state,
        CreateUser {
            username: name.clone(),
            email,
            password: password.clone(),
            role: Role::Admin,
        },
        Actor::System,
    )
    .await
    {
        Ok(user) => {
            tracing::info!(user_id = %user.id, username = %user.username, "created the first superuser");
            Ok(())
        }
        // Another instance created it at the same moment.
        Err(AccountError::Taken(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
