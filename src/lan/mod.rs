//! The box on its LAN: it announces itself over multicast DNS as `_hearth._tcp.local.` and
//! lists the other Hearth servers it hears, so that an administrator can peer with one
//! after comparing its key fingerprint; and its TLS certificate, made at first start and
//! pinned on first use by clients and peers.
//!
//! - [`announce`]: what an announcement says, how it is read and refused.
//! - [`console`]: the setup code file and the console banner (agetty's issue file).
//! - [`heard`]: the bounded table of what was heard, judged for conflicts.
//! - [`mdns`]: the mDNS daemon that announces and browses.
//! - [`names`]: the names and addresses the box is reached at (Avahi's, its own mDNS
//!   host, its interfaces), which its certificate covers.
//! - [`tls`]: the self-signed certificate, fingerprints, and pinning on first use.
//!
//! Nothing heard here is trusted: an announcement only proposes a key, pinned when an
//! administrator confirms its fingerprint (`federation::discovered`).

pub mod announce;
pub mod console;
pub mod heard;
pub mod mdns;
pub mod names;
pub mod tls;

pub use heard::Discovered;
pub use mdns::{start, Discovery};

#[cfg(test)]
mod tests;
