//! The realtime gateway: one websocket per client per server. Persistent events come from
//! the event log (written in the same commit as each change) and are replayed on resume;
//! typing and presence are ephemeral. See the README's Protocol section.
//!
//! Browsers cannot set headers on a websocket, so a client first asks for a single-use
//! ticket with an ordinary DPoP-authenticated `POST /api/v1/gateway/ticket` and then opens
//! `GET /api/v1/gateway?ticket=…`.

pub mod hub;
pub mod protocol;
pub mod session;
pub mod tickets;

use crate::config::GatewayConfig;
use crate::model::{Audience, Event, UserId};
use hub::Hub;
use std::sync::Arc;

/// How long a ticket is valid, seconds.
pub const TICKET_SECS: u64 = 30;

/// Who a ticket was issued to.
#[derive(Clone, Debug)]
pub struct Ticket {
    /// The user.
    pub user: UserId,
    /// The device key thumbprint.
    pub jkt: String,
    /// Whether the token behind it was this server's own (its devices are checked here);
    /// a peer's user is checked by still having an account here.
    pub local: bool,
}

/// The gateway of one server.
pub struct Gateway {
    /// Fan-out to open connections.
    pub hub: Hub,
    /// Settings.
    pub config: GatewayConfig,
    tickets: tickets::TicketBook<Ticket>,
    sessions: std::sync::atomic::AtomicUsize,
}

/// Counts a running session while alive.
pub struct SessionGuard<'a>(&'a Gateway);

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.0
            .sessions
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Gateway {
    /// A gateway with no connections, whose tickets are capped by `caps`.
    pub fn new(config: GatewayConfig, caps: tickets::TicketCaps) -> Gateway {
        Gateway {
            hub: Hub::default(),
            config,
            tickets: tickets::TicketBook::new(caps, TICKET_SECS),
            sessions: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Marks a session as running until the guard drops.
    pub fn session_started(&self) -> SessionGuard<'_> {
        self.sessions
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        SessionGuard(self)
    }

    /// Sessions still running (shutdown waits for them to close cleanly).
    pub fn sessions_running(&self) -> usize {
        self.sessions.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Issues a single-use ticket, unless the device, the user or the server holds too
    /// many unused ones.
    pub fn issue_ticket(
        &self,
        user: UserId,
        jkt: &str,
        local: bool,
        now: u64,
    ) -> Result<String, tickets::TicketRefused> {
        let ticket = Ticket {
            user,
            jkt: jkt.to_string(),
            local,
        };
        self.tickets.issue(user, jkt, now, ticket)
    }

    /// Takes a ticket (it works once).
    pub fn redeem_ticket(&self, ticket: &str, now: u64) -> Option<Ticket> {
        self.tickets.redeem(ticket, now)
    }

    /// Delivers committed events (called after each commit).
    pub fn publish_events(&self, events: Vec<Event>) {
        let frames: Vec<_> = events.into_iter().map(protocol::dispatch_event).collect();
        self.hub.publish(&frames);
    }

    /// Delivers an ephemeral frame.
    pub fn publish_ephemeral(&self, op: &str, audience: Audience, data: serde_json::Value) {
        self.hub
            .publish(&[protocol::dispatch_ephemeral(op, audience, data)]);
    }
}

/// Publishes that `user` is typing in `channel` (needs SEND_MESSAGES there).
pub fn typing(
    app: &crate::app::App,
    user: UserId,
    channel: crate::model::Id,
) -> crate::service::Result<()> {
    let guild = app.services.check_typing(user, channel)?;
    let expires_in_ms = app.gateway.config.typing_secs * 1000;
    app.gateway.publish_ephemeral(
        "typing",
        Audience::channel(guild, channel),
        serde_json::json!({
            "guild_id": guild,
            "channel_id": channel,
            "user_id": user,
            "expires_in_ms": expires_in_ms,
        }),
    );
    Ok(())
}

/// Makes sure a gateway exists for the app's store hook.
pub fn connect_store(gateway: &Arc<Gateway>, store: &crate::storage::Store) {
    let gateway = gateway.clone();
    store.on_events(move |events| gateway.publish_events(events));
}
