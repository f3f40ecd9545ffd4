//! Handlers of a guild's members: listing, nicknames, leaving and kicks, their roles,
//! bans, and the ban notifications other servers sent.

use crate::app::App;
use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{id_param, json, json_body, no_content, services, user_param, ApiResult, Req};
use crate::model::UserId;
use crate::service::{members, Error};
use serde::Deserialize;

/// Refreshes the stale profiles of the remote users among `members` (served as cached).
async fn refresh_members<'a>(app: &App, members: impl Iterator<Item = &'a members::MemberView>) {
    let remote: Vec<UserId> = members
        .filter(|m| {
            m.user
                .as_ref()
                .is_some_and(|u| u.homeserver != app.services.origin)
        })
        .map(|m| m.member.user_id)
        .collect();
    app.services.refresh_on_lookup(&remote).await;
}

#[derive(Deserialize)]
struct MemberQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn list_members(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let query: MemberQuery = req.query().map_err(|_| {
        ApiError::bad_request("invalid_query", "after must be a user id, limit a number")
    })?;
    let after = match query.after {
        Some(a) => Some(
            UserId::parse(&a)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "after must be a user id"))?,
        ),
        None => None,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let members = services(&req).list_members(me.user, guild, after, limit)?;
    refresh_members(req.state(), members.iter()).await;
    json(200, &members)
}

pub async fn get_member(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    let member = services(&req).get_member(me.user, guild, user)?;
    refresh_members(req.state(), std::iter::once(&member)).await;
    json(200, &member)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    nick: String,
}

pub async fn update_member(mut req: Req, me: Principal) -> ApiResult {
    let body: MemberBody = json_body(&mut req).await?;
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    if user != me.user {
        return Err(ApiError::new(
            403,
            "forbidden",
            "you can only change your own nickname",
        ));
    }
    json(
        200,
        &services(&req).set_nick(me.user, guild, body.nick).await?,
    )
}

pub async fn remove_member(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    if user == me.user {
        services(&req).leave_guild(me.user, guild).await?;
    } else {
        services(&req).kick(me.user, guild, user).await?;
    }
    no_content()
}

pub async fn add_member_role(req: Req, me: Principal) -> ApiResult {
    set_member_role(req, me, true).await
}

pub async fn remove_member_role(req: Req, me: Principal) -> ApiResult {
    set_member_role(req, me, false).await
}

async fn set_member_role(req: Req, me: Principal, assign: bool) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    let role = id_param(&req, "role_id")?;
    json(
        200,
        &services(&req)
            .set_member_role(me.user, guild, user, role, assign)
            .await?,
    )
}

pub async fn list_bans(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_bans(me.user, id_param(&req, "guild_id")?)?,
    )
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BanBody {
    #[serde(default)]
    reason: String,
}

pub async fn ban(mut req: Req, me: Principal) -> ApiResult {
    let body: BanBody = if req.len().unwrap_or(0) == 0 {
        BanBody::default()
    } else {
        json_body(&mut req).await?
    };
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    let ban = services(&req)
        .ban(me.user, guild, user, body.reason)
        .await?;
    json(200, &ban)
}

pub async fn unban(req: Req, me: Principal) -> ApiResult {
    let guild = id_param(&req, "guild_id")?;
    let user = user_param(&req, "user_id", &me)?;
    services(&req).unban(me.user, guild, user).await?;
    no_content()
}

#[derive(Deserialize)]
struct BanNotificationQuery {
    user_id: Option<String>,
}

pub async fn ban_notifications(req: Req, me: Principal) -> ApiResult {
    crate::http::federation::require_admin_for(&req, &me, "see ban notifications")?;
    let query: BanNotificationQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "user_id must be a user id"))?;
    let user = query
        .user_id
        .map(|u| {
            UserId::parse(&u)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "user_id must be a user id"))
        })
        .transpose()?;
    let list =
        crate::service::ban_notices::list(&req.state().services, user).map_err(Error::Store)?;
    json(
        200,
        &list
            .iter()
            .map(crate::service::ban_notices::view)
            .collect::<Vec<_>>(),
    )
}
