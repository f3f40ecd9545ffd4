//! What a server knows about users homed elsewhere:
//!
//! - **Directory**: the remote users announced by `user_created` (and kept current by
//!   `profile_updated`), bounded per peer; lookups of users without a shadow account here
//!   and searches while their home is down use it. It binds no one to a home: a shadow
//!   account needs the user's own device certificate. An announcement that carries the
//!   user's device certificate naming the sender as home (as one made at sign-up does) is
//!   *proven*: it replaces another peer's unproven claim of the same id, which cannot
//!   displace it in turn.
//! - **Tracking**: which peers keep a shadow account of a local user (they asked
//!   VerifyUser), so they hear of its profile and device changes.
//! - **Search**: the local side of Refrain's proxied search (query check, ranking, local
//!   users and the directory's entries of a home).

use super::profiles::PublicUser;
use super::{invalid, Error, Services};
use crate::model::*;
use crate::storage::{tables::*, Rows, StoreError, Tx};
use crate::system::now;

/// Longest search query, characters.
pub const MAX_QUERY_CHARS: usize = 64;
/// Most results one server contributes to a search (and the default `limit` is lower).
pub const MAX_SEARCH_LIMIT: usize = 50;
/// Results per server when the client does not say.
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
/// Most users a local search looks at.
const SEARCH_SCAN_LIMIT: usize = 100_000;

/// Records that `peer` keeps a shadow of local user `user` (it asked VerifyUser).
pub async fn track_peer(services: &Services, user: UserId, peer: &str) -> Result<(), StoreError> {
    let t = now();
    let known = services.store.read(|tx| tx.get(USER_PEER, (user, peer)))?;
    // Rewritten at most once a day, so VerifyUser stays a read in steady state.
    if known.is_some_and(|at| at + 24 * 3600 > t) {
        return Ok(());
    }
    let peer = peer.to_string();
    services
        .store
        .write(move |tx| {
            // Only for users that still exist (a deletion may have just removed them).
            if tx.contains(USER, user)? {
                tx.put(USER_PEER, (user, peer.as_str()), &t)?;
            }
            Ok(())
        })
        .await
}

/// Writes a directory entry, unless the home already has `cap` entries and this one is
/// new, or a newer version is stored. Returns whether it was written.
pub fn record(tx: &Tx, entry: &RemoteUser, cap: usize) -> Result<bool, StoreError> {
    match tx.get(DIRECTORY, entry.id)? {
        Some(old) if old.home == entry.home && old.version > entry.version => return Ok(false),
        Some(old) if old.home != entry.home => {
            tx.delete(DIRECTORY_BY_HOME, (old.home.as_str(), entry.id))?;
        }
        Some(_) => {}
        None => {
            if tx.count(
                DIRECTORY_BY_HOME,
                Rows::prefix(entry.home.as_str()).limit(cap),
            )? >= cap
            {
                return Ok(false);
            }
        }
    }
    tx.put(DIRECTORY, entry.id, entry)?;
    tx.put(
        DIRECTORY_BY_HOME,
        (entry.home.as_str(), entry.id),
        &crate::storage::tables::Present,
    )?;
    Ok(true)
}

/// Forgets a directory entry.
pub fn forget(tx: &Tx, user: UserId) -> Result<(), StoreError> {
    if let Some(old) = tx.get(DIRECTORY, user)? {
        tx.delete(DIRECTORY_BY_HOME, (old.home.as_str(), user))?;
        tx.delete(DIRECTORY, user)?;
    }
    tx.delete(DIRECTORY_PROVEN, user)?;
    Ok(())
}

/// Whether the directory entry of `user` naming `home` was proven by the user's own
/// device certificate.
pub fn proven_home(tx: &Tx, user: UserId, home: &str) -> Result<bool, StoreError> {
    Ok(tx.get(DIRECTORY_PROVEN, user)?.as_deref() == Some(home))
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
pub fn lookup(services: &Services, user: UserId) -> Result<Option<PublicUser>, StoreError> {
    services.store.read(|tx| {
        if let Some(u) = tx.get(USER, user)? {
            return Ok(Some(PublicUser::of(&u, &services.origin)));
        }
        Ok(tx.get(DIRECTORY, user)?.as_ref().map(public_of_entry))
    })
}

/// Checks a search query: trimmed, 1 to [`MAX_QUERY_CHARS`] characters, no control
/// characters. Returns it lowercased.
pub fn check_query(q: &str) -> Result<String, Error> {
    let q = q.trim();
    if q.is_empty() || q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_query",
            format!("q must be 1 to {MAX_QUERY_CHARS} characters"),
        ));
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
        .rows(USER, Rows::all().limit(SEARCH_SCAN_LIMIT))?
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
pub fn search_directory(
    tx: &Tx,
    home: &str,
    q: &str,
    limit: usize,
) -> Result<Vec<PublicUser>, StoreError> {
    let mut found = Vec::new();
    for ((_, id), _) in tx.rows(DIRECTORY_BY_HOME, Rows::prefix(home))? {
        let Some(entry) = tx.get(DIRECTORY, id)? else {
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
