//! Password hashing: Argon2id for every new hash, bcrypt verification for hashes imported from
//! the original service (replaced by Argon2id at the next successful login).
//!
//! Hashing is CPU-bound and deliberately slow, so it runs on the blocking pool behind a
//! semaphore sized to the cores: a login flood queues here instead of starving the async workers.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::{PASSWORD_MAX_BYTES, PasswordHashSettings};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password is longer than {PASSWORD_MAX_BYTES} bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// The result of checking a password.
#[derive(Debug, PartialEq, Eq)]
pub enum Verification {
    Invalid,
    /// Correct; `rehash` holds a fresh Argon2id hash when the stored one is outdated.
    Valid {
        rehash: Option<String>,
    },
}

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Semaphore,
    /// Verified against when the account does not exist, so that case costs the same work.
    dummy_hash: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("m_cost", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .finish()
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

impl PasswordHasher {
    /// Builds the hasher; computes the dummy hash, so call it at start-up.
    pub fn new(settings: PasswordHashSettings) -> Result<Self, PasswordError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        let mut dummy = [0u8; 24];
        rand::fill(&mut dummy);
        let dummy_hash = argon2(&params)
            .hash_password(&dummy)
            .map_err(|e| PasswordError::Hashing(e.to_string()))?
            .to_string();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(PasswordHasher {
            inner: Arc::new(Inner {
                params,
                permits: Semaphore::new(cores),
                dummy_hash,
            }),
        })
    }

    pub fn params(&self) -> &Params {
        &self.inner.params
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| PasswordError::Hashing(e.to_string()))
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        if password.expose_secret().len() > PASSWORD_MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
        self.run(move |inner| hash_with(&inner.params, password.expose_secret()))
            .await?
    }

    /// Checks `password` against `stored`; with no stored hash (unknown user) the same work is
    /// done against a dummy hash and the answer is `Invalid`.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verification, PasswordError> {
        if password.expose_secret().len() > PASSWORD_MAX_BYTES {
            return Err(PasswordError::TooLong);
        }
        self.run(move |inner| {
            let candidate = password.expose_secret().as_bytes();
            let Some(stored) = stored else {
                let _ = argon2(&inner.params).verify_password(candidate, inner.dummy_hash.as_str());
                return Ok(Verification::Invalid);
            };
            let (valid, outdated) = if is_bcrypt(&stored) {
                // A bcrypt hash only ever covered the first 72 bytes; it is accepted as the
                // original service accepted it, then replaced by an Argon2id hash of the whole
                // password, so from the next login on every byte counts.
                (bcrypt::verify(candidate, &stored).unwrap_or(false), true)
            } else if let Ok(parsed) = PasswordHash::new(&stored) {
                let valid = argon2(&inner.params)
                    .verify_password(candidate, &parsed)
                    .is_ok();
                let outdated = parsed.algorithm.as_str() != "argon2id"
                    || Params::try_from(&parsed).map_or(true, |p| {
                        p.m_cost() != inner.params.m_cost()
                            || p.t_cost() != inner.params.t_cost()
                            || p.p_cost() != inner.params.p_cost()
                    });
                (valid, outdated)
            } else {
                // Unknown format: spend the same effort and refuse.
                let _ = argon2(&inner.params).verify_password(candidate, inner.dummy_hash.as_str());
                (false, false)
            };
            if !valid {
                return Ok(Verification::Invalid);
            }
            let rehash = if outdated {
                Some(hash_with(&inner.params, password.expose_secret())?)
            } else {
                None
            };
            Ok(Verification::Valid { rehash })
        })
        .await?
    }
}

fn hash_with(params: &Params, password: &str) -> Result<String, PasswordError> {
    argon2(params)
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}
