//! Migration to a new home server, mzchat's flow exactly. The user signs in on the new
//! home B with a device certificate and a Migration Proof: `migration_signature` is K_id's
//! Ed25519 signature over the bytes `new_homeserver|migration_timestamp`. B checks it,
//! becomes the user's home, and sends `update_homeserver` to the old servers the client
//! lists; each checks the same signature and that the call comes from the new home, then
//! stops acting as home for the user. The user id never changes. A proof older than the
//! last migration applied for the user is refused, so an old proof cannot move them back.

use super::Answer;
use crate::auth::migration::{check_proof, check_signature, MigrationProof};
use crate::federation::Federation;
use crate::federation::FederationError;
use crate::model::*;
use crate::service::outbox::{self, Call, UpdateHomeserver};
use crate::storage::{tables::*, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};

/// The call an old home gets from the new one.
pub const CALL: &str = Call::UPDATE_HOMESERVER;
/// Most old servers one migration may notify.
pub const MAX_TARGETS: usize = 16;

fn last_migration(tx: &Tx, user: UserId) -> Result<u64, StoreError> {
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
/// with the user's Migration Proof in `moved` (`{new_homeserver, migration_timestamp,
/// migration_signature}`). Applies only a proof signed by the user, naming a new home,
/// newer than the last migration applied here. The shadow keeps its memberships; its
/// profile is refreshed from the new home at the next lookup. Returns whether it moved.
pub fn follow_move(
    tx: &Tx,
    shadow: &mut User,
    from: &str,
    moved: &Value,
) -> Result<bool, StoreError> {
    let proof = MigrationProof {
        new_homeserver: moved["new_homeserver"].as_str().unwrap_or("").to_string(),
        timestamp: moved["migration_timestamp"].as_u64().unwrap_or(0),
        signature: moved["migration_signature"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    };
    let Ok(new_home) = crate::federation::normalize_origin(&proof.new_homeserver) else {
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
    super::users::emit_user_update(tx, shadow)?;
    Ok(true)
}

/// On the new home: applies a migration at sign-in and queues `update_homeserver` to the
/// listed old servers (which must be peers). Creates the account if this server has never
/// seen the user.
pub async fn migrate_here(
    fed: &Federation,
    user: UserId,
    proof: MigrationProof,
    targets: Vec<String>,
) -> Result<(), FederationError> {
    if proof.new_homeserver != fed.services.origin {
        return Err(FederationError::Invalid(format!(
            "the migration proof names {} as the new home, not this server ({})",
            proof.new_homeserver, fed.services.origin
        )));
    }
    let window = fed.services.config.federation.migration.proof_window_secs;
    check_proof(user, &proof, now(), window)?;
    if targets.len() > MAX_TARGETS {
        return Err(FederationError::Invalid(format!(
            "at most {MAX_TARGETS} migration targets"
        )));
    }
    let mut origins = Vec::new();
    for target in &targets {
        let origin = crate::federation::normalize_origin(target)?;
        crate::federation::peer_key(fed, &origin).await?;
        if origin != fed.services.origin && !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    let ids: Vec<Id> = origins.iter().map(|_| fed.services.next_id()).collect();
    fed.services
        .store
        .write(move |tx| {
            if proof.timestamp <= last_migration(tx, user)? {
                return Err(FederationError::Invalid(
                    "a newer migration of this user is already applied".into(),
                ));
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
                    push_distributors: Vec::new(),
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
            Ok::<_, FederationError>(())
        })
        .await?;
    Ok(())
}

/// On an old server: `update_homeserver` from the new home.
pub async fn update_homeserver(
    fed: &Federation,
    from: &str,
    body: &Value,
) -> Result<Answer, FederationError> {
    let call: UpdateHomeserver = super::parse(body)?;
    let id = super::typed_call_id(call.id.as_deref())?;
    let user = call.user_id;
    let proof = MigrationProof {
        new_homeserver: call.new_homeserver,
        timestamp: call.migration_timestamp,
        signature: call.migration_signature,
    };
    if proof.new_homeserver != from {
        return Ok(Answer::Forbidden(
            json!({ "error": "forbidden", "message": "only the new home server announces a migration" }),
        ));
    }
    // No time window here: the call may have waited in the new home's outbox for days
    // while this server was down, and the new home checked the time at sign-in. Order
    // comes from the timestamps: an older proof than the last one applied is refused.
    check_signature(user, &proof)?;
    let from = from.to_string();
    fed.services
        .store
        .write(move |tx| {
            if !super::first_delivery(tx, &from, id)? {
                return Ok(Answer::Done(json!({ "applied": true })));
            }
            let Some(mut account) = tx.get(USER, user)? else {
                return Ok(Answer::NotFound(json!({ "error": "unknown_user", "message": "no such user here" })));
            };
            if proof.timestamp <= last_migration(tx, user)? {
                return Ok(Answer::Conflict(json!({ "error": "stale_migration", "message": "a newer migration is already applied" })));
            }
            // Stop acting as home: no more sign-ins or tokens here for this user.
            crate::service::lifecycle::sign_out_all_devices(tx, user)?;
            if account.homeserver.is_empty() && !account.username.is_empty() {
                tx.delete(USERNAME_USER, account.username.as_str())?;
            }
            account.homeserver = proof.new_homeserver.clone();
            account.password_hash = None;
            account.key_backup = None;
            // Administration is for this server's own users, not for one homed elsewhere.
            account.is_admin = false;
            tx.put(USER, user, &account)?;
            record_migration(tx, user, &proof)?;
            Ok::<_, FederationError>(Answer::Done(json!({ "applied": true })))
        })
        .await
}
