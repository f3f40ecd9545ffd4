//! Handlers of read states: the start-up summary of every channel the user can see here,
//! and marking a channel, a guild or the whole box read.

use crate::http::auth::Principal;
use crate::http::{id_param, json, json_body, services, throttle, Action, ApiResult, Req};
use crate::model::Id;
use serde::Deserialize;

/// Body of `PUT /api/v1/channels/:channel_id/read`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadUpTo {
    /// The last message read, a message of the channel.
    message_id: Id,
}

pub async fn summary(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).read_states(me.user)?)
}

pub async fn mark_channel(mut req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    throttle(&req, Action::ReadMark, Some(me.user))?;
    let body: ReadUpTo = json_body(&mut req).await?;
    json(
        200,
        &services(&req)
            .mark_read(me.user, channel, body.message_id)
            .await?,
    )
}

pub async fn mark_guild(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    throttle(&req, Action::ReadMark, Some(me.user))?;
    json(200, &services(&req).mark_guild_read(me.user, guild).await?)
}

pub async fn mark_box(req: Req, me: Principal) -> ApiResult {
    throttle(&req, Action::ReadMark, Some(me.user))?;
    json(200, &services(&req).mark_all_read(me.user).await?)
}
