//! The gateway's HTTP side: the ticket endpoint and the websocket upgrade.

use super::auth::Principal;
use super::error::ApiError;
use super::{json, ApiResult, Req};
use crate::system::now;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use serde_json::json;

/// `POST /api/v1/gateway/ticket`: a single-use ticket for opening the websocket.
pub async fn ticket(req: Req, me: Principal) -> ApiResult {
    let app = req.state();
    let ticket = app
        .gateway
        .issue_ticket(me.user, &me.jkt, me.local, now())
        .map_err(|refused| {
            ApiError::new(429, "rate_limited", refused.to_string())
                .with_header("Retry-After", refused.retry_after().to_string())
        })?;
    let base = format!("{}/api/v1/gateway", me.origin);
    let ws_base = base
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            base.strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| base.to_string());
    json(
        200,
        &json!({
            "ticket": ticket,
            "url": format!("{ws_base}?ticket={ticket}"),
            "expires_in": crate::gateway::TICKET_SECS,
        }),
    )
}

/// `GET /api/v1/gateway?ticket=…`: upgrades to a websocket. A bad ticket still upgrades
/// and is then closed with code 4001 and a reason, since browsers cannot read the status
/// of a refused handshake.
pub async fn upgrade(req: Req) -> ApiResult {
    let app = req.state();
    let ticket = query_ticket(&req).and_then(|t| app.gateway.redeem_ticket(&t, now()));
    let max = app.gateway.config.max_frame_bytes;
    let (services, gateway) = (app.services.clone(), app.gateway.clone());
    accept_websocket(&req, max, 1024, move |ws| {
        crate::gateway::session::run(services, gateway, ws, ticket)
    })
    .await
}

/// The `ticket` query parameter.
pub(super) fn query_ticket(req: &Req) -> Option<String> {
    req.url()
        .query_pairs()
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
}

/// The upgraded connection a websocket runs over.
pub(super) type Upgraded = tide::http::upgrade::Connection;

/// Answers a websocket handshake (101) and runs `session` over the socket once the
/// connection is handed over, on the app's executor. `max_message` bounds each frame and
/// message the peer sends.
pub(super) async fn accept_websocket<F, Fut>(
    req: &Req,
    max_message: usize,
    read_buffer: usize,
    session: F,
) -> ApiResult
where
    F: FnOnce(async_tungstenite::WebSocketStream<Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let header = |name: &str| req.header(name).map(|v| v.as_str().to_string());
    let wants_websocket = header("Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && header("Connection").is_some_and(|c| {
            c.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    let Some(key) = header("Sec-WebSocket-Key").filter(|_| wants_websocket) else {
        return Err(ApiError::new(
            426,
            "upgrade_required",
            "this endpoint speaks websocket only",
        )
        .with_header("Upgrade", "websocket".into()));
    };
    if header("Sec-WebSocket-Version").as_deref() != Some("13") {
        return Err(
            ApiError::new(426, "upgrade_required", "websocket version 13 is required")
                .with_header("Sec-WebSocket-Version", "13".into()),
        );
    }
    let mut response = tide::http::Response::new(tide::StatusCode::SwitchingProtocols);
    response.insert_header("Upgrade", "websocket");
    response.insert_header("Connection", "Upgrade");
    response.insert_header("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes()));
    let upgraded = response.recv_upgrade().await;
    let config = WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    req.state()
        .executor
        .spawn(async move {
            if let Some(connection) = upgraded.await {
                let ws = async_tungstenite::WebSocketStream::from_raw_socket(
                    connection,
                    Role::Server,
                    Some(config),
                )
                .await;
                session(ws).await;
            }
        })
        .detach();
    Ok(response.into())
}
