//! The webhook SSRF guard: webhooks reach public addresses only (unless
//! `webhooks.allow_private`).
//!
//! The check and the connection use the same resolution: [`PublicOnly`] is the HTTP client's
//! resolver, so the addresses checked are the addresses connected to (a name that answers a
//! public address to a first lookup and an internal one to the next — DNS rebinding — gains
//! nothing). IP literals, which no resolver sees, are checked by [`literal_allowed`]. Errors
//! never name the addresses a host resolved to: delivery errors are shown to every role.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why the guard refused a host.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "refused: the url's host is an internal address; set webhooks.allow_private to allow it"
    )]
    NotPublic,
    #[error("cannot resolve the url's host")]
    CannotResolve,
}

/// A resolver that answers only the public addresses of a name, and an error when it has none.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(found) => found.collect(),
                Err(_) => return Err(refused(Refused::CannotResolve)),
            };
            // One internal answer refuses the name: a host that mixes them is not a receiver.
            if found.iter().any(|a| internal(a.ip())) {
                return Err(refused(Refused::NotPublic));
            }
            if found.is_empty() {
                return Err(refused(Refused::CannotResolve));
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

fn refused(why: Refused) -> BoxError {
    Box::new(why)
}

/// Whether the URL's host may be connected to without a lookup: a name (left to
/// [`PublicOnly`]) or a public IP literal.
pub fn literal_allowed(url: &url::Url) -> Result<(), Refused> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) if internal(IpAddr::V4(ip)) => Err(Refused::NotPublic),
        Some(url::Host::Ipv6(ip)) if internal(IpAddr::V6(ip)) => Err(Refused::NotPublic),
        Some(_) => Ok(()),
        None => Err(Refused::CannotResolve),
    }
}

/// Whether an error of the HTTP client came from the guard.
pub fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = err.source();
    }
    None
}

/// Addresses a webhook must not reach: loopback, private, link-local, shared (CGNAT), benchmark,
/// reserved, multicast and broadcast ranges, and IPv6 forms that embed an IPv4 address
/// (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo), which could lead back to one of those.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0/24
        || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18/15
        || a >= 240 // reserved, 240/4
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || s[..6] == [0, 0, 0, 0, 0, 0xffff] // IPv4-mapped, ::ffff:0:0/96
        || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible, ::/96
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64, 64:ff9b::/96 and 64:ff9b:1::/48
        || s[0] == 0x2002 // 6to4, 2002::/16
        || (s[0] == 0x2001 && s[1] == 0) // Teredo, 2001::/32
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only, 100::/64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "198.18.0.1",
            "198.19.255.255",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2001:0:4136:e378::1",
        ] {
            assert!(internal(ip.parse().expect("ip")), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "203.0.113.7",
            "100.63.255.255",
            "100.128.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2001:db8::1",
            "2a00:1450:4001::1",
        ] {
            assert!(!internal(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_without_a_lookup() {
        let check = |u: &str| literal_allowed(&url::Url::parse(u).expect("url")).is_ok();
        assert!(!check("http://127.0.0.1:8080/x"));
        assert!(!check("http://[::ffff:127.0.0.1]/x"));
        assert!(!check("http://[64:ff9b::a00:1]/x"));
        assert!(
            check("http://localhost/x"),
            "names are left to the resolver"
        );
        assert!(check("https://8.8.8.8/x"));
        assert!(check("https://hooks.example.com/x"));
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_internal_addresses_without_naming_them() {
        for name in ["localhost", "no-such-host.invalid"] {
            let Ok(name) = name.parse::<Name>() else {
                panic!("a name")
            };
            let Err(err) = PublicOnly.resolve(name).await else {
                panic!("refused")
            };
            let text = err.to_string();
            assert!(
                !text.contains("127.0.0.1") && !text.contains("::1"),
                "{text}"
            );
            assert!(refusal(err.as_ref()).is_some(), "{text}");
        }
    }
}
