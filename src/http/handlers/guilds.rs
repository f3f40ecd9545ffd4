//! Handlers of guilds: the user's list, create, read, change, delete, and who is online.

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{id_param, json, json_body, no_content, services, ApiResult, Req};
use serde::Deserialize;

pub async fn my_guilds(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).my_guilds(me.user)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuildBody {
    name: Option<String>,
    description: Option<String>,
}

pub async fn create_guild(mut req: Req, me: Principal) -> ApiResult {
    let body: GuildBody = json_body(&mut req).await?;
    let name = body
        .name
        .ok_or_else(|| ApiError::bad_request("missing_field", "name is required"))?;
    let view = services(&req)
        .create_guild(me.user, &name, body.description.as_deref().unwrap_or(""))
        .await?;
    json(201, &view)
}

pub async fn get_guild(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).get_guild(me.user, id_param(&req, "guild_id")?)?,
    )
}

pub async fn update_guild(mut req: Req, me: Principal) -> ApiResult {
    let body: GuildBody = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    json(
        200,
        &services(&req)
            .update_guild(me.user, guild, body.name, body.description)
            .await?,
    )
}

pub async fn delete_guild(req: Req, me: Principal) -> ApiResult {
    services(&req)
        .delete_guild(me.user, id_param(&req, "guild_id")?)
        .await?;
    no_content()
}

pub async fn presences(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let app = req.state();
    json(
        200,
        &app.services
            .presences(me.user, guild, |u| app.gateway.hub.is_online(u))?,
    )
}
