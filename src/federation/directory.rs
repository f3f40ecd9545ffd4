//! How a server keeps what it knows about users homed elsewhere fresh, and searches
//! them across peers (the records themselves are `service::remote_users`):
//!
//! - **Refresh** (mzchat Synced profiles): a synced shadow account whose profile is older
//!   than `federation.profile_refresh_secs` is refreshed with VerifyUser when it is looked
//!   up, at most one call pending per user; the cached profile is served meanwhile.
//! - **Search** (Refrain's proxied search): `search_users` asks every approved peer at
//!   once, with a short timeout, and merges their answers with local matches.

use super::calls::Answer;
use super::{outbound, FederationError};
use crate::federation::Federation;
use crate::model::*;
use crate::service::accounts::PublicUser;
use crate::service::outbox::queue_verify;
use crate::service::remote_users::{
    check_query, public_of_entry, search_directory, search_local, DEFAULT_SEARCH_LIMIT,
    MAX_SEARCH_LIMIT,
};
use crate::storage::{tables::*, Rows, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Most results of one merged search.
pub const MAX_MERGED_RESULTS: usize = 100;

// ---- refresh of synced shadow accounts ----

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

/// Queues VerifyUser for each of `users` that is a synced shadow with a profile older
/// than `federation.profile_refresh_secs` and no refresh pending. Looking a user up calls
/// this and serves the cached profile meanwhile, so lookups work while the home is down.
pub async fn refresh_stale(fed: &Federation, users: &[UserId]) -> Result<usize, FederationError> {
    if users.is_empty() {
        return Ok(0);
    }
    let max_age = fed.services.config.federation.profile_refresh_secs;
    let t = now();
    let candidates = fed.services.store.read(|tx| stale(tx, users, max_age, t))?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Id> = candidates.iter().map(|_| fed.services.next_id()).collect();
    let queued = fed
        .services
        .store
        .write(move |tx| {
            let users: Vec<UserId> = candidates.iter().map(|(u, _)| *u).collect();
            // Checked again in the commit: another lookup may have queued one meanwhile.
            let still = stale(tx, &users, max_age, t)?;
            for ((user, home), id) in still.iter().zip(ids) {
                queue_verify(tx, *user, home, id)?;
            }
            Ok::<_, StoreError>(still.len())
        })
        .await?;
    Ok(queued)
}

/// Least time between two VerifyUser calls [`verify_soon`] queues for one user, seconds.
const VERIFY_SOON_SECS: u64 = 30;

/// Queues VerifyUser for the shadow account `user` to the home it knows, unless one is
/// pending or the home confirmed the user in the last `VERIFY_SOON_SECS`: when a client
/// shows another home for the user, the known home may answer that they moved.
pub async fn verify_soon(fed: &Federation, user: UserId) -> Result<(), FederationError> {
    if fed
        .services
        .store
        .read(|tx| verify_due(tx, user, now()))?
        .is_none()
    {
        return Ok(());
    }
    let id = fed.services.next_id();
    fed.services
        .store
        .write(move |tx| {
            let Some(home) = verify_due(tx, user, now())? else {
                return Ok::<_, StoreError>(());
            };
            queue_verify(tx, user, &home, id)
        })
        .await?;
    Ok(())
}

/// The home to ask about shadow `user` for [`verify_soon`], if a call is due.
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

/// [`refresh_stale`] for a lookup: failures are logged, never shown to the user, who
/// gets the cached profile either way.
pub async fn refresh_on_lookup(fed: &Federation, users: &[UserId]) {
    if let Err(e) = refresh_stale(fed, users).await {
        log::error!("cannot queue a profile refresh: {e}");
    }
}

// ---- search ----

/// Sends one signed call now and waits at most `timeout` for the answer (for calls
/// answered synchronously, which are not worth a durable retry).
pub async fn call_now(
    fed: &Federation,
    target: &str,
    call: &str,
    mut body: Value,
    timeout: Duration,
) -> Result<outbound::Answer, FederationError> {
    use futures_lite::FutureExt;
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "id".into(),
            Value::from(fed.services.next_id().0.to_string()),
        );
    }
    let path = format!("/federation/v1/{call}");
    let bytes = body.to_string().into_bytes();
    let send = super::send_signed(fed, target, &path, bytes, timeout);
    send.or(async {
        smol::Timer::after(timeout).await;
        Err(FederationError::Peer(format!(
            "{target} did not answer in time"
        )))
    })
    .await
}

/// What a peer answered to `search_users`: its own users only, cleaned and bounded.
fn read_peer_results(peer: &str, body: &[u8], limit: usize) -> Option<Vec<PublicUser>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let users = value["users"].as_array()?;
    Some(
        users
            .iter()
            .filter(|u| u["homeserver"].as_str() == Some(peer))
            .filter_map(|u| {
                let id = u["id"].as_str().and_then(UserId::parse)?;
                let (username, profile) = super::calls::users::profile_from_json(u);
                Some(public_of_entry(&RemoteUser {
                    id,
                    home: peer.to_string(),
                    username,
                    profile,
                    version: 0,
                    updated_at: 0,
                }))
            })
            .take(limit)
            .collect(),
    )
}

/// Searches local users and every approved peer's (in parallel, each within
/// `federation.search_timeout_ms`), and merges: local first, then each peer's in the
/// order of their pinning; each user once. A peer that does not answer is listed under
/// `unreachable`, and its users this server knows from the directory are shown instead
/// (marked `"cached": true`).
pub async fn search(
    fed: &Arc<Federation>,
    q: &str,
    limit: usize,
) -> Result<Value, FederationError> {
    let q = check_query(q).map_err(|e| FederationError::Invalid(e.to_string()))?;
    let limit = limit.clamp(1, MAX_SEARCH_LIMIT);
    let origin = fed.services.origin.clone();
    let (local, peers) = fed.services.store.read(|tx| {
        let local = search_local(tx, &q, limit, &origin)?;
        let peers: Vec<String> = tx
            .rows(PEER, Rows::all())?
            .into_iter()
            .filter(|(_, p)| p.approved)
            .map(|(_, p)| p.origin)
            .collect();
        Ok::<_, StoreError>((local, peers))
    })?;
    let timeout = Duration::from_millis(fed.services.config.federation.search_timeout_ms);
    let tasks: Vec<_> = peers
        .iter()
        .map(|peer| {
            let fed = fed.clone();
            let peer = peer.clone();
            let q = q.clone();
            fed.executor.clone().spawn(async move {
                let answer = call_now(
                    &fed,
                    &peer,
                    "search_users",
                    json!({ "q": q, "limit": limit }),
                    timeout,
                )
                .await;
                match answer {
                    Ok(a) if a.status == 200 => read_peer_results(&peer, &a.body, limit),
                    _ => None,
                }
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut users: Vec<Value> = Vec::new();
    let mut add = |user: PublicUser, cached: bool, users: &mut Vec<Value>| {
        if users.len() < MAX_MERGED_RESULTS && seen.insert(user.id) {
            let mut value = serde_json::to_value(&user).unwrap_or_default();
            if cached {
                value["cached"] = Value::Bool(true);
            }
            users.push(value);
        }
    };
    for user in local {
        add(user, false, &mut users);
    }
    let mut unreachable = Vec::new();
    for (peer, task) in peers.iter().zip(tasks) {
        match task.await {
            Some(found) => {
                for user in found {
                    add(user, false, &mut users);
                }
            }
            None => {
                unreachable.push(peer.clone());
                let cached = fed
                    .services
                    .store
                    .read(|tx| search_directory(tx, peer, &q, limit))?;
                for user in cached {
                    add(user, true, &mut users);
                }
            }
        }
    }
    Ok(json!({ "users": users, "unreachable": unreachable }))
}

/// `search_users` `{id, q, limit?}`: a peer searches this server's own users.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchUsers {
    /// The call id (searches change nothing, so it is not deduplicated).
    #[serde(default, rename = "id")]
    _id: Option<String>,
    /// What to look for.
    q: String,
    /// Most results wanted.
    #[serde(default)]
    limit: Option<u64>,
}

/// Answers `search_users`: this server's own users matching `q`.
pub fn search_users(fed: &Federation, body: &Value) -> Result<Answer, FederationError> {
    let call: SearchUsers = super::calls::parse(body)?;
    let q = check_query(&call.q).map_err(|e| FederationError::Invalid(e.to_string()))?;
    let limit = call
        .limit
        .map(|l| l.min(MAX_SEARCH_LIMIT as u64) as usize)
        .unwrap_or(DEFAULT_SEARCH_LIMIT)
        .clamp(1, MAX_SEARCH_LIMIT);
    let origin = fed.services.origin.clone();
    let users = fed
        .services
        .store
        .read(|tx| search_local(tx, &q, limit, &origin))?;
    Ok(Answer::Done(json!({ "users": users })))
}
