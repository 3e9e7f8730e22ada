//! Who is on the other end: the client address, whether the request came over HTTPS, and the
//! request id — one resolver for everything that needs them (rate limits, lockout, audit, logs).
//!
//! The socket peer is the truth unless it is a configured trusted proxy. Only then is the one
//! header family the proxies write read (`TRUSTED_PROXY_HEADERS`: `X-Forwarded-For` /
//! `X-Forwarded-Proto`, or RFC 7239 `Forwarded`), walking the chain from the right and stopping
//! at the first hop that is not a trusted proxy, so a client can never choose the address it is
//! keyed by — neither inside the chain nor with the other family's header.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use ipnet::IpNet;

use crate::config::ProxyHeaders;
pub use crate::context::RequestContext;
use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";

/// Marks connections accepted by the TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct TlsTransport;

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are treated as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop of a forwarding chain, oldest (client side) first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    addr: Option<IpAddr>,
    proto: Option<String>,
}

/// Parses a node of `Forwarded: for=` or an `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:80`,
/// `[2001:db8::1]:443`, `2001:db8::1`, possibly quoted. `unknown` and obfuscated ids give `None`.
pub fn parse_node(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Some(rest) = s.strip_prefix('[') {
        // `[v6]` or `[v6]:port` (a port may be obfuscated, RFC 7239 §6.3); nothing else after.
        let (addr, tail) = rest.split_once(']')?;
        let port_ok = tail.is_empty()
            || tail.strip_prefix(':').is_some_and(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        return if port_ok {
            addr.parse().ok().map(canonical)
        } else {
            None
        };
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<SocketAddr>().ok().map(|sa| canonical(sa.ip()))
}

/// RFC 7239 `Forwarded` elements, in order.
fn forwarded_hops(values: &[&str]) -> Vec<Hop> {
    let mut hops = Vec::new();
    for value in values {
        for element in value.split(',') {
            let mut hop = Hop {
                addr: None,
                proto: None,
            };
            for pair in element.split(';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => hop.addr = parse_node(v),
                    "proto" => hop.proto = Some(v.trim().trim_matches('"').to_ascii_lowercase()),
                    _ => {}
                }
            }
            hops.push(hop);
        }
    }
    hops
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// X-Forwarded-For entries (oldest first), the nearest proxy's X-Forwarded-Proto on the last.
fn x_forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    let protos: Vec<String> = header_values(headers, "x-forwarded-proto")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    let mut hops: Vec<Hop> = header_values(headers, "x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|entry| Hop {
            addr: parse_node(entry),
            proto: None,
        })
        .collect();
    // The nearest proxy's view of the scheme is the only one we can believe.
    let nearest_proto = protos.last().cloned();
    match hops.last_mut() {
        Some(last) => last.proto = nearest_proto,
        None => hops.push(Hop {
            addr: None,
            proto: nearest_proto,
        }),
    }
    hops
}

/// Resolves client address and scheme from the peer, the socket scheme and the headers.
///
/// Only the header family named by `mode` (`TRUSTED_PROXY_HEADERS`) is read, and only from a
/// trusted peer: the other family may have been written by the client itself (a proxy that
/// appends to `X-Forwarded-For` passes a client's `Forwarded` through untouched), so reading
/// it — or preferring it — would let the client choose its address and scheme.
pub fn resolve(
    peer: IpAddr,
    socket_https: bool,
    headers: &HeaderMap,
    trusted: &[IpNet],
    mode: ProxyHeaders,
) -> (IpAddr, bool) {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return (peer, socket_https);
    }
    let hops = match mode {
        ProxyHeaders::Forwarded => forwarded_hops(&header_values(headers, "forwarded")),
        ProxyHeaders::XForwarded => x_forwarded_hops(headers),
    };

    // Walk from the nearest hop towards the client while the hops are trusted proxies. Every
    // element visited was written by a trusted proxy; the scheme is the one of the furthest
    // visited element that states it (the client-facing proxy's view).
    let mut client = peer;
    let mut proto: Option<&str> = None;
    for hop in hops.iter().rev() {
        if let Some(p) = hop.proto.as_deref() {
            proto = Some(p);
        }
        match hop.addr {
            Some(addr) => {
                client = addr;
                if !is_trusted(addr, trusted) {
                    break;
                }
            }
            None => break,
        }
    }
    let https = proto.map_or(socket_https, |p| p == "https" || p == "wss");
    (client, https)
}

fn valid_request_id(value: &HeaderValue) -> Option<Arc<str>> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| s.into())
}

/// A fresh request id: a UUID v4 (RFC 9562 §5.4) from the thread's CSPRNG, which `rand` seeds
/// from the OS once, rather than `getrandom` (a system call) on every request.
fn new_request_id() -> Arc<str> {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    uuid.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .into()
}

/// Middleware: builds the `RequestContext` and echoes the request id on the response.
pub async fn request_context(
    state: &AppState,
    mut request: Request,
    next: impl AsyncFnOnce(Request) -> Response,
) -> Response {
    let extensions = request.extensions();
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|m| m.0.ip())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let socket_https = request.extensions().get::<TlsTransport>().is_some();
    let trusted = &state.settings().trusted_proxies;
    let (client_ip, https) = resolve(
        peer,
        socket_https,
        request.headers(),
        trusted,
        state.settings().proxy_headers,
    );
    // A request id is kept only from a trusted proxy; anyone else could use it to forge log lines.
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|_| is_trusted(peer, trusted))
        .and_then(valid_request_id)
        .unwrap_or_else(new_request_id);
    let header =
        HeaderValue::from_str(&request_id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    request.headers_mut().insert(REQUEST_ID, header.clone());
    request.extensions_mut().insert(RequestContext {
        client_ip,
        peer: canonical(peer),
        https,
        request_id,
    });
    let mut response = next(request).await;
    response.headers_mut().insert(REQUEST_ID, header);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const XF: ProxyHeaders = ProxyHeaders::XForwarded;
    const FW: ProxyHeaders = ProxyHeaders::Forwarded;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address_or_scheme() {
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=2.2.2.2;proto=https"),
        ]);
        assert_eq!(
            resolve(ip("9.9.9.9"), false, &h, &nets(&["10.0.0.0/8"]), XF),
            (ip("9.9.9.9"), false)
        );
        assert_eq!(
            resolve(ip("9.9.9.9"), false, &h, &[], XF),
            (ip("9.9.9.9"), false)
        );
    }

    #[test]
    fn the_chain_is_walked_right_to_left_to_the_first_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        // client-supplied garbage, the real client, then two of our proxies
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.1"), false, &h, &trusted, XF),
            (ip("203.0.113.7"), true)
        );
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.1"), false, &h, &trusted, XF).0,
            ip("203.0.113.7")
        );
        // Only the nearest proxy's proto counts: a client's "https" prepended is ignored.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https, http"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.1"), false, &h, &trusted, XF),
            (ip("203.0.113.7"), false)
        );
    }

    #[test]
    fn forwarded_header_is_understood() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client-facing proxy saw https; the inner hop between proxies was plain http.
        let h = headers(&[(
            "forwarded",
            "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.1.2.3;proto=http",
        )]);
        assert_eq!(
            resolve(ip("10.0.0.1"), false, &h, &trusted, FW),
            (ip("2001:db8:cafe::17"), true)
        );
        let h = headers(&[("forwarded", "for=198.51.100.9:1234;proto=http")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), true, &h, &trusted, FW),
            (ip("198.51.100.9"), false)
        );
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), false, &h, &trusted, FW).0,
            ip("10.0.0.1")
        );
    }

    #[test]
    fn only_the_configured_header_family_is_read() {
        let trusted = nets(&["127.0.0.1/32"]);
        // The proxy appended X-Forwarded-*; the client added its own Forwarded in front.
        let h = headers(&[
            ("forwarded", "for=198.51.100.1;proto=https"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "http"),
        ]);
        assert_eq!(
            resolve(ip("127.0.0.1"), false, &h, &trusted, XF),
            (ip("203.0.113.7"), false)
        );
        // A proxy that writes Forwarded passes a client's X-Forwarded-* through: ignored.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.7;proto=http"),
        ]);
        assert_eq!(
            resolve(ip("127.0.0.1"), false, &h, &trusted, FW),
            (ip("203.0.113.7"), false)
        );
        // Without the configured family the peer itself is the client.
        let h = headers(&[("forwarded", "for=198.51.100.1;proto=https")]);
        assert_eq!(
            resolve(ip("127.0.0.1"), false, &h, &trusted, XF),
            (ip("127.0.0.1"), false)
        );
    }

    #[test]
    fn mapped_ipv6_peers_match_ipv4_ranges() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            resolve(ip("::ffff:10.0.0.1"), false, &h, &nets(&["10.0.0.0/8"]), XF).0,
            ip("203.0.113.7")
        );
    }

    #[test]
    fn nodes_parse_in_all_their_forms() {
        assert_eq!(parse_node(" 1.2.3.4 "), Some(ip("1.2.3.4")));
        assert_eq!(parse_node("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_node("\"[::1]:80\""), Some(ip("::1")));
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("_hidden"), None);
        assert_eq!(parse_node("[::1]:_p1"), Some(ip("::1")));
        // Found by fuzzing: nothing may follow the bracket but a port.
        assert_eq!(parse_node("[2001::1]\t=\"[2000::1]:1:"), None);
        assert_eq!(parse_node("[::1]x"), None);
        assert_eq!(parse_node("unknown"), None);
    }
}
