//! One websocket connection: authenticate by ticket, replay what the client missed, then
//! deliver live frames it may see, answer heartbeats, and close cleanly with a reason.

use super::hub::{CutOff, PresenceChange, Subscription};
use super::protocol::{self, close, ClientOp, Dispatch};
use super::socket::{self, close_with, send, Beat, FromClient, Handler, Sink, Timing};
use super::{Gateway, Ticket};
use crate::model::{Audience, Event, Id, Permissions, Presence, UserId};
use crate::service::visibility::GuildVisibility;
use crate::service::Services;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncRead, AsyncWrite, FutureExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events read from the log per step while replaying.
const REPLAY_PAGE: usize = 512;
/// How long the client has to send `resume` or `start`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What the gateway's text frames mean; it has no binary ones.
struct GatewayFrames;

impl socket::Frames for GatewayFrames {
    type Op = ClientOp;
    const MALFORMED: u16 = close::MALFORMED;

    fn data(&mut self, message: Message) -> FromClient<ClientOp> {
        match message {
            Message::Text(text) => match protocol::parse_client(text.as_str()) {
                Ok(op) => FromClient::Op(op),
                Err(e) => FromClient::Reject(close::MALFORMED, e),
            },
            _ => FromClient::Reject(
                close::MALFORMED,
                "binary frames are not part of this protocol".into(),
            ),
        }
    }

    fn too_large(&self) -> (u16, String) {
        (close::TOO_LARGE, "frame too large".into())
    }
}

/// What a user may see, cached per guild and dropped when permissions change.
struct Visibility {
    user: UserId,
    guilds: HashMap<Id, Option<GuildVisibility>>,
}

/// Whether a frame is delivered live or replayed on resume.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Live,
    Replay,
}

impl Visibility {
    fn guild(&mut self, services: &Services, guild: Id) -> Option<&GuildVisibility> {
        let user = self.user;
        self.guilds
            .entry(guild)
            .or_insert_with(|| services.guild_visibility(user, guild).ok().flatten())
            .as_ref()
    }

    /// Whether `audience` reaches the user now. On replay, a channel's message events also
    /// need READ_MESSAGE_HISTORY, and guild events from before the user joined are left
    /// out (module docs of [`crate::gateway`]).
    fn allows(
        &mut self,
        services: &Services,
        audience: &Audience,
        event: Option<&Event>,
        delivery: Delivery,
    ) -> bool {
        if let Some(guild) = event.and_then(|e| e.permission_change) {
            self.guilds.remove(&guild);
        }
        if audience.users.contains(&self.user) {
            return true;
        }
        let mut needed = audience.permissions;
        let replayed = match event {
            Some(event) if delivery == Delivery::Replay => Some(event),
            _ => None,
        };
        if replayed.is_some_and(|e| e.is_about_messages()) {
            needed |= Permissions::READ_MESSAGE_HISTORY;
        }
        for guild in &audience.guilds {
            let Some(visible) = self.guild(services, *guild) else {
                continue;
            };
            if let Some(event) = replayed {
                if !event.is_about_messages() && event.seq < visible.joined_seq {
                    continue;
                }
            }
            if visible.admits(audience.channel, needed) {
                return true;
            }
        }
        false
    }
}

/// Publishes a presence change to everyone who shares a guild with the user.
fn announce_presence(services: &Services, gateway: &Gateway, user: UserId, online: bool) {
    let Ok(profile) = services.get_user(user) else {
        return;
    };
    let status = match (online, profile.profile.presence) {
        (_, Presence::Offline) | (false, _) => "offline",
        (true, Presence::Busy) => "busy",
        (true, Presence::Online) => "online",
    };
    if !online && profile.profile.presence == Presence::Offline {
        // They were shown offline all along: nothing changes for others.
        return;
    }
    if online && profile.profile.presence == Presence::Offline {
        return;
    }
    let guilds = services.guild_ids_of(user).unwrap_or_default();
    let audience = Audience {
        guilds,
        users: vec![user],
        ..Audience::default()
    };
    gateway.publish_ephemeral(
        "presence",
        audience,
        json!({ "user_id": user, "status": status }),
    );
}

/// Runs a connection to its end.
pub async fn run<S>(
    services: Arc<Services>,
    gateway: Arc<Gateway>,
    ws: WebSocketStream<S>,
    ticket: Option<Ticket>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _running = gateway.session_started();
    let (mut sink, stream) = ws.split();
    let config = gateway.config.clone();
    let heartbeat = Duration::from_secs(config.heartbeat_secs.max(1));
    let Some(ticket) = ticket else {
        close_with(
            &mut sink,
            close::INVALID_TICKET,
            "invalid or expired ticket".into(),
        )
        .await;
        return;
    };
    let user = ticket.user;
    let Some((subscription, presence)) = gateway.hub.subscribe(
        user,
        &ticket.jkt,
        config.queue_per_connection,
        config.max_connections_per_user,
    ) else {
        close_with(
            &mut sink,
            close::TOO_MANY,
            "too many connections, or the server is shutting down".into(),
        )
        .await;
        return;
    };
    // A ticket outlives the sign-out of its device by up to 30 s. Checked after
    // subscribing: a sign-out before this point has removed the device already, one
    // after it cuts this connection off.
    let still_signed_in = if ticket.local {
        services.device_active(user, &ticket.jkt).unwrap_or(false)
    } else {
        services.get_user(user).is_ok()
    };
    if !still_signed_in {
        gateway.hub.unsubscribe(subscription.id);
        close_with(&mut sink, close::SIGNED_OUT, "signed out".into()).await;
        return;
    }
    let (from_client_tx, from_client) = async_channel::bounded(16);
    let reader = smol::spawn(socket::read(stream, GatewayFrames, from_client_tx));
    if presence == PresenceChange::CameOnline {
        announce_presence(&services, &gateway, user, true);
    }
    let mut session = Session {
        services: services.clone(),
        gateway: gateway.clone(),
        user,
        visibility: Visibility {
            user,
            guilds: HashMap::new(),
        },
        cursor: 0,
        last_heard: Instant::now(),
        heartbeat,
        cut_off: subscription.reason.clone(),
    };
    session.serve(&mut sink, &subscription, &from_client).await;
    reader.cancel().await;
    let change = gateway.hub.unsubscribe(subscription.id);
    // A connection the hub cut off (too slow, signed out) has left it already, so
    // unsubscribing cannot tell whether it was the user's last one: ask.
    let cut_off = matches!(
        *subscription
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
        Some(CutOff::TooSlow | CutOff::SignedOut)
    );
    if change == PresenceChange::WentOffline || (cut_off && !gateway.hub.is_online(user)) {
        announce_presence(&services, &gateway, user, false);
    }
}

struct Session {
    services: Arc<Services>,
    gateway: Arc<Gateway>,
    user: UserId,
    visibility: Visibility,
    /// Sequence number of the last persistent event handled (sent or filtered out).
    cursor: u64,
    last_heard: Instant,
    heartbeat: Duration,
    /// Why the hub closed the queue, once it has.
    cut_off: Arc<std::sync::Mutex<Option<CutOff>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Handler<S> for Session {
    type Out = Arc<Dispatch>;
    type Op = ClientOp;

    async fn out(&mut self, sink: &mut Sink<S>, frame: Arc<Dispatch>) -> bool {
        let within = self.heartbeat * 2;
        self.deliver(sink, &frame, within, Delivery::Live).await
    }

    fn queue_closed(&self) -> (u16, String) {
        let why = *self.cut_off.lock().unwrap_or_else(|p| p.into_inner());
        let (code, what) = match why {
            Some(CutOff::TooSlow) => (close::TOO_SLOW, "too slow"),
            Some(CutOff::SignedOut) => (close::SIGNED_OUT, "signed out"),
            Some(CutOff::Shutdown) | None => (1001, "server shutting down"),
        };
        (code, protocol::resume_reason(what, self.cursor))
    }

    async fn op(&mut self, sink: &mut Sink<S>, op: ClientOp) -> bool {
        let within = self.heartbeat * 2;
        match op {
            ClientOp::Ping => send(sink, Message::Text(protocol::pong().into()), within).await,
            ClientOp::Typing { channel_id } => {
                let _ = super::typing(&self.services, &self.gateway, self.user, channel_id);
                true
            }
            ClientOp::Resume { .. } | ClientOp::Start => {
                close_with(sink, close::MALFORMED, "already started".into()).await;
                false
            }
        }
    }

    fn silent(&self) -> (u16, String) {
        (
            close::HEARTBEAT_TIMEOUT,
            protocol::resume_reason("heartbeat timeout", self.cursor),
        )
    }
}

impl Session {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
        &mut self,
        sink: &mut Sink<S>,
        subscription: &Subscription,
        from_client: &async_channel::Receiver<FromClient<ClientOp>>,
    ) {
        let last_seq = self.services.store.last_event_seq().unwrap_or(0);
        let within = self.heartbeat * 2;
        if !send(
            sink,
            Message::Text(protocol::hello(self.heartbeat.as_millis() as u64, last_seq).into()),
            within,
        )
        .await
        {
            return;
        }
        let first = async { from_client.recv().await.ok() }
            .or(async {
                smol::Timer::after(START_TIMEOUT).await;
                None
            })
            .await;
        match first {
            Some(FromClient::Op(ClientOp::Resume { seq })) => {
                if !self.replay(sink, seq).await {
                    return;
                }
            }
            Some(FromClient::Op(ClientOp::Start)) => {
                self.cursor = last_seq;
                if !send(
                    sink,
                    Message::Text(protocol::ready(self.cursor).into()),
                    within,
                )
                .await
                {
                    return;
                }
            }
            Some(other) => {
                let (code, reason) = match other {
                    FromClient::Reject(code, reason) => (code, reason),
                    _ => (
                        close::NOT_STARTED,
                        "the first frame must be resume or start".to_string(),
                    ),
                };
                close_with(sink, code, reason).await;
                return;
            }
            None => {
                close_with(
                    sink,
                    close::NOT_STARTED,
                    "no resume or start frame in time".into(),
                )
                .await;
                return;
            }
        }
        let timing = Timing {
            heartbeat: self.heartbeat,
            beat: Beat::EveryHeartbeat,
            within,
            last_heard: self.last_heard,
        };
        socket::serve(sink, self, &subscription.queue, from_client, timing).await;
    }

    /// Replays the log after `seq`, then sends `ready` (or `resync` when `seq` is older
    /// than what the log keeps).
    async fn replay<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        sink: &mut Sink<S>,
        seq: u64,
    ) -> bool {
        let services = self.services.clone();
        let within = self.heartbeat * 2;
        self.cursor = seq;
        let mut first_page = true;
        loop {
            let Ok((events, oldest)) = services.store.events_after(self.cursor, REPLAY_PAGE) else {
                close_with(sink, 1011, "cannot read the event log".into()).await;
                return false;
            };
            if first_page {
                first_page = false;
                let last = services.store.last_event_seq().unwrap_or(0);
                let missing = match oldest {
                    // 0 asks for everything still retained (docs/protocol.md).
                    Some(oldest) => seq != 0 && seq + 1 < oldest,
                    None => seq < last,
                };
                if missing || seq > last {
                    self.cursor = last;
                    return send(
                        sink,
                        Message::Text(protocol::resync(last, oldest).into()),
                        within,
                    )
                    .await;
                }
            }
            if events.is_empty() {
                break;
            }
            for event in events {
                let seq = event.seq;
                // Checked before looking the message up, so that what the user may not
                // see costs no read; `deliver` checks again, from the cache.
                let visible = self.visibility.allows(
                    &services,
                    &event.audience,
                    Some(&event),
                    Delivery::Replay,
                );
                let Some(event) = visible.then(|| self.as_now(event)).flatten() else {
                    // Skipped, but handled: a later resume starts after it.
                    self.cursor = self.cursor.max(seq);
                    continue;
                };
                let dispatch = protocol::dispatch_event(event);
                if !self
                    .deliver(sink, &dispatch, within, Delivery::Replay)
                    .await
                {
                    return false;
                }
            }
        }
        send(
            sink,
            Message::Text(protocol::ready(self.cursor).into()),
            within,
        )
        .await
    }

    /// A logged event as a resume replays it: a message event carries the message as it
    /// is now, and one whose message was deleted since is left out (`None`); the
    /// deletion itself carries no content. Other events are replayed as logged.
    fn as_now(&self, mut event: Event) -> Option<Event> {
        if !event.is_about_messages() || event.kind == "message_delete" {
            return Some(event);
        }
        let data: serde_json::Value = serde_json::from_str(&event.data).ok()?;
        let channel = Id::parse(data["channel_id"].as_str()?)?;
        let id_field = if event.carries_message() {
            "id"
        } else {
            "message_id"
        };
        let message = Id::parse(data[id_field].as_str()?)?;
        let now = self.services.message_now(channel, message).ok()??;
        if event.carries_message() {
            let mut current = serde_json::to_value(&now).ok()?;
            // A pin event keeps saying what it did; the rest is today's message.
            if event.kind.starts_with("pin_") {
                current["pinned"] = data["pinned"].clone();
            }
            event.data = current.to_string();
        }
        Some(event)
    }

    async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        sink: &mut Sink<S>,
        dispatch: &Dispatch,
        within: Duration,
        delivery: Delivery,
    ) -> bool {
        if let Some(event) = &dispatch.event {
            if event.seq <= self.cursor {
                return true;
            }
            self.cursor = event.seq;
        }
        if !self.visibility.allows(
            &self.services,
            &dispatch.audience,
            dispatch.event.as_ref(),
            delivery,
        ) {
            return true;
        }
        send(sink, Message::Text(dispatch.frame.clone()), within).await
    }
}
