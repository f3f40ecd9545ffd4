//! Handlers of the signed-in user's notification settings on this box: the box level,
//! and each guild and channel (or DM) it hosts.

use crate::http::auth::Principal;
use crate::http::{
    id_param, json, json_body, no_content, services, throttle, Action, ApiResult, Req,
};
use crate::model::NotifySettings;
use crate::service::notifications::Scope;

/// `GET /users/@me/notification-settings`: `{box, guilds: {id: settings}, channels: {id:
/// settings}}`.
pub async fn list(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).notification_settings(me.user)?)
}

async fn put(mut req: Req, me: Principal, scope: Scope) -> ApiResult {
    throttle(&req, Action::Settings, Some(me.user))?;
    let settings: NotifySettings = json_body(&mut req).await?;
    let saved = services(&req)
        .set_notification_settings(me.user, scope, settings)
        .await?;
    json(200, &saved)
}

async fn delete(req: Req, me: Principal, scope: Scope) -> ApiResult {
    throttle(&req, Action::Settings, Some(me.user))?;
    services(&req)
        .clear_notification_settings(me.user, scope)
        .await?;
    no_content()
}

/// `PUT /users/@me/notification-settings/box`.
pub async fn put_box(req: Req, me: Principal) -> ApiResult {
    put(req, me, Scope::Box).await
}

/// `PUT /users/@me/notification-settings/guilds/:guild_id`.
pub async fn put_guild(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    put(req, me, Scope::Guild(guild)).await
}

/// `PUT /users/@me/notification-settings/channels/:channel_id`.
pub async fn put_channel(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    put(req, me, Scope::Channel(channel)).await
}

/// `DELETE /users/@me/notification-settings/guilds/:guild_id`: the guild inherits again.
pub async fn delete_guild(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    delete(req, me, Scope::Guild(guild)).await
}

/// `DELETE /users/@me/notification-settings/channels/:channel_id`: the channel inherits
/// again.
pub async fn delete_channel(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    delete(req, me, Scope::Channel(channel)).await
}
