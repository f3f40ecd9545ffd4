//! Handlers of the signed-in user's own account: sign-out, profile, deletion, relinking,
//! key backup, devices, and the hosts allowed to push to them.

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{json, json_body, no_content, services, text_param, ApiResult, Req};
use crate::service::push;
use crate::service::{accounts, Error};
use serde::Deserialize;
use serde_json::json;

pub async fn logout(req: Req, me: Principal) -> ApiResult {
    services(&req).remove_device(me.user, &me.jkt).await?;
    req.state().services.signed_out(me.user, Some(&me.jkt));
    no_content()
}

pub async fn me(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).own_user(me.user)?)
}

pub async fn update_me(mut req: Req, me: Principal) -> ApiResult {
    let update: accounts::ProfileUpdate = json_body(&mut req).await?;
    let own = services(&req).update_me(me.user, update).await?;
    json(200, &own)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteAccount {
    password: String,
}

pub async fn delete_me(mut req: Req, me: Principal) -> ApiResult {
    let body: DeleteAccount = json_body(&mut req).await?;
    let app = req.state().clone();
    app.services
        .delete_account(&app.login_limiter, me.user, &body.password)
        .await?;
    app.services.signed_out(me.user, None);
    no_content()
}

pub async fn relink(req: Req, me: Principal) -> ApiResult {
    let own = services(&req).relink(me.user).await?;
    json(200, &own)
}

pub async fn key_backup(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &json!({ "key_backup": services(&req).key_backup(me.user)? }),
    )
}

pub async fn devices(req: Req, me: Principal) -> ApiResult {
    json(200, &services(&req).list_devices(me.user, &me.jkt)?)
}

pub async fn remove_device(req: Req, me: Principal) -> ApiResult {
    let device = text_param(&req, "device")?;
    services(&req).remove_device(me.user, &device).await?;
    req.state().services.signed_out(me.user, Some(&device));
    no_content()
}

pub async fn push_delegations(req: Req, me: Principal) -> ApiResult {
    let list = push::list_delegations(&req.state().services, me.user).map_err(Error::Store)?;
    json(200, &list)
}

#[derive(Deserialize)]
struct HostQuery {
    host: String,
}

fn host_query(req: &Req) -> Result<String, ApiError> {
    let query: HostQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "host is required"))?;
    crate::federation::normalize_origin(&query.host)
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}

/// `DELETE /users/@me/push-delegations?host=`: revokes the host's tokens and stops new ones.
pub async fn revoke_push_delegation(req: Req, me: Principal) -> ApiResult {
    let host = host_query(&req)?;
    let (tokens, already) = push::revoke_delegation(&req.state().services, me.user, host)
        .await
        .map_err(Error::Store)?;
    if tokens == 0 && already {
        return Err(ApiError::new(
            404,
            "unknown_delegation",
            "push to that host is already revoked",
        ));
    }
    no_content()
}

/// `PUT /users/@me/push-delegations?host=`: lets a revoked host get tokens again.
pub async fn allow_push_delegation(req: Req, me: Principal) -> ApiResult {
    let host = host_query(&req)?;
    if !push::allow_host(&req.state().services, me.user, host)
        .await
        .map_err(Error::Store)?
    {
        return Err(ApiError::new(
            404,
            "unknown_delegation",
            "push to that host was not revoked",
        ));
    }
    no_content()
}
