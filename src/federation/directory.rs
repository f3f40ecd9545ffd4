//! Searching users across peers (Refrain's proxied search): `search_users` asks every
//! approved peer at once, with a short timeout, and merges their answers with local
//! matches. The records searched are `service::remote_users`; keeping shadows' profiles
//! fresh is `service::shadows`.

use super::{outbound, FederationError};
use crate::federation::Federation;
use crate::model::*;
use crate::service::profiles::ProfileDocument;
use crate::service::profiles::PublicUser;
use crate::service::remote_users::{
    check_query, public_of_entry, search_directory, search_local, MAX_SEARCH_LIMIT,
};
use crate::storage::{tables::*, Rows, StoreError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Most results of one merged search.
pub const MAX_MERGED_RESULTS: usize = 100;

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

/// A peer's answer to `search_users`: `{users: [profile]}`.
#[derive(serde::Deserialize)]
struct PeerResults {
    /// The users found, each read as a profile document.
    users: Vec<Value>,
}

/// What a peer answered to `search_users`: its own users only, cleaned and bounded.
fn read_peer_results(peer: &str, body: &[u8], limit: usize) -> Option<Vec<PublicUser>> {
    let results: PeerResults = serde_json::from_slice(body).ok()?;
    Some(
        results
            .users
            .into_iter()
            .map(ProfileDocument::read)
            .filter(|u| u.homeserver == peer)
            .filter_map(|u| {
                let id = u.user_id()?;
                let (username, profile) = u.cleaned();
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
