//! Guards every outgoing request (federation calls, push deliveries): the URL must be
//! http(s), and the address it resolves to must not be the box itself or a special range,
//! so a peer or a user-supplied push URL cannot point the server at its own services
//! (SSRF). Private LAN ranges are allowed: LAN peers live there. The request then goes to
//! the address that was checked, never to a second resolution of the name.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why an outgoing request was not sent.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Not an http(s) URL with a host.
    #[error("invalid URL {0}")]
    BadUrl(String),
    /// The name did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The address is the box itself or a special range.
    #[error("refusing to send to {0}: it is this box or a special address")]
    Forbidden(IpAddr),
    /// The peer presented another TLS certificate than the one pinned for it.
    #[error(
        "request to {url} failed: the TLS certificate of {origin} changed (pinned SHA-256 \
         {pinned}, presented {presented}); refusing to send"
    )]
    CertificateChanged {
        /// Target.
        url: String,
        /// The target's origin.
        origin: String,
        /// The pinned fingerprint.
        pinned: String,
        /// The one presented.
        presented: String,
    },
    /// Connecting or exchanging failed.
    #[error("request to {url} failed: {message}")]
    Failed {
        /// Target.
        url: String,
        /// What happened.
        message: String,
    },
}

/// Whether `ip` may be the target of an outgoing request. `allow_loopback` lets a
/// request reach this box itself (loopback and its own addresses): for development, and
/// for services on the box the administrator named (a local push distributor).
pub fn allowed(ip: IpAddr, allow_loopback: bool, own: &[IpAddr]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    if ip.is_loopback() || own.contains(&ip) {
        return allow_loopback;
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => !(v4.is_link_local() || v4.is_broadcast() || v4.octets()[0] == 0),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// The box's own interface addresses (besides loopback).
pub fn own_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// Resolves `url` to one allowed address.
pub async fn resolve(
    url: &str,
    allow_loopback: bool,
) -> Result<(url::Url, SocketAddr), OutboundError> {
    let parsed = url::Url::parse(url).map_err(|_| OutboundError::BadUrl(url.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(OutboundError::BadUrl(url.to_string()));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| OutboundError::BadUrl(url.to_string()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let lookup = host.clone();
    let addresses: Vec<SocketAddr> = smol::unblock(move || {
        use std::net::ToSocketAddrs;
        (lookup.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.collect())
    })
    .await
    .map_err(|_| OutboundError::Resolve(host.clone()))?;
    let own = own_addresses();
    let mut refused = None;
    for address in addresses {
        if allowed(address.ip(), allow_loopback, &own) {
            return Ok((parsed, address));
        }
        refused = Some(address.ip());
    }
    Err(match refused {
        Some(ip) => OutboundError::Forbidden(ip),
        None => OutboundError::Resolve(host),
    })
}

/// An answer, fully read (bounded).
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
    /// The `Hearth-Signature` header of the answer, if it had one (a peer signs its
    /// answers to server calls: see [`super::signature`]).
    pub signature: Option<String>,
}

/// Largest answer body read from a peer.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// Sends one request to a checked address over a fresh connection, within `timeout`.
pub async fn send(
    url: &str,
    method: http_types::Method,
    headers: &[(&str, String)],
    body: Vec<u8>,
    allow_loopback: bool,
    timeout: Duration,
    pins: &crate::lan::tls::Pins,
) -> Result<Answer, OutboundError> {
    use futures_lite::{AsyncReadExt, FutureExt};
    let (parsed, address) = resolve(url, allow_loopback).await?;
    let failed = |message: String| OutboundError::Failed {
        url: url.to_string(),
        message,
    };
    let exchange = async {
        let tcp = smol::net::TcpStream::connect(address)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        // https: pinned on first use, a changed certificate refused (the calls are signed
        // with the pinned server key as well; TLS keeps them private on the LAN).
        let stream = if parsed.scheme() == "https" {
            let origin = parsed.origin().ascii_serialization();
            let host = parsed
                .host_str()
                .unwrap_or_default()
                .trim_matches(|c| c == '[' || c == ']');
            let tls = crate::lan::tls::connect(&origin, host, tcp, pins)
                .await
                .map_err(|e| match e {
                    crate::lan::tls::ConnectError::Changed { pinned, presented } => {
                        OutboundError::CertificateChanged {
                            url: url.to_string(),
                            origin: origin.clone(),
                            pinned,
                            presented,
                        }
                    }
                    crate::lan::tls::ConnectError::Other(m) => failed(m),
                })?;
            crate::lan::tls::ClientStream::Tls(crate::lan::tls::Shared::new(tls))
        } else {
            crate::lan::tls::ClientStream::Plain(tcp)
        };
        let mut request = http_types::Request::new(method, parsed.clone());
        for (name, value) in headers {
            request.append_header(*name, value.as_str());
        }
        request.set_body(body);
        let mut response = async_h1::connect(stream, request)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut bytes = Vec::new();
        response
            .take_body()
            .take(MAX_ANSWER_BYTES)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let signature = response
            .header(super::signature::HEADER)
            .map(|values| values.last().as_str().to_string());
        Ok(Answer {
            status: response.status().into(),
            body: bytes,
            signature,
        })
    };
    exchange
        .or(async {
            smol::Timer::after(timeout).await;
            Err(failed("timed out".into()))
        })
        .await
}

/// Whether `url` lies under one of the administrator's `prefixes` (same scheme, host
/// and port; path below the prefix's path).
pub fn under_prefix(url: &str, prefixes: &[String]) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    prefixes.iter().any(|prefix| {
        let Ok(prefix) = url::Url::parse(prefix) else {
            return false;
        };
        url.scheme() == prefix.scheme()
            && url.host_str() == prefix.host_str()
            && url.port_or_known_default() == prefix.port_or_known_default()
            && url.path().starts_with(prefix.path())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_box_and_special_ranges_are_refused_lan_is_allowed() {
        let own = [ip("192.168.1.10")];
        for bad in [
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "0.0.0.0",
            "::",
            "169.254.1.1",
            "224.0.0.251",
            "255.255.255.255",
            "fe80::1",
            "::ffff:127.0.0.1",
            "192.168.1.10",
        ] {
            assert!(!allowed(ip(bad), false, &own), "{bad} must be refused");
        }
        for good in [
            "192.168.1.20",
            "10.0.0.5",
            "172.16.3.4",
            "203.0.113.9",
            "fd00::5",
        ] {
            assert!(allowed(ip(good), false, &own), "{good} must be allowed");
        }
        assert!(allowed(ip("127.0.0.1"), true, &own));
        assert!(allowed(ip("192.168.1.10"), true, &own));
        assert!(!allowed(ip("169.254.1.1"), true, &own));
    }

    #[test]
    fn prefixes_match_on_origin_and_path() {
        let prefixes = vec!["http://hearth.local:2586/".to_string()];
        assert!(under_prefix(
            "http://hearth.local:2586/upAbc?up=1",
            &prefixes
        ));
        assert!(!under_prefix("http://hearth.local:25860/upAbc", &prefixes));
        assert!(!under_prefix("http://hearth.local/upAbc", &prefixes));
        assert!(!under_prefix("https://hearth.local:2586/upAbc", &prefixes));
        assert!(!under_prefix("http://hearth.local.evil:2586/", &prefixes));
    }

    #[test]
    fn urls_must_be_http() {
        let refused = smol::block_on(resolve("file:///etc/passwd", true));
        assert!(matches!(refused, Err(OutboundError::BadUrl(_))));
        let loopback = smol::block_on(resolve("http://127.0.0.1:9/", false));
        assert!(matches!(loopback, Err(OutboundError::Forbidden(_))));
        assert!(smol::block_on(resolve("http://127.0.0.1:9/", true)).is_ok());
    }
}
