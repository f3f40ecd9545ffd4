//! The web client: static files from `src/web/`, embedded in the binary and served at `/`.
//!
//! `GET /` and `GET /invite/{code}` (links people share) answer `index.html`; the other
//! files are under `/web/`. Every answer carries a strong `ETag` (a hash of the bytes) and
//! `Cache-Control: no-cache`, so browsers revalidate with `If-None-Match` and get `304`
//! until the binary is updated. The page's Content Security Policy allows scripts and
//! styles from this server only; it may connect to this server and to its pinned peers
//! (their origins and websocket origins), the boxes a user of this home can use.

use super::error::ApiError;
use super::Req;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// One embedded file.
pub struct Asset {
    /// Its name under `src/web/` (and `/web/`).
    pub name: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        /// Every file of `src/web/` (a test checks that none is missing).
        pub const ASSETS: &[Asset] = &[
            $(Asset { name: $name, bytes: include_bytes!(concat!("../web/", $name)) }),*
        ];
    };
}

assets![
    "index.html",
    "app.js",
    "api.js",
    "boxes.js",
    "gateway.js",
    "crypto.js",
    "store.js",
    "permissions.js",
    "dom.js",
    "state.js",
    "auth.js",
    "settings.js",
    "guilds.js",
    "voice-channel.js",
    "messages.js",
    "realtime.js",
    "voice.js",
    "voice-worklet.js",
    "style.css",
    "icon.svg"
];

/// The page's Content Security Policy. `connect-src` names this box and the boxes the
/// client may use: a box accepts this home's tokens (and signs its users in with their
/// device certificates) only if it pinned this box, and peering is mutual, so those are
/// this box's pinned peers. Read from the peers table for each answer, so a peer added
/// shows at the next load.
fn content_security_policy(req: &Req) -> String {
    let app = req.state();
    let peers = crate::federation::list_peers(&app.federation).unwrap_or_else(|e| {
        log::error!("cannot read the peers for the page's policy: {e}");
        Vec::new()
    });
    let mut connect = vec!["'self'".to_string()];
    // `'self'` covers this origin's websockets in CSP Level 3; older engines need them named.
    let own = app.origins.public();
    connect.extend(websocket_origin(own));
    for peer in &peers {
        connect.push(peer.origin.clone());
        connect.extend(websocket_origin(&peer.origin));
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; \
         img-src 'self' data: blob: https: http:; media-src 'self' blob:; \
         connect-src {}; manifest-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        connect.join(" ")
    )
}

/// The websocket origin (`wss:`/`ws:`) of an `https:`/`http:` origin.
fn websocket_origin(origin: &str) -> Option<String> {
    origin
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            origin
                .strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.bytes);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn serve(req: &Req, name: &str) -> tide::Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name) else {
        return ApiError::new(404, "not_found", "no such file").into_response();
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = req
        .header("If-None-Match")
        .map(|values| {
            values
                .iter()
                .flat_map(|value| value.as_str().split(','))
                .any(|tag| {
                    let tag = tag.trim();
                    tag == "*" || tag.trim_start_matches("W/") == etag
                })
        })
        .unwrap_or(false);
    let mut response = tide::Response::new(if fresh { 304 } else { 200 });
    if !fresh {
        let mut body = tide::Body::from_bytes(asset.bytes.to_vec());
        body.set_mime(content_type(name));
        response.set_body(body);
        response.insert_header("Content-Type", content_type(name));
    }
    response.insert_header("ETag", etag.as_str());
    response.insert_header("Cache-Control", "no-cache");
    response.insert_header("X-Content-Type-Options", "nosniff");
    response.insert_header("Referrer-Policy", "no-referrer");
    if name.ends_with(".html") {
        response.insert_header("Content-Security-Policy", content_security_policy(req));
        response.insert_header("X-Frame-Options", "DENY");
        response.insert_header(
            "Permissions-Policy",
            "microphone=(self), camera=(), geolocation=()",
        );
    }
    response
}

/// `GET /`, `GET /invite/{code}`: the page.
pub async fn index(req: Req) -> tide::Result {
    Ok(serve(&req, "index.html"))
}

/// `GET /web/{file}`.
pub async fn file(req: Req) -> tide::Result {
    let name = req.param("file").unwrap_or("").to_owned();
    Ok(serve(&req, &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_src_web_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "src/http/web.rs must list every file of src/web"
        );
    }

    #[test]
    fn websocket_origins() {
        assert_eq!(
            websocket_origin("https://b.local:8443").as_deref(),
            Some("wss://b.local:8443")
        );
        assert_eq!(
            websocket_origin("http://127.0.0.1:80").as_deref(),
            Some("ws://127.0.0.1:80")
        );
        assert_eq!(websocket_origin("ftp://x"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
