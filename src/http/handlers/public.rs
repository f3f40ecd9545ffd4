//! Handlers that need no account: the server's description (`/.well-known/hearth`), the
//! OAuth token and revocation endpoints (with migration at sign-in), and registration.

use crate::app::App;
use crate::http::auth::verify_proof;
use crate::http::error::ApiError;
use crate::http::{json, json_body, read_body, services, throttle, Action, ApiResult, Req};
use crate::model::UserId;
use crate::service::accounts;
use crate::system::now;
use serde_json::json;

#[derive(serde::Deserialize)]
struct WellKnownQuery {
    challenge: Option<String>,
}

/// `GET /.well-known/hearth[?challenge=…]`: with a challenge (a peer measuring this
/// server's clock), the answer is signed for it with the server key.
pub async fn well_known(req: Req) -> ApiResult {
    let s = services(&req);
    let challenge = req
        .query::<WellKnownQuery>()
        .ok()
        .and_then(|q| q.challenge)
        .filter(|c| !c.is_empty() && c.len() <= crate::federation::signature::MAX_RID_LEN);
    let info = s.box_info()?;
    let response = json(
        200,
        &json!({
            "name": info.name,
            "description": info.description,
            "icon_url": info.icon.then(|| format!("{}/api/v1/box/icon", s.origin)),
            "claimed": info.claimed,
            "setup": info.setup,
            "setup_code_required": info.setup_code_required,
            "version": env!("CARGO_PKG_VERSION"),
            "server_key": s.server_key.public_key_b64u(),
            "vapid_public_key": s.vapid_key.public_key_b64u(),
            "origin": s.origin,
            "tls_fingerprint": req.state().tls_fingerprint.get(),
            "registration": info.registration,
            "token_endpoint": format!("{}/oauth/token", s.origin),
            "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
            "time": crate::system::now(),
        }),
    )?;
    match challenge {
        Some(challenge) => {
            crate::http::federation::sign_answer(req.state(), &challenge, response).await
        }
        None => Ok(response),
    }
}

/// Parses an `application/x-www-form-urlencoded` body; a repeated parameter is an error
/// (RFC 6749 §3.2).
fn parse_form(body: &[u8]) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("parameter {k} is repeated"),
            ));
        }
    }
    Ok(out)
}

/// mzchat's login on a remote server: a certificate naming another home server gets a
/// shadow account here (if that home is a peer), so the grant can issue this server's own
/// tokens.
async fn remote_certificate_user(app: &App, certificate: &str, jkt: &str) -> Result<(), ApiError> {
    let Ok(cert) = crate::auth::device_cert::verify_device_certificate(certificate, now()) else {
        // The grant itself reports what is wrong with it.
        return Ok(());
    };
    if cert.homeserver == app.services.origin {
        return Ok(());
    }
    let user = UserId::parse(&cert.sub).ok_or_else(|| {
        oauth_error(
            "invalid_grant",
            "the certificate's subject is not a user id",
        )
    })?;
    let home = crate::federation::normalize_origin(&cert.homeserver)
        .map_err(|e| oauth_error("invalid_grant", e.to_string()))?;
    crate::federation::peer_key(&app.federation, &home)
        .await
        .map_err(|e| {
            oauth_error(
                "invalid_grant",
                format!("users of {home} are not accepted here: {e}"),
            )
        })?;
    let evidence = crate::service::shadows::HomeEvidence {
        certificate: Some(certificate),
        jkt,
    };
    app.services
        .ensure_shadow(user, &home, evidence)
        .await
        .map_err(|e| oauth_error("invalid_grant", e.to_string()))
}

/// mzchat's migration at sign-in: the device-certificate grant with a Migration Proof
/// (`migration_new_homeserver`, `migration_timestamp`, `migration_signature`) and the old
/// servers to notify (`migration_targets`, comma-separated origins).
async fn migrate(
    app: &App,
    certificate: &str,
    form: &std::collections::HashMap<String, String>,
) -> Result<(), ApiError> {
    let cert = crate::auth::device_cert::verify_device_certificate(certificate, now())
        .map_err(|e| oauth_error("invalid_grant", format!("invalid device certificate: {e}")))?;
    let user = UserId::parse(&cert.sub).ok_or_else(|| {
        oauth_error(
            "invalid_grant",
            "the certificate's subject is not a user id",
        )
    })?;
    let get = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    let proof = crate::auth::migration::MigrationProof {
        new_homeserver: get("migration_new_homeserver").to_string(),
        timestamp: get("migration_timestamp").parse().map_err(|_| {
            oauth_error(
                "invalid_request",
                "migration_timestamp must be unix seconds",
            )
        })?,
        signature: get("migration_signature").to_string(),
    };
    let targets = get("migration_targets")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    crate::federation::calls::migration::migrate_here(&app.federation, user, proof, targets)
        .await
        .map_err(|e| oauth_error("invalid_grant", e.to_string()))
}

fn oauth_error(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

pub async fn token(mut req: Req) -> ApiResult {
    let is_form = req
        .content_type()
        .is_some_and(|m| m.essence() == "application/x-www-form-urlencoded");
    if !is_form {
        return Err(oauth_error(
            "invalid_request",
            "the token endpoint takes application/x-www-form-urlencoded (RFC 6749)",
        ));
    }
    let limit = req.state().services.config.limits.max_body_bytes;
    let body = read_body(&mut req, limit).await?;
    let form = parse_form(&body)?;
    let app = req.state().clone();
    let proof = verify_proof(&req, None)
        .map_err(|e| ApiError::dpop_at_token_endpoint(&e, app.dpop.nonce(now())))?;
    let field = |name: &str| {
        form.get(name)
            .map(String::as_str)
            .ok_or_else(|| oauth_error("invalid_request", format!("missing parameter {name}")))
    };
    let s = &app.services;
    let grant = match field("grant_type")? {
        "password" => {
            let address = crate::http::client_address(&req);
            s.password_grant(
                &app.login_limiter,
                field("username")?,
                field("password")?,
                &proof.jkt,
                &address,
            )
            .await
        }
        "refresh_token" => s.refresh_grant(field("refresh_token")?, &proof.jkt).await,
        crate::auth::DEVICE_CERTIFICATE_GRANT => {
            let certificate = field("device_certificate")?;
            if form.contains_key("migration_signature") {
                migrate(&app, certificate, &form).await?;
            }
            remote_certificate_user(&app, certificate, &proof.jkt).await?;
            let name = app.device_links.take_name(&proof.jkt);
            s.certificate_grant(certificate, &proof.jkt, name).await
        }
        other => {
            return Err(oauth_error(
                "unsupported_grant_type",
                format!("grant type {other} is not supported"),
            ));
        }
    };
    match grant {
        Ok(grant) => json(200, &grant),
        Err(crate::service::Error::Unauthorized(message)) => {
            Err(oauth_error("invalid_grant", message))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke(mut req: Req) -> ApiResult {
    let limit = req.state().services.config.limits.max_body_bytes;
    let body = read_body(&mut req, limit).await?;
    let form = parse_form(&body)?;
    let token = form
        .get("token")
        .ok_or_else(|| oauth_error("invalid_request", "missing parameter token"))?;
    services(&req).revoke_refresh_token(token).await?;
    Ok(tide::Response::new(200))
}

pub async fn register(mut req: Req) -> ApiResult {
    throttle(&req, Action::Register, None)?;
    let body: accounts::Registration = json_body(&mut req).await?;
    let user = services(&req).register(body, "registered device").await?;
    json(
        201,
        &crate::service::profiles::PublicUser::of(&user, &services(&req).origin),
    )
}
