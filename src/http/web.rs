//! The web client: static files from `src/web/`, embedded in the binary and served at `/`.
//!
//! `GET /` and `GET /invite/{code}` (links people share) answer `index.html`; the other
//! files are under `/web/`. Every answer carries a strong `ETag` (a hash of the bytes) and
//! `Cache-Control: no-cache`, so browsers revalidate with `If-None-Match` and get `304`
//! until the binary is updated. The page's Content Security Policy allows scripts and
//! styles from this server only; it may connect to this server and to its pinned peers
//! (their origins and websocket origins), the boxes a user of this home can use.
//!
//! The installable web app: `GET /manifest.webmanifest` names the box (its configured
//! `name`) and lists the icons; `GET /sw.js` is the service worker (`src/web/sw.js`, served
//! at the root so its scope is the whole site) with the shell version (the crate version
//! and a hash of every embedded file) and the shell's paths written in, so every new
//! binary installs a new worker with a new cache.

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
    "setup.js",
    "admin-users.js",
    "settings.js",
    "admin.js",
    "admin-backups.js",
    "guilds.js",
    "voice-channel.js",
    "messages.js",
    "realtime.js",
    "unread.js",
    "notifications.js",
    "dms.js",
    "voice.js",
    "voice-worklet.js",
    "offline.js",
    "sw.js",
    "style.css",
    "icon.svg",
    "icon-192.png",
    "icon-512.png",
    "icon-maskable-192.png",
    "icon-maskable-512.png",
    "apple-touch-icon.png"
];

/// The service worker's template, served at `/sw.js` only (its scope is the path it is
/// served from, and the page's scope is `/`).
const SERVICE_WORKER: &str = "sw.js";

/// The page's colours (`--bg` of `src/web/style.css`'s dark theme, its default).
const THEME_COLOUR: &str = "#1e1f22";

/// The icons the manifest lists: path, sizes, type, purpose.
const MANIFEST_ICONS: &[(&str, &str, &str, &str)] = &[
    ("/web/icon.svg", "any", "image/svg+xml", "any"),
    ("/web/icon-192.png", "192x192", "image/png", "any"),
    ("/web/icon-512.png", "512x512", "image/png", "any"),
    (
        "/web/icon-maskable-192.png",
        "192x192",
        "image/png",
        "maskable",
    ),
    (
        "/web/icon-maskable-512.png",
        "512x512",
        "image/png",
        "maskable",
    ),
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
         connect-src {}; manifest-src 'self'; worker-src 'self'; \
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
        Some("webmanifest") => "application/manifest+json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex(&Sha256::digest(bytes)[..12]))
}

fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| ASSETS.iter().map(|asset| etag_of(asset.bytes)).collect())
}

/// The shell version written into the service worker: the crate version and a hash of
/// every embedded file, so a rebuilt client is a new version even at the same release.
fn shell_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for asset in ASSETS {
            hash.update(asset.name.as_bytes());
            hash.update((asset.bytes.len() as u64).to_be_bytes());
            hash.update(asset.bytes);
        }
        format!(
            "{}-{}",
            env!("CARGO_PKG_VERSION"),
            hex(&hash.finalize()[..8])
        )
    })
}

/// What the service worker keeps: the page, every other file of `/web/` and the manifest.
fn shell_paths() -> Vec<String> {
    let files = ASSETS
        .iter()
        .filter(|asset| asset.name != "index.html" && asset.name != SERVICE_WORKER)
        .map(|asset| format!("/web/{}", asset.name));
    ["/".to_owned(), "/manifest.webmanifest".to_owned()]
        .into_iter()
        .chain(files)
        .collect()
}

/// `src/web/sw.js` with the version and the shell's paths in place of its placeholders.
fn service_worker() -> &'static (Vec<u8>, String) {
    static WORKER: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    WORKER.get_or_init(|| {
        let template = ASSETS
            .iter()
            .find(|asset| asset.name == SERVICE_WORKER)
            .map(|asset| String::from_utf8_lossy(asset.bytes).into_owned())
            .unwrap_or_default();
        let rendered = template
            .replace(
                "'HEARTH_VERSION'",
                &serde_json::Value::from(shell_version()).to_string(),
            )
            .replace(
                "['HEARTH_SHELL']",
                &serde_json::Value::from(shell_paths()).to_string(),
            )
            .into_bytes();
        let etag = etag_of(&rendered);
        (rendered, etag)
    })
}

/// The web app manifest for a box called `name`.
fn manifest(name: &str) -> serde_json::Value {
    let short_name: String = name.chars().take(12).collect();
    let icons: Vec<serde_json::Value> = MANIFEST_ICONS
        .iter()
        .map(|(src, sizes, kind, purpose)| {
            serde_json::json!({ "src": src, "sizes": sizes, "type": kind, "purpose": purpose })
        })
        .collect();
    serde_json::json!({
        "id": "/",
        "name": name,
        "short_name": short_name.trim_end(),
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "theme_color": THEME_COLOUR,
        "background_color": THEME_COLOUR,
        "icons": icons,
    })
}

fn serve(req: &Req, name: &str) -> tide::Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name) else {
        return not_found();
    };
    respond(req, name, ASSETS[index].bytes, &etags()[index])
}

fn not_found() -> tide::Response {
    ApiError::new(404, "not_found", "no such file").into_response()
}

/// Answers `bytes` (typed by `name`'s extension), or `304` when `If-None-Match` has `etag`.
fn respond(req: &Req, name: &str, bytes: &[u8], etag: &str) -> tide::Response {
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
        let mut body = tide::Body::from_bytes(bytes.to_vec());
        body.set_mime(content_type(name));
        response.set_body(body);
        response.insert_header("Content-Type", content_type(name));
    }
    response.insert_header("ETag", etag);
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
    if name == SERVICE_WORKER {
        return Ok(not_found());
    }
    Ok(serve(&req, &name))
}

/// `GET /sw.js`: the service worker.
pub async fn service_worker_file(req: Req) -> tide::Result {
    let (bytes, etag) = service_worker();
    Ok(respond(&req, SERVICE_WORKER, bytes, etag))
}

/// `GET /manifest.webmanifest`: the web app manifest, named after the box.
pub async fn web_manifest(req: Req) -> tide::Result {
    let bytes = manifest(&req.state().services.config.name).to_string();
    let etag = etag_of(bytes.as_bytes());
    Ok(respond(
        &req,
        "manifest.webmanifest",
        bytes.as_bytes(),
        &etag,
    ))
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
        assert_eq!(
            content_type("manifest.webmanifest"),
            "application/manifest+json"
        );
        assert_eq!(content_type("icon-192.png"), "image/png");
    }

    #[test]
    fn the_service_worker_has_its_version_and_shell_written_in() {
        let text = String::from_utf8(service_worker().0.clone()).unwrap();
        assert!(!text.contains("HEARTH_"), "a placeholder is left");
        assert!(text.contains(&format!("\"{}\"", shell_version())));
        let shell = shell_paths();
        assert!(shell.contains(&"/".to_owned()));
        assert!(shell.contains(&"/web/app.js".to_owned()));
        assert!(!shell.iter().any(|path| path.ends_with("sw.js")));
    }

    #[test]
    fn the_manifest_lists_embedded_icons() {
        let manifest = manifest("A rather long box name");
        assert_eq!(manifest["short_name"], "A rather lon");
        for icon in manifest["icons"].as_array().unwrap() {
            let path = icon["src"].as_str().unwrap();
            let name = path.strip_prefix("/web/").unwrap();
            assert!(ASSETS.iter().any(|asset| asset.name == name), "{path}");
        }
    }
}
