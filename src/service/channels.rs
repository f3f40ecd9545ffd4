//! Channels of a guild: creating, reading, changing (overwrites, category, position) and
//! deleting them.

use super::access::{channel_access, guild_roles, GuildAccess};
use super::guilds::{bump, delete_channel_rows, guild_channels, load_channel_in};
use super::{check_name, check_text, invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use serde::Deserialize;
use serde_json::json;

/// New channel.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    /// Name.
    pub name: String,
    /// `text` (default), `voice` or `category`.
    #[serde(default = "default_kind")]
    pub kind: ChannelKind,
    /// Topic.
    #[serde(default)]
    pub topic: String,
    /// Category.
    #[serde(default)]
    pub parent_id: Option<Id>,
    /// Position (default: last).
    #[serde(default)]
    pub position: Option<i32>,
    /// Overwrites.
    #[serde(default)]
    pub overwrites: Vec<ChannelOverwrite>,
}

fn default_kind() -> ChannelKind {
    ChannelKind::Text
}

/// Channel changes; absent fields stay.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChannelUpdate {
    /// Name.
    pub name: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Position.
    pub position: Option<i32>,
    /// Category (`null` is "no change"; use `0` to leave the category).
    pub parent_id: Option<Id>,
    /// Replaces all overwrites.
    pub overwrites: Option<Vec<ChannelOverwrite>>,
}

fn check_overwrites(tx: &Tx, guild: Id, list: &[ChannelOverwrite], max: usize) -> Result<()> {
    if list.len() > max {
        return Err(invalid(
            "too_many_items",
            format!("at most {max} overwrites per channel"),
        ));
    }
    for o in list {
        match &o.target {
            OverwriteTarget::Role(role) => {
                if !tx.contains(GUILD_ROLE, (guild, *role))? {
                    return Err(Error::NotFound("role"));
                }
            }
            OverwriteTarget::Member(user) => {
                if !tx.contains(GUILD_MEMBER, (guild, *user))? {
                    return Err(Error::NotFound("member"));
                }
            }
        }
        if Permissions::from_bits_truncate(o.allow.0) != o.allow
            || Permissions::from_bits_truncate(o.deny.0) != o.deny
        {
            return Err(invalid("invalid_permissions", "unknown permission bits"));
        }
    }
    Ok(())
}

/// The members who can view a channel now.
fn channel_viewers(tx: &Tx, channel: &Channel) -> Result<Vec<UserId>> {
    let guild = tx
        .get(GUILD, channel.guild_id)?
        .ok_or(Error::NotFound("guild"))?;
    let roles = guild_roles(tx, channel.guild_id)?;
    let mut viewers = Vec::new();
    for (_, member) in tx.rows(GUILD_MEMBER, Rows::prefix(channel.guild_id))? {
        let user = member.user_id;
        let access = GuildAccess::from_parts(guild.clone(), roles.clone(), member);
        if access
            .channel_permissions(tx, channel)?
            .contains(Permissions::VIEW_CHANNEL)
        {
            viewers.push(user);
        }
    }
    Ok(viewers)
}

impl Services {
    /// Creates a channel (MANAGE_CHANNELS; overwrites also need MANAGE_ROLES).
    pub async fn create_channel(
        &self,
        actor: UserId,
        guild_id: Id,
        new: NewChannel,
    ) -> Result<Channel> {
        let limits = self.config.limits.clone();
        let name = check_name("name", &new.name, limits.max_name_chars)?;
        let topic = check_text("topic", &new.topic, limits.max_text_chars)?;
        let id = self.next_id();
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::MANAGE_CHANNELS)?;
                if !new.overwrites.is_empty() {
                    access.require(Permissions::MANAGE_ROLES)?;
                }
                check_overwrites(
                    tx,
                    guild_id,
                    &new.overwrites,
                    limits.max_overwrites_per_channel,
                )?;
                let existing = guild_channels(tx, guild_id)?;
                if existing.len() >= limits.max_channels_per_guild {
                    return Err(Error::LimitReached(format!(
                        "at most {} channels per guild",
                        limits.max_channels_per_guild
                    )));
                }
                if let Some(parent) = new.parent_id {
                    if new.kind == ChannelKind::Category {
                        return Err(invalid(
                            "invalid_parent",
                            "a category cannot sit in a category",
                        ));
                    }
                    let p = load_channel_in(tx, guild_id, parent)?;
                    if p.kind != ChannelKind::Category {
                        return Err(invalid("invalid_parent", "parent_id must be a category"));
                    }
                }
                let position = new.position.unwrap_or_else(|| {
                    existing
                        .iter()
                        .filter(|c| c.parent_id == new.parent_id)
                        .map(|c| c.position.saturating_add(1))
                        .max()
                        .unwrap_or(0)
                });
                let mut channel = Channel {
                    id,
                    guild_id,
                    kind: new.kind,
                    name,
                    topic,
                    position,
                    parent_id: new.parent_id,
                    overwrites: Vec::new(),
                };
                // What the creator holds in the new channel before its own overwrites
                // bounds what those may allow or deny.
                let held = access.channel_permissions(tx, &channel)?;
                access.require_overwrite_change(tx, held, &[], &new.overwrites)?;
                channel.overwrites = new.overwrites;
                tx.put(CHANNEL, id, &channel)?;
                tx.put(GUILD_CHANNEL, (guild_id, id), &Present)?;
                if !channel.overwrites.is_empty() {
                    bump(tx, access.guild)?;
                }
                tx.emit(
                    "channel_create",
                    Audience::channel(guild_id, id),
                    Some(guild_id),
                    &channel,
                )?;
                Ok(channel)
            })
            .await
    }

    /// Channels of a guild the viewer can see.
    pub fn list_channels(&self, actor: UserId, guild_id: Id) -> Result<Vec<Channel>> {
        Ok(self.get_guild(actor, guild_id)?.channels)
    }

    /// One channel.
    pub fn get_channel(&self, actor: UserId, channel_id: Id) -> Result<Channel> {
        self.store.read(|tx| {
            let (channel, access) = channel_access(tx, channel_id, actor)?;
            access.require_in(tx, &channel, Permissions::VIEW_CHANNEL)?;
            Ok(channel)
        })
    }

    /// Changes a channel (MANAGE_CHANNELS; overwrites need MANAGE_ROLES).
    pub async fn update_channel(
        &self,
        actor: UserId,
        channel_id: Id,
        update: ChannelUpdate,
    ) -> Result<Channel> {
        let limits = self.config.limits.clone();
        let name = update
            .name
            .map(|n| check_name("name", &n, limits.max_name_chars))
            .transpose()?;
        let topic = update
            .topic
            .map(|t| check_text("topic", &t, limits.max_text_chars))
            .transpose()?;
        self.store
            .write(move |tx| {
                let (mut channel, access) = channel_access(tx, channel_id, actor)?;
                let held = access.require_in(tx, &channel, Permissions::MANAGE_CHANNELS)?;
                access.require(Permissions::MANAGE_CHANNELS)?;
                let category_overwrites = |parent: Option<Id>| -> Result<Vec<ChannelOverwrite>> {
                    Ok(match parent {
                        Some(p) => tx
                            .get(CHANNEL, p)?
                            .map(|c| c.overwrites)
                            .unwrap_or_default(),
                        None => Vec::new(),
                    })
                };
                let old_parent = channel.parent_id;
                if let Some(parent) = update.parent_id {
                    if parent.0 == 0 {
                        channel.parent_id = None;
                    } else {
                        let p = load_channel_in(tx, channel.guild_id, parent)?;
                        if p.kind != ChannelKind::Category || channel.kind == ChannelKind::Category
                        {
                            return Err(invalid(
                                "invalid_parent",
                                "parent_id must be a category, and categories do not nest",
                            ));
                        }
                        channel.parent_id = Some(parent);
                    }
                }
                // Moving a channel to another category swaps the overwrites it inherits:
                // the editor must be able to make that change by hand.
                if channel.parent_id != old_parent {
                    access.require_overwrite_change(
                        tx,
                        held,
                        &category_overwrites(old_parent)?,
                        &category_overwrites(channel.parent_id)?,
                    )?;
                }
                let overwrites_changed = update.overwrites.is_some() || update.parent_id.is_some();
                if let Some(list) = update.overwrites {
                    access.require(Permissions::MANAGE_ROLES)?;
                    check_overwrites(
                        tx,
                        channel.guild_id,
                        &list,
                        limits.max_overwrites_per_channel,
                    )?;
                    access.require_overwrite_change(tx, held, &channel.overwrites, &list)?;
                    channel.overwrites = list;
                }
                if let Some(n) = name {
                    channel.name = n;
                }
                if let Some(t) = topic {
                    channel.topic = t;
                }
                if let Some(p) = update.position {
                    channel.position = p;
                }
                tx.put(CHANNEL, channel_id, &channel)?;
                if overwrites_changed {
                    bump(tx, access.guild)?;
                }
                tx.emit(
                    "channel_update",
                    Audience::channel(channel.guild_id, channel_id),
                    Some(channel.guild_id),
                    &channel,
                )?;
                Ok(channel)
            })
            .await
    }

    /// Deletes a channel and its messages (MANAGE_CHANNELS).
    pub async fn delete_channel(&self, actor: UserId, channel_id: Id) -> Result<()> {
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                access.require_in(tx, &channel, Permissions::MANAGE_CHANNELS)?;
                access.require(Permissions::MANAGE_CHANNELS)?;
                if channel.kind == ChannelKind::Category {
                    for mut child in guild_channels(tx, channel.guild_id)?
                        .into_iter()
                        .filter(|c| c.parent_id == Some(channel_id))
                    {
                        // Its channels leave the category and lose the overwrites they
                        // inherited: the same change as moving each out by hand.
                        let held = access.channel_permissions(tx, &child)?;
                        access.require_overwrite_change(tx, held, &channel.overwrites, &[])?;
                        child.parent_id = None;
                        tx.put(CHANNEL, child.id, &child)?;
                    }
                }
                // Once it is gone nobody can view it: those who could are named.
                let viewers = channel_viewers(tx, &channel)?;
                delete_channel_rows(tx, &channel)?;
                tx.delete(GUILD_CHANNEL, (channel.guild_id, channel_id))?;
                tx.emit(
                    "channel_delete",
                    Audience {
                        users: viewers,
                        ..Audience::default()
                    },
                    Some(channel.guild_id),
                    &json!({ "id": channel_id, "guild_id": channel.guild_id }),
                )?;
                Ok(())
            })
            .await
    }
}
