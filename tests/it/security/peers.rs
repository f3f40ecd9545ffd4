//! Trust between boxes and in identities: who may claim a user id, signed answers to server calls, migrations that arrive late or pass by a host, tombstones and admin rights of remote or migrated users (review items 2, 3, 14, 15, 17).

use crate::common::*;
use hearth::client::Client;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const PASSWORD: &str = "password-of-some-length";

/// Starts a server whose server key the test knows (so the test can act as that server),
/// with its data in `dir`.
fn start_with_key(
    secret: [u8; 32],
    dir: tempfile::TempDir,
    adjust: impl FnOnce(&mut hearth::config::Config),
) -> TestServer {
    let mut config = federating(dir.path());
    adjust(&mut config);
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let store = hearth::storage::Store::open(
        &hearth::app::database_path(&config),
        1 << 20,
        16,
        hearth::storage::Retention {
            max_events: 100,
            max_age_secs: 3600,
        },
    )
    .expect("pre-create the database");
    store
        .write_blocking(move |tx| {
            tx.put(
                hearth::storage::tables::META,
                b"server_key",
                &secret.to_vec(),
            )
        })
        .expect("store the key");
    drop(store);
    TestServer::start_config(config, Some(dir))
}

/// Sends `method url` with a hand-made access token and a DPoP proof by `client`'s device
/// key (fetching a nonce first when the server asks for one).
async fn with_token(
    client: &Client,
    method: &str,
    url: &str,
    token: &str,
    body: Value,
) -> hearth::client::Response {
    let mut answer = None;
    for _ in 0..2 {
        let proof = client.proof(method, url, Some(token)).unwrap();
        let response = client
            .raw(
                url,
                method,
                &[
                    ("Authorization", format!("DPoP {token}")),
                    ("DPoP", proof),
                    ("Content-Type", "application/json".into()),
                ],
                body.to_string().into_bytes(),
            )
            .await
            .unwrap();
        let retry = response.status == 401
            && (response.error_code().as_deref() == Some("use_dpop_nonce")
                || response
                    .header("WWW-Authenticate")
                    .is_some_and(|h| h.contains("use_dpop_nonce")));
        answer = Some(response);
        if !retry {
            break;
        }
    }
    answer.unwrap()
}

/// Peer C, whose key the test holds, signs an access token for `victim` bound to
/// `mallory`'s device key and uses it at `target` to join a guild and post.
async fn c_posts_as(
    c_key: &hearth::auth::server_key::ServerKey,
    c: &TestServer,
    target: &TestServer,
    guild: &Guild,
    victim: &str,
    mallory: &Client,
) -> (u16, u16) {
    let (token, _) = hearth::auth::tokens::mint_access_token(
        c_key,
        &c.origin,
        victim,
        &mallory.device_thumbprint(),
        hearth::system::now(),
        300,
    );
    let join = with_token(
        mallory,
        "POST",
        &target.url(&format!("/api/v1/invites/{}", guild.code)),
        &token,
        json!({}),
    )
    .await;
    let post = with_token(
        mallory,
        "POST",
        &target.url(&format!("/api/v1/channels/{}/messages", guild.channel)),
        &token,
        json!({ "content": "I am alice, trust me" }),
    )
    .await;
    (join.status, post.status)
}

async fn status_of(client: &Client, url: &str) -> u16 {
    client.get(url).await.unwrap().status
}

/// Item 2: a pinned peer C signs a token for alice (homed at A) and uses it at B, before
/// B has seen alice at all: refused; alice's own token still works at B afterwards, and
/// messages at B carry her id only when she sent them.
#[test]
fn a_peer_cannot_claim_a_user_homed_elsewhere_before_she_is_seen() {
    let c_secret = [7u8; 32];
    let c_key = hearth::auth::server_key::ServerKey::from_bytes(&c_secret);
    let a = start_federating();
    let b = start_federating();
    let c = start_with_key(c_secret, tempfile::tempdir().unwrap(), |_| {});
    peer_all(&[&a, &b, &c]);
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob = user(&b, "bob").await;
        let den = guild_on(&bob, &b.origin, "den").await;
        let mallory = Client::new();

        let (join, post) = c_posts_as(&c_key, &c, &b, &den, &alice_id, &mallory).await;
        assert_eq!(join, 401, "B let C speak for a user homed at A");
        assert_eq!(post, 401);
        let seen = bob
            .get(&b.url(&format!("/api/v1/users/{alice_id}")))
            .await
            .unwrap();
        assert!(
            seen.status == 404
                || seen.json().unwrap()["homeserver"].as_str() != Some(c.origin.as_str()),
            "B now believes alice is homed at C: {seen:?}"
        );

        // Alice herself, with A's token, is not locked out.
        api_json(
            &alice,
            "POST",
            &b.url(&format!("/api/v1/invites/{}", den.code)),
            json!({}),
        )
        .await;
        let posted = api_json(
            &alice,
            "POST",
            &b.url(&format!("/api/v1/channels/{}/messages", den.channel)),
            json!({ "content": "the real alice" }),
        )
        .await;
        assert_eq!(posted["author_id"], alice_id.as_str());
        // And C still cannot, now that she is known.
        let (join, post) = c_posts_as(&c_key, &c, &b, &den, &alice_id, &mallory).await;
        assert_eq!((join, post), (401, 401));
        let history = channel_history(&bob, &b.origin, &den.channel).await;
        assert!(history
            .iter()
            .all(|m| m["content"] != "I am alice, trust me"));
    });
}

/// Item 2, the variant where B knows alice only from A's `user_created` broadcast (no
/// shadow yet), under the `open` policy (C is not pinned by B's administrator).
#[test]
fn a_peer_cannot_claim_a_user_b_knows_only_from_the_directory_even_when_open() {
    let c_secret = [9u8; 32];
    let c_key = hearth::auth::server_key::ServerKey::from_bytes(&c_secret);
    let a = start_federating();
    let b = start_federating_with(|config| {
        config.federation.policy = hearth::config::PeerPolicy::Open;
    });
    let c = start_with_key(c_secret, tempfile::tempdir().unwrap(), |_| {});
    peer_all(&[&a, &b]);
    peer_add(&c, &b.origin);
    block_on(async {
        let bob = user(&b, "bob").await;
        let den = guild_on(&bob, &b.origin, "den").await;
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let announced = eventually(Duration::from_secs(15), async || {
            let seen = bob
                .get(&b.url(&format!("/api/v1/users/{alice_id}")))
                .await
                .unwrap();
            seen.status == 200 && seen.json().unwrap()["homeserver"] == a.origin.as_str()
        })
        .await;
        assert!(announced, "A's user_created never reached B");

        let mallory = Client::new();
        let (join, post) = c_posts_as(&c_key, &c, &b, &den, &alice_id, &mallory).await;
        assert_eq!((join, post), (401, 401), "B let C speak for alice");
        let seen = api_json(
            &bob,
            "GET",
            &b.url(&format!("/api/v1/users/{alice_id}")),
            json!({}),
        )
        .await;
        assert_eq!(seen["homeserver"], a.origin.as_str());

        api_json(
            &alice,
            "POST",
            &b.url(&format!("/api/v1/invites/{}", den.code)),
            json!({}),
        )
        .await;
        assert_eq!(status_of(&alice, &b.url("/api/v1/users/@me")).await, 200);
    });
}

/// A tiny HTTP server on `addr` that answers every request with `404 unknown_user`,
/// alternately unsigned and signed by a key that is not the pinned one. Counts requests
/// to `/federation/v1/verify_user`.
fn fake_peer(addr: std::net::SocketAddr, origin: String) -> Arc<AtomicUsize> {
    let listener = std::net::TcpListener::bind(addr).expect("bind where A was");
    let verifies = Arc::new(AtomicUsize::new(0));
    let counter = verifies.clone();
    std::thread::spawn(move || {
        let stranger = hearth::auth::server_key::ServerKey::generate();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let head_end = loop {
                let Ok(read) = stream.read(&mut buf) else {
                    break None;
                };
                if read == 0 {
                    break None;
                }
                request.extend_from_slice(&buf[..read]);
                if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(end + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&request[..head_end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while request.len() < head_end + length {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&buf[..read]),
                }
            }
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            if path == "/federation/v1/verify_user" {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let body = json!({ "error": "unknown_user", "message": "no such user homed here" })
                .to_string();
            let signature = if n % 2 == 1 {
                let signed = hearth::federation::signature::sign(
                    &stranger,
                    &origin,
                    "anyone",
                    "POST",
                    &path,
                    body.as_bytes(),
                    hearth::system::now(),
                );
                format!("Hearth-Signature: {signed}\r\n")
            } else {
                String::new()
            };
            let answer = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n{signature}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    verifies
}

/// Item 3: a spoofer listening where B believes A is answers VerifyUser with an
/// unsigned or wrongly signed 404; B keeps alice, her membership and her access.
#[test]
fn a_spoofed_unsigned_404_to_verify_user_does_not_remove_the_user() {
    let mut a = start_federating();
    let b = start_federating_with(|config| {
        config.federation.profile_refresh_secs = 0;
    });
    peer_all(&[&a, &b]);
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob = user(&b, "bob").await;
        let den = guild_on(&bob, &b.origin, "den").await;
        api_json(
            &alice,
            "POST",
            &b.url(&format!("/api/v1/invites/{}", den.code)),
            json!({}),
        )
        .await;
        let synced = eventually(Duration::from_secs(15), async || {
            let seen = api_json(
                &bob,
                "GET",
                &b.url(&format!("/api/v1/users/{alice_id}")),
                json!({}),
            )
            .await;
            seen["name"] == "alice"
        })
        .await;
        assert!(synced, "B never verified alice with A");

        // A goes away; the spoofer takes its address.
        let addr = a.addr;
        let origin = a.origin.clone();
        a.stop();
        let verifies = fake_peer(addr, origin);
        let member = b.url(&format!("/api/v1/guilds/{}/members/{alice_id}", den.id));
        // Unsigned first, then signed with a key that is not A's (the outbox retries).
        for (asks, how) in [(1, "an unsigned"), (2, "a wrongly signed")] {
            let asked = eventually(Duration::from_secs(20), async || {
                // A lookup of a stale profile queues VerifyUser to A.
                let _ = bob.get(&b.url(&format!("/api/v1/users/{alice_id}"))).await;
                verifies.load(Ordering::SeqCst) >= asks
            })
            .await;
            assert!(asked, "B never asked the spoofer about alice");
            // The answer is applied in the commit that takes the call out of the outbox.
            smol::Timer::after(Duration::from_millis(300)).await;
            assert_eq!(
                status_of(&bob, &member).await,
                200,
                "B removed alice on {how} 404"
            );
        }
        let seen = api_json(
            &bob,
            "GET",
            &b.url(&format!("/api/v1/users/{alice_id}")),
            json!({}),
        )
        .await;
        assert_eq!(seen["homeserver"], a.origin.as_str());
    });
}

/// `hearth user add NAME --password-stdin --admin --data DIR`.
fn admin_add(server: &TestServer, name: &str) {
    let mut child = hearth_command(&["user", "add", name, "--password-stdin", "--admin"])
        .arg("--data")
        .arg(&server.data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Item 14: `update_homeserver` waits in B's outbox while the old home A is down, for
/// longer than the proof's time window; delivered late, it still applies at A.
#[test]
fn a_late_update_homeserver_still_applies() {
    let short_window = |config: &mut hearth::config::Config| {
        config.federation.migration.proof_window_secs = 2;
    };
    let dir_a = tempfile::tempdir().unwrap();
    let mut config_a = federating(dir_a.path());
    short_window(&mut config_a);
    let mut a = TestServer::start_config(config_a.clone(), None);
    let b = start_federating_with(short_window);
    peer_all(&[&a, &b]);
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let watcher = user(&a, "watcher").await;
        let address = a.addr.to_string();
        a.stop();
        alice
            .migrate(&b.origin, &[&a.origin])
            .await
            .expect("migration at B while A is down");
        // Longer than the window (2 s) in which the proof is fresh.
        smol::Timer::after(Duration::from_secs(3)).await;
        let a = TestServer::start_at(&address, config_a, None);
        let moved = eventually(Duration::from_secs(30), async || {
            let seen = watcher
                .get(&a.url(&format!("/api/v1/users/{alice_id}")))
                .await
                .unwrap();
            seen.status == 200 && seen.json().unwrap()["homeserver"] == b.origin.as_str()
        })
        .await;
        assert!(moved, "A never applied the late migration");
        assert!(
            Client::new()
                .login_password(&a.origin, "alice", PASSWORD)
                .await
                .is_err(),
            "A still signs alice in"
        );
    });
}

/// Item 15: alice moves A → C naming only A; B, which hosts her guild, is not told. B's
/// next VerifyUser to A learns "moved to C" (signed, with her proof): B treats her as
/// homed at C, her C token works at B, and her membership at B remains.
#[test]
fn a_host_not_told_of_a_migration_follows_the_old_home() {
    let a = start_federating();
    let b = start_federating_with(|config| {
        config.federation.profile_refresh_secs = 0;
    });
    let c = start_federating();
    peer_all(&[&a, &b, &c]);
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob = user(&b, "bob").await;
        let den = guild_on(&bob, &b.origin, "den").await;
        api_json(
            &alice,
            "POST",
            &b.url(&format!("/api/v1/invites/{}", den.code)),
            json!({}),
        )
        .await;
        alice
            .migrate(&c.origin, &[&a.origin])
            .await
            .expect("migration to C");
        let watcher = user(&c, "watcher").await;
        let a_knows = eventually(Duration::from_secs(15), async || {
            let seen = watcher
                .get(&a.url(&format!("/api/v1/users/{alice_id}")))
                .await
                .unwrap();
            seen.status == 200 && seen.json().unwrap()["homeserver"] == c.origin.as_str()
        })
        .await;
        assert!(a_knows, "A never applied the migration");

        let follows = eventually(Duration::from_secs(20), async || {
            let seen = bob
                .get(&b.url(&format!("/api/v1/users/{alice_id}")))
                .await
                .unwrap();
            seen.status == 200 && seen.json().unwrap()["homeserver"] == c.origin.as_str()
        })
        .await;
        assert!(follows, "B never learned from A that alice moved to C");
        let member = b.url(&format!("/api/v1/guilds/{}/members/{alice_id}", den.id));
        assert_eq!(status_of(&bob, &member).await, 200, "her membership went");
        let posted = api_json(
            &alice,
            "POST",
            &b.url(&format!("/api/v1/channels/{}/messages", den.channel)),
            json!({ "content": "now homed at C" }),
        )
        .await;
        assert_eq!(posted["author_id"], alice_id.as_str());
    });
}

/// Item 17: a user B shadows on a device certificate naming A, which A answers 404 to,
/// is removed and tombstoned: signing in at B again with the same claim is refused.
#[test]
fn a_user_removed_after_a_verify_user_404_is_tombstoned() {
    let a = start_federating();
    let b = start_federating();
    peer_add(&b, &a.origin);
    block_on(async {
        let bob = user(&b, "bob").await;
        let den = guild_on(&bob, &b.origin, "den").await;
        let mallory = Client::new();
        let hearth::auth::jose::SigningKey::EdDsa(identity) =
            hearth::auth::jose::SigningKey::generate_ed25519()
        else {
            unreachable!()
        };
        mallory.set_identity(identity);
        mallory.set_home(&a.origin).unwrap();
        mallory
            .login_certificate(&b.origin)
            .await
            .expect("fail-open");
        let mallory_id = mallory.user_id(&b.origin).unwrap();
        api_json(
            &mallory,
            "POST",
            &b.url(&format!("/api/v1/invites/{}", den.code)),
            json!({}),
        )
        .await;
        peer_add(&a, &b.origin);
        let member = b.url(&format!("/api/v1/guilds/{}/members/{mallory_id}", den.id));
        let removed = eventually(Duration::from_secs(15), async || {
            status_of(&bob, &member).await == 404
        })
        .await;
        assert!(removed, "B kept a user A does not know");

        // Same claim again, from a fresh device: refused at once.
        let again = Client::new();
        again.set_identity(mallory.identity().unwrap());
        again.set_home(&a.origin).unwrap();
        assert!(
            again.login_certificate(&b.origin).await.is_err(),
            "B made the removed user again"
        );
    });
}

/// Item 17: an administrator of A who migrates to B is no administrator at A any more,
/// though A accepts B's tokens for them.
#[test]
fn an_admin_who_migrates_away_is_no_longer_admin() {
    let (a, b) = federated_pair();
    admin_add(&a, "root");
    block_on(async {
        let root = Client::new();
        root.login_password(&a.origin, "root", PASSWORD)
            .await
            .unwrap();
        root.recover_identity(&a.origin, PASSWORD).await.unwrap();
        assert_eq!(status_of(&root, &a.url("/api/v1/admin/peers")).await, 200);
        let root_id = root.user_id(&a.origin).unwrap();
        let watcher = user(&a, "watcher").await;
        root.migrate(&b.origin, &[&a.origin]).await.unwrap();
        let moved = eventually(Duration::from_secs(15), async || {
            let seen = watcher
                .get(&a.url(&format!("/api/v1/users/{root_id}")))
                .await
                .unwrap();
            seen.status == 200 && seen.json().unwrap()["homeserver"] == b.origin.as_str()
        })
        .await;
        assert!(moved, "A never applied the migration");
        assert_eq!(status_of(&root, &a.url("/api/v1/users/@me")).await, 200);
        for path in ["/api/v1/admin/peers", "/api/v1/admin/ban-notifications"] {
            assert_eq!(
                status_of(&root, &a.url(path)).await,
                403,
                "{path} still open to the migrated admin"
            );
        }
    });
}

/// Item 17: admin routes refuse a remote user even when the stored account says admin
/// (an administrator who migrated away before migrations cleared the flag).
#[test]
fn admin_routes_refuse_remote_users_marked_admin() {
    let dir_a = tempfile::tempdir().unwrap();
    let config_a = federating(dir_a.path());
    let mut a = TestServer::start_config(config_a.clone(), None);
    let b = start_federating();
    peer_all(&[&a, &b]);
    block_on(async {
        let carol = user(&b, "carol").await;
        let carol_id = carol.user_id(&b.origin).unwrap();
        assert_eq!(status_of(&carol, &a.url("/api/v1/users/@me")).await, 200);
        let address = a.addr.to_string();
        a.stop();
        let store = hearth::storage::Store::open(
            &hearth::app::database_path(&config_a),
            1 << 20,
            16,
            hearth::storage::Retention {
                max_events: 100,
                max_age_secs: 3600,
            },
        )
        .unwrap();
        let id = hearth::model::UserId::parse(&carol_id).unwrap();
        store
            .write_blocking(move |tx| {
                let mut shadow: hearth::model::User = tx
                    .get(hearth::storage::tables::USER, id)?
                    .expect("carol's shadow at A");
                shadow.is_admin = true;
                tx.put(hearth::storage::tables::USER, id, &shadow)
            })
            .unwrap();
        drop(store);
        let a = TestServer::start_at(&address, config_a, None);
        for path in ["/api/v1/admin/peers", "/api/v1/admin/ban-notifications"] {
            assert_eq!(
                status_of(&carol, &a.url(path)).await,
                403,
                "{path} open to a remote user"
            );
        }
    });
}

/// Sends a server call to `to` signed with `key` as if from `from`.
async fn signed_call(
    key: &hearth::auth::server_key::ServerKey,
    from: &str,
    to: &TestServer,
    call: &str,
    body: Value,
) -> hearth::client::Response {
    let body = body.to_string().into_bytes();
    let path = format!("/federation/v1/{call}");
    let signature = hearth::federation::signature::sign(
        key,
        from,
        &to.origin,
        "POST",
        &path,
        &body,
        hearth::system::now(),
    );
    Client::new()
        .raw(
            &to.url(&path),
            "POST",
            &[
                ("Hearth-Signature", signature),
                ("Content-Type", "application/json".into()),
            ],
            body,
        )
        .await
        .unwrap()
}

/// Item 2, the broadcast: peer C announces alice's id as its own user before her home A
/// does; A's announcement, which carries her device certificate, still wins at B.
#[test]
fn a_peer_cannot_pre_empt_the_announcement_of_a_user_homed_elsewhere() {
    let c_secret = [11u8; 32];
    let c_key = hearth::auth::server_key::ServerKey::from_bytes(&c_secret);
    let a = start_federating();
    let b = start_federating();
    let c = start_with_key(c_secret, tempfile::tempdir().unwrap(), |_| {});
    peer_all(&[&a, &b, &c]);
    block_on(async {
        let alice = Client::new();
        let hearth::auth::jose::SigningKey::EdDsa(identity) =
            hearth::auth::jose::SigningKey::generate_ed25519()
        else {
            unreachable!()
        };
        let alice_id =
            hearth::auth::device_cert::user_id_from_public(&identity.verifying_key().to_bytes());
        alice.set_identity(identity);
        let claim = signed_call(
            &c_key,
            &c.origin,
            &b,
            "user_created",
            json!({ "id": "1", "user": { "id": alice_id, "homeserver": c.origin,
                    "username": "alice", "name": "alice" } }),
        )
        .await;
        assert_eq!(claim.status, 200);
        let bob = user(&b, "bob").await;
        let seen = api_json(
            &bob,
            "GET",
            &b.url(&format!("/api/v1/users/{alice_id}")),
            json!({}),
        )
        .await;
        assert_eq!(seen["homeserver"], c.origin.as_str(), "C's claim recorded");

        alice.register(&a.origin, "alice", PASSWORD).await.unwrap();
        let corrected = eventually(Duration::from_secs(15), async || {
            let seen = bob
                .get(&b.url(&format!("/api/v1/users/{alice_id}")))
                .await
                .unwrap();
            seen.status == 200 && seen.json().unwrap()["homeserver"] == a.origin.as_str()
        })
        .await;
        assert!(corrected, "B kept C's claim over alice's own home");
    });
}
