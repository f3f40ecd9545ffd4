//! Members of a guild: listing them, nicknames, leaving, kicks and bans.

use super::access::GuildAccess;
use super::guilds::bump;
use super::profiles::PublicUser;
use super::{check_text, invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use crate::system::now;
use serde::Serialize;
use serde_json::json;

/// A member with the user's public profile.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Membership.
    #[serde(flatten)]
    pub member: Member,
    /// Profile.
    pub user: Option<PublicUser>,
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

/// Removes a member and their role assignments from a guild.
fn remove_member(tx: &Tx, guild: Id, user: UserId) -> Result<bool> {
    let existed = tx.delete(GUILD_MEMBER, (guild, user))?;
    tx.delete(GUILD_MEMBER_SINCE, (guild, user))?;
    tx.delete(USER_GUILD, (user, guild))?;
    super::notifications::forget_guild(tx, user, guild)?;
    Ok(existed)
}

impl Services {
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
            let mut rows = Rows::prefix(guild_id).limit(limit);
            if let Some(u) = after {
                rows = rows.after((guild_id, u));
            }
            let rows = tx.rows(GUILD_MEMBER, rows)?;
            let mut out = Vec::with_capacity(rows.len());
            for (_, member) in rows {
                let user = tx
                    .get(USER, member.user_id)?
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
                .get(GUILD_MEMBER, (guild_id, user))?
                .ok_or(Error::NotFound("member"))?;
            let user = tx
                .get(USER, user)?
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
                tx.put(GUILD_MEMBER, (guild_id, actor), &member)?;
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
                tx.put(GUILD_BAN, (guild_id, target), &ban)?;
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
                if !tx.contains(GUILD_BAN, (guild_id, target))? {
                    return Err(Error::NotFound("ban"));
                }
                tx.delete(GUILD_BAN, (guild_id, target))?;
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
                .rows(GUILD_BAN, Rows::prefix(guild_id))?
                .into_iter()
                .map(|(_, b)| b)
                .collect())
        })
    }
}
