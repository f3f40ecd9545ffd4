//! Issue 13 end to end: the web client served by a person's home box uses other boxes
//! directly. Three boxes on loopback with TLS on (self-signed certificates) drive Debian's
//! Chromium through `tests/js/web/boxes.mjs`: alice (home A) joins bob's guild on B from
//! her A-served page and chats with him, goes on while A is stopped past her token's
//! lifetime, sees her profile edit reach B once A is back, and is warned instead of joined
//! when C presents a certificate other than the one A pinned.
//!
//! The script asks for what only the test can do on a control channel: it prints
//! `control: stop A` or `control: start A`, the test does it and answers `ok` on the
//! script's standard input.

use crate::common::*;
use hearth::client::Client;
use hearth::config::Config;
use serde_json::json;
use std::path::{Path, PathBuf};

/// A's access tokens live this long, so "hours later" takes seconds. The refresh token
/// keeps its default (30 days): signing in again at home after A returns needs it.
const ACCESS_TOKEN_SECS: u64 = 5;

/// Longest a single step of the script waits for something to show, in milliseconds.
const STEP_TIMEOUT_MS: u64 = 15_000;

/// A federating box with TLS at its default (on, a self-signed certificate made in
/// `DATA/tls/` at first start).
fn tls_box(dir: &Path) -> Config {
    let mut config = federating(dir);
    config.tls = hearth::config::TlsConfig::default();
    config
}

/// The box's certificate as Chromium gets it (the script trusts its public key).
fn cert_path(server: &TestServer) -> PathBuf {
    server.data.join("tls/cert.pem")
}

/// The certificate fingerprint `server` pinned for `origin` in `DATA/tls/pins` (`ORIGIN
/// CERT_HEX [KEY_HEX]` lines).
fn pinned(server: &TestServer, origin: &str) -> String {
    let pins = std::fs::read_to_string(server.data.join("tls/pins")).expect("read pins");
    pins.lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (o, certificate) = (fields.next()?, fields.next()?);
            (o == origin).then(|| certificate.to_string())
        })
        .unwrap_or_else(|| panic!("{origin} is not pinned: {pins}"))
}

/// The fingerprint a box publishes at `/.well-known/hearth`, as 64 uppercase hex digits.
async fn published_fingerprint(client: &Client, origin: &str) -> String {
    let known = api_json(
        client,
        "GET",
        &format!("{origin}/.well-known/hearth"),
        json!(null),
    )
    .await;
    let fingerprint: String = known["tls_fingerprint"]
        .as_str()
        .expect("a published TLS fingerprint")
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_uppercase();
    assert_eq!(fingerprint.len(), 64, "{known}");
    fingerprint
}

/// A guild `name` made by `owner` on `server` and the invite link to it that the box
/// gives, which carries the box's TLS fingerprint (`#fp=`).
async fn invite_to(owner: &Client, server: &TestServer, name: &str) -> (String, String) {
    let guild = api_json(
        owner,
        "POST",
        &server.url("/api/v1/guilds"),
        json!({ "name": name }),
    )
    .await;
    let guild_id = guild["id"].as_str().expect("guild id").to_string();
    let channel = guild["channels"][0]["id"].as_str().expect("channel id");
    let invite = api_json(
        owner,
        "POST",
        &server.url(&format!("/api/v1/channels/{channel}/invites")),
        json!({}),
    )
    .await;
    let link = invite["url"]
        .as_str()
        .expect("the invite's link")
        .to_string();
    assert!(link.contains("#fp="), "{link}");
    (guild_id, link)
}

#[test]
fn alice_uses_three_boxes_from_her_home_page() {
    require_browser();
    let dirs: Vec<tempfile::TempDir> = (0..4)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let mut config_a = tls_box(dirs[0].path());
    config_a.auth.access_token_secs = ACCESS_TOKEN_SECS;
    let config_c = tls_box(dirs[2].path());
    // The data dirs outlive the servers: A and C are restarted on them.
    let mut a = TestServer::start_config(config_a.clone(), None);
    let b = TestServer::start_config(tls_box(dirs[1].path()), None);
    let mut c = TestServer::start_config(config_c.clone(), None);
    for server in [&a, &b, &c] {
        assert!(server.origin.starts_with("https://"), "{}", server.origin);
    }
    // Peering pins each other's TLS certificate on first contact.
    peer_both(&a, &b);
    peer_both(&a, &c);
    let c_pinned = pinned(&a, &c.origin);
    // D: a peer of A whose certificate alice's browser has not accepted.
    let d = TestServer::start_config(tls_box(dirs[3].path()), None);
    peer_both(&a, &d);
    let d_pinned = pinned(&a, &d.origin);
    let dave = block_on(user(&d, "dave"));
    let (_, dave_link) = block_on(invite_to(&dave, &d, "Shed"));

    // C gets a new certificate at the same address: A's pin of it is now stale.
    let c_address = c.addr.to_string();
    c.stop();
    std::fs::remove_dir_all(c.data.join("tls")).expect("remove C's tls dir");
    c = TestServer::start_at(&c_address, config_c, None);
    let carol = block_on(user(&c, "carol"));
    let c_presented = block_on(published_fingerprint(&carol, &c.origin));
    assert!(
        !c_presented.eq_ignore_ascii_case(&c_pinned),
        "C kept its certificate"
    );
    let (attic, carol_link) = block_on(invite_to(&carol, &c, "Attic"));

    let settings = json!({
        "origins": { "A": a.origin, "B": b.origin, "C": c.origin, "D": d.origin },
        "d_pinned": d_pinned,
        "dave_invite": dave_link,
        "certs": [cert_path(&a), cert_path(&b), cert_path(&c)],
        "c_pinned": c_pinned,
        "c_presented": c_presented,
        "carol_invite": carol_link,
        "access_token_secs": ACCESS_TOKEN_SECS,
        "timeout_ms": STEP_TIMEOUT_MS,
    });
    let a_address = a.addr.to_string();
    let settings = settings.to_string();
    run_controlled_script(
        "tests/js/web/boxes.mjs",
        &[&settings],
        |command| match command {
            "stop A" => {
                a.stop();
                "ok".to_string()
            }
            "start A" => {
                a = TestServer::start_at(&a_address, config_a.clone(), None);
                "ok".to_string()
            }
            other => format!("unknown control line: {other}"),
        },
    );
    // The warning was all: alice did not join carol's guild.
    let members = block_on(api_json(
        &carol,
        "GET",
        &c.url(&format!("/api/v1/guilds/{attic}/members")),
        json!(null),
    ));
    assert_eq!(
        members.as_array().map(Vec::len),
        Some(1),
        "someone joined Attic: {members}"
    );
}
