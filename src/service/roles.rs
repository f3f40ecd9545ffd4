//! Roles of a guild, and giving them to members or taking them away.

use super::access::{missing, GuildAccess};
use super::guilds::bump;
use super::{check_name, invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows};
use serde::Deserialize;
use serde_json::json;

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

impl Services {
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
                tx.put(GUILD_ROLE, (guild_id, id), &role)?;
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
                    .get(GUILD_ROLE, (guild_id, role_id))?
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
                tx.put(GUILD_ROLE, (guild_id, role_id), &role)?;
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
                    .get(GUILD_ROLE, (guild_id, role_id))?
                    .ok_or(Error::NotFound("role"))?;
                if role.id == guild_id {
                    return Err(invalid("invalid_role", "@everyone cannot be deleted"));
                }
                if !access.can_manage_role(role.position) {
                    return Err(Error::Forbidden(
                        "you cannot delete a role at or above your own highest role".into(),
                    ));
                }
                tx.delete(GUILD_ROLE, (guild_id, role_id))?;
                for (key, mut member) in tx.rows(GUILD_MEMBER, Rows::prefix(guild_id))? {
                    if member.roles.contains(&role_id) {
                        member.roles.retain(|r| *r != role_id);
                        tx.put(GUILD_MEMBER, key, &member)?;
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
                    .get(GUILD_ROLE, (guild_id, role_id))?
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
                let key = (guild_id, user);
                let mut member = tx
                    .get(GUILD_MEMBER, key)?
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
                tx.put(GUILD_MEMBER, key, &member)?;
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
}
