//! Handlers of invites: the public preview, listing, making, joining and revoking.

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{id_param, json, json_body, no_content, services, text_param, ApiResult, Req};
use crate::service::invites;

pub async fn preview_invite(req: Req) -> ApiResult {
    let code = text_param(&req, "code")?;
    json(200, &services(&req).preview_invite(&code)?)
}

pub async fn list_invites(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_invites(me.user, id_param(&req, "guild_id")?)?,
    )
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
    // The link names the origin the maker addressed, as the gateway's ticket URL does.
    let url = invites::invite_url(
        &me.origin,
        &invite.code,
        req.state().tls_fingerprint.get().map(String::as_str),
    );
    let mut answer = serde_json::to_value(&invite).map_err(|e| {
        ApiError::new(
            500,
            "internal_error",
            format!("could not encode the answer: {e}"),
        )
    })?;
    answer["url"] = serde_json::Value::from(url);
    json(201, &answer)
}
