//! Every table of the database. Names say key → value; composite keys are big-endian
//! concatenations so that a prefix scan returns rows in order.

use super::codec::{decode_body, CodecError, Stored};
use super::keys::{
    IdKey, IdPair, IdText, IdUser, IdUserId, KeyCodec, OriginSeq, OriginUser, Raw, ReactionKey,
    Seq, Text, Upload, UserKey, UserOriginSeq, UserOriginText, UserText, UserThenId,
};
use crate::model::*;
use std::marker::PhantomData;

/// A typed table: keys of shape `K` (a [`KeyCodec`]; [`Raw`] byte keys when not named) to
/// versioned values of type `V`.
pub struct Table<V, K = Raw> {
    /// The redb table name.
    pub name: &'static str,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<V, K> Clone for Table<V, K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V, K> Copy for Table<V, K> {}

impl<V: Stored, K: KeyCodec> Table<V, K> {
    pub(crate) const fn new(name: &'static str) -> Self {
        Table {
            name,
            _types: PhantomData,
        }
    }

    /// The untyped redb definition.
    pub fn def(&self) -> redb::TableDefinition<'static, &'static [u8], &'static [u8]> {
        redb::TableDefinition::new(self.name)
    }
}

/// Marker for index tables whose value carries no data.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy)]
pub struct Present;

macro_rules! stored {
    ($($t:ty => $v:expr),* $(,)?) => { $(impl Stored for $t { const VERSION: u8 = $v; })* };
}

stored! {
    Present => 1, Device => 1, RefreshToken => 1, Guild => 1, Channel => 1,
    Role => 1, Member => 1, Invite => 1, Ban => 1, FileMeta => 1,
    Vec<u8> => 1, u64 => 1, String => 1, Peer => 1, OutboxItem => 1,
    BanNotification => 1, PushGrant => 1, RemoteUser => 1, ShadowSync => 1,
    MigrationRecord => 1, NotifySettings => 1, ChannelCounter => 1, ReadState => 1,
    BroadMention => 1, Dm => 1, DmEntry => 1, DmPolicy => 1,
    BoxSettings => 1, PasswordReset => 1,
}

/// A message as version 1 stored it: without its number in the channel.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct MessageV1 {
    id: Id,
    channel_id: Id,
    guild_id: Id,
    author_id: UserId,
    content: String,
    created_at: u64,
    edited_at: Option<u64>,
    reply_to: Option<Id>,
    mentions: Vec<UserId>,
    mention_roles: Vec<Id>,
    mention_everyone: bool,
    attachments: Vec<Attachment>,
    pinned: bool,
}

impl Stored for Message {
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => {
                let old: MessageV1 = decode_body(body)?;
                Ok(Message {
                    id: old.id,
                    channel_id: old.channel_id,
                    guild_id: old.guild_id,
                    author_id: old.author_id,
                    content: old.content,
                    created_at: old.created_at,
                    edited_at: old.edited_at,
                    reply_to: old.reply_to,
                    mentions: old.mentions,
                    mention_roles: old.mention_roles,
                    mention_everyone: old.mention_everyone,
                    attachments: old.attachments,
                    pinned: old.pinned,
                    // Posted before messages carried their number: counted as read by
                    // whoever reads a later one (read states never move back).
                    seq: 0,
                })
            }
            v => Err(CodecError::UnknownVersion(v)),
        }
    }
}

/// A user as version 1 stored it: push targets were bare URLs.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct UserV1 {
    id: UserId,
    username: String,
    password_hash: Option<String>,
    key_backup: Option<String>,
    homeserver: String,
    profile: Profile,
    profile_synced: bool,
    push_distributors: Vec<String>,
    fcm_tokens: Vec<String>,
    guild_order: Vec<Id>,
    is_admin: bool,
    created_at: u64,
}

impl Stored for User {
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => {
                let old: UserV1 = decode_body(body)?;
                Ok(User {
                    id: old.id,
                    username: old.username,
                    password_hash: old.password_hash,
                    key_backup: old.key_backup,
                    homeserver: old.homeserver,
                    profile: old.profile,
                    profile_synced: old.profile_synced,
                    // A URL without keys is kept (the user sees it and can remove it) but
                    // never pushed to: delivery needs the keys to encrypt.
                    push_subscriptions: old
                        .push_distributors
                        .into_iter()
                        .map(|endpoint| PushSubscription {
                            endpoint,
                            keys: None,
                        })
                        .collect(),
                    fcm_tokens: old.fcm_tokens,
                    guild_order: old.guild_order,
                    is_admin: old.is_admin,
                    created_at: old.created_at,
                })
            }
            v => Err(CodecError::UnknownVersion(v)),
        }
    }
}

/// An event as version 1 stored it: its audience had no `permissions`.
#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct EventV1 {
    seq: u64,
    kind: String,
    audience: AudienceV1,
    permission_change: Option<Id>,
    data: String,
    at_ms: u64,
}

#[derive(serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct AudienceV1 {
    guilds: Vec<Id>,
    channel: Option<Id>,
    users: Vec<UserId>,
}

impl Stored for Event {
    const VERSION: u8 = 2;

    fn migrate(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => {
                let old: EventV1 = decode_body(body)?;
                let audience = Audience {
                    guilds: old.audience.guilds,
                    channel: old.audience.channel,
                    users: old.audience.users,
                    ..Audience::default()
                };
                // Version 1 sent invites and bans to every member. A resume replays them
                // only to those who may list them now, as version 2 records them.
                let guild_wide = |needed: Permissions| Audience {
                    channel: None,
                    permissions: needed,
                    ..audience.clone()
                };
                let audience = match old.kind.as_str() {
                    "invite_create" | "invite_delete" => guild_wide(Permissions::MANAGE_GUILD),
                    "ban_add" | "ban_remove" => guild_wide(Permissions::BAN_MEMBERS),
                    _ => audience,
                };
                Ok(Event {
                    seq: old.seq,
                    kind: old.kind,
                    audience,
                    permission_change: old.permission_change,
                    data: old.data,
                    at_ms: old.at_ms,
                })
            }
            v => Err(CodecError::UnknownVersion(v)),
        }
    }
}

/// Server-wide settings: name → value (server key, secrets, schema version).
pub const META: Table<Vec<u8>> = Table::new("meta");
/// user id → user.
pub const USER: Table<User, UserKey> = Table::new("user");
/// username → user id bytes.
pub const USERNAME_USER: Table<Vec<u8>, Text> = Table::new("username_user");
/// user id ‖ device thumbprint → device.
pub const USER_DEVICE: Table<Device, UserText> = Table::new("user_device");
/// user id ‖ device thumbprint → unix seconds the device was removed (or signed out):
/// device certificates for that key are refused until every certificate issued before then
/// has expired (see `service::accounts::removal_refused`), and a peer's tokens for it
/// issued before then too.
pub const USER_DEVICE_REMOVED: Table<u64, UserText> = Table::new("user_device_removed");
/// SHA-256 of the token → refresh token.
pub const REFRESH_TOKEN: Table<RefreshToken> = Table::new("refresh_token");
/// guild id → guild.
pub const GUILD: Table<Guild, IdKey> = Table::new("guild");
/// channel id → channel.
pub const CHANNEL: Table<Channel, IdKey> = Table::new("channel");
/// guild id ‖ channel id → (index).
pub const GUILD_CHANNEL: Table<Present, IdPair> = Table::new("guild_channel");
/// guild id ‖ role id → role.
pub const GUILD_ROLE: Table<Role, IdPair> = Table::new("guild_role");
/// guild id ‖ user id → member.
pub const GUILD_MEMBER: Table<Member, IdUser> = Table::new("guild_member");
/// guild id ‖ user id → sequence number of the event that made them a member (a resume
/// does not replay the guild's events from before it).
pub const GUILD_MEMBER_SINCE: Table<u64, IdUser> = Table::new("guild_member_since");
/// user id ‖ guild id → (index of the guilds a user is in).
pub const USER_GUILD: Table<Present, UserThenId> = Table::new("user_guild");
/// channel id ‖ message id → message.
pub const CHANNEL_MESSAGE: Table<Message, IdPair> = Table::new("channel_message");
/// message id ‖ emoji length ‖ emoji ‖ user id → (reaction).
pub const MESSAGE_REACTION: Table<Present, ReactionKey> = Table::new("message_reaction");
/// channel id ‖ message id → (pin).
pub const CHANNEL_PIN: Table<Present, IdPair> = Table::new("channel_pin");
/// invite code → invite.
pub const INVITE: Table<Invite, Text> = Table::new("invite");
/// guild id ‖ invite code → (index).
pub const GUILD_INVITE: Table<Present, IdText> = Table::new("guild_invite");
/// guild id ‖ user id → ban.
pub const GUILD_BAN: Table<Ban, IdUser> = Table::new("guild_ban");
/// file id (SHA-256) → file metadata.
pub const FILE: Table<FileMeta, Text> = Table::new("file");
/// channel id ‖ file id → (the file may be read by those who can read the channel).
pub const CHANNEL_FILE: Table<Present, IdText> = Table::new("channel_file");
/// channel id ‖ file id ‖ uploader id → that upload's metadata (name and type are the
/// uploader's own; `FILE` holds the shared metadata of files uploaded before this table).
pub const CHANNEL_UPLOAD: Table<FileMeta, Upload> = Table::new("channel_upload");

/// channel id ‖ user id → how far the user has read the channel; under [`COUNTER_ROW`] the
/// channel's own message counter ([`ChannelCounter::to_row`]).
pub const CHANNEL_READ_STATE: Table<ReadState, IdUser> = Table::new("channel_read_state");
/// Schema 1: channel id → its message counter (moved into [`CHANNEL_READ_STATE`]).
pub(super) const CHANNEL_COUNTER_V1: Table<ChannelCounter, IdKey> = Table::new("channel_counter");
/// Schema 1: channel id ‖ message id → that message's counter value (now in the message).
pub(super) const CHANNEL_MESSAGE_SEQ_V1: Table<u64, IdPair> = Table::new("channel_message_seq");
/// channel id ‖ user id ‖ message id → (the message mentions the user by name and the user
/// has not read it yet).
pub const CHANNEL_USER_MENTION: Table<Present, IdUserId> = Table::new("channel_user_mention");
/// channel id ‖ message id → the roles or `@everyone` the message mentions.
pub const CHANNEL_BROAD_MENTION: Table<BroadMention, IdPair> = Table::new("channel_broad_mention");

/// event sequence number → event (the event log, pruned by count and age).
pub const EVENT_LOG: Table<Event, Seq> = Table::new("event_log");

/// peer origin → pinned peer.
pub const PEER: Table<Peer, Text> = Table::new("peer");
/// outbox id → server-to-server call waiting for delivery.
pub const OUTBOX: Table<OutboxItem, IdKey> = Table::new("outbox");
/// sender origin ‖ 0 ‖ call id (BE) → unix seconds received (deduplication of calls).
pub const INBOX: Table<u64, OriginSeq> = Table::new("inbox");

/// remote user id → Push Delegation Token their home server gave this server.
pub const PUSH_DELEGATION: Table<String, UserKey> = Table::new("push_delegation");
/// user id ‖ host origin ‖ 0 ‖ host's call id (BE) → ban notification (PropagateBan).
pub const BAN_NOTIFICATION: Table<BanNotification, UserOriginSeq> = Table::new("ban_notification");
/// user id ‖ host origin ‖ 0 ‖ jti → Push Delegation Token issued to that host.
pub const PUSH_GRANT: Table<PushGrant, UserOriginText> = Table::new("push_grant");
/// user id ‖ host origin → unix seconds the user revoked push for that host (no new
/// Push Delegation Tokens are issued to it until the user allows it again).
pub const PUSH_REVOKED: Table<u64, UserText> = Table::new("push_revoked");

/// user id → timestamp of the last migration applied for them.
pub const USER_MIGRATION: Table<u64, UserKey> = Table::new("user_migration");
/// user id → the Migration Proof of the newest migration applied for them (an old home
/// shows it to hosts that ask VerifyUser after the user moved).
pub const USER_MOVED: Table<MigrationRecord, UserKey> = Table::new("user_moved");

/// remote user id ‖ home origin → the home's call id of the `user_deleted` that removed
/// them: their tokens and new shadow accounts from that home are refused.
pub const USER_TOMBSTONE: Table<u64, UserText> = Table::new("user_tombstone");
/// remote user id → what their home broadcast about them (`user_created`, `profile_updated`).
pub const DIRECTORY: Table<RemoteUser, UserKey> = Table::new("directory");
/// home origin ‖ 0 ‖ user id → (index of the directory by home).
pub const DIRECTORY_BY_HOME: Table<Present, OriginUser> = Table::new("directory_by_home");
/// remote user id → the home whose directory entry for them their own device certificate
/// (signed by K_id, sent with `user_created`) proved; such an entry is not displaced by
/// another peer's unproven claim.
pub const DIRECTORY_PROVEN: Table<String, UserKey> = Table::new("directory_proven");
/// remote user id → freshness of their shadow account's profile.
pub const SHADOW_SYNC: Table<ShadowSync, UserKey> = Table::new("shadow_sync");
/// local user id ‖ peer origin → unix seconds of that peer's last VerifyUser for them (the
/// peers that keep a shadow account, which get `profile_updated`).
pub const USER_PEER: Table<u64, UserText> = Table::new("user_peer");
/// user id → the user's notification settings for this box.
pub const USER_NOTIFY_BOX: Table<NotifySettings, UserKey> = Table::new("user_notify_box");
/// user id ‖ guild id → the user's notification settings for that guild.
pub const USER_GUILD_NOTIFY: Table<NotifySettings, UserThenId> = Table::new("user_guild_notify");
/// user id ‖ channel id → the user's notification settings for that channel or DM.
pub const USER_CHANNEL_NOTIFY: Table<NotifySettings, UserThenId> =
    Table::new("user_channel_notify");
/// scope id ‖ user id → present when the user set that scope's level to `all`; the scope
/// is a channel, a guild, or [`BOX_SCOPE`] (id 0) for the box (a message's `all` readers
/// without reading every member's settings).
pub const SCOPE_NOTIFY_ALL: Table<Present, IdUser> = Table::new("scope_notify_all");

/// DM id → DM hosted here (its channel has the same id).
pub const DM: Table<Dm, IdKey> = Table::new("dm");
/// user id ‖ DM id → (index of the DMs hosted here a user is in).
pub const USER_DM: Table<Present, UserThenId> = Table::new("user_dm");
/// local user id ‖ host origin ‖ 0 ‖ DM id → a DM on another box the user is in, as its
/// host last told (`dm_joined`).
pub const USER_REMOTE_DM: Table<DmEntry, UserOriginSeq> = Table::new("user_remote_dm");

/// local user id → who may DM them (absent: everyone).
pub const USER_DM_POLICY: Table<DmPolicy, UserKey> = Table::new("user_dm_policy");
/// local user id ‖ blocked user id (text) → unix seconds blocked.
pub const USER_BLOCK: Table<u64, UserText> = Table::new("user_block");

/// `"box"` → the box's settings and the state of its claim (`service::setup`).
pub const BOX_SETTINGS: Table<BoxSettings, Text> = Table::new("box_settings");
/// local user id → unix seconds an administrator disabled the account.
pub const USER_DISABLED: Table<u64, UserKey> = Table::new("user_disabled");
/// SHA-256 (hex) of a password-reset link's secret → the reset it allows.
pub const PASSWORD_RESET: Table<PasswordReset, Text> = Table::new("password_reset");

/// Every table name, for creation at start and for backups.
pub const ALL_TABLES: &[&str] = &[
    META.name,
    USER.name,
    USERNAME_USER.name,
    USER_DEVICE.name,
    USER_DEVICE_REMOVED.name,
    REFRESH_TOKEN.name,
    GUILD.name,
    CHANNEL.name,
    GUILD_CHANNEL.name,
    GUILD_ROLE.name,
    GUILD_MEMBER.name,
    GUILD_MEMBER_SINCE.name,
    USER_GUILD.name,
    CHANNEL_MESSAGE.name,
    MESSAGE_REACTION.name,
    CHANNEL_PIN.name,
    INVITE.name,
    GUILD_INVITE.name,
    GUILD_BAN.name,
    FILE.name,
    CHANNEL_FILE.name,
    CHANNEL_UPLOAD.name,
    CHANNEL_READ_STATE.name,
    CHANNEL_USER_MENTION.name,
    CHANNEL_BROAD_MENTION.name,
    EVENT_LOG.name,
    PEER.name,
    OUTBOX.name,
    INBOX.name,
    PUSH_DELEGATION.name,
    BAN_NOTIFICATION.name,
    PUSH_GRANT.name,
    PUSH_REVOKED.name,
    USER_MIGRATION.name,
    USER_MOVED.name,
    USER_TOMBSTONE.name,
    DIRECTORY.name,
    DIRECTORY_BY_HOME.name,
    DIRECTORY_PROVEN.name,
    SHADOW_SYNC.name,
    USER_PEER.name,
    USER_NOTIFY_BOX.name,
    USER_GUILD_NOTIFY.name,
    USER_CHANNEL_NOTIFY.name,
    SCOPE_NOTIFY_ALL.name,
    DM.name,
    USER_DM.name,
    USER_REMOTE_DM.name,
    USER_DM_POLICY.name,
    USER_BLOCK.name,
    BOX_SETTINGS.name,
    USER_DISABLED.name,
    PASSWORD_RESET.name,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec::{decode, encode};

    /// A value as version 1 wrote it: the version byte, then the bincode body.
    fn v1(kind: &str, channel: Option<Id>, users: Vec<UserId>) -> Vec<u8> {
        let old = EventV1 {
            seq: 7,
            kind: kind.into(),
            audience: AudienceV1 {
                guilds: vec![Id(1)],
                channel,
                users,
            },
            permission_change: Some(Id(1)),
            data: "{}".into(),
            at_ms: 99,
        };
        encode(&old)
    }

    impl Stored for EventV1 {
        const VERSION: u8 = 1;
    }

    impl Stored for UserV1 {
        const VERSION: u8 = 1;
    }

    impl Stored for MessageV1 {
        const VERSION: u8 = 1;
    }

    #[test]
    fn version_1_messages_decode_without_a_number() {
        let old = MessageV1 {
            id: Id(10),
            channel_id: Id(2),
            guild_id: Id(1),
            author_id: UserId([7; 32]),
            content: "hello".into(),
            created_at: 5,
            edited_at: Some(6),
            reply_to: Some(Id(9)),
            mentions: vec![UserId([8; 32])],
            mention_roles: vec![Id(3)],
            mention_everyone: true,
            attachments: vec![],
            pinned: true,
        };
        let message: Message = decode(&encode(&old)).unwrap();
        assert_eq!(
            (message.id, message.content.as_str(), message.seq),
            (Id(10), "hello", 0)
        );
        assert_eq!(
            (
                message.edited_at,
                message.reply_to,
                message.mention_roles.clone()
            ),
            (Some(6), Some(Id(9)), vec![Id(3)])
        );
        assert!(message.pinned && message.mention_everyone);
        let now = encode(&Message { seq: 12, ..message });
        assert_eq!(now[0], 2);
        assert_eq!(decode::<Message>(&now).unwrap().seq, 12);
    }

    #[test]
    fn version_1_users_keep_their_push_urls_without_keys() {
        let old = UserV1 {
            id: UserId([5; 32]),
            username: "ann".into(),
            password_hash: Some("hash".into()),
            key_backup: None,
            homeserver: String::new(),
            profile: Profile {
                name: "Ann".into(),
                ..Profile::default()
            },
            profile_synced: true,
            push_distributors: vec!["http://ntfy.lan:2586/upAbc".into()],
            fcm_tokens: vec!["fcm".into()],
            guild_order: vec![Id(4)],
            is_admin: true,
            created_at: 12,
        };
        let user: User = decode(&encode(&old)).unwrap();
        assert_eq!(
            user.push_subscriptions,
            vec![PushSubscription {
                endpoint: "http://ntfy.lan:2586/upAbc".into(),
                keys: None,
            }]
        );
        assert_eq!(
            (user.username.as_str(), user.profile.name.as_str()),
            ("ann", "Ann")
        );
        assert_eq!(
            (&user.fcm_tokens, &user.guild_order),
            (&vec!["fcm".to_string()], &vec![Id(4)])
        );
        assert!(user.is_admin && user.profile_synced && user.created_at == 12);
        let again: User = decode(&encode(&user)).unwrap();
        assert_eq!(again.push_subscriptions, user.push_subscriptions);
    }

    #[test]
    fn version_1_events_decode_and_invites_and_bans_are_narrowed() {
        let message: Event = decode(&v1("message_create", Some(Id(2)), vec![])).unwrap();
        assert_eq!(
            (message.seq, message.kind.as_str(), message.at_ms),
            (7, "message_create", 99)
        );
        assert_eq!(message.audience, Audience::channel(Id(1), Id(2)));
        assert_eq!(message.permission_change, Some(Id(1)));

        let invite: Event = decode(&v1("invite_create", Some(Id(2)), vec![])).unwrap();
        assert_eq!(
            invite.audience,
            Audience::guild(Id(1)).requiring(Permissions::MANAGE_GUILD)
        );
        let banned = UserId([3; 32]);
        let ban: Event = decode(&v1("ban_add", None, vec![banned])).unwrap();
        assert_eq!(
            ban.audience,
            Audience::guild(Id(1))
                .requiring(Permissions::BAN_MEMBERS)
                .and_user(banned)
        );

        let now = encode(&ban);
        assert_eq!(now[0], 2);
        assert_eq!(decode::<Event>(&now).unwrap().audience, ban.audience);
    }
}
