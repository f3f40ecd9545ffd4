//! Federation by direct participation across real servers on loopback.

use crate::common::*;
use hearth::client::Client;
use serde_json::{json, Value};
use std::time::Duration;

/// `hearth peer add URL --data DIR` (through the running server's admin socket).
/// Its output, for the tests that read what it says.
fn peer_add_output(server: &TestServer, url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["peer", "add", url, "--data"])
        .arg(&server.data)
        .output()
        .expect("run hearth peer add")
}

async fn json_of(client: &Client, url: &str) -> Value {
    client
        .get(url)
        .await
        .expect("request")
        .ok()
        .expect("2xx")
        .json()
        .expect("json")
}

#[test]
fn a_user_of_a_uses_b_with_as_token_once_b_pins_a() {
    let a = start_federating();
    let b = start_federating();
    block_on(async {
        let alice = user(&a, "alice").await;
        let bob = user(&b, "bob").await;
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        let alice_id = alice.user_id(&a.origin).unwrap();

        // Not a peer yet: B refuses A's token, clearly.
        let refused = alice
            .post(&b.url(&format!("/api/v1/invites/{}", on_b.code)), json!({}))
            .await
            .unwrap();
        assert_eq!(refused.status, 401);
        assert_eq!(refused.error_code().as_deref(), Some("invalid_token"));
        assert!(String::from_utf8_lossy(&refused.body).contains("not accepted"));

        // The administrators pin each other's keys (shared trust); B's shows A's fingerprint.
        peer_add(&a, &b.origin);
        let out = peer_add_output(&b, &a.origin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = String::from_utf8_lossy(&out.stdout).to_string();
        let identity: Value = Client::new()
            .raw(&a.url("/.well-known/hearth"), "GET", &[], Vec::new())
            .await
            .unwrap()
            .json()
            .unwrap();
        let key: [u8; 32] =
            hearth::auth::jose::b64u_decode(identity["server_key"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
        assert!(
            shown.contains(&hearth::model::federation::fingerprint(&key)),
            "{shown}"
        );

        // Refrain's path: A's token and a proof for B, verified by B with A's pinned key.
        let preview = Client::new()
            .raw(
                &b.url(&format!("/api/v1/invites/{}", on_b.code)),
                "GET",
                &[],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(preview.status, 200);
        alice
            .post(&b.url(&format!("/api/v1/invites/{}", on_b.code)), json!({}))
            .await
            .unwrap()
            .ok()
            .expect("join with A's token");
        let posted = alice
            .post(
                &b.url(&format!("/api/v1/channels/{}/messages", on_b.channel)),
                json!({"content": "hello from A"}),
            )
            .await
            .unwrap()
            .ok()
            .expect("post with A's token")
            .json()
            .unwrap();
        assert_eq!(posted["author_id"], alice_id.as_str());

        // VerifyUser runs in the background: B's shadow account gets A's profile.
        let synced = eventually(Duration::from_secs(15), async || {
            let seen = json_of(&bob, &b.url(&format!("/api/v1/users/{alice_id}"))).await;
            seen["name"] == "alice" && seen["homeserver"] == a.origin.as_str()
        })
        .await;
        assert!(synced, "B never learned alice's profile from A");
        let members = json_of(&bob, &b.url(&format!("/api/v1/guilds/{}/members", on_b.id))).await;
        assert!(members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user_id"] == alice_id.as_str() && m["user"]["name"] == "alice"));
    });
}

#[test]
fn joining_is_fail_open_while_the_home_server_is_down() {
    let dir_a = tempfile::tempdir().unwrap();
    let mut a = TestServer::start_config(federating(dir_a.path()), None);
    let b = start_federating();
    block_on(async {
        let carol = user(&a, "carol").await;
        let carol_id = carol.user_id(&a.origin).unwrap();
        let bob = user(&b, "bob").await;
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        peer_add(&b, &a.origin);
        peer_add(&a, &b.origin);

        // A goes away; carol's access token (15 min) still works on B.
        let address = a.addr.to_string();
        a.stop();
        carol
            .post(&b.url(&format!("/api/v1/invites/{}", on_b.code)), json!({}))
            .await
            .unwrap()
            .ok()
            .expect("join while A is down");
        carol
            .post(
                &b.url(&format!("/api/v1/channels/{}/messages", on_b.channel)),
                json!({"content": "A is down but I am here"}),
            )
            .await
            .unwrap()
            .ok()
            .expect("post while A is down");
        smol::Timer::after(Duration::from_millis(500)).await;
        let seen = json_of(&bob, &b.url(&format!("/api/v1/users/{carol_id}"))).await;
        assert_ne!(
            seen["name"], "carol",
            "B cannot know carol's profile while A is down"
        );

        // A comes back where B expects it; the queued VerifyUser completes.
        let _a = TestServer::start_at(&address, federating(dir_a.path()), None);
        let synced = eventually(Duration::from_secs(30), async || {
            json_of(&bob, &b.url(&format!("/api/v1/users/{carol_id}"))).await["name"] == "carol"
        })
        .await;
        assert!(synced, "VerifyUser did not complete after A returned");
    });
}

#[test]
fn a_user_their_home_does_not_know_is_removed() {
    let a = start_federating();
    let b = start_federating();
    block_on(async {
        let bob = user(&b, "bob").await;
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        peer_add(&b, &a.origin);

        // mzchat's path: a device certificate naming A as home, for a key A never saw.
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
            .expect("B trusts the chain at once");
        let mallory_id = mallory.user_id(&b.origin).unwrap();
        mallory
            .post(&b.url(&format!("/api/v1/invites/{}", on_b.code)), json!({}))
            .await
            .unwrap()
            .ok()
            .expect("fail-open join");

        // Only now does A pin B, so B's VerifyUser, refused until then, is retried and
        // answered. A says no such user: B removes the shadow account and its access.
        peer_add(&a, &b.origin);
        let member = format!("/api/v1/guilds/{}/members/{mallory_id}", on_b.id);
        let removed = eventually(Duration::from_secs(15), async || {
            bob.get(&b.url(&member)).await.unwrap().status == 404
        })
        .await;
        assert!(removed, "B kept a user A does not know");
        let after = mallory.get(&b.url("/api/v1/users/@me")).await.unwrap();
        assert_eq!(after.status, 401);
    });
}

#[test]
fn server_calls_are_refused_unless_signed_by_a_peer() {
    let b = start_federating();
    block_on(async {
        let client = Client::new();
        let call = b.url("/federation/v1/verify_user");
        let body = json!({"id": "1", "user_id": "x"}).to_string().into_bytes();
        let unsigned = client.raw(&call, "POST", &[], body.clone()).await.unwrap();
        assert_eq!(unsigned.status, 401);
        assert_eq!(unsigned.error_code().as_deref(), Some("invalid_signature"));
        let garbage = client
            .raw(
                &call,
                "POST",
                &[("Hearth-Signature", "a.b.c".into())],
                body.clone(),
            )
            .await
            .unwrap();
        assert_eq!(garbage.status, 401);
        let stranger = hearth::auth::server_key::ServerKey::generate();
        let signature = hearth::federation::signature::sign(
            &stranger,
            "http://127.0.0.1:9",
            &b.origin,
            "POST",
            "/federation/v1/verify_user",
            &body,
            hearth::system::now(),
        );
        let unknown = client
            .raw(&call, "POST", &[("Hearth-Signature", signature)], body)
            .await
            .unwrap();
        assert_eq!(unknown.status, 401);
        assert_eq!(unknown.error_code().as_deref(), Some("not_a_peer"));
    });
}

#[test]
fn peers_on_the_box_itself_are_refused_by_default() {
    let a = start_federating();
    let b = TestServer::start();
    let out = peer_add_output(&b, &a.origin);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to send"), "{stderr}");
}

#[test]
fn a_user_migrates_to_a_new_home_and_keeps_their_id() {
    let (a, b) = federated_pair();
    block_on(async {
        let alice = user(&a, "alice").await;
        let watcher = user(&a, "watcher").await;
        let alice_id = alice.user_id(&a.origin).unwrap();

        alice
            .migrate(&b.origin, &[&a.origin])
            .await
            .expect("migration at B");
        assert_eq!(alice.home().as_deref(), Some(b.origin.as_str()));
        let at_b = json_of(&alice, &b.url("/api/v1/users/@me")).await;
        assert_eq!(at_b["id"], alice_id.as_str(), "the user id does not change");
        assert_eq!(at_b["homeserver"], b.origin.as_str());

        // A hears UpdateHomeServer and stops acting as home.
        let moved = eventually(Duration::from_secs(15), async || {
            json_of(&watcher, &a.url(&format!("/api/v1/users/{alice_id}"))).await["homeserver"]
                == b.origin.as_str()
        })
        .await;
        assert!(moved, "A never learned of the migration");
        let fresh = Client::new();
        let login = fresh
            .login_password(&a.origin, "alice", "password-of-some-length")
            .await;
        assert!(login.is_err(), "A still signs alice in");

        // B's tokens now work at A for her (A trusts B as her home).
        let seen_by_a = alice.get(&a.url("/api/v1/users/@me")).await.unwrap();
        assert_eq!(
            seen_by_a.status,
            200,
            "{}",
            String::from_utf8_lossy(&seen_by_a.body)
        );
    });
}

#[test]
fn one_client_uses_two_servers_at_once_with_events_from_both() {
    let (a, b, alice, bob) = federated_pair_with("alice", "bob");
    block_on(async {
        let on_a = guild_on(&alice, &a.origin, "Over the hill").await;
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        alice
            .post(&b.url(&format!("/api/v1/invites/{}", on_b.code)), json!({}))
            .await
            .unwrap()
            .ok()
            .unwrap();
        let events_a = alice.events(&a.origin, None).await.expect("stream from A");
        let events_b = alice.events(&b.origin, None).await.expect("stream from B");
        for events in [&events_a, &events_b] {
            let ready = futures_lite::future::or(
                async {
                    while let Some(message) = events.next().await {
                        if let hearth::client::GatewayMessage::Ready { .. } = message {
                            return true;
                        }
                    }
                    false
                },
                async {
                    smol::Timer::after(Duration::from_secs(10)).await;
                    false
                },
            )
            .await;
            assert!(ready, "an event stream never became ready");
        }
        // Each request goes to the server that hosts the resource.
        alice
            .post(
                &a.url(&format!("/api/v1/channels/{}/messages", on_a.channel)),
                json!({"content": "on A"}),
            )
            .await
            .unwrap()
            .ok()
            .unwrap();
        bob.post(
            &b.url(&format!("/api/v1/channels/{}/messages", on_b.channel)),
            json!({"content": "on B"}),
        )
        .await
        .unwrap()
        .ok()
        .unwrap();
        let (_, kind, data) = events_a
            .next_event(Duration::from_secs(10))
            .await
            .expect("event from A");
        assert_eq!(
            (kind.as_str(), data["content"].as_str()),
            ("message_create", Some("on A"))
        );
        let (_, kind, data) = events_b
            .next_event(Duration::from_secs(10))
            .await
            .expect("event from B");
        assert_eq!(
            (kind.as_str(), data["content"].as_str()),
            ("message_create", Some("on B"))
        );
        // Nothing crossed over: A never hosts B's guild.
        let on_a_view = alice
            .get(&a.url(&format!("/api/v1/guilds/{}", on_b.id)))
            .await
            .unwrap();
        assert_eq!(on_a_view.status, 404);
    });
}

/// Starts a server whose server key is one the test knows, so the test can sign calls as
/// that server.
fn start_with_key(secret: [u8; 32]) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = federating(dir.path());
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

#[test]
fn forged_replayed_expired_and_misdirected_calls_are_refused() {
    let secret = [7u8; 32];
    let key = hearth::auth::server_key::ServerKey::from_bytes(&secret);
    let a = start_with_key(secret);
    let b = start_federating();
    block_on(async {
        peer_add(&b, &a.origin);
        let bob = user(&b, "bob").await;
        let bob_id = bob.user_id(&b.origin).unwrap();
        let client = Client::new();
        let path = "/federation/v1/verify_user";
        let call = |body: &Vec<u8>, signature: String| {
            let client = client.clone();
            let url = b.url(path);
            let body = body.clone();
            async move {
                client
                    .raw(&url, "POST", &[("Hearth-Signature", signature)], body)
                    .await
                    .unwrap()
            }
        };
        let now = hearth::system::now();
        let sign =
            |body: &[u8], iat: u64, aud: &str, with: &hearth::auth::server_key::ServerKey| {
                hearth::federation::signature::sign(with, &a.origin, aud, "POST", path, body, iat)
            };
        let body = json!({"id": "1", "user_id": bob_id})
            .to_string()
            .into_bytes();

        // A genuine call from A: B answers for its own user.
        let signature = sign(&body, now, &b.origin, &key);
        let ok = call(&body, signature.clone()).await;
        assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
        assert_eq!(ok.json().unwrap()["user"]["id"], bob_id.as_str());
        // The same signed call again is a replay.
        let replayed = call(&body, signature).await;
        assert_eq!(replayed.status, 401);
        assert_eq!(replayed.error_code().as_deref(), Some("replayed_call"));
        // Too old, meant for another server, signed by another key, body swapped.
        let old = call(&body, sign(&body, now - 3600, &b.origin, &key)).await;
        assert_eq!(old.status, 401);
        let elsewhere = call(&body, sign(&body, now, "http://127.0.0.1:9", &key)).await;
        assert_eq!(elsewhere.status, 401);
        let stranger = hearth::auth::server_key::ServerKey::generate();
        let forged = call(&body, sign(&body, now, &b.origin, &stranger)).await;
        assert_eq!(forged.status, 401);
        assert_eq!(forged.error_code().as_deref(), Some("invalid_signature"));
        let other = json!({"id": "2", "user_id": bob_id})
            .to_string()
            .into_bytes();
        let swapped = call(&other, sign(&body, now, &b.origin, &key)).await;
        assert_eq!(swapped.status, 401);

        // A peer cannot act for users it does not home: B does not answer for A's users,
        // and a migration of B's user needs that user's own signature.
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let about_alice = json!({"id": "3", "user_id": alice_id})
            .to_string()
            .into_bytes();
        let not_home = call(&about_alice, sign(&about_alice, now, &b.origin, &key)).await;
        assert_eq!(not_home.status, 404);
        let migrate_path = "/federation/v1/update_homeserver";
        let hijack = json!({
            "id": "4",
            "user_id": bob_id,
            "new_homeserver": a.origin,
            "migration_timestamp": now,
            "migration_signature": hearth::auth::jose::b64u(&key.sign_raw(format!("{}|{now}", a.origin).as_bytes())),
        })
        .to_string()
        .into_bytes();
        let signature = hearth::federation::signature::sign(
            &key,
            &a.origin,
            &b.origin,
            "POST",
            migrate_path,
            &hijack,
            now,
        );
        let refused = client
            .raw(
                &b.url(migrate_path),
                "POST",
                &[("Hearth-Signature", signature)],
                hijack,
            )
            .await
            .unwrap();
        assert!(
            refused.status == 400 || refused.status == 403,
            "{}",
            refused.status
        );
        let still = json_of(&bob, &b.url("/api/v1/users/@me")).await;
        assert_eq!(
            still["homeserver"],
            b.origin.as_str(),
            "bob's home must not move"
        );
    });
}

#[test]
fn open_policy_pins_on_first_contact_and_device_certificates_log_in_remotely() {
    let a = start_federating();
    let dir = tempfile::tempdir().unwrap();
    let mut config = federating(dir.path());
    config.federation.policy = hearth::config::PeerPolicy::Open;
    let b = TestServer::start_config(config, Some(dir));
    block_on(async {
        peer_add(&a, &b.origin);
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        // No administrator added A on B: the open policy pins A's key on first contact.
        let me_on_b = alice.get(&b.url("/api/v1/users/@me")).await.unwrap();
        assert_eq!(
            me_on_b.status,
            200,
            "{}",
            String::from_utf8_lossy(&me_on_b.body)
        );
        let listed = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["peer", "list", "--data"])
            .arg(&b.data)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&listed.stdout).contains(&a.origin));

        // mzchat's login on B: a second device of alice, certified by K_id, gets B's own
        // tokens for the same user id.
        let laptop = Client::new();
        laptop.set_identity(alice.identity().expect("K_id from registration"));
        laptop.set_home(&a.origin).unwrap();
        laptop
            .login_certificate(&b.origin)
            .await
            .expect("certificate login on B");
        assert_eq!(
            laptop.user_id(&b.origin).as_deref(),
            Some(alice_id.as_str())
        );
        let seen = json_of(&laptop, &b.url("/api/v1/users/@me")).await;
        assert_eq!(seen["id"], alice_id.as_str());
        assert_eq!(seen["homeserver"], a.origin.as_str());
    });
}

#[test]
fn queued_calls_survive_sigkill_and_arrive_once() {
    let dir_a = tempfile::tempdir().unwrap();
    let mut a = TestServer::start_config(federating(dir_a.path()), None);
    let address_a = a.addr.to_string();
    // B is the real binary on a fixed port, so it keeps its origin across restarts.
    let dir_b = tempfile::tempdir().unwrap();
    let config_b = write_light_config(dir_b.path(), "[federation]\nallow_loopback = true");
    let data_b = dir_b.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen_b = format!("127.0.0.1:{port}");
    let serve_b = || {
        HearthProcess::spawn(&[
            "--config".as_ref(),
            config_b.as_os_str(),
            "serve".as_ref(),
            "--data".as_ref(),
            data_b.as_os_str(),
            "--listen".as_ref(),
            std::ffi::OsStr::new(&listen_b),
        ])
    };
    let mut b = serve_b();
    let b_origin = b.origin.clone();
    let admin_add = |data: &std::path::Path, config: Option<&std::path::Path>, name: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .args(["user", "add", name, "--password-stdin", "--admin", "--data"])
            .arg(data)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"admin-password-1\n")
            .unwrap();
        assert!(child.wait().unwrap().success());
    };
    let peer = |from_data: &std::path::Path, config: Option<&std::path::Path>, to: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let out = command
            .args(["peer", "add", to, "--data"])
            .arg(from_data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    peer(&a.data, None, &b_origin);
    peer(&data_b, Some(&config_b), &a.origin);
    admin_add(&a.data, None, "root");

    block_on(async {
        const BANNED: usize = 12;
        let owner = Client::new();
        owner
            .register(&b_origin, "owner", "password-of-some-length")
            .await
            .unwrap();
        let guild = owner
            .post(
                &format!("{b_origin}/api/v1/guilds"),
                json!({"name": "Strict"}),
            )
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        let g = guild["id"].as_str().unwrap().to_string();
        let channel = guild["channels"][0]["id"].as_str().unwrap().to_string();
        let invite = owner
            .post(
                &format!("{b_origin}/api/v1/channels/{channel}/invites"),
                json!({}),
            )
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        let code = invite["code"].as_str().unwrap().to_string();
        let mut ids = Vec::new();
        for i in 0..BANNED {
            let c = user(&a, &format!("troll{i}")).await;
            c.post(&format!("{b_origin}/api/v1/invites/{code}"), json!({}))
                .await
                .unwrap()
                .ok()
                .unwrap();
            ids.push(c.user_id(&a.origin).unwrap());
        }
        // Let the joins' VerifyUser calls through, then take A away and ban everyone:
        // the PropagateBan calls wait in B's outbox.
        let verified = eventually(Duration::from_secs(15), async || {
            hearth_outbox_len(&data_b, &config_b) == 0
        })
        .await;
        assert!(verified);
        a.stop();
        for id in &ids {
            owner
                .put(
                    &format!("{b_origin}/api/v1/guilds/{g}/bans/{id}"),
                    Some(json!({"reason": "spam"})),
                )
                .await
                .unwrap()
                .ok()
                .unwrap();
        }
        assert_eq!(hearth_outbox_len(&data_b, &config_b), BANNED);
        // SIGKILL B with the calls pending, restart it, and bring A back.
        b.kill();
        b = serve_b();
        assert_eq!(
            hearth_outbox_len(&data_b, &config_b),
            BANNED,
            "the outbox survived"
        );
        let a2 = TestServer::start_at(&address_a, federating(dir_a.path()), None);
        let root = Client::new();
        root.login_password(&a2.origin, "root", "admin-password-1")
            .await
            .unwrap();
        let all_arrived = eventually(Duration::from_secs(30), async || {
            hearth_outbox_len(&data_b, &config_b) == 0
        })
        .await;
        assert!(all_arrived, "calls still waiting after A came back");
        let notes = json_of(&root, &a2.url("/api/v1/admin/ban-notifications")).await;
        let notes = notes.as_array().cloned().unwrap_or_default();
        assert_eq!(
            notes.len(),
            BANNED,
            "each ban recorded exactly once: {notes:?}"
        );
        for id in &ids {
            assert_eq!(
                notes.iter().filter(|n| n["user_id"] == id.as_str()).count(),
                1
            );
        }
    });
    b.kill();
}

/// Calls waiting in a server's outbox, through `hearth outbox`.
fn hearth_outbox_len(data: &std::path::Path, config: &std::path::Path) -> usize {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--config")
        .arg(config)
        .args(["outbox", "--data"])
        .arg(data)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// A federating configuration with HTTPS on (its default), data in `dir`.
fn tls_federating(dir: &std::path::Path) -> hearth::config::Config {
    let mut config = federating(dir);
    config.tls = hearth::config::TlsConfig::default();
    config
}

/// The `tls_fingerprint` a server gives in its `/.well-known/hearth`.
async fn published_tls_fingerprint(origin: &str) -> String {
    let identity: Value = Client::new()
        .raw(
            &format!("{origin}/.well-known/hearth"),
            "GET",
            &[],
            Vec::new(),
        )
        .await
        .expect("identity")
        .json()
        .expect("json");
    identity["tls_fingerprint"]
        .as_str()
        .expect("a tls_fingerprint over HTTPS")
        .to_string()
}

/// The fingerprint in an invite link's `#fp=` fragment, checking the link's shape.
fn link_fingerprint(link: &str, origin: &str, code: &str) -> String {
    let parsed = url::Url::parse(link).unwrap_or_else(|e| panic!("{link}: {e}"));
    assert_eq!(parsed.origin().ascii_serialization(), origin, "{link}");
    assert_eq!(parsed.path(), format!("/invite/{code}"), "{link}");
    let fingerprint = parsed
        .fragment()
        .and_then(|f| f.strip_prefix("fp="))
        .unwrap_or_else(|| panic!("no #fp= in {link}"))
        .to_string();
    assert_eq!(fingerprint.len(), 64, "{link}");
    assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()), "{link}");
    fingerprint
}

#[test]
fn invite_links_carry_the_boxs_tls_fingerprint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = TestServer::start_config(tls_federating(dir.path()), None);
    block_on(async {
        let alice = user(&a, "alice").await;
        let guild = api_json(
            &alice,
            "POST",
            &a.url("/api/v1/guilds"),
            json!({"name": "Linked"}),
        )
        .await;
        let channel = guild["channels"][0]["id"].as_str().unwrap();
        let invite = api_json(
            &alice,
            "POST",
            &a.url(&format!("/api/v1/channels/{channel}/invites")),
            json!({}),
        )
        .await;
        let code = invite["code"].as_str().unwrap();
        let published = published_tls_fingerprint(&a.origin).await;
        let link = invite["url"].as_str().expect("url");
        assert_eq!(link_fingerprint(link, &a.origin, code), published);
        // The listing gives the same link.
        let listed = api_json(
            &alice,
            "GET",
            &a.url(&format!(
                "/api/v1/guilds/{}/invites",
                guild["id"].as_str().unwrap()
            )),
            json!({}),
        )
        .await;
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["code"] == code && i["url"] == link),
            "{listed}"
        );

        // `hearth invite create` prints the same kind of link.
        let out = hearth_command(&[
            "invite",
            "create",
            "--guild",
            guild["id"].as_str().unwrap(),
            "--data",
        ])
        .arg(&a.data)
        .output()
        .expect("run hearth invite create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let printed_code = printed
            .split('#')
            .next()
            .and_then(|u| u.rsplit('/').next())
            .unwrap()
            .to_string();
        assert_eq!(
            link_fingerprint(&printed, &a.origin, &printed_code),
            published
        );
    });
}

/// The entry of `origin` in `GET /api/v1/peers` as `who` sees it at `server`.
async fn peer_entry(who: &Client, server: &str, origin: &str) -> Value {
    let peers = api_json(who, "GET", &format!("{server}/api/v1/peers"), json!({})).await;
    peers
        .as_array()
        .expect("a list")
        .iter()
        .find(|p| p["origin"] == origin)
        .cloned()
        .unwrap_or_else(|| panic!("{origin} not in {peers}"))
}

#[test]
fn the_home_tells_its_users_what_it_knows_of_each_box() {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let a = TestServer::start_config(tls_federating(dir_a.path()), None);
    let mut b = TestServer::start_config(tls_federating(dir_b.path()), None);
    peer_both(&a, &b);
    block_on(async {
        let alice = user(&a, "alice").await;
        let bob = user(&b, "bob").await;
        let fingerprint_b = published_tls_fingerprint(&b.origin).await;
        let entry = peer_entry(&alice, &a.origin, &b.origin).await;
        assert_eq!(entry["tls_fingerprint"], fingerprint_b.as_str(), "{entry}");
        assert_eq!(entry["tls_mismatch"], false, "{entry}");
        assert_eq!(entry["reachable"], true, "{entry}");
        assert!(entry["last_contact"].as_u64().is_some(), "{entry}");
        assert!(entry["name"].is_string(), "{entry}");
        // A user of B, with B's token at A: not A's to show.
        let refused = bob.get(&a.url("/api/v1/peers")).await.expect("request");
        assert_eq!(
            refused.status,
            403,
            "{}",
            String::from_utf8_lossy(&refused.body)
        );
    });

    // B comes back at the same address with a new certificate.
    let address = b.addr.to_string();
    b.stop();
    std::fs::remove_dir_all(b.data.join("tls")).expect("remove tls dir");
    let b = TestServer::start_at(&address, tls_federating(dir_b.path()), None);
    block_on(async {
        let alice = Client::new();
        alice
            .login_password(&a.origin, "alice", "password-of-some-length")
            .await
            .expect("login");
        assert_ne!(
            published_tls_fingerprint(&b.origin).await,
            peer_entry(&alice, &a.origin, &b.origin).await["tls_fingerprint"]
        );
        // A new user of A is announced to every peer: A calls B, which presents the new
        // certificate.
        user(&a, "carol").await;
        let mut last = Value::Null;
        let told = eventually(Duration::from_secs(20), async || {
            last = peer_entry(&alice, &a.origin, &b.origin).await;
            last["tls_mismatch"] == true
        })
        .await;
        assert!(told, "{last}");
        assert_eq!(last["reachable"], false, "{last}");
        assert!(
            last["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("certificate"),
            "{last}"
        );
    });
}
