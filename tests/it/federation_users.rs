//! Users across federated servers on loopback: account deletion and the user
//! created/deleted broadcast (Refrain), Synced and Unlinked profiles with refresh from the
//! home (mzchat), and search proxied to peers.

use crate::common::*;
use hearth::client::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PASSWORD: &str = "password-of-some-length";

async fn json_of(client: &Client, url: &str) -> Value {
    let answer = client.get(url).await.expect("request");
    assert!(
        (200..300).contains(&answer.status),
        "GET {url}: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    answer.json().expect("json")
}

/// `who` (a user of another server) joins `guild` on `server` and waits until the host
/// shows their home's profile (VerifyUser done).
async fn join_and_sync(who: &Client, home: &TestServer, server: &TestServer, guild: &Guild) {
    who.post(
        &server.url(&format!("/api/v1/invites/{}", guild.code)),
        json!({}),
    )
    .await
    .unwrap()
    .ok()
    .expect("join with the home's token");
    let id = who.user_id(&home.origin).unwrap();
    let own = json_of(who, &home.url("/api/v1/users/@me")).await;
    let synced = eventually(Duration::from_secs(15), async || {
        let seen = json_of(who, &server.url(&format!("/api/v1/users/{id}"))).await;
        seen["name"] == own["name"] && seen["homeserver"] == home.origin.as_str()
    })
    .await;
    assert!(synced, "the host never learned the profile from the home");
}

async fn name_on(viewer: &Client, server: &TestServer, user: &str) -> Value {
    json_of(viewer, &server.url(&format!("/api/v1/users/{user}"))).await["name"].clone()
}

async fn rename(client: &Client, server: &TestServer, name: &str) -> Value {
    let answer = client
        .patch(&server.url("/api/v1/users/@me"), json!({ "name": name }))
        .await
        .unwrap();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json().unwrap()
}

async fn delete_account(
    client: &Client,
    server: &TestServer,
    body: Value,
) -> hearth::client::Response {
    client
        .send(&server.url("/api/v1/users/@me"), "DELETE", Some(body), true)
        .await
        .unwrap()
}

/// A server's key, read from its data directory once it has stopped.
fn server_key_of(server: &mut TestServer) -> hearth::auth::server_key::ServerKey {
    server.stop();
    let store = hearth::storage::Store::open(
        &server.data.join("hearth.redb"),
        1 << 20,
        16,
        hearth::storage::Retention {
            max_events: 1000,
            max_age_secs: 3600,
        },
    )
    .expect("open the stopped server's database");
    let bytes = store
        .read(|tx| tx.get(hearth::storage::tables::META, b"server_key"))
        .expect("read")
        .expect("a server key");
    hearth::auth::server_key::ServerKey::from_bytes(&bytes.try_into().expect("32 bytes"))
}

/// Sends a server call to `to` signed with `key` as if from `from`.
async fn forged_call(
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

#[test]
fn deleting_an_account_removes_it_on_its_home_and_on_peers_at_once() {
    let (a, b, alice, bob) = federated_pair_with("alice", "bob");
    block_on(async {
        let alice_id = alice.user_id(&a.origin).unwrap();
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        join_and_sync(&alice, &a, &b, &on_b).await;
        let posted = alice
            .post(
                &b.url(&format!("/api/v1/channels/{}/messages", on_b.channel)),
                json!({"content": "soon gone"}),
            )
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();

        // The password confirms it; a guild she owns must go first.
        let wrong = delete_account(&alice, &a, json!({"password": "not her password"})).await;
        assert_eq!(
            wrong.status,
            403,
            "{}",
            String::from_utf8_lossy(&wrong.body)
        );
        let missing = delete_account(&alice, &a, json!({})).await;
        assert_eq!(missing.status, 400);
        let own_guild = guild_on(&alice, &a.origin, "Alice's").await;
        let owns = delete_account(&alice, &a, json!({"password": PASSWORD})).await;
        assert_eq!(owns.status, 409);
        assert_eq!(owns.error_code().as_deref(), Some("owns_guilds"));
        alice
            .delete(&a.url(&format!("/api/v1/guilds/{}", own_guild.id)))
            .await
            .unwrap()
            .ok()
            .unwrap();
        // Still a member (and still usable) on B after the refusals.
        assert_eq!(
            alice.get(&b.url("/api/v1/users/@me")).await.unwrap().status,
            200
        );

        let deleted = delete_account(&alice, &a, json!({"password": PASSWORD})).await;
        assert_eq!(
            deleted.status,
            204,
            "{}",
            String::from_utf8_lossy(&deleted.body)
        );
        let started = Instant::now();

        // On the home: her access token stops at once (the device is gone).
        let on_a = alice.get(&a.url("/api/v1/users/@me")).await.unwrap();
        assert_eq!(on_a.status, 401);
        // On B: the broadcast removes the shadow and refuses the still-valid token.
        let refused = eventually(Duration::from_secs(10), async || {
            alice.get(&b.url("/api/v1/users/@me")).await.unwrap().status == 401
        })
        .await;
        assert!(refused, "B still accepts a deleted user's token");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "refused only when the token expired"
        );
        let refused = alice.get(&b.url("/api/v1/users/@me")).await.unwrap();
        assert_eq!(refused.error_code().as_deref(), Some("invalid_token"));
        assert!(
            String::from_utf8_lossy(&refused.body).contains("deleted"),
            "{}",
            String::from_utf8_lossy(&refused.body)
        );
        let member = bob
            .get(&b.url(&format!("/api/v1/guilds/{}/members/{alice_id}", on_b.id)))
            .await
            .unwrap();
        assert_eq!(member.status, 404);
        let profile = bob
            .get(&b.url(&format!("/api/v1/users/{alice_id}")))
            .await
            .unwrap();
        assert_eq!(profile.status, 404);
        // Her messages stay, attributed to her id.
        let message = json_of(
            &bob,
            &b.url(&format!(
                "/api/v1/channels/{}/messages/{}",
                on_b.channel,
                posted["id"].as_str().unwrap()
            )),
        )
        .await;
        assert_eq!(message["author_id"], alice_id.as_str());
        assert_eq!(message["content"], "soon gone");

        // No new shadow account either: her identity key still signs device
        // certificates naming A, but B refuses them.
        let again = alice.login_certificate(&b.origin).await;
        assert!(again.is_err(), "B made a new shadow for a deleted user");

        // Her username is free again on A.
        let _new_alice = user(&a, "alice").await;
    });
}

#[test]
fn a_deletion_from_a_server_that_is_not_the_home_is_refused() {
    let (a, b) = federated_pair();
    let mut c = start_federating();
    peer_add(&b, &c.origin);
    let c_origin = c.origin.clone();
    let c_key = server_key_of(&mut c);
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob = user(&b, "bob").await;
        let bob_id = bob.user_id(&b.origin).unwrap();
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        join_and_sync(&alice, &a, &b, &on_b).await;

        // C is a peer of B, but alice's home is A.
        let forged = forged_call(
            &c_key,
            &c_origin,
            &b,
            "user_deleted",
            json!({"id": "1", "user_id": alice_id}),
        )
        .await;
        assert_eq!(
            forged.status,
            403,
            "{}",
            String::from_utf8_lossy(&forged.body)
        );
        assert_eq!(forged.error_code().as_deref(), Some("not_home_server"));
        // Nor may C delete B's own users.
        let forged = forged_call(
            &c_key,
            &c_origin,
            &b,
            "user_deleted",
            json!({"id": "2", "user_id": bob_id}),
        )
        .await;
        assert_eq!(forged.status, 403);
        // Nor announce or rewrite alice's profile, whatever home it claims for her.
        let mut claimed = json_of(&bob, &b.url(&format!("/api/v1/users/{alice_id}"))).await;
        claimed["name"] = json!("Mallory");
        let forged = forged_call(
            &c_key,
            &c_origin,
            &b,
            "profile_updated",
            json!({"id": "3", "user": claimed}),
        )
        .await;
        assert_eq!(forged.status, 403);
        claimed["homeserver"] = json!(c_origin);
        for (id, call) in [("4", "profile_updated"), ("5", "user_created")] {
            let forged = forged_call(
                &c_key,
                &c_origin,
                &b,
                call,
                json!({"id": id, "user": claimed}),
            )
            .await;
            assert_eq!(forged.status, 403, "{call}");
        }

        // Alice is untouched on B.
        assert_eq!(
            alice.get(&b.url("/api/v1/users/@me")).await.unwrap().status,
            200
        );
        assert_eq!(name_on(&bob, &b, &alice_id).await, "alice");
        let member = bob
            .get(&b.url(&format!("/api/v1/guilds/{}/members/{alice_id}", on_b.id)))
            .await
            .unwrap();
        assert_eq!(member.status, 200);
    });
}

#[test]
fn new_accounts_are_announced_to_peers() {
    let dir_a = tempfile::tempdir().unwrap();
    let mut a = TestServer::start_config(federating(dir_a.path()), None);
    let b = start_federating();
    peer_both(&a, &b);
    block_on(async {
        let bob = user(&b, "bob").await;
        // Registration over HTTP and `hearth user add` both announce the account.
        let erin = user(&a, "erin").await;
        let erin_id = erin.user_id(&a.origin).unwrap();
        let out = run_hearth(
            &[
                "user".as_ref(),
                "add".as_ref(),
                "gina".as_ref(),
                "--password-stdin".as_ref(),
                "--data".as_ref(),
                a.data.as_os_str(),
            ],
            Some("gina-password-1\n"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        let gina_id = printed
            .trim()
            .strip_prefix("created user gina (")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected output of user add: {printed:?}"))
            .to_string();

        // B knows them without either having used B: lookups show their home.
        for (id, name) in [(&erin_id, "erin"), (&gina_id, "gina")] {
            let known = eventually(Duration::from_secs(10), async || {
                let answer = bob
                    .get(&b.url(&format!("/api/v1/users/{id}")))
                    .await
                    .unwrap();
                answer.status == 200
                    && answer.json().unwrap()["homeserver"] == a.origin.as_str()
                    && answer.json().unwrap()["username"] == name
            })
            .await;
            assert!(known, "user_created for {name} never reached B");
        }

        // With A down, B's search still finds them from its directory, marked cached.
        a.stop();
        let found = json_of(&bob, &b.url("/api/v1/users/search?q=erin")).await;
        let users = found["users"].as_array().unwrap();
        let hit = users
            .iter()
            .find(|u| u["id"] == erin_id.as_str())
            .expect("erin in B's directory");
        assert_eq!(hit["homeserver"], a.origin.as_str());
        assert_eq!(hit["cached"], true);
        assert_eq!(found["unreachable"], json!([a.origin]));
    });
}

#[test]
fn shadow_profiles_refresh_from_the_home_and_are_served_cached_while_it_is_down() {
    let dir_a = tempfile::tempdir().unwrap();
    // A does not push profile changes here: only the refresh on lookup brings them.
    let config_a = || {
        let mut config = federating(dir_a.path());
        config.federation.push_profile_updates = false;
        config
    };
    let mut a = TestServer::start_config(config_a(), None);
    let b = start_federating_with(|c| c.federation.profile_refresh_secs = 1);
    peer_both(&a, &b);
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob = user(&b, "bob").await;
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        join_and_sync(&alice, &a, &b, &on_b).await;

        rename(&alice, &a, "Alice Liddell").await;
        let refreshed = eventually(Duration::from_secs(15), async || {
            name_on(&bob, &b, &alice_id).await == "Alice Liddell"
        })
        .await;
        assert!(refreshed, "B never refreshed alice's profile from A");
        let members = json_of(&bob, &b.url(&format!("/api/v1/guilds/{}/members", on_b.id))).await;
        assert!(members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user_id"] == alice_id.as_str() && m["user"]["name"] == "Alice Liddell"));

        // A stops: B serves the cached profile (and queues one refresh, which waits).
        let address = a.addr.to_string();
        a.stop();
        smol::Timer::after(Duration::from_millis(1200)).await;
        for _ in 0..3 {
            assert_eq!(name_on(&bob, &b, &alice_id).await, "Alice Liddell");
            let member = json_of(
                &bob,
                &b.url(&format!("/api/v1/guilds/{}/members/{alice_id}", on_b.id)),
            )
            .await;
            assert_eq!(member["user"]["name"], "Alice Liddell");
            // Her A token keeps working on B meanwhile.
            assert_eq!(
                alice.get(&b.url("/api/v1/users/@me")).await.unwrap().status,
                200
            );
        }

        // A returns; later changes arrive by refresh again.
        let _a = TestServer::start_at(&address, config_a(), None);
        rename(&alice, &_a, "Alice L.").await;
        let refreshed = eventually(Duration::from_secs(30), async || {
            name_on(&bob, &b, &alice_id).await == "Alice L."
        })
        .await;
        assert!(refreshed, "B did not refresh after A came back");
    });
}

#[test]
fn unlinked_profiles_stay_local_until_relinked() {
    let (a, b) = federated_pair();
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let carol = user(&a, "carol").await;
        let carol_id = carol.user_id(&a.origin).unwrap();
        let bob = user(&b, "bob").await;
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        join_and_sync(&alice, &a, &b, &on_b).await;
        join_and_sync(&carol, &a, &b, &on_b).await;

        // Synced: a change on A reaches B soon (profile_updated), well before the
        // one-hour refresh age.
        rename(&alice, &a, "Alice A1").await;
        let pushed = eventually(Duration::from_secs(10), async || {
            name_on(&bob, &b, &alice_id).await == "Alice A1"
        })
        .await;
        assert!(pushed, "A's profile change did not reach B");

        // Unlinked: her own name on B, kept on B only.
        let own = rename(&alice, &b, "Alice on B").await;
        assert_eq!(own["name"], "Alice on B");
        assert_eq!(own["profile_synced"], false);
        assert_eq!(name_on(&bob, &b, &alice_id).await, "Alice on B");
        assert_eq!(name_on(&alice, &a, &alice_id).await, "Alice A1");

        // A's later changes do not override it. Carol's change, queued after alice's,
        // shows when A's calls have been delivered.
        rename(&alice, &a, "Alice A2").await;
        rename(&carol, &a, "Carol 2").await;
        let delivered = eventually(Duration::from_secs(10), async || {
            name_on(&bob, &b, &carol_id).await == "Carol 2"
        })
        .await;
        assert!(delivered);
        assert_eq!(name_on(&bob, &b, &alice_id).await, "Alice on B");

        // Relinked: B follows A again, at once with a refresh, and later changes too.
        let relinked = alice
            .post(&b.url("/api/v1/users/@me/relink"), json!({}))
            .await
            .unwrap();
        assert_eq!(relinked.status, 200);
        assert_eq!(relinked.json().unwrap()["profile_synced"], true);
        let synced = eventually(Duration::from_secs(10), async || {
            name_on(&bob, &b, &alice_id).await == "Alice A2"
        })
        .await;
        assert!(synced, "relink did not bring A's profile back");
        rename(&alice, &a, "Alice A3").await;
        let synced = eventually(Duration::from_secs(10), async || {
            name_on(&bob, &b, &alice_id).await == "Alice A3"
        })
        .await;
        assert!(synced, "syncing did not resume after relink");

        // Relinking is for remote users; deleting is for the home.
        let local = bob
            .post(&b.url("/api/v1/users/@me/relink"), json!({}))
            .await
            .unwrap();
        assert_eq!(local.status, 400);
        let remote = delete_account(&alice, &b, json!({"password": PASSWORD})).await;
        assert_eq!(remote.status, 403);
    });
}

#[test]
fn search_on_a_home_finds_users_of_its_peers() {
    let (a, b) = federated_pair();
    block_on(async {
        let dana = user(&a, "dana").await;
        let dana_id = dana.user_id(&a.origin).unwrap();
        let dave = user(&b, "dave").await;
        let dave_id = dave.user_id(&b.origin).unwrap();
        let _zed = user(&b, "zed").await;

        let found = json_of(&dana, &a.url("/api/v1/users/search?q=DA")).await;
        let users = found["users"].as_array().unwrap();
        let home_of = |id: &str| {
            users
                .iter()
                .find(|u| u["id"] == id)
                .map(|u| u["homeserver"].clone())
        };
        assert_eq!(home_of(&dana_id), Some(json!(a.origin)), "{found}");
        assert_eq!(home_of(&dave_id), Some(json!(b.origin)), "{found}");
        assert!(users.iter().all(|u| u["username"] != "zed"));
        assert_eq!(found["unreachable"], json!([]));
        // Local matches come first; every result once.
        assert_eq!(users[0]["id"], dana_id.as_str());
        assert_eq!(users.len(), 2);

        // B's users searching on B find A's the same way.
        let found = json_of(&dave, &b.url("/api/v1/users/search?q=dan")).await;
        assert!(found["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == dana_id.as_str() && u["homeserver"] == a.origin.as_str()));

        // Limits: each server contributes at most `limit`; q is 1-64 characters.
        let found = json_of(&dana, &a.url("/api/v1/users/search?q=d&limit=1")).await;
        assert_eq!(found["users"].as_array().unwrap().len(), 2, "{found}");
        for bad in ["", "q=", &format!("q={}", "x".repeat(65))] {
            let answer = dana
                .get(&a.url(&format!("/api/v1/users/search?{bad}")))
                .await
                .unwrap();
            assert_eq!(answer.status, 400, "{bad}");
        }
    });
}
