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

/// What a server knows of a remote user from their home's `user_created` and
/// `profile_updated` calls: the directory searched when that home does not answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RemoteUser {
    /// User id.
    pub id: super::UserId,
    /// Home server origin.
    pub home: String,
    /// Login name on the home server.
    pub username: String,
    /// Profile as the home last sent it.
    pub profile: super::Profile,
    /// The home's version of this profile (an id from the home's generator, so later
    /// versions from the same home compare greater).
    pub version: u64,
    /// Unix seconds when it was last written here.
    pub updated_at: u64,
}

/// The newest Migration Proof applied for a user here (mzchat): K_id's signature over
/// `new_homeserver|timestamp`. An old home keeps it to answer VerifyUser with "moved".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MigrationRecord {
    /// The new home's origin.
    pub new_homeserver: String,
    /// Unix seconds, as signed.
    pub timestamp: u64,
    /// base64url Ed25519 signature by K_id.
    pub signature: String,
}

/// How fresh a shadow account's profile is, and whether a refresh is on its way.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct ShadowSync {
    /// The home the version below comes from.
    pub home: String,
    /// Unix seconds of the last authoritative profile from the home (0: never).
    pub synced_at: u64,
    /// The home's version of the profile applied last (see [`RemoteUser::version`]).
    pub version: u64,
    /// Outbox id of the VerifyUser call queued to refresh it, if one is (it counts as
    /// pending while that call is still in the outbox).
    pub pending_call: Option<u64>,
}
