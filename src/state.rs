//! Everything a request needs, built once at start-up.

use std::ops::Deref;
use std::sync::Arc;

use crate::auth::password::PasswordHasher;
use crate::auth::sessions::SessionPolicy;
use crate::auth::tokens::TokenService;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::security::audit::Audit;
use crate::security::csrf::CsrfKeys;
use crate::security::headers::SecurityHeaders;
use crate::store::Db;

#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub settings: Settings,
    pub db: Db,
    pub clock: SharedClock,
    pub hasher: PasswordHasher,
    pub tokens: TokenService,
    pub audit: Audit,
    pub session_policy: SessionPolicy,
    pub csrf: CsrfKeys,
    pub security_headers: SecurityHeaders,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
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
        let hasher = PasswordHasher::new(settings.password_hash)?;
        let tokens = TokenService::new(&settings);
        let audit = Audit::start(db.clone(), clock.clone());
        Ok(AppState(Arc::new(Inner {
            session_policy: SessionPolicy::new(&settings),
            csrf: CsrfKeys::new(&settings),
            security_headers: SecurityHeaders::new(&settings)?,
            settings,
            db,
            clock,
            hasher,
            tokens,
            audit,
        })))
    }
}
