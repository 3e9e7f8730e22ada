//! Domain types shared by every layer: the user and the role model of the original service,
//! the scopes of API keys. No rules of their own beyond parsing and ordering, no I/O — the store
//! reads and writes them, services decide with them, entry points show them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

pub mod key_format;
pub mod scope;

pub use scope::{Scope, Scopes};

/// The outcome of one database ping.
#[derive(Debug, Clone, Copy)]
pub struct DbCheck {
    pub healthy: bool,
    pub latency: std::time::Duration,
}

impl DbCheck {
    pub fn status(&self) -> &'static str {
        if self.healthy { "healthy" } else { "unhealthy" }
    }

    /// Milliseconds, three decimals; `None` when the ping failed.
    pub fn latency_ms(&self) -> Option<f64> {
        self.healthy
            .then(|| (self.latency.as_secs_f64() * 1_000_000.0).round() / 1000.0)
    }
}

/// The event stream of the collaboration log (`/api/v1/events`), shared by everyone signed in.
pub const COLLAB: &str = "collab";
/// The event stream of jobs and tasks, visible as the jobs are (`auth::policy`).
pub const ORCHESTRATOR: &str = "orchestrator";

/// The three roles of the original service, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Moderator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::User, Role::Moderator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// Position in the hierarchy: user 0, moderator 1, admin 2.
    pub fn level(self) -> u8 {
        self as u8
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "user" => Ok(Role::User),
            "moderator" => Ok(Role::Moderator),
            "admin" => Ok(Role::Admin),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Consecutive failed logins since the last success or unlock.
    pub failed_logins: i32,
    pub locked_until: Option<DateTime<Utc>>,
    /// Access tokens carry the generation they were issued in; raising it revokes them all.
    pub token_generation: i64,
}

impl User {
    pub fn locked_at(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}
