//! Login: the password step and the second-factor step, with their budgets, the lockout gate
//! and their audit rows — the same for a bearer login (`/auth/login`), a browser session
//! (`/auth/session`) and any future entry point. The entry point only turns the outcome into
//! tokens or a session cookie.
//!
//! * Password: the per-account budget first (`AUTH_RATE_LIMIT_*`, names compared as RFC 8265
//!   names, unknown names counted alike), then `accounts::authenticate` (lockout, equal work).
//!   Every refusal is the same `Incorrect username or password`.
//! * Second factor: a pending challenge (single use, ending with the credentials that created
//!   it), the per-account code budget, then the lockout gate, then the TOTP code (replay-guarded)
//!   or a recovery code.

use secrecy::SecretString;
use serde_json::json;

use super::accounts::{self, Gate, LoginOutcome};
use super::mfa::{self, LoginKind, MfaError};
use crate::audit::AuditEvent;
use crate::context::RequestContext;
use crate::limiter::gcra::Quota;
use crate::limiter::{Policy, Verdict};
use crate::model::User;
use crate::state::AppState;
use crate::store::StoreError;

/// Why a login step was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Over the account's budget: answer 429 with this quota.
    #[error("Rate limit exceeded")]
    Limited(Quota),
    /// Wrong, unknown, locked or disabled: the one 401 of the password step.
    #[error("Incorrect username or password")]
    Refused,
    /// The second factor was wrong (or the account is locked).
    #[error("Invalid verification code")]
    InvalidCode,
    /// No such challenge, used, expired, or ended with its credentials.
    #[error("Invalid or expired MFA challenge")]
    ChallengeInvalid,
    /// The current password of a password change was wrong (or the account is locked).
    #[error("The current password is incorrect")]
    WrongCurrentPassword,
    #[error(transparent)]
    Mfa(#[from] MfaError),
    #[error(transparent)]
    Account(#[from] accounts::AccountError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a correct password leads to.
#[derive(Debug)]
pub enum PasswordStep {
    /// The login is complete.
    Complete(User),
    /// A second factor is enrolled: answer with a challenge.
    SecondFactor(User),
}

/// The password step; `via` (`token`, `session`) is recorded in the audit row.
pub async fn password(
    state: &AppState,
    ctx: Option<&RequestContext>,
    via: &'static str,
    username: &str,
    password: SecretString,
) -> Result<PasswordStep, LoginError> {
    // The per-account budget, before any hashing work; unknown names are counted the same way,
    // and names that are the same name (RFC 8265) share one budget.
    let name_key = accounts::username_key(username).unwrap_or_else(|| username.to_lowercase());
    let account = format!("acct:{name_key}");
    if let Verdict::Limited(q) = state.limiter.check(Policy::AuthAccount, &account).await {
        state.audit.record(
            AuditEvent::new("ratelimit.exceeded", "denied")
                .context(ctx)
                .attempted(username)
                .details(json!({"policy": "acct", "key_kind": "acct", "path": via})),
        );
        return Err(LoginError::Limited(q));
    }
    match accounts::authenticate(state, username, password).await? {
        LoginOutcome::Accepted(user) => {
            state.audit.record(
                AuditEvent::new("auth.login", "success")
                    .context(ctx)
                    .user(&user)
                    .details(json!({"via": via})),
            );
            Ok(PasswordStep::Complete(user))
        }
        LoginOutcome::SecondFactorRequired(user) => {
            state.audit.record(
                AuditEvent::new("auth.login", "challenge")
                    .context(ctx)
                    .user(&user)
                    .details(json!({"via": via, "factor": "totp"})),
            );
            Ok(PasswordStep::SecondFactor(user))
        }
        LoginOutcome::Refused { reason, user } => {
            let event = AuditEvent::new("auth.login", "failure")
                .context(ctx)
                .details(json!({"via": via, "reason": reason}));
            state.audit.record(match &user {
                Some(user) => event.user(user),
                None => event.attempted(username),
            });
            Err(LoginError::Refused)
        }
    }
}

/// The second factor presented with a challenge: a TOTP code or a recovery code.
#[derive(Debug)]
pub enum SecondFactor {
    Code(String),
    RecoveryCode(String),
    Missing,
}

/// The second-factor step: completes the login of the challenge `token`. On success, the user
/// and the kind of login the challenge was for (tokens or a session).
pub async fn second_factor(
    state: &AppState,
    ctx: Option<&RequestContext>,
    token: Option<&str>,
    factor: SecondFactor,
) -> Result<(User, LoginKind), LoginError> {
    let challenge = match token {
        Some(t) => mfa::open_challenge(state, t).await?,
        None => None,
    };
    let challenge = challenge.ok_or(LoginError::ChallengeInvalid)?;
    // The challenge ends with the credentials that created it (password change, log out
    // everywhere, role change, disabling).
    let user = accounts::user_by_id(state, challenge.user_id)
        .await?
        .filter(|u| u.active && challenge.valid_for(u))
        .ok_or(LoginError::ChallengeInvalid)?;
    // Codes are guessed per account: the login budget of the account applies here too.
    if let Verdict::Limited(q) = state
        .limiter
        .check(Policy::AuthAccount, &format!("mfa:{}", user.id))
        .await
    {
        return Err(LoginError::Limited(q));
    }
    let method = match &factor {
        SecondFactor::Code(_) => "totp",
        SecondFactor::RecoveryCode(_) => "recovery_code",
        SecondFactor::Missing => "none",
    };
    let refuse = |reason: &'static str| {
        state.audit.record(
            AuditEvent::new("mfa.verify", "failure")
                .context(ctx)
                .user(&user)
                .details(json!({"method": method, "reason": reason})),
        );
        LoginError::InvalidCode
    };
    // Every code counts towards the account's lockout, with the passwords before it; while the
    // account is locked no code is checked.
    let attempt = match accounts::admit(state, &user).await? {
        Gate::Admitted(attempt) => attempt,
        Gate::Locked => return Err(refuse("locked")),
    };
    let checked = match factor {
        SecondFactor::Code(code) => mfa::verify_code(state, &user, &code).await,
        SecondFactor::RecoveryCode(rc) => mfa::use_recovery_code(state, &user, &rc).await,
        SecondFactor::Missing => Ok(false),
    };
    let ok = match checked {
        Ok(ok) => ok,
        Err(e) => {
            attempt.passed(state).await?;
            return Err(e.into());
        }
    };
    if !ok {
        attempt.failed(state, &user).await?;
        return Err(refuse("invalid code"));
    }
    // Single use: of two requests completing one challenge, only the first logs in.
    if !mfa::consume_challenge(state, &challenge).await? {
        attempt.passed(state).await?;
        return Err(LoginError::ChallengeInvalid);
    }
    attempt.completed(state).await?;
    state.audit.record(
        AuditEvent::new("mfa.verify", "success")
            .context(ctx)
            .user(&user)
            .details(json!({"method": method})),
    );
    Ok((user, challenge.kind))
}

/// What a logout ended.
#[derive(Debug, Clone, Copy)]
pub struct LoggedOut {
    /// This request's own credential: its access token (deny-listed) or its browser session.
    pub access_revoked: bool,
    /// The refresh family of the token presented, when it was the caller's.
    pub refresh_family_revoked: bool,
}

/// Logs `current` out: the credential of the request, and the refresh family of
/// `refresh_token` when it is the caller's. Audited as `auth.logout`.
pub async fn logout(
    state: &AppState,
    ctx: Option<&RequestContext>,
    current: &super::principal::CurrentUser,
    refresh_token: Option<&str>,
) -> Result<LoggedOut, LoginError> {
    use super::principal::AuthMethod;
    let mut access_revoked = false;
    match &current.method {
        AuthMethod::Session(id) => {
            access_revoked |= super::sessions::revoke(state, *id).await?;
        }
        _ => {
            if let Some(claims) = &current.claims {
                let exp = chrono::DateTime::from_timestamp(claims.exp, 0)
                    .unwrap_or_else(|| state.clock.now());
                state
                    .revocations
                    .deny(&claims.jti, Some(current.user.id), exp)
                    .await?;
                access_revoked = true;
            }
        }
    }
    let refresh_family_revoked = match refresh_token {
        Some(t) => super::refresh::revoke_own(state, &current.user, t).await?,
        None => false,
    };
    state.audit.record(
        AuditEvent::new("auth.logout", "success")
            .context(ctx)
            .user(&current.user)
            .details(json!({"access_revoked": access_revoked, "refresh_family_revoked": refresh_family_revoked})),
    );
    Ok(LoggedOut {
        access_revoked,
        refresh_family_revoked,
    })
}

/// Logs `user` out everywhere: every access token, refresh token and browser session, and every
/// live channel they opened. Audited as `auth.logout_all`.
pub async fn logout_all(
    state: &AppState,
    ctx: Option<&RequestContext>,
    user: &User,
) -> Result<(), LoginError> {
    accounts::revoke_everything(state, user).await?;
    state.audit.record(
        AuditEvent::new("auth.logout_all", "success")
            .context(ctx)
            .user(user),
    );
    Ok(())
}

/// Rotates a refresh token (`auth::refresh::rotate`) and audits the outcome: the user and the
/// family whose next token the caller issues, or `None` (invalid, or reused: the family was
/// revoked).
pub async fn refresh(
    state: &AppState,
    ctx: Option<&RequestContext>,
    token: &str,
) -> Result<Option<(User, uuid::Uuid)>, LoginError> {
    use super::refresh::Rotation;
    let ip = ctx.map(|c| c.client_ip.to_string());
    match super::refresh::rotate(state, token, ip.as_deref()).await? {
        Rotation::Rotated { user, family_id } => {
            state.audit.record(
                AuditEvent::new("auth.refresh", "success")
                    .context(ctx)
                    .user(&user)
                    .details(json!({"family_id": family_id})),
            );
            Ok(Some((user, family_id)))
        }
        Rotation::Reused { user_id, family_id } => {
            let mut event = AuditEvent::new("auth.refresh_reuse", "denied")
                .context(ctx)
                .details(json!({"family_id": family_id, "action": "family revoked"}));
            event.actor_id = Some(user_id);
            state.audit.record(event);
            Ok(None)
        }
        Rotation::Invalid => {
            state.audit.record(
                AuditEvent::new("auth.refresh", "failure")
                    .context(ctx)
                    .details(json!({"reason": "invalid, expired or revoked"})),
            );
            Ok(None)
        }
    }
}

/// A signed-in person proves the password again before a sensitive change (a password change,
/// linking an identity provider): a budget of its own per account, the lockout gate, and a wrong
/// password counts towards the lockout. A refusal is audited as `event` with its reason.
pub async fn confirm_password(
    state: &AppState,
    ctx: Option<&RequestContext>,
    user: &User,
    password: SecretString,
    event: &'static str,
) -> Result<(), LoginError> {
    // Guessing the current password through a hijacked session is limited like a login.
    if let Verdict::Limited(q) = state
        .limiter
        .check(Policy::AuthAccount, &format!("password:{}", user.id))
        .await
    {
        return Err(LoginError::Limited(q));
    }
    let reason = match accounts::admit(state, user).await? {
        Gate::Locked => Some("locked"),
        Gate::Admitted(attempt) => {
            let verdict = match state
                .hasher
                .verify(password, Some(user.password_hash.clone()))
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    attempt.passed(state).await?;
                    return Err(accounts::AccountError::from(e).into());
                }
            };
            if matches!(verdict, super::password::Verification::Valid { .. }) {
                attempt.passed(state).await?;
                None
            } else {
                attempt.failed(state, user).await?;
                Some("wrong current password")
            }
        }
    };
    if let Some(reason) = reason {
        state.audit.record(
            AuditEvent::new(event, "failure")
                .context(ctx)
                .user(user)
                .details(json!({"reason": reason})),
        );
        return Err(LoginError::WrongCurrentPassword);
    }
    Ok(())
}

/// A signed-in person changes their own password: the current one is required (a stolen
/// session alone cannot take the account over), checked through the lockout gate and a budget of
/// its own; a wrong one counts towards the lockout. The new one must differ and be valid. Every
/// token and session of the account ends (`accounts::set_password`).
pub async fn change_password(
    state: &AppState,
    ctx: Option<&RequestContext>,
    user: &User,
    current_password: SecretString,
    new_password: SecretString,
) -> Result<(), LoginError> {
    use secrecy::ExposeSecret;
    let same = current_password.expose_secret() == new_password.expose_secret();
    confirm_password(state, ctx, user, current_password, "auth.password_change").await?;
    if same {
        return Err(accounts::AccountError::Invalid(
            "new_password",
            "The new password must differ from the current one".into(),
        )
        .into());
    }
    accounts::validate_new_password(new_password.expose_secret()).map_err(|e| match e {
        accounts::AccountError::Invalid(_, msg) => {
            accounts::AccountError::Invalid("new_password", msg)
        }
        other => other,
    })?;
    accounts::set_password(
        state,
        user,
        new_password,
        crate::audit::Actor::User(user, ctx),
    )
    .await?;
    Ok(())
}
