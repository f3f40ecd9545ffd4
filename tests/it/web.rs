//! The web client: its files as the server serves them, and the client itself driven in
//! Debian's Chromium by playwright-core (`tests/js/web/chat.mjs`) against a real server.

use crate::common::*;
use hearth::client::Client;

fn get(server: &TestServer, path: &str, headers: &[(&str, String)]) -> hearth::client::Response {
    block_on(Client::new().raw(&server.url(path), "GET", headers, Vec::new())).expect("request")
}

#[test]
fn the_page_and_its_files_are_served_with_a_strict_policy_and_revalidated() {
    let server = TestServer::start();
    let page = get(&server, "/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let body = String::from_utf8_lossy(&page.body).to_string();
    assert!(body.contains("/web/app.js"), "{body}");
    let csp = page
        .header("Content-Security-Policy")
        .expect("a CSP")
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!body.contains("<script>"), "no inline scripts");
    // Links people share open the same page.
    let invite = get(&server, "/invite/abcd1234", &[]);
    assert_eq!(invite.status, 200);
    assert_eq!(invite.body, page.body);
    // Files revalidate: the ETag answers 304 until the binary changes.
    let script = get(&server, "/web/app.js", &[]);
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(script.header("Cache-Control"), Some("no-cache"));
    let etag = script.header("ETag").expect("an ETag").to_string();
    let again = get(&server, "/web/app.js", &[("If-None-Match", etag.clone())]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let other = get(
        &server,
        "/web/app.js",
        &[("If-None-Match", "\"other\"".into())],
    );
    assert_eq!(other.status, 200);
    // Unknown files are a JSON 404 like every error; no path tricks reach the disk.
    for path in [
        "/web/nope.js",
        "/web/..%2fCargo.toml",
        "/web/%2e%2e%2fsrc%2fmain.rs",
    ] {
        let missing = get(&server, path, &[]);
        assert_eq!(missing.status, 404, "{path}");
        assert_eq!(missing.error_code().as_deref(), Some("not_found"), "{path}");
    }
    // The API keeps its own caching rule.
    let api = get(&server, "/.well-known/hearth", &[]);
    assert_eq!(api.header("Cache-Control"), Some("no-store"));
}

/// A server with HTTPS on (its default) whose outgoing calls may reach loopback.
fn start_tls_federating() -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = federating(dir.path());
    config.tls = hearth::config::TlsConfig::default();
    TestServer::start_config(config, Some(dir))
}

/// The `connect-src` sources of the page's policy.
fn connect_sources(server: &TestServer) -> Vec<String> {
    let page = get(server, "/", &[]);
    assert_eq!(page.status, 200);
    let csp = page
        .header("Content-Security-Policy")
        .expect("a CSP")
        .to_string();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    csp.split(';')
        .map(str::trim)
        .find_map(|directive| directive.strip_prefix("connect-src "))
        .unwrap_or_else(|| panic!("no connect-src in {csp}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_page_may_connect_to_its_box_and_pinned_peers_only() {
    let a = start_tls_federating();
    let b = start_tls_federating();
    let c = start_tls_federating();
    let wss = |server: &TestServer| server.origin.replacen("https://", "wss://", 1);
    let before = connect_sources(&a);
    assert!(before.contains(&"'self'".to_string()), "{before:?}");
    for source in &before {
        assert!(
            !matches!(source.as_str(), "https:" | "wss:" | "http:" | "ws:" | "*"),
            "a whole scheme is allowed: {before:?}"
        );
    }
    assert!(!before.contains(&b.origin), "{before:?}");
    // Pinning B shows at the next load, with its websocket origin; C, no peer, never shows.
    peer_add(&a, &b.origin);
    let after = connect_sources(&a);
    assert!(after.contains(&b.origin), "{after:?}");
    assert!(after.contains(&wss(&b)), "{after:?}");
    assert!(!after.contains(&c.origin), "{after:?}");
    assert!(!after.contains(&wss(&c)), "{after:?}");
    assert!(
        after
            .iter()
            .all(|s| s == "'self'" || s.ends_with(&a.origin[8..]) || s.ends_with(&b.origin[8..])),
        "{after:?}"
    );
}

/// The width and height a PNG's header declares.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[test]
fn the_installable_app_has_a_manifest_icons_and_a_service_worker() {
    let server = TestServer::start_with(|config| config.name = "Kitchen table box".into());
    // The page links them and lets the worker and the manifest load.
    let page = get(&server, "/", &[]);
    let body = String::from_utf8_lossy(&page.body).to_string();
    for link in [
        r#"<link rel="manifest" href="/manifest.webmanifest">"#,
        r#"<link rel="apple-touch-icon" href="/web/apple-touch-icon.png""#,
        r#"<meta name="theme-color""#,
    ] {
        assert!(body.contains(link), "{link} is missing");
    }
    let csp = page.header("Content-Security-Policy").unwrap_or_default();
    assert!(
        csp.contains("worker-src 'self'") && csp.contains("manifest-src 'self'"),
        "{csp}"
    );

    // The manifest names the box, and each of its icons is served with its declared size.
    let manifest = get(&server, "/manifest.webmanifest", &[]);
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("Content-Type"),
        Some("application/manifest+json")
    );
    assert_eq!(manifest.header("Cache-Control"), Some("no-cache"));
    let json: serde_json::Value = serde_json::from_slice(&manifest.body).expect("JSON");
    assert_eq!(json["name"], "Kitchen table box");
    assert_eq!(json["short_name"], "Kitchen tabl");
    assert_eq!(json["start_url"], "/");
    assert_eq!(json["scope"], "/");
    assert_eq!(json["display"], "standalone");
    assert!(json["theme_color"].as_str().unwrap().starts_with('#'));
    assert!(json["background_color"].as_str().unwrap().starts_with('#'));
    let icons = json["icons"].as_array().expect("icons");
    let mut purposes = Vec::new();
    for icon in icons {
        let src = icon["src"].as_str().unwrap();
        let answer = get(&server, src, &[]);
        assert_eq!(answer.status, 200, "{src}");
        assert_eq!(
            answer.header("Content-Type"),
            icon["type"].as_str(),
            "{src}"
        );
        if icon["type"] == "image/png" {
            let (width, height) = png_size(&answer.body);
            assert_eq!(icon["sizes"], format!("{width}x{height}"), "{src}");
        }
        purposes.push(format!("{} {}", icon["purpose"], icon["sizes"]));
    }
    for wanted in [
        r#""any" "192x192""#,
        r#""any" "512x512""#,
        r#""maskable" "192x192""#,
        r#""maskable" "512x512""#,
    ] {
        assert!(
            purposes.iter().any(|p| p == wanted),
            "{wanted}: {purposes:?}"
        );
    }
    let touch = get(&server, "/web/apple-touch-icon.png", &[]);
    assert_eq!(touch.header("Content-Type"), Some("image/png"));
    assert_eq!(png_size(&touch.body), (180, 180));

    // The service worker, at the root, revalidated on every check, with this build's
    // version and the shell's paths written in; each of those paths is served.
    let worker = get(&server, "/sw.js", &[]);
    assert_eq!(worker.status, 200);
    assert_eq!(
        worker.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(worker.header("Cache-Control"), Some("no-cache"));
    let script = String::from_utf8_lossy(&worker.body).to_string();
    let version = format!("const VERSION = \"{}-", env!("CARGO_PKG_VERSION"));
    assert!(script.contains(&version), "no version in sw.js");
    assert!(
        !script.contains("HEARTH_"),
        "a placeholder is left in sw.js"
    );
    let shell_line = script
        .lines()
        .find(|line| line.starts_with("const SHELL = "))
        .expect("the shell's paths");
    let shell: Vec<String> = serde_json::from_str(
        shell_line
            .trim_start_matches("const SHELL = ")
            .trim_end_matches(';'),
    )
    .expect("a JSON list");
    for path in [
        "/",
        "/manifest.webmanifest",
        "/web/app.js",
        "/web/style.css",
    ] {
        assert!(
            shell.iter().any(|p| p == path),
            "{path} is not in the shell"
        );
    }
    for path in &shell {
        assert_eq!(get(&server, path, &[]).status, 200, "{path}");
        assert!(
            !["/api/", "/oauth/", "/.well-known/", "/federation/"]
                .iter()
                .any(|prefix| path.starts_with(prefix)),
            "{path}"
        );
    }
    let etag = worker.header("ETag").expect("an ETag").to_string();
    assert_eq!(
        get(&server, "/sw.js", &[("If-None-Match", etag)]).status,
        304
    );
    // Only at the root: under /web/ its scope would not cover the page.
    assert_eq!(get(&server, "/web/sw.js", &[]).status, 404);
}

#[test]
fn two_people_chat_in_the_browser() {
    let server = TestServer::start();
    run_browser_script("tests/js/web/chat.mjs", &[&server.origin]);
}
