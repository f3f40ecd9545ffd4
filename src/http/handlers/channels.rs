//! Handlers of channels: listing and making them in a guild, reading, changing and
//! deleting one, and typing in it.

use crate::http::auth::Principal;
use crate::http::{id_param, json, json_body, no_content, services, ApiResult, Req};
use crate::service::channels;

pub async fn list_channels(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_channels(me.user, id_param(&req, "guild_id")?)?,
    )
}

pub async fn create_channel(mut req: Req, me: Principal) -> ApiResult {
    let body: channels::NewChannel = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    json(
        201,
        &services(&req).create_channel(me.user, guild, body).await?,
    )
}

pub async fn get_channel(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).get_channel(me.user, id_param(&req, "channel_id")?)?,
    )
}

pub async fn update_channel(mut req: Req, me: Principal) -> ApiResult {
    let body: channels::ChannelUpdate = json_body(&mut req).await?;
    let channel = id_param(&req, "channel_id")?;
    json(
        200,
        &services(&req)
            .update_channel(me.user, channel, body)
            .await?,
    )
}

pub async fn delete_channel(req: Req, me: Principal) -> ApiResult {
    services(&req)
        .delete_channel(me.user, id_param(&req, "channel_id")?)
        .await?;
    no_content()
}

pub async fn typing(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let app = req.state();
    crate::gateway::typing(&app.services, &app.gateway, me.user, channel)?;
    no_content()
}
