//! The client's address. Only a peer listed in `server.trusted_proxies` may name the client in
//! `X-Forwarded-For`; from anyone else the header is ignored, so a client cannot pick the address
//! the audit log records or the per-address login throttle counts.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The header reverse proxies append the address they received from to.
pub const FORWARDED_FOR: &str = "X-Forwarded-For";

/// The client as seen through trusted proxies: starting from the socket peer, each hop that is a
/// trusted proxy is replaced by the address it says it received from (`X-Forwarded-For` read
/// from the right), until a hop is not trusted. A malformed entry stops the walk at the last
/// trusted hop's word.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_header_is_ignored_from_an_untrusted_peer() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        assert_eq!(
            client_address(ip("192.0.2.7"), &headers(&["203.0.113.9"]), &trusted),
            ip("192.0.2.7")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers(&["203.0.113.9"]), &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_hops_are_walked_from_the_right() {
        let trusted = ["10.0.0.0/8".parse().expect("net")];
        // The client made up the first entry; the proxies appended the rest.
        let chain = headers(&["198.51.100.1, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(
            client_address(ip("10.0.0.1"), &chain, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers(&["garbage"]), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers(&[]), &trusted),
            ip("10.0.0.1")
        );
    }
}
