//! What a server knows about users homed elsewhere, and how it keeps it fresh:
//!
//! - **Broadcasts** (Refrain): a home queues `user_created` and `user_deleted` to every
//!   peer, and `profile_updated` to the peers that keep a shadow account of the user (those
//!   that asked VerifyUser for them), each in the commit of the change.
//! - **Directory**: the remote users announced by `user_created` (and kept current by
//!   `profile_updated`), bounded per peer; lookups of users without a shadow account here
//!   and searches while their home is down use it. It binds no one to a home: a shadow
//!   account needs the user's own device certificate (`calls::users::ensure_shadow`). An
//!   announcement that carries the user's device certificate naming the sender as home
//!   (as one made at sign-up does) is *proven*: it replaces another peer's unproven claim
//!   of the same id, which cannot displace it in turn.
//! - **Refresh** (mzchat Synced profiles): a synced shadow account whose profile is older
//!   than `federation.profile_refresh_secs` is refreshed with VerifyUser when it is looked
//!   up, at most one call pending per user; the cached profile is served meanwhile.
//! - **Search** (Refrain's proxied search): `search_users` asks every approved peer at
//!   once, with a short timeout, and merges their answers with local matches.

use super::{outbound, FederationError};
use crate::app::App;
use crate::model::*;
use crate::service::accounts::PublicUser;
use crate::service::outbox::queue_verify;
use crate::storage::{keys, tables::*, StoreError, Tx};
use crate::system::now;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Longest search query, characters.
pub const MAX_QUERY_CHARS: usize = 64;
/// Most results one server contributes to a search (and the default `limit` is lower).
pub const MAX_SEARCH_LIMIT: usize = 50;
/// Results per server when the client does not say.
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
/// Most results of one merged search.
pub const MAX_MERGED_RESULTS: usize = 100;
/// Most users a local search looks at.
const SEARCH_SCAN_LIMIT: usize = 100_000;

/// Records that `peer` keeps a shadow of local user `user` (it asked VerifyUser).
pub async fn track_peer(app: &App, user: UserId, peer: &str) -> Result<(), StoreError> {
    let key = keys::join(&[&user.0, peer.as_bytes()]);
    let t = now();
    let known = app.services.store.read(|tx| tx.get(USER_PEER, &key))?;
    // Rewritten at most once a day, so VerifyUser stays a read in steady state.
    if known.is_some_and(|at| at + 24 * 3600 > t) {
        return Ok(());
    }
    app.services
        .store
        .write(move |tx| {
            // Only for users that still exist (a deletion may have just removed them).
            if tx.contains(USER, &user.0)? {
                tx.put(USER_PEER, &key, &t)?;
            }
            Ok(())
        })
        .await
}

// ---- the directory ----

fn by_home_key(home: &str, user: UserId) -> Vec<u8> {
    keys::join(&[home.as_bytes(), &[0], &user.0])
}

/// Writes a directory entry, unless the home already has `cap` entries and this one is
/// new, or a newer version is stored. Returns whether it was written.
pub fn record(tx: &Tx, entry: &RemoteUser, cap: usize) -> Result<bool, StoreError> {
    match tx.get(DIRECTORY, &entry.id.0)? {
        Some(old) if old.home == entry.home && old.version > entry.version => return Ok(false),
        Some(old) if old.home != entry.home => {
            tx.delete(DIRECTORY_BY_HOME, &by_home_key(&old.home, entry.id))?;
        }
        Some(_) => {}
        None => {
            let prefix = keys::join(&[entry.home.as_bytes(), &[0]]);
            if tx.count_prefix(DIRECTORY_BY_HOME, &prefix, cap)? >= cap {
                return Ok(false);
            }
        }
    }
    tx.put(DIRECTORY, &entry.id.0, entry)?;
    tx.put(
        DIRECTORY_BY_HOME,
        &by_home_key(&entry.home, entry.id),
        &crate::storage::tables::Present,
    )?;
    Ok(true)
}

/// Forgets a directory entry.
pub fn forget(tx: &Tx, user: UserId) -> Result<(), StoreError> {
    if let Some(old) = tx.get(DIRECTORY, &user.0)? {
        tx.delete(DIRECTORY_BY_HOME, &by_home_key(&old.home, user))?;
        tx.delete(DIRECTORY, &user.0)?;
    }
    tx.delete(DIRECTORY_PROVEN, &user.0)?;
    Ok(())
}

/// Whether the directory entry of `user` naming `home` was proven by the user's own
/// device certificate.
pub fn proven_home(tx: &Tx, user: UserId, home: &str) -> Result<bool, StoreError> {
    Ok(tx.get(DIRECTORY_PROVEN, &user.0)?.as_deref() == Some(home))
}

/// The public view of a directory entry.
pub fn public_of_entry(entry: &RemoteUser) -> PublicUser {
    PublicUser {
        id: entry.id,
        name: entry.profile.name.clone(),
        username: entry.username.clone(),
        homeserver: entry.home.clone(),
        avatar_url: entry.profile.avatar_url.clone(),
        avatar_color: entry.profile.avatar_color.clone(),
        bio: entry.profile.bio.clone(),
        presence: entry.profile.presence,
    }
}

/// A user as others see them: the account here (local or shadow), else what the
/// directory holds.
pub fn lookup(app: &App, user: UserId) -> Result<Option<PublicUser>, StoreError> {
    app.services.store.read(|tx| {
        if let Some(u) = tx.get(USER, &user.0)? {
            return Ok(Some(PublicUser::of(&u, &app.services.origin)));
        }
        Ok(tx.get(DIRECTORY, &user.0)?.as_ref().map(public_of_entry))
    })
}

// ---- refresh of synced shadow accounts ----

/// Whether a VerifyUser for the shadow is still waiting in the outbox.
fn refresh_pending(tx: &Tx, state: &ShadowSync) -> Result<bool, StoreError> {
    match state.pending_call {
        Some(id) => tx.contains(OUTBOX, &Id(id).to_be()),
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
        let Some(shadow) = tx.get(USER, &user.0)? else {
            continue;
        };
        if shadow.homeserver.is_empty() || !shadow.profile_synced {
            continue;
        }
        let state = tx.get(SHADOW_SYNC, &user.0)?.unwrap_or_default();
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
pub async fn refresh_stale(app: &App, users: &[UserId]) -> Result<usize, FederationError> {
    if users.is_empty() {
        return Ok(0);
    }
    let max_age = app.services.config.federation.profile_refresh_secs;
    let t = now();
    let candidates = app.services.store.read(|tx| stale(tx, users, max_age, t))?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Id> = candidates.iter().map(|_| app.services.next_id()).collect();
    let queued = app
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
/// pending or the home confirmed the user in the last [`VERIFY_SOON_SECS`]: when a client
/// shows another home for the user, the known home may answer that they moved.
pub async fn verify_soon(app: &App, user: UserId) -> Result<(), FederationError> {
    if app
        .services
        .store
        .read(|tx| verify_due(tx, user, now()))?
        .is_none()
    {
        return Ok(());
    }
    let id = app.services.next_id();
    app.services
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
    let Some(shadow) = tx.get(USER, &user.0)? else {
        return Ok(None);
    };
    if shadow.homeserver.is_empty() {
        return Ok(None);
    }
    let state = tx.get(SHADOW_SYNC, &user.0)?.unwrap_or_default();
    let recent = state.home == shadow.homeserver && state.synced_at + VERIFY_SOON_SECS > t;
    if recent || refresh_pending(tx, &state)? {
        return Ok(None);
    }
    Ok(Some(shadow.homeserver))
}

/// [`refresh_stale`] for a lookup: failures are logged, never shown to the user, who
/// gets the cached profile either way.
pub async fn refresh_on_lookup(app: &App, users: &[UserId]) {
    if let Err(e) = refresh_stale(app, users).await {
        eprintln!("hearth: cannot queue a profile refresh: {e}");
    }
}

// ---- search ----

/// Checks a search query: trimmed, 1 to [`MAX_QUERY_CHARS`] characters, no control
/// characters. Returns it lowercased.
pub fn check_query(q: &str) -> Result<String, FederationError> {
    let q = q.trim();
    if q.is_empty() || q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control) {
        return Err(FederationError::Invalid(format!(
            "q must be 1 to {MAX_QUERY_CHARS} characters"
        )));
    }
    Ok(q.to_lowercase())
}

/// How well a user matches `q` (lowercase): 0 best; `None` no match.
fn rank(q: &str, id: UserId, username: &str, name: &str) -> Option<u8> {
    let name = name.to_lowercase();
    if username == q || id.to_text() == q {
        Some(0)
    } else if username.starts_with(q) {
        Some(1)
    } else if name.starts_with(q) {
        Some(2)
    } else if username.contains(q) || name.contains(q) {
        Some(3)
    } else {
        None
    }
}

/// Local users (homed here) matching `q`, best first, at most `limit`.
pub fn search_local(
    tx: &Tx,
    q: &str,
    limit: usize,
    origin: &str,
) -> Result<Vec<PublicUser>, StoreError> {
    let mut found: Vec<(u8, User)> = tx
        .range(USER, &[], None, false, SEARCH_SCAN_LIMIT)?
        .into_iter()
        .filter(|(_, u)| u.homeserver.is_empty())
        .filter_map(|(_, u)| rank(q, u.id, &u.username, &u.profile.name).map(|r| (r, u)))
        .collect();
    found.sort_by(|(ra, a), (rb, b)| (ra, &a.username).cmp(&(rb, &b.username)));
    Ok(found
        .into_iter()
        .take(limit)
        .map(|(_, u)| PublicUser::of(&u, origin))
        .collect())
}

/// Directory entries of `home` matching `q`, best first, at most `limit`.
fn search_directory(
    tx: &Tx,
    home: &str,
    q: &str,
    limit: usize,
) -> Result<Vec<PublicUser>, StoreError> {
    let prefix = keys::join(&[home.as_bytes(), &[0]]);
    let mut found = Vec::new();
    for (key, _) in tx.scan_prefix(DIRECTORY_BY_HOME, &prefix, usize::MAX)? {
        let Ok(id) = <[u8; 32]>::try_from(&key[prefix.len()..]) else {
            continue;
        };
        let Some(entry) = tx.get(DIRECTORY, &id)? else {
            continue;
        };
        if let Some(r) = rank(q, entry.id, &entry.username, &entry.profile.name) {
            found.push((r, entry));
        }
    }
    found.sort_by(|(ra, a), (rb, b)| (ra, &a.username).cmp(&(rb, &b.username)));
    Ok(found
        .into_iter()
        .take(limit)
        .map(|(_, e)| public_of_entry(&e))
        .collect())
}

/// Sends one signed call now and waits at most `timeout` for the answer (for calls
/// answered synchronously, which are not worth a durable retry).
pub async fn call_now(
    app: &App,
    target: &str,
    call: &str,
    mut body: Value,
    timeout: Duration,
) -> Result<outbound::Answer, FederationError> {
    use futures_lite::FutureExt;
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "id".into(),
            Value::from(app.services.next_id().0.to_string()),
        );
    }
    let path = format!("/federation/v1/{call}");
    let bytes = body.to_string().into_bytes();
    let send = super::send_signed(app, target, &path, bytes, timeout);
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
pub async fn search(app: &Arc<App>, q: &str, limit: usize) -> Result<Value, FederationError> {
    let q = check_query(q)?;
    let limit = limit.clamp(1, MAX_SEARCH_LIMIT);
    let origin = app.services.origin.clone();
    let (local, peers) = app.services.store.read(|tx| {
        let local = search_local(tx, &q, limit, &origin)?;
        let peers: Vec<String> = tx
            .range(PEER, &[], None, false, usize::MAX)?
            .into_iter()
            .filter(|(_, p)| p.approved)
            .map(|(_, p)| p.origin)
            .collect();
        Ok::<_, StoreError>((local, peers))
    })?;
    let timeout = Duration::from_millis(app.services.config.federation.search_timeout_ms);
    let tasks: Vec<_> = peers
        .iter()
        .map(|peer| {
            let app = app.clone();
            let peer = peer.clone();
            let q = q.clone();
            app.executor.clone().spawn(async move {
                let answer = call_now(
                    &app,
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
                let cached = app
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

/// Answers `search_users` `{id, q, limit?}`: this server's own users matching `q`.
pub fn search_users(app: &App, body: &Value) -> Result<(u16, Value), FederationError> {
    let q = check_query(body["q"].as_str().unwrap_or(""))?;
    let limit = body["limit"]
        .as_u64()
        .map(|l| l as usize)
        .unwrap_or(DEFAULT_SEARCH_LIMIT)
        .clamp(1, MAX_SEARCH_LIMIT);
    let origin = app.services.origin.clone();
    let users = app
        .services
        .store
        .read(|tx| search_local(tx, &q, limit, &origin))?;
    Ok((200, json!({ "users": users })))
}
