//! Authentication of API requests: the DPoP access token and its proof, checked per
//! RFC 9449 §4.3 and §7. The result is a [`Principal`] that handlers take as an argument,
//! so no authenticated route can forget to authenticate.

use super::error::ApiError;
use super::Req;
use crate::auth::dpop::{DpopRequest, VerifiedProof};
use crate::auth::tokens;
use crate::model::UserId;
use crate::system::now;

/// Who made a verified request.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user.
    pub user: UserId,
    /// Thumbprint of the device key that signed the proof.
    pub jkt: String,
    /// Whether this server issued the token (else a peer did, for a user it homes).
    pub local: bool,
    /// Which of this server's origins the client addressed (its proof's `htu`).
    pub origin: String,
}

/// Every value of a header (a repeated header counts more than once).
pub fn header_values(req: &Req, name: &str) -> Vec<String> {
    req.header(name)
        .map(|values| values.iter().map(|v| v.as_str().to_string()).collect())
        .unwrap_or_default()
}

/// Verifies a DPoP proof for this request (token endpoint form: no access token). The
/// proof's `htu` must be the request's path under one of the origins this server serves
/// ([`crate::origins`]); the `Host` header plays no part, so a proof made for another box
/// and relayed here under that box's name is refused.
pub fn verify_proof(
    req: &Req,
    access_token: Option<&str>,
) -> Result<VerifiedProof, crate::auth::dpop::DpopError> {
    let values = header_values(req, "DPoP");
    let proofs: Vec<&str> = values.iter().map(String::as_str).collect();
    let method = req.method().to_string();
    let urls = req.state().origins.urls_for(req.url().path());
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    req.state().dpop.verify(
        &DpopRequest {
            proofs: &proofs,
            method: &method,
            urls: &urls,
            access_token,
        },
        now(),
    )
}

/// The served origin a verified proof addressed (its `htu`'s), for building URLs the
/// client will use next (ticket URLs); the public origin if that cannot be told.
pub fn addressed_origin(app: &crate::app::App, proof: &VerifiedProof) -> String {
    app.origins
        .origin_of(&proof.htu)
        .unwrap_or_else(|| app.origins.public().to_string())
}

/// Verifies a peer's access token against the peer's clock (see
/// [`crate::federation::clock`]); when it looks expired or not yet valid, the peer's clock
/// is measured again (rate-limited) and the token checked once more. The claims returned
/// carry `exp` in this server's time, for the token cache.
async fn peer_token(
    app: &crate::app::App,
    token: &str,
    key: &[u8; 32],
    issuer: &str,
    t: u64,
) -> Result<tokens::AccessClaims, ApiError> {
    let clocks = &app.federation.clocks;
    let check = || tokens::verify_access_token(token, key, issuer, clocks.peer_time(issuer, t), 0);
    let claims = match check() {
        Err(tokens::TokenError::Expired | tokens::TokenError::NotYetValid)
            if crate::federation::clock::remeasure(&app.federation, issuer, key).await =>
        {
            check()
        }
        other => other,
    };
    let mut claims = claims.map_err(|e| ApiError::invalid_token(e.to_string()))?;
    claims.exp = claims
        .exp
        .saturating_add_signed(clocks.offset(issuer).saturating_neg());
    Ok(claims)
}

/// Authenticates an API request: `Authorization: DPoP <token>` plus a `DPoP` proof.
pub async fn authenticate(req: &Req) -> Result<Principal, ApiError> {
    let app = req.state();
    let authorization = header_values(req, "Authorization");
    let token = match authorization.as_slice() {
        [] => return Err(ApiError::no_credentials()),
        [one] => {
            let (scheme, rest) = one.split_once(' ').unwrap_or((one.as_str(), ""));
            if !scheme.eq_ignore_ascii_case("DPoP") {
                return Err(ApiError::invalid_token(
                    "use the DPoP authentication scheme (RFC 9449): Authorization: DPoP <token>",
                ));
            }
            rest.trim().to_string()
        }
        _ => {
            return Err(ApiError::invalid_token(
                "more than one Authorization header",
            ))
        }
    };
    if token.is_empty() || token.len() > 4096 {
        return Err(ApiError::invalid_token("malformed access token"));
    }
    let t = now();
    let claims = match app.token_cache.get(&token, t) {
        Some(claims) => claims,
        None => {
            let issuer = tokens::peek_issuer(&token)
                .map_err(|e| ApiError::invalid_token(format!("malformed access token: {e}")))?;
            let services = &app.services;
            // Our own tokens, or (Refrain's path) tokens of a peer's users, checked with
            // the peer's pinned key and without calling the peer.
            let key = if issuer == services.origin {
                services.server_key.public_bytes()
            } else {
                crate::federation::peer_key(&app.federation, &issuer)
                    .await
                    .map_err(|e| {
                        ApiError::invalid_token(format!(
                            "tokens issued by {issuer} are not accepted here: {e}"
                        ))
                    })?
            };
            let claims = if issuer == services.origin {
                tokens::verify_access_token(&token, &key, &issuer, t, 0)
                    .map_err(|e| ApiError::invalid_token(e.to_string()))?
            } else {
                peer_token(app, &token, &key, &issuer, t).await?
            };
            // A peer's trust can be withdrawn (peer remove) or its key pinned anew, so
            // its tokens are re-verified at least every `peer_token_cache_secs`.
            let until = if issuer == services.origin {
                claims.exp
            } else {
                t.saturating_add(services.config.auth.peer_token_cache_secs)
            };
            app.token_cache.insert_until(&token, claims.clone(), until);
            claims
        }
    };
    if claims.iss != app.services.origin
        && crate::federation::pinned_key(&app.federation, &claims.iss).is_none()
    {
        // Removed since the token was cached: refused at once, not when the cache lets go.
        return Err(ApiError::invalid_token(format!(
            "tokens issued by {} are no longer accepted here",
            claims.iss
        )));
    }
    let proof =
        verify_proof(req, Some(&token)).map_err(|e| ApiError::dpop(&e, app.dpop.nonce(t)))?;
    if proof.jkt != claims.jkt {
        return Err(ApiError::new(401, "invalid_dpop_proof", "the DPoP proof is signed by another key than the one the access token is bound to")
            .with_header(
                "WWW-Authenticate",
                format!("DPoP error=\"invalid_dpop_proof\", error_description=\"key does not match the token binding\", algs=\"{}\"", super::error::DPOP_ALGS),
            ));
    }
    let user =
        UserId::parse(&claims.sub).ok_or_else(|| ApiError::invalid_token("malformed subject"))?;
    if claims.iss == app.services.origin {
        let home = app
            .services
            .active_device_home(user, &claims.jkt)
            .map_err(ApiError::from)?;
        match home {
            None => {
                return Err(ApiError::invalid_token(
                    "this device has been signed out or the account no longer exists",
                ))
            }
            // Our own tokens for a peer's user (the certificate grant) hold only while
            // that peer is trusted, like the peer's own tokens.
            Some(home)
                if !home.is_empty()
                    && crate::federation::pinned_key(&app.federation, &home).is_none() =>
            {
                return Err(ApiError::invalid_token(format!(
                    "this user's home {home} is no longer a peer of this server"
                )))
            }
            Some(_) => {}
        }
    } else {
        // A peer's user: their home manages devices (and tells us when one is removed:
        // its tokens from before then are refused); here they get a shadow account (and
        // VerifyUser is queued to their home) on first use.
        if app
            .services
            .issued_before_removal(user, &claims.jkt, claims.iat)
            .map_err(ApiError::from)?
        {
            return Err(ApiError::invalid_token(
                "this device has been removed from the account at its home server",
            ));
        }
        // The user's own evidence of which server is home: their device certificate.
        let certificate = header_values(req, crate::auth::device_cert::HEADER);
        let evidence = crate::service::shadows::HomeEvidence {
            certificate: certificate.first().map(String::as_str),
            jkt: &claims.jkt,
        };
        app.services
            .ensure_shadow(user, &claims.iss, evidence)
            .await
            .map_err(|e| ApiError::invalid_token(e.to_string()))?;
    }
    Ok(Principal {
        user,
        jkt: claims.jkt,
        local: claims.iss == app.services.origin,
        origin: addressed_origin(app, &proof),
    })
}
