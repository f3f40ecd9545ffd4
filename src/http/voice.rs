//! Voice over HTTP: tickets, the upgrade to the voice socket, listing and moderation.
//!
//! A client asks `POST /api/v1/channels/{id}/voice` for a single-use ticket (CONNECT is
//! checked there), then opens `GET /api/v1/voice?ticket=…`. Opening the socket joins the
//! room; closing it leaves. The socket itself runs in [`crate::voice::session`]. See
//! docs/protocol.md, "Voice".

use super::auth::Principal;
use super::error::ApiError;
use super::gateway::{accept_websocket, query_ticket};
use super::{json, json_body, ApiResult, Req};
use crate::model::{Id, Permissions};
use crate::system::now;
use crate::voice::registry::JoinError;
use crate::voice::wire::{self, close};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// `POST /api/v1/channels/{channel_id}/voice`: a ticket for joining the room.
pub async fn ticket(req: Req, me: Principal) -> ApiResult {
    let channel = super::id_param(&req, "channel_id")?;
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
    let app = req.state();
    let ticket = query_ticket(&req).and_then(|t| app.voice.redeem_ticket(&t, now()));
    // Audio frames are small; JSON ops smaller still.
    let max = wire::HEADER_BYTES + app.voice.config.max_packet_bytes.max(64) + 64;
    let (services, voice) = (app.services.clone(), app.voice.clone());
    let heartbeat = Duration::from_secs(app.gateway.config.heartbeat_secs.max(1));
    accept_websocket(&req, max.max(4096), 2048, move |ws| {
        crate::voice::session::run(services, voice, heartbeat, ws, ticket)
    })
    .await
}

/// `GET /api/v1/channels/{channel_id}/voice`: who is in a voice channel.
pub async fn participants(req: Req, me: Principal) -> ApiResult {
    let channel = super::id_param(&req, "channel_id")?;
    let app = req.state();
    app.services.voice_visible(me.user, channel)?;
    json(200, &app.voice.participants(channel))
}

/// `GET /api/v1/guilds/{guild_id}/voice`: who is in each voice channel the caller sees.
pub async fn guild_states(req: Req, me: Principal) -> ApiResult {
    let guild = super::id_param(&req, "guild_id")?;
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
    let guild = super::id_param(&req, "guild_id")?;
    let target = super::user_param(&req, "user_id", &me)?;
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
