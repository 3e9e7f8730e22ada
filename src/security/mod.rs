//! The security layers of the request path (DESIGN.md §5) and the audit log.

pub mod audit;
pub mod client_ip;
pub mod cookies;
pub mod cors;
pub mod csrf;
pub mod headers;
pub mod https;
pub mod limits;
pub mod rate_limit;
