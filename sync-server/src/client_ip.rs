//! The address a request comes from, for per-address limits, sign-in
//! throttles and the audit log: the TCP peer, unless that peer is one of the
//! configured reverse proxies (`trusted_proxies`), in which case it is the
//! address the proxy names in `X-Forwarded-For`. A header from anyone else
//! is ignored: a client could write any address there.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

/// The resolved client address, set on every request by [`resolve_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client behind `peer`. Each proxy appends the address it heard from,
/// so the list is read from the right, past our own proxies; the first other
/// entry is the client. Anything unparsable there stops the walk at the
/// proxy (an address we can vouch for) rather than at a guess.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => client = ip,
            Ok(ip) => return ip,
            Err(_) => return client,
        }
    }
    client
}

/// Middleware: resolves the client address once, before the limiters.
pub async fn resolve_layer(
    State(trusted): State<Arc<[IpAddr]>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(peer) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let client = resolve(peer, request.headers(), &trusted);
        request.extensions_mut().insert(ClientIp(client));
    }
    next.run(request).await
}

/// The per-address limiter's key: the resolved client address.
#[derive(Debug, Clone, Copy)]
pub struct ClientIpKey;

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        request
            .extensions()
            .get::<ClientIp>()
            .map(|c| c.0)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let headers = forwarded(&["203.0.113.9"]);
        assert_eq!(
            resolve(ip("198.51.100.1"), &headers, &[]),
            ip("198.51.100.1")
        );
        assert_eq!(
            resolve(ip("198.51.100.1"), &headers, &[ip("127.0.0.1")]),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_last_foreign_hop_is_the_client() {
        let proxy = ip("127.0.0.1");
        // The client wrote a forged first entry; the proxy appended the real peer.
        let headers = forwarded(&["10.9.9.9, 203.0.113.7"]);
        assert_eq!(resolve(proxy, &headers, &[proxy]), ip("203.0.113.7"));
        // Two of our proxies in a row, in two header lines.
        let inner = ip("10.0.0.2");
        let headers = forwarded(&["203.0.113.7", "10.0.0.2"]);
        assert_eq!(resolve(proxy, &headers, &[proxy, inner]), ip("203.0.113.7"));
        // No header: the proxy itself.
        assert_eq!(resolve(proxy, &HeaderMap::new(), &[proxy]), proxy);
        // Garbage after our proxies: the last address we can vouch for.
        let headers = forwarded(&["203.0.113.7, not-an-ip"]);
        assert_eq!(resolve(proxy, &headers, &[proxy]), proxy);
        // IPv6 clients.
        let headers = forwarded(&["2001:db8::5"]);
        assert_eq!(resolve(proxy, &headers, &[proxy]), ip("2001:db8::5"));
    }
}
