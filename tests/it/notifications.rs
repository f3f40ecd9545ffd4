//! Notification settings: what a user chose for the box, a guild or a channel decides
//! which messages push (across a federated pair, with a small HTTP sink standing in for
//! the user's UnifiedPush distributor), the settings follow the user's other devices, and
//! bad settings are refused.

use crate::common::*;
use hearth::client::{Client, GatewayMessage};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PASSWORD: &str = "password-of-some-length";

/// An HTTP server on 127.0.0.1 that records the decrypted JSON body of every POST and
/// answers 200.
struct Sink {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, into) = (stop.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => record(stream, &into),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Sink {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/up/alice", self.addr)
    }

    fn pushes(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn record(mut stream: TcpStream, into: &Mutex<Vec<Value>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let header_end = loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_string();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < header_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    if head.starts_with("POST ") {
        // Read as the subscribed device does: decrypted (RFC 8291).
        let body = decrypt(&data[header_end..header_end + length]).unwrap_or_default();
        let value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::from("undecryptable"));
        into.lock().unwrap().push(value);
    }
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\n{{}}"
    );
}

/// `PUT origin/api/v1/users/@me/notification-settings/{place}`: its status and JSON.
async fn put_settings(who: &Client, origin: &str, place: &str, body: Value) -> (u16, Value) {
    let answer = who
        .put(
            &format!("{origin}/api/v1/users/@me/notification-settings/{place}"),
            Some(body),
        )
        .await
        .expect("request");
    (answer.status, answer.json().unwrap_or(Value::Null))
}

/// [`put_settings`], which must succeed.
async fn set(who: &Client, origin: &str, place: &str, body: Value) {
    let (status, answer) = put_settings(who, origin, place, body).await;
    assert_eq!(status, 200, "PUT {place}: {answer}");
}

async fn clear(who: &Client, origin: &str, place: &str) -> u16 {
    who.delete(&format!(
        "{origin}/api/v1/users/@me/notification-settings/{place}"
    ))
    .await
    .expect("request")
    .status
}

/// Bob posts `content`; the sink must then hold `total` pushes (after a pause long enough
/// for a push that should not come to arrive).
async fn post_expecting(
    bob: &Client,
    b: &TestServer,
    channel: &str,
    content: &str,
    sink: &Sink,
    total: usize,
) {
    api_json(
        bob,
        "POST",
        &b.url(&format!("/api/v1/channels/{channel}/messages")),
        json!({ "content": content }),
    )
    .await;
    let reached = eventually(Duration::from_secs(15), async || {
        sink.pushes().len() >= total
    })
    .await;
    assert!(reached, "after {content:?}: {:?}", sink.pushes());
    smol::Timer::after(Duration::from_millis(1200)).await;
    let pushes = sink.pushes();
    assert_eq!(pushes.len(), total, "after {content:?}: {pushes:?}");
}

/// The last push's body and type.
fn last(sink: &Sink) -> (String, String) {
    let pushes = sink.pushes();
    let push = pushes.last().expect("a push");
    (
        push["body"].as_str().unwrap_or("").to_string(),
        push["type"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn settings_decide_which_messages_push_across_boxes() {
    let (a, b) = federated_pair();
    let sink = Sink::start();
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        api_json(
            &alice,
            "PATCH",
            &a.url("/api/v1/users/@me"),
            json!({ "push_subscriptions": [subscription(&sink.url())] }),
        )
        .await;
        let bob = user(&b, "bob").await;
        let guild = guild_joined_by(&bob, &b.origin, "Allotment", &[&alice]).await;
        let channel = guild.channel.as_str();
        let in_guild = format!("guilds/{}", guild.id);
        let in_channel = format!("channels/{channel}");
        // B keeps a push token for alice once her home answered VerifyUser.
        let delegated = eventually(Duration::from_secs(15), async || {
            let list = api_json(
                &alice,
                "GET",
                &a.url("/api/v1/users/@me/push-delegations"),
                json!({}),
            )
            .await;
            list[0]["host"] == b.origin.as_str()
        })
        .await;
        assert!(delegated, "A never issued B a push token for alice");
        smol::Timer::after(Duration::from_millis(1000)).await;
        let mention = |text: &str| format!("<@{alice_id}> {text}");

        // The box default is "mentions only": a plain message is quiet, a mention pushes.
        post_expecting(&bob, &b, channel, "plain, nobody named", &sink, 0).await;
        post_expecting(&bob, &b, channel, &mention("one"), &sink, 1).await;
        assert_eq!(
            last(&sink),
            ("bob: @alice one".to_string(), "mention".to_string())
        );

        // "nothing" on the channel: not even a mention pushes; removed, it inherits again.
        set(&alice, &b.origin, &in_channel, json!({"level": "nothing"})).await;
        post_expecting(&bob, &b, channel, &mention("two"), &sink, 1).await;
        assert_eq!(clear(&alice, &b.origin, &in_channel).await, 204);
        post_expecting(&bob, &b, channel, &mention("three"), &sink, 2).await;

        // Mentions only, @everyone suppressed: @everyone is quiet, a direct mention is not.
        set(
            &alice,
            &b.origin,
            &in_guild,
            json!({"level": "mentions", "suppress_everyone": true}),
        )
        .await;
        post_expecting(&bob, &b, channel, "@everyone four", &sink, 2).await;
        post_expecting(&bob, &b, channel, &mention("five"), &sink, 3).await;

        // Muted until an hour from now: nothing; a mute that ended a minute ago: pushes.
        let now = hearth::system::now();
        set(
            &alice,
            &b.origin,
            &in_guild,
            json!({"muted_until": now + 3600}),
        )
        .await;
        post_expecting(&bob, &b, channel, &mention("six"), &sink, 3).await;
        set(
            &alice,
            &b.origin,
            &in_guild,
            json!({"muted_until": now - 60}),
        )
        .await;
        post_expecting(&bob, &b, channel, &mention("seven"), &sink, 4).await;

        // "all" on the guild: plain messages push, as messages.
        set(&alice, &b.origin, &in_guild, json!({"level": "all"})).await;
        post_expecting(&bob, &b, channel, "eight", &sink, 5).await;
        assert_eq!(
            last(&sink),
            ("bob: eight".to_string(), "message".to_string())
        );

        // The channel's level overrides the guild's.
        set(&alice, &b.origin, &in_channel, json!({"level": "mentions"})).await;
        post_expecting(&bob, &b, channel, "nine", &sink, 5).await;
        post_expecting(&bob, &b, channel, &mention("ten"), &sink, 6).await;
        assert_eq!(
            last(&sink),
            ("bob: @alice ten".to_string(), "mention".to_string())
        );

        // "all" for the whole box, the guild and channel inheriting.
        assert_eq!(clear(&alice, &b.origin, &in_channel).await, 204);
        assert_eq!(clear(&alice, &b.origin, &in_guild).await, 204);
        set(&alice, &b.origin, "box", json!({"level": "all"})).await;
        post_expecting(&bob, &b, channel, "eleven", &sink, 7).await;

        // Bob's own messages never push to bob, whatever he chose.
        set(&bob, &b.origin, "box", json!({"level": "all"})).await;
        set(&alice, &b.origin, "box", json!({"level": "nothing"})).await;
        post_expecting(&bob, &b, channel, "twelve", &sink, 7).await;

        let listed = api_json(
            &alice,
            "GET",
            &b.url("/api/v1/users/@me/notification-settings"),
            json!({}),
        )
        .await;
        assert_eq!(
            listed,
            json!({
                "box": {"level": "nothing", "suppress_everyone": false,
                        "suppress_roles": false, "muted_until": null},
                "guilds": {},
                "channels": {},
            })
        );
    });
}

#[test]
fn settings_follow_the_user_to_their_other_device() {
    let server = TestServer::start();
    block_on(async {
        let phone = user(&server, "alice").await;
        let laptop = Client::new();
        laptop
            .login_password(&server.origin, "alice", PASSWORD)
            .await
            .expect("second device signs in");
        let guild = guild_on(&phone, &server.origin, "Home").await;
        let stream = laptop
            .events(&server.origin, None)
            .await
            .expect("event stream");
        // Live from here: what comes before the stream is ready is not its to show.
        let ready = eventually(Duration::from_secs(10), async || {
            matches!(stream.next().await, Some(GatewayMessage::Ready { .. }))
        })
        .await;
        assert!(ready, "the other device's stream never became ready");
        let next_event = async || loop {
            match stream.next_event(Duration::from_secs(10)).await {
                Some((_, kind, data)) if kind == "notification_settings_update" => return data,
                Some(_) => continue,
                None => panic!("no notification_settings_update reached the other device"),
            }
        };
        let place = format!("guilds/{}", guild.id);
        set(
            &phone,
            &server.origin,
            &place,
            json!({"level": "all", "suppress_roles": true}),
        )
        .await;
        let update = next_event().await;
        assert_eq!(update["scope"], "guild");
        assert_eq!(update["id"], guild.id.as_str());
        assert_eq!(update["settings"]["level"], "all");
        assert_eq!(update["settings"]["suppress_roles"], true);
        let listed = api_json(
            &laptop,
            "GET",
            &server.url("/api/v1/users/@me/notification-settings"),
            json!({}),
        )
        .await;
        assert_eq!(listed["guilds"][&guild.id]["level"], "all");
        assert_eq!(listed["box"]["level"], "default");

        assert_eq!(clear(&phone, &server.origin, &place).await, 204);
        let update = next_event().await;
        assert_eq!(update["scope"], "guild");
        assert_eq!(update["settings"], Value::Null);

        set(&phone, &server.origin, "box", json!({"level": "mentions"})).await;
        let update = next_event().await;
        assert_eq!(update["scope"], "box");
        assert_eq!(update["id"], Value::Null);
        assert_eq!(update["settings"]["level"], "mentions");
    });
}

#[test]
fn bad_settings_are_refused() {
    let server = TestServer::start_with(|config| config.limits.max_notification_settings = 2);
    block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let origin = server.origin.as_str();
        let (own, theirs) = (
            guild_on(&alice, origin, "Alice's").await,
            guild_on(&bob, origin, "Bob's").await,
        );
        let now = hearth::system::now();
        let refused = async |place: &str, body: Value, status: u16, code: &str| {
            let (got, answer) = put_settings(&alice, origin, place, body.clone()).await;
            assert_eq!(
                (got, answer["error"].as_str()),
                (status, Some(code)),
                "{place} {body}: {answer}"
            );
            assert!(
                !answer["message"].as_str().unwrap_or("").is_empty(),
                "{answer}"
            );
        };
        refused("box", json!({"level": "loud"}), 400, "invalid_json").await;
        refused(
            "box",
            json!({"level": "all", "sound": "bell"}),
            400,
            "invalid_json",
        )
        .await;
        refused("box", json!({"muted_until": -5}), 400, "invalid_json").await;
        refused("box", json!({"muted_until": 1}), 400, "invalid_muted_until").await;
        refused(
            "box",
            json!({"muted_until": now + 400 * 86400}),
            400,
            "invalid_muted_until",
        )
        .await;
        let theirs_guild = format!("guilds/{}", theirs.id);
        let theirs_channel = format!("channels/{}", theirs.channel);
        refused(&theirs_guild, json!({"level": "all"}), 404, "unknown_guild").await;
        refused(
            &theirs_channel,
            json!({"level": "all"}),
            404,
            "unknown_channel",
        )
        .await;
        refused(
            "guilds/not-an-id",
            json!({"level": "all"}),
            404,
            "unknown_guild",
        )
        .await;
        assert_eq!(clear(&alice, origin, &theirs_guild).await, 404);
        assert_eq!(clear(&alice, origin, &theirs_channel).await, 404);

        // A channel of a guild alice is in, but hidden from her.
        join(&alice, origin, &theirs.code).await;
        let staff = api_json(
            &bob,
            "POST",
            &server.url(&format!("/api/v1/guilds/{}/channels", theirs.id)),
            json!({"name": "staff", "overwrites": [
                {"target": {"role": theirs.id}, "allow": 0, "deny": 1}]}),
        )
        .await;
        let staff = format!("channels/{}", staff["id"].as_str().unwrap());
        refused(&staff, json!({"level": "all"}), 404, "unknown_channel").await;
        set(&alice, origin, &theirs_guild, json!({"level": "all"})).await;

        // At most two guild and channel settings here; changing one is not adding one.
        set(
            &alice,
            origin,
            &format!("channels/{}", own.channel),
            json!({}),
        )
        .await;
        set(&alice, origin, &theirs_guild, json!({"level": "nothing"})).await;
        refused(
            &format!("guilds/{}", own.id),
            json!({"level": "all"}),
            400,
            "too_many_items",
        )
        .await;
        set(&alice, origin, "box", json!({"level": "all"})).await;
        assert_eq!(clear(&alice, origin, &theirs_guild).await, 204);
        set(
            &alice,
            origin,
            &format!("guilds/{}", own.id),
            json!({"level": "all"}),
        )
        .await;

        // Leaving a guild forgets the settings for it and its channels: room for others.
        assert_eq!(
            clear(&alice, origin, &format!("channels/{}", own.channel)).await,
            204
        );
        set(&alice, origin, &theirs_channel, json!({"level": "all"})).await;
        let left = alice
            .delete(&server.url(&format!("/api/v1/guilds/{}/members/@me", theirs.id)))
            .await
            .expect("leave");
        assert_eq!(left.status, 204);
        let listed = api_json(
            &alice,
            "GET",
            &server.url("/api/v1/users/@me/notification-settings"),
            json!({}),
        )
        .await;
        assert_eq!(listed["channels"], json!({}), "{listed}");
        assert_eq!(listed["guilds"].as_object().map(|g| g.len()), Some(1));
        set(
            &alice,
            origin,
            &format!("channels/{}", own.channel),
            json!({}),
        )
        .await;
    });
}
