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

#[test]
fn two_people_chat_in_the_browser() {
    require_browser();
    let server = TestServer::start();
    let out = std::process::Command::new("node")
        .arg("tests/js/web/chat.mjs")
        .arg(&server.origin)
        .output()
        .expect("run node (install Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all steps passed"),
        "the browser test failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}
