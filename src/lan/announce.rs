//! Announcements of Hearth servers over multicast DNS (DNS-SD, RFC 6762 and RFC 6763):
//! what one says (`_hearth._tcp.local.` with TXT origin, key, TLS fingerprint and
//! protocol version), how it is read and refused, and the names it is announced under.
//! Nothing here is trusted; an announcement only proposes a key.

use crate::auth::jose::b64u_decode;
use crate::model::federation::fingerprint;
use crate::origins::normalize_origin;
use std::collections::HashMap;
use std::net::IpAddr;

/// The DNS-SD service type Hearth servers announce.
pub const SERVICE_TYPE: &str = "_hearth._tcp.local.";
/// The TXT `v` of this protocol version; announcements with another `v` are ignored.
pub const PROTOCOL_VERSION: &str = "1";
/// Longest instance name announced, bytes (a DNS label holds 63; mDNS may append " (2)").
pub(super) const MAX_INSTANCE_BYTES: usize = 56;
/// Most addresses kept per announcement.
const MAX_ADDRESSES: usize = 16;
/// Longest origin accepted from an announcement, bytes.
const MAX_ORIGIN_BYTES: usize = 200;
/// One announcement heard on the LAN: a server at `origin` proposing `key`.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The origin it announces (TXT `origin`), normalized.
    pub origin: String,
    /// Its instance name (the server's name, perhaps with an mDNS " (2)" suffix).
    pub name: String,
    /// The full DNS-SD instance name, e.g. `Hearth B._hearth._tcp.local.`.
    pub instance: String,
    /// The SRV host, e.g. `hearth-1a2b3c4d.local.`.
    pub host: String,
    /// The SRV port.
    pub port: u16,
    /// The server key S it announces (TXT `key`).
    pub key: [u8; 32],
    /// SHA-256 of its TLS certificate (TXT `tls`, lowercase hex), if it serves HTTPS.
    pub tls_fingerprint: Option<String>,
    /// Its addresses (A/AAAA).
    pub addresses: Vec<IpAddr>,
    /// Unix seconds when first heard.
    pub first_seen: u64,
    /// Unix seconds when last known announced (updated while it is `present`).
    pub last_seen: u64,
    /// Still announced (false after its goodbye or when its records expired).
    pub present: bool,
}

/// Whether two announcements make the same claim: origin, key, TLS certificate and host
/// (a re-announcement of it is a refresh).
pub(super) fn same_claim(a: &Found, b: &Found) -> bool {
    a.origin == b.origin
        && a.key == b.key
        && a.tls_fingerprint == b.tls_fingerprint
        && a.host.eq_ignore_ascii_case(&b.host)
}

/// Whether `a` and `b` name the same fingerprint, ignoring case, colons and spaces.
pub fn same_fingerprint(a: &str, b: &str) -> bool {
    let strip = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, ':' | ' ' | '-'))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let (a, b) = (strip(a), strip(b));
    !a.is_empty() && a == b
}

/// The instance name announced for a server called `name`: control characters dropped,
/// cut to fit a DNS label with room for an mDNS " (N)" suffix; `Hearth` if nothing is
/// left.
pub fn instance_label(name: &str) -> String {
    let mut out = String::new();
    for ch in name.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + ch.len_utf8() > MAX_INSTANCE_BYTES {
            break;
        }
        out.push(ch);
    }
    let out = out.trim_end();
    if out.is_empty() {
        "Hearth".into()
    } else {
        out.to_string()
    }
}

/// The instance name in a full DNS-SD name (`Hearth B._hearth._tcp.local.` → `Hearth B`).
pub fn instance_name(fullname: &str) -> String {
    let suffix = format!(".{SERVICE_TYPE}");
    let stem = if fullname.len() > suffix.len()
        && fullname.is_char_boundary(fullname.len() - suffix.len())
        && fullname[fullname.len() - suffix.len()..].eq_ignore_ascii_case(&suffix)
    {
        &fullname[..fullname.len() - suffix.len()]
    } else {
        fullname
    };
    let mut out = String::new();
    let mut chars = stem.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// The name compared for conflicts: without an mDNS " (N)" rename suffix, cut as an
/// instance name is, lower case.
pub fn base_name(name: &str) -> String {
    let trimmed = name.trim();
    let base = match trimmed.strip_suffix(')').and_then(|s| s.rsplit_once(" (")) {
        Some((stem, digits))
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) =>
        {
            stem
        }
        _ => trimmed,
    };
    // As announced (cut like an instance name), so a long configured name matches too.
    instance_label(base).to_lowercase()
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// Whether an origin names a host others could reach (not a wildcard or loopback address).
pub(super) fn reachable_origin(origin: &str) -> bool {
    let Ok(url) = url::Url::parse(origin) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_unspecified() && !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_unspecified() && !ip.is_loopback(),
        Some(url::Host::Domain(name)) => !name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Reads an announcement: the instance's SRV data, addresses and TXT properties (first
/// occurrence of each key). Refuses one that is not a valid Hearth announcement.
pub fn parse_announcement(
    fullname: &str,
    host: &str,
    port: u16,
    addresses: &[IpAddr],
    txt: &HashMap<String, String>,
    now: u64,
) -> Result<Found, String> {
    if txt.get("v").map(String::as_str) != Some(PROTOCOL_VERSION) {
        return Err(format!("protocol version {:?} is not 1", txt.get("v")));
    }
    let key = txt
        .get("key")
        .and_then(|k| b64u_decode(k).ok())
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .ok_or("no valid key")?;
    if let Some(fp) = txt.get("key_fp") {
        if !same_fingerprint(fp, &fingerprint(&key)) {
            return Err("key_fp is not the fingerprint of key".into());
        }
    }
    let announced = txt.get("origin").ok_or("no origin")?;
    if announced.len() > MAX_ORIGIN_BYTES {
        return Err("origin too long".into());
    }
    let origin = normalize_origin(announced).map_err(|e| e.to_string())?;
    if !reachable_origin(&origin) {
        return Err(format!("{origin} names no host reachable on the LAN"));
    }
    let tls_fingerprint = match txt.get("tls") {
        None => None,
        Some(t) if is_sha256_hex(t) => Some(t.to_ascii_lowercase()),
        Some(_) => return Err("tls is not a SHA-256 fingerprint".into()),
    };
    let mut addresses = addresses.to_vec();
    addresses.sort();
    addresses.dedup();
    addresses.truncate(MAX_ADDRESSES);
    Ok(Found {
        origin,
        name: instance_name(fullname).chars().take(100).collect(),
        instance: fullname.chars().take(300).collect(),
        host: host.chars().take(255).collect(),
        port,
        key,
        tls_fingerprint,
        addresses,
        first_seen: now,
        last_seen: now,
        present: true,
    })
}
