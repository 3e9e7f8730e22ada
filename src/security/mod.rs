//! The security layers of the request path (DESIGN.md §5): client address and scheme, HTTPS,
//! headers, CORS, CSRF, limits, rate limiting. They may use `auth` (who is calling); `auth` never
//! uses them (the audit log and the request context are core modules both share).

pub mod client_ip;
pub mod cors;
pub mod csrf;
pub mod headers;
pub mod https;
pub mod limits;
pub mod rate_limit;
