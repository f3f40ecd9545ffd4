//! Direct messages: opened at the opener's home, used by the others with their home
//! identity (also from other boxes), listed at every participant's home.

use crate::common::*;
use hearth::client::{Client, GatewayMessage};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// `method url` with `body`: the status and the JSON answer (or null).
async fn call(client: &Client, method: &str, url: &str, body: Value) -> (u16, Value) {
    let answer = match method {
        "POST" => client.post(url, body).await,
        "PATCH" => client.patch(url, body).await,
        "PUT" => client.put(url, Some(body)).await,
        "DELETE" => client.delete(url).await,
        _ => client.get(url).await,
    }
    .expect("request");
    (answer.status, answer.json().unwrap_or(Value::Null))
}

/// The next event of `kind` on `stream`, skipping others.
async fn event_of(stream: &hearth::client::EventStream, kind: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .unwrap_or_else(|| panic!("no {kind} event"));
        let (_, k, data) = stream
            .next_event(left)
            .await
            .unwrap_or_else(|| panic!("no {kind} event"));
        if k == kind {
            return data;
        }
    }
}

async fn live(client: &Client, origin: &str) -> hearth::client::EventStream {
    let stream = client.events(origin, None).await.expect("events");
    loop {
        match stream.next().await {
            Some(GatewayMessage::Ready { .. }) => return stream,
            Some(_) => continue,
            None => panic!("stream ended"),
        }
    }
}

async fn post_message(client: &Client, origin: &str, channel: &str, text: &str) -> Value {
    api_json(
        client,
        "POST",
        &format!("{origin}/api/v1/channels/{channel}/messages"),
        json!({ "content": text }),
    )
    .await
}

async fn contents(client: &Client, origin: &str, channel: &str) -> Vec<String> {
    let list = api_json(
        client,
        "GET",
        &format!("{origin}/api/v1/channels/{channel}/messages"),
        Value::Null,
    )
    .await;
    list.as_array()
        .expect("messages")
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_dm_on_one_box_is_for_its_participants_only() {
    let server = TestServer::start();
    let origin = server.origin.clone();
    block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let carol = user(&server, "carol").await;
        let bob_id = bob.user_id(&origin).unwrap();
        let carol_id = carol.user_id(&origin).unwrap();
        let bob_events = live(&bob, &origin).await;

        let (status, dm) = call(
            &alice,
            "POST",
            &server.url("/api/v1/dms"),
            json!({ "recipients": [bob_id] }),
        )
        .await;
        assert_eq!(status, 201, "{dm}");
        assert_eq!(dm["kind"], "dm");
        assert_eq!(dm["host"], origin.as_str());
        let id = dm["id"].as_str().unwrap().to_string();
        assert_eq!(event_of(&bob_events, "dm_create").await["id"], id.as_str());

        // Opening it again gives the same DM.
        let (status, again) = call(
            &alice,
            "POST",
            &server.url("/api/v1/dms"),
            json!({ "recipients": [bob_id] }),
        )
        .await;
        assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())));

        post_message(&alice, &origin, &id, "hi bob").await;
        let created = event_of(&bob_events, "message_create").await;
        assert_eq!(created["content"], "hi bob");
        post_message(&bob, &origin, &id, "hi alice").await;
        assert_eq!(
            contents(&alice, &origin, &id).await,
            vec!["hi alice", "hi bob"]
        );

        // Reactions and typing work as in a channel.
        let hi = created["id"].as_str().unwrap();
        let (status, _) = call(
            &bob,
            "PUT",
            &server.url(&format!("/api/v1/channels/{id}/messages/{hi}/reactions/👍")),
            Value::Null,
        )
        .await;
        assert!((200..300).contains(&status), "reaction: {status}");
        let (status, _) = call(
            &alice,
            "POST",
            &server.url(&format!("/api/v1/channels/{id}/typing")),
            json!({}),
        )
        .await;
        assert_eq!(status, 204);

        // Files, as in a channel: uploaded, attached, downloaded by the other.
        let upload = alice
            .send_bytes(
                &server.url(&format!("/api/v1/channels/{id}/files?filename=note.txt")),
                "POST",
                Some("text/plain"),
                b"picnic at noon".to_vec(),
                true,
            )
            .await
            .expect("upload");
        assert!(
            (200..300).contains(&upload.status),
            "upload: {}",
            upload.status
        );
        let file_id = upload.json().unwrap()["file_id"]
            .as_str()
            .unwrap()
            .to_string();
        api_json(
            &alice,
            "POST",
            &server.url(&format!("/api/v1/channels/{id}/messages")),
            json!({ "content": "", "attachments": [file_id] }),
        )
        .await;
        let file_url = server.url(&format!("/api/v1/channels/{id}/files/{file_id}"));
        let download = bob.get(&file_url).await.expect("download");
        assert_eq!(
            (download.status, download.body.as_slice()),
            (200, &b"picnic at noon"[..])
        );
        assert_eq!(carol.get(&file_url).await.expect("download").status, 404);

        // Carol sees none of it.
        for (method, path) in [
            ("GET", format!("/api/v1/channels/{id}/messages")),
            ("POST", format!("/api/v1/channels/{id}/messages")),
            ("GET", format!("/api/v1/dms/{id}")),
        ] {
            let (status, body) = call(
                &carol,
                method,
                &server.url(&path),
                json!({ "content": "let me in" }),
            )
            .await;
            assert_eq!(status, 404, "{method} {path}: {body}");
        }
        // Nobody moderates a DM: no invites, no channel changes, no pins.
        for (method, path) in [
            ("POST", format!("/api/v1/channels/{id}/invites")),
            ("PATCH", format!("/api/v1/channels/{id}")),
            ("PUT", format!("/api/v1/channels/{id}/pins/{hi}")),
        ] {
            let (status, body) = call(&alice, method, &server.url(&path), json!({})).await;
            assert_eq!(status, 403, "{method} {path}: {body}");
        }

        let listed = api_json(
            &bob,
            "GET",
            &server.url("/api/v1/users/@me/dms"),
            Value::Null,
        )
        .await;
        assert_eq!(listed[0]["id"], id.as_str());
        let listed = api_json(
            &carol,
            "GET",
            &server.url("/api/v1/users/@me/dms"),
            Value::Null,
        )
        .await;
        assert_eq!(listed, json!([]));

        // A group DM: named, renamed, carol leaves, the owner removes bob.
        let group = api_json(
            &alice,
            "POST",
            &server.url("/api/v1/dms"),
            json!({ "recipients": [bob_id, carol_id], "name": "picnic" }),
        )
        .await;
        assert_eq!(group["kind"], "group_dm");
        let gid = group["id"].as_str().unwrap().to_string();
        assert_eq!(event_of(&bob_events, "dm_create").await["name"], "picnic");
        let renamed = api_json(
            &carol,
            "PATCH",
            &server.url(&format!("/api/v1/dms/{gid}")),
            json!({ "name": "picnic sunday" }),
        )
        .await;
        assert_eq!(renamed["name"], "picnic sunday");
        assert_eq!(
            event_of(&bob_events, "dm_update").await["name"],
            "picnic sunday"
        );
        post_message(&carol, &origin, &gid, "bringing cake").await;
        let (status, _) = call(
            &carol,
            "DELETE",
            &server.url(&format!("/api/v1/dms/{gid}/recipients/@me")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 204);
        let (status, _) = call(
            &carol,
            "GET",
            &server.url(&format!("/api/v1/channels/{gid}/messages")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 404);
        let (status, body) = call(
            &bob,
            "DELETE",
            &server.url(&format!(
                "/api/v1/dms/{gid}/recipients/{}",
                alice.user_id(&origin).unwrap()
            )),
            Value::Null,
        )
        .await;
        assert_eq!(status, 403, "{body}");
        let (status, _) = call(
            &alice,
            "DELETE",
            &server.url(&format!("/api/v1/dms/{gid}/recipients/{bob_id}")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 204);
        assert_eq!(event_of(&bob_events, "dm_delete").await["id"], gid.as_str());
        // Added back by alice, bob reads the history.
        let (status, _) = call(
            &alice,
            "PUT",
            &server.url(&format!("/api/v1/dms/{gid}/recipients/{bob_id}")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(event_of(&bob_events, "dm_create").await["id"], gid.as_str());
        assert_eq!(contents(&bob, &origin, &gid).await, vec!["bringing cake"]);
        // A 1:1 DM takes nobody in.
        let (status, body) = call(
            &alice,
            "PUT",
            &server.url(&format!("/api/v1/dms/{id}/recipients/{carol_id}")),
            Value::Null,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("not_a_group_dm"))
        );

        // A deleted account leaves every DM.
        let gone = bob
            .send(
                &server.url("/api/v1/users/@me"),
                "DELETE",
                Some(json!({ "password": "password-of-some-length" })),
                true,
            )
            .await
            .expect("delete bob");
        assert_eq!(gone.status, 204, "{}", String::from_utf8_lossy(&gone.body));
        let left = api_json(
            &alice,
            "GET",
            &server.url(&format!("/api/v1/dms/{id}")),
            Value::Null,
        )
        .await;
        assert_eq!(left["recipients"], json!([alice.user_id(&origin).unwrap()]));
    });
}

#[test]
fn bad_dm_requests_get_a_clear_4xx() {
    let server = TestServer::start_with(|config| config.throttle.dms_per_user_hour = 4);
    block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let me = alice.user_id(&server.origin).unwrap();
        let bob_id = bob.user_id(&server.origin).unwrap();
        let stranger = hearth::model::UserId([7; 32]).to_text();
        let mut crowd = Vec::new();
        for i in 0..10 {
            crowd.push(
                user(&server, &format!("member{i}"))
                    .await
                    .user_id(&server.origin)
                    .unwrap(),
            );
        }
        let url = server.url("/api/v1/dms");
        for (body, status, code) in [
            (json!({ "recipients": [me] }), 400, "invalid_recipients"),
            (json!({ "recipients": [] }), 400, "invalid_recipients"),
            (json!({ "recipients": crowd }), 400, "too_many_items"),
            (json!({ "recipients": [stranger] }), 404, "unknown_user"),
            (
                json!({ "recipients": [bob_id, bob_id] }),
                400,
                "duplicate_recipient",
            ),
            (json!({ "recipients": ["not-a-user"] }), 400, "invalid_json"),
            (
                json!({ "recipients": [bob_id], "colour": 1 }),
                400,
                "invalid_json",
            ),
        ] {
            let (got, answer) = call(&alice, "POST", &url, body.clone()).await;
            assert_eq!(
                (got, answer["error"].as_str()),
                (status, Some(code)),
                "{body}: {answer}"
            );
        }
        let (status, answer) =
            call(&alice, "GET", &server.url("/api/v1/dms/12345"), Value::Null).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (404, Some("unknown_dm"))
        );

        // The rate limit counts openings, refused ones after the checks included.
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(
                call(&alice, "POST", &url, json!({ "recipients": [bob_id] }))
                    .await
                    .0,
            );
        }
        assert!(statuses.contains(&429), "{statuses:?}");
        let (status, answer) = call(&alice, "POST", &url, json!({ "recipients": [bob_id] })).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (429, Some("rate_limited"))
        );
    });
}

/// Waits until `server` knows `user` (its home's `user_created` arrived).
async fn known_at(viewer: &Client, server: &TestServer, user: &str) {
    let known = eventually(WAIT, async || {
        viewer
            .get(&server.url(&format!("/api/v1/users/{user}")))
            .await
            .is_ok_and(|a| a.status == 200)
    })
    .await;
    assert!(known, "{user} never became known at {}", server.origin);
}

/// The DMs `client`'s home lists for them.
async fn listed(client: &Client, home: &TestServer) -> Vec<Value> {
    api_json(
        client,
        "GET",
        &home.url("/api/v1/users/@me/dms"),
        Value::Null,
    )
    .await
    .as_array()
    .expect("list")
    .clone()
}

async fn listed_at_home(client: &Client, home: &TestServer, id: &str, present: bool) -> bool {
    eventually(WAIT, async || {
        listed(client, home).await.iter().any(|d| d["id"] == id) == present
    })
    .await
}

#[test]
fn a_dm_across_boxes_is_used_with_home_identities_and_listed_at_every_home() {
    let a = start_federating();
    let b = start_federating();
    let c = start_federating();
    peer_all(&[&a, &b, &c]);
    block_on(async {
        let alice = user(&a, "alice").await;
        let bob = user(&b, "bob").await;
        let carol = user(&c, "carol").await;
        let bob_id = bob.user_id(&b.origin).unwrap();
        let carol_id = carol.user_id(&c.origin).unwrap();
        known_at(&alice, &a, &bob_id).await;
        known_at(&alice, &a, &carol_id).await;

        // Opened at alice's home, A; bob uses it there with B's identity.
        let dm = api_json(
            &alice,
            "POST",
            &a.url("/api/v1/dms"),
            json!({ "recipients": [bob_id] }),
        )
        .await;
        let id = dm["id"].as_str().unwrap().to_string();
        assert_eq!(dm["host"], a.origin.as_str());
        post_message(&alice, &a.origin, &id, "hello from A").await;
        post_message(&bob, &a.origin, &id, "hello from B").await;
        assert_eq!(
            contents(&bob, &a.origin, &id).await,
            vec!["hello from B", "hello from A"]
        );
        assert_eq!(
            contents(&alice, &a.origin, &id).await,
            vec!["hello from B", "hello from A"]
        );
        // Opening a DM at a box that is not your home is refused.
        let (status, answer) = call(
            &bob,
            "POST",
            &a.url("/api/v1/dms"),
            json!({ "recipients": [alice.user_id(&a.origin).unwrap()] }),
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (403, Some("not_home_server"))
        );

        // Bob's home lists it, with its host.
        let ok = listed_at_home(&bob, &b, &id, true).await;
        if !ok {
            let out = hearth_command(&["outbox", "--data"])
                .arg(&a.data)
                .output()
                .unwrap();
            eprintln!("A outbox: {}", String::from_utf8_lossy(&out.stdout));
        }
        assert!(ok, "B never listed the DM");
        let entry = listed(&bob, &b)
            .await
            .into_iter()
            .find(|d| d["id"] == id.as_str())
            .unwrap();
        assert_eq!(entry["host"], a.origin.as_str());
        assert_eq!(entry["kind"], "dm");
        // Bob opening a DM with alice at his home gets that one, hosted at A.
        known_at(&bob, &b, dm["owner_id"].as_str().unwrap()).await;
        let (status, same) = call(
            &bob,
            "POST",
            &b.url("/api/v1/dms"),
            json!({ "recipients": [dm["owner_id"]] }),
        )
        .await;
        assert_eq!(
            (status, same["id"].as_str(), same["host"].as_str()),
            (200, Some(id.as_str()), Some(a.origin.as_str())),
            "{same}"
        );

        // A group DM at A takes carol (home C) in, then its owner removes her.
        let group = api_json(
            &alice,
            "POST",
            &a.url("/api/v1/dms"),
            json!({ "recipients": [bob_id], "name": "trip" }),
        )
        .await;
        let gid = group["id"].as_str().unwrap().to_string();
        let (status, added) = call(
            &bob,
            "PUT",
            &a.url(&format!("/api/v1/dms/{gid}/recipients/{carol_id}")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{added}");
        assert!(
            listed_at_home(&carol, &c, &gid, true).await,
            "C never listed the group"
        );
        post_message(&carol, &a.origin, &gid, "carol here").await;
        assert!(
            eventually(WAIT, async || {
                listed(&bob, &b).await.iter().any(|d| {
                    d["id"] == gid.as_str() && d["recipients"].as_array().unwrap().len() == 3
                })
            })
            .await,
            "B never heard carol joined"
        );
        let (status, _) = call(
            &alice,
            "DELETE",
            &a.url(&format!("/api/v1/dms/{gid}/recipients/{carol_id}")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 204);
        assert!(
            listed_at_home(&carol, &c, &gid, false).await,
            "C still lists the group"
        );
        let (status, _) = call(
            &carol,
            "GET",
            &a.url(&format!("/api/v1/channels/{gid}/messages")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 404);
        // Bob leaves the group: his home stops listing it.
        let (status, _) = call(
            &bob,
            "DELETE",
            &a.url(&format!("/api/v1/dms/{gid}/recipients/@me")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 204);
        assert!(
            listed_at_home(&bob, &b, &gid, false).await,
            "B still lists the group"
        );

        // With A stopped, B still lists the 1:1 DM, with its host.
        let mut a = a;
        a.stop();
        let still = listed(&bob, &b).await;
        let entry = still
            .iter()
            .find(|d| d["id"] == id.as_str())
            .expect("listed while A is down");
        assert_eq!(entry["host"], a.origin.as_str());
    });
}

#[test]
fn who_may_dm_me_is_decided_at_my_home() {
    let (a, b) = federated_pair();
    block_on(async {
        let alice = user(&a, "alice").await;
        let dave = user(&a, "dave").await;
        let erin = user(&a, "erin").await;
        let bob = user(&b, "bob").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob_id = bob.user_id(&b.origin).unwrap();
        let erin_id = erin.user_id(&a.origin).unwrap();
        known_at(&alice, &a, &bob_id).await;
        known_at(&bob, &b, &alice_id).await;
        let dms = a.url("/api/v1/dms");
        let refused = |answer: (u16, Value)| {
            assert_eq!(
                (answer.0, answer.1["error"].as_str()),
                (403, Some("dm_refused")),
                "{}",
                answer.1
            );
        };

        // Bob blocks alice at his home: her DM at A is refused at once.
        let (status, _) = call(
            &bob,
            "PUT",
            &b.url(&format!("/api/v1/users/@me/blocks/{alice_id}")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 204);
        let blocked = api_json(&bob, "GET", &b.url("/api/v1/users/@me/blocks"), Value::Null).await;
        assert_eq!(blocked, json!([alice_id]));
        refused(call(&alice, "POST", &dms, json!({ "recipients": [bob_id] })).await);
        assert!(listed(&bob, &b).await.is_empty());
        // Nor may she bring him into a group.
        let group = api_json(
            &alice,
            "POST",
            &dms,
            json!({ "recipients": [erin_id], "name": "g" }),
        )
        .await;
        let gid = group["id"].as_str().unwrap();
        refused(
            call(
                &alice,
                "PUT",
                &a.url(&format!("/api/v1/dms/{gid}/recipients/{bob_id}")),
                Value::Null,
            )
            .await,
        );
        let (status, _) = call(
            &bob,
            "DELETE",
            &b.url(&format!("/api/v1/users/@me/blocks/{alice_id}")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 204);
        let (status, _) = call(&alice, "POST", &dms, json!({ "recipients": [bob_id] })).await;
        assert_eq!(status, 201);

        // Policy `nobody`, then `shared_guild`.
        let settings = b.url("/api/v1/users/@me/dm-settings");
        let set = api_json(&bob, "PATCH", &settings, json!({ "dm_policy": "nobody" })).await;
        assert_eq!(set["dm_policy"], "nobody");
        refused(call(&dave, "POST", &dms, json!({ "recipients": [bob_id] })).await);
        api_json(
            &bob,
            "PATCH",
            &settings,
            json!({ "dm_policy": "shared_guild" }),
        )
        .await;
        refused(call(&dave, "POST", &dms, json!({ "recipients": [bob_id] })).await);
        let guild = guild_on(&dave, &a.origin, "Dave's").await;
        join(&bob, &a.origin, &guild.code).await;
        let (status, answer) = call(&dave, "POST", &dms, json!({ "recipients": [bob_id] })).await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(
            api_json(&bob, "GET", &settings, Value::Null).await["dm_policy"],
            "shared_guild"
        );

        // A user of the DM's own box is asked there.
        api_json(
            &erin,
            "PATCH",
            &a.url("/api/v1/users/@me/dm-settings"),
            json!({ "dm_policy": "nobody" }),
        )
        .await;
        refused(call(&dave, "POST", &dms, json!({ "recipients": [erin_id] })).await);

        // Bad input.
        for (method, url, body, status, code) in [
            (
                "PUT",
                b.url(&format!("/api/v1/users/@me/blocks/{bob_id}")),
                Value::Null,
                400,
                "invalid_user",
            ),
            (
                "PUT",
                b.url(&format!(
                    "/api/v1/users/@me/blocks/{}",
                    hearth::model::UserId([9; 32]).to_text()
                )),
                Value::Null,
                404,
                "unknown_user",
            ),
            (
                "PATCH",
                settings.clone(),
                json!({ "dm_policy": "friends" }),
                400,
                "invalid_json",
            ),
            (
                "PATCH",
                a.url("/api/v1/users/@me/dm-settings"),
                json!({ "dm_policy": "nobody" }),
                403,
                "not_home_server",
            ),
        ] {
            let (got, answer) = call(&bob, method, &url, body).await;
            assert_eq!(
                (got, answer["error"].as_str()),
                (status, Some(code)),
                "{method} {url}: {answer}"
            );
        }
    });
}

/// A UnifiedPush distributor stand-in: counts the requests it gets, answers 201.
fn counting_sink() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let url = format!("http://{}/up/bob", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 65536];
            // One read holds the head of these small requests; the rest is not needed.
            if matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    (url, count)
}

#[test]
fn mentions_by_someone_blocked_push_nothing() {
    let (a, b) = federated_pair();
    let (sink, pushes) = counting_sink();
    let pushed = || pushes.load(std::sync::atomic::Ordering::SeqCst);
    block_on(async {
        let alice = user(&a, "alice").await;
        let dave = user(&a, "dave").await;
        let bob = user(&b, "bob").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob_id = bob.user_id(&b.origin).unwrap();
        api_json(
            &bob,
            "PATCH",
            &b.url("/api/v1/users/@me"),
            json!({ "push_subscriptions": [subscription(&sink)] }),
        )
        .await;
        let guild = guild_joined_by(&alice, &a.origin, "Hall", &[&dave, &bob]).await;
        let delegated = eventually(Duration::from_secs(15), async || {
            api_json(
                &bob,
                "GET",
                &b.url("/api/v1/users/@me/push-delegations"),
                Value::Null,
            )
            .await[0]["host"]
                == a.origin.as_str()
        })
        .await;
        assert!(delegated, "B never issued A a push token for bob");
        smol::Timer::after(Duration::from_millis(1000)).await;
        let mention = format!("<@{bob_id}> look");
        post_message(&dave, &a.origin, &guild.channel, &mention).await;
        assert!(
            eventually(WAIT, async || pushed() == 1).await,
            "no push at all"
        );

        known_at(&bob, &b, &alice_id).await;
        let (status, _) = call(
            &bob,
            "PUT",
            &b.url(&format!("/api/v1/users/@me/blocks/{alice_id}")),
            Value::Null,
        )
        .await;
        assert_eq!(status, 204);
        post_message(&alice, &a.origin, &guild.channel, &mention).await;
        post_message(&dave, &a.origin, &guild.channel, &mention).await;
        assert!(
            eventually(WAIT, async || pushed() == 2).await,
            "dave's push is lost"
        );
        smol::Timer::after(Duration::from_millis(1500)).await;
        assert_eq!(pushed(), 2, "alice's mention was pushed");
    });
}

#[test]
fn a_dm_has_a_voice_room_for_its_participants() {
    let server = TestServer::start();
    let origin = server.origin.clone();
    block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let carol = user(&server, "carol").await;
        let alice_id = alice.user_id(&origin).unwrap();
        let dm = api_json(
            &alice,
            "POST",
            &server.url("/api/v1/dms"),
            json!({ "recipients": [bob.user_id(&origin).unwrap()] }),
        )
        .await;
        let id = dm["id"].as_str().unwrap();
        let in_alice = alice.join_voice(&origin, id).await.expect("alice joins");
        assert_eq!(in_alice.ready["channel_id"], id);
        let in_bob = bob.join_voice(&origin, id).await.expect("bob joins");
        assert!(
            in_bob
                .participants
                .iter()
                .any(|p| p["user_id"] == alice_id.as_str()),
            "{:?}",
            in_bob.participants
        );
        let listed = api_json(
            &bob,
            "GET",
            &server.url(&format!("/api/v1/channels/{id}/voice")),
            Value::Null,
        )
        .await;
        assert!(listed.to_string().contains(&alice_id), "{listed}");
        for (method, body) in [("POST", json!({})), ("GET", Value::Null)] {
            let (status, answer) = call(
                &carol,
                method,
                &server.url(&format!("/api/v1/channels/{id}/voice")),
                body,
            )
            .await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (404, Some("unknown_channel"))
            );
        }
        in_bob.leave().await;
        in_alice.leave().await;
    });
}

#[test]
fn a_dm_has_read_states_like_a_channel() {
    let server = TestServer::start();
    let origin = server.origin.clone();
    block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let bob_id = bob.user_id(&origin).unwrap();
        let dm = api_json(
            &alice,
            "POST",
            &server.url("/api/v1/dms"),
            json!({ "recipients": [bob_id] }),
        )
        .await;
        let id = dm["id"].as_str().unwrap().to_string();
        post_message(&alice, &origin, &id, "one").await;
        let last = post_message(&alice, &origin, &id, &format!("<@{bob_id}> two")).await;
        let summary = api_json(
            &bob,
            "GET",
            &server.url("/api/v1/users/@me/read-states"),
            Value::Null,
        )
        .await;
        let state = summary
            .as_array()
            .and_then(|all| all.iter().find(|r| r["channel_id"] == id.as_str()))
            .unwrap_or_else(|| panic!("the DM is not in bob's read states: {summary}"))
            .clone();
        assert_eq!(
            (&state["unread"], &state["mentions"], &state["guild_id"]),
            (&json!(2), &json!(1), &Value::Null),
            "{state}"
        );
        let (status, _) = call(
            &bob,
            "PUT",
            &server.url(&format!("/api/v1/channels/{id}/read")),
            json!({ "message_id": last["id"] }),
        )
        .await;
        assert!((200..300).contains(&status), "{status}");
        let after = api_json(
            &bob,
            "GET",
            &server.url("/api/v1/users/@me/read-states"),
            Value::Null,
        )
        .await;
        let state = after
            .as_array()
            .and_then(|all| all.iter().find(|r| r["channel_id"] == id.as_str()))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (&state["unread"], &state["mentions"]),
            (&json!(0), &json!(0)),
            "{after}"
        );
        // carol, no participant, cannot mark it.
        let carol = user(&server, "carol").await;
        let (status, _) = call(
            &carol,
            "PUT",
            &server.url(&format!("/api/v1/channels/{id}/read")),
            json!({ "message_id": last["id"] }),
        )
        .await;
        assert_eq!(status, 404);
    });
}

#[test]
fn a_dm_pushes_its_participants_as_their_settings_say() {
    let server = start_federating();
    let (sink, pushes) = counting_sink();
    let pushed = || pushes.load(std::sync::atomic::Ordering::SeqCst);
    block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        api_json(
            &bob,
            "PATCH",
            &server.url("/api/v1/users/@me"),
            json!({ "push_subscriptions": [subscription(&sink)] }),
        )
        .await;
        let dm = api_json(
            &alice,
            "POST",
            &server.url("/api/v1/dms"),
            json!({ "recipients": [bob.user_id(&server.origin).unwrap()] }),
        )
        .await;
        let id = dm["id"].as_str().unwrap().to_string();
        // A DM pushes every message by default, and never to its author.
        post_message(&alice, &server.origin, &id, "are you coming tonight?").await;
        assert!(
            eventually(WAIT, async || pushed() == 1).await,
            "the DM was not pushed"
        );
        post_message(&bob, &server.origin, &id, "yes").await;
        // "nothing" on the DM: quiet.
        let (status, _) = call(
            &bob,
            "PUT",
            &server.url(&format!(
                "/api/v1/users/@me/notification-settings/channels/{id}"
            )),
            json!({ "level": "nothing" }),
        )
        .await;
        assert_eq!(status, 200);
        post_message(&alice, &server.origin, &id, "bring a torch").await;
        smol::Timer::after(Duration::from_millis(1500)).await;
        assert_eq!(pushed(), 1, "a DM set to nothing pushed");
    });
}
