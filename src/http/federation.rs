//! Inbound server-to-server calls (`POST /federation/v1/{call}`), the administrators'
//! peer API (`/api/v1/admin/peers`, and `/api/v1/admin/discovered` for servers heard on
//! the LAN), and the peers as this box's users see them (`/api/v1/peers`).

use super::auth::Principal;
use super::error::ApiError;
use super::{json, json_body, no_content, read_body, ApiResult, Req};
use crate::federation::calls::Answer;
use crate::federation::{self, peer_view, signature, FederationError};
use serde::Deserialize;
use serde_json::Value;

impl From<FederationError> for ApiError {
    fn from(error: FederationError) -> ApiError {
        let message = error.to_string();
        match error {
            FederationError::Signature(
                signature::SignatureError::UnsignedAnswer(_)
                | signature::SignatureError::AnswerMismatch(_),
            ) => ApiError::new(502, "peer_unverified", message),
            FederationError::Signature(e) => {
                let (code, message) = match e {
                    signature::SignatureError::UnknownPeer(_) => ("not_a_peer", message),
                    signature::SignatureError::Replay => ("replayed_call", message),
                    signature::SignatureError::Expired => (
                        signature::CLOCK_SKEW,
                        format!(
                            "{message}: this server's clock reads {} (see its /.well-known/hearth `time`)",
                            crate::system::now()
                        ),
                    ),
                    _ => ("invalid_signature", message),
                };
                ApiError::new(401, code, message)
            }
            FederationError::FingerprintMismatch { .. } => {
                ApiError::new(409, "fingerprint_mismatch", message)
            }
            FederationError::Invalid(_) => ApiError::new(400, "invalid_call", message),
            FederationError::Peer(_) | FederationError::Outbound(_) => {
                ApiError::new(502, "peer_unreachable", message)
            }
            FederationError::Service(e) => e.into(),
            FederationError::Store(e) => crate::service::Error::Store(e).into(),
        }
    }
}

/// `POST /federation/v1/:call`.
pub async fn inbound(mut req: Req) -> ApiResult {
    let limit = req.state().services.config.limits.max_body_bytes;
    let body = read_body(&mut req, limit).await?;
    let signature = req
        .header(signature::HEADER)
        .map(|v| v.as_str().to_string())
        .ok_or_else(|| {
            ApiError::new(
                401,
                "invalid_signature",
                "server calls must carry Hearth-Signature",
            )
        })?;
    let call_name = req.param("call").unwrap_or("").to_string();
    let path = req.url().path().to_string();
    let app = req.state().clone();
    let call =
        federation::verify_inbound(&app.federation, "POST", &path, &signature, &body).await?;
    // From here on every answer, refusals included, is signed for this call.
    let answered = match serde_json::from_slice::<Value>(&body) {
        Ok(value) => federation::calls::handle(&app.federation, &call.iss, &call_name, &value)
            .await
            .map_err(ApiError::from)
            .and_then(|answer| {
                let (status, body) = match answer {
                    Answer::Done(body) => (200, body),
                    Answer::Forbidden(body) => (403, body),
                    Answer::NotFound(body) => (404, body),
                    Answer::Conflict(body) => (409, body),
                    Answer::Moved(body) => (410, body),
                };
                json(status, &body)
            }),
        Err(e) => Err(ApiError::bad_request(
            "invalid_json",
            format!("the call body is not JSON: {e}"),
        )),
    };
    let response = answered.unwrap_or_else(ApiError::into_response);
    sign_answer(&app, &call.jti, response).await
}

/// Signs `response` (status and body) for the call or challenge `rid` with the server key,
/// in `Hearth-Signature` (see [`signature`]).
pub async fn sign_answer(
    app: &crate::app::App,
    rid: &str,
    mut response: tide::Response,
) -> ApiResult {
    let body = response.take_body().into_bytes().await.map_err(|e| {
        ApiError::new(
            500,
            "internal_error",
            format!("could not read the answer: {e}"),
        )
    })?;
    let services = &app.services;
    let signed = signature::sign_answer(
        &services.server_key,
        &services.origin,
        rid,
        response.status().into(),
        &body,
    );
    response.set_body(body);
    response.set_content_type(tide::http::mime::JSON);
    response.insert_header(signature::HEADER, signed);
    Ok(response)
}

/// Refuses unless `me` is an administrator of this server: a user homed here, signed in
/// with this server's own token, whose account says so. A user homed elsewhere (a shadow
/// account, or an administrator who migrated away) never is, whatever their record says.
pub fn require_admin_for(req: &Req, me: &Principal, what: &str) -> Result<(), ApiError> {
    let user = req.state().services.get_user(me.user)?;
    if me.local && user.homeserver.is_empty() && user.is_admin {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            "forbidden",
            format!("only administrators of this server {what}"),
        ))
    }
}

fn require_admin(req: &Req, me: &Principal) -> Result<(), ApiError> {
    require_admin_for(req, me, "manage peers")
}

/// `GET /api/v1/admin/peers`: each pinned peer with what the last call to it showed
/// (from memory) and the calls waiting for it in the outbox.
pub async fn list_peers(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let fed = &req.state().federation;
    let peers = federation::list_peers(fed)?;
    let mut waiting: std::collections::HashMap<String, u64> = Default::default();
    for item in
        crate::service::outbox::pending(&fed.services).map_err(crate::service::Error::Store)?
    {
        *waiting.entry(item.target).or_default() += 1;
    }
    let listing: Vec<Value> = peers
        .iter()
        .map(|peer| {
            let contact = fed.contacts.get(&peer.origin);
            let mut view = peer_view(peer);
            view["tls_fingerprint"] = Value::from(fed.tls_pins.get(&peer.origin));
            view["last_contact"] = Value::from(contact.last_contact);
            view["reachable"] = Value::from(contact.reachable);
            view["last_error"] = Value::from(contact.last_error);
            view["waiting_calls"] = Value::from(waiting.get(&peer.origin).copied().unwrap_or(0));
            view
        })
        .collect();
    json(200, &listing)
}

/// `GET /api/v1/admin/peers/preview?url=…`: the name and key fingerprint the server at
/// `url` shows, fetched by this box and pinned nowhere, for the administrator to compare
/// with what the other box's owner reads out before adding it with that fingerprint.
pub async fn preview_peer(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let query: PeerQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "url is required"))?;
    let fed = &req.state().federation;
    let origin = federation::normalize_origin(&query.url)?;
    if origin == fed.services.origin {
        return Err(ApiError::bad_request(
            "invalid_call",
            "a server cannot peer with itself",
        ));
    }
    let (name, key) = federation::fetch_identity(fed, &origin).await?;
    let pinned = federation::list_peers(fed)?
        .into_iter()
        .find(|p| p.origin == origin)
        .map(|p| crate::model::federation::fingerprint(&p.server_key));
    json(
        200,
        &serde_json::json!({
            "origin": origin,
            "name": name,
            "fingerprint": crate::model::federation::fingerprint(&key),
            "tls_fingerprint": fed.tls_pins.get(&origin),
            "pinned_fingerprint": pinned,
        }),
    )
}

/// `GET /api/v1/peers`: the boxes this box has pinned (those a user of this home can use
/// with its tokens), each with its pinned TLS fingerprint and what the last call to it
/// showed, from memory (no call is made). For users homed here only.
pub async fn peer_status(req: Req, me: Principal) -> ApiResult {
    let user = req.state().services.get_user(me.user)?;
    if !me.local || !user.homeserver.is_empty() {
        return Err(ApiError::new(
            403,
            "forbidden",
            "only users homed on this server see its peers",
        ));
    }
    let fed = &req.state().federation;
    let peers = federation::list_peers(fed)?;
    let listing: Vec<Value> = peers
        .iter()
        .map(|peer| {
            let contact = fed.contacts.get(&peer.origin);
            serde_json::json!({
                "origin": peer.origin,
                "name": peer.name,
                "tls_fingerprint": fed.tls_pins.get(&peer.origin),
                "last_contact": contact.last_contact,
                "reachable": contact.reachable,
                "tls_mismatch": contact.tls_mismatch,
                "last_error": contact.last_error,
            })
        })
        .collect();
    json(200, &listing)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPeer {
    url: String,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// `POST /api/v1/admin/peers` `{"url", "fingerprint"?}`.
pub async fn add_peer(mut req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let body: AddPeer = json_body(&mut req).await?;
    let peer = federation::add_peer(
        &req.state().federation,
        &body.url,
        body.fingerprint.as_deref(),
    )
    .await?;
    json(201, &peer_view(&peer))
}

#[derive(Deserialize)]
struct PeerQuery {
    url: String,
}

/// `DELETE /api/v1/admin/peers?url=…`.
pub async fn remove_peer(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let query: PeerQuery = req
        .query()
        .map_err(|_| ApiError::bad_request("invalid_query", "url is required"))?;
    if !federation::remove_peer(&req.state().federation, &query.url).await? {
        return Err(ApiError::new(404, "unknown_peer", "no such peer"));
    }
    no_content()
}

/// `GET /api/v1/admin/discovered`: the Hearth servers heard on the LAN (mDNS), with their
/// fingerprints, whether each is a peer already, and conflicts.
pub async fn list_discovered(req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let app = req.state();
    json(
        200,
        &crate::federation::discovered::listing(
            &app.federation,
            &app.discovered,
            app.tls_fingerprint.get().map(String::as_str),
        )?,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddDiscovered {
    origin: String,
    fingerprint: String,
}

impl From<crate::federation::discovered::AddError> for ApiError {
    fn from(error: crate::federation::discovered::AddError) -> ApiError {
        use crate::federation::discovered::AddError;
        let message = error.to_string();
        match error {
            AddError::NotFound(_) => ApiError::new(404, "not_discovered", message),
            AddError::Conflict { .. } => ApiError::new(409, "discovery_conflict", message),
            AddError::Federation(e) => e.into(),
        }
    }
}

/// `POST /api/v1/admin/discovered` `{"origin", "fingerprint"}`: pins the key the server at
/// `origin` announced, if `fingerprint` is its fingerprint and nothing conflicts with it.
pub async fn add_discovered(mut req: Req, me: Principal) -> ApiResult {
    require_admin(&req, &me)?;
    let body: AddDiscovered = json_body(&mut req).await?;
    let app = req.state();
    let (peer, tls) = crate::federation::discovered::add_discovered_peer(
        &app.federation,
        &app.discovered,
        &body.origin,
        &body.fingerprint,
    )
    .await?;
    let mut view = peer_view(&peer);
    view["tls_fingerprint"] = Value::from(tls);
    json(201, &view)
}
