//! The client's address behind load balancers: believed from `Forwarded` (RFC 7239) or
//! `X-Forwarded-For` only when the TCP peer is a configured trusted proxy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// The client's address for a request being served: its TCP peer (from the server's
/// `ConnectInfo`; unspecified when served without one) through [`client_addr`].
pub fn request_client_addr(parts: &Parts, trusted: &[IpNet]) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(addr)| {
            addr.ip()
        });
    client_addr(peer, &parts.headers, trusted)
}

/// The client's address: `peer`, or, when `peer` is trusted, the nearest untrusted hop of the
/// forwarding headers (read right to left, `Forwarded` before `X-Forwarded-For`).
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |addr: &IpAddr| trusted.iter().any(|net| net.contains(addr));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(forwarded_for)
        .collect();
    if hops.is_empty() {
        hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
    }
    hops.into_iter()
        .rev()
        .find(|hop| !is_trusted(hop))
        .unwrap_or(peer)
}

/// The address in one `Forwarded` element's `for=` parameter (`for=192.0.2.1`,
/// `for="[2001:db8::1]:4711"`, `for="192.0.2.1:80"`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').map(str::trim).find_map(|pair| {
        pair.split_once('=')
            .filter(|(key, _)| key.eq_ignore_ascii_case("for"))
            .map(|(_, value)| value)
    })?;
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    value.parse().ok().or_else(|| {
        value
            .rsplit_once(':')
            .and_then(|(host, _)| host.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn believes_forwarding_headers_only_from_trusted_peers() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.1.1.1".parse().unwrap());
        let lb: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_addr(lb, &headers, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_addr(stranger, &headers, &trusted), stranger);
        assert_eq!(client_addr(lb, &HeaderMap::new(), &trusted), lb);
    }

    #[test]
    fn reads_rfc7239_forwarded() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let lb: IpAddr = "10.0.0.5".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "forwarded",
            r#"for="[2001:db8:cafe::17]:4711";proto=https, for=10.2.2.2"#
                .parse()
                .unwrap(),
        );
        headers.insert("x-forwarded-for", "198.51.100.1".parse().unwrap());
        assert_eq!(
            client_addr(lb, &headers, &trusted),
            "2001:db8:cafe::17".parse::<IpAddr>().unwrap()
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "forwarded",
            "for=192.0.2.60:80;by=203.0.113.43".parse().unwrap(),
        );
        assert_eq!(
            client_addr(lb, &headers, &trusted),
            "192.0.2.60".parse::<IpAddr>().unwrap()
        );
        assert_eq!(forwarded_for("for=unknown"), None);
    }
}
