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

/// Opens the websocket at `url` (`ws://…?ticket=…`) as a browser whose page is
/// `https://other.example` would, and returns the head of the answer and the first bytes
/// after it.
fn open_websocket_from_another_origin(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("ws://").expect("a ws:// url");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nOrigin: https://other.example\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    // The head, then the server's first frame (the gateway's hello) or nothing (voice).
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if text.contains("\r\n\r\n") && (text.contains("hello") || !url.contains("gateway")) {
            break;
        }
    }
    String::from_utf8_lossy(&seen).to_string()
}

#[test]
fn websockets_open_for_a_page_of_another_box() {
    let server = TestServer::start();
    block_on(async {
        let alice = user(&server, "alice").await;
        let guild = api_json(
            &alice,
            "POST",
            &server.url("/api/v1/guilds"),
            serde_json::json!({"name": "Sockets"}),
        )
        .await;
        let id = guild["id"].as_str().unwrap();
        let voice = api_json(
            &alice,
            "POST",
            &server.url(&format!("/api/v1/guilds/{id}/channels")),
            serde_json::json!({"name": "Lounge", "kind": "voice"}),
        )
        .await;
        for ticket_path in [
            "/api/v1/gateway/ticket".to_string(),
            format!("/api/v1/channels/{}/voice", voice["id"].as_str().unwrap()),
        ] {
            let ticket = api_json(
                &alice,
                "POST",
                &server.url(&ticket_path),
                serde_json::json!({}),
            )
            .await;
            let url = ticket["url"].as_str().expect("url").to_string();
            let answer = smol::unblock(move || open_websocket_from_another_origin(&url)).await;
            assert!(
                answer.starts_with("HTTP/1.1 101"),
                "{ticket_path}: {answer}"
            );
            if ticket_path.contains("gateway") {
                assert!(answer.contains("hello"), "{answer}");
            }
        }
    });
}
