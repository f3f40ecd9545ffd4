//! Refreshing shadow accounts' profiles (mzchat Synced profiles): a synced shadow account
//! whose profile is older than `federation.profile_refresh_secs` is refreshed with
//! VerifyUser when it is looked up, at most one call pending per user; the cached profile
//! is served meanwhile. A shadow whose user shows another home is verified soon, so the
//! known home may answer that they moved.

use super::outbox::queue_verify;
use super::Services;
use crate::model::*;
use crate::storage::{tables::*, StoreError, Tx};
use crate::system::now;

/// Least time between two VerifyUser calls [`Services::verify_soon`] queues for one user,
/// seconds.
const VERIFY_SOON_SECS: u64 = 30;

/// Whether a VerifyUser for the shadow is still waiting in the outbox.
fn refresh_pending(tx: &Tx, state: &ShadowSync) -> Result<bool, StoreError> {
    match state.pending_call {
        Some(id) => tx.contains(OUTBOX, Id(id)),
        None => Ok(false),
    }
}

/// Of `users`, the synced shadows whose profile is older than `max_age` seconds (or was
/// never confirmed) and that have no refresh pending, with their homes.
fn stale(
    tx: &Tx,
    users: &[UserId],
    max_age: u64,
    t: u64,
) -> Result<Vec<(UserId, String)>, StoreError> {
    let mut out: Vec<(UserId, String)> = Vec::new();
    for user in users {
        if out.iter().any(|(u, _)| u == user) {
            continue;
        }
        let Some(shadow) = tx.get(USER, *user)? else {
            continue;
        };
        if shadow.homeserver.is_empty() || !shadow.profile_synced {
            continue;
        }
        let state = tx.get(SHADOW_SYNC, *user)?.unwrap_or_default();
        let fresh = state.home == shadow.homeserver && state.synced_at + max_age > t;
        if fresh || refresh_pending(tx, &state)? {
            continue;
        }
        out.push((*user, shadow.homeserver));
    }
    Ok(out)
}

/// The home to ask about shadow `user` for [`Services::verify_soon`], if a call is due.
fn verify_due(tx: &Tx, user: UserId, t: u64) -> Result<Option<String>, StoreError> {
    let Some(shadow) = tx.get(USER, user)? else {
        return Ok(None);
    };
    if shadow.homeserver.is_empty() {
        return Ok(None);
    }
    let state = tx.get(SHADOW_SYNC, user)?.unwrap_or_default();
    let recent = state.home == shadow.homeserver && state.synced_at + VERIFY_SOON_SECS > t;
    if recent || refresh_pending(tx, &state)? {
        return Ok(None);
    }
    Ok(Some(shadow.homeserver))
}

impl Services {
    /// Queues VerifyUser for each of `users` that is a synced shadow with a profile older
    /// than `federation.profile_refresh_secs` and no refresh pending. Looking a user up
    /// calls this and serves the cached profile meanwhile, so lookups work while the home
    /// is down.
    pub async fn refresh_stale(&self, users: &[UserId]) -> Result<usize, StoreError> {
        if users.is_empty() {
            return Ok(0);
        }
        let max_age = self.config.federation.profile_refresh_secs;
        let t = now();
        let candidates = self.store.read(|tx| stale(tx, users, max_age, t))?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Id> = candidates.iter().map(|_| self.next_id()).collect();
        self.store
            .write(move |tx| {
                let users: Vec<UserId> = candidates.iter().map(|(u, _)| *u).collect();
                // Checked again in the commit: another lookup may have queued one meanwhile.
                let still = stale(tx, &users, max_age, t)?;
                for ((user, home), id) in still.iter().zip(ids) {
                    queue_verify(tx, *user, home, id)?;
                }
                Ok::<_, StoreError>(still.len())
            })
            .await
    }

    /// [`Services::refresh_stale`] for a lookup: failures are logged, never shown to the
    /// user, who gets the cached profile either way.
    pub async fn refresh_on_lookup(&self, users: &[UserId]) {
        if let Err(e) = self.refresh_stale(users).await {
            log::error!("cannot queue a profile refresh: {e}");
        }
    }

    /// Queues VerifyUser for the shadow account `user` to the home it knows, unless one is
    /// pending or the home confirmed the user in the last `VERIFY_SOON_SECS`: when a
    /// client shows another home for the user, the known home may answer that they moved.
    pub async fn verify_soon(&self, user: UserId) -> Result<(), StoreError> {
        if self.store.read(|tx| verify_due(tx, user, now()))?.is_none() {
            return Ok(());
        }
        let id = self.next_id();
        self.store
            .write(move |tx| {
                let Some(home) = verify_due(tx, user, now())? else {
                    return Ok::<_, StoreError>(());
                };
                queue_verify(tx, user, &home, id)
            })
            .await
    }
}
