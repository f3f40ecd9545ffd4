//! The realtime gateway: one websocket per client per server. Persistent events come from
//! the event log (written in the same commit as each change) and are replayed on resume;
//! typing and presence are ephemeral. See docs/protocol.md.
//!
//! Browsers cannot set headers on a websocket, so a client first asks for a single-use
//! ticket with an ordinary DPoP-authenticated `POST /api/v1/gateway/ticket` and then opens
//! `GET /api/v1/gateway?ticket=…`.
//!
//! # Who receives an event
//!
//! An event goes only to those who could read the same thing over REST at the moment it
//! is delivered, judged by their roles, overwrites and membership then (not when it
//! happened). Each event's [`Audience`] says how:
//!
//! | events | audience |
//! |---|---|
//! | `guild_*`, `role_*`, `member_*`, `user_update` | members of the guild (and the user concerned) |
//! | `channel_create`, `channel_update` | members who can view the channel |
//! | `channel_delete` | those who could view it when it was deleted |
//! | `message_create`, `message_delete`, `reaction_*` | members who can view the channel |
//! | `message_update`, `pin_*` | …who also hold `READ_MESSAGE_HISTORY` there (the message may predate them) |
//! | `invite_create`, `invite_delete` | members holding `MANAGE_GUILD`, and the invite's creator |
//! | `ban_add`, `ban_remove` | members holding `BAN_MEMBERS`, and the banned user |
//! | `read_state_update` | the user whose read state it is (their own sessions) |
//! | `typing` (ephemeral) | members who can view the channel |
//! | `presence` (ephemeral) | members of a guild the user is in |
//!
//! # What a resume replays
//!
//! `{"op":"resume","seq":S}` replays the logged events after `S` that the user may see
//! now, by the rules above, with three more, so that a replay never shows more than REST
//! shows now:
//!
//! 1. **Messages are history.** An event about a channel's messages (`message_*`,
//!    `reaction_*`, `pin_*`) is replayed only if the user holds `VIEW_CHANNEL` and
//!    `READ_MESSAGE_HISTORY` in that channel now, whenever the message was posted (REST
//!    lists a channel's messages from before one joined too).
//! 2. **Messages as they are now.** `message_create`, `message_update` and `pin_*` carry
//!    the message as it is now (an edited one with its current text; a pin event keeps
//!    its `pinned` value). Those of a message deleted since are not replayed, nor its
//!    reactions: its `message_delete`, which carries no content, is.
//! 3. **Nothing of a guild from before one joined.** Other events of a guild logged
//!    before the user's latest join (their `member_add`, or the owner's `guild_create`)
//!    are not replayed, unless addressed to the user by name: REST shows the guild as it
//!    is now, not how it was. Members who joined before this was recorded get the guild's
//!    whole retained log.
//!
//! Typing and presence are never replayed.

pub mod hub;
pub mod protocol;
pub mod session;
pub mod socket;
pub mod tickets;

use crate::config::GatewayConfig;
use crate::model::{Audience, Event, UserId};
use crate::service::Services;
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
    sessions: socket::Running,
}

impl Gateway {
    /// A gateway with no connections, whose tickets are capped by `caps`.
    pub fn new(config: GatewayConfig, caps: tickets::TicketCaps) -> Gateway {
        Gateway {
            hub: Hub::default(),
            config,
            tickets: tickets::TicketBook::new(caps, TICKET_SECS),
            sessions: socket::Running::default(),
        }
    }

    /// Marks a session as running until the guard drops.
    pub fn session_started(&self) -> socket::SessionGuard<'_> {
        self.sessions.start()
    }

    /// Sessions still running (shutdown waits for them to close cleanly).
    pub fn sessions_running(&self) -> usize {
        self.sessions.count()
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
    services: &Services,
    gateway: &Gateway,
    user: UserId,
    channel: crate::model::Id,
) -> crate::service::Result<()> {
    let guild = services.check_typing(user, channel)?;
    let expires_in_ms = gateway.config.typing_secs * 1000;
    gateway.publish_ephemeral(
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
