//! Events: every persistent change is recorded as an event with a sequence number, in the
//! same commit as the change, so a client that reconnects gets exactly what it missed.

use super::ids::{Id, UserId};
use super::permissions::Permissions;
use serde::{Deserialize, Serialize};

/// Who may receive an event: the same people who could read the same thing over REST at
/// the time it is delivered (live or replayed), judged by their permissions then.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// Members of any of these guilds…
    pub guilds: Vec<Id>,
    /// …who can view this channel (when set)…
    pub channel: Option<Id>,
    /// …and who hold these permissions too: in `channel` when it is set, guild-wide
    /// otherwise (e.g. `MANAGE_GUILD` for invites, `BAN_MEMBERS` for bans). Empty: none.
    pub permissions: Permissions,
    /// These users always receive it (e.g. the member who was removed, the user whose
    /// settings changed).
    pub users: Vec<UserId>,
}

impl Audience {
    /// Every member of a guild.
    pub fn guild(guild: Id) -> Audience {
        Audience {
            guilds: vec![guild],
            ..Audience::default()
        }
    }

    /// Members of a guild who can view a channel.
    pub fn channel(guild: Id, channel: Id) -> Audience {
        Audience {
            guilds: vec![guild],
            channel: Some(channel),
            ..Audience::default()
        }
    }

    /// Narrows the audience to members who also hold `permissions` (in the channel when
    /// one is set, guild-wide otherwise).
    pub fn requiring(mut self, permissions: Permissions) -> Audience {
        self.permissions |= permissions;
        self
    }

    /// One user.
    pub fn user(user: UserId) -> Audience {
        Audience {
            users: vec![user],
            ..Audience::default()
        }
    }

    /// Adds a user who receives it regardless of guilds.
    pub fn and_user(mut self, user: UserId) -> Audience {
        if !self.users.contains(&user) {
            self.users.push(user);
        }
        self
    }
}

/// Event kinds about the messages of a channel: what a resume replays of them is history
/// (READ_MESSAGE_HISTORY), and they are replayed as the message is now.
pub const MESSAGE_KINDS: &[&str] = &[
    "message_create",
    "message_update",
    "message_delete",
    "pin_add",
    "pin_remove",
    "reaction_add",
    "reaction_remove",
];

/// Message event kinds whose payload is the whole message (content included).
pub const MESSAGE_CONTENT_KINDS: &[&str] =
    &["message_create", "message_update", "pin_add", "pin_remove"];

/// One recorded event. `data` is the JSON payload, serialized once when the event is made
/// and sent as is to every receiver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// Event type, e.g. `message_create`.
    pub kind: String,
    /// Who may see it.
    pub audience: Audience,
    /// Guild whose permissions it changes (role, member or overwrite changes), so
    /// receivers recompute what they may see before delivering later events.
    pub permission_change: Option<Id>,
    /// JSON payload.
    pub data: String,
    /// Unix milliseconds.
    pub at_ms: u64,
}

impl Event {
    /// Whether this event is about a channel's messages ([`MESSAGE_KINDS`]).
    pub fn is_about_messages(&self) -> bool {
        MESSAGE_KINDS.contains(&self.kind.as_str())
    }

    /// Whether its payload is a whole message ([`MESSAGE_CONTENT_KINDS`]).
    pub fn carries_message(&self) -> bool {
        MESSAGE_CONTENT_KINDS.contains(&self.kind.as_str())
    }
}
