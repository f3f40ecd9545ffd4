//! Peering with a server heard on the LAN: the listing administrators read (what
//! discovery heard, judged against the pinned peers), and pinning a discovered server's
//! key once its fingerprint is confirmed.

use crate::auth::jose::b64u;
use crate::federation::{normalize_origin, Federation, FederationError};
use crate::lan::announce::same_fingerprint;
use crate::lan::heard::{assess, view, Assessed, Discovered, Own};
use crate::model::{federation::fingerprint, Peer};
use crate::system::now;
use serde_json::{json, Value};

fn own(fed: &Federation) -> Own<'_> {
    Own {
        origin: &fed.services.origin,
        name: &fed.services.config.name,
        key: fed.services.server_key.public_bytes(),
    }
}

/// What `GET /api/v1/admin/discovered` and `hearth peer discovered` show: whether
/// discovery runs, this server's own announcement (with `tls_fingerprint`, its TLS
/// certificate's when it serves HTTPS), and every server `heard`.
pub fn listing(
    fed: &Federation,
    heard: &Discovered,
    tls_fingerprint: Option<&str>,
) -> Result<Value, FederationError> {
    let peers = crate::federation::list_peers(fed)?;
    let entries = heard.entries(now());
    let status = heard.status();
    let me = own(fed);
    let servers: Vec<Value> = assess(&entries, &peers, &me).iter().map(view).collect();
    Ok(json!({
        "enabled": fed.services.config.discovery.enabled,
        "running": status.running,
        "advertised_as": status.advertised_as,
        "note": status.note,
        "self": {
            "origin": me.origin,
            "name": me.name,
            "server_key": b64u(&me.key),
            "fingerprint": fingerprint(&me.key),
            "tls_fingerprint": tls_fingerprint,
        },
        "servers": servers,
    }))
}
/// Why a discovered server could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Nothing was heard from that origin.
    #[error("{0} has not been discovered on the LAN (see `hearth peer discovered`)")]
    NotFound(String),
    /// Its announcement is a conflict.
    #[error("{origin} cannot be added from its announcement: {reasons}; ask its administrator for its key fingerprint and use `hearth peer add URL --fingerprint FP`")]
    Conflict {
        /// Origin.
        origin: String,
        /// Why.
        reasons: String,
    },
    /// The fingerprint did not match, the origin is invalid, or storage failed.
    #[error(transparent)]
    Federation(#[from] FederationError),
}

/// Pins the key a discovered server announced, once the administrator confirmed its
/// fingerprint (`expected_fingerprint`, as its own administrator reads it out). Refuses an
/// origin heard with more than one key or otherwise in conflict. With HTTPS, the TLS
/// certificate fingerprint it announced is pinned too unless one is pinned already.
/// Returns the peer and the TLS fingerprint pinned for it, if any.
pub async fn add_discovered_peer(
    fed: &Federation,
    heard: &Discovered,
    origin: &str,
    expected_fingerprint: &str,
) -> Result<(Peer, Option<String>), AddError> {
    let origin = normalize_origin(origin)?;
    if origin == fed.services.origin {
        return Err(FederationError::Invalid("a server cannot peer with itself".into()).into());
    }
    let peers = crate::federation::list_peers(fed)?;
    let entries = heard.entries(now());
    let assessed = assess(&entries, &peers, &own(fed));
    let heard: Vec<&Assessed> = assessed
        .iter()
        .filter(|a| a.found.origin == origin)
        .collect();
    let entry = match heard.as_slice() {
        [] => return Err(AddError::NotFound(origin)),
        [one] => *one,
        _ => {
            return Err(AddError::Conflict {
                reasons: format!(
                    "it is announced {} different ways (keys, TLS certificates or hosts)",
                    heard.len()
                ),
                origin,
            })
        }
    };
    if entry.conflict() {
        return Err(AddError::Conflict {
            origin,
            reasons: entry.conflicts.join("; "),
        });
    }
    let found = fingerprint(&entry.found.key);
    if !same_fingerprint(expected_fingerprint, &found) {
        return Err(FederationError::FingerprintMismatch {
            origin,
            found,
            expected: expected_fingerprint.to_string(),
        }
        .into());
    }
    let peer = Peer {
        origin: origin.clone(),
        name: entry.found.name.clone(),
        server_key: entry.found.key,
        added_at: now(),
        approved: true,
    };
    let stored = peer.clone();
    fed.services
        .store
        .write(move |tx| {
            tx.put(
                crate::storage::tables::PEER,
                stored.origin.as_str(),
                &stored,
            )?;
            Ok::<_, crate::storage::StoreError>(())
        })
        .await
        .map_err(FederationError::from)?;
    let mut tls_pin = fed.tls_pins.get(&origin);
    if let (None, Some(announced)) = (&tls_pin, &entry.found.tls_fingerprint) {
        if origin.starts_with("https://") {
            fed.tls_pins.set(&origin, announced);
            tls_pin = Some(announced.clone());
        }
    }
    Ok((peer, tls_pin))
}
