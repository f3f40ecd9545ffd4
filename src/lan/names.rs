//! The names and addresses this box is reached at on its LAN, which its self-signed
//! certificate must cover and its origin may be built from when `public_url` is not set:
//!
//! - the name the system's mDNS responder really announces: on the image that is Avahi,
//!   which answers for `HOSTNAME.local`, or `HOSTNAME-2.local` when another machine on
//!   the LAN holds that name. Avahi says which over D-Bus
//!   (`org.freedesktop.Avahi.Server.GetHostNameFqdn`), asked with `busctl` (systemd's
//!   D-Bus tool, on every systemd box) so that Hearth needs no D-Bus library; without
//!   Avahi, `HOSTNAME.local`;
//! - the host name Hearth's own mDNS announcements point at (`hearth-XXXXXXXX.local`,
//!   from its key), where phones that follow the `_https._tcp` announcement connect;
//! - the addresses of the interfaces it listens on (a phone that does not resolve
//!   `.local` names uses them).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// How long Avahi may take to answer.
const AVAHI_TIMEOUT: Duration = Duration::from_secs(2);

/// The file in the data directory that keeps the origin chosen at the first start when
/// `public_url` is not set.
pub const ORIGIN_FILE: &str = "origin";

/// DNS names and IP addresses a certificate is to cover.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateNames {
    /// DNS names, lowercase, without a trailing dot.
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

impl CertificateNames {
    /// Adds a DNS name (normalized) unless present or empty.
    pub fn add_dns(&mut self, name: &str) {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty() && !self.dns.contains(&name) {
            self.dns.push(name);
        }
    }

    /// Adds an address unless present.
    pub fn add_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// Whether every name and address of `self` is in `other`.
    pub fn covered_by(&self, other: &CertificateNames) -> bool {
        self.dns
            .iter()
            .all(|d| other.dns.iter().any(|o| o.eq_ignore_ascii_case(d)))
            && self.ips.iter().all(|ip| other.ips.contains(ip))
    }
}

/// Longest wait for Avahi to finish probing its name at boot.
const AVAHI_SETTLE: Duration = Duration::from_secs(10);

/// Avahi's server state while it still probes whether its host name is free
/// (`AVAHI_SERVER_REGISTERING`); the name may change before it leaves this state.
const AVAHI_REGISTERING: &str = "i 1";

/// The `.local` name Avahi announces for this machine, if Avahi runs and answers. While
/// Avahi still probes (just after boot) it waits, up to [`AVAHI_SETTLE`], for the name
/// it settles on.
pub fn avahi_host_name() -> Option<String> {
    let started = std::time::Instant::now();
    while avahi_call("GetState")?.trim() == AVAHI_REGISTERING && started.elapsed() < AVAHI_SETTLE {
        std::thread::sleep(Duration::from_millis(250));
    }
    parse_busctl_string(&avahi_call("GetHostNameFqdn")?)
}

/// `busctl call` of an argument-less method of Avahi's server object; its answer text.
fn avahi_call(method: &str) -> Option<String> {
    let mut child = std::process::Command::new("busctl")
        .args([
            "--system",
            "call",
            "org.freedesktop.Avahi",
            "/",
            "org.freedesktop.Avahi.Server",
            method,
        ])
        .arg(format!("--timeout={}", AVAHI_TIMEOUT.as_secs()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    child.wait().ok()?.success().then_some(out)
}

/// The string of a `busctl call` answer of signature `s`: `s "hearth-2.local"`. Only a
/// plausible host name is accepted (letters, digits, `-` and `.`).
pub fn parse_busctl_string(out: &str) -> Option<String> {
    let value = out.trim().strip_prefix("s \"")?.strip_suffix('"')?;
    let plausible = !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    plausible.then(|| value.trim_end_matches('.').to_ascii_lowercase())
}

/// The name this box is announced under on the LAN: Avahi's, else `HOSTNAME.local`.
pub fn announced_name() -> String {
    avahi_host_name().unwrap_or_else(|| format!("{}.local", super::tls::host_name()))
}

/// The addresses of the interfaces a server listening on `local` is reached at: that
/// address, or for a wildcard every interface address of its family (IPv6 link-local
/// ones left out: a URL cannot name their interface portably), loopback included.
pub fn listening_addresses(local: SocketAddr) -> Vec<IpAddr> {
    let ip = local.ip();
    if !ip.is_unspecified() {
        return vec![ip];
    }
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for address in interfaces.iter().map(|i| i.ip()) {
        let wanted = match address {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => ip.is_ipv6() && v6.segments()[0] & 0xffc0 != 0xfe80,
        };
        if wanted && !out.contains(&address) {
            out.push(address);
        }
    }
    out
}

/// What the self-signed certificate of a server listening on `local` covers: the
/// configured names, `localhost`, `HOSTNAME.local`, the name Avahi announces, Hearth's
/// own mDNS host `mdns_host`, the host of `origin`, and the listening addresses.
pub fn certificate_names(
    configured: &[String],
    announced: Option<&str>,
    mdns_host: Option<&str>,
    origin: &str,
    local: SocketAddr,
) -> CertificateNames {
    let mut names = CertificateNames::default();
    for name in configured {
        names.add_dns(name);
    }
    names.add_dns("localhost");
    names.add_dns(&format!("{}.local", super::tls::host_name()));
    for name in [announced, mdns_host].into_iter().flatten() {
        names.add_dns(name);
    }
    if let Some(host) = url::Url::parse(origin)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        match host {
            url::Host::Domain(d) => names.add_dns(&d),
            url::Host::Ipv4(v4) if !v4.is_unspecified() => names.add_ip(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) if !v6.is_unspecified() => names.add_ip(IpAddr::V6(v6)),
            _ => {}
        }
    }
    for ip in listening_addresses(local) {
        names.add_ip(ip);
    }
    names
}

/// The origin kept in `data_dir` from the first start, if any.
pub fn remembered_origin(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(ORIGIN_FILE)).ok()?;
    let origin = text.trim();
    (origin.starts_with("https://") || origin.starts_with("http://")).then(|| origin.to_string())
}

/// Keeps `origin` in `data_dir` (synced: it is the box's identity from now on).
pub fn remember_origin(data_dir: &Path, origin: &str) -> std::io::Result<()> {
    use std::io::Write;
    let path = data_dir.join(ORIGIN_FILE);
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{origin}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The origin of a server listening on every address (`0.0.0.0` or `::`) with no
/// `public_url`: the one kept in `data_dir` from its first start, else the name
/// `announced` on the LAN at the listening port. The bound address names no host anyone
/// could reach; the first announced name is kept rather than followed, because the
/// origin is the box's identity (its tokens' `iss`, the name its peers pinned its key
/// under), and Avahi may hand `hearth.local` and `hearth-2.local` out in another order
/// at the next boot. `None` for any other listening address.
pub fn default_origin(
    data_dir: &Path,
    scheme: &str,
    local: SocketAddr,
    announced: impl FnOnce() -> String,
) -> Option<String> {
    if !local.ip().is_unspecified() {
        return None;
    }
    Some(
        remembered_origin(data_dir)
            .unwrap_or_else(|| origin_of(scheme, &announced(), local.port())),
    )
}

/// `scheme://host[:port]`, the port left out when it is the scheme's default.
pub fn origin_of(scheme: &str, host: &str, port: u16) -> String {
    let default = matches!((scheme, port), ("https", 443) | ("http", 80));
    if default {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busctl_answers_are_read_and_odd_ones_refused() {
        assert_eq!(
            parse_busctl_string("s \"hearth-2.local\"\n").as_deref(),
            Some("hearth-2.local")
        );
        assert_eq!(
            parse_busctl_string("s \"Hearth.local.\"").as_deref(),
            Some("hearth.local")
        );
        assert_eq!(parse_busctl_string("s \"\""), None);
        assert_eq!(parse_busctl_string("s \"a b.local\""), None);
        assert_eq!(parse_busctl_string("u 2"), None);
    }

    #[test]
    fn certificate_names_cover_the_announced_names_and_addresses() {
        let local: SocketAddr = "192.168.1.20:443".parse().unwrap();
        let names = certificate_names(
            &["hearth.local".into(), "Box.Example".into()],
            Some("hearth-2.local"),
            Some("hearth-1a2b3c4d.local."),
            "https://hearth-2.local",
            local,
        );
        for dns in [
            "hearth.local",
            "box.example",
            "localhost",
            "hearth-2.local",
            "hearth-1a2b3c4d.local",
        ] {
            assert!(names.dns.iter().any(|d| d == dns), "{dns} in {names:?}");
        }
        assert_eq!(names.ips, vec![local.ip()]);
        let mut fewer = names.clone();
        fewer.dns.retain(|d| d != "hearth-2.local");
        assert!(fewer.covered_by(&names));
        assert!(!names.covered_by(&fewer));
        assert_eq!(
            origin_of("https", "hearth-2.local", 443),
            "https://hearth-2.local"
        );
        assert_eq!(
            origin_of("https", "hearth.local", 8443),
            "https://hearth.local:8443"
        );
    }

    #[test]
    fn a_wildcard_listen_takes_the_announced_name_once_and_keeps_it() {
        let dir = std::env::temp_dir().join(format!("hearth-names-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wildcard: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let bound: SocketAddr = "192.168.1.20:443".parse().unwrap();
        assert_eq!(
            default_origin(&dir, "https", bound, || unreachable!()),
            None
        );
        let first = default_origin(&dir, "https", wildcard, || "hearth-2.local".into());
        assert_eq!(first.as_deref(), Some("https://hearth-2.local"));
        remember_origin(&dir, "https://hearth-2.local").unwrap();
        // At a later boot Avahi got hearth.local: the box stays who it was.
        let later = default_origin(&dir, "https", wildcard, || "hearth.local".into());
        assert_eq!(later.as_deref(), Some("https://hearth-2.local"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
