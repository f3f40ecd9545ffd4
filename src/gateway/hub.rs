//! The fan-out hub: every open connection has a bounded queue; publishing tries each queue
//! once and never waits, so a stuck client cannot delay the others. A client whose queue
//! is full is cut off (its queue closed with a reason) and may resume.

use super::protocol::Dispatch;
use crate::model::UserId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection's queue was closed by the hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutOff {
    /// Its queue was full.
    TooSlow,
    /// The server is shutting down.
    Shutdown,
    /// The user's device was signed out.
    SignedOut,
}

struct Connection {
    user: UserId,
    capacity: usize,
    jkt: String,
    queue: async_channel::Sender<Arc<Dispatch>>,
    reason: Arc<Mutex<Option<CutOff>>>,
}

/// A subscription handed to a session.
pub struct Subscription {
    /// Connection id (for unsubscribing).
    pub id: u64,
    /// The queue of frames to deliver.
    pub queue: async_channel::Receiver<Arc<Dispatch>>,
    /// Set when the hub closes the queue.
    pub reason: Arc<Mutex<Option<CutOff>>>,
}

/// All open connections of one server.
#[derive(Default)]
pub struct Hub {
    connections: Mutex<HashMap<u64, Connection>>,
    next_id: AtomicU64,
    shut_down: std::sync::atomic::AtomicBool,
}

/// What changed about a user's presence when a connection opened or closed.
#[derive(Debug, PartialEq, Eq)]
pub enum PresenceChange {
    /// The user's first connection opened.
    CameOnline,
    /// The user's last connection closed.
    WentOffline,
    /// Nothing visible changed.
    None,
}

impl Hub {
    /// Registers a connection with a queue of `capacity` frames. Fails when the user has
    /// `max_per_user` connections already or the server is shutting down.
    pub fn subscribe(
        &self,
        user: UserId,
        jkt: &str,
        capacity: usize,
        max_per_user: usize,
    ) -> Option<(Subscription, PresenceChange)> {
        if self.shut_down.load(Ordering::Acquire) {
            return None;
        }
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let existing = connections.values().filter(|c| c.user == user).count();
        if existing >= max_per_user {
            return None;
        }
        // An unbounded channel with our own limit: a bounded one allocates every slot up
        // front (16 KiB for 1024 frames), which idle sockets would pay for nothing.
        let (tx, rx) = async_channel::unbounded();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let reason = Arc::new(Mutex::new(None));
        connections.insert(
            id,
            Connection {
                user,
                capacity: capacity.max(1),
                jkt: jkt.to_string(),
                queue: tx,
                reason: reason.clone(),
            },
        );
        let change = if existing == 0 {
            PresenceChange::CameOnline
        } else {
            PresenceChange::None
        };
        Some((
            Subscription {
                id,
                queue: rx,
                reason,
            },
            change,
        ))
    }

    /// Removes a connection.
    pub fn unsubscribe(&self, id: u64) -> PresenceChange {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let Some(gone) = connections.remove(&id) else {
            return PresenceChange::None;
        };
        if connections.values().any(|c| c.user == gone.user) {
            PresenceChange::None
        } else {
            PresenceChange::WentOffline
        }
    }

    /// Whether a user has an open connection.
    pub fn is_online(&self, user: UserId) -> bool {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|c| c.user == user)
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offers frames to every connection; a connection whose queue is full is cut off.
    /// Never blocks (it runs on the database writer thread after each commit).
    pub fn publish(&self, frames: &[Arc<Dispatch>]) {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let mut slow = Vec::new();
        for (id, connection) in connections.iter() {
            for frame in frames {
                if connection.queue.len() >= connection.capacity
                    || connection.queue.try_send(frame.clone()).is_err()
                {
                    slow.push(*id);
                    break;
                }
            }
        }
        for id in slow {
            if let Some(connection) = connections.remove(&id) {
                cut(&connection, CutOff::TooSlow);
            }
        }
    }

    /// Cuts off every connection of a user's device (signed out).
    pub fn sign_out(&self, user: UserId, jkt: Option<&str>) {
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<u64> = connections
            .iter()
            .filter(|(_, c)| c.user == user && jkt.is_none_or(|j| j == c.jkt))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(connection) = connections.remove(&id) {
                cut(&connection, CutOff::SignedOut);
            }
        }
    }

    /// Closes every queue: sessions send a clean close and end.
    pub fn shutdown(&self) {
        self.shut_down.store(true, Ordering::Release);
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        for (_, connection) in connections.drain() {
            cut(&connection, CutOff::Shutdown);
        }
    }
}

fn cut(connection: &Connection, why: CutOff) {
    *connection.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    connection.queue.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Audience;

    fn frame() -> Arc<Dispatch> {
        super::super::protocol::dispatch_ephemeral(
            "typing",
            Audience::default(),
            serde_json::json!({}),
        )
    }

    #[test]
    fn a_full_queue_is_cut_off_without_touching_others() {
        let hub = Hub::default();
        let (slow, _) = hub.subscribe(UserId([1; 32]), "a", 2, 5).unwrap();
        let (fast, _) = hub.subscribe(UserId([2; 32]), "b", 100, 5).unwrap();
        for _ in 0..3 {
            hub.publish(&[frame()]);
        }
        assert_eq!(*slow.reason.lock().unwrap(), Some(CutOff::TooSlow));
        assert!(slow.queue.is_closed());
        assert_eq!(fast.queue.len(), 3);
        assert_eq!(hub.len(), 1);
    }

    #[test]
    fn presence_follows_first_and_last_connection() {
        let hub = Hub::default();
        let user = UserId([1; 32]);
        let (a, change) = hub.subscribe(user, "a", 4, 5).unwrap();
        assert_eq!(change, PresenceChange::CameOnline);
        let (b, change) = hub.subscribe(user, "b", 4, 5).unwrap();
        assert_eq!(change, PresenceChange::None);
        assert_eq!(hub.unsubscribe(a.id), PresenceChange::None);
        assert_eq!(hub.unsubscribe(b.id), PresenceChange::WentOffline);
        assert!(hub.subscribe(user, "c", 4, 0).is_none());
    }

    #[test]
    fn shutdown_closes_everyone_and_refuses_new() {
        let hub = Hub::default();
        let (s, _) = hub.subscribe(UserId([1; 32]), "a", 4, 5).unwrap();
        hub.shutdown();
        assert_eq!(*s.reason.lock().unwrap(), Some(CutOff::Shutdown));
        assert!(hub.subscribe(UserId([1; 32]), "a", 4, 5).is_none());
    }
}
