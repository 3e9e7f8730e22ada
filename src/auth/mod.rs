//! Authentication primitives, usable from HTTP handlers, the WebSocket and the CLI alike.

pub mod accounts;
pub mod password;
pub mod principal;
pub mod rbac;
pub mod sessions;
pub mod tokens;
