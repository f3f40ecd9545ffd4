//! Linking a new device from one already signed in (`/api/v1/device-links`; the flow is
//! described in [`crate::auth::device_link`]).

use super::auth::Principal;
use super::error::ApiError;
use super::{json, json_body, no_content, ApiResult, Req};
use crate::auth::device_cert;
use crate::auth::device_link::{
    display_code, Approval, LinkError, Mailbox, MAX_KEY_TRANSFER_BYTES, MAX_NAME_CHARS,
};
use crate::auth::jose::PublicJwk;
use crate::system::now;
use serde::Deserialize;
use serde_json::{json, Value};

impl From<LinkError> for ApiError {
    fn from(error: LinkError) -> ApiError {
        let message = error.to_string();
        match error {
            LinkError::Unknown => ApiError::new(404, "unknown_device_link", message),
            LinkError::TooMany => ApiError::new(429, "too_many_device_links", message)
                .with_header("Retry-After", "60".into()),
            LinkError::TooManyLookups => ApiError::new(429, "too_many_lookups", message)
                .with_header("Retry-After", "60".into()),
            LinkError::AlreadyApproved => ApiError::new(409, "already_approved", message),
            LinkError::OtherUser => ApiError::new(403, "other_account", message),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Open {
    device_key: Value,
    #[serde(default)]
    device_name: Option<String>,
    /// The account to join: only its owner may approve.
    #[serde(default)]
    username: Option<String>,
}

/// `POST /api/v1/device-links` (no authentication): the new device opens a link.
pub async fn open(mut req: Req) -> ApiResult {
    let body: Open = json_body(&mut req).await?;
    let key = PublicJwk::from_json(&body.device_key)
        .map_err(|e| ApiError::bad_request("invalid_device_key", format!("device_key: {e}")))?;
    let name = body.device_name.unwrap_or_default();
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_device_name",
            format!("device_name: at most {MAX_NAME_CHARS} characters, no control characters"),
        ));
    }
    // An IPv6 client counts by its /64, which it can pick addresses from at will.
    let address = super::client_address(&req);
    // An unknown name is not revealed: the link opens, and no one can approve it (the
    // all-zero key is of small order, which no user id may be).
    let for_user = match &body.username {
        Some(username) => Some(
            req.state()
                .services
                .user_by_username(username)?
                .unwrap_or(crate::model::UserId([0; 32])),
        ),
        None => None,
    };
    let jkt = key.thumbprint();
    let t = now();
    let (code, mailbox) = req.state().device_links.open(
        jkt.clone(),
        body.device_key,
        name.to_string(),
        for_user,
        &address,
        t,
    )?;
    json(
        201,
        &json!({
            "code": display_code(&code),
            "mailbox": mailbox,
            "jkt": jkt,
            "expires_in": crate::auth::device_link::LINK_TTL_SECS,
        }),
    )
}

/// Linking happens at the user's home, which holds their devices.
fn local(req: &Req, me: &Principal) -> Result<(), ApiError> {
    if me.local {
        return Ok(());
    }
    Err(ApiError::new(
        403,
        "not_your_home",
        format!(
            "link devices at your home server; {} is not it",
            req.state().services.origin
        ),
    ))
}

fn code_param(req: &Req) -> String {
    let raw = req.param("code").unwrap_or("");
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .chars()
        .take(32)
        .collect()
}

/// `GET /api/v1/device-links/{code}`: what the code stands for, to compare with the new
/// device's screen before approving.
pub async fn show(req: Req, me: Principal) -> ApiResult {
    local(&req, &me)?;
    let link = req
        .state()
        .device_links
        .lookup(&code_param(&req), me.user, now())?;
    json(
        200,
        &json!({
            "code": display_code(&link.code),
            "jkt": link.jkt,
            "device_key": link.device_key,
            "device_name": link.device_name,
            "expires_in": link.expires_in(now()),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approve {
    device_certificate: String,
    #[serde(default)]
    key_transfer: Option<String>,
}

/// `POST /api/v1/device-links/{code}`: approve with a device certificate for the new
/// device's key, signed by your identity key.
pub async fn approve(mut req: Req, me: Principal) -> ApiResult {
    local(&req, &me)?;
    let body: Approve = json_body(&mut req).await?;
    if body
        .key_transfer
        .as_ref()
        .is_some_and(|k| k.len() > MAX_KEY_TRANSFER_BYTES)
    {
        return Err(ApiError::bad_request(
            "key_transfer_too_large",
            format!("key_transfer: at most {MAX_KEY_TRANSFER_BYTES} bytes"),
        ));
    }
    let app = req.state();
    let origin = app.services.origin.clone();
    let t = now();
    let user = me.user;
    let checked = app
        .device_links
        .approve(&code_param(&req), user, t, |link| {
            let cert = device_cert::verify_device_certificate(&body.device_certificate, t)
                .map_err(|e| {
                    ApiError::bad_request(
                        "invalid_device_certificate",
                        format!("device_certificate: {e}"),
                    )
                })?;
            let refuse = |why: String| ApiError::bad_request("invalid_device_certificate", why);
            if cert.sub != user.to_text() {
                return Err(refuse(
                    "the certificate must be signed by your own identity key".into(),
                ));
            }
            if cert.jkt != link.jkt {
                return Err(refuse(format!(
                    "the certificate is for the key {}, but this link is for {}",
                    cert.jkt, link.jkt
                )));
            }
            if cert.homeserver != origin {
                return Err(refuse(format!(
                    "the certificate names {} as home server, not {origin}",
                    cert.homeserver
                )));
            }
            Ok(Approval {
                user,
                certificate: body.device_certificate.clone(),
                key_transfer: body.key_transfer.clone(),
            })
        })?;
    checked?;
    no_content()
}

fn mailbox_param(req: &Req) -> String {
    req.param("mailbox")
        .unwrap_or("")
        .chars()
        .take(64)
        .collect()
}

/// `GET /api/v1/device-links/mailbox/{mailbox}` (no authentication: the mailbox id is the
/// secret): waiting, or the approval (handed out once).
pub async fn poll(req: Req) -> ApiResult {
    match req.state().device_links.poll(&mailbox_param(&req), now())? {
        Mailbox::Waiting(expires_in) => {
            json(200, &json!({"status": "waiting", "expires_in": expires_in}))
        }
        Mailbox::Approved(approval) => json(
            200,
            &json!({
                "status": "approved",
                "user_id": approval.user.to_text(),
                "device_certificate": approval.certificate,
                "key_transfer": approval.key_transfer,
            }),
        ),
    }
}

/// `DELETE /api/v1/device-links/mailbox/{mailbox}`: the new device gives up.
pub async fn cancel(req: Req) -> ApiResult {
    req.state().device_links.cancel(&mailbox_param(&req))?;
    no_content()
}
