//! Permission bits and the pure rules that compute what a member may do.
//!
//! Nothing here performs I/O and nothing panics, whatever the input: stored
//! data may be stale or inconsistent (roles deleted, unknown bits, duplicate
//! overwrites) and is handled as described below.
//!
//! # Rules
//!
//! 1. **Owner has everything.** The guild owner (`user_id == owner_id`, both
//!    non-empty) has [`Permissions::ALL`] in the guild and in every channel,
//!    regardless of roles or overwrites.
//! 2. **Guild base.** A member's guild permissions are the permissions of the
//!    `@everyone` role united with the permissions of every assigned role that
//!    still exists in the guild.
//! 3. **Administrator.** [`Permissions::ADMINISTRATOR`] in the guild base means
//!    [`Permissions::ALL`] everywhere; channel overwrites are ignored.
//!    Overwrites themselves can neither grant nor revoke `ADMINISTRATOR`.
//! 4. **Channel overwrites.** A channel's permissions start from the guild
//!    base. The category's overwrites (when the channel is in a category and
//!    they are given) are applied first, then the channel's own overwrites, so
//!    the channel's win. Each list is applied in this order:
//!    - the `@everyone` overwrite (deny, then allow);
//!    - all overwrites of roles the member has, combined: the union of their
//!      denies is removed, then the union of their allows is added;
//!    - the overwrite for this member (deny, then allow).
//!
//!    Several overwrites for the same target are merged (unions).
//! 5. **No view, nothing.** Without [`Permissions::VIEW_CHANNEL`] in a channel
//!    the member has no permissions there at all.
//! 6. **No send, no attachments or mass mentions.** Without
//!    [`Permissions::SEND_MESSAGES`] a member implicitly lacks
//!    [`Permissions::ATTACH_FILES`] and [`Permissions::MENTION_EVERYONE`] in
//!    that channel.
//! 7. **No connect, no voice.** Without [`Permissions::CONNECT`] a member
//!    implicitly lacks [`Permissions::SPEAK`], [`Permissions::MUTE_MEMBERS`],
//!    [`Permissions::DEAFEN_MEMBERS`] and [`Permissions::MOVE_MEMBERS`] in that
//!    channel.
//! 8. **Irrelevant overwrites.** Overwrites for roles the member does not have,
//!    for other members, or for roles that no longer exist in the guild have no
//!    effect. (The `@everyone` overwrite always applies: every member has
//!    `@everyone`.) Assigned role ids that no longer exist are ignored
//!    everywhere.
//! 9. **Hierarchy.** A member's rank is their highest role position
//!    (`@everyone` counts, at its own position, normally 0); the owner's rank
//!    is `i32::MAX`. Nobody manages (edits, assigns, deletes) a role at or
//!    above their own rank, and managing roles needs `MANAGE_ROLES` (or
//!    administrator). Nobody kicks or bans someone whose rank is greater than or
//!    equal to theirs, nobody moderates themself, and the owner outranks
//!    everyone and cannot be kicked or banned.
//! 10. **Unknown bits are dropped.** Bits not defined here are discarded
//!     ([`Permissions::from_bits_truncate`]) when read from stored data,
//!     deserialized, or combined by the functions of this module: undefined
//!     bits are never granted.
//! 11. **Nobody grants what they do not hold.** Outside the owner and
//!     administrators, who may grant anything:
//!     - a role's permissions may gain only bits the editor holds guild-wide,
//!       and a role may be assigned only if the editor holds every bit it
//!       grants ([`grantable`]);
//!     - a change of a channel's (or category's) overwrites may allow or deny,
//!       or stop allowing or denying, only bits the editor holds in that
//!       channel, and only for roles below the editor's rank and members the
//!       editor outranks — never for the editor themself
//!       ([`check_overwrite_change`]). Overwrites left as they were are not
//!       checked, so an editor may keep a higher role's overwrite while changing
//!       another.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

/// A set of permission bits.
///
/// Serialized as a plain `u64` number. Deserializing drops undefined bits
/// (rule 10); constructing with `Permissions(bits)` directly does not, so
/// prefer [`Permissions::from_bits_truncate`] for untrusted values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(from = "u64", into = "u64")]
pub struct Permissions(pub u64);

impl Permissions {
    /// See channels and read their names (and, in a text channel, messages).
    pub const VIEW_CHANNEL: Permissions = Permissions(1 << 0);
    /// Post messages in text channels.
    pub const SEND_MESSAGES: Permissions = Permissions(1 << 1);
    /// Read messages sent before the member opened the channel.
    pub const READ_MESSAGE_HISTORY: Permissions = Permissions(1 << 2);
    /// Add new reactions to messages.
    pub const ADD_REACTIONS: Permissions = Permissions(1 << 3);
    /// Upload files with messages.
    pub const ATTACH_FILES: Permissions = Permissions(1 << 4);
    /// Mention `@everyone` / `@here` so that everybody is notified.
    pub const MENTION_EVERYONE: Permissions = Permissions(1 << 5);
    /// Delete other members' messages and pin messages.
    pub const MANAGE_MESSAGES: Permissions = Permissions(1 << 6);
    /// Create, edit and delete channels (and their overwrites).
    pub const MANAGE_CHANNELS: Permissions = Permissions(1 << 7);
    /// Create, edit, assign and delete roles below one's own highest role.
    pub const MANAGE_ROLES: Permissions = Permissions(1 << 8);
    /// Edit guild settings.
    pub const MANAGE_GUILD: Permissions = Permissions(1 << 9);
    /// Remove members from the guild.
    pub const KICK_MEMBERS: Permissions = Permissions(1 << 10);
    /// Ban members from the guild.
    pub const BAN_MEMBERS: Permissions = Permissions(1 << 11);
    /// Create invites.
    pub const CREATE_INVITE: Permissions = Permissions(1 << 12);
    /// Join voice channels.
    pub const CONNECT: Permissions = Permissions(1 << 13);
    /// Talk in voice channels.
    pub const SPEAK: Permissions = Permissions(1 << 14);
    /// Server-mute other members in voice channels.
    pub const MUTE_MEMBERS: Permissions = Permissions(1 << 15);
    /// Server-deafen other members in voice channels.
    pub const DEAFEN_MEMBERS: Permissions = Permissions(1 << 16);
    /// Move members between voice channels.
    pub const MOVE_MEMBERS: Permissions = Permissions(1 << 17);
    /// Change one's own nickname.
    pub const CHANGE_NICKNAME: Permissions = Permissions(1 << 18);
    /// Every permission everywhere; channel overwrites are ignored.
    pub const ADMINISTRATOR: Permissions = Permissions(1 << 19);

    /// The empty set.
    pub const NONE: Permissions = Permissions(0);
    /// Every defined permission bit.
    pub const ALL: Permissions = Permissions((1 << 20) - 1);
    /// What the `@everyone` role of a new guild gets.
    pub const DEFAULT_EVERYONE: Permissions = Permissions(
        Self::VIEW_CHANNEL.0
            | Self::SEND_MESSAGES.0
            | Self::READ_MESSAGE_HISTORY.0
            | Self::ADD_REACTIONS.0
            | Self::ATTACH_FILES.0
            | Self::CREATE_INVITE.0
            | Self::CONNECT.0
            | Self::SPEAK.0
            | Self::CHANGE_NICKNAME.0,
    );

    /// The lower_snake name of every defined permission, in bit order.
    pub const NAMES: &'static [(&'static str, Permissions)] = &[
        ("view_channel", Self::VIEW_CHANNEL),
        ("send_messages", Self::SEND_MESSAGES),
        ("read_message_history", Self::READ_MESSAGE_HISTORY),
        ("add_reactions", Self::ADD_REACTIONS),
        ("attach_files", Self::ATTACH_FILES),
        ("mention_everyone", Self::MENTION_EVERYONE),
        ("manage_messages", Self::MANAGE_MESSAGES),
        ("manage_channels", Self::MANAGE_CHANNELS),
        ("manage_roles", Self::MANAGE_ROLES),
        ("manage_guild", Self::MANAGE_GUILD),
        ("kick_members", Self::KICK_MEMBERS),
        ("ban_members", Self::BAN_MEMBERS),
        ("create_invite", Self::CREATE_INVITE),
        ("connect", Self::CONNECT),
        ("speak", Self::SPEAK),
        ("mute_members", Self::MUTE_MEMBERS),
        ("deafen_members", Self::DEAFEN_MEMBERS),
        ("move_members", Self::MOVE_MEMBERS),
        ("change_nickname", Self::CHANGE_NICKNAME),
        ("administrator", Self::ADMINISTRATOR),
    ];

    /// Keeps only the defined bits of `bits` (rule 10).
    pub const fn from_bits_truncate(bits: u64) -> Permissions {
        Permissions(bits & Self::ALL.0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// True if every bit of `other` is set in `self` (`NONE` is always contained).
    pub const fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if `self` and `other` have at least one bit in common.
    pub const fn intersects(self, other: Permissions) -> bool {
        self.0 & other.0 != 0
    }

    /// True if no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits set in `self` or in `other`.
    pub const fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// The bits set in both `self` and `other`.
    pub const fn intersection(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    /// `self` without the bits of `other`.
    pub const fn remove(self, other: Permissions) -> Permissions {
        Permissions(self.0 & !other.0)
    }

    /// The lower_snake names of the defined bits that are set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(_, p)| self.contains(*p))
            .map(|(n, _)| *n)
            .collect()
    }
}

impl From<u64> for Permissions {
    /// Drops undefined bits, like [`Permissions::from_bits_truncate`].
    fn from(bits: u64) -> Self {
        Permissions::from_bits_truncate(bits)
    }
}

impl From<Permissions> for u64 {
    /// The raw bits.
    fn from(p: Permissions) -> u64 {
        p.0
    }
}

impl BitOr for Permissions {
    type Output = Permissions;
    /// Union.
    fn bitor(self, rhs: Permissions) -> Permissions {
        self.union(rhs)
    }
}

impl BitOrAssign for Permissions {
    /// In-place union.
    fn bitor_assign(&mut self, rhs: Permissions) {
        *self = self.union(rhs);
    }
}

impl BitAnd for Permissions {
    type Output = Permissions;
    /// Intersection.
    fn bitand(self, rhs: Permissions) -> Permissions {
        self.intersection(rhs)
    }
}

impl BitAndAssign for Permissions {
    /// In-place intersection.
    fn bitand_assign(&mut self, rhs: Permissions) {
        *self = self.intersection(rhs);
    }
}

impl Not for Permissions {
    type Output = Permissions;
    /// Complement within [`Permissions::ALL`]: never yields undefined bits.
    fn not(self) -> Permissions {
        Permissions(!self.0 & Permissions::ALL.0)
    }
}

/// One role of a guild, as far as permissions are concerned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RoleInfo {
    /// The role id (the `@everyone` role's id equals the guild id).
    pub id: u64,
    /// What the role grants in the guild.
    pub permissions: Permissions,
    /// Its rank: higher outranks lower; `@everyone` is normally 0.
    pub position: i32,
}

/// Whom a channel or category overwrite applies to.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum OverwriteTarget {
    /// Everyone having this role (the `@everyone` role id targets all members).
    Role(u64),
    /// One member, by user id.
    Member(String),
}

/// A per-channel (or per-category) adjustment of permissions.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Overwrite {
    /// Whom it applies to.
    pub target: OverwriteTarget,
    /// Bits granted (applied after `deny`).
    pub allow: Permissions,
    /// Bits revoked.
    pub deny: Permissions,
}

/// Who is asking, in one guild.
#[derive(Clone, Copy, Debug)]
pub struct MemberContext<'a> {
    /// The member's user id.
    pub user_id: &'a str,
    /// The guild owner's user id.
    pub owner_id: &'a str,
    /// The id of the guild's `@everyone` role (equal to the guild id).
    pub everyone_role_id: u64,
    /// Every role of the guild, `@everyone` included.
    pub guild_roles: &'a [RoleInfo],
    /// Roles assigned to this member; ids no longer in `guild_roles` are ignored.
    pub member_role_ids: &'a [u64],
}

impl MemberContext<'_> {
    /// True if this member owns the guild (both ids non-empty and equal).
    pub fn is_owner(&self) -> bool {
        !self.user_id.is_empty() && self.user_id == self.owner_id
    }

    fn role(&self, id: u64) -> Option<&RoleInfo> {
        self.guild_roles.iter().find(|r| r.id == id)
    }

    /// True if the member has role `id` and it exists (`@everyone` always counts).
    fn has_role(&self, id: u64) -> bool {
        id == self.everyone_role_id
            || (self.member_role_ids.contains(&id) && self.role(id).is_some())
    }

    /// The existing roles assigned to the member, `@everyone` excluded.
    fn assigned_roles(&self) -> impl Iterator<Item = &RoleInfo> + '_ {
        self.guild_roles
            .iter()
            .filter(move |r| r.id != self.everyone_role_id && self.member_role_ids.contains(&r.id))
    }
}

/// The member's guild-wide permissions (rules 1, 2, 3, 10).
///
/// The owner and administrators get [`Permissions::ALL`].
pub fn guild_permissions(ctx: &MemberContext) -> Permissions {
    if ctx.is_owner() {
        return Permissions::ALL;
    }
    let everyone = ctx
        .role(ctx.everyone_role_id)
        .map_or(Permissions::NONE, |r| r.permissions);
    let base = ctx
        .assigned_roles()
        .fold(everyone, |acc, r| acc | r.permissions);
    let base = Permissions::from_bits_truncate(base.0);
    if base.contains(Permissions::ADMINISTRATOR) {
        Permissions::ALL
    } else {
        base
    }
}

/// Applies one list of overwrites (a category's or a channel's) to `perms` (rules 4, 8).
fn apply_overwrites(
    ctx: &MemberContext,
    perms: Permissions,
    overwrites: &[Overwrite],
) -> Permissions {
    // Overwrites never touch ADMINISTRATOR, and never carry undefined bits.
    let mask = Permissions::ALL.remove(Permissions::ADMINISTRATOR);
    let mut everyone = (Permissions::NONE, Permissions::NONE);
    let mut roles = (Permissions::NONE, Permissions::NONE);
    let mut member = (Permissions::NONE, Permissions::NONE);
    for ow in overwrites {
        let slot = match &ow.target {
            OverwriteTarget::Role(id) if *id == ctx.everyone_role_id => &mut everyone,
            OverwriteTarget::Role(id) if ctx.has_role(*id) => &mut roles,
            OverwriteTarget::Member(uid) if uid == ctx.user_id => &mut member,
            _ => continue,
        };
        slot.0 |= ow.deny & mask;
        slot.1 |= ow.allow & mask;
    }
    [everyone, roles, member]
        .iter()
        .fold(perms, |acc, (deny, allow)| acc.remove(*deny) | *allow)
}

/// The member's permissions in one channel (rules 1 to 8, 10).
///
/// `category_overwrites` are those of the channel's category, if it has one;
/// `channel_overwrites` are the channel's own, applied after the category's.
pub fn channel_permissions(
    ctx: &MemberContext,
    category_overwrites: Option<&[Overwrite]>,
    channel_overwrites: &[Overwrite],
) -> Permissions {
    let base = guild_permissions(ctx);
    // Owners and administrators: their base is ALL (which includes ADMINISTRATOR).
    if base.contains(Permissions::ADMINISTRATOR) {
        return Permissions::ALL;
    }
    let mut perms = base;
    if let Some(cat) = category_overwrites {
        perms = apply_overwrites(ctx, perms, cat);
    }
    perms = apply_overwrites(ctx, perms, channel_overwrites);
    perms = Permissions::from_bits_truncate(perms.0);

    if !perms.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::NONE;
    }
    if !perms.contains(Permissions::SEND_MESSAGES) {
        perms = perms.remove(Permissions::ATTACH_FILES | Permissions::MENTION_EVERYONE);
    }
    if !perms.contains(Permissions::CONNECT) {
        perms = perms.remove(
            Permissions::SPEAK
                | Permissions::MUTE_MEMBERS
                | Permissions::DEAFEN_MEMBERS
                | Permissions::MOVE_MEMBERS,
        );
    }
    perms
}

/// The member's rank (rule 9): `i32::MAX` for the owner, otherwise the highest
/// position among `@everyone` (0 if it is missing from `guild_roles`) and the
/// member's existing roles.
pub fn highest_role_position(ctx: &MemberContext) -> i32 {
    if ctx.is_owner() {
        return i32::MAX;
    }
    let everyone = ctx.role(ctx.everyone_role_id).map_or(0, |r| r.position);
    ctx.assigned_roles()
        .map(|r| r.position)
        .fold(everyone, i32::max)
}

/// Whether the member may edit, assign, unassign or delete a role at
/// `role_position` (rule 9): the owner always may; anyone else needs
/// `MANAGE_ROLES` (administrators have it) and a rank strictly above the role.
pub fn can_manage_role(ctx: &MemberContext, role_position: i32) -> bool {
    if ctx.is_owner() {
        return true;
    }
    guild_permissions(ctx).contains(Permissions::MANAGE_ROLES)
        && role_position < highest_role_position(ctx)
}

/// Whether `actor` outranks `target` enough to kick or ban them (rule 9).
///
/// Only the hierarchy is checked here: callers check `KICK_MEMBERS` /
/// `BAN_MEMBERS` separately. False when both are the same user, when the
/// target owns the guild, or when the two contexts are not of the same guild
/// (different owner or `@everyone` id). The owner may moderate anyone else;
/// others need a strictly higher rank than the target.
pub fn can_moderate(ctx: &MemberContext, target: &MemberContext) -> bool {
    if ctx.user_id == target.user_id
        || ctx.owner_id != target.owner_id
        || ctx.everyone_role_id != target.everyone_role_id
        || target.is_owner()
    {
        return false;
    }
    if ctx.is_owner() {
        return true;
    }
    highest_role_position(ctx) > highest_role_position(target)
}

/// Why a grant is refused (rule 11).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantRefusal {
    /// The editor does not hold these bits (guild-wide for roles, in the channel for
    /// overwrites).
    #[error("you cannot grant or take away permissions you do not have: {}", .0.names().join(", "))]
    NotHeld(Permissions),
    /// The overwrite is for a role at or above the editor's rank.
    #[error("you cannot change the overwrite of a role at or above your highest role")]
    RoleNotBelow(u64),
    /// The overwrite is for the editor, or a member the editor does not outrank.
    #[error("you cannot change the overwrite of yourself or of a member whose highest role is at or above yours")]
    MemberNotBelow(String),
}

/// Whether the member may give out `wanted` (rule 11): in a role's permissions, or by
/// assigning a role that grants them. The owner and administrators may give anything.
pub fn grantable(ctx: &MemberContext, wanted: Permissions) -> Result<(), GrantRefusal> {
    let have = guild_permissions(ctx);
    let missing = Permissions::from_bits_truncate(wanted.0).remove(have);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(GrantRefusal::NotHeld(missing))
    }
}

/// Several overwrites of one target merged (rule 4), targets in order of appearance.
fn merged(list: &[Overwrite]) -> Vec<(&OverwriteTarget, Permissions, Permissions)> {
    let mut out: Vec<(&OverwriteTarget, Permissions, Permissions)> = Vec::new();
    for ow in list {
        let allow = Permissions::from_bits_truncate(ow.allow.0);
        let deny = Permissions::from_bits_truncate(ow.deny.0);
        match out.iter_mut().find(|(t, _, _)| **t == ow.target) {
            Some(slot) => {
                slot.1 |= allow;
                slot.2 |= deny;
            }
            None => out.push((&ow.target, allow, deny)),
        }
    }
    out
}

/// Whether the member may change a channel's overwrites from `before` to `after`
/// (rule 11). `held` is what the editor holds in that channel now; `member_ranks` gives
/// the rank of each member of the guild an overwrite names (one not in it has left, so
/// their overwrite has no effect and may be dropped, like one of a deleted role).
pub fn check_overwrite_change(
    editor: &MemberContext,
    held: Permissions,
    before: &[Overwrite],
    after: &[Overwrite],
    member_ranks: &HashMap<String, i32>,
) -> Result<(), GrantRefusal> {
    if guild_permissions(editor).contains(Permissions::ADMINISTRATOR) {
        return Ok(());
    }
    let rank = highest_role_position(editor);
    let old = merged(before);
    let new = merged(after);
    let mut not_held = Permissions::NONE;
    let targets = old.iter().chain(new.iter()).map(|(t, _, _)| *t);
    for target in targets {
        let find = |list: &[(&OverwriteTarget, Permissions, Permissions)]| {
            list.iter()
                .find(|(t, _, _)| *t == target)
                .map_or((Permissions::NONE, Permissions::NONE), |(_, a, d)| (*a, *d))
        };
        let (allow0, deny0) = find(&old);
        let (allow1, deny1) = find(&new);
        let changed = Permissions((allow0.0 ^ allow1.0) | (deny0.0 ^ deny1.0));
        let exists = match target {
            OverwriteTarget::Role(id) => ctx_role_position(editor, *id).is_some(),
            OverwriteTarget::Member(user) => {
                user == editor.user_id || member_ranks.contains_key(user)
            }
        };
        let dropped = !new.iter().any(|(t, _, _)| *t == target);
        // Dropping an overwrite that has no effect (its role or member is gone) grants
        // nothing to anyone.
        if changed.is_empty() || (!exists && dropped) {
            continue;
        }
        match target {
            OverwriteTarget::Role(id) => {
                if ctx_role_position(editor, *id).is_some_and(|p| p >= rank) {
                    return Err(GrantRefusal::RoleNotBelow(*id));
                }
            }
            OverwriteTarget::Member(user) => {
                if user == editor.user_id || member_ranks.get(user).is_some_and(|r| *r >= rank) {
                    return Err(GrantRefusal::MemberNotBelow(user.clone()));
                }
            }
        }
        not_held |= changed.remove(held);
    }
    if not_held.is_empty() {
        Ok(())
    } else {
        Err(GrantRefusal::NotHeld(not_held))
    }
}

/// The position of role `id`, `None` if it no longer exists (its overwrites have no
/// effect, rule 8).
fn ctx_role_position(ctx: &MemberContext, id: u64) -> Option<i32> {
    ctx.role(id).map(|r| r.position)
}

#[cfg(test)]
mod tests {
    use super::*;

    type P = Permissions;

    const GUILD: u64 = 100;
    const MOD: u64 = 1;
    const MEMBER: u64 = 2;
    const MUTED: u64 = 3;
    const ADMIN: u64 = 4;
    const GONE: u64 = 99;

    fn roles() -> Vec<RoleInfo> {
        vec![
            RoleInfo {
                id: GUILD,
                permissions: P::DEFAULT_EVERYONE,
                position: 0,
            },
            RoleInfo {
                id: MOD,
                permissions: P::MANAGE_MESSAGES | P::KICK_MEMBERS | P::MANAGE_ROLES,
                position: 10,
            },
            RoleInfo {
                id: MEMBER,
                permissions: P::MENTION_EVERYONE,
                position: 5,
            },
            RoleInfo {
                id: MUTED,
                permissions: P::NONE,
                position: 2,
            },
            RoleInfo {
                id: ADMIN,
                permissions: P::ADMINISTRATOR,
                position: 8,
            },
        ]
    }

    fn ctx<'a>(
        user: &'a str,
        guild_roles: &'a [RoleInfo],
        member_roles: &'a [u64],
    ) -> MemberContext<'a> {
        MemberContext {
            user_id: user,
            owner_id: "owner",
            everyone_role_id: GUILD,
            guild_roles,
            member_role_ids: member_roles,
        }
    }

    fn role_ow(id: u64, allow: P, deny: P) -> Overwrite {
        Overwrite {
            target: OverwriteTarget::Role(id),
            allow,
            deny,
        }
    }

    fn member_ow(user: &str, allow: P, deny: P) -> Overwrite {
        Overwrite {
            target: OverwriteTarget::Member(user.to_string()),
            allow,
            deny,
        }
    }

    // --- Permissions set basics ---

    #[test]
    fn bits_are_in_listed_order() {
        for (i, (_, p)) in P::NAMES.iter().enumerate() {
            assert_eq!(p.0, 1u64 << i);
        }
        assert_eq!(P::VIEW_CHANNEL.0, 1);
        assert_eq!(P::ADMINISTRATOR.0, 1 << 19);
        assert_eq!(P::ALL.0, (1 << 20) - 1);
        assert_eq!(P::NAMES.iter().fold(P::NONE, |a, (_, p)| a | *p), P::ALL);
    }

    #[test]
    fn set_operations() {
        let a = P::VIEW_CHANNEL | P::SEND_MESSAGES;
        assert!(a.contains(P::VIEW_CHANNEL));
        assert!(a.contains(P::NONE));
        assert!(!a.contains(P::VIEW_CHANNEL | P::SPEAK));
        assert!(a.intersects(P::SEND_MESSAGES | P::SPEAK));
        assert!(!a.intersects(P::SPEAK));
        assert_eq!(a.remove(P::SEND_MESSAGES), P::VIEW_CHANNEL);
        assert_eq!(a.union(P::SPEAK), a | P::SPEAK);
        assert_eq!(a & P::SEND_MESSAGES, P::SEND_MESSAGES);
        assert!(P::NONE.is_empty());
        assert!(!a.is_empty());
        assert_eq!(!P::NONE, P::ALL);
        assert_eq!(!P::ALL, P::NONE);
        assert_eq!(!a & a, P::NONE);
        let mut b = P::NONE;
        b |= P::SPEAK;
        b &= P::SPEAK | P::CONNECT;
        assert_eq!(b, P::SPEAK);
        assert_eq!(P::default(), P::NONE);
    }

    #[test]
    fn default_everyone_is_as_specified() {
        let d = P::DEFAULT_EVERYONE;
        assert_eq!(
            d.names(),
            vec![
                "view_channel",
                "send_messages",
                "read_message_history",
                "add_reactions",
                "attach_files",
                "create_invite",
                "connect",
                "speak",
                "change_nickname"
            ]
        );
        assert!(!d.intersects(P::ADMINISTRATOR | P::MANAGE_GUILD | P::MENTION_EVERYONE));
    }

    #[test]
    fn names_lists_set_bits() {
        assert!(P::NONE.names().is_empty());
        assert_eq!(P::ALL.names().len(), 20);
        assert_eq!(
            (P::SPEAK | P::ADMINISTRATOR).names(),
            vec!["speak", "administrator"]
        );
        assert_eq!(Permissions(1 << 40).names(), Vec::<&str>::new());
    }

    #[test]
    fn serde_is_a_plain_number() {
        let p = P::VIEW_CHANNEL | P::SPEAK;
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            (1u64 | 1 << 14).to_string()
        );
        let back: P = serde_json::from_str(&p.0.to_string()).unwrap();
        assert_eq!(back, p);
    }

    // --- Rule 1 ---

    #[test]
    fn rule1_owner_has_all_everywhere() {
        let r = roles();
        let c = ctx("owner", &r, &[]);
        assert_eq!(guild_permissions(&c), P::ALL);
        let ows = [
            role_ow(GUILD, P::NONE, P::ALL),
            member_ow("owner", P::NONE, P::ALL),
        ];
        assert_eq!(channel_permissions(&c, Some(&ows), &ows), P::ALL);
    }

    #[test]
    fn rule1_empty_ids_are_not_owner() {
        let r = roles();
        let c = MemberContext {
            owner_id: "",
            ..ctx("", &r, &[])
        };
        assert!(!c.is_owner());
        assert_eq!(guild_permissions(&c), P::DEFAULT_EVERYONE);
    }

    // --- Rule 2 ---

    #[test]
    fn rule2_base_is_everyone_union_existing_assigned_roles() {
        let r = roles();
        let c = ctx("u", &r, &[MOD, MEMBER, GONE]);
        assert_eq!(
            guild_permissions(&c),
            P::DEFAULT_EVERYONE
                | P::MANAGE_MESSAGES
                | P::KICK_MEMBERS
                | P::MANAGE_ROLES
                | P::MENTION_EVERYONE
        );
        let plain = ctx("u", &r, &[]);
        assert_eq!(guild_permissions(&plain), P::DEFAULT_EVERYONE);
    }

    #[test]
    fn rule2_missing_everyone_role_gives_nothing_from_it() {
        let r: Vec<RoleInfo> = roles().into_iter().filter(|r| r.id != GUILD).collect();
        assert_eq!(guild_permissions(&ctx("u", &r, &[])), P::NONE);
        assert_eq!(
            guild_permissions(&ctx("u", &r, &[MEMBER])),
            P::MENTION_EVERYONE
        );
    }

    // --- Rule 3 ---

    #[test]
    fn rule3_administrator_has_all_and_ignores_overwrites() {
        let r = roles();
        let c = ctx("u", &r, &[ADMIN]);
        assert_eq!(guild_permissions(&c), P::ALL);
        let ows = [
            role_ow(GUILD, P::NONE, P::ALL),
            role_ow(ADMIN, P::NONE, P::ALL),
            member_ow("u", P::NONE, P::ALL),
        ];
        assert_eq!(channel_permissions(&c, Some(&ows), &ows), P::ALL);
    }

    #[test]
    fn rule3_overwrites_cannot_grant_administrator() {
        let r = roles();
        let c = ctx("u", &r, &[]);
        let ows = [member_ow("u", P::ADMINISTRATOR | P::MANAGE_GUILD, P::NONE)];
        let p = channel_permissions(&c, None, &ows);
        assert!(!p.contains(P::ADMINISTRATOR));
        assert!(p.contains(P::MANAGE_GUILD));
        assert_ne!(p, P::ALL);
    }

    // --- Rule 4 ---

    #[test]
    fn rule4_order_everyone_then_roles_then_member() {
        let r = roles();
        let c = ctx("u", &r, &[MEMBER, MUTED]);
        // @everyone denies speak, a role allows it back, the member overwrite denies it again.
        let ows = [
            member_ow("u", P::NONE, P::SPEAK),
            role_ow(MEMBER, P::SPEAK, P::NONE),
            role_ow(GUILD, P::NONE, P::SPEAK),
        ];
        assert!(!channel_permissions(&c, None, &ows).contains(P::SPEAK));
        // Without the member deny, the role allow wins over the @everyone deny.
        assert!(channel_permissions(&c, None, &ows[1..]).contains(P::SPEAK));
        // Member allow beats a role deny.
        let ows2 = [
            role_ow(MUTED, P::NONE, P::ADD_REACTIONS),
            member_ow("u", P::ADD_REACTIONS, P::NONE),
        ];
        assert!(channel_permissions(&c, None, &ows2).contains(P::ADD_REACTIONS));
    }

    #[test]
    fn rule4_role_overwrites_combined_allow_beats_deny() {
        let r = roles();
        let c = ctx("u", &r, &[MEMBER, MUTED]);
        // One role denies, another allows: denies are applied first, so allow wins.
        let ows = [
            role_ow(MEMBER, P::ADD_REACTIONS, P::NONE),
            role_ow(MUTED, P::NONE, P::ADD_REACTIONS | P::SEND_MESSAGES),
        ];
        let p = channel_permissions(&c, None, &ows);
        assert!(p.contains(P::ADD_REACTIONS));
        assert!(!p.contains(P::SEND_MESSAGES));
        // Order within the list does not matter.
        let rev = [ows[1].clone(), ows[0].clone()];
        assert_eq!(channel_permissions(&c, None, &rev), p);
    }

    #[test]
    fn rule4_everyone_overwrite_deny_then_allow() {
        let r = roles();
        let c = ctx("u", &r, &[]);
        let ows = [role_ow(
            GUILD,
            P::MANAGE_MESSAGES | P::SPEAK,
            P::SPEAK | P::ADD_REACTIONS,
        )];
        let p = channel_permissions(&c, None, &ows);
        assert!(p.contains(P::MANAGE_MESSAGES));
        assert!(p.contains(P::SPEAK), "allow applied after deny");
        assert!(!p.contains(P::ADD_REACTIONS));
    }

    #[test]
    fn rule4_channel_overwrites_win_over_category() {
        let r = roles();
        let c = ctx("u", &r, &[MEMBER]);
        let cat = [
            member_ow("u", P::NONE, P::SEND_MESSAGES),
            role_ow(GUILD, P::MANAGE_MESSAGES, P::NONE),
        ];
        let chan = [role_ow(GUILD, P::SEND_MESSAGES, P::MANAGE_MESSAGES)];
        let p = channel_permissions(&c, Some(&cat), &chan);
        assert!(p.contains(P::SEND_MESSAGES));
        assert!(!p.contains(P::MANAGE_MESSAGES));
        // Category alone.
        let q = channel_permissions(&c, Some(&cat), &[]);
        assert!(!q.contains(P::SEND_MESSAGES));
        assert!(q.contains(P::MANAGE_MESSAGES));
        // No category: its overwrites are not consulted.
        assert_eq!(channel_permissions(&c, None, &[]), guild_permissions(&c));
    }

    #[test]
    fn rule4_duplicate_overwrites_are_merged() {
        let r = roles();
        let c = ctx("u", &r, &[]);
        let ows = [
            member_ow("u", P::NONE, P::SPEAK),
            member_ow("u", P::MANAGE_MESSAGES, P::NONE),
        ];
        let p = channel_permissions(&c, None, &ows);
        assert!(!p.contains(P::SPEAK));
        assert!(p.contains(P::MANAGE_MESSAGES));
    }

    // --- Rule 5 ---

    #[test]
    fn rule5_without_view_channel_nothing() {
        let r = roles();
        let c = ctx("u", &r, &[MOD]);
        let ows = [role_ow(GUILD, P::NONE, P::VIEW_CHANNEL)];
        assert_eq!(channel_permissions(&c, None, &ows), P::NONE);
        // Denied at category level, allowed back by the channel for a role.
        let cat = [role_ow(GUILD, P::NONE, P::VIEW_CHANNEL)];
        let chan = [role_ow(MOD, P::VIEW_CHANNEL, P::NONE)];
        assert!(channel_permissions(&c, Some(&cat), &chan)
            .contains(P::VIEW_CHANNEL | P::MANAGE_MESSAGES));
        // No view in the guild base at all.
        let bare = vec![RoleInfo {
            id: GUILD,
            permissions: P::SEND_MESSAGES,
            position: 0,
        }];
        assert_eq!(
            channel_permissions(&ctx("u", &bare, &[]), None, &[]),
            P::NONE
        );
    }

    // --- Rule 6 ---

    #[test]
    fn rule6_without_send_no_attach_or_mention_everyone() {
        let r = roles();
        let c = ctx("u", &r, &[MEMBER]);
        assert!(channel_permissions(&c, None, &[]).contains(P::ATTACH_FILES | P::MENTION_EVERYONE));
        let ows = [role_ow(GUILD, P::NONE, P::SEND_MESSAGES)];
        let p = channel_permissions(&c, None, &ows);
        assert!(!p.intersects(P::SEND_MESSAGES | P::ATTACH_FILES | P::MENTION_EVERYONE));
        assert!(p.contains(P::VIEW_CHANNEL | P::ADD_REACTIONS));
    }

    // --- Rule 7 ---

    #[test]
    fn rule7_without_connect_no_voice() {
        let r = roles();
        let voice = P::SPEAK | P::MUTE_MEMBERS | P::DEAFEN_MEMBERS | P::MOVE_MEMBERS;
        let c = ctx("u", &r, &[]);
        let ows = [member_ow("u", voice, P::CONNECT)];
        let p = channel_permissions(&c, None, &ows);
        assert!(!p.intersects(voice | P::CONNECT));
        assert!(p.contains(P::VIEW_CHANNEL | P::SEND_MESSAGES));
        let ok = [member_ow("u", voice, P::NONE)];
        assert!(channel_permissions(&c, None, &ok).contains(voice | P::CONNECT));
    }

    // --- Rule 8 ---

    #[test]
    fn rule8_irrelevant_overwrites_have_no_effect() {
        let r = roles();
        let c = ctx("u", &r, &[MEMBER, GONE]);
        let base = channel_permissions(&c, None, &[]);
        let ows = [
            role_ow(MOD, P::ALL, P::NONE),       // role the member does not have
            role_ow(MUTED, P::NONE, P::ALL),     // role the member does not have
            role_ow(GONE, P::NONE, P::ALL),      // assigned but deleted role
            role_ow(12345, P::ALL, P::ALL),      // unknown role
            member_ow("other", P::NONE, P::ALL), // another member
            member_ow("owner", P::ALL, P::NONE), // another member
        ];
        assert_eq!(channel_permissions(&c, Some(&ows), &ows), base);
    }

    // --- Rule 9 ---

    #[test]
    fn rule9_highest_role_position() {
        let r = roles();
        assert_eq!(highest_role_position(&ctx("owner", &r, &[])), i32::MAX);
        assert_eq!(highest_role_position(&ctx("u", &r, &[])), 0);
        assert_eq!(
            highest_role_position(&ctx("u", &r, &[MUTED, MOD, MEMBER])),
            10
        );
        assert_eq!(highest_role_position(&ctx("u", &r, &[GONE])), 0);
        let no_everyone: Vec<RoleInfo> = r.iter().copied().filter(|x| x.id != GUILD).collect();
        assert_eq!(highest_role_position(&ctx("u", &no_everyone, &[])), 0);
    }

    #[test]
    fn rule9_cannot_manage_role_at_or_above_own() {
        let r = roles();
        let m = ctx("u", &r, &[MOD]); // MANAGE_ROLES, position 10
        assert!(can_manage_role(&m, 9));
        assert!(can_manage_role(&m, 0));
        assert!(!can_manage_role(&m, 10));
        assert!(!can_manage_role(&m, 11));
        // Without MANAGE_ROLES, nothing.
        let plain = ctx("u", &r, &[MEMBER]);
        assert!(!can_manage_role(&plain, -5));
        // Admin has MANAGE_ROLES but is still bound by hierarchy.
        let a = ctx("u", &r, &[ADMIN]); // position 8
        assert!(can_manage_role(&a, 7));
        assert!(!can_manage_role(&a, 8));
        // Owner always.
        let o = ctx("owner", &r, &[]);
        assert!(can_manage_role(&o, i32::MAX));
        assert!(can_manage_role(&o, i32::MIN));
    }

    #[test]
    fn rule9_cannot_moderate_equal_or_higher() {
        let r = roles();
        let m = ctx("m", &r, &[MOD]); // 10
        let m2 = ctx("m2", &r, &[MOD]); // 10
        let a = ctx("a", &r, &[ADMIN]); // 8
        let u = ctx("u", &r, &[]); // 0
        assert!(can_moderate(&m, &a));
        assert!(can_moderate(&m, &u));
        assert!(!can_moderate(&a, &m));
        assert!(!can_moderate(&m, &m2));
        assert!(!can_moderate(&u, &u));
        assert!(!can_moderate(&m, &m));
    }

    #[test]
    fn rule9_owner_outranks_all_and_cannot_be_moderated() {
        let r = roles();
        let o = ctx("owner", &r, &[]);
        let top = vec![
            RoleInfo {
                id: GUILD,
                permissions: P::NONE,
                position: 0,
            },
            RoleInfo {
                id: 7,
                permissions: P::ADMINISTRATOR,
                position: i32::MAX,
            },
        ];
        let big = ctx("big", &top, &[7]);
        let u = ctx("u", &r, &[]);
        assert!(can_moderate(&o, &u));
        assert!(can_moderate(&o, &big));
        assert!(!can_moderate(&big, &o));
        assert!(!can_moderate(&u, &o));
        assert!(!can_moderate(&o, &o));
    }

    #[test]
    fn rule9_contexts_of_different_guilds_cannot_moderate() {
        let r = roles();
        let m = ctx("m", &r, &[MOD]);
        let other = MemberContext {
            everyone_role_id: 555,
            ..ctx("u", &r, &[])
        };
        assert!(!can_moderate(&m, &other));
        let other_owner = MemberContext {
            owner_id: "x",
            ..ctx("u", &r, &[])
        };
        assert!(!can_moderate(&m, &other_owner));
    }

    // --- Rule 11 ---

    fn ranks(list: &[(&str, i32)]) -> HashMap<String, i32> {
        list.iter().map(|(u, r)| (u.to_string(), *r)).collect()
    }

    #[test]
    fn rule11_grant_only_what_one_holds() {
        let r = roles();
        let m = ctx("u", &r, &[MOD]);
        assert_eq!(grantable(&m, P::MANAGE_MESSAGES | P::SPEAK), Ok(()));
        assert_eq!(
            grantable(&m, P::MANAGE_MESSAGES | P::BAN_MEMBERS),
            Err(GrantRefusal::NotHeld(P::BAN_MEMBERS))
        );
        assert_eq!(
            grantable(&m, P::ADMINISTRATOR),
            Err(GrantRefusal::NotHeld(P::ADMINISTRATOR))
        );
        assert_eq!(grantable(&ctx("a", &r, &[ADMIN]), P::ALL), Ok(()));
        assert_eq!(grantable(&ctx("owner", &r, &[]), P::ALL), Ok(()));
        assert_eq!(grantable(&m, Permissions(1 << 40)), Ok(()));
    }

    #[test]
    fn rule11_overwrites_grant_only_held_bits() {
        let r = roles();
        let e = ctx("u", &r, &[MUTED]); // rank 2, @everyone's bits only
        let held = channel_permissions(&e, None, &[]);
        let none = HashMap::new();
        let grab = P::MANAGE_MESSAGES | P::MENTION_EVERYONE;
        let change = |after: &[Overwrite]| check_overwrite_change(&e, held, &[], after, &none);
        assert_eq!(
            change(&[role_ow(GUILD, grab, P::NONE)]),
            Err(GrantRefusal::NotHeld(grab))
        );
        assert_eq!(
            change(&[role_ow(GUILD, P::NONE, P::MANAGE_MESSAGES)]),
            Err(GrantRefusal::NotHeld(P::MANAGE_MESSAGES)),
            "denying is changing too"
        );
        assert_eq!(change(&[role_ow(GUILD, P::NONE, P::SEND_MESSAGES)]), Ok(()));
        assert_eq!(
            change(&[role_ow(GUILD, P::ADMINISTRATOR, P::NONE)]),
            Err(GrantRefusal::NotHeld(P::ADMINISTRATOR))
        );
        // Bits held only thanks to the channel's own overwrite count as held there.
        let ows = [member_ow("u", P::NONE, P::SPEAK)];
        let held_here = channel_permissions(&e, None, &ows);
        let after = [ows[0].clone(), role_ow(GUILD, P::NONE, P::SPEAK)];
        assert_eq!(
            check_overwrite_change(&e, held_here, &ows, &after, &none),
            Err(GrantRefusal::NotHeld(P::SPEAK))
        );
    }

    #[test]
    fn rule11_overwrites_only_for_targets_below() {
        let r = roles();
        let e = ctx("u", &r, &[MUTED]); // rank 2
        let held = channel_permissions(&e, None, &[]);
        let members = ranks(&[("low", 0), ("peer", 2), ("high", 10), ("owner", i32::MAX)]);
        let change = |before: &[Overwrite], after: &[Overwrite]| {
            check_overwrite_change(&e, held, before, after, &members)
        };
        let hide = P::VIEW_CHANNEL;
        assert_eq!(
            change(&[], &[role_ow(MOD, P::NONE, hide)]),
            Err(GrantRefusal::RoleNotBelow(MOD))
        );
        assert_eq!(
            change(&[], &[role_ow(MUTED, P::NONE, hide)]),
            Err(GrantRefusal::RoleNotBelow(MUTED)),
            "one's own rank is not below it"
        );
        assert_eq!(
            change(&[], &[member_ow("u", P::SPEAK, P::NONE)]),
            Err(GrantRefusal::MemberNotBelow("u".into()))
        );
        for who in ["peer", "high", "owner"] {
            assert_eq!(
                change(&[], &[member_ow(who, P::NONE, hide)]),
                Err(GrantRefusal::MemberNotBelow(who.into()))
            );
        }
        assert_eq!(change(&[], &[member_ow("low", P::NONE, hide)]), Ok(()));
        // A higher role's overwrite kept as it was does not stop other changes; dropping
        // or changing it does.
        let theirs = [role_ow(MOD, P::MANAGE_MESSAGES, P::NONE)];
        let mine = [role_ow(GUILD, P::NONE, P::SPEAK)];
        let both = [theirs[0].clone(), mine[0].clone()];
        assert_eq!(change(&theirs, &both), Ok(()));
        assert_eq!(change(&theirs, &mine), Err(GrantRefusal::RoleNotBelow(MOD)));
        // Overwrites of a deleted role or a departed member may be dropped, not set.
        let stale = [
            role_ow(GONE, P::ALL, P::NONE),
            member_ow("left", P::ALL, P::NONE),
        ];
        assert_eq!(change(&stale, &[]), Ok(()));
        assert!(change(&[], &stale[1..]).is_err());
        // Owner and administrators are not bound.
        for boss in [ctx("owner", &r, &[]), ctx("a", &r, &[ADMIN])] {
            let all = [
                role_ow(MOD, P::ALL, P::NONE),
                member_ow("owner", P::NONE, P::ALL),
            ];
            assert_eq!(
                check_overwrite_change(&boss, P::NONE, &[], &all, &members),
                Ok(())
            );
        }
    }

    // --- Rule 10 ---

    #[test]
    fn rule10_unknown_bits_are_dropped() {
        assert_eq!(P::from_bits_truncate(u64::MAX), P::ALL);
        assert_eq!(P::from_bits_truncate(1 << 20 | 1), P::VIEW_CHANNEL);
        assert_eq!(P::from(u64::MAX), P::ALL);
        let de: P = serde_json::from_str(&u64::MAX.to_string()).unwrap();
        assert_eq!(de, P::ALL);

        let junk = Permissions(!P::ALL.0);
        let r = vec![
            RoleInfo {
                id: GUILD,
                permissions: Permissions(P::DEFAULT_EVERYONE.0 | junk.0),
                position: 0,
            },
            RoleInfo {
                id: 5,
                permissions: junk,
                position: 1,
            },
        ];
        let c = ctx("u", &r, &[5]);
        assert_eq!(guild_permissions(&c), P::DEFAULT_EVERYONE);
        let ows = [member_ow("u", junk, P::NONE), role_ow(5, junk, junk)];
        let p = channel_permissions(&c, Some(&ows), &ows);
        assert_eq!(p, P::DEFAULT_EVERYONE);
        assert!(P::ALL.contains(p));
    }

    // --- Property-style test ---

    /// SplitMix64: tiny deterministic PRNG.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn perms(&mut self) -> P {
            // Raw (possibly undefined) bits, sparse enough to be interesting.
            Permissions(self.next() & self.next() & self.next())
        }
        fn overwrites(
            &mut self,
            users: &[&str],
            role_ids: &[u64],
            no_admin: bool,
        ) -> Vec<Overwrite> {
            let n = self.below(6);
            (0..n)
                .map(|_| {
                    let target = if self.below(2) == 0 {
                        OverwriteTarget::Role(role_ids[self.below(role_ids.len() as u64) as usize])
                    } else {
                        OverwriteTarget::Member(
                            users[self.below(users.len() as u64) as usize].to_string(),
                        )
                    };
                    let mut allow = self.perms();
                    if no_admin {
                        allow = allow.remove(P::ADMINISTRATOR);
                    }
                    Overwrite {
                        target,
                        allow,
                        deny: self.perms(),
                    }
                })
                .collect()
        }
    }

    #[test]
    fn property_random_combinations() {
        let mut rng = Rng(0x4845_4152_5448);
        let users = ["owner", "a", "b", "c"];
        // Role ids include the @everyone id, and ids that may or may not exist.
        let all_ids = [GUILD, 1, 2, 3, 4, 5, 6, 777];
        for _ in 0..3000 {
            let n_roles = rng.below(6);
            let mut guild_roles = vec![RoleInfo {
                id: GUILD,
                permissions: rng.perms(),
                position: 0,
            }];
            if rng.below(10) == 0 {
                guild_roles.clear(); // inconsistent data: no @everyone
            }
            for id in 1..=n_roles {
                guild_roles.push(RoleInfo {
                    id,
                    permissions: rng.perms().remove(P::ADMINISTRATOR),
                    position: rng.next() as i32,
                });
            }
            let member_roles: Vec<u64> = (0..rng.below(5))
                .map(|_| all_ids[rng.below(all_ids.len() as u64) as usize])
                .collect();
            let user = users[rng.below(users.len() as u64) as usize];
            let cat = rng.overwrites(&users, &all_ids, false);
            let chan = rng.overwrites(&users, &all_ids, false);
            let cat_opt = if rng.below(2) == 0 {
                Some(cat.as_slice())
            } else {
                None
            };

            let c = ctx(user, &guild_roles, &member_roles);
            let g = guild_permissions(&c);
            let p = channel_permissions(&c, cat_opt, &chan);
            assert!(P::ALL.contains(g));
            assert!(P::ALL.contains(p));
            let _ = highest_role_position(&c);
            let _ = can_manage_role(&c, rng.next() as i32);
            let t = ctx(
                users[rng.below(users.len() as u64) as usize],
                &guild_roles,
                &member_roles,
            );
            let _ = can_moderate(&c, &t);

            if user == "owner" {
                assert_eq!(p, P::ALL);
            }

            // Same data but the member is an administrator.
            let mut admin_roles = guild_roles.clone();
            admin_roles.push(RoleInfo {
                id: 4242,
                permissions: P::ADMINISTRATOR,
                position: 1,
            });
            let mut admin_member = member_roles.clone();
            admin_member.push(4242);
            let a = ctx(user, &admin_roles, &admin_member);
            assert_eq!(guild_permissions(&a), P::ALL);
            assert_eq!(channel_permissions(&a, cat_opt, &chan), P::ALL);

            // @everyone denies VIEW_CHANNEL, and no role or member overwrite allows it back.
            if user != "owner" && !g.contains(P::ADMINISTRATOR) {
                let strip = |ows: &[Overwrite]| -> Vec<Overwrite> {
                    let mut v: Vec<Overwrite> = ows
                        .iter()
                        .cloned()
                        .map(|mut o| {
                            o.allow = o.allow.remove(P::VIEW_CHANNEL);
                            o
                        })
                        .collect();
                    v.push(role_ow(GUILD, P::NONE, P::VIEW_CHANNEL));
                    v
                };
                let cat2 = strip(&cat);
                let chan2 = strip(&chan);
                let cat2_opt = cat_opt.map(|_| cat2.as_slice());
                assert_eq!(channel_permissions(&c, cat2_opt, &chan2), P::NONE);
            }
        }
    }
}

#[cfg(test)]
mod web_client {
    use super::Permissions;

    /// `NAME: 1 << bit` entries of `export const P = { … };` in the web client's module.
    fn client_bits(source: &str) -> Vec<(String, u64)> {
        let start = source
            .find("export const P = {")
            .expect("permissions.js exports `const P = {`");
        let body = &source[start + "export const P = {".len()..];
        let end = body.find("};").expect("`P` ends with `};`");
        body[..end]
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (name, value) = entry
                    .split_once(':')
                    .unwrap_or_else(|| panic!("not `NAME: 1 << bit`: {entry:?}"));
                let shift = value
                    .trim()
                    .strip_prefix("1 << ")
                    .and_then(|bit| bit.parse::<u32>().ok())
                    .unwrap_or_else(|| panic!("not `NAME: 1 << bit`: {entry:?}"));
                (name.trim().to_owned(), 1u64 << shift)
            })
            .collect()
    }

    #[test]
    fn the_web_client_has_the_same_bits_as_the_server() {
        let bits = client_bits(include_str!("../web/permissions.js"));
        for (name, bit) in &bits {
            let server = Permissions::NAMES
                .iter()
                .find(|(known, _)| known.to_uppercase() == *name)
                .unwrap_or_else(|| panic!("the web client's {name} is no server permission"));
            assert_eq!(
                server.1.bits(),
                *bit,
                "{name}: the web client has bit {bit:#x}, the server {:#x}",
                server.1.bits()
            );
        }
        for (known, _) in Permissions::NAMES {
            let name = known.to_uppercase();
            assert_eq!(
                bits.iter().filter(|(js, _)| *js == name).count(),
                1,
                "the web client must name {name} once"
            );
        }
    }
}
