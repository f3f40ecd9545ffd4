//! Voice over HTTP and websocket: tickets, the voice socket, listing and moderation.
//!
//! A client asks `POST /api/v1/channels/{id}/voice` for a single-use ticket (CONNECT is
//! checked there), then opens `GET /api/v1/voice?ticket=…`. Opening the socket joins the
//! room; closing it leaves. Binary frames carry audio both ways (`crate::voice::wire`),
//! text frames carry JSON ops. See the README's "Voice" section.

use super::auth::Principal;
use super::error::ApiError;
use super::gateway::{accept_websocket, query_ticket, Upgraded};
use super::{json, json_body, ApiResult, Req};
use crate::app::App;
use crate::model::{Id, Permissions};
use crate::system::now;
use crate::voice::registry::{JoinError, Route, VoiceTicket};
use crate::voice::room::{Inbound, Outbound};
use crate::voice::wire::{self, close, Reject};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_lite::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `POST /api/v1/channels/{channel_id}/voice`: a ticket for joining the room.
pub async fn ticket(req: Req, me: Principal) -> ApiResult {
    let channel = super::routes::id_param(&req, "channel_id")?;
    let app = req.state();
    let access = app.services.voice_access(me.user, channel)?;
    if !app.voice.has_room_for(me.user, channel) {
        return Err(ApiError::new(
            409,
            "room_full",
            format!(
                "this voice room has its maximum of {} participants",
                app.voice.config.max_participants
            ),
        ));
    }
    let ticket = app
        .voice
        .issue_ticket(me.user, &me.jkt, me.local, access.guild, channel, now())
        .map_err(|refused| {
            ApiError::new(429, "rate_limited", refused.to_string())
                .with_header("Retry-After", refused.retry_after().to_string())
        })?;
    let origin = me.origin.as_str();
    let ws_origin = origin
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            origin
                .strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| origin.to_string());
    json(
        200,
        &json!({
            "ticket": ticket,
            "url": format!("{ws_origin}/api/v1/voice?ticket={ticket}"),
            "expires_in": crate::voice::registry::TICKET_SECS,
            "guild_id": access.guild,
            "channel_id": channel,
        }),
    )
}

/// `GET /api/v1/voice?ticket=…`: the voice socket. A bad ticket still upgrades and is
/// then closed with 4001, since browsers cannot read the status of a refused handshake.
pub async fn upgrade(req: Req) -> ApiResult {
    let app = req.state().clone();
    let ticket = query_ticket(&req).and_then(|t| app.voice.redeem_ticket(&t, now()));
    // Audio frames are small; JSON ops smaller still.
    let max = wire::HEADER_BYTES + app.voice.config.max_packet_bytes.max(64) + 64;
    accept_websocket(&req, max.max(4096), 2048, move |ws| run(app, ws, ticket)).await
}

/// `GET /api/v1/channels/{channel_id}/voice`: who is in a voice channel.
pub async fn participants(req: Req, me: Principal) -> ApiResult {
    let channel = super::routes::id_param(&req, "channel_id")?;
    let app = req.state();
    app.services.voice_visible(me.user, channel)?;
    json(200, &app.voice.participants(channel))
}

/// `GET /api/v1/guilds/{guild_id}/voice`: who is in each voice channel the caller sees.
pub async fn guild_states(req: Req, me: Principal) -> ApiResult {
    let guild = super::routes::id_param(&req, "guild_id")?;
    let app = req.state();
    let mut all = Vec::new();
    for channel in app.services.visible_voice_channels(me.user, guild)? {
        all.extend(app.voice.participants(channel));
    }
    json(200, &all)
}

/// Body of `PATCH /api/v1/guilds/{guild_id}/voice/{user_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Moderation {
    mute: Option<bool>,
    deaf: Option<bool>,
    /// Move to this voice channel; `null` disconnects.
    #[serde(default, deserialize_with = "some_or_null")]
    channel_id: Option<Option<Id>>,
}

fn some_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Id>>, D::Error> {
    Option::<Id>::deserialize(d).map(Some)
}

/// `PATCH /api/v1/guilds/{guild_id}/voice/{user_id}`: a moderator mutes or deafens a
/// member (MUTE_MEMBERS, DEAFEN_MEMBERS), moves them to another voice channel
/// (MOVE_MEMBERS in both channels; the member must be allowed to connect there) or
/// disconnects them (`"channel_id": null`, MOVE_MEMBERS).
pub async fn moderate(mut req: Req, me: Principal) -> ApiResult {
    let guild = super::routes::id_param(&req, "guild_id")?;
    let target = super::routes::user_param(&req, "user_id", &me)?;
    let body: Moderation = json_body(&mut req).await?;
    let app = req.state();
    if body.mute.is_none() && body.deaf.is_none() && body.channel_id.is_none() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "give at least one of mute, deaf, channel_id",
        ));
    }
    // The caller and the target must both be members of the guild.
    app.services.get_member(me.user, guild, target)?;
    let seat = app
        .voice
        .seat_of(target)
        .filter(|(g, _)| *g == guild)
        .map(|(_, c)| c);
    if body.mute.is_some() {
        app.services
            .voice_moderation(me.user, guild, seat, Permissions::MUTE_MEMBERS)?;
    }
    if body.deaf.is_some() {
        app.services
            .voice_moderation(me.user, guild, seat, Permissions::DEAFEN_MEMBERS)?;
    }
    if let Some(to) = body.channel_id {
        let Some(from) = seat else {
            // Only someone who could move members learns whether a member is connected.
            app.services
                .voice_moderation(me.user, guild, None, Permissions::MOVE_MEMBERS)?;
            return Err(ApiError::new(
                404,
                "not_in_voice",
                "that member is not connected to voice in this guild",
            ));
        };
        app.services
            .voice_moderation(me.user, guild, Some(from), Permissions::MOVE_MEMBERS)?;
        if let Some(to) = to {
            app.services
                .voice_moderation(me.user, guild, Some(to), Permissions::MOVE_MEMBERS)?;
            let access = app.services.voice_access(target, to).map_err(|e| match e {
                crate::service::Error::Invalid { .. } | crate::service::Error::Store(_) => {
                    ApiError::from(e)
                }
                _ => ApiError::new(
                    403,
                    "forbidden",
                    "that member may not connect to the target channel",
                ),
            })?;
            if access.guild != guild {
                return Err(ApiError::new(404, "unknown_channel", "unknown channel"));
            }
        }
    }
    // The move first: when the target room is full nothing has changed yet.
    let mut state = None;
    match body.channel_id {
        Some(Some(to)) => {
            state = Some(app.voice.move_user(target, to).map_err(|e| match e {
                JoinError::Full => ApiError::new(409, "room_full", "the target room is full"),
                JoinError::NotConnected => ApiError::new(
                    404,
                    "not_in_voice",
                    "that member is not connected to voice in this guild",
                ),
                JoinError::ShuttingDown | JoinError::NoThread => {
                    ApiError::new(503, "unavailable", "voice is not available right now")
                }
            })?);
        }
        Some(None) => {
            app.voice
                .disconnect(target, close::DISCONNECTED, "disconnected by a moderator");
        }
        None => {}
    }
    if body.mute.is_some() || body.deaf.is_some() {
        let moderated = app.voice.moderate(guild, target, body.mute, body.deaf);
        if body.channel_id != Some(None) {
            state = moderated;
        }
    }
    json(
        200,
        &json!({
            "guild_id": guild,
            "user_id": target,
            "connected": state.is_some(),
            "state": state,
        }),
    )
}

// ---- the socket ----

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

enum FromClient {
    Op(ClientOp),
    Heard,
    Reject(u16, String),
    Closed,
}

/// Frames a client may send beyond real time in a burst (one second of audio).
const BURST_FRAMES: f64 = 50.0;
/// Frames per second the allowance refills at: real time plus room for clock skew.
const REFILL_PER_SEC: f64 = 75.0;
/// Frames dropped for exceeding the allowance before the socket is closed.
const MAX_OVERRUN: u32 = 100;
/// How often access (CONNECT, SPEAK, the device) is checked again while connected.
const RECHECK: Duration = Duration::from_secs(2);

type Sink = async_tungstenite::WebSocketSender<Upgraded>;

fn close_frame(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

async fn send(sink: &mut Sink, message: Message, within: Duration) -> bool {
    let sent = async { sink.send(message).await.is_ok() };
    sent.or(async {
        smol::Timer::after(within).await;
        false
    })
    .await
}

/// Participants listed per frame at join: `ready` carries the first ones, `participants`
/// frames the rest. Small frames matter: a websocket's write buffer keeps the capacity of
/// the largest frame it sent for as long as the connection lives, so one list of a
/// thousand participants would cost each of a thousand connections 200 KB.
pub const PARTICIPANTS_PER_FRAME: usize = 50;

/// Sends `ready`, then the rest of the participants in `participants` frames. Nothing of
/// it is kept once sent.
async fn send_ready(
    app: &App,
    sink: &mut Sink,
    ticket: &VoiceTicket,
    state: crate::voice::registry::VoiceState,
    participants: Vec<crate::voice::registry::VoiceState>,
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
            "max_packet_bytes": app.voice.config.max_packet_bytes,
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

async fn close_with(sink: &mut Sink, code: u16, reason: String) {
    let _ = send(sink, close_frame(code, reason), Duration::from_secs(2)).await;
    let _ = async { sink.close(None).await }
        .or(async {
            smol::Timer::after(Duration::from_secs(2)).await;
            Ok(())
        })
        .await;
}

/// Runs one voice socket from ticket to close.
async fn run(app: Arc<App>, ws: WebSocketStream<Upgraded>, ticket: Option<VoiceTicket>) {
    let _running = app.voice.session_started();
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
    if let Err((code, reason)) = still_allowed(&app, &ticket) {
        close_with(&mut sink, code, reason).await;
        return;
    }
    let Ok(access) = app.services.voice_access(ticket.user, ticket.channel) else {
        close_with(
            &mut sink,
            close::NOT_ALLOWED,
            "not allowed to connect to this channel".into(),
        )
        .await;
        return;
    };
    let (tx, rx) = async_channel::bounded::<Outbound>(
        app.voice.config.queue_frames.max(1) + crate::voice::room::CONTROL_SLOTS,
    );
    let joined = match app.voice.join(
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
    let conn = joined.conn;
    if send_ready(&app, &mut sink, &ticket, joined.state, joined.participants).await {
        let (from_client_tx, from_client) = async_channel::bounded::<FromClient>(8);
        let reader = smol::spawn(read_loop(
            stream,
            joined.route,
            conn,
            app.voice.config.max_packet_bytes,
            from_client_tx,
        ));
        serve(&app, &ticket, conn, &mut sink, &rx, &from_client).await;
        reader.cancel().await;
    }
    app.voice.leave(ticket.user, conn);
}

/// Whether the ticket's device is still signed in (a ticket outlives a sign-out by up to
/// 30 s).
fn still_allowed(app: &App, ticket: &VoiceTicket) -> Result<(), (u16, String)> {
    let signed_in = if ticket.local {
        app.services
            .device_active(ticket.user, &ticket.jkt)
            .unwrap_or(false)
    } else {
        app.services.get_user(ticket.user).is_ok()
    };
    if signed_in {
        Ok(())
    } else {
        Err((close::SIGNED_OUT, "signed out".into()))
    }
}

/// Reads the client's frames: audio is checked here and handed straight to the room;
/// anything else goes to the session loop.
async fn read_loop(
    mut stream: async_tungstenite::WebSocketReceiver<Upgraded>,
    route: Route,
    conn: crate::voice::room::ConnId,
    max_packet: usize,
    to_session: async_channel::Sender<FromClient>,
) {
    let mut previous_ts: Option<u32> = None;
    let mut allowance = BURST_FRAMES;
    let mut refilled = Instant::now();
    let mut overrun = 0u32;
    loop {
        let item = match stream.next().await {
            None => FromClient::Closed,
            Some(Ok(Message::Binary(bytes))) => {
                let now = Instant::now();
                allowance = (allowance
                    + now.duration_since(refilled).as_secs_f64() * REFILL_PER_SEC)
                    .min(BURST_FRAMES);
                refilled = now;
                match wire::parse_frame(&bytes, max_packet).and_then(|frame| {
                    if let Some(previous) = previous_ts {
                        wire::check_timestamp_step(previous, frame.timestamp)?;
                    }
                    Ok(frame)
                }) {
                    Err(reject) => FromClient::Reject(reject.close_code(), reject.reason()),
                    Ok(frame) => {
                        previous_ts = Some(frame.timestamp);
                        if allowance >= 1.0 {
                            allowance -= 1.0;
                            let room = route.lock().unwrap_or_else(|p| p.into_inner()).clone();
                            room.packet(Inbound {
                                conn,
                                seq: frame.seq,
                                timestamp: frame.timestamp,
                                payload: frame.payload,
                                arrival: crate::voice::now_micros(),
                            });
                            FromClient::Heard
                        } else {
                            overrun += 1;
                            if overrun > MAX_OVERRUN {
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
            Some(Ok(Message::Text(text))) => {
                match serde_json::from_str::<ClientOp>(text.as_str()) {
                    Ok(op) => FromClient::Op(op),
                    Err(e) => FromClient::Reject(
                        close::MALFORMED,
                        Reject::Malformed(format!("unknown text op: {e}")).reason(),
                    ),
                }
            }
            Some(Ok(Message::Close(_))) => FromClient::Closed,
            Some(Ok(_)) => FromClient::Heard,
            Some(Err(WsError::Capacity(_))) => {
                FromClient::Reject(close::TOO_LARGE, "voice frame too large".into())
            }
            Some(Err(e)) => FromClient::Reject(close::MALFORMED, format!("websocket error: {e}")),
        };
        let end = matches!(item, FromClient::Reject(..) | FromClient::Closed);
        // Audio is already with the room; only tell the session that the peer is alive,
        // without waiting on it.
        let delivered = if matches!(item, FromClient::Heard) {
            !matches!(
                to_session.try_send(item),
                Err(async_channel::TrySendError::Closed(_))
            )
        } else {
            to_session.send(item).await.is_ok()
        };
        if !delivered || end {
            break;
        }
    }
}

enum Input {
    Out(Outbound),
    OutClosed,
    Client(FromClient),
    Tick,
}

async fn serve(
    app: &App,
    ticket: &VoiceTicket,
    conn: crate::voice::room::ConnId,
    sink: &mut Sink,
    rx: &async_channel::Receiver<Outbound>,
    from_client: &async_channel::Receiver<FromClient>,
) {
    let heartbeat = Duration::from_secs(app.gateway.config.heartbeat_secs.max(1));
    let mut last_heard = Instant::now();
    let mut last_ping = Instant::now();
    let mut last_check = Instant::now();
    let user = ticket.user;
    loop {
        let input = async {
            match rx.recv().await {
                Ok(out) => Input::Out(out),
                Err(_) => Input::OutClosed,
            }
        }
        .or(async {
            from_client
                .recv()
                .await
                .map(Input::Client)
                .unwrap_or(Input::Client(FromClient::Closed))
        })
        .or(async {
            smol::Timer::after(Duration::from_millis(500)).await;
            Input::Tick
        })
        .await;
        match input {
            Input::Out(Outbound::Audio(frame)) => {
                if !send(sink, Message::Binary(frame.into()), Duration::from_secs(2)).await {
                    return;
                }
            }
            Input::Out(Outbound::Text(text)) => {
                if !send(sink, Message::Text(text.into()), Duration::from_secs(2)).await {
                    return;
                }
            }
            Input::Out(Outbound::Close(code, reason)) => {
                close_with(sink, code, reason).await;
                return;
            }
            Input::OutClosed => {
                close_with(sink, 1001, "the server is shutting down".into()).await;
                return;
            }
            Input::Client(FromClient::Heard) => last_heard = Instant::now(),
            Input::Client(FromClient::Op(op)) => {
                last_heard = Instant::now();
                match op {
                    ClientOp::Ping => {
                        let pong = json!({"op": "pong"}).to_string();
                        if !send(sink, Message::Text(pong.into()), Duration::from_secs(2)).await {
                            return;
                        }
                    }
                    ClientOp::State {
                        self_mute,
                        self_deaf,
                    } => {
                        // The new state comes back as a `state` op through the room
                        // queue (and to everyone on the gateway).
                        // A connection being replaced has no seat any more: nothing to do,
                        // its close is on the way.
                        app.voice.set_self(user, conn, self_mute, self_deaf);
                    }
                }
            }
            Input::Client(FromClient::Reject(code, reason)) => {
                close_with(sink, code, reason).await;
                return;
            }
            Input::Client(FromClient::Closed) => {
                let _ = async { sink.close(None).await }
                    .or(async {
                        smol::Timer::after(Duration::from_secs(1)).await;
                        Ok(())
                    })
                    .await;
                return;
            }
            Input::Tick => {}
        }
        let now = Instant::now();
        if now.duration_since(last_heard) > heartbeat * 2 {
            close_with(sink, close::HEARTBEAT_TIMEOUT, "no answer to pings".into()).await;
            return;
        }
        if now.duration_since(last_ping) >= heartbeat {
            last_ping = now;
            if !send(
                sink,
                Message::Ping(Vec::new().into()),
                Duration::from_secs(2),
            )
            .await
            {
                return;
            }
        }
        if now.duration_since(last_check) >= RECHECK {
            last_check = now;
            if let Err((code, reason)) = still_allowed(app, ticket) {
                close_with(sink, code, reason).await;
                return;
            }
            let Some((_, channel)) = app.voice.seat_of(user) else {
                return;
            };
            match app.services.voice_access(user, channel) {
                Ok(access) => {
                    app.voice.set_suppress(user, conn, !access.speak);
                }
                Err(crate::service::Error::Store(_)) => {}
                Err(_) => {
                    close_with(
                        sink,
                        close::NOT_ALLOWED,
                        "no longer allowed in this voice channel".into(),
                    )
                    .await;
                    return;
                }
            }
        }
    }
}
