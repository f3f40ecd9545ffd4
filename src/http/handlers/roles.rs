//! Handlers of a guild's roles: list, create, change, delete.

use crate::http::auth::Principal;
use crate::http::{id_param, json, json_body, no_content, services, ApiResult, Req};
use crate::service::roles;

pub async fn list_roles(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_roles(me.user, id_param(&req, "guild_id")?)?,
    )
}

pub async fn create_role(mut req: Req, me: Principal) -> ApiResult {
    let body: roles::RoleUpdate = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    json(
        201,
        &services(&req).create_role(me.user, guild, body).await?,
    )
}

pub async fn update_role(mut req: Req, me: Principal) -> ApiResult {
    let body: roles::RoleUpdate = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    let role = id_param(&req, "role_id")?;
    json(
        200,
        &services(&req)
            .update_role(me.user, guild, role, body)
            .await?,
    )
}

pub async fn delete_role(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let role = id_param(&req, "role_id")?;
    services(&req).delete_role(me.user, guild, role).await?;
    no_content()
}
