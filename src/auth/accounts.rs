//! Account operations shared by the HTTP API, the CLI and start-up bootstrap: validation of
//! names and passwords, creation, password login.

use secrecy::{ExposeSecret, SecretString};

use super::password::{PasswordError, Verification};
use crate::config::{PASSWORD_MAX_BYTES, PASSWORD_MIN_CHARS};
use crate::security::audit::AuditEvent;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::users::{self, NewUser, Role, User};

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

pub async fn create_user(state: &AppState, input: CreateUser) -> Result<User, AccountError> {
    validate_username(&input.username)?;
    validate_email(&input.email)?;
    validate_new_password(input.password.expose_secret())?;
    let password_hash = state.hasher.hash(input.password).await?;
    let user = users::create(
        &state.db,
        NewUser {
            username: input.username,
            email: input.email,
            password_hash,
            role: input.role,
            active: true,
        },
        state.clock.now(),
    )
    .await?;
    Ok(user)
}

/// Sets a new password and revokes every token and session of the user.
pub async fn set_password(
    state: &AppState,
    user: &User,
    password: SecretString,
) -> Result<(), AccountError> {
    validate_new_password(password.expose_secret())?;
    let hash = state.hasher.hash(password).await?;
    users::set_password_hash(&state.db, user.id, &hash, state.clock.now()).await?;
    state.user_cache.forget(user.id);
    revoke_everything(state, user).await
}

/// Changes the role; tokens carrying the old role are revoked.
pub async fn set_role(state: &AppState, user: &User, role: Role) -> Result<(), AccountError> {
    users::set_role(&state.db, user.id, role, state.clock.now()).await?;
    state.user_cache.forget(user.id);
    revoke_everything(state, user).await
}

/// Disables or re-enables a user; disabling revokes every token and session.
pub async fn set_active(state: &AppState, user: &User, active: bool) -> Result<(), AccountError> {
    users::set_active(&state.db, user.id, active, state.clock.now()).await?;
    state.user_cache.forget(user.id);
    if !active {
        revoke_everything(state, user).await?;
    }
    Ok(())
}

/// Logs a user out everywhere: access tokens (generation), refresh families, browser sessions.
pub async fn revoke_everything(state: &AppState, user: &User) -> Result<(), AccountError> {
    let now = state.clock.now();
    users::bump_token_generation(&state.db, user.id).await?;
    state.user_cache.forget(user.id);
    crate::store::tokens::revoke_user_families(&state.db, user.id, now).await?;
    crate::store::sessions::revoke_all_for_user(&state.db, user.id, now).await?;
    Ok(())
}

pub async fn require_user(state: &AppState, username: &str) -> Result<User, AccountError> {
    users::find_by_username(&state.db, username)
        .await?
        .ok_or(AccountError::NotFound)
}

/// The result of a password check.
#[derive(Debug)]
pub enum LoginOutcome {
    Accepted(User),
    /// Refused; the reason is for the audit log only, the client sees the same 401 for all.
    Refused {
        reason: &'static str,
        user: Option<User>,
    },
}

/// Password login. Unknown, inactive and wrong-password cases do the same hashing work.
pub async fn authenticate(
    state: &AppState,
    username: &str,
    password: SecretString,
) -> Result<LoginOutcome, AccountError> {
    let user = users::find_by_username(&state.db, username).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verdict = state.hasher.verify(password, stored).await?;
    let Some(user) = user else {
        return Ok(LoginOutcome::Refused {
            reason: "unknown_user",
            user: None,
        });
    };
    let now = state.clock.now();
    // A locked account answers exactly like a wrong password, after the same work.
    let reason = match verdict {
        _ if user.locked_at(now) => Some("locked"),
        Verification::Invalid => Some("bad_password"),
        Verification::Valid { .. } if !user.active => Some("inactive"),
        Verification::Valid { .. } => None,
    };
    if let Some(reason) = reason {
        // Attempts during a lock are not counted, so the owner waiting it out is not punished.
        if reason == "bad_password" {
            register_failure(state, &user).await?;
        }
        return Ok(LoginOutcome::Refused {
            reason,
            user: Some(user),
        });
    }
    let Verification::Valid { rehash } = verdict else {
        return Err(AccountError::Store(StoreError::Other(
            "unreachable login state".into(),
        )));
    };
    if user.failed_logins > 0 || user.locked_until.is_some() {
        users::clear_failures(&state.db, user.id).await?;
    }
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
    Ok(LoginOutcome::Accepted(user))
}

/// A failed second factor counts like a wrong password (and can lock the account).
pub async fn record_failed_factor(state: &AppState, user: &User) -> Result<(), AccountError> {
    register_failure(state, user).await
}

/// Counts a failure; at the threshold and beyond, locks the account for a backoff that doubles
/// with every further failure (up to the configured maximum). Audited.
async fn register_failure(state: &AppState, user: &User) -> Result<(), AccountError> {
    let failures = users::record_failed_login(&state.db, user.id).await?;
    let policy = state.settings.lockout;
    let threshold = i64::from(policy.threshold);
    if failures < threshold {
        return Ok(());
    }
    let doublings = (failures - threshold).min(20) as u32;
    let secs = policy
        .base_secs
        .saturating_mul(1u64 << doublings)
        .min(policy.max_secs);
    let until = state.clock.now() + chrono::Duration::seconds(secs as i64);
    users::lock_until(&state.db, user.id, until).await?;
    state.audit.record(
        AuditEvent::new("auth.lockout", "denied")
            .user(user)
            .details(serde_json::json!({"failures": failures, "locked_seconds": secs, "locked_until": until})),
    );
    Ok(())
}

/// Lifts a lockout (administrator action).
pub async fn unlock(state: &AppState, user: &User) -> Result<(), AccountError> {
    users::clear_failures(&state.db, user.id).await?;
    Ok(())
}

/// Creates the FIRST_SUPERUSER admin on start-up when it does not exist yet.
pub async fn bootstrap_first_superuser(state: &AppState) -> Result<(), AccountError> {
    let settings = &state.settings;
    let (Some(name), Some(password)) = (
        &settings.first_superuser,
        &settings.first_superuser_password,
    ) else {
        return Ok(());
    };
    if users::find_by_username(&state.db, name).await?.is_some() {
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
