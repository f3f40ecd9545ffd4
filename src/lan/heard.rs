//! The table of what was heard on the LAN: every announcement (bounded, in memory only),
//! judged against the others, the pinned peers and this server. An announcement that
//! claims the name or origin of a server known under another key (another announcement,
//! a pinned peer, or this server) is a *conflict*: both are listed and marked, and
//! neither can be added from here.

use super::announce::{base_name, same_claim, Found};
use crate::auth::jose::b64u;
use crate::model::{federation::fingerprint, Peer};
use serde_json::{json, Value};
use std::sync::Mutex;

/// Most announcements remembered; past that the one heard least recently is forgotten.
pub const MAX_ENTRIES: usize = 256;
/// An announcement gone (withdrawn, or its records expired) for this long (seconds) is
/// forgotten. While announced it stays: the mDNS daemon keeps its records fresh by their
/// TTLs (re-querying before they expire) and reports it removed when they lapse.
pub const EXPIRE_SECS: u64 = 600;
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

    pub(super) fn set_status(&self, update: impl FnOnce(&mut Status)) {
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
/// [`crate::federation::discovered::listing`] as text for `hearth peer discovered`.
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
                crate::lan::tls::display_fingerprint(tls)
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
