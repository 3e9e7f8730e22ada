//! Authentication primitives, usable from HTTP handlers, the WebSocket and the CLI alike.

pub mod accounts;
pub mod api_keys;
pub mod credential_cache;
pub mod liveness;
pub mod login;
pub mod mfa;
pub mod oidc;
pub mod password;
pub mod policy;
pub mod principal;
pub mod rbac;
pub mod refresh;
pub mod revocation;
pub mod sessions;
pub mod tickets;
pub mod tokens;
pub mod user_cache;
