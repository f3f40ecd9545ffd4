//! What a user may see in a guild now, for filtering realtime events (live and replayed).

use super::access::{guild_roles, GuildAccess};
use super::{Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows};
use std::collections::HashMap;

/// What a member holds in one guild now, for filtering realtime events.
#[derive(Debug, Clone, Default)]
pub struct GuildVisibility {
    /// Guild-wide permissions.
    pub guild: Permissions,
    /// Permissions in each channel the member can view (VIEW_CHANNEL); other channels
    /// are absent.
    pub channels: HashMap<Id, Permissions>,
    /// Sequence number of the event that made them a member (their `member_add`, or the
    /// `guild_create` of its owner); 0 when they joined before this was recorded.
    pub joined_seq: u64,
}

impl GuildVisibility {
    /// Whether an event addressed to this guild, `channel` (if any) and `needed`
    /// permissions reaches the member.
    pub fn admits(&self, channel: Option<Id>, needed: Permissions) -> bool {
        match channel {
            None => self.guild.contains(needed),
            Some(channel) => self
                .channels
                .get(&channel)
                .is_some_and(|held| held.contains(needed)),
        }
    }
}

impl Services {
    /// `None` when the user is not a member (or the guild is gone).
    pub fn guild_visibility(&self, user: UserId, guild_id: Id) -> Result<Option<GuildVisibility>> {
        if guild_id == NO_GUILD {
            return self
                .store
                .read(|tx| super::dms::dm_visibility(tx, user))
                .map(Some);
        }
        self.store.read(|tx| {
            let Some(guild) = tx.get(GUILD, guild_id)? else {
                return Ok(None);
            };
            let Some(member) = tx.get(GUILD_MEMBER, (guild_id, user))? else {
                return Ok(None);
            };
            let access = GuildAccess::from_parts(guild, guild_roles(tx, guild_id)?, member);
            let mut channels = HashMap::new();
            for ((_, id), _) in tx.rows(GUILD_CHANNEL, Rows::prefix(guild_id))? {
                let Some(channel) = tx.get(CHANNEL, id)? else {
                    continue;
                };
                let held = access.channel_permissions(tx, &channel)?;
                if held.contains(Permissions::VIEW_CHANNEL) {
                    channels.insert(id, held);
                }
            }
            let joined_seq = tx.get(GUILD_MEMBER_SINCE, (guild_id, user))?.unwrap_or(0);
            Ok(Some(GuildVisibility {
                guild: access.guild_permissions(),
                channels,
                joined_seq,
            }))
        })
    }

    /// A message as it is now, `None` when it was deleted (for replaying events).
    pub fn message_now(&self, channel: Id, message: Id) -> Result<Option<Message>> {
        self.store
            .read(|tx| Ok(tx.get(CHANNEL_MESSAGE, (channel, message))?))
    }

    /// Checks that `user` may type in a text channel; returns its guild.
    pub fn check_typing(&self, user: UserId, channel_id: Id) -> Result<Id> {
        self.store.read(|tx| {
            let (channel, access) = super::access::channel_access(tx, channel_id, user)?;
            access.require_in(tx, &channel, Permissions::SEND_MESSAGES)?;
            Ok(channel.guild_id)
        })
    }

    /// Online members of a guild and their shown status (`online` or `busy`); members whose
    /// preference is `offline` are left out.
    pub fn presences(
        &self,
        user: UserId,
        guild_id: Id,
        online: impl Fn(UserId) -> bool,
    ) -> Result<Vec<serde_json::Value>> {
        self.store.read(|tx| {
            GuildAccess::load(tx, guild_id, user)?;
            let mut out = Vec::new();
            for (_, member) in tx.rows(GUILD_MEMBER, Rows::prefix(guild_id))? {
                if !online(member.user_id) {
                    continue;
                }
                let Some(u) = tx.get(USER, member.user_id)? else {
                    continue;
                };
                let status = match u.profile.presence {
                    Presence::Offline => continue,
                    Presence::Busy => "busy",
                    Presence::Online => "online",
                };
                out.push(serde_json::json!({ "user_id": member.user_id, "status": status }));
            }
            Ok(out)
        })
    }

    /// Ids of the guilds a user is in.
    pub fn guild_ids_of(&self, user: UserId) -> Result<Vec<Id>> {
        self.store.read(|tx| {
            Ok(tx
                .rows(USER_GUILD, Rows::prefix(user))?
                .into_iter()
                .map(|((_, guild), _)| guild)
                .collect())
        })
    }
}
