//! Client address and scheme from arbitrary Forwarded / X-Forwarded-For / X-Forwarded-Proto
//! headers: never panics; an untrusted peer's headers are ignored, and a trusted proxy can only
//! name an address that appears in the headers or the peer itself.
#![no_main]

#[path = "common.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr};

use axum::http::{HeaderMap, HeaderName};
use kyros::config::ProxyHeaders;
use kyros::security::client_ip::{parse_node, resolve};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = ["x-forwarded-for", "forwarded", "x-forwarded-proto"];
    let mut headers = HeaderMap::new();
    for (i, part) in data.split(|b| *b == 0).enumerate() {
        if let Some(v) = common::header_value(part) {
            headers.append(HeaderName::from_static(names[i % names.len()]), v);
        }
    }
    let proxy = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let stranger = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let trusted = ["10.0.0.0/8".parse().expect("cidr")];
    for mode in [ProxyHeaders::XForwarded, ProxyHeaders::Forwarded] {
        assert_eq!(
            resolve(stranger, false, &headers, &trusted, mode),
            (stranger, false)
        );
    }
    let (ip, _) = resolve(proxy, false, &headers, &trusted, ProxyHeaders::XForwarded);
    let (fw_ip, _) = resolve(proxy, false, &headers, &trusted, ProxyHeaders::Forwarded);
    for ip in [ip, fw_ip].into_iter().filter(|ip| *ip != proxy) {
        // Every run of address characters in the input, parsed: one of them must be the result
        // (spellings differ: `2001:01::1` is `2001:1::1`, `::ffff:10.0.0.3` is `10.0.0.3`).
        let text = String::from_utf8_lossy(data);
        let named = text
            .split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
            .flat_map(|t| [t, t.trim_end_matches(':')])
            .filter_map(|t| t.parse::<IpAddr>().ok().or_else(|| parse_node(t)))
            .any(|a| a == ip || a.to_canonical() == ip);
        assert!(named, "{ip} not in the headers");
    }
    for token in String::from_utf8_lossy(data).split(',') {
        let _ = parse_node(token);
    }
});
