//! `GET /.well-known/oauth-authorization-server`: the authorization-server metadata of
//! RFC 8414, so that a generic OAuth client learns where to get and revoke tokens and
//! that they are DPoP-bound. It states only what the token endpoint really does: no
//! authorization endpoint (so no response types), public clients only, the three grants
//! of `/oauth/token`, DPoP proofs signed with ES256 or EdDSA (RFC 9449 §5.1).

use crate::http::{json, services, ApiResult, Req};
use serde_json::json;

/// The grant types `/oauth/token` accepts.
pub const GRANT_TYPES: [&str; 3] = [
    "password",
    "refresh_token",
    crate::auth::DEVICE_CERTIFICATE_GRANT,
];

/// The metadata document for a server whose tokens name `issuer` as their `iss`.
pub fn document(issuer: &str) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
    })
}

/// `GET /.well-known/oauth-authorization-server`.
pub async fn authorization_server(req: Req) -> ApiResult {
    json(200, &document(&services(&req).origin))
}
