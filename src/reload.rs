//! Settings that change while the service runs.
//!
//! One procedure, [`reload`], for every trigger: `SIGHUP`, a change of the configuration file or
//! of a secret file ([`spawn_watcher`]), `POST /api/v1/admin/settings/reload`, and another
//! instance's reload announced over the event bus ([`spawn_peer_listener`]). It
//!
//! 1. reads the sources again: the environment as the process started with it, the
//!    configuration file and every `_FILE` secret (see [`crate::config::sources`]);
//! 2. keeps the start-up value of every setting that cannot change live
//!    ([`crate::config::options::Apply::Restart`]), reporting each one that differs as
//!    "restart required";
//! 3. validates the result exactly as at start-up; a failure changes nothing, logs one line,
//!    writes the audit row `settings.reload` (`failure`, with the message, which names the
//!    variable and never a value) and is answered 422 on the API;
//! 4. loads the TLS certificate again (new handshakes use it; live connections continue);
//! 5. swaps the [`crate::state::Live`] settings in one step — rate-limit budgets, penalties and
//!    lockout, CORS origins, the CSP, trusted proxies, HTTPS exemptions, the metrics token and
//!    the signing keys take effect from the next request — and applies the log filter;
//! 6. writes the audit row `settings.reload` (`success`, with the names of the changed and of
//!    the restart-required settings; never values).
//!
//! Key rotation: when `SECRET_KEY` changes, the previous key joins the verification ring (see
//! [`crate::crypto::KeyRing`]) — it signs nothing any more, verifies access tokens for one
//! access-token lifetime, and keeps what was derived from it (sessions, refresh tokens, API
//! keys, TOTP secrets, CSRF tokens) working until the process restarts; list it in
//! `PREVIOUS_SECRET_KEYS` to keep it longer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::audit::{Actor, AuditEvent};
use crate::config::options::{self, Apply};
use crate::config::{Settings, sources};
use crate::state::{AppState, Live, WeakState};

/// What asked for a reload (audited and logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    FileChange,
    Api,
    /// Another instance's reload, announced over the event bus.
    Peer,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::FileChange => "file-change",
            Trigger::Api => "api",
            Trigger::Peer => "peer",
        }
    }
}

/// The outcome of a reload that applied.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReloadReport {
    /// The settings generation now in effect (1 at start-up, +1 per applied reload).
    pub generation: u64,
    /// Settings whose value changed and now apply (environment names).
    pub changed: Vec<&'static str>,
    /// Settings whose value changed but apply only after a restart (environment names).
    pub restart_required: Vec<&'static str>,
}

/// A reload that was refused; nothing changed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ReloadError(pub String);

/// Reads, checks and applies the settings again (see the module documentation).
pub async fn reload(
    state: &AppState,
    trigger: Trigger,
    actor: Actor<'_>,
) -> Result<ReloadReport, ReloadError> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let outcome = prepare(state).await;
    let event = AuditEvent::new(
        "settings.reload",
        if outcome.is_ok() {
            "success"
        } else {
            "failure"
        },
    )
    .by(actor);
    match outcome {
        Err(e) => {
            tracing::warn!(trigger = trigger.as_str(), reason = %e, "settings reload refused; nothing changed");
            state.audit.record(event.details(json!({
                "trigger": trigger.as_str(),
                "reason": e.0,
            })));
            Err(e)
        }
        Ok((next, changed, restart_required)) => {
            let generation = next.generation;
            let previous = state.apply(next);
            let report = ReloadReport {
                generation,
                changed,
                restart_required,
            };
            tracing::info!(
                trigger = trigger.as_str(),
                generation,
                changed = ?report.changed,
                restart_required = ?report.restart_required,
                "settings reloaded"
            );
            if !report.restart_required.is_empty() {
                tracing::warn!(
                    restart_required = ?report.restart_required,
                    "these settings changed but apply only after a restart"
                );
            }
            drop(previous);
            state.audit.record(event.details(json!({
                "trigger": trigger.as_str(),
                "generation": report.generation,
                "changed": report.changed,
                "restart_required": report.restart_required,
            })));
            Ok(report)
        }
    }
}

type Prepared = (Live, Vec<&'static str>, Vec<&'static str>);

/// The new settings, the names that changed and apply, and the names that need a restart.
async fn prepare(state: &AppState) -> Result<Prepared, ReloadError> {
    let current = state.live();
    // Before reading: a change made while this runs shows as a difference next time.
    let seen = fingerprint(&watched_files(&current.settings));
    let mut resolved = sources::resolve(&current.settings.base).map_err(|e| ReloadError(e.0))?;
    let mut restart_required = Vec::new();
    for spec in options::OPTIONS
        .iter()
        .filter(|o| o.apply == Apply::Restart)
    {
        let old = current.settings.effective.get(spec.env);
        if resolved.vars.value(spec.env) != old {
            restart_required.push(spec.env);
        }
        // Keep what the process started with.
        match old {
            Some(v) => resolved.vars.set(spec.env, v.to_owned()),
            None => resolved.vars.remove(spec.env),
        };
        resolved.sources.insert(
            spec.env,
            current
                .settings
                .sources
                .get(spec.env)
                .cloned()
                .unwrap_or(sources::Source::Default),
        );
    }
    let mut next = Settings::from_resolved(resolved).map_err(|e| ReloadError(e.0))?;
    // The identity providers (their OIDC_<NAME>_* variables too) are read at start-up.
    next.identity = current.settings.identity.clone();
    let changed: Vec<&'static str> = options::OPTIONS
        .iter()
        .filter(|o| o.apply == Apply::Reload)
        .filter(|o| next.effective.get(o.env) != current.settings.effective.get(o.env))
        .map(|o| o.env)
        .collect();
    // A replaced SECRET_KEY joins the ring of retired secrets (see `crypto::KeyRing`).
    let mut retired = current.retired.clone();
    let rotated = !crate::crypto::ct_eq(
        current.settings.secret_key.expose_secret().as_bytes(),
        next.secret_key.expose_secret().as_bytes(),
    );
    if rotated {
        retired.push(crate::crypto::RetiredSecret {
            secret: current.settings.secret_key.clone(),
            retired_at: state.clock.now(),
        });
    }
    let mut next = Live::new(next, current.generation + 1, retired)
        .map_err(|e| ReloadError(format!("{e:#}")))?;
    next.files_seen = seen;
    // Last, as the only step with an effect before the swap: the certificate is read again on
    // every reload (its files may change under the same names); one that does not load
    // refuses the whole reload, and the certificate in use stays.
    if let Some(tls) = state.tls.get()
        && let (Some(cert), Some(key)) = (&next.tls_cert_file, &next.tls_key_file)
    {
        tls.reload_from_pem_file(cert, key).await.map_err(|e| {
            ReloadError(format!(
                "TLS_CERT_FILE/TLS_KEY_FILE could not be loaded ({})",
                e.kind()
            ))
        })?;
    }
    if rotated {
        tracing::warn!(
            "SECRET_KEY changed: the previous key now only verifies (access tokens for one \
             access-token lifetime, stored credentials until a restart); add it to \
             PREVIOUS_SECRET_KEYS to keep what was derived from it working after a restart"
        );
    }
    Ok((next, changed, restart_required))
}

/// The files a reload reads: the configuration file, every secret file, the TLS files.
pub fn watched_files(settings: &Settings) -> Vec<PathBuf> {
    let mut files = settings.files.clone();
    if let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) {
        files.push(cert.clone());
        files.push(key.clone());
    }
    files
}

/// What some files hold: the SHA-256 of each, or `None` where it cannot be read.
pub type Fingerprint = BTreeMap<PathBuf, Option<[u8; 32]>>;

/// What the files hold now, to tell a real change from a touch.
pub fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    use sha2::Digest;
    files
        .iter()
        .map(|f| {
            let digest = std::fs::read(f)
                .ok()
                .map(|b| sha2::Sha256::digest(&b).into());
            (f.clone(), digest)
        })
        .collect()
}

/// Reloads on `SIGHUP` until the state is dropped.
pub fn spawn_signal_listener(state: WeakState) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("SIGHUP cannot be received; reload with the admin API instead");
            return;
        };
        while hangups.recv().await.is_some() {
            let Some(state) = state.upgrade() else { return };
            let _ = reload(&state, Trigger::Signal, Actor::System).await;
        }
    });
    #[cfg(not(unix))]
    let _ = state;
}

/// Watches the directories of the configuration file, the secret files and the TLS files
/// (Kubernetes replaces secret files by swapping a symlink in their directory, which a watch on
/// the file itself would miss) and reloads when what one of them holds changes. Changes are
/// gathered for [`SETTLE`] first, so that a rotation writing several files reloads once.
pub fn spawn_watcher(state: WeakState) {
    use notify::{RecursiveMode, Watcher};
    let Some(live) = state.upgrade().map(|s| s.live()) else {
        return;
    };
    let files = watched_files(&live.settings);
    if files.is_empty() || !live.settings.reload_on_file_change {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "settings files cannot be watched; reload with SIGHUP or the admin API");
            return;
        }
    };
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            f.parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
        })
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "a settings directory cannot be watched");
        }
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        // The fingerprint of a refused reload: the same content is not tried again.
        let mut refused = None;
        while rx.recv().await.is_some() {
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            let Some(state) = state.upgrade() else { return };
            let live = state.live();
            let now = fingerprint(&watched_files(&live.settings));
            // Unchanged since the settings in effect were read (or already reloaded by a
            // signal, the API or a peer), or the content a reload already refused.
            if now == live.files_seen || refused.as_ref() == Some(&now) {
                continue;
            }
            if reload(&state, Trigger::FileChange, Actor::System)
                .await
                .is_err()
            {
                refused = Some(now);
            }
        }
    });
}

/// How long file events are gathered before a reload.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Reloads when another instance announces a reload made through its admin API
/// ([`crate::orchestrator::events::Control::RELOAD_SETTINGS`] over the event bus).
pub fn spawn_peer_listener(state: WeakState) {
    let Some(mut messages) = state.upgrade().map(|s| s.events.control()) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let message = match messages.recv().await {
                Ok(m) => m,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            if message.kind != crate::orchestrator::events::Control::RELOAD_SETTINGS {
                continue;
            }
            let Some(state) = state.upgrade() else { return };
            let _ = reload(&state, Trigger::Peer, Actor::System).await;
        }
    });
}

/// The effective settings as `GET /api/v1/admin/settings` and `kyros config show` print them:
/// name, value (`None` for a secret or an unset value), whether it is set, where it came from,
/// when a change applies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettingView {
    /// The environment variable.
    pub name: &'static str,
    /// The key in the configuration file.
    pub key: &'static str,
    /// The value; `null` for a secret (never shown) or a setting left unset.
    pub value: Option<String>,
    pub secret: bool,
    /// Whether a value is set (for secrets, the only thing shown).
    pub set: bool,
    /// `default`, `file`, `env`, or `_FILE (<path>)`.
    pub source: String,
    /// `reload` or `restart`.
    pub applies_on: &'static str,
}

/// Every setting of `settings` as [`SettingView`]s.
pub fn views(settings: &Settings) -> Vec<SettingView> {
    options::OPTIONS
        .iter()
        .map(|o| {
            let value = settings.effective.get(o.env);
            SettingView {
                name: o.env,
                key: o.key,
                value: if o.secret {
                    None
                } else {
                    value.map(str::to_owned)
                },
                secret: o.secret,
                set: value.is_some(),
                source: settings
                    .sources
                    .get(o.env)
                    .map(sources::Source::describe)
                    .unwrap_or_else(|| "default".into()),
                applies_on: match o.apply {
                    Apply::Reload => "reload",
                    Apply::Restart => "restart",
                },
            }
        })
        .collect()
}

/// Reloads this instance, then (when it applied) asks every other instance to reload too,
/// over the event bus: `POST /api/v1/admin/settings/reload`.
pub async fn reload_everywhere(
    state: &AppState,
    actor: Actor<'_>,
) -> Result<ReloadReport, ReloadError> {
    let report = reload(state, Trigger::Api, actor).await?;
    state
        .events
        .announce(crate::orchestrator::events::Control::RELOAD_SETTINGS)
        .await;
    Ok(report)
}
