//! Records of what other servers tell a home server about its users: ban notifications
//! (PropagateBan) and the Push Delegation Tokens it issued (so they can be listed and
//! revoked).

use super::ids::{Id, UserId};
use serde::{Deserialize, Serialize};

/// A host's notice that it banned one of this server's users from one of its guilds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BanNotification {
    /// The host's call id (deduplication key, with the host).
    pub call_id: u64,
    /// Origin of the server that banned the user.
    pub host: String,
    /// The banned user (homed here).
    pub user_id: UserId,
    /// The guild's id on the host.
    pub guild_id: Id,
    /// The guild's name on the host, as it said.
    pub guild_name: String,
    /// The reason the host gave.
    pub reason: String,
    /// Unix seconds when it arrived here.
    pub received_at: u64,
}

/// A Push Delegation Token this server issued to a host for one of its users.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PushGrant {
    /// The host it was issued to (the token's `aud`).
    pub host: String,
    /// The user (the token's `sub`).
    pub user_id: UserId,
    /// The token's `jti`.
    pub jti: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}
