//! What a user may see in a guild, for filtering realtime events.

use super::access::{guild_roles, GuildAccess};
use super::{Result, Services};
use crate::model::*;
use crate::storage::{keys, tables::*};
use std::collections::HashSet;

/// The channels of one guild a member can view.
#[derive(Debug, Clone, Default)]
pub struct GuildVisibility {
    /// Channel ids with VIEW_CHANNEL.
    pub channels: HashSet<Id>,
}

impl Services {
    /// `None` when the user is not a member (or the guild is gone).
    pub fn guild_visibility(&self, user: UserId, guild_id: Id) -> Result<Option<GuildVisibility>> {
        self.store.read(|tx| {
            let Some(guild) = tx.get(GUILD, &keys::id(guild_id))? else {
                return Ok(None);
            };
            let Some(member) = tx.get(GUILD_MEMBER, &keys::id_user(guild_id, user))? else {
                return Ok(None);
            };
            let access = GuildAccess::from_parts(guild, guild_roles(tx, guild_id)?, member);
            let mut channels = HashSet::new();
            for (key, _) in tx.scan_prefix(GUILD_CHANNEL, &keys::id(guild_id), usize::MAX)? {
                let Some(id) = keys::read_id(&key, 8) else {
                    continue;
                };
                let Some(channel) = tx.get(CHANNEL, &keys::id(id))? else {
                    continue;
                };
                if access
                    .channel_permissions(tx, &channel)?
                    .contains(Permissions::VIEW_CHANNEL)
                {
                    channels.insert(id);
                }
            }
            Ok(Some(GuildVisibility { channels }))
        })
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
            for (_, member) in tx.scan_prefix(GUILD_MEMBER, &keys::id(guild_id), usize::MAX)? {
                if !online(member.user_id) {
                    continue;
                }
                let Some(u) = tx.get(USER, &member.user_id.0)? else {
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
                .scan_prefix(USER_GUILD, &user.0, usize::MAX)?
                .into_iter()
                .filter_map(|(key, _)| keys::read_id(&key, 32))
                .collect())
        })
    }
}
