//! Single-use tickets for opening a websocket (gateway and voice), with caps on how many
//! one device and one user may hold unused, so nobody can take every ticket there is.

use crate::model::UserId;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most outstanding tickets of one kind on the whole server.
const MAX_TICKETS: usize = 10_000;

/// How many unused tickets one device and one user may hold.
#[derive(Clone, Copy, Debug)]
pub struct TicketCaps {
    /// Per device key.
    pub per_device: usize,
    /// Per user, over all their devices.
    pub per_user: usize,
}

/// Why no ticket was issued; each says when one may be again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketRefused {
    /// This device holds its cap of unused tickets.
    #[error("this device holds too many unused tickets; retry in {retry_after} s")]
    Device {
        /// Seconds until its oldest ticket expires.
        retry_after: u64,
    },
    /// This user holds their cap of unused tickets.
    #[error("you hold too many unused tickets; retry in {retry_after} s")]
    User {
        /// Seconds until their oldest ticket expires.
        retry_after: u64,
    },
    /// The server holds its cap of unused tickets.
    #[error("too many tickets outstanding; retry in {retry_after} s")]
    Full {
        /// Seconds until the oldest ticket expires.
        retry_after: u64,
    },
}

impl TicketRefused {
    /// Seconds until a ticket may be issued again.
    pub fn retry_after(&self) -> u64 {
        match *self {
            TicketRefused::Device { retry_after }
            | TicketRefused::User { retry_after }
            | TicketRefused::Full { retry_after } => retry_after,
        }
    }
}

struct Entry<T> {
    user: UserId,
    jkt: String,
    expires_at: u64,
    value: T,
}

/// Outstanding tickets of one kind.
pub struct TicketBook<T> {
    tickets: Mutex<HashMap<String, Entry<T>>>,
    caps: TicketCaps,
    lifetime_secs: u64,
}

impl<T> TicketBook<T> {
    /// An empty book whose tickets live `lifetime_secs`.
    pub fn new(caps: TicketCaps, lifetime_secs: u64) -> TicketBook<T> {
        TicketBook {
            tickets: Mutex::new(HashMap::new()),
            caps,
            lifetime_secs,
        }
    }

    /// Issues a ticket for `user`'s device `jkt` carrying `value`.
    pub fn issue(
        &self,
        user: UserId,
        jkt: &str,
        now: u64,
        value: T,
    ) -> Result<String, TicketRefused> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        tickets.retain(|_, t| t.expires_at > now);
        let wait = |expiry: Option<u64>| expiry.map_or(1, |e| e.saturating_sub(now).max(1));
        let of_user = || tickets.values().filter(|t| t.user == user);
        let device: Vec<u64> = of_user()
            .filter(|t| t.jkt == jkt)
            .map(|t| t.expires_at)
            .collect();
        if device.len() >= self.caps.per_device {
            return Err(TicketRefused::Device {
                retry_after: wait(device.into_iter().min()),
            });
        }
        if of_user().count() >= self.caps.per_user {
            return Err(TicketRefused::User {
                retry_after: wait(of_user().map(|t| t.expires_at).min()),
            });
        }
        if tickets.len() >= MAX_TICKETS {
            return Err(TicketRefused::Full {
                retry_after: wait(tickets.values().map(|t| t.expires_at).min()),
            });
        }
        let mut bytes = [0u8; 24];
        crate::system::random_bytes(&mut bytes);
        let ticket = crate::auth::jose::b64u(&bytes);
        tickets.insert(
            ticket.clone(),
            Entry {
                user,
                jkt: jkt.to_string(),
                expires_at: now + self.lifetime_secs,
                value,
            },
        );
        Ok(ticket)
    }

    /// Takes a ticket (it works once), unless it has expired.
    pub fn redeem(&self, ticket: &str, now: u64) -> Option<T> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        tickets
            .remove(ticket)
            .filter(|t| t.expires_at > now)
            .map(|t| t.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_device_and_user_and_expiry() {
        let book = TicketBook::new(
            TicketCaps {
                per_device: 2,
                per_user: 3,
            },
            30,
        );
        let (alice, bob) = (UserId([1; 32]), UserId([2; 32]));
        let first = book.issue(alice, "a1", 100, 1).unwrap();
        book.issue(alice, "a1", 101, 2).unwrap();
        assert_eq!(
            book.issue(alice, "a1", 102, 3),
            Err(TicketRefused::Device { retry_after: 28 })
        );
        book.issue(alice, "a2", 102, 4).unwrap();
        assert_eq!(
            book.issue(alice, "a3", 103, 5),
            Err(TicketRefused::User { retry_after: 27 })
        );
        assert!(book.issue(bob, "b1", 103, 6).is_ok());
        assert_eq!(book.redeem(&first, 104), Some(1));
        assert_eq!(book.redeem(&first, 104), None);
        assert!(book.issue(alice, "a1", 104, 7).is_ok());
        assert!(book.issue(alice, "a3", 200, 8).is_ok());
    }
}
