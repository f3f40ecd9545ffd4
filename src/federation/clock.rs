//! Peers' clocks. A Raspberry Pi has no real-time clock: after a power cut on a LAN
//! without NTP it runs behind by the length of the outage, and two boxes that lost power
//! at different times disagree for good. Signed calls must be within
//! `[federation] signature_window_secs` of the receiver's clock, and a peer's access
//! tokens (Refrain's path) expire by the peer's clock, so each server keeps the offset of
//! every peer's clock from its own and speaks the peer's time with it:
//!
//! - it signs calls to a peer with the peer's time (its own clock plus the offset);
//! - it checks a peer's access tokens against the peer's time.
//!
//! The offset is measured from the peer's `/.well-known/hearth` (`time`, whole seconds,
//! signed with the peer's pinned key for a fresh challenge, so nobody else can set it;
//! over TLS that connection is pinned too) when a peer refuses a call with `clock_skew`, or when one of its tokens looks
//! expired or not yet valid here; at most once per [`REMEASURE_SECS`] per peer, so bad
//! tokens cannot make this server flood a peer. Offsets live in memory: a restart
//! measures again when needed. Replay protection is unchanged, since every receiver still
//! checks times against its own clock; only the sender's reading of that clock improves.

use super::FederationError;
use crate::federation::Federation;
use crate::system::now;
use std::collections::HashMap;
use std::sync::Mutex;

/// Least time between two measurements of one peer's clock, seconds.
pub const REMEASURE_SECS: u64 = 30;
/// Largest offset believed (±), seconds: about ten years. A peer claiming more is broken.
pub const MAX_OFFSET_SECS: i64 = 10 * 366 * 24 * 3600;

#[derive(Debug, Clone, Copy, Default)]
struct PeerClock {
    /// Peer's clock minus ours, seconds.
    offset: i64,
    /// When (our clock) it was last measured or a measurement was started.
    measured_at: u64,
}

/// The clock offsets of peers, in memory.
#[derive(Debug, Default)]
pub struct PeerClocks {
    peers: Mutex<HashMap<String, PeerClock>>,
}

impl PeerClocks {
    /// Empty: every peer is assumed to agree with us until measured.
    pub fn new() -> PeerClocks {
        PeerClocks::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerClock>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The peer's clock minus ours (0 when never measured).
    pub fn offset(&self, peer: &str) -> i64 {
        self.lock().get(peer).map(|c| c.offset).unwrap_or(0)
    }

    /// What `peer`'s clock reads when ours reads `local`.
    pub fn peer_time(&self, peer: &str, local: u64) -> u64 {
        local.saturating_add_signed(self.offset(peer))
    }

    /// Whether a measurement of `peer` may start now; if so, marks it started.
    pub fn claim_measurement(&self, peer: &str, local: u64) -> bool {
        let mut peers = self.lock();
        if let Some(clock) = peers.get(peer) {
            if clock.measured_at != 0 && local < clock.measured_at.saturating_add(REMEASURE_SECS) {
                return false;
            }
        }
        if peers.len() >= 10_000 && !peers.contains_key(peer) {
            // Bounded: peers are pinned by administrators, so this is never reached in
            // practice; forget the oldest measurements rather than grow.
            let oldest = peers
                .iter()
                .min_by_key(|(_, c)| c.measured_at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                peers.remove(&oldest);
            }
        }
        let clock = peers.entry(peer.to_string()).or_default();
        clock.measured_at = local;
        true
    }

    /// Records a measured offset.
    pub fn learn(&self, peer: &str, offset: i64, local: u64) {
        let offset = offset.clamp(-MAX_OFFSET_SECS, MAX_OFFSET_SECS);
        let mut peers = self.lock();
        let clock = peers.entry(peer.to_string()).or_default();
        clock.offset = offset;
        clock.measured_at = local;
    }
}

/// Measures `peer`'s clock now (subject to [`REMEASURE_SECS`]) and returns whether the
/// offset was updated. The answer must carry the peer's pinned key.
pub async fn remeasure(fed: &Federation, peer: &str, pinned_key: &[u8; 32]) -> bool {
    let clocks = &fed.clocks;
    if !clocks.claim_measurement(peer, now()) {
        return false;
    }
    match measure(fed, peer, pinned_key).await {
        Ok(offset) => {
            let before = clocks.offset(peer);
            clocks.learn(peer, offset, now());
            if (offset - before).abs() > 1 {
                log::info!("the clock of {peer} reads {offset:+} s from ours");
            }
            true
        }
        Err(e) => {
            log::warn!("cannot read the clock of {peer}: {e}");
            false
        }
    }
}

async fn measure(
    fed: &Federation,
    peer: &str,
    pinned_key: &[u8; 32],
) -> Result<i64, FederationError> {
    let started = std::time::SystemTime::now();
    let value = super::fetch_well_known(fed, peer, Some(pinned_key)).await?;
    let elapsed = started.elapsed().unwrap_or_default();
    let key = value["server_key"]
        .as_str()
        .and_then(|k| crate::auth::jose::b64u_decode(k).ok());
    if key.as_deref() != Some(pinned_key.as_slice()) {
        return Err(FederationError::Peer(format!(
            "{peer} answered with another server key than the pinned one"
        )));
    }
    let peer_time = value["time"]
        .as_u64()
        .ok_or_else(|| FederationError::Peer(format!("{peer} does not tell its time")))?;
    // The peer read its clock somewhere during the round trip: compare with our clock at
    // its middle.
    let started_secs = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let middle = (started_secs + elapsed / 2).as_secs();
    let offset = i64::try_from(peer_time).unwrap_or(i64::MAX) - i64::try_from(middle).unwrap_or(0);
    Ok(offset.clamp(-MAX_OFFSET_SECS, MAX_OFFSET_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_apply_to_the_peer_only_and_measurements_are_rate_limited() {
        let clocks = PeerClocks::new();
        assert_eq!(clocks.peer_time("https://a", 1000), 1000);
        assert!(clocks.claim_measurement("https://a", 1000));
        assert!(!clocks.claim_measurement("https://a", 1000 + REMEASURE_SECS - 1));
        clocks.learn("https://a", -3 * 3600, 1001);
        assert_eq!(clocks.peer_time("https://a", 20_000), 20_000 - 3 * 3600);
        assert_eq!(clocks.peer_time("https://b", 20_000), 20_000);
        assert!(!clocks.claim_measurement("https://a", 1001 + REMEASURE_SECS - 1));
        assert!(clocks.claim_measurement("https://a", 1001 + REMEASURE_SECS));
        assert!(clocks.claim_measurement("https://b", 1001));
        // Time never goes below zero, and absurd offsets are capped.
        assert_eq!(clocks.peer_time("https://a", 5), 0);
        clocks.learn("https://c", i64::MAX, 0);
        assert_eq!(clocks.offset("https://c"), MAX_OFFSET_SECS);
    }
}
