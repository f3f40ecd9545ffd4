//! Handlers of the box itself: claiming it from a browser (`POST /api/v1/setup`), its icon,
//! its settings and accounts for administrators (`/api/v1/admin/settings`,
//! `/api/v1/admin/users…`), and the password-reset links they hand out
//! (`/api/v1/password-resets/:secret`). Every admin route checks, as the peer routes do,
//! that the caller is a local administrator signed in with this box's own token.

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{json, json_body, no_content, services, text_param, ApiResult, Req};
use crate::model::UserId;
use crate::service::{admin_users, setup};
use serde::Deserialize;
use serde_json::json;

fn require_admin(req: &Req, me: &Principal) -> Result<(), ApiError> {
    crate::http::federation::require_admin_for(req, me, "manage the box")
}

/// `POST /api/v1/setup`: claims an unclaimed box (see [`setup::Claim`]). A browser's
/// request must come from a page of this box: the API answers every origin, and a page
/// of another site open on the LAN could otherwise claim a box that needs no code.
pub async fn claim(mut req: Req) -> ApiResult {
    if let Some(from) = crate::http::auth::header_values(&req, "Origin").first() {
        if !req.state().origins.serves(from) {
            return Err(ApiError::new(
                403,
                "cross_origin_setup",
                "a box is set up only from its own page",
            ));
        }
    }
    let body: setup::Claim = json_body(&mut req).await?;
    let app = req.state().clone();
    let address = crate::http::client_address(&req);
    let user = app.services.claim(body, &app.throttle, &address).await?;
    json(
        201,
        &json!({
            "user": crate::service::profiles::PublicUser::of(&user, &app.services.origin),
            "box": app.services.box_info()?,
        }),
    )
}

/// `GET /api/v1/box/icon`: the box's icon, 404 when it has none.
pub async fn icon(req: Req) -> ApiResult {
    let Some((kind, bytes)) = services(&req).box_icon()? else {
        return Err(ApiError::new(404, "unknown_icon", "this box has no icon"));
    };
    let mut response = tide::Response::new(200);
    response.set_body(bytes);
    response.insert_header("Content-Type", kind);
    response.insert_header("X-Content-Type-Options", "nosniff");
    response.insert_header("Cache-Control", "no-cache");
    Ok(response)
}

/// `GET /api/v1/admin/settings`.
pub async fn get_settings(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    json(200, &services(&req).box_settings_view()?)
}

/// `PATCH /api/v1/admin/settings` `{name?, description?, icon?, registration?}`.
pub async fn update_settings(mut req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let body: setup::BoxUpdate = json_body(&mut req).await?;
    json(200, &services(&req).update_box_settings(body).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: String,
    limit: Option<usize>,
}

/// `GET /api/v1/admin/users?q=&after=&limit=`.
pub async fn list_users(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let query: UsersQuery = req.query().map_err(|e| {
        ApiError::bad_request("invalid_query", format!("bad query parameters: {e}"))
    })?;
    let page =
        services(&req).admin_list_users(&query.q, &query.after, query.limit.unwrap_or(50))?;
    json(200, &page)
}

/// `POST /api/v1/admin/users` `{username, password, identity_key, key_backup, admin?}`.
pub async fn create_user(mut req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let body: admin_users::NewUser = json_body(&mut req).await?;
    json(201, &services(&req).admin_create_user(body).await?)
}

fn user_id(req: &Req) -> Result<UserId, ApiError> {
    UserId::parse(req.param("user_id").unwrap_or(""))
        .ok_or_else(|| ApiError::new(404, "unknown_user", "not a valid user id"))
}

/// `PATCH /api/v1/admin/users/:user_id` `{admin?, disabled?}`.
pub async fn change_user(mut req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let id = user_id(&req)?;
    let body: admin_users::UserChange = json_body(&mut req).await?;
    json(200, &services(&req).admin_change_user(id, body).await?)
}

/// `DELETE /api/v1/admin/users/:user_id`.
pub async fn delete_user(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let id = user_id(&req)?;
    services(&req).admin_delete_user(id).await?;
    no_content()
}

/// `POST /api/v1/admin/users/:user_id/reset-link` → `{url, expires_at}`.
pub async fn reset_link(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let id = user_id(&req)?;
    json(201, &services(&req).admin_reset_link(id).await?)
}

/// `GET /api/v1/password-resets/:secret` → `{username, expires_at}`.
pub async fn reset_preview(req: Req) -> ApiResult {
    let secret = text_param(&req, "secret")?;
    json(200, &services(&req).reset_preview(&secret)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
    #[serde(default)]
    key_backup: Option<String>,
}

/// `POST /api/v1/password-resets/:secret` `{password, key_backup?}` → `{username}`.
pub async fn reset_password(mut req: Req) -> ApiResult {
    let secret = text_param(&req, "secret")?;
    let body: NewPassword = json_body(&mut req).await?;
    let username = services(&req)
        .reset_password(&secret, &body.password, body.key_backup)
        .await?;
    json(200, &json!({ "username": username }))
}
