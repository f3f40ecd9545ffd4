//! Handlers for other users: the directory search and one user's profile.

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{json, user_param, ApiResult, Req};
use crate::service::Error;
use serde::Deserialize;

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
    limit: Option<usize>,
}

pub async fn search_users(req: Req, _me: Principal) -> ApiResult {
    let query: SearchQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "q is text, limit a number"))?;
    let q = query.q.unwrap_or_default();
    crate::service::remote_users::check_query(&q).map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "q must be 1 to {} characters",
                crate::service::remote_users::MAX_QUERY_CHARS
            ),
        )
    })?;
    let limit = query
        .limit
        .unwrap_or(crate::service::remote_users::DEFAULT_SEARCH_LIMIT);
    let found = crate::federation::directory::search(&req.state().federation, &q, limit).await?;
    json(200, &found)
}

pub async fn user(req: Req, me: Principal) -> ApiResult {
    let id = user_param(&req, "user_id", &me)?;
    let app = req.state();
    // A shadow account's profile as cached here, or a remote user the directory knows.
    let user = crate::service::remote_users::lookup(&app.services, id)
        .map_err(Error::Store)?
        .ok_or(Error::NotFound("user"))?;
    if user.homeserver != app.services.origin {
        app.services.refresh_on_lookup(&[id]).await;
    }
    json(200, &user)
}
