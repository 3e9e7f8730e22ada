//! What every layer may know about the request being served: the resolved client address, the
//! socket peer, whether the client's connection is HTTPS, and the request id. Built once by the
//! request-context middleware (`security::client_ip`); read by services for their audit rows.

use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The resolved client address.
    pub client_ip: IpAddr,
    /// The socket peer.
    pub peer: IpAddr,
    /// Whether the client's connection is HTTPS (this socket, or a trusted proxy says so).
    pub https: bool,
    /// Shared, so the layers and the audit log copy a pointer, not the text.
    pub request_id: std::sync::Arc<str>,
}
