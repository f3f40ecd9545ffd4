//! CORS as a web client served by another box meets it: the API, OAuth and the box's
//! description answer any origin with exactly the headers the client needs; the page,
//! its files and server-to-server calls grant nothing; no answer allows credentials.

use crate::common::*;
use hearth::client::{Client, Response};

fn send(server: &TestServer, method: &str, path: &str, headers: &[(&str, String)]) -> Response {
    block_on(Client::new().raw(&server.url(path), method, headers, Vec::new())).expect("request")
}

/// A browser's preflight from `https://other.example` for `method path`, asking for
/// `headers`.
fn preflight(server: &TestServer, method: &str, path: &str, headers: &str) -> Response {
    send(
        server,
        "OPTIONS",
        path,
        &[
            ("Origin", "https://other.example".into()),
            ("Access-Control-Request-Method", method.into()),
            ("Access-Control-Request-Headers", headers.into()),
        ],
    )
}

/// The comma-separated values of `name`, lower-cased.
fn listed(response: &Response, name: &str) -> Vec<String> {
    response
        .header(name)
        .unwrap_or("")
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

fn no_credentials(response: &Response, what: &str) {
    assert!(
        response
            .headers
            .iter()
            .all(|(name, _)| !name.eq_ignore_ascii_case("Access-Control-Allow-Credentials")),
        "{what} allows credentials: {:?}",
        response.headers
    );
}

#[test]
fn the_api_is_granted_to_a_client_of_another_origin() {
    let server = TestServer::start();
    let asked = "authorization, dpop, content-type, hearth-device-certificate";
    let answer = preflight(&server, "POST", "/api/v1/channels/1/messages", asked);
    assert!((200..300).contains(&answer.status), "{}", answer.status);
    assert_eq!(answer.header("Access-Control-Allow-Origin"), Some("*"));
    let allowed = listed(&answer, "Access-Control-Allow-Headers");
    for header in asked.split(", ") {
        assert!(
            allowed.contains(&header.to_string()),
            "{header}: {allowed:?}"
        );
    }
    assert!(
        listed(&answer, "Access-Control-Allow-Methods").contains(&"post".to_string()),
        "{:?}",
        answer.headers
    );
    assert_eq!(answer.header("Access-Control-Max-Age"), Some("7200"));
    no_credentials(&answer, "the preflight");

    // The answers themselves: the client reads the nonce and the reasons of refusals.
    for path in ["/api/v1/users/@me", "/.well-known/hearth", "/oauth/token"] {
        let method = if path.starts_with("/oauth") {
            "POST"
        } else {
            "GET"
        };
        let answer = send(
            &server,
            method,
            path,
            &[("Origin", "https://other.example".into())],
        );
        assert_eq!(
            answer.header("Access-Control-Allow-Origin"),
            Some("*"),
            "{path}"
        );
        let exposed = listed(&answer, "Access-Control-Expose-Headers");
        for header in ["dpop-nonce", "www-authenticate", "retry-after"] {
            assert!(
                exposed.contains(&header.to_string()),
                "{path} {header}: {exposed:?}"
            );
        }
        no_credentials(&answer, path);
    }
    // A preflight for the OAuth endpoint and the description is granted too.
    for path in ["/oauth/token", "/.well-known/hearth"] {
        let answer = preflight(&server, "POST", path, "dpop, content-type");
        assert_eq!(
            answer.header("Access-Control-Allow-Origin"),
            Some("*"),
            "{path}"
        );
    }
}

#[test]
fn the_page_its_files_and_server_calls_grant_nothing() {
    let server = TestServer::start();
    let origin = [("Origin", "https://other.example".to_string())];
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/invite/abcd1234"),
        ("GET", "/web/app.js"),
        ("POST", "/federation/v1/x"),
    ] {
        let answer = send(&server, method, path, &origin);
        assert_eq!(
            answer.header("Access-Control-Allow-Origin"),
            None,
            "{method} {path}"
        );
        no_credentials(&answer, path);
        let asked = preflight(&server, method, path, "content-type");
        for (name, _) in &asked.headers {
            assert!(
                !name.to_ascii_lowercase().starts_with("access-control-"),
                "preflight of {path} answered {name}"
            );
        }
    }
}
