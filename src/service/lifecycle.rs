//! The life cycle of a user here, in one place: signing out every device, removing a
//! user everywhere (memberships, devices, what federation kept about them), and the
//! tombstones that remember a home deleted a user, so their still-valid tokens and any
//! new shadow account from that home are refused.

use crate::model::*;
use crate::storage::{tables::*, Rows, StoreError, Tx};
use serde_json::json;

/// Removes every device of a user here with its refresh tokens (access tokens stop
/// working at once: each request checks its device).
pub fn sign_out_all_devices(tx: &Tx, user: UserId) -> Result<(), StoreError> {
    for (_, device) in tx.rows(USER_DEVICE, Rows::prefix(user))? {
        for hash in &device.refresh_hashes {
            tx.delete(REFRESH_TOKEN, hash)?;
        }
    }
    tx.delete_rows(USER_DEVICE, Rows::prefix(user))?;
    Ok(())
}

/// Deletes a user's account here with every membership and device (their messages stay,
/// attributed to the id), and what federation kept about them (directory entry, profile
/// freshness, the peers that kept a shadow).
pub fn remove_user_everywhere(tx: &Tx, user: UserId) -> Result<(), StoreError> {
    for ((_, guild), _) in tx.rows(USER_GUILD, Rows::prefix(user))? {
        tx.delete(GUILD_MEMBER, (guild, user))?;
        tx.delete(GUILD_MEMBER_SINCE, (guild, user))?;
        tx.emit(
            "member_remove",
            Audience::guild(guild).and_user(user),
            Some(guild),
            &json!({ "guild_id": guild, "user_id": user }),
        )?;
    }
    tx.delete_rows(USER_GUILD, Rows::prefix(user))?;
    sign_out_all_devices(tx, user)?;
    if let Some(u) = tx.get(USER, user)? {
        if !u.username.is_empty() && u.homeserver.is_empty() {
            tx.delete(USERNAME_USER, u.username.as_str())?;
        }
    }
    tx.delete(PUSH_DELEGATION, user)?;
    tx.delete(SHADOW_SYNC, user)?;
    tx.delete_rows(USER_PEER, Rows::prefix(user))?;
    super::notifications::forget_user(tx, user)?;
    super::dms::forget_user(tx, user)?;
    super::remote_users::forget(tx, user)?;
    tx.delete(USER, user)?;
    Ok(())
}

/// Records that `home` removed `user` (with its call `id`, or 0 when it answered
/// VerifyUser with 404), keeping the newest id.
pub fn bury(tx: &Tx, user: UserId, home: &str, id: u64) -> Result<(), StoreError> {
    let key = (user, home);
    let deleted = tx.get(USER_TOMBSTONE, key)?.unwrap_or(0).max(id);
    tx.put(USER_TOMBSTONE, key, &deleted)
}

/// Whether `home` deleted `user` (so their tokens and shadow accounts are refused here).
pub fn deleted_by_home(tx: &Tx, user: UserId, home: &str) -> Result<bool, StoreError> {
    tx.contains(USER_TOMBSTONE, (user, home))
}

/// The call id with which `home` deleted `user`, if it did (0: it answered VerifyUser
/// with 404).
pub fn deleted_at(tx: &Tx, user: UserId, home: &str) -> Result<Option<u64>, StoreError> {
    tx.get(USER_TOMBSTONE, (user, home))
}

/// Lifts `home`'s deletion of `user` (the home made the account again).
pub fn unbury(tx: &Tx, user: UserId, home: &str) -> Result<(), StoreError> {
    tx.delete(USER_TOMBSTONE, (user, home))?;
    Ok(())
}

/// What became of a `device_removed` from a user's home
/// ([`Services::apply_device_removed`]).
#[derive(Debug, PartialEq, Eq)]
pub enum DeviceRemoval {
    /// The user is not known here: nothing to do.
    UnknownUser,
    /// The sender is not the user's home.
    NotHome,
    /// Applied before (the same call again), or applied now: whether it changed anything.
    Applied(bool),
}

impl super::Services {
    /// Applies the removal of `user`'s device `jkt` at `removed_at` that the server
    /// `from` sent as call `call_id`: the device's grants here end and its sessions are
    /// signed out, if `from` is the user's home and the call is new.
    pub async fn apply_device_removed(
        &self,
        from: String,
        call_id: u64,
        user: UserId,
        jkt: String,
        removed_at: u64,
    ) -> super::Result<DeviceRemoval> {
        let device = jkt.clone();
        let removal = self
            .store
            .write(move |tx| {
                match tx.get(USER, user)?.map(|u| u.homeserver) {
                    None => return Ok(DeviceRemoval::UnknownUser),
                    Some(home) if home != from => return Ok(DeviceRemoval::NotHome),
                    Some(_) => {}
                }
                if !super::inbox::first_delivery(tx, &from, call_id)? {
                    return Ok(DeviceRemoval::Applied(false));
                }
                let applied = super::accounts::remove_remote_device(tx, user, &device, removed_at)?;
                Ok::<_, super::Error>(DeviceRemoval::Applied(applied))
            })
            .await?;
        if removal == DeviceRemoval::Applied(true) {
            self.signed_out(user, Some(&jkt));
        }
        Ok(removal)
    }
}
