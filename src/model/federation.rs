//! Federation records: pinned peers and the durable outbox of server-to-server calls.

use serde::{Deserialize, Serialize};

/// A server this one federates with; its key is pinned.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    /// Its origin, e.g. `http://hearth-b.local:8080`.
    pub origin: String,
    /// Its name, from its `/.well-known/hearth`.
    pub name: String,
    /// Its Ed25519 server key S.
    pub server_key: [u8; 32],
    /// Unix seconds.
    pub added_at: u64,
    /// Whether an administrator added it (`false`: pinned on first contact, open policy).
    pub approved: bool,
}

/// A server-to-server call waiting to be delivered.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OutboxItem {
    /// Id (unique on this server; the receiver deduplicates on it).
    pub id: u64,
    /// Target origin.
    pub target: String,
    /// Call name, e.g. `verify_user` (the path is `/federation/v1/<call>`).
    pub call: String,
    /// JSON body.
    pub body: String,
    /// Attempts made.
    pub attempts: u32,
    /// Unix milliseconds of the next attempt.
    pub next_attempt_ms: u64,
    /// Unix milliseconds when it was queued.
    pub created_ms: u64,
    /// The last error, for administrators.
    pub last_error: String,
}

/// The fingerprint shown to administrators for a server key: SHA-256, hex, in groups of 4.
pub fn fingerprint(key: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key);
    digest
        .chunks(2)
        .map(|pair| pair.iter().map(|b| format!("{b:02x}")).collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}
