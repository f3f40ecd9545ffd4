//! The community model as stored and as shown: users, devices, guilds, channels, roles,
//! members, messages, invites, bans and files. Plain data, no I/O.

use super::ids::{Id, UserId};
use super::permissions::Permissions;
use serde::{Deserialize, Serialize};

/// What a user shows to others. The home server is the authority for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// Link to an avatar picture (may be empty).
    pub avatar_url: String,
    /// Fallback avatar colour as `#rrggbb` (may be empty).
    pub avatar_color: String,
    /// Free text about the user.
    pub bio: String,
    /// Desired presence: `online`, `busy` or `offline`.
    pub presence: Presence,
}

/// A user's presence preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    /// Shown as online while connected.
    #[default]
    Online,
    /// Shown as busy while connected.
    Busy,
    /// Always shown as offline.
    Offline,
}

/// A user account, local or (later) a shadow of a remote user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    /// The Ed25519 identity key K_id, which is the user id.
    pub id: UserId,
    /// Unique login name on this server (lowercase).
    pub username: String,
    /// argon2id PHC string; `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    /// K_id's private key wrapped by the client under the password; opaque to the server.
    pub key_backup: Option<String>,
    /// Origin of the user's home server.
    pub homeserver: String,
    /// The profile.
    pub profile: Profile,
    /// Whether the profile follows the home server (remote users).
    pub profile_synced: bool,
    /// Push subscriptions (UnifiedPush distributors, browsers' push services).
    pub push_subscriptions: Vec<PushSubscription>,
    /// Firebase Cloud Messaging tokens.
    pub fcm_tokens: Vec<String>,
    /// The user's preferred order of guilds.
    pub guild_order: Vec<Id>,
    /// Server administrator.
    pub is_admin: bool,
    /// Unix seconds.
    pub created_at: u64,
}

/// Where and how to push to one of a user's devices: a W3C `PushSubscription` as its
/// `toJSON()` gives it, `{"endpoint", "keys": {"p256dh", "auth"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscription {
    /// The push endpoint URL (a UnifiedPush distributor's, a browser push service's).
    pub endpoint: String,
    /// The keys to encrypt for; `None` for a bare URL stored before subscriptions had
    /// keys, which is never pushed to.
    pub keys: Option<PushKeys>,
}

/// The keys of a [`PushSubscription`], base64url as the browser gives them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushKeys {
    /// The subscription's P-256 public key, an uncompressed point.
    pub p256dh: String,
    /// The 16-byte authentication secret.
    pub auth: String,
}

/// A device (client key) of a user. Devices are keyed by the RFC 7638 thumbprint of
/// their DPoP key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Device {
    /// Thumbprint of K_dev.
    pub jkt: String,
    /// Human label, e.g. "laptop".
    pub name: String,
    /// The device certificate K_id signed for it, if it has one.
    pub certificate: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last token grant.
    pub last_seen: u64,
    /// SHA-256 of the refresh tokens issued to this device (newest last, bounded), so
    /// revoking the device revokes them.
    pub refresh_hashes: Vec<[u8; 32]>,
}

/// A refresh token, stored by the SHA-256 of its text.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshToken {
    /// Whose.
    pub user: UserId,
    /// Thumbprint of the DPoP key it is bound to (RFC 9449 §5).
    pub jkt: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// A guild (community).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Guild {
    /// The guild id; also the id of its `@everyone` role.
    pub id: Id,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Owner.
    pub owner: UserId,
    /// Unix seconds.
    pub created_at: u64,
    /// Goes up on every change to roles, role assignments or overwrites.
    pub permission_version: u64,
}

/// Kinds of channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Text chat.
    Text,
    /// Voice room.
    Voice,
    /// A folder for other channels.
    Category,
    /// A direct message between two people (no guild; see [`super::dm`]).
    Dm,
    /// A direct message among up to ten people, with a name and an owner.
    #[serde(rename = "group_dm")]
    GroupDm,
}

impl ChannelKind {
    /// Whether messages are posted in it (text channels and DMs).
    pub fn holds_messages(self) -> bool {
        matches!(
            self,
            ChannelKind::Text | ChannelKind::Dm | ChannelKind::GroupDm
        )
    }

    /// Whether it is a direct message.
    pub fn is_dm(self) -> bool {
        matches!(self, ChannelKind::Dm | ChannelKind::GroupDm)
    }
}

/// Whom an overwrite applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverwriteTarget {
    /// A role, by id.
    Role(Id),
    /// A member, by user id.
    Member(UserId),
}

/// A per-channel permission overwrite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOverwrite {
    /// Whom it applies to.
    pub target: OverwriteTarget,
    /// Bits granted.
    pub allow: Permissions,
    /// Bits taken away.
    pub deny: Permissions,
}

/// A channel of a guild.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Channel {
    /// Id.
    pub id: Id,
    /// Owning guild.
    pub guild_id: Id,
    /// Text, voice or category.
    pub kind: ChannelKind,
    /// Display name.
    pub name: String,
    /// Topic line.
    pub topic: String,
    /// Sort order among siblings.
    pub position: i32,
    /// The category it sits in.
    pub parent_id: Option<Id>,
    /// Permission overwrites.
    pub overwrites: Vec<ChannelOverwrite>,
}

/// A role of a guild.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Role {
    /// Id (the `@everyone` role has the guild's id).
    pub id: Id,
    /// Owning guild.
    pub guild_id: Id,
    /// Display name.
    pub name: String,
    /// Colour as a 24-bit RGB number.
    pub color: u32,
    /// Permission bits.
    pub permissions: Permissions,
    /// Hierarchy position: higher outranks lower; `@everyone` is 0.
    pub position: i32,
    /// Whether anyone may mention it.
    pub mentionable: bool,
}

/// A member of a guild.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    /// Guild.
    pub guild_id: Id,
    /// User.
    pub user_id: UserId,
    /// Guild nickname (may be empty).
    pub nick: String,
    /// Assigned roles (not `@everyone`, which everyone has).
    pub roles: Vec<Id>,
    /// Unix seconds.
    pub joined_at: u64,
}

/// A file attached to a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Content address (SHA-256, hex).
    pub file_id: String,
    /// File name as uploaded.
    pub filename: String,
    /// Bytes.
    pub size: u64,
    /// MIME type as declared by the uploader.
    pub content_type: String,
}

/// A message in a text channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Message {
    /// Id (time-ordered).
    pub id: Id,
    /// Channel.
    pub channel_id: Id,
    /// Guild.
    pub guild_id: Id,
    /// Author.
    pub author_id: UserId,
    /// Text.
    pub content: String,
    /// Unix milliseconds.
    pub created_at: u64,
    /// Unix milliseconds of the last edit.
    pub edited_at: Option<u64>,
    /// The message this one answers.
    pub reply_to: Option<Id>,
    /// Users mentioned.
    pub mentions: Vec<UserId>,
    /// Roles mentioned.
    pub mention_roles: Vec<Id>,
    /// Whether `@everyone` was mentioned (and allowed).
    pub mention_everyone: bool,
    /// Files.
    pub attachments: Vec<Attachment>,
    /// Pinned in its channel.
    pub pinned: bool,
    /// Its number in the channel: the channel's count of posted messages once it was
    /// posted (read states count unread messages with it); 0 for messages from before
    /// counting began (and from boxes that do not send it).
    #[serde(default)]
    pub seq: u64,
}

/// An invite link to a guild.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Invite {
    /// The code in the link.
    pub code: String,
    /// Guild.
    pub guild_id: Id,
    /// The channel the link lands in.
    pub channel_id: Id,
    /// Who made it.
    pub creator: UserId,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds after which it stops working.
    pub expires_at: Option<u64>,
    /// How many joins it allows.
    pub max_uses: Option<u32>,
    /// How many joins it has had.
    pub uses: u32,
    /// Revoked by a moderator.
    pub revoked: bool,
}

/// A ban record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ban {
    /// Guild.
    pub guild_id: Id,
    /// Banned user.
    pub user_id: UserId,
    /// Why.
    pub reason: String,
    /// Moderator.
    pub banned_by: UserId,
    /// Unix seconds.
    pub created_at: u64,
}

/// Metadata of a stored file (its bytes live in the object store on disk).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileMeta {
    /// SHA-256, hex.
    pub file_id: String,
    /// Bytes.
    pub size: u64,
    /// MIME type.
    pub content_type: String,
    /// File name.
    pub filename: String,
    /// Who uploaded it first.
    pub uploader: UserId,
    /// Unix seconds.
    pub created_at: u64,
}
