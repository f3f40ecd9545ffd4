//! Guilds: creating, reading, changing and deleting them, the user's guild list, and the
//! helpers the guild's parts (channels, roles, members, invites) share.

use super::access::{guild_roles, GuildAccess};
use super::{check_name, check_text, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use crate::system::now;
use serde::Serialize;
use serde_json::json;

/// At this path for the admin channel, which makes invites.
pub use super::invites::NewInvite;

/// A guild as its members see it.
#[derive(Debug, Serialize)]
pub struct GuildView {
    /// The guild.
    #[serde(flatten)]
    pub guild: Guild,
    /// Channels the viewer can see, sorted by position.
    pub channels: Vec<Channel>,
    /// All roles, highest first.
    pub roles: Vec<Role>,
    /// The viewer's guild-wide permissions.
    pub my_permissions: Permissions,
}

/// Stores the guild with its permission version raised: roles, role assignments or
/// overwrites changed.
pub(super) fn bump(tx: &Tx, mut guild: Guild) -> Result<()> {
    guild.permission_version += 1;
    tx.put(GUILD, guild.id, &guild)?;
    Ok(())
}

/// A channel of the guild (not found when it belongs to another).
pub(super) fn load_channel_in(tx: &Tx, guild: Id, channel: Id) -> Result<Channel> {
    tx.get(CHANNEL, channel)?
        .filter(|c| c.guild_id == guild)
        .ok_or(Error::NotFound("channel"))
}

/// Channels in display order: by position, then id.
pub(super) fn sorted_channels(mut channels: Vec<Channel>) -> Vec<Channel> {
    channels.sort_by_key(|c| (c.position, c.id));
    channels
}

/// Every channel of the guild, unsorted.
pub(super) fn guild_channels(tx: &Tx, guild: Id) -> Result<Vec<Channel>> {
    let index = tx.rows(GUILD_CHANNEL, Rows::prefix(guild))?;
    let mut out = Vec::with_capacity(index.len());
    for ((_, id), _) in index {
        if let Some(channel) = tx.get(CHANNEL, id)? {
            out.push(channel);
        }
    }
    Ok(out)
}

/// Makes the user a member with no roles but `@everyone`.
pub(super) fn add_member(tx: &Tx, guild: Id, user: UserId) -> Result<Member> {
    let member = Member {
        guild_id: guild,
        user_id: user,
        nick: String::new(),
        roles: Vec::new(),
        joined_at: now(),
    };
    tx.put(GUILD_MEMBER, (guild, user), &member)?;
    tx.put(USER_GUILD, (user, guild), &Present)?;
    Ok(member)
}

impl Services {
    /// Creates a guild owned by `actor`, with `@everyone` and a `general` text channel.
    pub async fn create_guild(
        &self,
        actor: UserId,
        name: &str,
        description: &str,
    ) -> Result<GuildView> {
        let name = check_name("name", name, self.config.limits.max_name_chars)?;
        let description = check_text(
            "description",
            description,
            self.config.limits.max_text_chars,
        )?;
        let guild_id = self.next_id();
        let channel_id = self.next_id();
        let max_guilds = self.config.limits.max_guilds_per_user;
        self.store
            .write(move |tx| {
                let mine = tx.rows(USER_GUILD, Rows::prefix(actor))?;
                let mut owned = 0;
                for ((_, g), _) in &mine {
                    if tx.get(GUILD, *g)?.is_some_and(|g| g.owner == actor) {
                        owned += 1;
                    }
                }
                if owned >= max_guilds {
                    return Err(Error::LimitReached(format!(
                        "you may own at most {max_guilds} guilds"
                    )));
                }
                let guild = Guild {
                    id: guild_id,
                    name,
                    description,
                    owner: actor,
                    created_at: now(),
                    permission_version: 1,
                };
                tx.put(GUILD, guild_id, &guild)?;
                let everyone = Role {
                    id: guild_id,
                    guild_id,
                    name: "@everyone".into(),
                    color: 0,
                    permissions: Permissions::DEFAULT_EVERYONE,
                    position: 0,
                    mentionable: false,
                };
                tx.put(GUILD_ROLE, (guild_id, guild_id), &everyone)?;
                let general = Channel {
                    id: channel_id,
                    guild_id,
                    kind: ChannelKind::Text,
                    name: "general".into(),
                    topic: String::new(),
                    position: 0,
                    parent_id: None,
                    overwrites: Vec::new(),
                };
                tx.put(CHANNEL, channel_id, &general)?;
                tx.put(GUILD_CHANNEL, (guild_id, channel_id), &Present)?;
                add_member(tx, guild_id, actor)?;
                let seq = tx.emit(
                    "guild_create",
                    Audience::guild(guild_id).and_user(actor),
                    Some(guild_id),
                    &guild,
                )?;
                tx.put(GUILD_MEMBER_SINCE, (guild_id, actor), &seq)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.get_guild(actor, guild_id)
    }

    /// A guild with the channels the viewer can see.
    pub fn get_guild(&self, actor: UserId, guild_id: Id) -> Result<GuildView> {
        self.store.read(|tx| {
            let access = GuildAccess::load(tx, guild_id, actor)?;
            let mut channels = Vec::new();
            for channel in guild_channels(tx, guild_id)? {
                if access
                    .channel_permissions(tx, &channel)?
                    .contains(Permissions::VIEW_CHANNEL)
                {
                    channels.push(channel);
                }
            }
            let mut roles = access.roles.clone();
            roles.sort_by_key(|r| (std::cmp::Reverse(r.position), r.id));
            Ok(GuildView {
                my_permissions: access.guild_permissions(),
                guild: access.guild.clone(),
                channels: sorted_channels(channels),
                roles,
            })
        })
    }

    /// The guilds the user is in, in the user's preferred order, then by join.
    pub fn my_guilds(&self, actor: UserId) -> Result<Vec<Guild>> {
        self.store.read(|tx| {
            let user = tx.get(USER, actor)?.ok_or(Error::NotFound("user"))?;
            let mut guilds = Vec::new();
            for ((_, id), _) in tx.rows(USER_GUILD, Rows::prefix(actor))? {
                if let Some(g) = tx.get(GUILD, id)? {
                    guilds.push(g);
                }
            }
            guilds.sort_by_key(|g| {
                (
                    user.guild_order
                        .iter()
                        .position(|o| *o == g.id)
                        .unwrap_or(usize::MAX),
                    g.id,
                )
            });
            Ok(guilds)
        })
    }

    /// Renames or redescribes a guild (MANAGE_GUILD).
    pub async fn update_guild(
        &self,
        actor: UserId,
        guild_id: Id,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Guild> {
        let limits = &self.config.limits;
        let name = name
            .map(|n| check_name("name", &n, limits.max_name_chars))
            .transpose()?;
        let description = description
            .map(|d| check_text("description", &d, limits.max_text_chars))
            .transpose()?;
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::MANAGE_GUILD)?;
                let mut guild = access.guild;
                if let Some(n) = name {
                    guild.name = n;
                }
                if let Some(d) = description {
                    guild.description = d;
                }
                tx.put(GUILD, guild_id, &guild)?;
                tx.emit("guild_update", Audience::guild(guild_id), None, &guild)?;
                Ok(guild)
            })
            .await
    }

    /// Deletes a guild and everything in it (owner only).
    pub async fn delete_guild(&self, actor: UserId, guild_id: Id) -> Result<()> {
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                if !access.is_owner() {
                    return Err(Error::Forbidden("only the owner may delete a guild".into()));
                }
                for ((_, user), _) in tx.rows(GUILD_MEMBER, Rows::prefix(guild_id))? {
                    super::notifications::forget_guild(tx, user, guild_id)?;
                }
                for channel in guild_channels(tx, guild_id)? {
                    delete_channel_rows(tx, &channel)?;
                }
                let mut members = Vec::new();
                for ((_, user), _) in tx.rows(GUILD_MEMBER, Rows::prefix(guild_id))? {
                    tx.delete(USER_GUILD, (user, guild_id))?;
                    members.push(user);
                }
                tx.delete_rows(GUILD_MEMBER, Rows::prefix(guild_id))?;
                tx.delete_rows(GUILD_MEMBER_SINCE, Rows::prefix(guild_id))?;
                tx.delete_rows(GUILD_ROLE, Rows::prefix(guild_id))?;
                tx.delete_rows(GUILD_BAN, Rows::prefix(guild_id))?;
                for ((_, code), _) in tx.rows(GUILD_INVITE, Rows::prefix(guild_id))? {
                    tx.delete(INVITE, code.as_str())?;
                }
                tx.delete_rows(GUILD_INVITE, Rows::prefix(guild_id))?;
                tx.delete_rows(GUILD_CHANNEL, Rows::prefix(guild_id))?;
                tx.delete(GUILD, guild_id)?;
                let audience = Audience {
                    users: members,
                    ..Audience::default()
                };
                tx.emit(
                    "guild_delete",
                    audience,
                    Some(guild_id),
                    &json!({ "id": guild_id }),
                )?;
                Ok(())
            })
            .await
    }
}

/// Deletes a channel row and everything under it (messages, reactions, pins, file grants).
pub(super) fn delete_channel_rows(tx: &Tx, channel: &Channel) -> Result<()> {
    for (_, message) in tx.rows(CHANNEL_MESSAGE, Rows::prefix(channel.id))? {
        tx.delete_rows(MESSAGE_REACTION, Rows::prefix(message.id))?;
    }
    tx.delete_rows(CHANNEL_MESSAGE, Rows::prefix(channel.id))?;
    tx.delete_rows(CHANNEL_PIN, Rows::prefix(channel.id))?;
    tx.delete_rows(CHANNEL_FILE, Rows::prefix(channel.id))?;
    tx.delete_rows(CHANNEL_UPLOAD, Rows::prefix(channel.id))?;
    super::read_states::on_channel_deleted(tx, channel.id)?;
    tx.delete(CHANNEL, channel.id)?;
    Ok(())
}

/// Reads roles (used by other modules).
pub fn roles_of(tx: &Tx, guild: Id) -> Result<Vec<Role>> {
    guild_roles(tx, guild)
}
