//! Tokens, proofs and devices: proof audiences are the origins the box serves, cached peer tokens after a peer is removed, removed devices, data directory modes, and the Rust client signing in with its device certificate while its home is away (review items 1, 4, 16, 18, 19).

use crate::common::*;
use hearth::auth::dpop::make_proof;
use hearth::client::Client;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

/// One HTTP/1.1 request sent to `addr` with the `Host` header given (what a relaying box
/// can do); returns the status and the JSON body (`Null` if none).
async fn send_with_host(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let mut stream = smol::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .and_then(|body| body.find('{').map(|i| &body[i..]))
        .and_then(|body| serde_json::from_str(body.trim_end()).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// `host:port` of an origin.
fn authority(origin: &str) -> String {
    origin.split("://").nth(1).expect("origin").to_string()
}

/// A fresh DPoP nonce of `server`.
async fn nonce(server: &TestServer) -> String {
    Client::new()
        .fetch_nonce(&server.origin)
        .await
        .expect("nonce")
}

/// Item 1: box B relays alice's proof (made for B, `htu` = B's origin) and her home token
/// to her home A, with `Host` set to B's authority. A must refuse every such request.
#[test]
fn a_proof_made_for_another_box_is_refused_when_relayed_with_its_host() {
    let a = TestServer::start();
    let b = TestServer::start();
    block_on(async {
        let alice = user(&a, "alice").await;
        let token = alice.access_token(&a.origin).expect("token");
        let b_host = authority(&b.origin);
        let routes: [(&str, &str, Option<Value>); 3] = [
            ("GET", "/api/v1/users/@me", None),
            ("POST", "/api/v1/gateway/ticket", None),
            (
                "PATCH",
                "/api/v1/users/@me",
                Some(json!({"bio": "relayed"})),
            ),
        ];
        for (method, path, body) in &routes {
            // The proof names B, as it would when alice's client talks to B.
            let proof = make_proof(
                alice.device_key(),
                method,
                &format!("{}{path}", b.origin),
                Some(&token),
                Some(&nonce(&a).await),
                hearth::system::now(),
            );
            let mut headers = vec![("Authorization", format!("DPoP {token}")), ("DPoP", proof)];
            let bytes = body.as_ref().map(|b| b.to_string().into_bytes());
            if bytes.is_some() {
                headers.push(("Content-Type", "application/json".into()));
            }
            let (status, answer) = send_with_host(
                a.addr,
                &b_host,
                method,
                path,
                &headers,
                bytes.as_deref().unwrap_or_default(),
            )
            .await;
            assert_eq!(status, 401, "{method} {path} relayed from B: {answer}");
            assert_eq!(answer["error"], "invalid_dpop_proof", "{method} {path}");
        }
        let me: Value = alice
            .get(&a.url("/api/v1/users/@me"))
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        assert_ne!(
            me["bio"], "relayed",
            "the relayed PATCH changed the profile"
        );
        // The legitimate ticket names A's own origin.
        let ticket: Value = alice
            .post(&a.url("/api/v1/gateway/ticket"), json!({}))
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        let expected = format!("ws://{}/api/v1/gateway?ticket=", authority(&a.origin));
        assert!(
            ticket["url"].as_str().unwrap().starts_with(&expected),
            "{ticket}"
        );
    });
}

/// Item 1 with a peer's token: alice's home token is valid at B (B pinned A), but a proof
/// whose `htu` names another origin than B's own (her home's, or any other box's) is
/// refused at B, whatever `Host` says; the same request with a proof made for B passes.
#[test]
fn a_peer_token_with_a_proof_for_another_origin_is_refused() {
    let (a, b, alice, bob) = federated_pair_with("alice", "bob");
    block_on(async {
        let guild = guild_on(&bob, &b.origin, "Proofs").await;
        join(&alice, &b.origin, &guild.code).await;
        let token = alice.access_token(&a.origin).expect("token");
        let path = "/api/v1/users/@me";
        for (htu_origin, expected) in [
            (b.origin.as_str(), 200),
            (a.origin.as_str(), 401),
            ("https://elsewhere.test", 401),
        ] {
            let proof = make_proof(
                alice.device_key(),
                "GET",
                &format!("{htu_origin}{path}"),
                Some(&token),
                Some(&nonce(&b).await),
                hearth::system::now(),
            );
            let (status, answer) = send_with_host(
                b.addr,
                &authority(htu_origin),
                "GET",
                path,
                &[("Authorization", format!("DPoP {token}")), ("DPoP", proof)],
                b"",
            )
            .await;
            assert_eq!(status, expected, "proof for {htu_origin} at B: {answer}");
            if expected == 401 {
                assert_eq!(answer["error"], "invalid_dpop_proof", "{answer}");
            }
        }
    });
}

/// Item 1: a proof for one of A's configured aliases is accepted, and a ticket asked for
/// there names that alias.
#[test]
fn a_proof_for_a_configured_alias_is_accepted() {
    let a = TestServer::start_with(|c| {
        c.server.aliases = vec!["https://hearth-alias.test".into()];
    });
    block_on(async {
        let alice = user(&a, "alice").await;
        let token = alice.access_token(&a.origin).expect("token");
        for (method, path, host) in [
            ("GET", "/api/v1/users/@me", "hearth-alias.test"),
            ("POST", "/api/v1/gateway/ticket", "anything.example"),
        ] {
            let proof = make_proof(
                alice.device_key(),
                method,
                &format!("https://hearth-alias.test{path}"),
                Some(&token),
                Some(&nonce(&a).await),
                hearth::system::now(),
            );
            let (status, answer) = send_with_host(
                a.addr,
                host,
                method,
                path,
                &[("Authorization", format!("DPoP {token}")), ("DPoP", proof)],
                b"",
            )
            .await;
            assert_eq!(status, 200, "{method} {path} at the alias: {answer}");
            if path.ends_with("ticket") {
                assert!(
                    answer["url"]
                        .as_str()
                        .unwrap()
                        .starts_with("wss://hearth-alias.test/api/v1/gateway?ticket="),
                    "{answer}"
                );
            }
        }
        // The token endpoint takes the alias too, and nothing else.
        for (htu, expected) in [
            ("https://hearth-alias.test/oauth/token", 200),
            ("https://not-an-alias.test/oauth/token", 400),
        ] {
            let proof = make_proof(
                alice.device_key(),
                "POST",
                htu,
                None,
                Some(&nonce(&a).await),
                hearth::system::now(),
            );
            let form = format!(
                "grant_type=refresh_token&refresh_token={}",
                alice.refresh_token(&a.origin).unwrap()
            );
            let (status, answer) = send_with_host(
                a.addr,
                &authority(htu.split("/oauth").next().unwrap()),
                "POST",
                "/oauth/token",
                &[
                    ("DPoP", proof),
                    (
                        "Content-Type",
                        "application/x-www-form-urlencoded".to_string(),
                    ),
                ],
                form.as_bytes(),
            )
            .await;
            assert_eq!(status, expected, "token endpoint at {htu}: {answer}");
            if expected != 200 {
                assert_eq!(answer["error"], "invalid_dpop_proof", "{answer}");
            }
        }
    });
}

/// Item 1: with TLS on, the names in the box's own certificate are origins it serves (the
/// first-start certificate names `localhost`), at the port it listens on.
#[test]
fn a_proof_for_a_name_in_the_certificate_is_accepted() {
    let a = TestServer::start_with(|c| c.tls.enabled = true);
    block_on(async {
        let alice = user(&a, "alice").await;
        let token = alice.access_token(&a.origin).unwrap();
        let by_name = format!("https://localhost:{}", a.addr.port());
        for (origin, expected) in [(by_name.as_str(), 200), ("https://elsewhere.test", 401)] {
            let url = format!("{}/api/v1/users/@me", a.origin);
            let proof = make_proof(
                alice.device_key(),
                "GET",
                &format!("{origin}/api/v1/users/@me"),
                Some(&token),
                Some(&nonce(&a).await),
                hearth::system::now(),
            );
            let answer = alice
                .raw(
                    &url,
                    "GET",
                    &[("Authorization", format!("DPoP {token}")), ("DPoP", proof)],
                    Vec::new(),
                )
                .await
                .unwrap();
            assert_eq!(answer.status, expected, "{origin}: {answer:?}");
        }
    });
}

fn peer_cli(server: &TestServer, verb: &str, url: &str) {
    let args: [&std::ffi::OsStr; 5] = [
        "peer".as_ref(),
        verb.as_ref(),
        url.as_ref(),
        "--data".as_ref(),
        server.data.as_os_str(),
    ];
    let out = run_hearth(&args, None);
    assert!(
        out.status.success(),
        "peer {verb} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET path` at `server` with exactly this token and a fresh proof (no refresh, no retry).
async fn get_with_token(client: &Client, server: &TestServer, path: &str, token: &str) -> u16 {
    let url = server.url(path);
    let proof = make_proof(
        client.device_key(),
        "GET",
        &url,
        Some(token),
        Some(&nonce(server).await),
        hearth::system::now(),
    );
    client
        .raw(
            &url,
            "GET",
            &[("Authorization", format!("DPoP {token}")), ("DPoP", proof)],
            Vec::new(),
        )
        .await
        .unwrap()
        .status
}

/// Item 4: a token of A's user, cached at B, stops working at B as soon as B's admin
/// removes A as a peer.
#[test]
fn a_cached_peer_token_stops_when_the_peer_is_removed() {
    let a = start_federating();
    let b = start_federating();
    block_on(async {
        let alice = user(&a, "alice").await;
        let bob = user(&b, "bob").await;
        let Guild { channel, code, .. } = guild_on(&bob, &b.origin, "Over the hill").await;
        peer_both(&a, &b);
        alice
            .post(&b.url(&format!("/api/v1/invites/{code}")), json!({}))
            .await
            .unwrap()
            .ok()
            .expect("join B with A's token");
        let token = alice.access_token(&a.origin).unwrap();
        let messages = format!("/api/v1/channels/{channel}/messages");
        assert_eq!(get_with_token(&alice, &b, &messages, &token).await, 200);
        // B's own token for alice, from her device certificate (trusted because A was).
        certificate_grant(&alice, &b)
            .await
            .expect("certificate grant at B");
        let host_token = alice.access_token(&b.origin).unwrap();
        assert_eq!(
            get_with_token(&alice, &b, &messages, &host_token).await,
            200
        );

        peer_cli(&b, "remove", &a.origin);
        assert_eq!(
            get_with_token(&alice, &b, &messages, &token).await,
            401,
            "B still takes a token of a server it no longer trusts"
        );
        assert_eq!(
            get_with_token(&alice, &b, "/api/v1/users/@me", &token).await,
            401
        );
        assert_eq!(
            get_with_token(&alice, &b, &messages, &host_token).await,
            401,
            "B's own token for a user of a removed peer still works"
        );
    });
}

/// The answer of a device-certificate grant by `client` at `server`.
async fn certificate_grant(client: &Client, server: &TestServer) -> Result<(), (u16, String)> {
    match client.login_certificate(&server.origin).await {
        Ok(()) => Ok(()),
        Err(hearth::client::ClientError::Status { status, code, .. }) => Err((status, code)),
        Err(e) => panic!("certificate grant: {e}"),
    }
}

/// Item 16: a device removed from the account (or signed out) cannot come back with its
/// still-valid device certificate.
#[test]
fn a_removed_device_cannot_sign_in_again_with_its_certificate() {
    let a = TestServer::start();
    block_on(async {
        let alice = user(&a, "alice").await;
        // A second device of alice's, certified by her identity key.
        let phone = Client::new();
        phone.set_identity(alice.identity().unwrap());
        phone.set_home(&a.origin).unwrap();
        certificate_grant(&phone, &a).await.expect("phone signs in");
        let phone_id = phone.device_thumbprint();

        // alice removes the phone from her other device.
        alice
            .delete(&a.url(&format!("/api/v1/users/@me/devices/{phone_id}")))
            .await
            .unwrap()
            .ok()
            .expect("remove the phone");
        assert_eq!(
            certificate_grant(&phone, &a).await,
            Err((400, "invalid_grant".into())),
            "the removed phone came back with its certificate"
        );
        let devices: Value = alice
            .get(&a.url("/api/v1/users/@me/devices"))
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            !devices.to_string().contains(&phone_id),
            "the removed phone is listed again: {devices}"
        );

        // Signing out is removal too.
        alice.logout(&a.origin).await.expect("sign out");
        assert_eq!(
            certificate_grant(&alice, &a).await,
            Err((400, "invalid_grant".into()))
        );
    });
}

/// Item 18: the data directory is made private (0700) and the database 0600 whatever the
/// directory's mode was, since both hold the server's key.
#[test]
fn the_data_directory_and_database_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A database file left readable (an old release, a copy) is tightened too.
    let config = test_config(data.clone());
    let server = TestServer::start_config(config, None);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("hearth.redb")), 0o600, "database");
    drop(server);
    std::fs::set_permissions(
        data.join("hearth.redb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let again = TestServer::start_config(test_config(data.clone()), None);
    assert_eq!(mode(&data), 0o700, "data directory after a restart");
    assert_eq!(
        mode(&data.join("hearth.redb")),
        0o600,
        "database after a restart"
    );
    drop(again);
}

/// Item 18: when the admin socket falls back to the temp dir (long data paths), a fallback
/// directory that belongs to another user is refused: whoever owns it could swap the
/// socket and read what the administrator types.
#[test]
fn an_admin_socket_directory_owned_by_someone_else_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test makes directories owned by other users: run it as root (CI does)");
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d".repeat(110));
    std::fs::create_dir_all(&data).unwrap();
    // A uid of its own, so that no other test's fallback directory is involved.
    let owner = 40_000 + (std::process::id() % 20_000);
    std::os::unix::fs::chown(&data, Some(owner), None).unwrap();
    let config = test_config(data.clone());
    let socket = hearth::app::admin_socket_path(&config);
    let fallback = socket.parent().unwrap().to_path_buf();
    assert!(
        fallback.starts_with(std::env::temp_dir()),
        "{}",
        socket.display()
    );
    let _ = std::fs::remove_dir_all(&fallback);
    std::fs::create_dir(&fallback).unwrap();
    std::fs::set_permissions(&fallback, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Someone else's private directory, under the name the server will use.
    std::os::unix::fs::chown(&fallback, Some(owner + 1), None).unwrap();
    let listener = smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let result = block_on(async {
        let stop = async {
            smol::Timer::after(Duration::from_secs(5)).await;
        };
        let run = hearth::server::run(listener, config, stop);
        futures_lite::future::or(async { Some(run.await) }, async {
            smol::Timer::after(Duration::from_secs(20)).await;
            None
        })
        .await
    });
    let still_theirs = std::fs::metadata(&fallback).map(|m| m.uid());
    let _ = std::fs::remove_dir_all(&fallback);
    let error = match result {
        Some(Err(e)) => e.to_string(),
        other => panic!("the server used someone else's socket directory: {other:?}"),
    };
    assert!(error.contains(&fallback.display().to_string()), "{error}");
    assert_eq!(still_theirs.ok(), Some(owner + 1));
}

/// The messages of a channel as `client` reads them, by content.
async fn contents(client: &Client, server: &TestServer, channel: &str) -> Vec<String> {
    let answer = client
        .get(&server.url(&format!("/api/v1/channels/{channel}/messages?limit=100")))
        .await
        .expect("read the channel")
        .ok()
        .expect("2xx reading the channel");
    answer
        .json()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn post_message(client: &Client, server: &TestServer, channel: &str, text: &str) {
    client
        .post(
            &server.url(&format!("/api/v1/channels/{channel}/messages")),
            json!({ "content": text }),
        )
        .await
        .expect("post")
        .ok()
        .unwrap_or_else(|e| panic!("posting {text:?}: {e}"));
}

/// Item 19: alice (home A) chats on B; A is unplugged and her home token expires; the
/// Rust client signs in at B with her device certificate and she keeps posting and
/// reading there; when A is back, the client uses A's tokens again.
#[test]
fn the_client_keeps_chatting_on_a_host_while_its_home_is_away() {
    let dir_a = tempfile::tempdir().unwrap();
    let config_a = || {
        let mut config = federating(dir_a.path());
        config.auth.access_token_secs = 2;
        config
    };
    let mut a = TestServer::start_config(config_a(), None);
    let b = start_federating();
    block_on(async {
        let alice = user(&a, "alice").await;
        alice.set_home_retry(Duration::from_millis(500));
        let bob = user(&b, "bob").await;
        let Guild { channel, code, .. } = guild_on(&bob, &b.origin, "Over the hill").await;
        peer_both(&a, &b);
        alice
            .post(&b.url(&format!("/api/v1/invites/{code}")), json!({}))
            .await
            .unwrap()
            .ok()
            .expect("join B with A's token");
        post_message(&alice, &b, &channel, "before A left").await;
        assert_eq!(alice.token_issuer(&b.origin), Some(a.origin.clone()));

        // A is unplugged; wait until B refuses the last token A gave alice.
        let address = a.addr.to_string();
        let last_home_token = alice.access_token(&a.origin).unwrap();
        a.stop();
        let expired = eventually(Duration::from_secs(20), async || {
            get_with_token(&alice, &b, "/api/v1/users/@me", &last_home_token).await == 401
        })
        .await;
        assert!(expired, "A's token never expired at B");

        for i in 0..3 {
            post_message(&alice, &b, &channel, &format!("while A is away {i}")).await;
        }
        let seen = contents(&alice, &b, &channel).await;
        assert!(seen.contains(&"while A is away 2".to_string()), "{seen:?}");
        assert!(seen.contains(&"before A left".to_string()), "{seen:?}");
        assert_eq!(
            alice.token_issuer(&b.origin),
            Some(b.origin.clone()),
            "the client should use B's own tokens while A is away"
        );
        // bob sees alice's messages as hers.
        let by_bob = contents(&bob, &b, &channel).await;
        assert!(by_bob.contains(&"while A is away 0".to_string()));

        // A comes back where it was; the client goes back to A's tokens.
        let _a = TestServer::start_at(&address, config_a(), None);
        let home_again = eventually(Duration::from_secs(20), async || {
            post_message(&alice, &b, &channel, "A is back").await;
            // A gave a new token (the client reached it), and requests to B carry A's.
            alice.access_token(&address_origin(&address)).as_ref() != Some(&last_home_token)
                && alice.token_issuer(&b.origin).as_deref()
                    == Some(address_origin(&address).as_str())
        })
        .await;
        assert!(
            home_again,
            "the client did not go back to its home's tokens"
        );
        let home_token = alice.access_token(&address_origin(&address)).unwrap();
        assert_ne!(home_token, last_home_token);
        assert_eq!(
            get_with_token(
                &alice,
                &b,
                &format!("/api/v1/channels/{channel}/messages"),
                &home_token
            )
            .await,
            200
        );
    });
}

fn address_origin(address: &str) -> String {
    format!("http://{address}")
}

/// Item 16 at a host: alice removes her phone at home A; B, where the phone chats with
/// A's tokens and with B's own (certificate grant), hears of it from A and refuses both,
/// and the phone's certificate too.
#[test]
fn a_device_removed_at_home_is_refused_by_the_hosts_that_know_the_user() {
    let a = start_federating();
    let b = start_federating();
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob = user(&b, "bob").await;
        let Guild { channel, code, .. } = guild_on(&bob, &b.origin, "Over the hill").await;
        peer_both(&a, &b);
        let phone = Client::new();
        phone.set_identity(alice.identity().unwrap());
        phone.set_home(&a.origin).unwrap();
        certificate_grant(&phone, &a)
            .await
            .expect("phone signs in at A");
        phone
            .post(&b.url(&format!("/api/v1/invites/{code}")), json!({}))
            .await
            .unwrap()
            .ok()
            .expect("the phone joins B with A's token");
        // B asked A about alice (VerifyUser), so A knows B keeps her shadow.
        let synced = eventually(Duration::from_secs(15), async || {
            let seen: Value = bob
                .get(&b.url(&format!("/api/v1/users/{alice_id}")))
                .await
                .unwrap()
                .json()
                .unwrap();
            seen["name"] == "alice"
        })
        .await;
        assert!(synced, "B never verified alice with A");
        let home_token = phone.access_token(&a.origin).unwrap();
        certificate_grant(&phone, &b)
            .await
            .expect("phone signs in at B");
        let host_token = phone.access_token(&b.origin).unwrap();
        let messages = format!("/api/v1/channels/{channel}/messages");
        assert_eq!(
            get_with_token(&phone, &b, &messages, &home_token).await,
            200
        );
        assert_eq!(
            get_with_token(&phone, &b, &messages, &host_token).await,
            200
        );

        alice
            .delete(&a.url(&format!(
                "/api/v1/users/@me/devices/{}",
                phone.device_thumbprint()
            )))
            .await
            .unwrap()
            .ok()
            .expect("remove the phone at A");
        let refused = eventually(Duration::from_secs(15), async || {
            get_with_token(&phone, &b, &messages, &home_token).await == 401
                && get_with_token(&phone, &b, &messages, &host_token).await == 401
        })
        .await;
        assert!(refused, "B still lets the removed phone in");
        assert_eq!(
            certificate_grant(&phone, &b).await,
            Err((400, "invalid_grant".into())),
            "the removed phone signed in at B with its certificate"
        );
        // alice's other device is untouched at B.
        alice
            .get(&b.url(&messages))
            .await
            .unwrap()
            .ok()
            .expect("alice's own device still reads at B");
    });
}

/// Item 1, the other half of "names the box serves": a box listening on every address (as
/// on the Pi image, `0.0.0.0:443` with `public_url = "https://hearth.local"`) is also
/// reached by its own interface addresses (a phone that does not resolve `.local`), and
/// only by those: an address that merely routes to it is not one of its names.
#[test]
fn a_box_on_every_address_serves_its_interface_addresses_only() {
    // The public name is `localhost` at a port picked here; the box listens on 0.0.0.0.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut config = test_config(tempfile::tempdir().unwrap().keep().join("data"));
    config.public_url = Some(format!("http://localhost:{port}"));
    let a = TestServer::start_at(&format!("0.0.0.0:{port}"), config, None);
    block_on(async {
        let alice = user(&a, "alice").await;
        let token = alice.access_token(&a.origin).expect("token");
        // Addressed as 127.0.0.1, the loopback interface's address: served. 127.0.0.2
        // reaches the box over loopback too but is no interface's address: refused.
        for (host, expected) in [("127.0.0.1", 200), ("127.0.0.2", 401)] {
            let proof = make_proof(
                alice.device_key(),
                "GET",
                &format!("http://{host}:{port}/api/v1/users/@me"),
                Some(&token),
                Some(&nonce(&a).await),
                hearth::system::now(),
            );
            let (status, answer) = send_with_host(
                SocketAddr::from(([127, 0, 0, 1], port)),
                &format!("{host}:{port}"),
                "GET",
                "/api/v1/users/@me",
                &[("Authorization", format!("DPoP {token}")), ("DPoP", proof)],
                b"",
            )
            .await;
            assert_eq!(status, expected, "proof for {host}: {answer}");
            if expected == 200 {
                assert_eq!(answer["username"], "alice", "{answer}");
            } else {
                assert_eq!(answer["error"], "invalid_dpop_proof", "{answer}");
            }
        }
    });
}
