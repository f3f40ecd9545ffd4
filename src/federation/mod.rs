//! Federation by direct participation: pinned peers, signed server-to-server calls sent
//! from a durable outbox with retry and back-off, and the inbound call endpoint. Servers
//! never proxy user traffic; these calls carry only what federation needs (VerifyUser,
//! and the other calls of the seeds as they land).

pub mod calls;
pub mod clock;
pub mod contact;
pub mod directory;
pub mod discovered;
pub mod outbound;
pub mod outbox;
pub mod signature;

use crate::auth::tokens::AccessTokenCache;
use crate::config::PeerPolicy;
use crate::model::{federation::fingerprint, Peer};
use crate::service::Services;
use crate::storage::{tables::PEER, Rows, StoreError};
use crate::system::now;
use serde_json::{json, Value};
use signature::{ReplayGuard, SignatureError, SignedCall};
use std::sync::Arc;

/// Federation errors.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The signature was refused.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The peer could not be reached or answered nonsense.
    #[error("{0}")]
    Peer(String),
    /// The outgoing request was refused by the SSRF guard or failed.
    #[error(transparent)]
    Outbound(#[from] outbound::OutboundError),
    /// The key the peer shows is not the one the administrator expected.
    #[error("{origin} shows key fingerprint {found}, not the expected {expected}")]
    FingerprintMismatch {
        /// Peer.
        origin: String,
        /// What it showed.
        found: String,
        /// What the administrator expected.
        expected: String,
    },
    /// A call body was invalid.
    #[error("invalid call: {0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A service rule refused.
    #[error(transparent)]
    Service(#[from] crate::service::Error),
}

/// Federation state of one server, and the handle federation code takes: the services
/// it calls, and what only the network side keeps.
pub struct Federation {
    /// Business rules and storage.
    pub services: Arc<Services>,
    /// Verified access tokens (a re-pinned peer's are forgotten).
    pub token_cache: Arc<AccessTokenCache>,
    /// Runs outbox deliveries and parallel searches.
    pub executor: Arc<smol::Executor<'static>>,
    /// Call ids seen recently.
    pub replay: ReplayGuard,
    /// TLS certificates of peers and push distributors, pinned at first contact and kept
    /// in `DATA_DIR/tls/pins`.
    pub tls_pins: crate::lan::tls::Pins,
    /// Peers' clocks, relative to ours.
    pub clocks: clock::PeerClocks,
    /// The last outcome of calls to each peer.
    pub contacts: contact::PeerContacts,
    wake_tx: async_channel::Sender<()>,
    wake_rx: async_channel::Receiver<()>,
}

impl Federation {
    /// New state for the services' configuration.
    pub fn new(
        services: Arc<Services>,
        token_cache: Arc<AccessTokenCache>,
        executor: Arc<smol::Executor<'static>>,
    ) -> Federation {
        let config = &services.config.federation;
        let data_dir = &services.config.data_dir;
        let (wake_tx, wake_rx) = async_channel::bounded(1);
        Federation {
            replay: ReplayGuard::new(config.replay_capacity),
            tls_pins: crate::lan::tls::Pins::in_file(data_dir.join("tls").join("pins")),
            clocks: clock::PeerClocks::new(),
            contacts: contact::PeerContacts::new(),
            wake_tx,
            wake_rx,
            services,
            token_cache,
            executor,
        }
    }

    /// Signals of new outbox work.
    pub fn wakeups(&self) -> &async_channel::Receiver<()> {
        &self.wake_rx
    }

    /// What tells the outbox worker there is new work (the store calls it after a commit
    /// that queued a call).
    pub fn waker(&self) -> Waker {
        Waker(self.wake_tx.clone())
    }
}

/// Tells the outbox worker there is new work.
#[derive(Clone)]
pub struct Waker(async_channel::Sender<()>);

impl Waker {
    /// Wakes the worker (a wake-up already pending is enough).
    pub fn wake(&self) {
        let _ = self.0.try_send(());
    }
}

/// A peer as shown to administrators.
pub fn peer_view(peer: &Peer) -> Value {
    json!({
        "origin": peer.origin,
        "name": peer.name,
        "server_key": crate::auth::jose::b64u(&peer.server_key),
        "fingerprint": fingerprint(&peer.server_key),
        "added_at": peer.added_at,
        "approved": peer.approved,
    })
}

/// Normalizes an origin (`scheme://host[:port]`, no path).
pub fn normalize_origin(text: &str) -> Result<String, FederationError> {
    crate::origins::normalize_origin(text).map_err(|e| FederationError::Invalid(e.to_string()))
}

/// A server's `/.well-known/hearth`, as JSON (any answer but 200 with JSON is an error).
/// With `pinned`, the answer must be signed with that key for a fresh challenge this
/// server sends (its `time` and key are then the pinned server's word, not a spoofer's).
pub async fn fetch_well_known(
    fed: &Federation,
    origin: &str,
    pinned: Option<&[u8; 32]>,
) -> Result<Value, FederationError> {
    let fetched = fetch_well_known_once(fed, origin, pinned).await;
    if pinned.is_some() {
        // A peer's (only peers' keys are pinned): its contact is shown to users.
        fed.contacts.record(origin, &fetched, now());
    }
    fetched
}

async fn fetch_well_known_once(
    fed: &Federation,
    origin: &str,
    pinned: Option<&[u8; 32]>,
) -> Result<Value, FederationError> {
    let config = &fed.services.config.federation;
    let mut challenge = [0u8; 16];
    crate::system::random_bytes(&mut challenge);
    let challenge = crate::auth::jose::b64u(&challenge);
    let url = match pinned {
        Some(_) => format!("{origin}/.well-known/hearth?challenge={challenge}"),
        None => format!("{origin}/.well-known/hearth"),
    };
    let answer = outbound::send(
        &url,
        http_types::Method::Get,
        &[],
        Vec::new(),
        config.allow_loopback,
        std::time::Duration::from_secs(config.request_timeout_secs),
        &fed.tls_pins,
    )
    .await?;
    if answer.status != 200 {
        return Err(FederationError::Peer(format!(
            "{origin} answered {} for its identity",
            answer.status
        )));
    }
    if let Some(key) = pinned {
        signature::verify_answer(
            answer.signature.as_deref(),
            key,
            origin,
            &challenge,
            answer.status,
            &answer.body,
        )?;
    }
    serde_json::from_slice(&answer.body)
        .map_err(|_| FederationError::Peer(format!("{origin} sent an unreadable identity")))
}

/// Fetches a server's `/.well-known/hearth`: its name and key.
pub async fn fetch_identity(
    fed: &Federation,
    origin: &str,
) -> Result<(String, [u8; 32]), FederationError> {
    let value = fetch_well_known(fed, origin, None).await?;
    let key = value["server_key"]
        .as_str()
        .and_then(|k| crate::auth::jose::b64u_decode(k).ok())
        .and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok())
        .ok_or_else(|| FederationError::Peer(format!("{origin} sent no valid server key")))?;
    if value["origin"].as_str() != Some(origin) {
        return Err(FederationError::Peer(format!(
            "{origin} says its origin is {}",
            value["origin"].as_str().unwrap_or("missing")
        )));
    }
    Ok((
        value["name"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(100)
            .collect(),
        key,
    ))
}

/// Adds (or re-approves) a peer: fetches its identity, checks the fingerprint if the
/// administrator gave one, and pins its key.
pub async fn add_peer(
    fed: &Federation,
    origin: &str,
    expected_fingerprint: Option<&str>,
) -> Result<Peer, FederationError> {
    let origin = normalize_origin(origin)?;
    if origin == fed.services.origin {
        return Err(FederationError::Invalid(
            "a server cannot peer with itself".into(),
        ));
    }
    let (name, key) = fetch_identity(fed, &origin).await?;
    let found = fingerprint(&key);
    if let Some(expected) = expected_fingerprint {
        if !expected.eq_ignore_ascii_case(&found) {
            return Err(FederationError::FingerprintMismatch {
                origin,
                found,
                expected: expected.to_string(),
            });
        }
    }
    let peer = Peer {
        origin: origin.clone(),
        name,
        server_key: key,
        added_at: now(),
        approved: true,
    };
    let stored = peer.clone();
    fed.services
        .store
        .write(move |tx| {
            tx.put(PEER, stored.origin.as_str(), &stored)?;
            Ok::<_, StoreError>(())
        })
        .await?;
    // Tokens verified with a key pinned before are checked again with this one.
    fed.token_cache.forget_issuer(&peer.origin);
    fed.contacts.reached(&peer.origin, now());
    Ok(peer)
}

/// Removes a peer; its users' tokens stop working here, and the Push Delegation Tokens
/// this server issued to it are revoked.
pub async fn remove_peer(fed: &Federation, origin: &str) -> Result<bool, FederationError> {
    let origin = normalize_origin(origin)?;
    let key = origin.clone();
    let removed = fed
        .services
        .store
        .write(move |tx| {
            // Its Push Delegation Tokens stop working with the peering.
            crate::service::push::revoke_host(tx, &key)?;
            tx.delete(PEER, key.as_str())
        })
        .await?;
    fed.token_cache.forget_issuer(&origin);
    fed.contacts.forget(&origin);
    // Realtime sessions of the peer's users end too; their next request is refused.
    let homed_there: Vec<crate::model::UserId> = fed
        .services
        .store
        .read(|tx| tx.rows(crate::storage::tables::USER, Rows::all()))?
        .into_iter()
        .filter(|(_, user)| user.homeserver == origin)
        .map(|(_, user)| user.id)
        .collect();
    for user in homed_there {
        fed.services.signed_out(user, None);
    }
    Ok(removed)
}

/// Every pinned peer.
pub fn list_peers(fed: &Federation) -> Result<Vec<Peer>, FederationError> {
    Ok(fed
        .services
        .store
        .read(|tx| tx.rows(PEER, Rows::all()))?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

/// The pinned key of `origin`; under the `open` policy an unknown server's key is fetched
/// and pinned on first contact.
pub async fn peer_key(fed: &Federation, origin: &str) -> Result<[u8; 32], FederationError> {
    if let Some(peer) = fed.services.store.read(|tx| tx.get(PEER, origin))? {
        return Ok(peer.server_key);
    }
    if fed.services.config.federation.policy == PeerPolicy::Open {
        let origin = normalize_origin(origin)?;
        let (name, key) = fetch_identity(fed, &origin).await?;
        let peer = Peer {
            origin: origin.clone(),
            name,
            server_key: key,
            added_at: now(),
            approved: false,
        };
        fed.services
            .store
            .write(move |tx| {
                // Keep a key pinned meanwhile (first contact wins).
                if tx.get(PEER, peer.origin.as_str())?.is_none() {
                    tx.put(PEER, peer.origin.as_str(), &peer)?;
                }
                Ok::<_, StoreError>(())
            })
            .await?;
        if let Some(peer) = fed
            .services
            .store
            .read(|tx| tx.get(PEER, origin.as_str()))?
        {
            return Ok(peer.server_key);
        }
    }
    Err(SignatureError::UnknownPeer(origin.to_string()).into())
}

/// The pinned key of `origin`, if it is a peer (never fetches).
pub fn pinned_key(fed: &Federation, origin: &str) -> Option<[u8; 32]> {
    fed.services
        .store
        .read(|tx| tx.get(PEER, origin))
        .ok()
        .flatten()
        .map(|peer| peer.server_key)
}

/// Signs a call to `target` in the target's time ([`clock`]) and sends it. When the target
/// refuses it with `clock_skew`, measures the target's clock and sends the call once more,
/// signed anew (a new `jti`, so it is not a replay). Any answer but 401 (a call the target
/// could not verify, which nothing acts on but that retry) must be signed by the target's
/// pinned key for this call, or it is an error: an unsigned 404 from whoever answers in the
/// target's place is not the target's word.
pub async fn send_signed(
    fed: &Federation,
    target: &str,
    path: &str,
    body: Vec<u8>,
    timeout: std::time::Duration,
) -> Result<outbound::Answer, FederationError> {
    let sent = send_signed_once(fed, target, path, body, timeout).await;
    fed.contacts.record(target, &sent, now());
    sent
}

async fn send_signed_once(
    fed: &Federation,
    target: &str,
    path: &str,
    body: Vec<u8>,
    timeout: std::time::Duration,
) -> Result<outbound::Answer, FederationError> {
    let mut remeasured = false;
    loop {
        let signed = signature::sign(
            &fed.services.server_key,
            &fed.services.origin,
            target,
            "POST",
            path,
            &body,
            fed.clocks.peer_time(target, now()),
        );
        let jti = signature::peek_jti(&signed)?;
        let answer = outbound::send(
            &format!("{target}{path}"),
            http_types::Method::Post,
            &[
                (signature::HEADER, signed),
                ("Content-Type", "application/json".into()),
            ],
            body.clone(),
            fed.services.config.federation.allow_loopback,
            timeout,
            &fed.tls_pins,
        )
        .await?;
        let skewed = answer.status == 401
            && serde_json::from_slice::<serde_json::Value>(&answer.body)
                .is_ok_and(|v| v["error"] == signature::CLOCK_SKEW);
        if skewed && !remeasured {
            if let Some(key) = pinned_key(fed, target) {
                if clock::remeasure(fed, target, &key).await {
                    remeasured = true;
                    continue;
                }
            }
        }
        if answer.status != 401 {
            let key = pinned_key(fed, target)
                .ok_or_else(|| SignatureError::UnknownPeer(target.to_string()))?;
            signature::verify_answer(
                answer.signature.as_deref(),
                &key,
                target,
                &jti,
                answer.status,
                &answer.body,
            )?;
        }
        return Ok(answer);
    }
}

/// Verifies an inbound signed call, replay included.
pub async fn verify_inbound(
    fed: &Federation,
    method: &str,
    path: &str,
    signature: &str,
    body: &[u8],
) -> Result<SignedCall, FederationError> {
    let issuer = signature::peek_issuer(signature)?;
    let key = peer_key(fed, &issuer).await?;
    let window = fed.services.config.federation.signature_window_secs;
    let call = signature::verify(
        signature,
        &key,
        &fed.services.origin,
        method,
        path,
        body,
        now(),
        window,
    )?;
    fed.replay.check(&call, now(), window)?;
    Ok(call)
}
