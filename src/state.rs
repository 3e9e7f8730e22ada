//! Everything a request needs: built once at start-up, except the [`Live`] settings, which a
//! reload replaces in one step (see [`crate::reload`]).

use std::ops::Deref;
use std::sync::Arc;

use crate::audit::Audit;
use crate::auth::password::PasswordHasher;
use crate::auth::revocation::Revocations;
use crate::auth::sessions::SessionPolicy;
use crate::auth::tokens::TokenService;
use crate::auth::user_cache::UserCache;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::crypto::{KeyRing, Purpose, RetiredSecret};
use crate::orchestrator::events::EventBus;
use crate::security::csrf::CsrfKeys;
use crate::security::headers::SecurityHeaders;
use crate::security::rate_limit::Limiter;
use crate::store::Db;
use crate::store::redis::Redis;
use crate::telemetry::Telemetry;

#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

/// The settings in effect and what is derived from them. A reload builds a new one and swaps it
/// in; a request that loaded the previous one finishes with it.
#[derive(Debug)]
pub struct Live {
    pub settings: Settings,
    /// 1 at start-up, +1 per applied reload.
    pub generation: u64,
    /// The derived keys of every signing secret in effect (see [`KeyRing`] for the rule).
    pub keys: KeyRing,
    /// `SECRET_KEY`s replaced by live reloads since the process started.
    pub retired: Vec<RetiredSecret>,
    pub tokens: TokenService,
    pub session_policy: SessionPolicy,
    pub csrf: CsrfKeys,
    pub security_headers: SecurityHeaders,
    /// What the configuration, secret and TLS files held when these settings were read: the
    /// file watcher reloads only when that changes.
    pub files_seen: crate::reload::Fingerprint,
}

impl Live {
    /// Derives the key material and headers of `settings`; fails on settings the headers
    /// cannot carry.
    pub fn new(
        settings: Settings,
        generation: u64,
        retired: Vec<RetiredSecret>,
    ) -> anyhow::Result<Live> {
        let keys = KeyRing::new(
            &settings.secret_key,
            settings
                .previous_secret_keys
                .iter()
                .chain(retired.iter().map(|r| &r.secret)),
        );
        Ok(Live {
            tokens: TokenService::with_retired(&settings, &retired),
            session_policy: SessionPolicy::new(&settings),
            csrf: CsrfKeys::new(&settings, keys.all(Purpose::Csrf)),
            keys,
            retired,
            security_headers: SecurityHeaders::new(&settings)?,
            files_seen: crate::reload::fingerprint(&crate::reload::watched_files(&settings)),
            settings,
            generation,
        })
    }
}

impl Deref for Live {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

/// Applies a new log filter (`LOG_LEVEL`) to the process's subscriber.
pub type LogFilterReload = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct Inner {
    live: arc_swap::ArcSwap<Live>,
    /// One reload at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// One sweep of expired leases at a time (`orchestrator::leases`).
    pub lease_sweep: tokio::sync::Mutex<()>,
    /// The TLS configuration a reload loads the certificate into (set by `serve`).
    pub tls: std::sync::OnceLock<axum_server::tls_rustls::RustlsConfig>,
    /// The log filter a reload changes (set by the binary).
    pub log_filter: std::sync::OnceLock<LogFilterReload>,
    pub db: Db,
    pub clock: SharedClock,
    pub hasher: PasswordHasher,
    pub audit: Audit,
    pub redis: Option<Redis>,
    pub limiter: Arc<Limiter>,
    pub revocations: Arc<Revocations>,
    pub events: Arc<EventBus>,
    /// Request metrics of this instance (`/metrics`, `/api/v1/monitoring/*`).
    pub telemetry: Telemetry,
    /// Raised when the process starts to stop: long-lived connections end themselves.
    pub shutdown: Shutdown,
    /// Users of recent requests (one second).
    pub user_cache: UserCache,
    /// API key and session rows of recent requests (one second; see its bounds).
    pub credentials: crate::auth::credential_cache::CredentialCache,
    /// The identity providers of sign-in, as configured at start-up (`auth::oidc`).
    pub oidc: crate::auth::oidc::Providers,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("live", &self.live.load())
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// The stop signal for WebSockets and event streams, which a graceful HTTP shutdown would
/// otherwise wait on until the grace period runs out.
#[derive(Debug)]
pub struct Shutdown(tokio::sync::watch::Sender<bool>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(tokio::sync::watch::channel(false).0)
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the stop is signalled.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as the state, so an error cannot happen while this runs.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The settings in effect (and what is derived from them): loaded once per use, so a
    /// caller that needs several values consistently keeps the returned `Arc`.
    pub fn live(&self) -> Arc<Live> {
        self.0.live.load_full()
    }

    /// The settings in effect ([`AppState::live`]; `Live` derefs to [`Settings`]).
    pub fn settings(&self) -> Arc<Live> {
        self.0.live.load_full()
    }

    /// Puts `next` in effect as `generation` (a reload that passed validation): the live
    /// settings are swapped and the limiter and log filter follow. Returns what it replaced.
    pub fn apply(&self, next: Live) -> Arc<Live> {
        self.limiter.reconfigure(&next.settings);
        if let Some(reload) = self.log_filter.get()
            && let Err(e) = reload(&next.settings.log_filter())
        {
            tracing::warn!(error = %e, "the log filter could not be changed");
        }
        self.0.live.swap(Arc::new(next))
    }

    /// Connects and migrates the database and prepares the key material.
    pub async fn build(settings: Settings) -> anyhow::Result<AppState> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: SharedClock,
    ) -> anyhow::Result<AppState> {
        let db = Db::connect(&settings).await?;
        db.migrate().await?;
        crate::auth::accounts::backfill_username_keys(&db).await?;
        let hasher = PasswordHasher::new(settings.password_hash)?;
        let audit = Audit::start(db.clone(), clock.clone());
        let redis = match &settings.redis_url {
            Some(url) => {
                let timeout = std::time::Duration::from_millis(settings.redis_timeout_ms);
                let redis = Redis::start(url, &settings.redis_key_prefix, timeout)?;
                // Use it from the first request when it is up; otherwise the probe picks it up later.
                if !redis.connect_now().await {
                    tracing::warn!(
                        "redis is not reachable at start-up; using local state until it is"
                    );
                }
                Some(redis)
            }
            None => None,
        };
        let limiter = Limiter::start(&settings, redis.clone(), clock.clone());
        let revocations = Revocations::start(db.clone(), redis.clone(), clock.clone()).await?;
        spawn_maintenance(
            db.clone(),
            clock.clone(),
            settings.audit_retention_days,
            settings.event_retention_days,
            settings.job_output_retention_days,
        );
        let events = EventBus::start(redis.clone());
        let oidc = crate::auth::oidc::Providers::new(&settings.identity)?;
        let state = AppState(Arc::new(Inner {
            live: arc_swap::ArcSwap::from_pointee(Live::new(settings, 1, Vec::new())?),
            reload_lock: tokio::sync::Mutex::new(()),
            lease_sweep: tokio::sync::Mutex::new(()),
            tls: std::sync::OnceLock::new(),
            log_filter: std::sync::OnceLock::new(),
            db,
            clock,
            hasher,
            audit,
            redis,
            limiter,
            revocations,
            events,
            telemetry: Telemetry::start(),
            shutdown: Shutdown::default(),
            user_cache: UserCache::default(),
            credentials: Default::default(),
            oidc,
        }));
        crate::orchestrator::leases::spawn_sweeper(state.downgrade());
        spawn_wal_checkpoints(state.downgrade());
        crate::reload::spawn_peer_listener(state.downgrade());
        Ok(state)
    }

    /// A handle that does not keep the state alive (for background tasks that end with it).
    pub fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.0))
    }
}

/// A weak handle on the state: background tasks hold it and stop once the state is dropped.
#[derive(Debug, Clone)]
pub struct WeakState(std::sync::Weak<Inner>);

impl WeakState {
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}

/// Runs [`crate::store::checkpoint_wal`] every [`crate::store::WAL_CHECKPOINT_EVERY`] on
/// SQLite (nothing on PostgreSQL), until the state is dropped: the write-ahead log stays bounded
/// under a constant stream of writes.
fn spawn_wal_checkpoints(state: WeakState) {
    if state.upgrade().is_none_or(|s| s.db.engine() != "sqlite") {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(crate::store::WAL_CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { return };
            match crate::store::checkpoint_wal(&state.db).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!("write-ahead log busy; checkpoint again later"),
                Err(e) => tracing::warn!(error = %e, "write-ahead log checkpoint failed"),
            }
        }
    });
}

/// Hourly clean-up: events, job output and audit rows past retention, expired refresh tokens and
/// deny-list entries.
fn spawn_maintenance(
    db: Db,
    clock: SharedClock,
    retention_days: i64,
    event_retention_days: i64,
    output_retention_days: i64,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = clock.now();
            if let Err(e) = crate::store::events::purge_before(
                &db,
                now - chrono::Duration::days(event_retention_days),
            )
            .await
            {
                tracing::warn!(error = %e, "event retention clean-up failed");
            }
            if let Err(e) = crate::store::output::purge_before(
                &db,
                now - chrono::Duration::days(output_retention_days),
            )
            .await
            {
                tracing::warn!(error = %e, "job output retention clean-up failed");
            }
            if let Err(e) =
                crate::store::audit::purge_before(&db, now - chrono::Duration::days(retention_days))
                    .await
            {
                tracing::warn!(error = %e, "audit retention clean-up failed");
            }
            if let Err(e) = crate::store::tokens::purge_expired(&db, now).await {
                tracing::warn!(error = %e, "token clean-up failed");
            }
        }
    });
}
