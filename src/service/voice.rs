//! Who may do what in voice: the checks behind joining a room, speaking, and moderating.
//! The rooms themselves live in memory (`crate::voice::Voice`); nothing here writes.

use super::access::{channel_access, GuildAccess};
use super::{invalid, Result, Services};
use crate::model::{ChannelKind, Id, Permissions, UserId};

/// What a user may do in one voice channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoiceAccess {
    /// The channel's guild.
    pub guild: Id,
    /// Whether they may speak (SPEAK); without it they listen only.
    pub speak: bool,
}

impl Services {
    /// Checks that `user` may connect to voice channel `channel_id` (VIEW_CHANNEL and
    /// CONNECT; a text channel or category is refused).
    pub fn voice_access(&self, user: UserId, channel_id: Id) -> Result<VoiceAccess> {
        self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, user)?;
            let have = access.require_in(tx, &channel, Permissions::CONNECT)?;
            // A DM's voice room is its own channel, for its participants.
            if channel.kind != ChannelKind::Voice && !channel.kind.is_dm() {
                return Err(invalid("not_voice", "this is not a voice channel"));
            }
            Ok(VoiceAccess {
                guild: channel.guild_id,
                speak: have.contains(Permissions::SPEAK),
            })
        })
    }

    /// Checks that `user` may see voice channel `channel_id`, for listing who is in it.
    pub fn voice_visible(&self, user: UserId, channel_id: Id) -> Result<Id> {
        self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, user)?;
            access.require_in(tx, &channel, Permissions::VIEW_CHANNEL)?;
            if channel.kind != ChannelKind::Voice && !channel.kind.is_dm() {
                return Err(invalid("not_voice", "this is not a voice channel"));
            }
            Ok(channel.guild_id)
        })
    }

    /// The voice channels of `guild_id` that `user` can see (the guild must be theirs).
    pub fn visible_voice_channels(&self, user: UserId, guild_id: Id) -> Result<Vec<Id>> {
        let visible = self
            .guild_visibility(user, guild_id)?
            .ok_or(super::Error::NotFound("guild"))?;
        self.store.read(|tx| {
            let mut out = Vec::new();
            for channel in visible.channels.into_keys() {
                if let Some(c) = tx.get(crate::storage::tables::CHANNEL, channel)? {
                    if c.kind == ChannelKind::Voice {
                        out.push(channel);
                    }
                }
            }
            Ok(out)
        })
    }

    /// Checks that `moderator` holds `needed` in voice channel `channel_id` of `guild_id`
    /// (or guild-wide when the target is not in a channel).
    pub fn voice_moderation(
        &self,
        moderator: UserId,
        guild_id: Id,
        channel_id: Option<Id>,
        needed: Permissions,
    ) -> Result<()> {
        self.store.read(|tx| match channel_id {
            Some(channel_id) => {
                let (channel, access) = channel_access(tx, channel_id, moderator)?;
                if channel.guild_id != guild_id {
                    return Err(super::Error::NotFound("channel"));
                }
                access.require_in(tx, &channel, needed).map(|_| ())
            }
            None => GuildAccess::load(tx, guild_id, moderator)?.require(needed),
        })
    }
}
