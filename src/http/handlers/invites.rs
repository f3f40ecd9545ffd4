//! Handlers of invites: the public preview, listing, making, joining and revoking.

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{id_param, json, json_body, no_content, services, text_param, ApiResult, Req};
use crate::model::Invite;
use crate::service::invites;
use serde_json::Value;

pub async fn preview_invite(req: Req) -> ApiResult {
    let code = text_param(&req, "code")?;
    json(200, &services(&req).preview_invite(&code)?)
}

/// An invite as answered to `me`: with its link, `url` (see [`invites::invite_url`]),
/// naming the origin `me` addressed, as the gateway's ticket URL does.
fn with_url(req: &Req, me: &Principal, invite: &Invite) -> Result<Value, ApiError> {
    let url = invites::invite_url(
        &me.origin,
        &invite.code,
        req.state().tls_fingerprint.get().map(String::as_str),
    );
    let mut answer = serde_json::to_value(invite).map_err(|e| {
        ApiError::new(
            500,
            "internal_error",
            format!("could not encode the answer: {e}"),
        )
    })?;
    answer["url"] = Value::from(url);
    Ok(answer)
}

pub async fn list_invites(req: Req, me: Principal) -> ApiResult {
    let listed = services(&req).list_invites(me.user, id_param(&req, "guild_id")?)?;
    let answer = listed
        .iter()
        .map(|invite| with_url(&req, &me, invite))
        .collect::<Result<Vec<_>, _>>()?;
    json(200, &answer)
}

pub async fn join_invite(req: Req, me: Principal) -> ApiResult {
    let code = text_param(&req, "code")?;
    json(200, &services(&req).join_invite(me.user, code).await?)
}

pub async fn revoke_invite(req: Req, me: Principal) -> ApiResult {
    let code = text_param(&req, "code")?;
    services(&req).revoke_invite(me.user, code).await?;
    no_content()
}

pub async fn create_invite(mut req: Req, me: Principal) -> ApiResult {
    let body: invites::NewInvite = if req.len().unwrap_or(0) == 0 {
        invites::NewInvite::default()
    } else {
        json_body(&mut req).await?
    };
    let channel = id_param(&req, "channel_id")?;
    let invite = services(&req).create_invite(me.user, channel, body).await?;
    json(201, &with_url(&req, &me, &invite)?)
}
