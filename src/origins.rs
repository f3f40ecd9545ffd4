//! The origins this server serves: its public origin (`public_url`, or the bound address),
//! the aliases its owner configured, and, when it serves HTTPS, every name and address in
//! its own certificate at the port it listens on. A DPoP proof's `htu` must name one of
//! them, and ticket URLs are built from them: a request header (`Host`) never decides
//! which origin a request was meant for, or a box a user visits could relay the user's
//! proofs to the user's home under its own name.
//!
//! The address the server is bound to is served too; a server bound to every address
//! (`0.0.0.0` or `::`, as on the Pi image) serves the addresses of the host's own network
//! interfaces at its port, read again at most every [`INTERFACE_REFRESH`] (a DHCP lease
//! may change them). So a box is reachable as `https://192.168.1.20` by a phone that
//! does not resolve `.local` names, and still only under addresses that are its own.
//!
//! The app reads the certificate and hands its DER in.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the host's interface addresses are trusted before they are read again.
pub const INTERFACE_REFRESH: Duration = Duration::from_secs(10);

/// Why the served origins could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// A configured alias is not an `http(s)://host[:port]` origin.
    #[error("[server] aliases: {0:?} is not an http(s) origin such as \"https://hearth.local\"")]
    BadAlias(String),
    /// The certificate could not be read.
    #[error("the TLS certificate cannot be parsed: {0}")]
    Certificate(String),
}

/// A text that is not an `http(s)://host[:port]` origin.
#[derive(Debug, thiserror::Error)]
#[error("{text} is not {what}")]
pub struct NotAnOrigin {
    /// The text given.
    pub text: String,
    what: &'static str,
}

/// Normalizes an origin (`scheme://host[:port]`, no path): the ASCII serialization of an
/// `http` or `https` URL with a host.
pub fn normalize_origin(text: &str) -> Result<String, NotAnOrigin> {
    let refuse = |what| NotAnOrigin {
        text: text.to_string(),
        what,
    };
    let url = url::Url::parse(text.trim()).map_err(|_| refuse("a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(refuse("an http(s) origin"));
    }
    Ok(url.origin().ascii_serialization())
}

/// Every origin this server answers as, in ASCII serialization (`https://host[:port]`,
/// default ports left out), the public one first.
#[derive(Clone, Debug)]
pub struct ServedOrigins {
    origins: Vec<String>,
    /// Set when the server listens on every address.
    interfaces: Option<Arc<InterfaceOrigins>>,
}

/// The origins of the host's interface addresses at the listening port, cached.
#[derive(Debug)]
struct InterfaceOrigins {
    scheme: &'static str,
    port: u16,
    read: Mutex<Option<(Instant, Vec<String>)>>,
}

impl InterfaceOrigins {
    fn current(&self) -> Vec<String> {
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, origins)) = read.as_ref() {
            if at.elapsed() < INTERFACE_REFRESH {
                return origins.clone();
            }
        }
        let origins: Vec<String> = interface_hosts()
            .into_iter()
            .filter_map(|host| parse_origin(&format!("{}://{host}:{}", self.scheme, self.port)))
            .collect();
        *read = Some((Instant::now(), origins.clone()));
        origins
    }
}

/// The host's interface addresses in URL form, IPv6 link-local ones left out (a URL
/// cannot name their interface portably).
fn interface_hosts() -> Vec<String> {
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    interfaces
        .iter()
        .filter_map(|interface| match interface.ip() {
            IpAddr::V4(v4) => Some(v4.to_string()),
            IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 != 0xfe80 => Some(format!("[{v6}]")),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// `scheme://host[:port]` of `text`, if it is an http(s) origin with nothing after it but
/// an optional `/`.
pub fn parse_origin(text: &str) -> Option<String> {
    let url = url::Url::parse(text.trim()).ok()?;
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !bare {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

impl ServedOrigins {
    /// Only the public origin (a server whose listener and certificate are not known, such
    /// as the CLI's offline commands).
    pub fn only(public: &str) -> ServedOrigins {
        ServedOrigins {
            origins: vec![parse_origin(public).unwrap_or_else(|| public.to_string())],
            interfaces: None,
        }
    }

    /// The public origin, the configured `aliases`, and, when the server speaks HTTPS with
    /// the certificate `certificate_der` on `port`, `https://NAME:port` for every DNS name
    /// and IP address the certificate names (wildcard names are skipped: a box does not
    /// serve a whole domain).
    pub fn new(
        public: &str,
        aliases: &[String],
        certificate_der: Option<&[u8]>,
        port: u16,
    ) -> Result<ServedOrigins, OriginError> {
        let mut served = ServedOrigins::only(public);
        for alias in aliases {
            let origin = parse_origin(alias).ok_or_else(|| OriginError::BadAlias(alias.clone()))?;
            served.add(origin);
        }
        if let Some(der) = certificate_der {
            for host in certificate_hosts(der)? {
                if let Some(origin) = parse_origin(&format!("https://{host}:{port}")) {
                    served.add(origin);
                }
            }
        }
        Ok(served)
    }

    fn add(&mut self, origin: String) {
        if !self.origins.contains(&origin) {
            self.origins.push(origin);
        }
    }

    /// The public origin (the `iss` of this server's tokens).
    pub fn public(&self) -> &str {
        &self.origins[0]
    }

    /// Every served origin, the public one first.
    pub fn all(&self) -> &[String] {
        &self.origins
    }

    /// Adds the address the server listens on (`scheme://ip:port`), or, when it listens on
    /// every address, the addresses of the host's interfaces at that port.
    pub fn listening_on(mut self, scheme: &'static str, local: SocketAddr) -> ServedOrigins {
        if local.ip().is_unspecified() {
            self.interfaces = Some(Arc::new(InterfaceOrigins {
                scheme,
                port: local.port(),
                read: Mutex::new(None),
            }));
        } else if let Some(origin) = parse_origin(&format!("{scheme}://{local}")) {
            self.add(origin);
        }
        self
    }

    /// Every origin served now: the fixed ones, then the interface addresses'.
    fn current(&self) -> Vec<String> {
        let mut all = self.origins.clone();
        if let Some(interfaces) = &self.interfaces {
            for origin in interfaces.current() {
                if !all.contains(&origin) {
                    all.push(origin);
                }
            }
        }
        all
    }

    /// Whether `origin` (any spelling the `url` crate normalizes) is served here.
    pub fn serves(&self, origin: &str) -> bool {
        parse_origin(origin).is_some_and(|o| self.current().contains(&o))
    }

    /// The served origin a URL (such as a verified proof's `htu`) is under, if any.
    pub fn origin_of(&self, url: &str) -> Option<String> {
        let origin = url::Url::parse(url).ok()?.origin().ascii_serialization();
        self.current().contains(&origin).then_some(origin)
    }

    /// `path` under every served origin.
    pub fn urls_for(&self, path: &str) -> Vec<String> {
        self.current()
            .iter()
            .map(|o| format!("{o}{path}"))
            .collect()
    }
}

/// The hosts (DNS names, and IP addresses in URL form) a certificate's subject
/// alternative names carry.
fn certificate_hosts(der: &[u8]) -> Result<Vec<String>, OriginError> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| OriginError::Certificate(e.to_string()))?;
    let Some(names) = cert
        .subject_alternative_name()
        .map_err(|e| OriginError::Certificate(e.to_string()))?
    else {
        return Ok(Vec::new());
    };
    let mut hosts = Vec::new();
    for name in &names.value.general_names {
        match name {
            GeneralName::DNSName(dns) if !dns.contains('*') => hosts.push(dns.to_string()),
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                    _ => None,
                };
                match ip {
                    Some(IpAddr::V4(v4)) => hosts.push(v4.to_string()),
                    Some(IpAddr::V6(v6)) => hosts.push(format!("[{v6}]")),
                    None => {}
                }
            }
            _ => {}
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_aliases_and_certificate_names() {
        let made = rcgen::generate_simple_self_signed(vec![
            "hearth.local".to_string(),
            "*.example.org".to_string(),
            "192.168.1.20".to_string(),
            "fe80::1".to_string(),
        ])
        .unwrap();
        let served = ServedOrigins::new(
            "https://hearth.local/",
            &[
                "https://Other.Name:443".into(),
                "http://10.0.0.5:8080".into(),
            ],
            Some(made.cert.der()),
            443,
        )
        .unwrap();
        assert_eq!(
            served.all(),
            [
                "https://hearth.local",
                "https://other.name",
                "http://10.0.0.5:8080",
                "https://192.168.1.20",
                "https://[fe80::1]",
            ]
        );
        assert_eq!(served.public(), "https://hearth.local");
        assert!(served.serves("HTTPS://192.168.1.20:443"));
        assert!(!served.serves("https://192.168.1.20:8443"));
        assert!(!served.serves("https://x.example.org"));
        assert_eq!(
            served.origin_of("https://other.name/api/v1/x"),
            Some("https://other.name".into())
        );
        assert_eq!(served.origin_of("https://evil.example/api"), None);

        let on_port = ServedOrigins::new(
            "https://hearth.local:8443",
            &[],
            Some(made.cert.der()),
            8443,
        )
        .unwrap();
        assert!(on_port.serves("https://192.168.1.20:8443"));
        assert!(!on_port.serves("https://192.168.1.20"));
    }

    #[test]
    fn the_listening_address_and_on_every_address_the_interfaces() {
        let bound = ServedOrigins::only("https://hearth.local")
            .listening_on("https", "127.0.0.1:8443".parse().unwrap());
        assert!(bound.serves("https://127.0.0.1:8443"));
        assert!(!bound.serves("https://127.0.0.2:8443"));
        assert!(!bound.serves("https://127.0.0.1:9443"));

        // Every host has its loopback interface; 127.0.0.2 reaches it but is no
        // interface's address, and another port is another server.
        let any = ServedOrigins::only("https://hearth.local")
            .listening_on("https", "0.0.0.0:8443".parse().unwrap());
        assert!(any.serves("https://127.0.0.1:8443"));
        assert!(any.serves("https://hearth.local"));
        assert!(!any.serves("https://127.0.0.2:8443"));
        assert!(!any.serves("https://127.0.0.1:8444"));
        assert!(!any.serves("https://0.0.0.0:8443"));
        assert_eq!(
            any.origin_of("https://127.0.0.1:8443/api/v1/users/@me"),
            Some("https://127.0.0.1:8443".into())
        );
        assert!(any
            .urls_for("/x")
            .contains(&"https://127.0.0.1:8443/x".to_string()));
    }

    #[test]
    fn bad_aliases_are_refused() {
        for bad in ["hearth.local", "ftp://x", "https://x/path", "https://u@x"] {
            assert!(
                ServedOrigins::new("http://127.0.0.1:1", &[bad.into()], None, 1).is_err(),
                "{bad}"
            );
        }
    }
}
