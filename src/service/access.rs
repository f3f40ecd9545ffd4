//! Loads what the permission rules need for one user in one guild and answers
//! "may they?" by calling the pure functions of [`crate::model::permissions`].

use super::{Error, Result};
use crate::model::permissions::{self as rules, MemberContext, Overwrite, RoleInfo};
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};

/// A user's standing in one guild, loaded from one transaction.
pub struct GuildAccess {
    /// The guild.
    pub guild: Guild,
    /// All its roles.
    pub roles: Vec<Role>,
    /// The user's membership.
    pub member: Member,
    role_infos: Vec<RoleInfo>,
    member_role_ids: Vec<u64>,
    user_text: String,
    owner_text: String,
}

/// Loads every role of a guild.
pub fn guild_roles(tx: &Tx, guild: Id) -> Result<Vec<Role>> {
    Ok(tx
        .rows(GUILD_ROLE, Rows::prefix(guild))?
        .into_iter()
        .map(|(_, role)| role)
        .collect())
}

/// Converts stored overwrites to the rule module's form.
pub fn rule_overwrites(list: &[ChannelOverwrite]) -> Vec<Overwrite> {
    list.iter()
        .map(|o| Overwrite {
            target: match &o.target {
                OverwriteTarget::Role(id) => rules::OverwriteTarget::Role(id.0),
                OverwriteTarget::Member(user) => rules::OverwriteTarget::Member(user.to_text()),
            },
            allow: o.allow,
            deny: o.deny,
        })
        .collect()
}

impl GuildAccess {
    /// Loads the user's standing. A guild that does not exist and a guild the user is
    /// not a member of look the same (404), so ids do not leak what exists.
    pub fn load(tx: &Tx, guild_id: Id, user: UserId) -> Result<GuildAccess> {
        let guild = tx.get(GUILD, guild_id)?.ok_or(Error::NotFound("guild"))?;
        let member = tx
            .get(GUILD_MEMBER, (guild_id, user))?
            .ok_or(Error::NotFound("guild"))?;
        let roles = guild_roles(tx, guild_id)?;
        Ok(Self::from_parts(guild, roles, member))
    }

    /// Builds the standing from already loaded parts.
    pub fn from_parts(guild: Guild, roles: Vec<Role>, member: Member) -> GuildAccess {
        let role_infos = roles
            .iter()
            .map(|r| RoleInfo {
                id: r.id.0,
                permissions: r.permissions,
                position: r.position,
            })
            .collect();
        let member_role_ids = member.roles.iter().map(|r| r.0).collect();
        GuildAccess {
            user_text: member.user_id.to_text(),
            owner_text: guild.owner.to_text(),
            guild,
            roles,
            member,
            role_infos,
            member_role_ids,
        }
    }

    fn context(&self) -> MemberContext<'_> {
        MemberContext {
            user_id: &self.user_text,
            owner_id: &self.owner_text,
            everyone_role_id: self.guild.id.0,
            guild_roles: &self.role_infos,
            member_role_ids: &self.member_role_ids,
        }
    }

    /// The user's id.
    pub fn user(&self) -> UserId {
        self.member.user_id
    }

    /// Whether the user owns the guild.
    pub fn is_owner(&self) -> bool {
        self.guild.owner == self.member.user_id
    }

    /// Guild-wide permissions.
    pub fn guild_permissions(&self) -> Permissions {
        rules::guild_permissions(&self.context())
    }

    /// Permissions in one channel (its category's overwrites included).
    pub fn channel_permissions(&self, tx: &Tx, channel: &Channel) -> Result<Permissions> {
        let category = match channel.parent_id {
            Some(parent) => tx
                .get(CHANNEL, parent)?
                .map(|c| rule_overwrites(&c.overwrites)),
            None => None,
        };
        let own = rule_overwrites(&channel.overwrites);
        Ok(rules::channel_permissions(
            &self.context(),
            category.as_deref(),
            &own,
        ))
    }

    /// Fails with 403 unless the user has `needed` guild-wide.
    pub fn require(&self, needed: Permissions) -> Result<()> {
        if self.guild_permissions().contains(needed) {
            Ok(())
        } else {
            Err(missing(needed))
        }
    }

    /// Fails unless the user has `needed` in the channel; a channel the user cannot see
    /// is reported as unknown (404).
    pub fn require_in(
        &self,
        tx: &Tx,
        channel: &Channel,
        needed: Permissions,
    ) -> Result<Permissions> {
        let have = self.channel_permissions(tx, channel)?;
        if !have.contains(Permissions::VIEW_CHANNEL) {
            return Err(Error::NotFound("channel"));
        }
        if have.contains(needed) {
            Ok(have)
        } else {
            Err(missing(needed))
        }
    }

    /// The user's rank (highest role position; owner outranks all).
    pub fn rank(&self) -> i32 {
        rules::highest_role_position(&self.context())
    }

    /// Whether the user may edit, assign or delete a role at `position`.
    pub fn can_manage_role(&self, position: i32) -> bool {
        rules::can_manage_role(&self.context(), position)
    }

    /// Fails with 403 unless the user may give out `wanted` (in a role, or by assigning a
    /// role that grants it): only bits they hold, unless owner or administrator.
    pub fn require_grantable(&self, wanted: Permissions) -> Result<()> {
        rules::grantable(&self.context(), wanted).map_err(|e| Error::Forbidden(e.to_string()))
    }

    /// Fails with 403 unless the user may change a channel's overwrites from `before` to
    /// `after`, holding `held` in that channel (rule 11 of the permission rules).
    pub fn require_overwrite_change(
        &self,
        tx: &Tx,
        held: Permissions,
        before: &[ChannelOverwrite],
        after: &[ChannelOverwrite],
    ) -> Result<()> {
        let mut member_ranks = std::collections::HashMap::new();
        for overwrite in before.iter().chain(after) {
            let OverwriteTarget::Member(user) = overwrite.target else {
                continue;
            };
            if let Some(member) = tx.get(GUILD_MEMBER, (self.guild.id, user))? {
                let them = GuildAccess::from_parts(self.guild.clone(), self.roles.clone(), member);
                member_ranks.insert(user.to_text(), them.rank());
            }
        }
        rules::check_overwrite_change(
            &self.context(),
            held,
            &rule_overwrites(before),
            &rule_overwrites(after),
            &member_ranks,
        )
        .map_err(|e| Error::Forbidden(e.to_string()))
    }

    /// Whether the user outranks `target` (for kicks, bans and role changes).
    pub fn outranks(&self, target: &GuildAccess) -> bool {
        rules::can_moderate(&self.context(), &target.context())
    }
}

/// The 403 for a missing permission, naming it.
pub fn missing(needed: Permissions) -> Error {
    Error::Forbidden(format!("missing permission: {}", needed.names().join(", ")))
}

/// Loads a channel and the user's standing in its guild.
pub fn channel_access(tx: &Tx, channel_id: Id, user: UserId) -> Result<(Channel, GuildAccess)> {
    let channel = tx
        .get(CHANNEL, channel_id)?
        .ok_or(Error::NotFound("channel"))?;
    if channel.kind.is_dm() {
        let access = super::dms::participant_access(tx, &channel, user)?;
        return Ok((channel, access));
    }
    let access = GuildAccess::load(tx, channel.guild_id, user).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound("channel"),
        other => other,
    })?;
    Ok((channel, access))
}
