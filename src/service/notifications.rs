//! A user's notification settings on this box: the box level, and each guild, channel
//! and DM the box hosts (a DM's settings are keyed by its channel id, like a channel's).
//! The rule that applies them is pure ([`crate::model::notify_settings`]); push planning
//! reads them in its read transaction ([`super::push::plan`]).
//!
//! Each change is one commit that also keeps the `all` index (`scope_notify_all`) and
//! emits `notification_settings_update` to the user's own sessions, so their other
//! devices follow.

use super::access::{channel_access, GuildAccess};
use super::{invalid, Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, StoreError, Tx};
use crate::system::now;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Longest mute, seconds from now (a year and a day; `nothing` is the level for longer).
pub const MAX_MUTE_SECS: u64 = 366 * 24 * 3600;
/// How far in the past `muted_until` may lie, seconds: a device whose clock is behind,
/// or that saves a mute it showed a while ago, is not refused for it.
pub const MUTE_PAST_SLACK_SECS: u64 = 24 * 3600;

/// The place a setting is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// This box.
    Box,
    /// A guild hosted here.
    Guild(Id),
    /// A channel or DM hosted here.
    Channel(Id),
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Box => "box",
            Scope::Guild(_) => "guild",
            Scope::Channel(_) => "channel",
        }
    }

    fn id(self) -> Option<Id> {
        match self {
            Scope::Box => None,
            Scope::Guild(id) | Scope::Channel(id) => Some(id),
        }
    }

    /// The key of this scope in `scope_notify_all`.
    fn index_id(self) -> Id {
        self.id().unwrap_or(BOX_SCOPE)
    }
}

/// `GET /users/@me/notification-settings`: `{box, guilds: {id: settings}, channels: {id:
/// settings}}`.
#[derive(Debug, Serialize)]
pub struct AllSettings {
    /// The box level (defaults when never set).
    #[serde(rename = "box")]
    pub boxed: NotifySettings,
    /// Per guild, only those set.
    pub guilds: BTreeMap<Id, NotifySettings>,
    /// Per channel or DM, only those set.
    pub channels: BTreeMap<Id, NotifySettings>,
}

/// Refuses a `muted_until` far in the past or too far ahead.
fn check_mute(settings: &NotifySettings, now: u64) -> Result<()> {
    let Some(until) = settings.muted_until else {
        return Ok(());
    };
    if until + MUTE_PAST_SLACK_SECS < now {
        return Err(invalid(
            "invalid_muted_until",
            "muted_until lies too far in the past (unix seconds; null to unmute)",
        ));
    }
    if until > now + MAX_MUTE_SECS {
        return Err(invalid(
            "invalid_muted_until",
            format!(
                "muted_until may be at most {} days ahead (use level \"nothing\" for longer)",
                MAX_MUTE_SECS / 86400
            ),
        ));
    }
    Ok(())
}

/// Fails with 404 unless `user` may see the scope.
fn check_visible(tx: &Tx, user: UserId, scope: Scope) -> Result<()> {
    match scope {
        Scope::Box => Ok(()),
        Scope::Guild(guild) => GuildAccess::load(tx, guild, user).map(|_| ()),
        Scope::Channel(channel) => {
            let (channel, access) = channel_access(tx, channel, user)?;
            access
                .require_in(tx, &channel, Permissions::VIEW_CHANNEL)
                .map(|_| ())
        }
    }
}

fn stored(tx: &Tx, user: UserId, scope: Scope) -> Result<Option<NotifySettings>> {
    Ok(match scope {
        Scope::Box => tx.get(USER_NOTIFY_BOX, user)?,
        Scope::Guild(id) => tx.get(USER_GUILD_NOTIFY, (user, id))?,
        Scope::Channel(id) => tx.get(USER_CHANNEL_NOTIFY, (user, id))?,
    })
}

/// How many guild and channel settings `user` keeps here.
fn kept(tx: &Tx, user: UserId) -> Result<usize> {
    Ok(tx.count(USER_GUILD_NOTIFY, Rows::prefix(user))?
        + tx.count(USER_CHANNEL_NOTIFY, Rows::prefix(user))?)
}

/// Emits the change to the user's own sessions: `{scope, id, settings}` (settings `null`
/// when removed, the place inheriting again).
fn announce(tx: &Tx, user: UserId, scope: Scope, settings: Option<&NotifySettings>) -> Result<()> {
    tx.emit(
        "notification_settings_update",
        Audience::user(user),
        None,
        &json!({
            "scope": scope.name(),
            "id": scope.id(),
            "settings": settings,
        }),
    )?;
    Ok(())
}

/// Forgets `user`'s settings for `guild` and its channels (they left it, or it is being
/// deleted; call before its channels are removed), so they no longer count against the
/// user's limit nor make the guild's messages plan pushes.
pub fn forget_guild(tx: &Tx, user: UserId, guild: Id) -> std::result::Result<(), StoreError> {
    tx.delete(USER_GUILD_NOTIFY, (user, guild))?;
    tx.delete(SCOPE_NOTIFY_ALL, (guild, user))?;
    for ((_, channel), _) in tx.rows(USER_CHANNEL_NOTIFY, Rows::prefix(user))? {
        if tx
            .get(CHANNEL, channel)?
            .is_some_and(|c| c.guild_id == guild)
        {
            tx.delete(USER_CHANNEL_NOTIFY, (user, channel))?;
            tx.delete(SCOPE_NOTIFY_ALL, (channel, user))?;
        }
    }
    Ok(())
}

/// Forgets every setting of `user` here (their account is removed).
pub fn forget_user(tx: &Tx, user: UserId) -> std::result::Result<(), StoreError> {
    tx.delete(USER_NOTIFY_BOX, user)?;
    tx.delete(SCOPE_NOTIFY_ALL, (BOX_SCOPE, user))?;
    for table in [USER_GUILD_NOTIFY, USER_CHANNEL_NOTIFY] {
        for ((_, scope), _) in tx.rows(table, Rows::prefix(user))? {
            tx.delete(SCOPE_NOTIFY_ALL, (scope, user))?;
        }
        tx.delete_rows(table, Rows::prefix(user))?;
    }
    Ok(())
}

impl Services {
    /// Every notification setting `user` keeps on this box.
    pub fn notification_settings(&self, user: UserId) -> Result<AllSettings> {
        self.store.read(|tx| {
            Ok(AllSettings {
                boxed: tx.get(USER_NOTIFY_BOX, user)?.unwrap_or_default(),
                guilds: tx
                    .rows(USER_GUILD_NOTIFY, Rows::prefix(user))?
                    .into_iter()
                    .map(|((_, id), s)| (id, s))
                    .collect(),
                channels: tx
                    .rows(USER_CHANNEL_NOTIFY, Rows::prefix(user))?
                    .into_iter()
                    .map(|((_, id), s)| (id, s))
                    .collect(),
            })
        })
    }

    /// Sets `user`'s settings for `scope` (a guild or channel they can see, else 404).
    pub async fn set_notification_settings(
        &self,
        user: UserId,
        scope: Scope,
        settings: NotifySettings,
    ) -> Result<NotifySettings> {
        check_mute(&settings, now())?;
        let max = self.config.limits.max_notification_settings;
        self.store
            .write(move |tx| {
                check_visible(tx, user, scope)?;
                let existed = stored(tx, user, scope)?.is_some();
                if scope != Scope::Box && !existed && kept(tx, user)? >= max {
                    return Err(invalid(
                        "too_many_items",
                        format!(
                            "at most {max} guild and channel notification settings per user; \
                             remove some that no longer matter"
                        ),
                    ));
                }
                match scope {
                    Scope::Box => tx.put(USER_NOTIFY_BOX, user, &settings)?,
                    Scope::Guild(id) => tx.put(USER_GUILD_NOTIFY, (user, id), &settings)?,
                    Scope::Channel(id) => tx.put(USER_CHANNEL_NOTIFY, (user, id), &settings)?,
                }
                if settings.level == NotifyLevel::All {
                    tx.put(SCOPE_NOTIFY_ALL, (scope.index_id(), user), &Present)?;
                } else {
                    tx.delete(SCOPE_NOTIFY_ALL, (scope.index_id(), user))?;
                }
                announce(tx, user, scope, Some(&settings))?;
                Ok(settings)
            })
            .await
    }

    /// Removes `user`'s settings for a guild or channel: it inherits again. One the user
    /// keeps is removed even if they no longer see the place; otherwise a place they
    /// cannot see is a 404.
    pub async fn clear_notification_settings(&self, user: UserId, scope: Scope) -> Result<()> {
        if scope == Scope::Box {
            return Err(invalid(
                "invalid_scope",
                "the box level cannot be removed; set its level to \"default\"",
            ));
        }
        self.store
            .write(move |tx| {
                if stored(tx, user, scope)?.is_none() {
                    return check_visible(tx, user, scope);
                }
                match scope {
                    Scope::Box => return Err(Error::NotFound("scope")),
                    Scope::Guild(id) => tx.delete(USER_GUILD_NOTIFY, (user, id))?,
                    Scope::Channel(id) => tx.delete(USER_CHANNEL_NOTIFY, (user, id))?,
                };
                tx.delete(SCOPE_NOTIFY_ALL, (scope.index_id(), user))?;
                announce(tx, user, scope, None)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn muted(until: u64) -> NotifySettings {
        NotifySettings {
            muted_until: Some(until),
            ..NotifySettings::default()
        }
    }

    #[test]
    fn mutes_are_bounded_both_ways() {
        let now = 1_000_000_000;
        assert!(check_mute(&NotifySettings::default(), now).is_ok());
        assert!(check_mute(&muted(now - 60), now).is_ok());
        assert!(check_mute(&muted(now + MAX_MUTE_SECS), now).is_ok());
        assert!(check_mute(&muted(now - MUTE_PAST_SLACK_SECS - 1), now).is_err());
        assert!(check_mute(&muted(1), now).is_err());
        assert!(check_mute(&muted(now + MAX_MUTE_SECS + 1), now).is_err());
    }
}
