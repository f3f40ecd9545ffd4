//! Read states over real servers: the start-up summary's unread and mention counts, a
//! read on one device reaching the user's other device as `read_state_update`, marking a
//! guild and the whole box read, a user from a peer reading on the host with their home
//! token, and every bad read marker answered 4xx.

use crate::common::*;
use hearth::client::{Client, EventStream, GatewayMessage};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PASSWORD: &str = "password-of-some-length";

fn url(origin: &str, path: &str) -> String {
    format!("{origin}/api/v1{path}")
}

async fn post_message(who: &Client, origin: &str, channel: &str, content: &str) -> String {
    let message = api_json(
        who,
        "POST",
        &url(origin, &format!("/channels/{channel}/messages")),
        json!({ "content": content }),
    )
    .await;
    message["id"].as_str().expect("message id").to_string()
}

/// The summary's entry for `channel`.
async fn state_of(who: &Client, origin: &str, channel: &str) -> Value {
    let all = api_json(
        who,
        "GET",
        &url(origin, "/users/@me/read-states"),
        json!({}),
    )
    .await;
    all.as_array()
        .expect("a list")
        .iter()
        .find(|s| s["channel_id"] == channel)
        .cloned()
        .unwrap_or_else(|| panic!("no read state for {channel} in {all}"))
}

fn counts(state: &Value) -> (u64, u64) {
    (
        state["unread"].as_u64().expect("unread"),
        state["mentions"].as_u64().expect("mentions"),
    )
}

async fn mark_read(who: &Client, origin: &str, channel: &str, message: &str) -> Value {
    let answer = who
        .put(
            &url(origin, &format!("/channels/{channel}/read")),
            Some(json!({ "message_id": message })),
        )
        .await
        .expect("request");
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json().expect("json")
}

/// Waits for the stream to be live.
async fn ready(events: &EventStream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let next = futures_lite::future::or(async { events.next().await }, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        })
        .await;
        if let Some(GatewayMessage::Ready { .. }) = next {
            return;
        }
    }
    panic!("the event stream never became ready");
}

/// The next `read_state_update` within `limit`.
async fn next_read_update(events: &EventStream, limit: Duration) -> Option<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (_, kind, data) = events.next_event(left).await?;
        if kind == "read_state_update" {
            return Some(data);
        }
    }
}

#[test]
fn unread_and_mentions_sync_to_the_other_device_and_clear() {
    let server = TestServer::start();
    block_on(async {
        let origin = server.origin.as_str();
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let bob_id = bob.user_id(origin).expect("bob signed in");
        let second = Client::new();
        second
            .login_password(origin, "bob", PASSWORD)
            .await
            .expect("bob's second device");
        let guild = guild_on(&alice, origin, "Reading room").await;
        api_json(
            &bob,
            "POST",
            &url(origin, &format!("/invites/{}", guild.code)),
            json!({}),
        )
        .await;
        let channel = guild.channel.as_str();
        let other = api_json(
            &alice,
            "POST",
            &url(origin, &format!("/guilds/{}/channels", guild.id)),
            json!({ "name": "second" }),
        )
        .await["id"]
            .as_str()
            .expect("channel id")
            .to_string();

        post_message(&alice, origin, channel, "one").await;
        post_message(&alice, origin, channel, &format!("two for <@{bob_id}>")).await;
        let third = post_message(&alice, origin, channel, "three").await;

        let state = state_of(&bob, origin, channel).await;
        assert_eq!(counts(&state), (3, 1), "{state}");
        assert_eq!(state["last_message_id"], third.as_str());
        assert_eq!(state["last_read_id"], Value::Null);
        assert_eq!(state["guild_id"], guild.id.as_str());
        // The author has read her own messages.
        assert_eq!(counts(&state_of(&alice, origin, channel).await), (0, 0));

        let events = second
            .events(origin, None)
            .await
            .expect("second device's stream");
        ready(&events).await;
        let marked = mark_read(&bob, origin, channel, &third).await;
        assert_eq!(counts(&marked), (0, 0), "{marked}");
        let update = next_read_update(&events, Duration::from_secs(1))
            .await
            .expect("device 2 hears of the read within a second");
        assert_eq!(update["channel_id"], channel);
        assert_eq!(update["last_read_id"], third.as_str());
        assert_eq!(counts(&update), (0, 0));
        assert_eq!(counts(&state_of(&second, origin, channel).await), (0, 0));

        // Never backwards: an older message changes nothing and tells no one.
        let fourth = post_message(&alice, origin, channel, "four").await;
        assert_eq!(
            counts(&mark_read(&bob, origin, channel, &fourth).await),
            (0, 0)
        );
        next_read_update(&events, Duration::from_secs(2))
            .await
            .expect("the read of the fourth message");
        let history = channel_history(&bob, origin, channel).await;
        let oldest = history.last().expect("messages")["id"]
            .as_str()
            .unwrap()
            .to_string();
        let unchanged = mark_read(&bob, origin, channel, &oldest).await;
        assert_eq!(unchanged["last_read_id"], fourth.as_str());
        assert!(
            next_read_update(&events, Duration::from_millis(500))
                .await
                .is_none(),
            "a read marker that moved nothing was announced"
        );

        // A message naming bob and @everyone counts once; one naming only @everyone
        // counts too; a deleted mention stops counting.
        post_message(&alice, origin, channel, &format!("<@{bob_id}> @everyone")).await;
        post_message(&alice, origin, channel, "@everyone look").await;
        let gone = post_message(&alice, origin, channel, &format!("<@{bob_id}> oops")).await;
        post_message(&alice, origin, &other, "elsewhere").await;
        assert_eq!(counts(&state_of(&bob, origin, channel).await), (3, 3));
        let deleted = alice
            .delete(&url(
                origin,
                &format!("/channels/{channel}/messages/{gone}"),
            ))
            .await
            .expect("request");
        assert_eq!(deleted.status, 204);
        let after_delete = state_of(&bob, origin, channel).await;
        assert_eq!(
            counts(&after_delete),
            (3, 2),
            "a deleted message stays unread"
        );

        // Marking the guild read clears both channels and tells the other device.
        let changed = api_json(
            &bob,
            "POST",
            &url(origin, &format!("/guilds/{}/read", guild.id)),
            json!({}),
        )
        .await;
        assert_eq!(changed.as_array().map(Vec::len), Some(2), "{changed}");
        assert_eq!(counts(&state_of(&bob, origin, channel).await), (0, 0));
        assert_eq!(counts(&state_of(&bob, origin, &other).await), (0, 0));
        let mut heard = Vec::new();
        while let Some(update) = next_read_update(&events, Duration::from_secs(1)).await {
            heard.push(update["channel_id"].as_str().unwrap().to_string());
        }
        heard.sort();
        let mut both = vec![channel.to_string(), other.clone()];
        both.sort();
        assert_eq!(heard, both);

        // And the whole box.
        let second_guild = guild_on(&alice, origin, "Second room").await;
        api_json(
            &bob,
            "POST",
            &url(origin, &format!("/invites/{}", second_guild.code)),
            json!({}),
        )
        .await;
        post_message(&alice, origin, channel, "a").await;
        post_message(&alice, origin, &second_guild.channel, "b").await;
        assert_eq!(
            counts(&state_of(&bob, origin, &second_guild.channel).await),
            (1, 0)
        );
        let changed = api_json(&bob, "POST", &url(origin, "/users/@me/read"), json!({})).await;
        assert_eq!(changed.as_array().map(Vec::len), Some(2), "{changed}");
        for c in [channel, other.as_str(), second_guild.channel.as_str()] {
            assert_eq!(counts(&state_of(&bob, origin, c).await), (0, 0));
        }
        // The alice-only guild channel is not bob's to see.
        let all = api_json(
            &bob,
            "GET",
            &url(origin, "/users/@me/read-states"),
            json!({}),
        )
        .await;
        assert_eq!(all.as_array().map(Vec::len), Some(3), "{all}");

        // Posting reads the channel up to one's own message, mentions included.
        post_message(
            &alice,
            origin,
            channel,
            &format!("<@{bob_id}> are you there?"),
        )
        .await;
        assert_eq!(counts(&state_of(&bob, origin, channel).await), (1, 1));
        let reply = post_message(&bob, origin, channel, "here").await;
        let state = state_of(&bob, origin, channel).await;
        assert_eq!(counts(&state), (0, 0), "{state}");
        assert_eq!(state["last_read_id"], reply.as_str());
    });
}

#[test]
fn a_user_from_a_peer_has_read_states_on_the_host() {
    let (a, b, alice, bob) = federated_pair_with("alice", "bob");
    block_on(async {
        let guild = guild_on(&alice, &a.origin, "Host room").await;
        let bob_id = bob.user_id(&b.origin).expect("bob signed in at home");
        api_json(
            &bob,
            "POST",
            &url(&a.origin, &format!("/invites/{}", guild.code)),
            json!({}),
        )
        .await;
        let channel = guild.channel.as_str();
        post_message(&alice, &a.origin, channel, "hello").await;
        let last = post_message(&alice, &a.origin, channel, &format!("<@{bob_id}> hi")).await;
        let state = state_of(&bob, &a.origin, channel).await;
        assert_eq!(counts(&state), (2, 1), "{state}");
        let marked = mark_read(&bob, &a.origin, channel, &last).await;
        assert_eq!(counts(&marked), (0, 0));
        assert_eq!(counts(&state_of(&bob, &a.origin, channel).await), (0, 0));
        // Bob's home hosts nothing he reads.
        let at_home = api_json(
            &bob,
            "GET",
            &url(&b.origin, "/users/@me/read-states"),
            json!({}),
        )
        .await;
        assert_eq!(at_home, json!([]));
    });
}

#[test]
fn bad_read_markers_get_a_4xx() {
    let server = TestServer::start();
    block_on(async {
        let origin = server.origin.as_str();
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let shared = guild_on(&alice, origin, "Shared").await;
        let private = guild_on(&alice, origin, "Alice only").await;
        api_json(
            &bob,
            "POST",
            &url(origin, &format!("/invites/{}", shared.code)),
            json!({}),
        )
        .await;
        let here = post_message(&alice, origin, &shared.channel, "here").await;
        let there = post_message(&alice, origin, &private.channel, "there").await;
        let second = api_json(
            &alice,
            "POST",
            &url(origin, &format!("/guilds/{}/channels", shared.id)),
            json!({ "name": "second" }),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let elsewhere = post_message(&alice, origin, &second, "elsewhere").await;

        let put = |channel: String, body: Value| {
            let bob = bob.clone();
            async move {
                let answer = bob
                    .put(
                        &url(origin, &format!("/channels/{channel}/read")),
                        Some(body),
                    )
                    .await
                    .expect("request");
                (answer.status, answer.error_code().unwrap_or_default())
            }
        };
        let cases = [
            (
                shared.channel.clone(),
                json!({ "message_id": "12345" }),
                400,
                "invalid_message",
            ),
            (
                shared.channel.clone(),
                json!({ "message_id": elsewhere }),
                400,
                "invalid_message",
            ),
            (
                private.channel.clone(),
                json!({ "message_id": there }),
                404,
                "unknown_channel",
            ),
            (
                "not-a-number".into(),
                json!({ "message_id": here }),
                404,
                "unknown_channel",
            ),
            (
                shared.channel.clone(),
                json!({ "message_id": "x1" }),
                400,
                "",
            ),
            (shared.channel.clone(), json!({}), 400, ""),
            (
                shared.channel.clone(),
                json!({ "message_id": here, "extra": 1 }),
                400,
                "",
            ),
        ];
        for (channel, body, status, code) in cases {
            let (got, got_code) = put(channel.clone(), body.clone()).await;
            assert_eq!(got, status, "PUT {channel} {body}: {got_code}");
            if !code.is_empty() {
                assert_eq!(got_code, code, "PUT {channel} {body}");
            }
        }
        let guild_read = bob
            .post(
                &url(origin, &format!("/guilds/{}/read", private.id)),
                json!({}),
            )
            .await
            .expect("request");
        assert_eq!(guild_read.status, 404);
        let not_numeric = bob
            .post(&url(origin, "/guilds/abc/read"), json!({}))
            .await
            .expect("request");
        assert_eq!(not_numeric.status, 404);
        // Nothing was marked by the refused requests.
        let state = state_of(&bob, origin, &shared.channel).await;
        assert_eq!(state["last_read_id"], Value::Null);
    });
}

#[test]
fn a_role_mention_counts_for_its_holders_only() {
    let server = TestServer::start();
    block_on(async {
        let origin = server.origin.as_str();
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let carol = user(&server, "carol").await;
        let bob_id = bob.user_id(origin).expect("bob signed in");
        let guild = guild_on(&alice, origin, "Roles").await;
        for who in [&bob, &carol] {
            api_json(
                who,
                "POST",
                &url(origin, &format!("/invites/{}", guild.code)),
                json!({}),
            )
            .await;
        }
        let role = api_json(
            &alice,
            "POST",
            &url(origin, &format!("/guilds/{}/roles", guild.id)),
            json!({ "name": "readers", "mentionable": true }),
        )
        .await["id"]
            .as_str()
            .expect("role id")
            .to_string();
        let given = alice
            .put(
                &url(
                    origin,
                    &format!("/guilds/{}/members/{bob_id}/roles/{role}", guild.id),
                ),
                None,
            )
            .await
            .expect("request");
        assert!(
            given.status < 300,
            "{}",
            String::from_utf8_lossy(&given.body)
        );
        post_message(&alice, origin, &guild.channel, &format!("<@&{role}> news")).await;
        assert_eq!(
            counts(&state_of(&bob, origin, &guild.channel).await),
            (1, 1)
        );
        assert_eq!(
            counts(&state_of(&carol, origin, &guild.channel).await),
            (1, 0)
        );
    });
}
