//! Who may DM a user, kept at the user's home: their policy (`everyone`, `shared_guild`,
//! `nobody`) and the people they block. The home answers for its users when a DM is
//! opened or they are added to one (here, or at another box through `dm_joined`), and
//! drops pushes from people they block.

use super::{Error, Result, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, Tx};
use serde::{Deserialize, Serialize};

/// `PATCH /users/@me/dm-settings`, and what `GET` answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmSettings {
    /// Who may DM the user.
    pub dm_policy: DmPolicy,
}

/// Whether `a` and `b` are both members of a guild hosted here.
pub fn share_a_guild_here(tx: &Tx, a: UserId, b: UserId) -> Result<bool> {
    for ((_, guild), _) in tx.rows(USER_GUILD, Rows::prefix(a))? {
        if tx.contains(GUILD_MEMBER, (guild, b))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `user` blocks `other`.
pub fn blocks(tx: &Tx, user: UserId, other: UserId) -> Result<bool> {
    Ok(tx.contains(USER_BLOCK, (user, other.to_text().as_str()))?)
}

/// Fails with 403 `dm_refused` unless `user` (homed here) accepts a DM brought by `by`:
/// not blocked, and allowed by their policy; `shared_at_host` is whether the DM's host
/// attests that they share a guild there.
pub fn check_consent(tx: &Tx, user: UserId, by: UserId, shared_at_host: bool) -> Result<()> {
    let refused = || Error::Refused {
        code: "dm_refused",
        message: "this person does not accept DMs from you".into(),
    };
    if blocks(tx, user, by)? {
        return Err(refused());
    }
    match tx.get(USER_DM_POLICY, user)?.unwrap_or_default() {
        DmPolicy::Everyone => Ok(()),
        DmPolicy::Nobody => Err(refused()),
        DmPolicy::SharedGuild => {
            if shared_at_host || share_a_guild_here(tx, user, by)? {
                Ok(())
            } else {
                Err(refused())
            }
        }
    }
}

impl Services {
    /// The user's DM settings.
    pub fn dm_settings(&self, user: UserId) -> Result<DmSettings> {
        self.store.read(|tx| {
            Ok(DmSettings {
                dm_policy: tx.get(USER_DM_POLICY, user)?.unwrap_or_default(),
            })
        })
    }

    /// Sets who may DM the user.
    pub async fn set_dm_settings(&self, user: UserId, settings: DmSettings) -> Result<DmSettings> {
        self.store
            .write(move |tx| {
                tx.put(USER_DM_POLICY, user, &settings.dm_policy)?;
                Ok(settings)
            })
            .await
    }

    /// Blocks `other` (someone this box knows; not oneself).
    pub async fn block(&self, user: UserId, other: UserId) -> Result<()> {
        if user == other {
            return Err(super::invalid("invalid_user", "you cannot block yourself"));
        }
        let max = self.config.limits.max_blocks_per_user;
        let origin = self.origin.clone();
        self.store
            .write(move |tx| {
                if super::dms::home_of(tx, other, &origin)?.is_none() {
                    return Err(Error::NotFound("user"));
                }
                let key = (user, other.to_text());
                if tx.contains(USER_BLOCK, (key.0, key.1.as_str()))? {
                    return Ok(());
                }
                if tx.count(USER_BLOCK, Rows::prefix(user).limit(max))? >= max {
                    return Err(Error::LimitReached(format!(
                        "a user may block at most {max} users"
                    )));
                }
                tx.put(USER_BLOCK, (key.0, key.1.as_str()), &crate::system::now())?;
                Ok(())
            })
            .await
    }

    /// Unblocks `other`.
    pub async fn unblock(&self, user: UserId, other: UserId) -> Result<()> {
        self.store
            .write(move |tx| {
                tx.delete(USER_BLOCK, (user, other.to_text().as_str()))?;
                Ok(())
            })
            .await
    }

    /// The users `user` blocks.
    pub fn blocked(&self, user: UserId) -> Result<Vec<UserId>> {
        self.store.read(|tx| {
            Ok(tx
                .rows(USER_BLOCK, Rows::prefix(user))?
                .into_iter()
                .filter_map(|((_, other), _)| UserId::parse(&other))
                .collect())
        })
    }

    /// Whether `user` (homed here) blocks `author`, for dropping pushes.
    pub fn is_blocked_by(&self, user: UserId, author: UserId) -> Result<bool> {
        self.store.read(|tx| blocks(tx, user, author))
    }

    /// Of `users`, those who share a guild hosted here with `by` (what a host attests in
    /// `dm_joined`).
    pub fn guild_sharers(&self, by: UserId, users: &[UserId]) -> Result<Vec<UserId>> {
        self.store.read(|tx| {
            let mut out = Vec::new();
            for user in users {
                if share_a_guild_here(tx, *user, by)? {
                    out.push(*user);
                }
            }
            Ok(out)
        })
    }
}
