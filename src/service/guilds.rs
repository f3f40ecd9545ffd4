//! Guilds, channels, roles, members, kicks, bans and invites.

use super::access::{channel_access, guild_roles, missing, GuildAccess};
use super::accounts::PublicUser;
use super::{check_name, check_text, invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{keys, tables::*, Tx};
use crate::system::now;
use serde::{Deserialize, Serialize};
use serde_json::json;

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

/// New role or role changes.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    /// Name.
    pub name: Option<String>,
    /// Permission bits.
    pub permissions: Option<u64>,
    /// Colour.
    pub color: Option<u32>,
    /// Position (must stay below the actor's rank).
    pub position: Option<i32>,
    /// Mentionable by anyone.
    pub mentionable: Option<bool>,
}

/// A member with the user's public profile.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Membership.
    #[serde(flatten)]
    pub member: Member,
    /// Profile.
    pub user: Option<PublicUser>,
}

/// What anyone with the link may see of an invite.
#[derive(Debug, Serialize)]
pub struct InvitePreview {
    /// Code.
    pub code: String,
    /// Guild id.
    pub guild_id: Id,
    /// Guild name.
    pub guild_name: String,
    /// Guild description.
    pub guild_description: String,
    /// Channel id.
    pub channel_id: Id,
    /// Channel name.
    pub channel_name: String,
    /// Members.
    pub member_count: usize,
    /// Unix seconds.
    pub expires_at: Option<u64>,
}

/// New invite.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// Lifetime in seconds (default 7 days; 0 = never expires).
    pub max_age_secs: Option<u64>,
    /// Uses allowed (default unlimited).
    pub max_uses: Option<u32>,
}

const MAX_MEMBER_COUNT: usize = 1_000_000;

fn bump(tx: &Tx, mut guild: Guild) -> Result<()> {
    guild.permission_version += 1;
    tx.put(GUILD, &keys::id(guild.id), &guild)?;
    Ok(())
}

fn load_channel_in(tx: &Tx, guild: Id, channel: Id) -> Result<Channel> {
    tx.get(CHANNEL, &keys::id(channel))?
        .filter(|c| c.guild_id == guild)
        .ok_or(Error::NotFound("channel"))
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
                if !tx.contains(GUILD_ROLE, &keys::id_id(guild, *role))? {
                    return Err(Error::NotFound("role"));
                }
            }
            OverwriteTarget::Member(user) => {
                if !tx.contains(GUILD_MEMBER, &keys::id_user(guild, *user))? {
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

fn sorted_channels(mut channels: Vec<Channel>) -> Vec<Channel> {
    channels.sort_by_key(|c| (c.position, c.id));
    channels
}

fn guild_channels(tx: &Tx, guild: Id) -> Result<Vec<Channel>> {
    let index = tx.scan_prefix(GUILD_CHANNEL, &keys::id(guild), usize::MAX)?;
    let mut out = Vec::with_capacity(index.len());
    for (key, _) in index {
        if let Some(id) = keys::read_id(&key, 8) {
            if let Some(channel) = tx.get(CHANNEL, &keys::id(id))? {
                out.push(channel);
            }
        }
    }
    Ok(out)
}

fn make_invite_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 10];
    crate::system::random_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Tells the guild and the removed user that a member is gone.
fn emit_member_remove(tx: &Tx, guild: Id, user: UserId) -> Result<()> {
    tx.emit(
        "member_remove",
        Audience::guild(guild).and_user(user),
        Some(guild),
        &json!({ "guild_id": guild, "user_id": user }),
    )?;
    Ok(())
}

/// The members who can view a channel now.
fn channel_viewers(tx: &Tx, channel: &Channel) -> Result<Vec<UserId>> {
    let guild = tx
        .get(GUILD, &keys::id(channel.guild_id))?
        .ok_or(Error::NotFound("guild"))?;
    let roles = guild_roles(tx, channel.guild_id)?;
    let mut viewers = Vec::new();
    for (_, member) in tx.scan_prefix(GUILD_MEMBER, &keys::id(channel.guild_id), usize::MAX)? {
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

/// Removes a member and their role assignments from a guild.
fn remove_member(tx: &Tx, guild: Id, user: UserId) -> Result<bool> {
    let existed = tx.delete(GUILD_MEMBER, &keys::id_user(guild, user))?;
    tx.delete(GUILD_MEMBER_SINCE, &keys::id_user(guild, user))?;
    tx.delete(USER_GUILD, &keys::user_id(user, guild))?;
    Ok(existed)
}

fn add_member(tx: &Tx, guild: Id, user: UserId) -> Result<Member> {
    let member = Member {
        guild_id: guild,
        user_id: user,
        nick: String::new(),
        roles: Vec::new(),
        joined_at: now(),
    };
    tx.put(GUILD_MEMBER, &keys::id_user(guild, user), &member)?;
    tx.put(USER_GUILD, &keys::user_id(user, guild), &Present)?;
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
                let mine = tx.scan_prefix(USER_GUILD, &actor.0, usize::MAX)?;
                let mut owned = 0;
                for (key, _) in &mine {
                    if let Some(g) = keys::read_id(key, 32) {
                        if tx
                            .get(GUILD, &keys::id(g))?
                            .is_some_and(|g| g.owner == actor)
                        {
                            owned += 1;
                        }
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
                tx.put(GUILD, &keys::id(guild_id), &guild)?;
                let everyone = Role {
                    id: guild_id,
                    guild_id,
                    name: "@everyone".into(),
                    color: 0,
                    permissions: Permissions::DEFAULT_EVERYONE,
                    position: 0,
                    mentionable: false,
                };
                tx.put(GUILD_ROLE, &keys::id_id(guild_id, guild_id), &everyone)?;
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
                tx.put(CHANNEL, &keys::id(channel_id), &general)?;
                tx.put(GUILD_CHANNEL, &keys::id_id(guild_id, channel_id), &Present)?;
                add_member(tx, guild_id, actor)?;
                let seq = tx.emit(
                    "guild_create",
                    Audience::guild(guild_id).and_user(actor),
                    Some(guild_id),
                    &guild,
                )?;
                tx.put(GUILD_MEMBER_SINCE, &keys::id_user(guild_id, actor), &seq)?;
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
            let user = tx.get(USER, &actor.0)?.ok_or(Error::NotFound("user"))?;
            let mut guilds = Vec::new();
            for (key, _) in tx.scan_prefix(USER_GUILD, &actor.0, usize::MAX)? {
                if let Some(id) = keys::read_id(&key, 32) {
                    if let Some(g) = tx.get(GUILD, &keys::id(id))? {
                        guilds.push(g);
                    }
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
                tx.put(GUILD, &keys::id(guild_id), &guild)?;
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
                for channel in guild_channels(tx, guild_id)? {
                    delete_channel_rows(tx, &channel)?;
                }
                let mut members = Vec::new();
                for (key, _) in tx.scan_prefix(GUILD_MEMBER, &keys::id(guild_id), usize::MAX)? {
                    if let Some(user) = keys::read_user(&key, 8) {
                        tx.delete(USER_GUILD, &keys::user_id(user, guild_id))?;
                        members.push(user);
                    }
                }
                tx.delete_prefix(GUILD_MEMBER, &keys::id(guild_id))?;
                tx.delete_prefix(GUILD_MEMBER_SINCE, &keys::id(guild_id))?;
                tx.delete_prefix(GUILD_ROLE, &keys::id(guild_id))?;
                tx.delete_prefix(GUILD_BAN, &keys::id(guild_id))?;
                for (key, _) in tx.scan_prefix(GUILD_INVITE, &keys::id(guild_id), usize::MAX)? {
                    tx.delete(INVITE, &key[8..])?;
                }
                tx.delete_prefix(GUILD_INVITE, &keys::id(guild_id))?;
                tx.delete_prefix(GUILD_CHANNEL, &keys::id(guild_id))?;
                tx.delete(GUILD, &keys::id(guild_id))?;
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

    // ---- channels ----

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
                tx.put(CHANNEL, &keys::id(id), &channel)?;
                tx.put(GUILD_CHANNEL, &keys::id_id(guild_id, id), &Present)?;
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
                            .get(CHANNEL, &keys::id(p))?
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
                tx.put(CHANNEL, &keys::id(channel_id), &channel)?;
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
                        tx.put(CHANNEL, &keys::id(child.id), &child)?;
                    }
                }
                // Once it is gone nobody can view it: those who could are named.
                let viewers = channel_viewers(tx, &channel)?;
                delete_channel_rows(tx, &channel)?;
                tx.delete(GUILD_CHANNEL, &keys::id_id(channel.guild_id, channel_id))?;
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

    // ---- roles ----

    /// Roles of a guild, highest first.
    pub fn list_roles(&self, actor: UserId, guild_id: Id) -> Result<Vec<Role>> {
        Ok(self.get_guild(actor, guild_id)?.roles)
    }

    /// Creates a role below the actor's rank, with no more permissions than the actor has.
    pub async fn create_role(&self, actor: UserId, guild_id: Id, new: RoleUpdate) -> Result<Role> {
        let limits = self.config.limits.clone();
        let name = check_name(
            "name",
            new.name.as_deref().unwrap_or("new role"),
            limits.max_name_chars,
        )?;
        let id = self.next_id();
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::MANAGE_ROLES)?;
                if access.roles.len() >= limits.max_roles_per_guild {
                    return Err(Error::LimitReached(format!(
                        "at most {} roles per guild",
                        limits.max_roles_per_guild
                    )));
                }
                let permissions = Permissions::from_bits_truncate(new.permissions.unwrap_or(0));
                access.require_grantable(permissions)?;
                let position = new.position.unwrap_or(1).max(1);
                if !access.can_manage_role(position) {
                    return Err(Error::Forbidden(
                        "you cannot create a role at or above your own highest role".into(),
                    ));
                }
                let role = Role {
                    id,
                    guild_id,
                    name,
                    color: new.color.unwrap_or(0) & 0xff_ffff,
                    permissions,
                    position,
                    mentionable: new.mentionable.unwrap_or(false),
                };
                tx.put(GUILD_ROLE, &keys::id_id(guild_id, id), &role)?;
                bump(tx, access.guild)?;
                tx.emit(
                    "role_create",
                    Audience::guild(guild_id),
                    Some(guild_id),
                    &role,
                )?;
                Ok(role)
            })
            .await
    }

    /// Changes a role the actor outranks.
    pub async fn update_role(
        &self,
        actor: UserId,
        guild_id: Id,
        role_id: Id,
        update: RoleUpdate,
    ) -> Result<Role> {
        let limits = self.config.limits.clone();
        let name = update
            .name
            .as_deref()
            .map(|n| check_name("name", n, limits.max_name_chars))
            .transpose()?;
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::MANAGE_ROLES)?;
                let mut role = tx
                    .get(GUILD_ROLE, &keys::id_id(guild_id, role_id))?
                    .ok_or(Error::NotFound("role"))?;
                let is_everyone = role.id == guild_id;
                if !is_everyone && !access.can_manage_role(role.position) {
                    return Err(Error::Forbidden(
                        "you cannot change a role at or above your own highest role".into(),
                    ));
                }
                if is_everyone && !access.can_manage_role(1) {
                    return Err(missing(Permissions::MANAGE_ROLES));
                }
                if let Some(bits) = update.permissions {
                    let permissions = Permissions::from_bits_truncate(bits);
                    access.require_grantable(permissions.remove(role.permissions))?;
                    role.permissions = permissions;
                }
                if let Some(position) = update.position {
                    if is_everyone {
                        return Err(invalid("invalid_position", "@everyone stays at position 0"));
                    }
                    if position < 1 || !access.can_manage_role(position) {
                        return Err(Error::Forbidden(
                            "you cannot move a role to or above your own highest role".into(),
                        ));
                    }
                    role.position = position;
                }
                if let Some(n) = name {
                    if is_everyone {
                        return Err(invalid("invalid_name", "@everyone cannot be renamed"));
                    }
                    role.name = n;
                }
                if let Some(c) = update.color {
                    role.color = c & 0xff_ffff;
                }
                if let Some(m) = update.mentionable {
                    role.mentionable = m;
                }
                tx.put(GUILD_ROLE, &keys::id_id(guild_id, role_id), &role)?;
                bump(tx, access.guild)?;
                tx.emit(
                    "role_update",
                    Audience::guild(guild_id),
                    Some(guild_id),
                    &role,
                )?;
                Ok(role)
            })
            .await
    }

    /// Deletes a role the actor outranks (not `@everyone`).
    pub async fn delete_role(&self, actor: UserId, guild_id: Id, role_id: Id) -> Result<()> {
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::MANAGE_ROLES)?;
                let role = tx
                    .get(GUILD_ROLE, &keys::id_id(guild_id, role_id))?
                    .ok_or(Error::NotFound("role"))?;
                if role.id == guild_id {
                    return Err(invalid("invalid_role", "@everyone cannot be deleted"));
                }
                if !access.can_manage_role(role.position) {
                    return Err(Error::Forbidden(
                        "you cannot delete a role at or above your own highest role".into(),
                    ));
                }
                tx.delete(GUILD_ROLE, &keys::id_id(guild_id, role_id))?;
                for (key, mut member) in
                    tx.scan_prefix(GUILD_MEMBER, &keys::id(guild_id), usize::MAX)?
                {
                    if member.roles.contains(&role_id) {
                        member.roles.retain(|r| *r != role_id);
                        tx.put(GUILD_MEMBER, &key, &member)?;
                    }
                }
                bump(tx, access.guild)?;
                tx.emit(
                    "role_delete",
                    Audience::guild(guild_id),
                    Some(guild_id),
                    &json!({ "id": role_id, "guild_id": guild_id }),
                )?;
                Ok(())
            })
            .await
    }

    /// Gives a member a role, or takes it away.
    pub async fn set_member_role(
        &self,
        actor: UserId,
        guild_id: Id,
        user: UserId,
        role_id: Id,
        assign: bool,
    ) -> Result<Member> {
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::MANAGE_ROLES)?;
                let role = tx
                    .get(GUILD_ROLE, &keys::id_id(guild_id, role_id))?
                    .ok_or(Error::NotFound("role"))?;
                if role.id == guild_id {
                    return Err(invalid("invalid_role", "everyone has @everyone"));
                }
                if !access.can_manage_role(role.position) {
                    return Err(Error::Forbidden(
                        "you cannot assign a role at or above your own highest role".into(),
                    ));
                }
                // Assigning hands out every bit the role grants: the same rule as
                // editing it. Taking a role away grants nothing.
                if assign {
                    access.require_grantable(role.permissions)?;
                }
                let key = keys::id_user(guild_id, user);
                let mut member = tx
                    .get(GUILD_MEMBER, &key)?
                    .ok_or(Error::NotFound("member"))?;
                if user != actor {
                    let target = GuildAccess::load(tx, guild_id, user)?;
                    if !access.outranks(&target) {
                        return Err(Error::Forbidden(
                            "you cannot change the roles of a member whose highest role is at or above yours".into(),
                        ));
                    }
                }
                let has = member.roles.contains(&role_id);
                if assign && !has {
                    member.roles.push(role_id);
                } else if !assign && has {
                    member.roles.retain(|r| *r != role_id);
                } else {
                    return Ok(member);
                }
                tx.put(GUILD_MEMBER, &key, &member)?;
                bump(tx, access.guild)?;
                tx.emit(
                    "member_update",
                    Audience::guild(guild_id).and_user(user),
                    Some(guild_id),
                    &member,
                )?;
                Ok(member)
            })
            .await
    }

    // ---- members ----

    /// Members with their profiles, in user-id order after `after`.
    pub fn list_members(
        &self,
        actor: UserId,
        guild_id: Id,
        after: Option<UserId>,
        limit: usize,
    ) -> Result<Vec<MemberView>> {
        self.store.read(|tx| {
            GuildAccess::load(tx, guild_id, actor)?;
            let start = match after {
                Some(u) => {
                    let mut k = keys::id_user(guild_id, u).to_vec();
                    k.push(0);
                    k
                }
                None => keys::id(guild_id).to_vec(),
            };
            let end = keys::id(Id(guild_id.0 + 1));
            let rows = tx.range(GUILD_MEMBER, &start, Some(&end), false, limit)?;
            let mut out = Vec::with_capacity(rows.len());
            for (_, member) in rows {
                let user = tx
                    .get(USER, &member.user_id.0)?
                    .map(|u| PublicUser::of(&u, &self.origin));
                out.push(MemberView { member, user });
            }
            Ok(out)
        })
    }

    /// One member.
    pub fn get_member(&self, actor: UserId, guild_id: Id, user: UserId) -> Result<MemberView> {
        self.store.read(|tx| {
            GuildAccess::load(tx, guild_id, actor)?;
            let member = tx
                .get(GUILD_MEMBER, &keys::id_user(guild_id, user))?
                .ok_or(Error::NotFound("member"))?;
            let user = tx
                .get(USER, &user.0)?
                .map(|u| PublicUser::of(&u, &self.origin));
            Ok(MemberView { member, user })
        })
    }

    /// Sets one's own nickname (CHANGE_NICKNAME).
    pub async fn set_nick(&self, actor: UserId, guild_id: Id, nick: String) -> Result<Member> {
        let nick = check_text("nick", nick.trim(), self.config.limits.max_name_chars)?;
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::CHANGE_NICKNAME)?;
                let mut member = access.member;
                member.nick = nick;
                tx.put(GUILD_MEMBER, &keys::id_user(guild_id, actor), &member)?;
                tx.emit("member_update", Audience::guild(guild_id), None, &member)?;
                Ok(member)
            })
            .await
    }

    /// Leaves a guild (the owner cannot).
    pub async fn leave_guild(&self, actor: UserId, guild_id: Id) -> Result<()> {
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                if access.is_owner() {
                    return Err(invalid(
                        "owner_cannot_leave",
                        "the owner cannot leave; delete the guild instead",
                    ));
                }
                remove_member(tx, guild_id, actor)?;
                bump(tx, access.guild)?;
                emit_member_remove(tx, guild_id, actor)?;
                Ok(())
            })
            .await
    }

    /// Kicks a member the actor outranks (KICK_MEMBERS).
    pub async fn kick(&self, actor: UserId, guild_id: Id, target: UserId) -> Result<()> {
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::KICK_MEMBERS)?;
                let target_access = GuildAccess::load(tx, guild_id, target)
                    .map_err(|_| Error::NotFound("member"))?;
                if !access.outranks(&target_access) {
                    return Err(Error::Forbidden(
                        "you cannot kick a member whose highest role is at or above yours".into(),
                    ));
                }
                remove_member(tx, guild_id, target)?;
                bump(tx, access.guild)?;
                emit_member_remove(tx, guild_id, target)?;
                Ok(())
            })
            .await
    }

    /// Bans a user (member or not) the actor outranks (BAN_MEMBERS); removes them. For a
    /// remote user, PropagateBan to their home is queued in the same commit (the caller
    /// wakes the outbox).
    pub async fn ban(
        &self,
        actor: UserId,
        guild_id: Id,
        target: UserId,
        reason: String,
    ) -> Result<Ban> {
        let reason = check_text("reason", &reason, self.config.limits.max_text_chars)?;
        let propagate_id = self.next_id();
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::BAN_MEMBERS)?;
                if target == actor {
                    return Err(invalid("invalid_target", "you cannot ban yourself"));
                }
                if let Ok(target_access) = GuildAccess::load(tx, guild_id, target) {
                    if !access.outranks(&target_access) {
                        return Err(Error::Forbidden(
                            "you cannot ban a member whose highest role is at or above yours"
                                .into(),
                        ));
                    }
                }
                if target == access.guild.owner {
                    return Err(Error::Forbidden("the owner cannot be banned".into()));
                }
                let ban = Ban {
                    guild_id,
                    user_id: target,
                    reason,
                    banned_by: actor,
                    created_at: now(),
                };
                let guild_name = access.guild.name.clone();
                let was_member = remove_member(tx, guild_id, target)?;
                tx.put(GUILD_BAN, &keys::id_user(guild_id, target), &ban)?;
                bump(tx, access.guild)?;
                // A remote user's home hears of it (PropagateBan), in this commit.
                super::ban_notices::queue(tx, propagate_id, &ban, &guild_name)?;
                if was_member {
                    emit_member_remove(tx, guild_id, target)?;
                }
                // Reason and author are for those who may list bans, and the banned user.
                tx.emit(
                    "ban_add",
                    Audience::guild(guild_id)
                        .requiring(Permissions::BAN_MEMBERS)
                        .and_user(target),
                    None,
                    &ban,
                )?;
                Ok(ban)
            })
            .await
    }

    /// Lifts a ban (BAN_MEMBERS). The user's home is not told: only bans are propagated.
    pub async fn unban(&self, actor: UserId, guild_id: Id, target: UserId) -> Result<()> {
        self.store
            .write(move |tx| {
                let access = GuildAccess::load(tx, guild_id, actor)?;
                access.require(Permissions::BAN_MEMBERS)?;
                if !tx.contains(GUILD_BAN, &keys::id_user(guild_id, target))? {
                    return Err(Error::NotFound("ban"));
                }
                tx.delete(GUILD_BAN, &keys::id_user(guild_id, target))?;
                tx.emit(
                    "ban_remove",
                    Audience::guild(guild_id)
                        .requiring(Permissions::BAN_MEMBERS)
                        .and_user(target),
                    None,
                    &json!({ "guild_id": guild_id, "user_id": target }),
                )?;
                Ok(())
            })
            .await
    }

    /// Bans of a guild (BAN_MEMBERS).
    pub fn list_bans(&self, actor: UserId, guild_id: Id) -> Result<Vec<Ban>> {
        self.store.read(|tx| {
            GuildAccess::load(tx, guild_id, actor)?.require(Permissions::BAN_MEMBERS)?;
            Ok(tx
                .scan_prefix(GUILD_BAN, &keys::id(guild_id), usize::MAX)?
                .into_iter()
                .map(|(_, b)| b)
                .collect())
        })
    }

    // ---- invites ----

    /// Makes an invite to a channel (CREATE_INVITE there).
    pub async fn create_invite(
        &self,
        actor: UserId,
        channel_id: Id,
        new: NewInvite,
    ) -> Result<Invite> {
        let max_invites = self.config.limits.max_invites_per_guild;
        let max_age = new.max_age_secs.unwrap_or(7 * 24 * 3600);
        if max_age > 365 * 24 * 3600 {
            return Err(invalid("invalid_field", "max_age_secs is at most one year"));
        }
        if new.max_uses == Some(0) {
            return Err(invalid(
                "invalid_field",
                "max_uses must be at least 1 (omit it for unlimited)",
            ));
        }
        let code = make_invite_code();
        self.store
            .write(move |tx| {
                let (channel, access) = channel_access(tx, channel_id, actor)?;
                access.require_in(tx, &channel, Permissions::CREATE_INVITE)?;
                let count =
                    tx.count_prefix(GUILD_INVITE, &keys::id(channel.guild_id), max_invites + 1)?;
                if count >= max_invites {
                    return Err(Error::LimitReached(format!(
                        "at most {max_invites} invites per guild"
                    )));
                }
                let t = now();
                let invite = Invite {
                    code: code.clone(),
                    guild_id: channel.guild_id,
                    channel_id,
                    creator: actor,
                    created_at: t,
                    expires_at: (max_age > 0).then_some(t + max_age),
                    max_uses: new.max_uses,
                    uses: 0,
                    revoked: false,
                };
                tx.put(INVITE, code.as_bytes(), &invite)?;
                tx.put(
                    GUILD_INVITE,
                    &keys::join(&[&keys::id(channel.guild_id), code.as_bytes()]),
                    &Present,
                )?;
                // A code lets anyone in: only those who may list invites hear of it, and
                // its creator (who has it from the answer already).
                tx.emit(
                    "invite_create",
                    Audience::guild(invite.guild_id)
                        .requiring(Permissions::MANAGE_GUILD)
                        .and_user(actor),
                    None,
                    &invite,
                )?;
                Ok(invite)
            })
            .await
    }

    /// Invites of a guild (MANAGE_GUILD).
    pub fn list_invites(&self, actor: UserId, guild_id: Id) -> Result<Vec<Invite>> {
        self.store.read(|tx| {
            GuildAccess::load(tx, guild_id, actor)?.require(Permissions::MANAGE_GUILD)?;
            let mut out = Vec::new();
            for (key, _) in tx.scan_prefix(GUILD_INVITE, &keys::id(guild_id), usize::MAX)? {
                if let Some(invite) = tx.get(INVITE, &key[8..])? {
                    out.push(invite);
                }
            }
            Ok(out)
        })
    }

    /// Revokes an invite (its creator, or MANAGE_GUILD).
    pub async fn revoke_invite(&self, actor: UserId, code: String) -> Result<()> {
        self.store
            .write(move |tx| {
                let mut invite = tx
                    .get(INVITE, code.as_bytes())?
                    .ok_or(Error::NotFound("invite"))?;
                let access = GuildAccess::load(tx, invite.guild_id, actor)
                    .map_err(|_| Error::NotFound("invite"))?;
                if invite.creator != actor {
                    access.require(Permissions::MANAGE_GUILD)?;
                }
                invite.revoked = true;
                tx.put(INVITE, code.as_bytes(), &invite)?;
                tx.emit(
                    "invite_delete",
                    Audience::guild(invite.guild_id)
                        .requiring(Permissions::MANAGE_GUILD)
                        .and_user(invite.creator),
                    None,
                    &json!({ "code": invite.code, "guild_id": invite.guild_id }),
                )?;
                Ok(())
            })
            .await
    }

    /// What an invite leads to; needs no account.
    pub fn preview_invite(&self, code: &str) -> Result<InvitePreview> {
        self.store.read(|tx| {
            let invite = usable_invite(tx, code)?;
            let guild = tx
                .get(GUILD, &keys::id(invite.guild_id))?
                .ok_or(Error::NotFound("invite"))?;
            let channel = tx.get(CHANNEL, &keys::id(invite.channel_id))?;
            Ok(InvitePreview {
                code: invite.code,
                guild_id: guild.id,
                guild_name: guild.name,
                guild_description: guild.description,
                channel_id: invite.channel_id,
                channel_name: channel.map(|c| c.name).unwrap_or_default(),
                member_count: tx.count_prefix(
                    GUILD_MEMBER,
                    &keys::id(guild.id),
                    MAX_MEMBER_COUNT,
                )?,
                expires_at: invite.expires_at,
            })
        })
    }

    /// Joins the guild of an invite (gets `@everyone`). Joining a guild one is already in
    /// uses nothing up and succeeds.
    pub async fn join_invite(&self, actor: UserId, code: String) -> Result<GuildView> {
        let max_guilds = self.config.limits.max_guilds_per_user * 10;
        let origin = self.origin.clone();
        let guild_id = self
            .store
            .write(move |tx| {
                let mut invite = usable_invite(tx, &code)?;
                let guild_id = invite.guild_id;
                if tx.contains(GUILD_BAN, &keys::id_user(guild_id, actor))? {
                    return Err(Error::Banned);
                }
                if tx.contains(GUILD_MEMBER, &keys::id_user(guild_id, actor))? {
                    return Ok(guild_id);
                }
                if !tx.contains(USER, &actor.0)? {
                    return Err(Error::NotFound("user"));
                }
                if tx.count_prefix(USER_GUILD, &actor.0, max_guilds + 1)? >= max_guilds {
                    return Err(Error::LimitReached(format!(
                        "you may be in at most {max_guilds} guilds"
                    )));
                }
                invite.uses += 1;
                tx.put(INVITE, code.as_bytes(), &invite)?;
                let member = add_member(tx, guild_id, actor)?;
                let user = tx.get(USER, &actor.0)?.map(|u| PublicUser::of(&u, &origin));
                let seq = tx.emit(
                    "member_add",
                    Audience::guild(guild_id).and_user(actor),
                    Some(guild_id),
                    &MemberView { member, user },
                )?;
                tx.put(GUILD_MEMBER_SINCE, &keys::id_user(guild_id, actor), &seq)?;
                Ok(guild_id)
            })
            .await?;
        self.get_guild(actor, guild_id)
    }
}

fn usable_invite(tx: &Tx, code: &str) -> Result<Invite> {
    if code.is_empty() || code.len() > 32 {
        return Err(Error::NotFound("invite"));
    }
    let invite = tx
        .get(INVITE, code.as_bytes())?
        .ok_or(Error::NotFound("invite"))?;
    let gone = |m: &str| Error::Gone {
        code: "invite_expired",
        message: m.to_string(),
    };
    if invite.revoked {
        return Err(gone("this invite has been revoked"));
    }
    if invite.expires_at.is_some_and(|e| e <= now()) {
        return Err(gone("this invite has expired"));
    }
    if invite.max_uses.is_some_and(|m| invite.uses >= m) {
        return Err(gone("this invite has been used up"));
    }
    if !tx.contains(GUILD, &keys::id(invite.guild_id))? {
        return Err(Error::NotFound("invite"));
    }
    Ok(invite)
}

/// Deletes a channel row and everything under it (messages, reactions, pins, file grants).
fn delete_channel_rows(tx: &Tx, channel: &Channel) -> Result<()> {
    let prefix = keys::id(channel.id);
    for (_, message) in tx.scan_prefix(CHANNEL_MESSAGE, &prefix, usize::MAX)? {
        tx.delete_prefix(MESSAGE_REACTION, &keys::id(message.id))?;
    }
    tx.delete_prefix(CHANNEL_MESSAGE, &prefix)?;
    tx.delete_prefix(CHANNEL_PIN, &prefix)?;
    tx.delete_prefix(CHANNEL_FILE, &prefix)?;
    tx.delete_prefix(CHANNEL_UPLOAD, &prefix)?;
    tx.delete(CHANNEL, &prefix)?;
    Ok(())
}

/// Reads roles (used by other modules).
pub fn roles_of(tx: &Tx, guild: Id) -> Result<Vec<Role>> {
    guild_roles(tx, guild)
}

impl Services {
    /// Makes an invite from the administrator's tools, in the guild owner's name.
    pub async fn admin_create_invite(
        &self,
        guild_id: Id,
        channel: Option<Id>,
        new: NewInvite,
    ) -> Result<Invite> {
        let (owner, channel) = self.store.read(|tx| {
            let guild = tx
                .get(GUILD, &keys::id(guild_id))?
                .ok_or(Error::NotFound("guild"))?;
            let channel = match channel {
                Some(c) => load_channel_in(tx, guild_id, c)?.id,
                None => {
                    sorted_channels(guild_channels(tx, guild_id)?)
                        .into_iter()
                        .find(|c| c.kind == ChannelKind::Text)
                        .ok_or(Error::NotFound("channel"))?
                        .id
                }
            };
            Ok::<_, Error>((guild.owner, channel))
        })?;
        self.create_invite(owner, channel, new).await
    }
}
