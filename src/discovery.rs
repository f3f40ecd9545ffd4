//! LAN discovery: the server announces itself over multicast DNS (DNS-SD, RFC 6762 and
//! RFC 6763) as `_hearth._tcp.local.` and lists the other Hearth servers it hears, so that
//! an administrator can peer with one after comparing its key fingerprint.
//!
//! Nothing heard here is trusted. An announcement only proposes a key: it is pinned when
//! an administrator confirms its fingerprint ([`add_discovered_peer`]). An announcement
//! that claims the name or origin of a server known under another key (another
//! announcement, a pinned peer, or this server) is a *conflict*: both are listed and
//! marked, and neither can be added from here.
//!
//! The mDNS daemon (`mdns-sd`) runs its own thread; a task on smol's global executor reads
//! its events into a bounded table ([`Discovered`], held by the [`App`]). [`start`] never
//! fails the server: without multicast it logs once and the server runs on.

use crate::app::App;
use crate::auth::jose::{b64u, b64u_decode};
use crate::federation::{normalize_origin, FederationError};
use crate::model::{federation::fingerprint, Peer};
use crate::system::now;
use futures_lite::FutureExt;
use mdns_sd::{DaemonEvent, IfKind, Receiver, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The DNS-SD service type Hearth servers announce.
pub const SERVICE_TYPE: &str = "_hearth._tcp.local.";
/// The TXT `v` of this protocol version; announcements with another `v` are ignored.
pub const PROTOCOL_VERSION: &str = "1";
/// Most announcements remembered; past that the one heard least recently is forgotten.
pub const MAX_ENTRIES: usize = 256;
/// An announcement gone (withdrawn, or its records expired) for this long (seconds) is
/// forgotten. While announced it stays: the mDNS daemon keeps its records fresh by their
/// TTLs (re-querying before they expire) and reports it removed when they lapse.
pub const EXPIRE_SECS: u64 = 600;
/// Longest instance name announced, bytes (a DNS label holds 63; mDNS may append " (2)").
const MAX_INSTANCE_BYTES: usize = 56;
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
fn same_claim(a: &Found, b: &Found) -> bool {
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
fn reachable_origin(origin: &str) -> bool {
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

/// What [`Discovered::observe`] did with an announcement.
#[derive(Debug, PartialEq, Eq)]
pub enum Observed {
    /// It is this server's own announcement.
    Own,
    /// A new (origin, key); `clash` if this server or an announcement already heard has
    /// the same origin or name under another key.
    New {
        /// Another key already claims its origin or name.
        clash: bool,
    },
    /// A known (origin, key), refreshed.
    Refreshed,
}

/// Whether discovery runs and how this server is announced.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// The mDNS daemon runs (browsing).
    pub running: bool,
    /// The instance name this server is announced under, if it is.
    pub advertised_as: Option<String>,
    /// Why discovery is off or limited, for administrators.
    pub note: Option<String>,
}

#[derive(Default)]
struct Table {
    entries: Vec<Found>,
    status: Status,
}

/// The announcements heard on the LAN (bounded, in memory only).
pub struct Discovered {
    own_key: [u8; 32],
    own_origin: String,
    own_name: String,
    table: Mutex<Table>,
}

impl Discovered {
    /// An empty table for the server whose key is `own_key` (its own announcements are
    /// ignored), origin `own_origin` and name `own_name` (claims of which under another
    /// key are logged as conflicts).
    pub fn new(own_key: [u8; 32], own_origin: &str, own_name: &str) -> Discovered {
        Discovered {
            own_key,
            own_origin: own_origin.to_string(),
            own_name: base_name(own_name),
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an announcement heard now.
    pub fn observe(&self, found: Found) -> Observed {
        if found.key == self.own_key {
            return Observed::Own;
        }
        let mut table = self.lock();
        if let Some(known) = table.entries.iter_mut().find(|e| same_claim(e, &found)) {
            let first_seen = known.first_seen;
            *known = Found {
                first_seen,
                ..found
            };
            return Observed::Refreshed;
        }
        let name = base_name(&found.name);
        // The same (origin, key) with another TLS certificate or host is a conflict too,
        // not a refresh: a spoofer can repeat a key, but not serve its TLS certificate.
        let clash = found.origin == self.own_origin
            || name == self.own_name
            || table.entries.iter().any(|e| {
                e.origin == found.origin || (e.key != found.key && base_name(&e.name) == name)
            });
        table.entries.push(found);
        if table.entries.len() > MAX_ENTRIES {
            // Forget the one heard least recently, gone ones first.
            if let Some(oldest) = table
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.present, e.last_seen))
                .map(|(i, _)| i)
            {
                table.entries.swap_remove(oldest);
            }
        }
        Observed::New { clash }
    }

    /// The instance `fullname` said goodbye or its records expired.
    pub fn removed(&self, fullname: &str) {
        for entry in self.lock().entries.iter_mut() {
            if entry.instance.eq_ignore_ascii_case(fullname) {
                entry.present = false;
            }
        }
    }

    /// Forgets announcements gone for longer than [`EXPIRE_SECS`]; those still announced
    /// count as seen `now`.
    pub fn expire(&self, now: u64) {
        let mut table = self.lock();
        for entry in table.entries.iter_mut().filter(|e| e.present) {
            entry.last_seen = entry.last_seen.max(now);
        }
        table
            .entries
            .retain(|e| e.last_seen.saturating_add(EXPIRE_SECS) >= now);
    }

    /// The announcements remembered at `now` (expired ones are forgotten first).
    pub fn entries(&self, now: u64) -> Vec<Found> {
        self.expire(now);
        self.lock().entries.clone()
    }

    /// Whether discovery runs, and how this server is announced.
    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    fn set_status(&self, update: impl FnOnce(&mut Status)) {
        update(&mut self.lock().status);
    }
}

/// This server, as conflicts are judged against it.
pub struct Own<'a> {
    /// Its origin.
    pub origin: &'a str,
    /// Its configured name.
    pub name: &'a str,
    /// Its server key.
    pub key: [u8; 32],
}

/// An announcement judged against the others, the pinned peers and this server.
#[derive(Clone, Debug)]
pub struct Assessed {
    /// The announcement.
    pub found: Found,
    /// Its origin is already a peer pinned with this very key.
    pub peer: bool,
    /// Why it is not to be trusted; empty when it is no conflict.
    pub conflicts: Vec<String>,
}

impl Assessed {
    /// Whether it is a conflict.
    pub fn conflict(&self) -> bool {
        !self.conflicts.is_empty()
    }
}

/// Judges every announcement: it is a conflict when another announcement, a pinned peer
/// or this server has its origin or its name under another key, or when its origin and
/// key are also announced with another TLS certificate or from another host.
pub fn assess(entries: &[Found], peers: &[Peer], own: &Own) -> Vec<Assessed> {
    let mut out: Vec<Assessed> = entries
        .iter()
        .map(|entry| {
            let name = base_name(&entry.name);
            let mut conflicts = Vec::new();
            for other in entries
                .iter()
                .filter(|o| o.key == entry.key && o.origin == entry.origin)
            {
                if other.tls_fingerprint != entry.tls_fingerprint {
                    conflicts.push(format!(
                        "{} is also announced with TLS certificate {}",
                        entry.origin,
                        other
                            .tls_fingerprint
                            .as_deref()
                            .unwrap_or("none (plain HTTP)")
                    ));
                } else if !other.host.eq_ignore_ascii_case(&entry.host) {
                    conflicts.push(format!(
                        "{} is also announced from host {}",
                        entry.origin, other.host
                    ));
                }
            }
            for other in entries.iter().filter(|o| o.key != entry.key) {
                if other.origin == entry.origin {
                    conflicts.push(format!(
                        "{} is also announced with key {}",
                        entry.origin,
                        fingerprint(&other.key)
                    ));
                } else if base_name(&other.name) == name {
                    conflicts.push(format!(
                        "the name \"{}\" is also announced by {} with key {}",
                        other.name,
                        other.origin,
                        fingerprint(&other.key)
                    ));
                }
            }
            for peer in peers.iter().filter(|p| p.server_key != entry.key) {
                if peer.origin == entry.origin {
                    conflicts.push(format!(
                        "{} is a pinned peer with key {}",
                        peer.origin,
                        fingerprint(&peer.server_key)
                    ));
                } else if !peer.name.is_empty() && base_name(&peer.name) == name {
                    conflicts.push(format!(
                        "the pinned peer {} is named \"{}\" with key {}",
                        peer.origin,
                        peer.name,
                        fingerprint(&peer.server_key)
                    ));
                }
            }
            if entry.key != own.key {
                if entry.origin == own.origin {
                    conflicts.push("it claims this server's origin".into());
                } else if base_name(own.name) == name {
                    conflicts.push("it claims this server's name".into());
                }
            }
            conflicts.dedup();
            let peer = peers
                .iter()
                .any(|p| p.origin == entry.origin && p.server_key == entry.key);
            Assessed {
                found: entry.clone(),
                peer,
                conflicts,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (base_name(&a.found.name), &a.found.origin)
            .cmp(&(base_name(&b.found.name), &b.found.origin))
    });
    out
}

/// An assessed announcement as shown to administrators.
pub fn view(entry: &Assessed) -> Value {
    let found = &entry.found;
    json!({
        "origin": found.origin,
        "name": found.name,
        "instance": found.instance,
        "host": found.host,
        "port": found.port,
        "addresses": found.addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "server_key": b64u(&found.key),
        "fingerprint": fingerprint(&found.key),
        "tls_fingerprint": found.tls_fingerprint,
        "first_seen": found.first_seen,
        "last_seen": found.last_seen,
        "present": found.present,
        "peer": entry.peer,
        "conflict": entry.conflict(),
        "conflicts": entry.conflicts,
    })
}

fn own(app: &App) -> Own<'_> {
    Own {
        origin: &app.services.origin,
        name: &app.services.config.name,
        key: app.services.server_key.public_bytes(),
    }
}

/// What `GET /api/v1/admin/discovered` and `hearth peer discovered` show: whether
/// discovery runs, this server's own announcement, and every server heard.
pub fn listing(app: &App) -> Result<Value, FederationError> {
    let peers = crate::federation::list_peers(&app.federation)?;
    let entries = app.discovered.entries(now());
    let status = app.discovered.status();
    let me = own(app);
    let servers: Vec<Value> = assess(&entries, &peers, &me).iter().map(view).collect();
    Ok(json!({
        "enabled": app.services.config.discovery.enabled,
        "running": status.running,
        "advertised_as": status.advertised_as,
        "note": status.note,
        "self": {
            "origin": me.origin,
            "name": me.name,
            "server_key": b64u(&me.key),
            "fingerprint": fingerprint(&me.key),
            "tls_fingerprint": app.tls_fingerprint.get(),
        },
        "servers": servers,
    }))
}

/// [`listing`] as text for `hearth peer discovered`.
pub fn format_listing(listing: &Value) -> String {
    use std::fmt::Write;
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut out = String::new();
    let me = &listing["self"];
    match (
        listing["running"].as_bool(),
        listing["advertised_as"].as_str(),
    ) {
        (Some(true), Some(name)) => {
            let _ = writeln!(
                out,
                "LAN discovery: this server is announced as \"{name}\" ({}), key fingerprint {}",
                text(&me["origin"]),
                text(&me["fingerprint"])
            );
        }
        (Some(true), None) => {
            let _ = writeln!(
                out,
                "LAN discovery: listening, but this server is not announced: {}",
                text(&listing["note"])
            );
        }
        _ => match listing["note"].as_str() {
            Some(note) => {
                let _ = writeln!(out, "LAN discovery is off: {note}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "LAN discovery runs in `hearth serve`; no server is running on this data directory"
                );
            }
        },
    }
    let servers = listing["servers"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "{} server(s) heard", servers.len());
    for server in &servers {
        let mut marks = Vec::new();
        if server["peer"] == true {
            marks.push("peer");
        }
        if server["present"] == false {
            marks.push("gone");
        }
        if server["conflict"] == true {
            marks.push("CONFLICT: not trusted");
        }
        let addresses: Vec<String> = server["addresses"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n\"{}\"  {}  ({}){}",
            text(&server["name"]),
            text(&server["origin"]),
            addresses.join(", "),
            if marks.is_empty() {
                String::new()
            } else {
                format!("  [{}]", marks.join(", "))
            }
        );
        let _ = writeln!(out, "    key fingerprint  {}", text(&server["fingerprint"]));
        if let Some(tls) = server["tls_fingerprint"].as_str() {
            let _ = writeln!(
                out,
                "    TLS certificate  {}",
                crate::tls::display_fingerprint(tls)
            );
        }
        for reason in server["conflicts"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "    conflict: {}", text(reason));
        }
    }
    if servers
        .iter()
        .any(|s| s["peer"] == false && s["conflict"] == false)
    {
        let _ = writeln!(
            out,
            "\nTo peer with one, compare its key fingerprint with its administrator, then:\n    hearth peer add ORIGIN --fingerprint FINGERPRINT --discovered"
        );
    }
    out
}

/// Why a discovered server could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Nothing was heard from that origin.
    #[error("{0} has not been discovered on the LAN (see `hearth peer discovered`)")]
    NotFound(String),
    /// Its announcement is a conflict.
    #[error("{origin} cannot be added from its announcement: {reasons}; ask its administrator for its key fingerprint and use `hearth peer add URL --fingerprint FP`")]
    Conflict {
        /// Origin.
        origin: String,
        /// Why.
        reasons: String,
    },
    /// The fingerprint did not match, the origin is invalid, or storage failed.
    #[error(transparent)]
    Federation(#[from] FederationError),
}

/// Pins the key a discovered server announced, once the administrator confirmed its
/// fingerprint (`expected_fingerprint`, as its own administrator reads it out). Refuses an
/// origin heard with more than one key or otherwise in conflict. With HTTPS, the TLS
/// certificate fingerprint it announced is pinned too unless one is pinned already.
/// Returns the peer and the TLS fingerprint pinned for it, if any.
pub async fn add_discovered_peer(
    app: &App,
    origin: &str,
    expected_fingerprint: &str,
) -> Result<(Peer, Option<String>), AddError> {
    let origin = normalize_origin(origin)?;
    if origin == app.services.origin {
        return Err(FederationError::Invalid("a server cannot peer with itself".into()).into());
    }
    let peers = crate::federation::list_peers(&app.federation)?;
    let entries = app.discovered.entries(now());
    let assessed = assess(&entries, &peers, &own(app));
    let heard: Vec<&Assessed> = assessed
        .iter()
        .filter(|a| a.found.origin == origin)
        .collect();
    let entry = match heard.as_slice() {
        [] => return Err(AddError::NotFound(origin)),
        [one] => *one,
        _ => {
            return Err(AddError::Conflict {
                reasons: format!(
                    "it is announced {} different ways (keys, TLS certificates or hosts)",
                    heard.len()
                ),
                origin,
            })
        }
    };
    if entry.conflict() {
        return Err(AddError::Conflict {
            origin,
            reasons: entry.conflicts.join("; "),
        });
    }
    let found = fingerprint(&entry.found.key);
    if !same_fingerprint(expected_fingerprint, &found) {
        return Err(FederationError::FingerprintMismatch {
            origin,
            found,
            expected: expected_fingerprint.to_string(),
        }
        .into());
    }
    let peer = Peer {
        origin: origin.clone(),
        name: entry.found.name.clone(),
        server_key: entry.found.key,
        added_at: now(),
        approved: true,
    };
    let stored = peer.clone();
    app.services
        .store
        .write(move |tx| {
            tx.put(
                crate::storage::tables::PEER,
                stored.origin.as_bytes(),
                &stored,
            )?;
            Ok::<_, crate::storage::StoreError>(())
        })
        .await
        .map_err(FederationError::from)?;
    let mut tls_pin = app.federation.tls_pins.get(&origin);
    if let (None, Some(announced)) = (&tls_pin, &entry.found.tls_fingerprint) {
        if origin.starts_with("https://") {
            app.federation.tls_pins.set(&origin, announced);
            tls_pin = Some(announced.clone());
        }
    }
    Ok((peer, tls_pin))
}

// ---- the mDNS daemon ----

/// The running announcement and browse; [`Discovery::stop`] withdraws the announcement.
pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: Option<String>,
    task: Option<smol::Task<()>>,
    stopped: bool,
}

fn log_off(discovered: &Discovered, reason: String) {
    eprintln!("hearth: LAN discovery off: {reason}");
    discovered.set_status(|s| {
        s.running = false;
        s.note = Some(reason);
    });
}

/// What this server announces, for a server listening on `local`.
fn announcement(app: &App, local: SocketAddr) -> Result<ServiceInfo, String> {
    let origin = &app.services.origin;
    if !reachable_origin(origin) {
        return Err(format!(
            "its origin {origin} names no host others can reach; set public_url (e.g. \"https://hearth.local:{}\")",
            local.port()
        ));
    }
    let key = app.services.server_key.public_bytes();
    let key_fp = fingerprint(&key);
    let host = format!(
        "hearth-{}.local.",
        key_fp.replace(':', "").get(..8).unwrap_or("0")
    );
    let mut txt = vec![
        ("origin".to_string(), origin.clone()),
        ("key".to_string(), b64u(&key)),
        ("key_fp".to_string(), key_fp),
    ];
    if let Some(tls) = app.tls_fingerprint.get() {
        txt.push(("tls".to_string(), tls.clone()));
    }
    txt.push(("v".to_string(), PROTOCOL_VERSION.to_string()));
    let instance = instance_label(&app.services.config.name);
    // Addresses follow the interfaces (one that comes up later is announced on then),
    // limited to the listening address, or to its family for a wildcard.
    let ip = local.ip();
    let info =
        ServiceInfo::new(SERVICE_TYPE, &instance, &host, (), local.port(), &txt[..]).map(|info| {
            let mut info = info.enable_addr_auto();
            info.set_interfaces(vec![match ip {
                IpAddr::V4(v4) if v4.is_unspecified() => IfKind::IPv4,
                IpAddr::V6(v6) if v6.is_unspecified() => IfKind::All,
                ip => IfKind::Addr(ip),
            }]);
            info
        });
    info.map_err(|e| format!("cannot build the announcement: {e}"))
}

/// Starts announcing this server (listening on `local`) and browsing for others, unless
/// turned off or bound to loopback only. Returns at once; trouble with multicast is
/// logged once and leaves the server running without discovery.
pub fn start(app: &Arc<App>, local: SocketAddr) -> Option<Discovery> {
    let discovered = app.discovered.clone();
    if !app.services.config.discovery.enabled {
        discovered.set_status(|s| {
            s.note = Some("turned off in the configuration ([discovery] enabled = false)".into())
        });
        return None;
    }
    if local.ip().is_loopback() {
        log_off(
            &discovered,
            format!("listening on {local}, which nobody on the LAN can reach"),
        );
        return None;
    }
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            log_off(&discovered, format!("cannot start mDNS: {e}"));
            return None;
        }
    };
    // Only where the server listens: its own interface, or (for a wildcard) every
    // interface of its address family. Never loopback.
    let ip = local.ip();
    let selected = if ip.is_unspecified() {
        let mut off = vec![IfKind::LoopbackV4, IfKind::LoopbackV6];
        if ip.is_ipv4() {
            off.push(IfKind::IPv6);
        }
        daemon.disable_interface(off)
    } else {
        daemon
            .disable_interface(IfKind::All)
            .and_then(|()| daemon.enable_interface(IfKind::Addr(ip)))
    };
    if let Err(e) = selected {
        log_off(&discovered, format!("cannot choose mDNS interfaces: {e}"));
        let _ = daemon.shutdown();
        return None;
    }
    let monitor = daemon.monitor().ok();
    let mut fullname = None;
    let mut note = None;
    match announcement(app, local) {
        Ok(info) => {
            let name = info.get_fullname().to_string();
            match daemon.register(info) {
                Ok(()) => fullname = Some(name),
                Err(e) => note = Some(format!("not announced: {e}")),
            }
        }
        Err(reason) => note = Some(format!("not announced: {reason}")),
    }
    if let Some(note) = &note {
        eprintln!("hearth: LAN discovery: {note}");
    }
    let events = match daemon.browse(SERVICE_TYPE) {
        Ok(events) => events,
        Err(e) => {
            log_off(
                &discovered,
                format!("cannot browse for {SERVICE_TYPE}: {e}"),
            );
            let _ = daemon.shutdown();
            return None;
        }
    };
    let advertised_as = fullname.as_deref().map(instance_name);
    if let Some(name) = &advertised_as {
        eprintln!(
            "hearth: LAN discovery: announcing \"{name}\" as {SERVICE_TYPE} on port {}",
            local.port()
        );
    }
    discovered.set_status(|s| {
        s.running = true;
        s.advertised_as = advertised_as;
        s.note = note;
    });
    let task = smol::spawn(run(
        daemon.clone(),
        discovered,
        events,
        monitor,
        fullname.clone(),
    ));
    Some(Discovery {
        daemon,
        fullname,
        task: Some(task),
        stopped: false,
    })
}

enum Step {
    Service(Option<ServiceEvent>),
    Daemon(Option<DaemonEvent>),
    Browse,
}

async fn next<T>(receiver: &Option<Receiver<T>>) -> Option<T> {
    match receiver {
        Some(r) => r.recv_async().await.ok(),
        None => std::future::pending().await,
    }
}

/// Reads the daemon's events into the table until cancelled.
async fn run(
    daemon: ServiceDaemon,
    table: Arc<Discovered>,
    events: Receiver<ServiceEvent>,
    monitor: Option<Receiver<DaemonEvent>>,
    mut fullname: Option<String>,
) {
    let mut events = Some(events);
    let mut monitor = monitor;
    // When the browse must be started again (its subscription ended).
    let mut browse_again: Option<Instant> = None;
    let mut logged_error = false;
    loop {
        let step = async { Step::Service(next(&events).await) }
            .or(async { Step::Daemon(next(&monitor).await) })
            .or(async {
                match browse_again {
                    Some(at) => {
                        smol::Timer::at(at).await;
                    }
                    None => std::future::pending::<()>().await,
                }
                Step::Browse
            })
            .await;
        match step {
            Step::Service(Some(event)) => handle(&table, event),
            Step::Service(None) => {
                // The subscription ended (the daemon found us too slow): browse again soon.
                events = None;
                browse_again = Some(Instant::now() + Duration::from_secs(1));
            }
            Step::Daemon(Some(DaemonEvent::Error(e))) => {
                if !logged_error {
                    logged_error = true;
                    eprintln!("hearth: LAN discovery: mDNS error (further ones not logged): {e}");
                    table.set_status(|s| s.note = Some(format!("mDNS error: {e}")));
                }
            }
            Step::Daemon(Some(DaemonEvent::NameChange(change))) => {
                if fullname
                    .as_deref()
                    .is_some_and(|f| f.eq_ignore_ascii_case(&change.original))
                {
                    let name = instance_name(&change.new_name);
                    eprintln!(
                        "hearth: LAN discovery: another service has this server's name; announcing as \"{name}\""
                    );
                    fullname = Some(change.new_name.clone());
                    table.set_status(|s| s.advertised_as = Some(name));
                }
            }
            Step::Daemon(Some(_)) => {}
            Step::Daemon(None) => monitor = None,
            Step::Browse => {
                // A new browse also re-reads every announcement still in the cache.
                match daemon.browse(SERVICE_TYPE) {
                    Ok(renewed) => {
                        events = Some(renewed);
                        browse_again = None;
                    }
                    Err(e) => {
                        if !logged_error {
                            logged_error = true;
                            eprintln!("hearth: LAN discovery: cannot browse: {e}");
                        }
                        browse_again = Some(Instant::now() + Duration::from_secs(10));
                    }
                }
            }
        }
    }
}

fn handle(table: &Discovered, event: ServiceEvent) {
    match event {
        ServiceEvent::ServiceResolved(resolved) => {
            let mut txt = HashMap::new();
            for property in resolved.get_properties().iter() {
                // RFC 6763 §6.4: only the first occurrence of a key counts.
                txt.entry(property.key().to_ascii_lowercase())
                    .or_insert_with(|| property.val_str().to_string());
            }
            let addresses: Vec<IpAddr> = resolved
                .get_addresses()
                .iter()
                .map(|a| a.to_ip_addr())
                .collect();
            let Ok(found) = parse_announcement(
                resolved.get_fullname(),
                resolved.get_hostname(),
                resolved.get_port(),
                &addresses,
                &txt,
                now(),
            ) else {
                return;
            };
            let (name, origin, fp) = (
                found.name.clone(),
                found.origin.clone(),
                fingerprint(&found.key),
            );
            match table.observe(found) {
                Observed::New { clash: false } => {
                    eprintln!(
                        "hearth: LAN discovery: found \"{name}\" at {origin}, key fingerprint {fp}"
                    );
                }
                Observed::New { clash: true } => {
                    eprintln!(
                        "hearth: LAN discovery: CONFLICT: \"{name}\" at {origin} (key fingerprint {fp}) claims the origin or name of a server known under another key, or another TLS certificate or host for a known one; not trusted"
                    );
                }
                Observed::Own | Observed::Refreshed => {}
            }
        }
        ServiceEvent::ServiceRemoved(_, fullname) => table.removed(&fullname),
        _ => {}
    }
}

impl Discovery {
    /// Withdraws the announcement (mDNS goodbye) and stops the daemon, waiting at most a
    /// second for each.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.cancel().await;
        }
        let wait = |receiver: Option<Receiver<_>>| async move {
            if let Some(receiver) = receiver {
                let _ = async { receiver.recv_async().await.ok() }
                    .or(async {
                        smol::Timer::after(Duration::from_secs(1)).await;
                        None
                    })
                    .await;
            }
        };
        if let Some(fullname) = &self.fullname {
            wait(self.daemon.unregister(fullname).ok()).await;
        }
        if let Ok(status) = self.daemon.shutdown() {
            self.stopped = true;
            let _ = async { status.recv_async().await.ok() }
                .or(async {
                    smol::Timer::after(Duration::from_secs(1)).await;
                    None
                })
                .await;
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if !self.stopped {
            // Not stopped cleanly: the daemon still says goodbye as it exits.
            let _ = self.daemon.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(origin: &str, key: &[u8; 32], tls: Option<&str>) -> HashMap<String, String> {
        let mut map = HashMap::new();
        map.insert("origin".into(), origin.into());
        map.insert("key".into(), b64u(key));
        map.insert("key_fp".into(), fingerprint(key));
        if let Some(tls) = tls {
            map.insert("tls".into(), tls.into());
        }
        map.insert("v".into(), "1".into());
        map
    }

    fn found(name: &str, origin: &str, key: u8, now: u64) -> Found {
        parse_announcement(
            &format!("{name}._hearth._tcp.local."),
            "hearth-x.local.",
            8443,
            &["10.0.0.2".parse().unwrap()],
            &txt(origin, &[key; 32], Some(&"ab".repeat(32))),
            now,
        )
        .unwrap()
    }

    fn peer(origin: &str, name: &str, key: u8) -> Peer {
        Peer {
            origin: origin.into(),
            name: name.into(),
            server_key: [key; 32],
            added_at: 0,
            approved: true,
        }
    }

    const OWN: Own<'static> = Own {
        origin: "https://10.0.0.1:8443",
        name: "Home",
        key: [1; 32],
    };

    #[test]
    fn parses_valid_announcements_and_refuses_bad_ones() {
        let key = [7u8; 32];
        let ok = parse_announcement(
            "Hearth B\\.x._hearth._tcp.local.",
            "hearth-1.local.",
            8443,
            &["10.0.0.3".parse().unwrap(), "10.0.0.2".parse().unwrap()],
            &txt("https://10.0.0.2:8443/", &key, Some(&"AB".repeat(32))),
            5,
        )
        .unwrap();
        assert_eq!(ok.name, "Hearth B.x");
        assert_eq!(ok.origin, "https://10.0.0.2:8443");
        assert_eq!(ok.key, key);
        assert_eq!(ok.tls_fingerprint, Some("ab".repeat(32)));
        assert_eq!(ok.addresses[0].to_string(), "10.0.0.2");
        let parse = |map: &HashMap<String, String>| {
            parse_announcement("x._hearth._tcp.local.", "h.local.", 1, &[], map, 0)
        };
        let mut bad = txt("https://10.0.0.2:8443", &key, None);
        bad.insert("v".into(), "2".into());
        assert!(parse(&bad).is_err(), "another protocol version");
        let mut bad = txt("https://10.0.0.2:8443", &key, None);
        bad.insert("key_fp".into(), fingerprint(&[8; 32]));
        assert!(parse(&bad).is_err(), "key_fp of another key");
        let mut bad = txt("https://10.0.0.2:8443", &key, None);
        bad.insert("key".into(), "short".into());
        assert!(parse(&bad).is_err(), "invalid key");
        assert!(parse(&txt("https://0.0.0.0:8443", &key, None)).is_err());
        assert!(parse(&txt("https://127.0.0.1:8443", &key, None)).is_err());
        assert!(parse(&txt("ftp://host", &key, None)).is_err());
        assert!(parse(&txt("https://h.local", &key, Some("nothex"))).is_err());
        assert!(parse(&txt("https://h.local", &key, None)).is_ok());
    }

    #[test]
    fn names() {
        assert_eq!(base_name("Hearth B (2)"), "hearth b");
        assert_eq!(base_name("Hearth B"), "hearth b");
        assert_eq!(base_name("Hearth (B)"), "hearth (b)");
        let long = "x".repeat(80);
        assert_eq!(
            base_name(&long),
            base_name(&format!("{} (2)", instance_label(&long)))
        );
        assert_eq!(instance_label("  \u{7}Kitchen\n "), "Kitchen");
        assert_eq!(instance_label(""), "Hearth");
        assert!(instance_label(&"é".repeat(100)).len() <= MAX_INSTANCE_BYTES);
        assert!(same_fingerprint("AB:cd", "abcd"));
        assert!(!same_fingerprint("", ""));
    }

    #[test]
    fn table_ignores_its_own_key_refreshes_and_expires() {
        let table = Discovered::new([1; 32], "https://10.0.0.1:8443", "Home");
        assert_eq!(
            table.observe(found("Home", "https://10.0.0.1:8443", 1, 0)),
            Observed::Own
        );
        assert_eq!(
            table.observe(found("B", "https://10.0.0.2:8443", 2, 10)),
            Observed::New { clash: false }
        );
        assert_eq!(
            table.observe(found("B", "https://10.0.0.2:8443", 2, 20)),
            Observed::Refreshed
        );
        let entries = table.entries(20);
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].first_seen, entries[0].last_seen), (10, 20));
        // Still announced: kept however long ago it was first heard.
        assert_eq!(table.entries(20 + 5 * EXPIRE_SECS).len(), 1);
        let later = 20 + 5 * EXPIRE_SECS;
        assert_eq!(table.entries(later).len(), 1, "kept while announced");
        table.removed("b._hearth._tcp.local.");
        assert!(!table.entries(later)[0].present);
        assert_eq!(table.entries(later + EXPIRE_SECS).len(), 1);
        assert!(table.entries(later + EXPIRE_SECS + 1).is_empty());
    }

    #[test]
    fn a_known_key_announced_with_another_tls_certificate_or_host_is_a_conflict() {
        let table = Discovered::new([1; 32], "https://10.0.0.1:8443", "Home");
        let real = found("B", "https://10.0.0.2:8443", 2, 10);
        assert_eq!(table.observe(real.clone()), Observed::New { clash: false });
        let other_tls = Found {
            tls_fingerprint: Some("cd".repeat(32)),
            ..real.clone()
        };
        assert_eq!(
            table.observe(other_tls.clone()),
            Observed::New { clash: true }
        );
        // Repeating the changed claim refreshes it; it stays a conflict beside the first.
        assert_eq!(table.observe(other_tls), Observed::Refreshed);
        let other_host = Found {
            host: "spoof.local.".into(),
            ..real.clone()
        };
        assert_eq!(table.observe(other_host), Observed::New { clash: true });
        let entries = table.entries(20);
        assert_eq!(entries.len(), 3);
        let assessed = assess(&entries, &[], &OWN);
        assert!(assessed.iter().all(Assessed::conflict), "{assessed:?}");
        assert!(assessed
            .iter()
            .any(|a| a.conflicts.iter().any(|c| c.contains("TLS certificate"))));
        assert!(assessed
            .iter()
            .any(|a| a.conflicts.iter().any(|c| c.contains("from host"))));
        // The unchanged claim alone is none.
        assert!(!assess(&[real], &[], &OWN)[0].conflict());
    }

    #[test]
    fn claims_of_this_server_clash() {
        let table = Discovered::new([1; 32], "https://10.0.0.1:8443", "Home");
        let clash = Observed::New { clash: true };
        assert_eq!(
            table.observe(found("home (2)", "https://10.0.0.9:8443", 5, 0)),
            clash
        );
        assert_eq!(
            table.observe(found("Other", "https://10.0.0.1:8443", 6, 0)),
            clash
        );
        assert_eq!(
            table.observe(found("Third", "https://10.0.0.3:8443", 7, 0)),
            Observed::New { clash: false }
        );
    }

    #[test]
    fn listing_text() {
        let real = found("B", "https://10.0.0.2:8443", 2, 0);
        let spoof = found("B (2)", "https://10.0.0.2:8443", 9, 0);
        let listing = json!({
            "running": true,
            "advertised_as": "Home",
            "self": {"origin": OWN.origin, "fingerprint": fingerprint(&OWN.key)},
            "servers": assess(&[real, spoof], &[], &OWN).iter().map(view).collect::<Vec<_>>(),
        });
        let text = format_listing(&listing);
        assert!(text.contains("announced as \"Home\""), "{text}");
        assert!(text.contains("2 server(s) heard"), "{text}");
        assert!(text.contains(&fingerprint(&[9; 32])), "{text}");
        assert_eq!(text.matches("CONFLICT: not trusted").count(), 2, "{text}");
        assert!(!text.contains("--discovered"), "nothing to add: {text}");
        let off = format_listing(&json!({"running": false, "note": "turned off", "servers": []}));
        assert!(
            off.contains("off: turned off") && off.contains("0 server(s)"),
            "{off}"
        );
    }

    #[test]
    fn table_is_bounded() {
        let table = Discovered::new([1; 32], "https://10.0.0.1:8443", "Home");
        for i in 0..(MAX_ENTRIES as u64 + 10) {
            let mut f = found(
                &format!("S{i}"),
                &format!("https://10.0.{}.{}:1", i / 200, i % 200 + 2),
                2,
                i,
            );
            f.key[0] = (i % 250) as u8 + 2;
            f.key[1] = (i / 250) as u8;
            table.observe(f);
        }
        let entries = table.entries(MAX_ENTRIES as u64);
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert!(
            entries.iter().all(|e| e.first_seen >= 10),
            "the oldest went first"
        );
    }

    #[test]
    fn conflicts_are_marked_on_both_sides_and_against_peers_and_self() {
        let real = found("B", "https://10.0.0.2:8443", 2, 0);
        let plain = found("C", "https://10.0.0.3:8443", 3, 0);
        let assessed = assess(&[real.clone(), plain.clone()], &[], &OWN);
        assert!(assessed.iter().all(|a| !a.conflict() && !a.peer));

        // Same origin, another key: both marked.
        let spoof = found("B (2)", "https://10.0.0.2:8443", 9, 0);
        let assessed = assess(&[real.clone(), spoof.clone(), plain.clone()], &[], &OWN);
        let by_key = |k: u8| assessed.iter().find(|a| a.found.key == [k; 32]).unwrap();
        assert!(by_key(2).conflict() && by_key(9).conflict());
        assert!(!by_key(3).conflict());

        // Same name (after the mDNS rename suffix), another origin and key.
        let namesake = found("b (3)", "https://10.0.0.9:8443", 8, 0);
        let assessed = assess(&[real.clone(), namesake], &[], &OWN);
        assert!(assessed.iter().all(Assessed::conflict));

        // A pinned peer's origin or name under another key; the same key is a peer.
        let pinned = [peer("https://10.0.0.2:8443", "B", 2)];
        let assessed = assess(&[real.clone(), spoof.clone()], &pinned, &OWN);
        let real_view = assessed.iter().find(|a| a.found.key == [2; 32]).unwrap();
        assert!(real_view.peer);
        let spoof_view = assessed.iter().find(|a| a.found.key == [9; 32]).unwrap();
        assert!(spoof_view.conflict() && !spoof_view.peer);
        let elsewhere = found("B", "https://10.0.0.7:8443", 7, 0);
        let assessed = assess(&[elsewhere], &pinned, &OWN);
        assert!(
            assessed[0].conflict(),
            "the name of a pinned peer, another key"
        );
        let assessed = assess(&[plain], &[peer("https://10.0.0.3:8443", "C", 4)], &OWN);
        assert!(
            assessed[0].conflict(),
            "the origin of a pinned peer, another key"
        );

        // This server's origin or name under another key.
        let me_too = found("Home", "https://10.0.0.5:8443", 5, 0);
        assert!(assess(&[me_too], &[], &OWN)[0].conflict());
        let my_origin = found("X", OWN.origin, 6, 0);
        assert!(assess(&[my_origin], &[], &OWN)[0].conflict());

        let v = view(&assess(&[real], &[], &OWN)[0]);
        assert_eq!(v["conflict"], false);
        assert_eq!(v["fingerprint"], fingerprint(&[2; 32]));
        assert_eq!(v["tls_fingerprint"], "ab".repeat(32));
    }
}
