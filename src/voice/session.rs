//! One voice socket, from ticket to close: joins the room, sends `ready` and the
//! participants, hands the client's audio to the room and the room's frames to the
//! client, answers text ops, pings, and checks again now and then that the user may stay.
//! Binary frames carry audio both ways ([`crate::voice::wire`]), text frames carry JSON
//! ops. See docs/protocol.md, "Voice".

use super::registry::{JoinError, Route, Voice, VoiceState, VoiceTicket};
use super::room::{ConnId, Inbound, Outbound};
use super::wire::{self, close, Reject};
use crate::gateway::socket::{self, close_with, send, Beat, FromClient, Handler, Sink, Timing};
use crate::service::Services;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncRead, AsyncWrite};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Text ops a client may send on the voice socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum ClientOp {
    /// Change own mute/deafen.
    State {
        self_mute: Option<bool>,
        self_deaf: Option<bool>,
    },
    /// Application-level ping, answered with `pong`.
    Ping,
}

/// Frames a client may send beyond real time in a burst (one second of audio).
const BURST_FRAMES: f64 = 50.0;
/// Frames per second the allowance refills at: real time plus room for clock skew.
const REFILL_PER_SEC: f64 = 75.0;
/// Frames dropped for exceeding the allowance before the socket is closed.
const MAX_OVERRUN: u32 = 100;
/// How often access (CONNECT, SPEAK, the device) is checked again while connected.
const RECHECK: Duration = Duration::from_secs(2);

/// Participants listed per frame at join: `ready` carries the first ones, `participants`
/// frames the rest. Small frames matter: a websocket's write buffer keeps the capacity of
/// the largest frame it sent for as long as the connection lives, so one list of a
/// thousand participants would cost each of a thousand connections 200 KB.
pub const PARTICIPANTS_PER_FRAME: usize = 50;

/// Sends `ready`, then the rest of the participants in `participants` frames. Nothing of
/// it is kept once sent.
async fn send_ready<S: AsyncRead + AsyncWrite + Unpin>(
    voice: &Voice,
    sink: &mut Sink<S>,
    ticket: &VoiceTicket,
    state: VoiceState,
    participants: Vec<VoiceState>,
) -> bool {
    let mut pages = participants.chunks(PARTICIPANTS_PER_FRAME);
    let ready = json!({
        "op": "ready",
        "guild_id": state.guild_id,
        "channel_id": state.channel_id,
        "user_id": ticket.user,
        "state": state,
        "participants": pages.next().unwrap_or_default(),
        "participant_count": participants.len(),
        "audio": {
            "codec": "opus",
            "sample_rate": crate::voice::SAMPLE_RATE,
            "channels": 1,
            "frame_ms": 20,
            "header_bytes": wire::HEADER_BYTES,
            "max_packet_bytes": voice.config.max_packet_bytes,
        },
    })
    .to_string();
    if !send(sink, Message::Text(ready.into()), Duration::from_secs(5)).await {
        return false;
    }
    for page in pages {
        let frame = json!({"op": "participants", "participants": page}).to_string();
        if !send(sink, Message::Text(frame.into()), Duration::from_secs(5)).await {
            return false;
        }
    }
    true
}

/// Runs one voice socket from ticket to close. `heartbeat` is the gateway's: the client
/// is pinged that often and closed when silent for twice as long.
pub async fn run<S>(
    services: Arc<Services>,
    voice: Arc<Voice>,
    heartbeat: Duration,
    ws: WebSocketStream<S>,
    ticket: Option<VoiceTicket>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _running = voice.session_started();
    let (mut sink, stream) = ws.split();
    let Some(ticket) = ticket else {
        close_with(
            &mut sink,
            close::INVALID_TICKET,
            "invalid or expired ticket".into(),
        )
        .await;
        return;
    };
    if let Err((code, reason)) = still_allowed(&services, &ticket) {
        close_with(&mut sink, code, reason).await;
        return;
    }
    let Ok(access) = services.voice_access(ticket.user, ticket.channel) else {
        close_with(
            &mut sink,
            close::NOT_ALLOWED,
            "not allowed to connect to this channel".into(),
        )
        .await;
        return;
    };
    let (tx, rx) = async_channel::bounded::<Outbound>(
        voice.config.queue_frames.max(1) + crate::voice::room::CONTROL_SLOTS,
    );
    let joined = match voice.join(
        ticket.user,
        access.guild,
        ticket.channel,
        (false, false),
        !access.speak,
        tx,
    ) {
        Ok(joined) => joined,
        Err(JoinError::Full) => {
            close_with(&mut sink, close::ROOM_FULL, "the voice room is full".into()).await;
            return;
        }
        Err(_) => {
            close_with(&mut sink, 1001, "the server is shutting down".into()).await;
            return;
        }
    };
    let (user, conn) = (ticket.user, joined.conn);
    if send_ready(
        &voice,
        &mut sink,
        &ticket,
        joined.state,
        joined.participants,
    )
    .await
    {
        let (from_client_tx, from_client) = async_channel::bounded(8);
        let frames = VoiceFrames {
            route: joined.route,
            conn,
            max_packet: voice.config.max_packet_bytes,
            previous_ts: None,
            allowance: BURST_FRAMES,
            refilled: Instant::now(),
            overrun: 0,
        };
        let reader = smol::spawn(socket::read(stream, frames, from_client_tx));
        let mut session = Session {
            services: services.clone(),
            voice: voice.clone(),
            ticket,
            conn,
            last_check: Instant::now(),
        };
        let timing = Timing {
            heartbeat,
            beat: Beat::Polled(Duration::from_millis(500)),
            within: Duration::from_secs(2),
            last_heard: Instant::now(),
        };
        socket::serve(&mut sink, &mut session, &rx, &from_client, timing).await;
        reader.cancel().await;
    }
    voice.leave(user, conn);
}

/// Whether the ticket's device is still signed in (a ticket outlives a sign-out by up to
/// 30 s).
fn still_allowed(services: &Services, ticket: &VoiceTicket) -> Result<(), (u16, String)> {
    let signed_in = if ticket.local {
        services
            .device_active(ticket.user, &ticket.jkt)
            .unwrap_or(false)
    } else {
        services.get_user(ticket.user).is_ok()
    };
    if signed_in {
        Ok(())
    } else {
        Err((close::SIGNED_OUT, "signed out".into()))
    }
}

/// The reading half's view of the client's frames: audio is checked here and handed
/// straight to the room; anything else goes to the session loop.
struct VoiceFrames {
    route: Route,
    conn: ConnId,
    max_packet: usize,
    previous_ts: Option<u32>,
    allowance: f64,
    refilled: Instant,
    overrun: u32,
}

impl socket::Frames for VoiceFrames {
    type Op = ClientOp;
    const MALFORMED: u16 = close::MALFORMED;

    fn data(&mut self, message: Message) -> FromClient<ClientOp> {
        match message {
            Message::Binary(bytes) => self.audio(&bytes),
            Message::Text(text) => match serde_json::from_str::<ClientOp>(text.as_str()) {
                Ok(op) => FromClient::Op(op),
                Err(e) => FromClient::Reject(
                    close::MALFORMED,
                    Reject::Malformed(format!("unknown text op: {e}")).reason(),
                ),
            },
            _ => FromClient::Heard,
        }
    }

    fn too_large(&self) -> (u16, String) {
        (close::TOO_LARGE, "voice frame too large".into())
    }
}

impl VoiceFrames {
    /// Checks one audio frame and hands it to the room, within the allowance.
    fn audio(&mut self, bytes: &[u8]) -> FromClient<ClientOp> {
        let now = Instant::now();
        self.allowance = (self.allowance
            + now.duration_since(self.refilled).as_secs_f64() * REFILL_PER_SEC)
            .min(BURST_FRAMES);
        self.refilled = now;
        match wire::parse_frame(bytes, self.max_packet).and_then(|frame| {
            if let Some(previous) = self.previous_ts {
                wire::check_timestamp_step(previous, frame.timestamp)?;
            }
            Ok(frame)
        }) {
            Err(reject) => FromClient::Reject(reject.close_code(), reject.reason()),
            Ok(frame) => {
                self.previous_ts = Some(frame.timestamp);
                if self.allowance >= 1.0 {
                    self.allowance -= 1.0;
                    let room = self.route.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    room.packet(Inbound {
                        conn: self.conn,
                        seq: frame.seq,
                        timestamp: frame.timestamp,
                        payload: frame.payload,
                        arrival: crate::voice::now_micros(),
                    });
                    FromClient::Heard
                } else {
                    self.overrun += 1;
                    if self.overrun > MAX_OVERRUN {
                        FromClient::Reject(
                            close::TOO_FAST,
                            "voice frames arrive much faster than real time".into(),
                        )
                    } else {
                        FromClient::Heard
                    }
                }
            }
        }
    }
}

/// A joined voice socket, as the session loop sees it.
struct Session {
    services: Arc<Services>,
    voice: Arc<Voice>,
    ticket: VoiceTicket,
    conn: ConnId,
    last_check: Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Handler<S> for Session {
    type Out = Outbound;
    type Op = ClientOp;

    async fn out(&mut self, sink: &mut Sink<S>, out: Outbound) -> bool {
        match out {
            Outbound::Audio(frame) => {
                send(sink, Message::Binary(frame.into()), Duration::from_secs(2)).await
            }
            Outbound::Text(text) => {
                send(sink, Message::Text(text.into()), Duration::from_secs(2)).await
            }
            Outbound::Close(code, reason) => {
                close_with(sink, code, reason).await;
                false
            }
        }
    }

    fn queue_closed(&self) -> (u16, String) {
        (1001, "the server is shutting down".into())
    }

    async fn op(&mut self, sink: &mut Sink<S>, op: ClientOp) -> bool {
        match op {
            ClientOp::Ping => {
                let pong = json!({"op": "pong"}).to_string();
                send(sink, Message::Text(pong.into()), Duration::from_secs(2)).await
            }
            ClientOp::State {
                self_mute,
                self_deaf,
            } => {
                // The new state comes back as a `state` op through the room
                // queue (and to everyone on the gateway).
                // A connection being replaced has no seat any more: nothing to do,
                // its close is on the way.
                self.voice
                    .set_self(self.ticket.user, self.conn, self_mute, self_deaf);
                true
            }
        }
    }

    fn silent(&self) -> (u16, String) {
        (close::HEARTBEAT_TIMEOUT, "no answer to pings".into())
    }

    async fn after_turn(&mut self, sink: &mut Sink<S>) -> bool {
        let now = Instant::now();
        if now.duration_since(self.last_check) < RECHECK {
            return true;
        }
        self.last_check = now;
        if let Err((code, reason)) = still_allowed(&self.services, &self.ticket) {
            close_with(sink, code, reason).await;
            return false;
        }
        let user = self.ticket.user;
        let Some((_, channel)) = self.voice.seat_of(user) else {
            return false;
        };
        match self.services.voice_access(user, channel) {
            Ok(access) => {
                self.voice.set_suppress(user, self.conn, !access.speak);
                true
            }
            Err(crate::service::Error::Store(_)) => true,
            Err(_) => {
                close_with(
                    sink,
                    close::NOT_ALLOWED,
                    "no longer allowed in this voice channel".into(),
                )
                .await;
                false
            }
        }
    }
}
