//! What this box last saw of each peer it called: when a call last went through, whether
//! the last attempt did, and whether it failed because the peer presented a TLS
//! certificate other than the pinned one. Kept in memory, from the outcomes of the calls
//! the box makes anyway (signed calls, clock measurements, peering), so showing it
//! (`GET /api/v1/peers`) costs no network call; a restart starts with nothing known.

use super::outbound::OutboundError;
use super::FederationError;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most origins recorded.
const MAX_PEERS: usize = 10_000;

/// The last outcomes of calls to one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// When (Unix seconds) a call last went through, if one did since the start.
    pub last_contact: Option<u64>,
    /// Whether the last attempt went through (`None` before the first).
    pub reachable: Option<bool>,
    /// The last attempt failed because the peer presented another TLS certificate than
    /// the pinned one.
    pub tls_mismatch: bool,
    /// What went wrong with the last attempt (`None` when nothing did).
    pub last_error: Option<String>,
}

/// The contacts of every peer called, in memory.
#[derive(Debug, Default)]
pub struct PeerContacts {
    peers: Mutex<HashMap<String, Contact>>,
}

impl PeerContacts {
    /// Empty: nothing known of any peer.
    pub fn new() -> PeerContacts {
        PeerContacts::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Contact>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` to the contact of `origin`. Bounded: the origins called are peers
    /// and homes of users, pinned by administrators; past the bound new ones go unrecorded
    /// rather than grow the map.
    fn update(&self, origin: &str, change: impl FnOnce(&mut Contact)) {
        let mut peers = self.lock();
        if peers.len() >= MAX_PEERS && !peers.contains_key(origin) {
            return;
        }
        change(peers.entry(origin.to_string()).or_default());
    }

    /// What is known of `origin`.
    pub fn get(&self, origin: &str) -> Contact {
        self.lock().get(origin).cloned().unwrap_or_default()
    }

    /// Records that a call to `origin` went through at `t` (the peer answered, whatever
    /// it answered).
    pub fn reached(&self, origin: &str, t: u64) {
        self.update(origin, |contact| {
            contact.last_contact = Some(t);
            contact.reachable = Some(true);
            contact.tls_mismatch = false;
            contact.last_error = None;
        });
    }

    /// Records that a call to `origin` failed with `error`.
    pub fn failed(&self, origin: &str, error: &FederationError) {
        self.update(origin, |contact| {
            contact.reachable = Some(false);
            contact.tls_mismatch = matches!(
                error,
                FederationError::Outbound(OutboundError::CertificateChanged { .. })
            );
            contact.last_error = Some(error.to_string());
        });
    }

    /// Forgets `origin` (no longer a peer).
    pub fn forget(&self, origin: &str) {
        self.lock().remove(origin);
    }

    /// Records the outcome of a call to `origin`: reached when the peer answered, failed
    /// when it could not be reached (an answer this box refuses, such as a bad signature,
    /// still means the peer was reached, and is recorded as the error it is).
    pub fn record<T>(&self, origin: &str, outcome: &Result<T, FederationError>, t: u64) {
        match outcome {
            Ok(_) => self.reached(origin, t),
            Err(error @ (FederationError::Outbound(_) | FederationError::Peer(_))) => {
                self.failed(origin, error)
            }
            Err(error) => {
                self.reached(origin, t);
                self.update(origin, |contact| {
                    contact.last_error = Some(error.to_string())
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_outcome_is_kept_and_a_changed_certificate_is_told_apart() {
        let contacts = PeerContacts::new();
        assert_eq!(contacts.get("https://b"), Contact::default());
        contacts.record::<()>("https://b", &Ok(()), 100);
        let reached = contacts.get("https://b");
        assert_eq!(reached.last_contact, Some(100));
        assert_eq!(reached.reachable, Some(true));
        let changed = FederationError::Outbound(OutboundError::CertificateChanged {
            url: "https://b/x".into(),
            origin: "https://b".into(),
            pinned: "aa".into(),
            presented: "bb".into(),
        });
        contacts.record::<()>("https://b", &Err(changed), 200);
        let refused = contacts.get("https://b");
        assert_eq!(refused.last_contact, Some(100));
        assert_eq!(refused.reachable, Some(false));
        assert!(refused.tls_mismatch);
        assert!(refused.last_error.unwrap().contains("changed"));
        let down = FederationError::Outbound(OutboundError::Failed {
            url: "https://b/x".into(),
            message: "connection refused".into(),
        });
        contacts.record::<()>("https://b", &Err(down), 300);
        assert!(!contacts.get("https://b").tls_mismatch);
        contacts.forget("https://b");
        assert_eq!(contacts.get("https://b"), Contact::default());
    }
}
