//! `GET /.well-known/oauth-authorization-server` (RFC 8414): what it says is what the
//! token endpoint does.

use crate::common::*;
use hearth::client::Client;

#[test]
fn authorization_server_metadata_describes_the_token_endpoint() {
    let server = TestServer::start();
    let answer = block_on(Client::new().send(
        &server.url("/.well-known/oauth-authorization-server"),
        "GET",
        None,
        false,
    ))
    .expect("metadata");
    assert_eq!(answer.status, 200);
    let doc = answer.json().expect("json");
    assert_eq!(doc["issuer"], server.origin.as_str(), "{doc}");
    assert_eq!(
        doc["token_endpoint"],
        server.url("/oauth/token").as_str(),
        "{doc}"
    );
    assert_eq!(
        doc["revocation_endpoint"],
        server.url("/oauth/revoke").as_str()
    );
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!([
            "password",
            "refresh_token",
            hearth::auth::DEVICE_CERTIFICATE_GRANT
        ])
    );
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        serde_json::json!(["none"])
    );
    assert_eq!(doc["response_types_supported"], serde_json::json!([]));
    assert!(doc.get("authorization_endpoint").is_none(), "there is none");
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        serde_json::json!(["ES256", "EdDSA"])
    );

    // The issuer is the `iss` the server's own description names, and a password login
    // at that token endpoint works.
    let hearth =
        block_on(Client::new().send(&server.url("/.well-known/hearth"), "GET", None, false))
            .expect("well-known")
            .json()
            .expect("json");
    assert_eq!(doc["issuer"], hearth["origin"]);
    assert_eq!(doc["token_endpoint"], hearth["token_endpoint"]);
    let alice = block_on(user(&server, "alice"));
    assert!(alice.user_id(&server.origin).is_some());
}
