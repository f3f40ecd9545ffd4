//! Events: every persistent change is recorded as an event with a sequence number, in the
//! same commit as the change, so a client that reconnects gets exactly what it missed.

use super::ids::{Id, UserId};
use serde::{Deserialize, Serialize};

/// Who may receive an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audience {
    /// Members of any of these guilds…
    pub guilds: Vec<Id>,
    /// …who can view this channel (when set).
    pub channel: Option<Id>,
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
            users: Vec::new(),
        }
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
