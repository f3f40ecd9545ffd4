//! Handlers of a channel's messages, their reactions, and its pins.

use crate::http::auth::Principal;
use crate::http::error::ApiError;
use crate::http::{
    id_param, json, json_body, no_content, services, text_param, throttle, user_param, Action,
    ApiResult, Req,
};
use crate::model::Id;
use crate::service::messages;
use serde::Deserialize;

#[derive(Deserialize)]
struct PageQuery {
    before: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn list_messages(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let query: PageQuery = req.query().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            "before/after must be ids and limit a number",
        )
    })?;
    let parse = |v: Option<String>| -> Result<Option<Id>, ApiError> {
        v.map(|t| {
            Id::parse(&t).ok_or_else(|| {
                ApiError::bad_request("invalid_query", "before/after must be message ids")
            })
        })
        .transpose()
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1-100",
        ));
    }
    let page = messages::Page {
        before: parse(query.before)?,
        after: parse(query.after)?,
        limit,
    };
    json(200, &services(&req).list_messages(me.user, channel, page)?)
}

pub async fn create_message(mut req: Req, me: Principal) -> ApiResult {
    throttle(&req, Action::Message, Some(me.user))?;
    let body: messages::NewMessage = json_body(&mut req).await?;
    let channel = id_param(&req, "channel_id")?;
    let posted = services(&req)
        .create_message(me.user, channel, body)
        .await?;
    json(201, &posted)
}

pub async fn get_message(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    json(200, &services(&req).get_message(me.user, channel, message)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    content: String,
}

pub async fn edit_message(mut req: Req, me: Principal) -> ApiResult {
    let body: EditBody = json_body(&mut req).await?;
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    json(
        200,
        &services(&req)
            .edit_message(me.user, channel, message, body.content)
            .await?,
    )
}

pub async fn delete_message(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    services(&req)
        .delete_message(me.user, channel, message)
        .await?;
    no_content()
}

pub async fn add_reaction(req: Req, me: Principal) -> ApiResult {
    throttle(&req, Action::Reaction, Some(me.user))?;
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    let emoji = text_param(&req, "emoji")?;
    json(
        200,
        &services(&req)
            .add_reaction(me.user, channel, message, emoji)
            .await?,
    )
}

pub async fn remove_own_reaction(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    let emoji = text_param(&req, "emoji")?;
    json(
        200,
        &services(&req)
            .remove_reaction(me.user, channel, message, emoji, me.user)
            .await?,
    )
}

pub async fn remove_reaction(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    let emoji = text_param(&req, "emoji")?;
    let user = user_param(&req, "user_id", &me)?;
    json(
        200,
        &services(&req)
            .remove_reaction(me.user, channel, message, emoji, user)
            .await?,
    )
}

pub async fn list_pins(req: Req, me: Principal) -> ApiResult {
    json(
        200,
        &services(&req).list_pins(me.user, id_param(&req, "channel_id")?)?,
    )
}

pub async fn pin(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    json(
        200,
        &services(&req)
            .set_pinned(me.user, channel, message, true)
            .await?,
    )
}

pub async fn unpin(req: Req, me: Principal) -> ApiResult {
    let channel = id_param(&req, "channel_id")?;
    let message = id_param(&req, "message_id")?;
    json(
        200,
        &services(&req)
            .set_pinned(me.user, channel, message, false)
            .await?,
    )
}
