//! Migration records, mzchat's flow: the newest Migration Proof applied for each user
//! (an older one is refused, so an old proof cannot move them back), the proof an old home
//! shows for a user who moved away, and applying a move on each side: the new home
//! becomes the user's home at sign-in, an old home stops acting as home on
//! `update_homeserver`, and a host follows a move its shadow's home answered with.

use super::outbox::{self, Call, UpdateHomeserver};
use super::profiles::{emit_user_update, text};
use super::Services;
use crate::auth::migration::{check_proof, check_signature, MigrationProof, ProofError};
use crate::model::*;
use crate::storage::{tables::*, StoreError, Tx};
use crate::system::now;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The Migration Proof in VerifyUser's "moved" answer: `{new_homeserver,
/// migration_timestamp, migration_signature}` (read leniently: a field of the wrong kind
/// reads as empty, and the proof is then refused by its checks).
#[derive(Debug, Default, Deserialize)]
struct MovedProof {
    /// The new home's origin.
    #[serde(default, deserialize_with = "text")]
    new_homeserver: String,
    /// Unix seconds of the proof.
    #[serde(default, deserialize_with = "seconds")]
    migration_timestamp: u64,
    /// The proof's signature by K_id.
    #[serde(default, deserialize_with = "text")]
    migration_signature: String,
}

/// A number of seconds, or 0 when it is not one.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(Value::deserialize(deserializer)?.as_u64().unwrap_or(0))
}

/// A moved proof, or an empty one when it is not an object.
fn moved<'de, D: Deserializer<'de>>(deserializer: D) -> Result<MovedProof, D::Error> {
    Ok(serde_json::from_value(Value::deserialize(deserializer)?).unwrap_or_default())
}

/// VerifyUser's "moved" answer (410): `{moved: {new_homeserver, migration_timestamp,
/// migration_signature}}`.
#[derive(Debug, Default, Deserialize)]
pub struct MovedAnswer {
    /// The user's Migration Proof.
    #[serde(default, deserialize_with = "moved")]
    moved: MovedProof,
}

impl MovedAnswer {
    /// The proof the answer carries.
    pub fn proof(self) -> MigrationProof {
        MigrationProof {
            new_homeserver: self.moved.new_homeserver,
            timestamp: self.moved.migration_timestamp,
            signature: self.moved.migration_signature,
        }
    }
}

/// Unix seconds of the newest migration applied for `user` (0 if none).
pub fn last_migration(tx: &Tx, user: UserId) -> Result<u64, StoreError> {
    Ok(tx.get(USER_MIGRATION, user)?.unwrap_or(0))
}

/// Records `proof` as the newest migration applied for `user`.
fn record_migration(tx: &Tx, user: UserId, proof: &MigrationProof) -> Result<(), StoreError> {
    tx.put(USER_MIGRATION, user, &proof.timestamp)?;
    tx.put(
        USER_MOVED,
        user,
        &MigrationRecord {
            new_homeserver: proof.new_homeserver.clone(),
            timestamp: proof.timestamp,
            signature: proof.signature.clone(),
        },
    )
}

/// On an old home: the proof to show a host that asks VerifyUser for `user`, who moved
/// away from here (their account names another home, and this server applied the proof).
pub fn moved_away(tx: &Tx, user: UserId) -> Result<Option<MigrationRecord>, StoreError> {
    let Some(account) = tx.get(USER, user)? else {
        return Ok(None);
    };
    if account.homeserver.is_empty() {
        return Ok(None);
    }
    Ok(tx
        .get(USER_MOVED, user)?
        .filter(|record| record.new_homeserver == account.homeserver))
}

/// On a host: follows a move of the shadow account `shadow` that its home `from` answered
/// with the user's Migration Proof. Applies only a proof signed by the user, naming a new
/// home, newer than the last migration applied here. The shadow keeps its memberships;
/// its profile is refreshed from the new home at the next lookup. Returns whether it
/// moved.
pub fn follow_move(
    tx: &Tx,
    shadow: &mut User,
    from: &str,
    proof: MigrationProof,
) -> Result<bool, StoreError> {
    let Ok(new_home) = crate::origins::normalize_origin(&proof.new_homeserver) else {
        return Ok(false);
    };
    if new_home != proof.new_homeserver
        || new_home == from
        || shadow.homeserver != from
        || check_signature(shadow.id, &proof).is_err()
        || proof.timestamp <= last_migration(tx, shadow.id)?
    {
        return Ok(false);
    }
    shadow.homeserver = new_home;
    shadow.is_admin = false;
    tx.put(USER, shadow.id, shadow)?;
    record_migration(tx, shadow.id, &proof)?;
    // The profile's freshness was the old home's: the next lookup asks the new one.
    tx.delete(SHADOW_SYNC, shadow.id)?;
    emit_user_update(tx, shadow)?;
    Ok(true)
}

/// Most old servers one migration may notify.
pub const MAX_TARGETS: usize = 16;

/// Why a migration is refused.
#[derive(Debug, thiserror::Error)]
pub enum MigrationRefused {
    /// The proof names another server as the new home.
    #[error("the migration proof names {named} as the new home, not this server ({origin})")]
    OtherHome {
        /// The home the proof names.
        named: String,
        /// This server.
        origin: String,
    },
    /// The proof does not hold.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// More old servers are listed than one migration may notify.
    #[error("at most {MAX_TARGETS} migration targets")]
    TooManyTargets,
    /// A newer migration of the user is already applied.
    #[error("a newer migration of this user is already applied")]
    Stale,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an old home did with `update_homeserver`.
#[derive(Debug, PartialEq, Eq)]
pub enum MovedAway {
    /// Applied now, or already (a retried delivery).
    Applied,
    /// The call does not come from the new home the proof names.
    NotFromNewHome,
    /// No such user here.
    UnknownUser,
    /// A newer migration is already applied.
    Stale,
}

impl Services {
    /// On the new home, at sign-in: checks that `proof` moves `user` here, signed within
    /// `federation.migration.proof_window_secs`, and that at most [`MAX_TARGETS`] old
    /// servers (`targets`) are to be told.
    pub fn check_migration(
        &self,
        user: UserId,
        proof: &MigrationProof,
        targets: usize,
    ) -> Result<(), MigrationRefused> {
        if proof.new_homeserver != self.origin {
            return Err(MigrationRefused::OtherHome {
                named: proof.new_homeserver.clone(),
                origin: self.origin.clone(),
            });
        }
        let window = self.config.federation.migration.proof_window_secs;
        check_proof(user, proof, now(), window)?;
        if targets > MAX_TARGETS {
            return Err(MigrationRefused::TooManyTargets);
        }
        Ok(())
    }

    /// On the new home: applies a migration checked with [`Services::check_migration`]
    /// and queues `update_homeserver` to the old servers `origins` (peers, already
    /// checked). Creates the account if this server has never seen the user.
    pub async fn migrate_here(
        &self,
        user: UserId,
        proof: MigrationProof,
        origins: Vec<String>,
    ) -> Result<(), MigrationRefused> {
        let ids: Vec<Id> = origins.iter().map(|_| self.next_id()).collect();
        self.store
            .write(move |tx| {
                if proof.timestamp <= last_migration(tx, user)? {
                    return Err(MigrationRefused::Stale);
                }
                let mut account = match tx.get(USER, user)? {
                    Some(u) => u,
                    None => User {
                        id: user,
                        username: String::new(),
                        password_hash: None,
                        key_backup: None,
                        homeserver: String::new(),
                        profile: Profile {
                            name: user.to_text().chars().take(8).collect(),
                            ..Profile::default()
                        },
                        profile_synced: true,
                        push_subscriptions: Vec::new(),
                        fcm_tokens: Vec::new(),
                        guild_order: Vec::new(),
                        is_admin: false,
                        created_at: now(),
                    },
                };
                account.homeserver = String::new();
                account.profile_synced = true;
                tx.put(USER, user, &account)?;
                record_migration(tx, user, &proof)?;
                for (origin, id) in origins.iter().zip(ids) {
                    outbox::enqueue(
                        tx,
                        id,
                        origin,
                        &Call::UpdateHomeserver(UpdateHomeserver {
                            id: None,
                            user_id: user,
                            new_homeserver: proof.new_homeserver.clone(),
                            migration_timestamp: proof.timestamp,
                            migration_signature: proof.signature.clone(),
                        }),
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// On an old home: applies `update_homeserver` (call `id`) from `from`, which must be
    /// the new home the user's proof names: this server stops acting as the user's home.
    pub async fn moved_away_from_here(
        &self,
        from: &str,
        id: u64,
        user: UserId,
        proof: MigrationProof,
    ) -> Result<MovedAway, MigrationRefused> {
        if proof.new_homeserver != from {
            return Ok(MovedAway::NotFromNewHome);
        }
        // No time window here: the call may have waited in the new home's outbox for days
        // while this server was down, and the new home checked the time at sign-in. Order
        // comes from the timestamps: an older proof than the last one applied is refused.
        check_signature(user, &proof)?;
        let from = from.to_string();
        self.store
            .write(move |tx| {
                if !super::inbox::first_delivery(tx, &from, id)? {
                    return Ok(MovedAway::Applied);
                }
                let Some(mut account) = tx.get(USER, user)? else {
                    return Ok(MovedAway::UnknownUser);
                };
                if proof.timestamp <= last_migration(tx, user)? {
                    return Ok(MovedAway::Stale);
                }
                // Stop acting as home: no more sign-ins or tokens here for this user.
                super::lifecycle::sign_out_all_devices(tx, user)?;
                if account.homeserver.is_empty() && !account.username.is_empty() {
                    tx.delete(USERNAME_USER, account.username.as_str())?;
                }
                account.homeserver = proof.new_homeserver.clone();
                account.password_hash = None;
                account.key_backup = None;
                // Administration is for this server's own users, not for one homed
                // elsewhere.
                account.is_admin = false;
                tx.put(USER, user, &account)?;
                record_migration(tx, user, &proof)?;
                Ok::<_, StoreError>(MovedAway::Applied)
            })
            .await
            .map_err(MigrationRefused::from)
    }
}
