//! The realtime gateway over real sockets: every event kind reaching another user, typing
//! and presence as ephemeral frames, resume across a cut socket and a server restart,
//! retention and `resync`, a stalled reader next to a fast one, permission changes in the
//! middle of a stream, a client written in Python, and every way a socket is closed.
//!
//! Raw sockets (async-tungstenite, driven by hand) are used wherever the test needs to
//! control exactly when a client reads, drops or resumes; `Client::events` elsewhere.

use crate::common::*;
use async_tungstenite::tungstenite::Message;
use futures_lite::{future, StreamExt};
use hearth::client::{Client, EventStream, GatewayMessage, Response};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The password `common::user` registers with.
const PASSWORD: &str = "password-of-some-length";
/// How long any single expected frame may take to arrive.
const WAIT: Duration = Duration::from_secs(20);
/// VIEW_CHANNEL (bit 0).
const VIEW_CHANNEL: u64 = 1;

type Ws = async_tungstenite::WebSocketStream<smol::net::TcpStream>;

async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(f.await) }, async {
        smol::Timer::after(limit).await;
        None
    })
    .await
}

// ---- people ----

/// A signed-in user on one server.
#[derive(Clone)]
struct Who {
    c: Client,
    origin: String,
    id: String,
    name: &'static str,
}

impl Who {
    async fn new(server: &TestServer, name: &'static str) -> Who {
        let c = user(server, name).await;
        let id = c.user_id(&server.origin).expect("signed in");
        Who {
            c,
            origin: server.origin.clone(),
            id,
            name,
        }
    }

    /// Signs in at another origin (the same data served again after a restart).
    async fn move_to(&mut self, origin: &str) {
        self.c
            .login_password(origin, self.name, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{} signs in at {origin}: {e}", self.name));
        self.origin = origin.to_string();
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.origin)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        self.c
            .send(&self.url(path), method, body, true)
            .await
            .unwrap_or_else(|e| panic!("{} {method} {path}: {e}", self.name))
    }

    /// Makes a request that must succeed; its JSON answer (null when empty).
    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&r.status),
            "{} {method} {path}: {} {}",
            self.name,
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if r.body.is_empty() {
            Value::Null
        } else {
            r.json().expect("JSON answer")
        }
    }

    async fn say(&self, channel: &str, content: &str) -> Value {
        self.ok(
            "POST",
            &format!("/channels/{channel}/messages"),
            Some(json!({ "content": content })),
        )
        .await
    }

    /// A fresh gateway ticket URL.
    async fn ticket(&self) -> String {
        let answer = self.ok("POST", "/gateway/ticket", Some(json!({}))).await;
        assert_eq!(answer["expires_in"], 30, "ticket answer {answer}");
        let url = answer["url"].as_str().expect("ticket url").to_string();
        let ticket = answer["ticket"].as_str().expect("ticket");
        assert!(
            url.starts_with("ws://127.0.0.1:") && url.ends_with(&format!("?ticket={ticket}")),
            "ticket url {url}"
        );
        url
    }

    async fn events(&self, resume: Option<u64>) -> EventStream {
        self.c
            .events(&self.origin, resume)
            .await
            .unwrap_or_else(|e| panic!("{} opens an event stream: {e}", self.name))
    }

    /// Who of a guild the server lists as online now.
    async fn online(&self, guild: &str) -> Vec<String> {
        let list = self
            .ok("GET", &format!("/guilds/{guild}/presences"), None)
            .await;
        list.as_array()
            .expect("presence list")
            .iter()
            .map(|p| p["user_id"].as_str().expect("user_id").to_string())
            .collect()
    }
}

/// A guild owned by `owner` that `members` joined by invite: (guild id, first channel id).
async fn guild(owner: &Who, name: &str, members: &[&Who]) -> (String, String) {
    let members: Vec<&Client> = members.iter().map(|m| &m.c).collect();
    let guild = guild_joined_by(&owner.c, &owner.origin, name, &members).await;
    (guild.id, guild.channel)
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

// ---- raw sockets ----

async fn connect(url: &str) -> Ws {
    let parsed = url::Url::parse(url).expect("gateway url");
    assert_eq!(parsed.host_str(), Some("127.0.0.1"), "url {url}");
    let tcp = smol::net::TcpStream::connect(("127.0.0.1", parsed.port().expect("port")))
        .await
        .expect("tcp connect");
    let (ws, _) = async_tungstenite::client_async(url, tcp)
        .await
        .expect("websocket handshake");
    ws
}

#[derive(Debug)]
enum Frame {
    Json(Value),
    Close(u16, String),
    Gone(String),
}

/// The next text or close frame within `limit` (pings and pongs are skipped).
async fn frame(ws: &mut Ws, limit: Duration) -> Option<Frame> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let next = within(left, ws.next()).await?;
        return Some(match next {
            None => Frame::Gone("end of stream".into()),
            Some(Err(e)) => Frame::Gone(e.to_string()),
            Some(Ok(Message::Text(t))) => {
                Frame::Json(serde_json::from_str(t.as_str()).unwrap_or_else(|e| {
                    panic!("server sent a text frame that is not JSON: {t}: {e}")
                }))
            }
            Some(Ok(Message::Close(Some(c)))) => Frame::Close(c.code.into(), c.reason.to_string()),
            Some(Ok(Message::Close(None))) => Frame::Close(1005, String::new()),
            Some(Ok(Message::Binary(_))) => panic!("the server sent a binary frame"),
            Some(Ok(_)) => continue,
        });
    }
}

/// The next frame, which must be JSON.
async fn json_frame(ws: &mut Ws, what: &str) -> Value {
    match frame(ws, WAIT).await {
        Some(Frame::Json(v)) => v,
        other => panic!("expected {what}, got {other:?}"),
    }
}

/// Reads until the server closes: (code, reason, the JSON frames before the close). Also
/// checks that the connection then ends.
async fn close_of(ws: &mut Ws) -> (u16, String, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        match frame(ws, WAIT).await {
            Some(Frame::Json(v)) => before.push(v),
            Some(Frame::Close(code, reason)) => {
                match frame(ws, WAIT).await {
                    Some(Frame::Gone(how)) => assert!(!how.is_empty()),
                    other => panic!("after close {code} {reason:?} the socket went on: {other:?}"),
                }
                return (code, reason, before);
            }
            other => panic!("expected a close frame, got {other:?} after {before:?}"),
        }
    }
}

/// The sequence number in a `resume from seq N` close reason.
fn resume_point(reason: &str) -> u64 {
    reason
        .split("resume from seq ")
        .nth(1)
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no resume point in close reason {reason:?}"))
}

async fn send_text(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into()))
        .await
        .expect("send a text frame");
}

/// Opens a raw socket with a fresh ticket, checks `hello` and sends `first` (if any).
async fn open(who: &Who, first: Option<Value>) -> (Ws, Value) {
    let mut ws = connect(&who.ticket().await).await;
    let hello = json_frame(&mut ws, "hello").await;
    assert_eq!(hello["op"], "hello", "first frame {hello}");
    assert!(hello["heartbeat_interval_ms"].as_u64().unwrap_or(0) > 0);
    assert!(hello["last_seq"].is_u64(), "hello {hello}");
    if let Some(first) = first {
        send_text(&mut ws, first.to_string()).await;
    }
    (ws, hello)
}

/// A raw socket that went live with `start`: (socket, the `ready` seq).
async fn started(who: &Who) -> (Ws, u64) {
    let (mut ws, hello) = open(who, Some(json!({"op": "start"}))).await;
    let ready = json_frame(&mut ws, "ready").await;
    assert_eq!(ready["op"], "ready", "{ready}");
    assert_eq!(
        ready["seq"], hello["last_seq"],
        "start goes live at hello's last_seq"
    );
    (ws, ready["seq"].as_u64().expect("seq"))
}

/// The next `event` frame; ephemeral frames (presence, typing) on the way are skipped.
async fn event_frame(ws: &mut Ws, what: &str) -> Value {
    loop {
        let f = json_frame(ws, what).await;
        match f["op"].as_str() {
            Some("event") => return f,
            Some("presence" | "typing") => {}
            _ => panic!("expected {what}, got {f}"),
        }
    }
}

/// Reads a replay after `resume`: the event frames up to `ready`, and its seq.
async fn replay(ws: &mut Ws) -> (Vec<Value>, u64) {
    let mut events = Vec::new();
    loop {
        let f = json_frame(ws, "a replayed event or ready").await;
        match f["op"].as_str() {
            Some("event") => events.push(f),
            Some("ready") => return (events, f["seq"].as_u64().expect("seq")),
            _ => panic!("only events and then ready may come during a replay, got {f}"),
        }
    }
}

// ---- event streams ----

/// An `EventStream` with everything it delivered recorded.
struct Watch {
    s: EventStream,
    name: &'static str,
    last: u64,
    ephemeral: Vec<(String, Value)>,
    events: Vec<(u64, String, Value)>,
}

impl Watch {
    /// Opens a live stream and waits for `ready`.
    async fn new(who: &Who) -> Watch {
        let s = who.events(None).await;
        let mut w = Watch {
            s,
            name: who.name,
            last: 0,
            ephemeral: Vec::new(),
            events: Vec::new(),
        };
        loop {
            match w.next(WAIT).await {
                Some(GatewayMessage::Ready { seq }) => {
                    w.last = seq;
                    return w;
                }
                Some(GatewayMessage::Ephemeral { op, data }) => w.ephemeral.push((op, data)),
                other => panic!("{}: expected ready, got {other:?}", w.name),
            }
        }
    }

    async fn next(&self, limit: Duration) -> Option<GatewayMessage> {
        within(limit, self.s.next()).await.flatten()
    }

    /// The next persistent event; ephemeral frames on the way are recorded.
    async fn event(&mut self) -> (u64, String, Value) {
        loop {
            match self.next(WAIT).await {
                Some(GatewayMessage::Event { seq, kind, data }) => {
                    assert!(
                        seq > self.last,
                        "{}: seq {seq} after {}",
                        self.name,
                        self.last
                    );
                    self.last = seq;
                    self.events.push((seq, kind.clone(), data.clone()));
                    return (seq, kind, data);
                }
                Some(GatewayMessage::Ephemeral { op, data }) => self.ephemeral.push((op, data)),
                other => panic!("{}: expected an event, got {other:?}", self.name),
            }
        }
    }

    /// The next persistent event, which must be of `kind`; its data.
    async fn expect(&mut self, kind: &str) -> Value {
        let (seq, got, data) = self.event().await;
        assert_eq!(got, kind, "{}: event {seq} is {got} {data}", self.name);
        data
    }

    /// Waits for an ephemeral frame `op` matching `pred`; no persistent event may come first.
    async fn ephemeral(&mut self, op: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.next(WAIT).await {
                Some(GatewayMessage::Ephemeral { op: got, data }) => {
                    self.ephemeral.push((got.clone(), data.clone()));
                    if got == op && pred(&data) {
                        return data;
                    }
                }
                other => panic!("{}: expected {op}, got {other:?}", self.name),
            }
        }
    }

    /// Everything that arrives within `d`.
    async fn drain(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left).await {
                Some(GatewayMessage::Event { seq, kind, data }) => {
                    self.last = seq;
                    self.events.push((seq, kind, data));
                }
                Some(GatewayMessage::Ephemeral { op, data }) => self.ephemeral.push((op, data)),
                Some(other) => panic!("{}: unexpected {other:?}", self.name),
                None => break,
            }
        }
    }

    /// Presence frames about `user` recorded so far.
    fn presences_of(&self, user: &str) -> Vec<String> {
        self.ephemeral
            .iter()
            .filter(|(op, data)| op == "presence" && data["user_id"] == user)
            .map(|(_, data)| data["status"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

// ---- 1. every event kind, typing and presence ----

#[test]
fn every_event_kind_reaches_the_other_user_and_ephemerals_are_not_replayed() {
    let server = TestServer::start();
    block_on(async {
        let alice = Who::new(&server, "alice").await;
        let bob = Who::new(&server, "bob").await;
        let carol = Who::new(&server, "carol").await;
        let (g, c) = guild(&alice, "Home", &[&bob]).await;
        let (g2, _) = guild(&alice, "Second", &[&bob]).await;
        // Invites and bans reach only those who may list them (MANAGE_GUILD, BAN_MEMBERS):
        // bob may, so that he gets every kind. tests/it/security/guild.rs covers the others.
        let staff = alice
            .ok(
                "POST",
                &format!("/guilds/{g}/roles"),
                Some(json!({"name": "staff", "permissions": (1u64 << 9) | (1 << 11)})),
            )
            .await;
        alice
            .ok(
                "PUT",
                &format!("/guilds/{g}/members/{}/roles/{}", bob.id, id_of(&staff)),
                None,
            )
            .await;
        let mut w = Watch::new(&bob).await;
        let start = w.last;

        // Guild, channels, roles.
        alice
            .ok(
                "PATCH",
                &format!("/guilds/{g}"),
                Some(json!({"name": "Hearthside"})),
            )
            .await;
        let d = w.expect("guild_update").await;
        assert_eq!(
            (d["id"].as_str(), d["name"].as_str()),
            (Some(&*g), Some("Hearthside"))
        );

        let side = alice
            .ok(
                "POST",
                &format!("/guilds/{g}/channels"),
                Some(json!({"name": "side", "kind": "text"})),
            )
            .await;
        let side = id_of(&side);
        let d = w.expect("channel_create").await;
        assert_eq!(
            (id_of(&d), d["name"].as_str(), d["guild_id"].as_str()),
            (side.clone(), Some("side"), Some(&*g))
        );

        alice
            .ok(
                "PATCH",
                &format!("/channels/{side}"),
                Some(json!({"topic": "odds and ends"})),
            )
            .await;
        let d = w.expect("channel_update").await;
        assert_eq!(
            (id_of(&d), d["topic"].as_str()),
            (side.clone(), Some("odds and ends"))
        );

        let role = alice
            .ok(
                "POST",
                &format!("/guilds/{g}/roles"),
                Some(json!({"name": "mods", "permissions": 0})),
            )
            .await;
        let role = id_of(&role);
        let d = w.expect("role_create").await;
        assert_eq!(
            (id_of(&d), d["name"].as_str()),
            (role.clone(), Some("mods"))
        );

        alice
            .ok(
                "PATCH",
                &format!("/guilds/{g}/roles/{role}"),
                Some(json!({"name": "moderators", "color": 255})),
            )
            .await;
        let d = w.expect("role_update").await;
        assert_eq!(
            (id_of(&d), d["name"].as_str(), d["color"].as_u64()),
            (role.clone(), Some("moderators"), Some(255))
        );

        // Invites and members.
        let invite = alice
            .ok(
                "POST",
                &format!("/channels/{c}/invites"),
                Some(json!({"max_uses": 5})),
            )
            .await;
        let code = invite["code"].as_str().expect("code").to_string();
        let d = w.expect("invite_create").await;
        assert_eq!(
            (
                d["code"].as_str(),
                d["channel_id"].as_str(),
                d["max_uses"].as_u64()
            ),
            (Some(&*code), Some(&*c), Some(5))
        );

        carol
            .ok("POST", &format!("/invites/{code}"), Some(json!({})))
            .await;
        let d = w.expect("member_add").await;
        assert_eq!(
            (d["user_id"].as_str(), d["guild_id"].as_str()),
            (Some(&*carol.id), Some(&*g))
        );
        assert_eq!(
            d["user"]["username"], "carol",
            "member_add carries the profile: {d}"
        );

        alice
            .ok(
                "PUT",
                &format!("/guilds/{g}/members/{}/roles/{role}", carol.id),
                None,
            )
            .await;
        let d = w.expect("member_update").await;
        assert_eq!(d["user_id"].as_str(), Some(&*carol.id));
        assert_eq!(d["roles"], json!([role]), "{d}");

        carol
            .ok(
                "PATCH",
                &format!("/guilds/{g}/members/{}", carol.id),
                Some(json!({"nick": "cc"})),
            )
            .await;
        let d = w.expect("member_update").await;
        assert_eq!(
            (d["user_id"].as_str(), d["nick"].as_str()),
            (Some(&*carol.id), Some("cc"))
        );

        alice
            .ok("DELETE", &format!("/guilds/{g}/roles/{role}"), None)
            .await;
        let d = w.expect("role_delete").await;
        assert_eq!(
            (id_of(&d), d["guild_id"].as_str()),
            (role.clone(), Some(&*g))
        );

        alice.ok("DELETE", &format!("/invites/{code}"), None).await;
        let d = w.expect("invite_delete").await;
        assert_eq!(
            (d["code"].as_str(), d["guild_id"].as_str()),
            (Some(&*code), Some(&*g))
        );

        // Messages, reactions, pins.
        let m = alice.say(&c, "hello <@everyone> ✓").await;
        let m = id_of(&m);
        let d = w.expect("message_create").await;
        assert_eq!(
            (
                id_of(&d),
                d["content"].as_str(),
                d["author_id"].as_str(),
                d["channel_id"].as_str()
            ),
            (
                m.clone(),
                Some("hello <@everyone> ✓"),
                Some(&*alice.id),
                Some(&*c)
            )
        );

        alice
            .ok(
                "PATCH",
                &format!("/channels/{c}/messages/{m}"),
                Some(json!({"content": "hello again"})),
            )
            .await;
        let d = w.expect("message_update").await;
        assert_eq!(
            (id_of(&d), d["content"].as_str()),
            (m.clone(), Some("hello again"))
        );
        assert!(d["edited_at"].is_u64(), "{d}");

        let thumbs = "%F0%9F%91%8D";
        alice
            .ok(
                "PUT",
                &format!("/channels/{c}/messages/{m}/reactions/{thumbs}"),
                None,
            )
            .await;
        let d = w.expect("reaction_add").await;
        assert_eq!(
            (
                d["message_id"].as_str(),
                d["emoji"].as_str(),
                d["user_id"].as_str(),
                d["channel_id"].as_str()
            ),
            (Some(&*m), Some("👍"), Some(&*alice.id), Some(&*c))
        );
        alice
            .ok(
                "DELETE",
                &format!("/channels/{c}/messages/{m}/reactions/{thumbs}"),
                None,
            )
            .await;
        let d = w.expect("reaction_remove").await;
        assert_eq!(
            (
                d["message_id"].as_str(),
                d["emoji"].as_str(),
                d["user_id"].as_str()
            ),
            (Some(&*m), Some("👍"), Some(&*alice.id))
        );

        alice
            .ok("PUT", &format!("/channels/{c}/pins/{m}"), None)
            .await;
        let d = w.expect("pin_add").await;
        assert_eq!((id_of(&d), d["pinned"].as_bool()), (m.clone(), Some(true)));
        alice
            .ok("DELETE", &format!("/channels/{c}/pins/{m}"), None)
            .await;
        let d = w.expect("pin_remove").await;
        assert_eq!((id_of(&d), d["pinned"].as_bool()), (m.clone(), Some(false)));

        alice
            .ok("DELETE", &format!("/channels/{c}/messages/{m}"), None)
            .await;
        let d = w.expect("message_delete").await;
        assert_eq!(
            (id_of(&d), d["channel_id"].as_str()),
            (m.clone(), Some(&*c))
        );

        // Kick, ban, unban.
        alice
            .ok("DELETE", &format!("/guilds/{g}/members/{}", carol.id), None)
            .await;
        let d = w.expect("member_remove").await;
        assert_eq!(
            (d["user_id"].as_str(), d["guild_id"].as_str()),
            (Some(&*carol.id), Some(&*g))
        );

        alice
            .ok(
                "PUT",
                &format!("/guilds/{g}/bans/{}", carol.id),
                Some(json!({"reason": "spam"})),
            )
            .await;
        let d = w.expect("ban_add").await;
        assert_eq!(
            (
                d["user_id"].as_str(),
                d["reason"].as_str(),
                d["banned_by"].as_str()
            ),
            (Some(&*carol.id), Some("spam"), Some(&*alice.id))
        );
        alice
            .ok("DELETE", &format!("/guilds/{g}/bans/{}", carol.id), None)
            .await;
        let d = w.expect("ban_remove").await;
        assert_eq!(
            (d["user_id"].as_str(), d["guild_id"].as_str()),
            (Some(&*carol.id), Some(&*g))
        );

        // Profile, channel and guild deletion.
        alice
            .ok("PATCH", "/users/@me", Some(json!({"name": "Alice A."})))
            .await;
        let d = w.expect("user_update").await;
        assert_eq!(
            (id_of(&d), d["name"].as_str()),
            (alice.id.clone(), Some("Alice A."))
        );

        alice.ok("DELETE", &format!("/channels/{side}"), None).await;
        let d = w.expect("channel_delete").await;
        assert_eq!(
            (id_of(&d), d["guild_id"].as_str()),
            (side.clone(), Some(&*g))
        );

        alice.ok("DELETE", &format!("/guilds/{g2}"), None).await;
        let d = w.expect("guild_delete").await;
        assert_eq!(id_of(&d), g2);

        // Typing, over HTTP and as a frame.
        alice
            .ok("POST", &format!("/channels/{c}/typing"), Some(json!({})))
            .await;
        let d = w.ephemeral("typing", |_| true).await;
        assert_eq!(
            (
                d["user_id"].as_str(),
                d["channel_id"].as_str(),
                d["guild_id"].as_str(),
                d["expires_in_ms"].as_u64()
            ),
            (Some(&*alice.id), Some(&*c), Some(&*g), Some(8000))
        );

        // Presence: alice comes online with a socket of her own, types through it, leaves.
        let (mut ws, _) = started(&alice).await;
        let d = w.ephemeral("presence", |d| d["user_id"] == alice.id).await;
        assert_eq!(d["status"], "online");
        send_text(
            &mut ws,
            json!({"op": "typing", "channel_id": c}).to_string(),
        )
        .await;
        let d = w.ephemeral("typing", |_| true).await;
        assert_eq!(
            (d["user_id"].as_str(), d["channel_id"].as_str()),
            (Some(&*alice.id), Some(&*c))
        );
        ws.close(None).await.expect("close");
        drop(ws);
        let d = w.ephemeral("presence", |d| d["user_id"] == alice.id).await;
        assert_eq!(d["status"], "offline");

        // Busy shows as busy.
        alice
            .ok("PATCH", "/users/@me", Some(json!({"presence": "busy"})))
            .await;
        assert_eq!(w.expect("user_update").await["presence"], "busy");
        let (mut ws, _) = started(&alice).await;
        let d = w.ephemeral("presence", |d| d["user_id"] == alice.id).await;
        assert_eq!(d["status"], "busy");
        ws.close(None).await.expect("close");
        drop(ws);
        let d = w.ephemeral("presence", |d| d["user_id"] == alice.id).await;
        assert_eq!(d["status"], "offline");

        // Shown offline: connecting and leaving tell nobody, typing still works.
        alice
            .ok("PATCH", "/users/@me", Some(json!({"presence": "offline"})))
            .await;
        assert_eq!(w.expect("user_update").await["presence"], "offline");
        let shown_before = w.presences_of(&alice.id).len();
        let (mut ws, _) = started(&alice).await;
        send_text(
            &mut ws,
            json!({"op": "typing", "channel_id": c}).to_string(),
        )
        .await;
        w.ephemeral("typing", |d| d["user_id"] == alice.id).await;
        assert!(
            bob.online(&g).await.iter().all(|u| *u != alice.id),
            "hidden alice is listed online"
        );
        ws.close(None).await.expect("close");
        drop(ws);
        let last = alice.say(&c, "still hidden").await;
        let d = w.expect("message_create").await;
        assert_eq!(id_of(&d), id_of(&last));
        w.drain(Duration::from_millis(300)).await;
        assert_eq!(
            w.presences_of(&alice.id).len(),
            shown_before,
            "presence frames for a user shown offline: {:?}",
            w.presences_of(&alice.id)
        );
        assert!(w.ephemeral.iter().filter(|(op, _)| op == "typing").count() >= 3);

        // A resume from before all this replays the same events and none of the ephemerals.
        let live: Vec<u64> = w.events.iter().map(|(seq, _, _)| *seq).collect();
        let (mut ws, hello) = open(&bob, Some(json!({"op": "resume", "seq": start}))).await;
        assert_eq!(hello["last_seq"].as_u64(), Some(w.last));
        let (replayed, ready) = replay(&mut ws).await;
        assert_eq!(ready, w.last);
        let seqs: Vec<u64> = replayed
            .iter()
            .map(|f| f["seq"].as_u64().expect("seq"))
            .collect();
        // Events addressed to the channel deleted since are no longer anyone's to see, and
        // those of the message deleted since are replayed only as its deletion (docs/protocol.md:
        // a resume replays what REST shows now); everything else comes again, in the same
        // order and with the same content.
        let gone: HashSet<u64> = w
            .events
            .iter()
            .filter(|(_, kind, d)| {
                let side_channel =
                    kind.starts_with("channel_") && kind != "channel_delete" && d["id"] == side;
                let deleted_message = kind != "message_delete"
                    && (d["id"] == m.as_str() || d["message_id"] == m.as_str());
                side_channel || deleted_message
            })
            .map(|(seq, _, _)| *seq)
            .collect();
        assert_eq!(gone.len(), 2 + 6);
        let expected: Vec<u64> = live.iter().copied().filter(|s| !gone.contains(s)).collect();
        assert_eq!(seqs, expected, "replay after {start}");
        for f in &replayed {
            let seq = f["seq"].as_u64().unwrap();
            let (_, kind, data) = w.events.iter().find(|(s, _, _)| *s == seq).unwrap();
            assert_eq!(
                (f["type"].as_str(), &f["data"]),
                (Some(kind.as_str()), data)
            );
        }
        let more = frame(&mut ws, Duration::from_millis(300)).await;
        assert!(more.is_none(), "after ready, nothing was due: {more:?}");
    });
}

// ---- 2. resume ----

/// Message events in `frames`: (seq, content); anything else but events fails.
fn messages_of(frames: &[Value]) -> Vec<(u64, String)> {
    frames
        .iter()
        .map(|f| {
            assert_eq!(
                (f["op"].as_str(), f["type"].as_str()),
                (Some("event"), Some("message_create")),
                "{f}"
            );
            (
                f["seq"].as_u64().expect("seq"),
                f["data"]["content"].as_str().expect("content").to_string(),
            )
        })
        .collect()
}

/// Checks that `got` holds every one of `expected` contents exactly once, with sequence
/// numbers running without a gap from `first`.
fn exactly_once_in_order(got: &[(u64, String)], first: u64, expected: &HashSet<String>) {
    let mut seen = HashSet::new();
    for (i, (seq, content)) in got.iter().enumerate() {
        assert_eq!(
            *seq,
            first + i as u64,
            "event {i} ({content}) out of order or after a gap"
        );
        assert!(seen.insert(content.clone()), "{content} arrived twice");
    }
    let missing: Vec<&String> = expected.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} never arrived, e.g. {missing:?}",
        expected.len() - seen.len().min(expected.len()),
        expected.len()
    );
    assert_eq!(seen.len(), expected.len(), "unexpected messages");
}

/// Checks that each sender's numbered messages (`TAG-N`) arrived in the order sent.
fn per_sender_order(got: &[(u64, String)]) {
    let mut last: HashMap<String, u64> = HashMap::new();
    for (_, content) in got {
        let (tag, n) = content.rsplit_once('-').expect("TAG-N");
        let n: u64 = n.parse().expect("number");
        if let Some(before) = last.insert(tag.to_string(), n) {
            assert!(n > before, "{tag}: {n} after {before}");
        }
    }
}

/// Reads message events from a raw socket until `total` contents are known in `got`.
async fn read_messages(
    ws: &mut Ws,
    got: &mut Vec<(u64, String)>,
    total: usize,
    stop_after: Option<usize>,
) -> Option<u64> {
    let mut ready = None;
    let mut read = 0;
    while got.len() < total && stop_after.is_none_or(|n| read < n) {
        let f = json_frame(ws, "a message event").await;
        match f["op"].as_str() {
            Some("event") => {
                got.extend(messages_of(std::slice::from_ref(&f)));
                read += 1;
            }
            Some("ready") => ready = f["seq"].as_u64(),
            Some("presence") => {}
            _ => panic!("unexpected frame {f}"),
        }
    }
    ready
}

#[test]
fn a_socket_cut_mid_burst_resumes_with_every_message_once_in_order() {
    const WORKERS: usize = 4;
    const EACH: usize = 250;
    const BEFORE_GATE: usize = 150;
    let server = TestServer::start();
    block_on(async {
        let alice = Who::new(&server, "alice").await;
        let bob = Who::new(&server, "bob").await;
        let (_, c) = guild(&alice, "Burst", &[&bob]).await;
        let (mut ws, s0) = started(&bob).await;

        let posted = Arc::new(AtomicUsize::new(0));
        let (open_gate, gate) = async_channel::bounded::<()>(1);
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (alice, c, posted, gate) =
                    (alice.clone(), c.clone(), posted.clone(), gate.clone());
                smol::spawn(async move {
                    for i in 0..EACH {
                        if i == BEFORE_GATE {
                            let _ = gate.recv().await;
                        }
                        alice.say(&c, &format!("w{w}-{i}")).await;
                        posted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        let expected: HashSet<String> = (0..WORKERS)
            .flat_map(|w| (0..EACH).map(move |i| format!("w{w}-{i}")))
            .collect();

        // Read 300 of them, then drop the socket without a close handshake.
        let mut got = Vec::new();
        read_messages(&mut ws, &mut got, usize::MAX, Some(300)).await;
        drop(ws);
        let cut = got.last().expect("read some").0;
        // Let more pile up in the log while disconnected.
        while posted.load(Ordering::SeqCst) < 400 {
            smol::Timer::after(Duration::from_millis(5)).await;
        }

        let (mut ws, hello) = open(&bob, Some(json!({"op": "resume", "seq": cut}))).await;
        let replay_end = hello["last_seq"].as_u64().expect("last_seq");
        drop(open_gate); // the last 400 are posted while the replay runs
        let ready = read_messages(&mut ws, &mut got, expected.len(), None).await;
        for w in workers {
            w.await;
        }
        exactly_once_in_order(&got, s0 + 1, &expected);
        per_sender_order(&got);
        let ready = ready.expect("ready after the replay");
        assert!(
            ready >= replay_end,
            "ready {ready} before hello's last_seq {replay_end}"
        );
        let replayed = got
            .iter()
            .filter(|(s, _)| *s > cut && *s <= replay_end)
            .count();
        let live = got.iter().filter(|(s, _)| *s > ready).count();
        eprintln!("cut after seq {cut}: {replayed} replayed from the log, {live} live after ready {ready}");
        assert!(
            replayed >= 100 && live > 0,
            "the resume should cross replay and live delivery"
        );
        let extra = frame(&mut ws, Duration::from_millis(200)).await;
        assert!(matches!(extra, None | Some(Frame::Json(_))), "{extra:?}");
        if let Some(Frame::Json(f)) = extra {
            assert_ne!(f["op"], "event", "an extra event: {f}");
        }
    });
}

#[test]
fn resume_across_a_server_restart_and_shutdown_closes_with_1001() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = TestServer::start_config(test_config(data.clone()), None);
    block_on(async {
        let mut alice = Who::new(&server, "alice").await;
        let mut bob = Who::new(&server, "bob").await;
        let (_, c) = guild(&alice, "Durable", &[&bob]).await;
        let (mut ws, s0) = started(&bob).await;
        let mut expected = HashSet::new();
        for i in 0..200 {
            alice.say(&c, &format!("before-{i}")).await;
            expected.insert(format!("before-{i}"));
        }
        let mut got = Vec::new();
        read_messages(&mut ws, &mut got, usize::MAX, Some(100)).await;
        let cut = got.last().expect("some").0;

        // Shut down while bob is connected: the rest arrive, then a close with 1001 and
        // the resume point.
        server.stop();
        let (code, reason, rest) = close_of(&mut ws).await;
        assert_eq!(code, 1001, "{reason}");
        let rest: Vec<&Value> = rest.iter().filter(|f| f["op"] != "presence").collect();
        assert_eq!(
            rest.len(),
            100,
            "every event committed before shutdown went out first"
        );
        assert_eq!(resume_point(&reason), s0 + 200, "{reason}");
        assert!(reason.contains("shutting down"), "{reason}");
        // Pretend those 100 were lost with the client: resume from the cut instead.

        let server = TestServer::start_config(test_config(data.clone()), None);
        alice.move_to(&server.origin).await;
        bob.move_to(&server.origin).await;
        let (mut ws, hello) = open(&bob, Some(json!({"op": "resume", "seq": cut}))).await;
        assert_eq!(
            hello["last_seq"].as_u64(),
            Some(s0 + 200),
            "the sequence survives the restart"
        );
        let poster = {
            let (alice, c) = (alice.clone(), c.clone());
            smol::spawn(async move {
                for i in 0..200 {
                    alice.say(&c, &format!("after-{i}")).await;
                }
            })
        };
        expected.extend((0..200).map(|i| format!("after-{i}")));
        let ready = read_messages(&mut ws, &mut got, expected.len(), None).await;
        poster.await;
        exactly_once_in_order(&got, s0 + 1, &expected);
        per_sender_order(&got);
        assert!(ready.is_some(), "no ready frame");
        drop(server);
    });
    drop(dir);
}

#[test]
fn resume_points_outside_the_retained_log_get_resync() {
    let server = TestServer::start_with(|c| c.gateway.retention_events = 10);
    block_on(async {
        let alice = Who::new(&server, "alice").await;
        let bob = Who::new(&server, "bob").await;
        let (_, c) = guild(&alice, "Short memory", &[&bob]).await;
        let (ws, s0) = started(&bob).await;
        drop(ws);
        for i in 0..30 {
            alice.say(&c, &format!("r-{i}")).await;
        }
        let last = s0 + 30;

        // Older than the log: resync, then live events after it.
        let (mut ws, _) = open(&bob, Some(json!({"op": "resume", "seq": s0}))).await;
        let f = json_frame(&mut ws, "resync").await;
        assert_eq!(
            f,
            json!({"op": "resync", "seq": last, "oldest_available": last - 9})
        );
        alice.say(&c, "live").await;
        let f = event_frame(&mut ws, "the live event").await;
        assert_eq!(
            (f["seq"].as_u64(), f["data"]["content"].as_str()),
            (Some(last + 1), Some("live"))
        );
        drop(ws);
        let last = last + 1;

        // Inside the log: exactly what came after.
        let (mut ws, _) = open(&bob, Some(json!({"op": "resume", "seq": last - 5}))).await;
        let (events, ready) = replay(&mut ws).await;
        assert_eq!(ready, last);
        let got = messages_of(&events);
        let want: Vec<(u64, String)> = (0..5)
            .map(|i| {
                (
                    last - 4 + i,
                    if i == 4 {
                        "live".to_string()
                    } else {
                        format!("r-{}", 26 + i)
                    },
                )
            })
            .collect();
        assert_eq!(got, want);
        drop(ws);

        // The oldest retained one as the resume point is still fine.
        let (mut ws, _) = open(&bob, Some(json!({"op": "resume", "seq": last - 10}))).await;
        let (events, ready) = replay(&mut ws).await;
        assert_eq!((events.len(), ready), (10, last));
        drop(ws);
        // One before it is not.
        let (mut ws, _) = open(&bob, Some(json!({"op": "resume", "seq": last - 11}))).await;
        assert_eq!(json_frame(&mut ws, "resync").await["op"], "resync");
        drop(ws);

        // 0 means "everything still retained" (docs/protocol.md).
        let (mut ws, _) = open(&bob, Some(json!({"op": "resume", "seq": 0}))).await;
        let (events, ready) = replay(&mut ws).await;
        assert_eq!(ready, last);
        let seqs: Vec<u64> = events.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, ((last - 9)..=last).collect::<Vec<_>>());
        drop(ws);

        // A point from the future (another server's numbers): resync too.
        let (mut ws, _) = open(&bob, Some(json!({"op": "resume", "seq": last + 1000}))).await;
        let f = json_frame(&mut ws, "resync").await;
        assert_eq!(
            (f["op"].as_str(), f["seq"].as_u64()),
            (Some("resync"), Some(last))
        );
        drop(ws);

        // The client library reports it.
        let stream = bob.events(Some(s0)).await;
        let m = within(WAIT, stream.next()).await.flatten();
        assert_eq!(m, Some(GatewayMessage::Resync { seq: last }));
    });
}

// ---- 3. a stalled reader beside a fast one ----

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn a_client_that_stops_reading_is_cut_off_without_slowing_a_reading_one() {
    const WORKERS: usize = 8;
    const AT_LEAST: usize = 2_000;
    const AT_MOST: usize = 6_000;
    let server = TestServer::start_with(|c| {
        c.gateway.queue_per_connection = 64;
        // Long enough that neither heartbeats nor the send deadline (two intervals) end
        // the stalled session before it reads again.
        c.gateway.heartbeat_secs = 300;
    });
    block_on(async {
        let alice = Who::new(&server, "alice").await;
        let bob = Who::new(&server, "bob").await;
        let carol = Who::new(&server, "carol").await;
        let (g, c) = guild(&alice, "Crowd", &[&bob, &carol]).await;

        // Carol's socket goes live and then is never read until the end.
        let (mut slow, s0) = started(&carol).await;
        // Bob reads through the client library; every message's arrival time is noted.
        let fast = bob.events(None).await;
        let (arrivals, arrived) = async_channel::unbounded::<(usize, Instant)>();
        let (drops, dropped) = async_channel::unbounded::<GatewayMessage>();
        let (presences, presence) = async_channel::unbounded::<Value>();
        let (ready_tx, ready_rx) = async_channel::bounded::<()>(1);
        let collector = smol::spawn(async move {
            while let Some(m) = fast.next().await {
                match m {
                    GatewayMessage::Event { kind, data, .. } if kind == "message_create" => {
                        let at = Instant::now();
                        let content = data["content"].as_str().unwrap_or("");
                        let n = content.split(':').next().and_then(|n| n.parse().ok());
                        let _ = arrivals.send((n.expect("numbered message"), at)).await;
                    }
                    GatewayMessage::Ready { .. } => {
                        let _ = ready_tx.try_send(());
                    }
                    GatewayMessage::Ephemeral { op, data } if op == "presence" => {
                        let _ = presences.send(data).await;
                    }
                    m @ (GatewayMessage::Disconnected { .. } | GatewayMessage::Resync { .. }) => {
                        let _ = drops.send(m).await;
                    }
                    _ => {}
                }
            }
        });
        within(WAIT, ready_rx.recv())
            .await
            .expect("fast stream ready")
            .expect("ready");
        assert!(bob.online(&g).await.contains(&carol.id));

        // Post numbered ~2 KB messages until carol has been cut off and at least AT_LEAST
        // were sent (her socket buffers swallow a few MB first).
        let padding = "x".repeat(2000);
        let next = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sent_at = Arc::new(std::sync::Mutex::new(HashMap::<usize, Instant>::new()));
        let started_at = Instant::now();
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (alice, c, next, stop, sent_at, padding) = (
                    alice.clone(),
                    c.clone(),
                    next.clone(),
                    stop.clone(),
                    sent_at.clone(),
                    padding.clone(),
                );
                smol::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        if n >= AT_MOST {
                            break;
                        }
                        sent_at.lock().unwrap().insert(n, Instant::now());
                        alice.say(&c, &format!("{n}:{padding}")).await;
                    }
                })
            })
            .collect();
        let mut cut_at = None;
        loop {
            smol::Timer::after(Duration::from_millis(100)).await;
            let n = next.load(Ordering::SeqCst);
            if cut_at.is_none() && !bob.online(&g).await.contains(&carol.id) {
                cut_at = Some(n);
            }
            if (cut_at.is_some() && n >= AT_LEAST) || n >= AT_MOST {
                stop.store(true, Ordering::SeqCst);
                break;
            }
        }
        for w in workers {
            w.await;
        }
        let posted = next.load(Ordering::SeqCst).min(AT_MOST);
        let posting = started_at.elapsed();
        let cut_at =
            cut_at.unwrap_or_else(|| panic!("carol was never cut off in {posted} messages"));

        // Bob got every one of them, quickly.
        let sent_at = sent_at.lock().unwrap().clone();
        let mut delays = Vec::with_capacity(posted);
        let mut seen = HashSet::new();
        while seen.len() < posted {
            let (n, at) = within(WAIT, arrived.recv())
                .await
                .unwrap_or_else(|| panic!("bob got {} of {posted}", seen.len()))
                .expect("collector alive");
            assert!(seen.insert(n), "message {n} twice");
            delays.push(at.saturating_duration_since(sent_at[&n]));
        }
        assert!(
            dropped.try_recv().is_err(),
            "the fast client was disconnected: {:?}",
            dropped.try_recv()
        );
        delays.sort();
        let (p50, p99, max) = (
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            *delays.last().unwrap(),
        );
        eprintln!(
            "fast client: {posted} messages posted in {posting:?} by {WORKERS} senders; \
             delivery delay p50 {p50:?}, p99 {p99:?}, max {max:?}; the stalled client was cut off after ~{cut_at}"
        );
        assert!(max < Duration::from_secs(10), "max delay {max:?}");

        // Carol reads again: what was buffered, then 4008 with her resume point...
        let (code, reason, frames) = close_of(&mut slow).await;
        assert_eq!(code, 4008, "{reason}");
        let carol_presence = || async {
            loop {
                let p = within(WAIT, presence.recv())
                    .await
                    .expect("a presence frame about carol")
                    .expect("collector alive");
                if p["user_id"] == carol.id {
                    return p["status"].as_str().unwrap_or("?").to_string();
                }
            }
        };
        assert_eq!(
            carol_presence().await,
            "offline",
            "her cut-off connection is gone"
        );
        assert!(reason.contains("too slow"), "{reason}");
        let resume = resume_point(&reason);
        let events: Vec<&Value> = frames.iter().filter(|f| f["op"] == "event").collect();
        let got: Vec<(u64, String)> = events
            .iter()
            .map(|f| {
                (
                    f["seq"].as_u64().unwrap(),
                    f["data"]["content"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for (i, (seq, _)) in got.iter().enumerate() {
            assert_eq!(
                *seq,
                s0 + 1 + i as u64,
                "carol's events before the cut-off have a gap"
            );
        }
        assert_eq!(
            got.last().map(|g| g.0).unwrap_or(s0),
            resume,
            "the resume point is the last event sent"
        );
        assert!(
            got.len() < posted,
            "carol got everything before being cut off?"
        );
        // ...and resuming from there brings the rest, exactly once.
        let (mut ws, _) = open(&carol, Some(json!({"op": "resume", "seq": resume}))).await;
        let (rest, ready) = replay(&mut ws).await;
        assert_eq!(ready, s0 + posted as u64);
        let mut all: Vec<(u64, String)> = got;
        all.extend(messages_of(&rest));
        let expected: HashSet<String> = (0..posted).map(|n| format!("{n}:{padding}")).collect();
        exactly_once_in_order(&all, s0 + 1, &expected);
        eprintln!(
            "the stalled client got {} before the cut-off and {} on resume",
            events.len(),
            rest.len()
        );
        assert_eq!(
            carol_presence().await,
            "online",
            "her new connection is announced"
        );
        collector.cancel().await;
    });
}

// ---- 4. permissions changing mid-stream ----

#[test]
fn permission_changes_and_kicks_take_effect_at_once() {
    let server = TestServer::start();
    block_on(async {
        let alice = Who::new(&server, "alice").await;
        let bob = Who::new(&server, "bob").await;
        let (g, a) = guild(&alice, "Rooms", &[&bob]).await;
        let (elsewhere, other) = guild(&alice, "Elsewhere", &[&bob]).await;
        let b = id_of(
            &alice
                .ok(
                    "POST",
                    &format!("/guilds/{g}/channels"),
                    Some(json!({"name": "b", "kind": "text"})),
                )
                .await,
        );
        let role = id_of(
            &alice
                .ok(
                    "POST",
                    &format!("/guilds/{g}/roles"),
                    Some(json!({"name": "quiet", "permissions": 0})),
                )
                .await,
        );
        alice
            .ok(
                "PUT",
                &format!("/guilds/{g}/members/{}/roles/{role}", bob.id),
                None,
            )
            .await;
        let mut w = Watch::new(&bob).await;
        let content = |d: &Value| d["content"].as_str().unwrap_or("").to_string();

        alice.say(&a, "a1").await;
        assert_eq!(content(&w.expect("message_create").await), "a1");

        // Deny VIEW_CHANNEL on `a` to bob's role: nothing of `a` reaches him any more, not
        // even the change itself or typing there; `b` still does.
        let deny =
            json!({"overwrites": [{"target": {"role": role}, "allow": 0, "deny": VIEW_CHANNEL}]});
        alice
            .ok("PATCH", &format!("/channels/{a}"), Some(deny.clone()))
            .await;
        alice.say(&a, "a2 (hidden)").await;
        alice
            .ok("POST", &format!("/channels/{a}/typing"), Some(json!({})))
            .await;
        alice.say(&b, "b1").await;
        let d = w.expect("message_create").await;
        assert_eq!(
            (content(&d), d["channel_id"].as_str()),
            ("b1".to_string(), Some(&*b))
        );
        assert!(
            !w.ephemeral
                .iter()
                .any(|(op, d)| op == "typing" && d["channel_id"] == a),
            "typing in a hidden channel arrived"
        );

        // Lift it: the change arrives, and `a` again.
        alice
            .ok(
                "PATCH",
                &format!("/channels/{a}"),
                Some(json!({"overwrites": []})),
            )
            .await;
        let d = w.expect("channel_update").await;
        assert_eq!((id_of(&d), d["overwrites"].clone()), (a.clone(), json!([])));
        alice.say(&a, "a3").await;
        assert_eq!(content(&w.expect("message_create").await), "a3");

        // Deny again, then take the role away from bob instead.
        alice
            .ok("PATCH", &format!("/channels/{a}"), Some(deny))
            .await;
        alice.say(&a, "a4 (hidden)").await;
        alice
            .ok(
                "DELETE",
                &format!("/guilds/{g}/members/{}/roles/{role}", bob.id),
                None,
            )
            .await;
        let d = w.expect("member_update").await;
        assert_eq!(
            (d["user_id"].as_str(), d["roles"].clone()),
            (Some(&*bob.id), json!([]))
        );
        alice.say(&a, "a5").await;
        assert_eq!(content(&w.expect("message_create").await), "a5");

        // Kicked: bob hears of it, then nothing more of that guild; other guilds go on.
        alice
            .ok("DELETE", &format!("/guilds/{g}/members/{}", bob.id), None)
            .await;
        let d = w.expect("member_remove").await;
        assert_eq!(
            (d["user_id"].as_str(), d["guild_id"].as_str()),
            (Some(&*bob.id), Some(&*g))
        );
        alice.say(&a, "after the kick").await;
        alice
            .ok(
                "PATCH",
                &format!("/guilds/{g}"),
                Some(json!({"name": "Rooms 2"})),
            )
            .await;
        alice
            .ok(
                "POST",
                &format!("/guilds/{g}/channels"),
                Some(json!({"name": "new", "kind": "text"})),
            )
            .await;
        alice
            .ok("POST", &format!("/channels/{b}/typing"), Some(json!({})))
            .await;
        alice.say(&other, "marker").await;
        let d = w.expect("message_create").await;
        assert_eq!(
            (content(&d), d["guild_id"].as_str()),
            ("marker".to_string(), Some(&*elsewhere))
        );
        assert!(
            !w.ephemeral
                .iter()
                .any(|(op, d)| op == "typing" && d["guild_id"] == g),
            "typing in a guild bob left arrived"
        );
        let hidden: Vec<&(u64, String, Value)> = w
            .events
            .iter()
            .filter(|(_, _, d)| content(d).contains("hidden") || content(d) == "after the kick")
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");
    });
}

// ---- 5. a client in another language ----

/// Kills a child process when dropped (a failing test must not leave it behind).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PIP_INSTALL: &str = "python3 -m pip install websockets==16.0";

#[test]
fn a_python_websockets_client_receives_a_message() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let probe = Command::new("python3")
        .args(["-c", "import websockets.asyncio.client"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the Python package `websockets` is not installed; install it with `{PIP_INSTALL}` ({})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 cannot be run ({e}); install Python 3 and then `{PIP_INSTALL}`"),
    }
    let server = TestServer::start();
    block_on(async {
        let alice = Who::new(&server, "alice").await;
        let bob = Who::new(&server, "bob").await;
        let (_, c) = guild(&alice, "Polyglot", &[&bob]).await;
        let url = bob.ticket().await;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/gateway_client.py");
        let mut child = Child(
            Command::new("python3")
                .arg(script)
                .arg(&url)
                .arg("--timeout")
                .arg("20")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start python3"),
        );
        let stdout = child.0.stdout.take().expect("stdout");
        let (lines_tx, lines) = async_channel::unbounded::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send_blocking(line).is_err() {
                    break;
                }
            }
        });
        let next_line = || async { within(WAIT, lines.recv()).await.and_then(|l| l.ok()) };
        let first = next_line().await;
        let Some(first) = first else {
            let mut err = String::new();
            if let Some(mut e) = child.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the script printed nothing; stderr: {err}");
        };
        let ready_seq: u64 = first
            .strip_prefix("READY ")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("expected READY <seq>, got {first:?}"));

        let sent = alice.say(&c, "hello, Python — ünïcödé ✓").await;
        let line = next_line().await.expect("the script printed the message");
        let frame: Value = serde_json::from_str(
            line.strip_prefix("MESSAGE_CREATE ")
                .unwrap_or_else(|| panic!("expected MESSAGE_CREATE <json>, got {line:?}")),
        )
        .expect("JSON");
        assert_eq!(frame["op"], "event");
        assert_eq!(frame["type"], "message_create");
        assert!(frame["seq"].as_u64().expect("seq") > ready_seq);
        assert_eq!(frame["data"]["id"], sent["id"]);
        assert_eq!(frame["data"]["content"], "hello, Python — ünïcödé ✓");
        assert_eq!(frame["data"]["author_id"].as_str(), Some(&*alice.id));
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("wait for the script") {
                break status;
            }
            assert!(Instant::now() < deadline, "the script did not exit");
            smol::Timer::after(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "script exit {status:?}");
    });
}

// ---- 6. closes ----

/// Opens a socket with a fresh ticket, sends `frames` after hello (starting first when
/// `start`), and returns how the server closed it.
async fn close_after(who: &Who, start: bool, frames: Vec<Message>) -> (u16, String) {
    let (mut ws, _) = if start {
        started(who).await
    } else {
        (open(who, None).await.0, 0)
    };
    for f in frames {
        // The server may already have closed after an earlier frame.
        let _ = ws.send(f).await;
    }
    let (code, reason, _) = close_of(&mut ws).await;
    assert!(!reason.is_empty(), "close {code} without a reason");
    (code, reason)
}

async fn close_of_url(url: &str) -> (u16, String) {
    let mut ws = connect(url).await;
    let (code, reason, frames) = close_of(&mut ws).await;
    assert!(frames.is_empty(), "frames before the close: {frames:?}");
    (code, reason)
}

#[test]
fn bad_frames_and_tickets_get_clean_closes_while_others_are_served() {
    let server = TestServer::start_with(|c| c.gateway.max_connections_per_user = 3);
    block_on(async {
        let alice = Who::new(&server, "alice").await;
        let bob = Who::new(&server, "bob").await;
        let dave = Who::new(&server, "dave").await;
        let (g, c) = guild(&alice, "Rules", &[&bob, &dave]).await;
        let mut w = Watch::new(&bob).await;
        let text = |s: &str| Message::Text(s.to_string().into());
        let max = 16 * 1024;
        let big = format!(
            r#"{{"op":"typing","channel_id":"{c}","pad":"{}"}}"#,
            "x".repeat(max)
        );
        let just_fits = format!(r#"{{"op":"ping"{}}}"#, " ".repeat(max - 20));

        let cases: Vec<(&str, bool, Vec<Message>, u16, &str)> = vec![
            (
                "not JSON first",
                false,
                vec![text("hello?")],
                4002,
                "malformed",
            ),
            ("not JSON", true, vec![text("{oops")], 4002, "malformed"),
            (
                "unknown op first",
                false,
                vec![text(r#"{"op":"dance"}"#)],
                4002,
                "malformed",
            ),
            (
                "unknown op",
                true,
                vec![text(r#"{"op":"dance"}"#)],
                4002,
                "malformed",
            ),
            (
                "unknown field",
                true,
                vec![text(r#"{"op":"ping","x":1}"#)],
                4002,
                "malformed",
            ),
            (
                "bad channel id",
                true,
                vec![text(r#"{"op":"typing","channel_id":"x"}"#)],
                4002,
                "malformed",
            ),
            (
                "binary first",
                false,
                vec![Message::Binary(vec![1, 2, 3].into())],
                4002,
                "binary",
            ),
            (
                "binary",
                true,
                vec![Message::Binary(b"{\"op\":\"ping\"}".to_vec().into())],
                4002,
                "binary",
            ),
            ("oversize first", false, vec![text(&big)], 4003, "too large"),
            ("oversize", true, vec![text(&big)], 4003, "too large"),
            (
                "ping before start",
                false,
                vec![text(r#"{"op":"ping"}"#)],
                4004,
                "resume or start",
            ),
            (
                "start twice",
                true,
                vec![text(r#"{"op":"start"}"#)],
                4002,
                "already started",
            ),
            (
                "resume after start",
                true,
                vec![text(r#"{"op":"resume","seq":1}"#)],
                4002,
                "already started",
            ),
        ];
        for (name, start, frames, code, words) in cases {
            let (got, reason) = close_after(&alice, start, frames).await;
            assert_eq!(got, code, "{name}: closed with {got} {reason:?}");
            assert!(reason.contains(words), "{name}: reason {reason:?}");
        }

        // A frame just under the limit is fine, and ping is answered.
        let (mut ws, _) = started(&alice).await;
        send_text(&mut ws, just_fits).await;
        let f = loop {
            let f = json_frame(&mut ws, "pong").await;
            if f["op"] != "presence" {
                break f;
            }
        };
        assert_eq!(f, json!({"op": "pong"}));

        // Tickets: garbage, none, used twice.
        let base = format!("ws://{}/api/v1/gateway", server.addr);
        for url in [
            format!("{base}?ticket=garbage"),
            base.clone(),
            format!("{base}?ticket="),
        ] {
            let (code, reason) = close_of_url(&url).await;
            assert_eq!(code, 4001, "{url}: {reason}");
            assert!(reason.contains("ticket"), "{reason}");
        }
        let once = alice.ticket().await;
        let mut first = connect(&once).await;
        assert_eq!(json_frame(&mut first, "hello").await["op"], "hello");
        let (code, _) = close_of_url(&once).await;
        assert_eq!(code, 4001, "a ticket works once");
        drop(first);
        // Plain HTTP to the websocket endpoint.
        let r = alice
            .c
            .send(&alice.url("/gateway"), "GET", None, false)
            .await
            .expect("GET");
        assert_eq!(r.status, 426);

        // Too many sockets for one user.
        let mut three = Vec::new();
        for _ in 0..3 {
            three.push(started(&dave).await.0);
        }
        let (code, reason) = close_of_url(&dave.ticket().await).await;
        assert_eq!(code, 4005, "{reason}");
        assert!(reason.contains("too many"), "{reason}");
        for ws in &mut three {
            ws.close(None).await.expect("close");
        }
        drop(three);
        w.ephemeral("presence", |d| {
            d["user_id"] == dave.id && d["status"] == "offline"
        })
        .await;

        // Signing the device out closes its socket with 4010 and a resume point, tells
        // the others it went offline, and its unused tickets die with it.
        let (mut ws, s) = started(&dave).await;
        w.ephemeral("presence", |d| {
            d["user_id"] == dave.id && d["status"] == "online"
        })
        .await;
        let spare = dave.ticket().await;
        dave.ok("POST", "/auth/logout", Some(json!({}))).await;
        let (code, reason, _) = close_of(&mut ws).await;
        assert_eq!(code, 4010, "{reason}");
        assert!(reason.contains("signed out"), "{reason}");
        assert_eq!(resume_point(&reason), s);
        w.ephemeral("presence", |d| {
            d["user_id"] == dave.id && d["status"] == "offline"
        })
        .await;
        let (code, reason) = close_of_url(&spare).await;
        assert_eq!(code, 4010, "a signed-out device's ticket: {reason}");

        // Through all of this, bob's stream went on undisturbed.
        alice.say(&c, "still here").await;
        let d = w.expect("message_create").await;
        assert_eq!(d["content"], "still here");
        assert!(bob.online(&g).await.contains(&bob.id));
    });
}

#[test]
fn silent_peers_and_expired_tickets_are_refused() {
    let server = TestServer::start_with(|c| c.gateway.heartbeat_secs = 1);
    block_on(async {
        let alice = Who::new(&server, "alice").await;
        let stale = alice.ticket().await;
        let issued = Instant::now();
        let (_, c) = guild(&alice, "Quiet", &[]).await;

        // No start frame: closed after the start timeout (10 s).
        let opened = Instant::now();
        let (mut ws, _) = open(&alice, None).await;
        let (code, reason, frames) = close_of(&mut ws).await;
        assert_eq!(code, 4004, "{reason}");
        assert!(reason.contains("in time"), "{reason}");
        assert!(frames.is_empty());
        let waited = opened.elapsed();
        assert!(
            waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
            "closed after {waited:?}"
        );

        // Heartbeats every second: a peer that neither reads (so never answers a ping)
        // nor sends is dropped after two intervals with its resume point; one that reads
        // (async-tungstenite answers pings while reading) stays.
        let (mut deaf, deaf_ready) = started(&alice).await;
        let (mut listening, _) = started(&alice).await;
        let quiet_until = Instant::now() + Duration::from_secs(4);
        while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
            if let Some(f) = frame(&mut listening, left).await {
                match f {
                    Frame::Json(v) if v["op"] == "presence" => {}
                    other => panic!("a reading peer got {other:?}"),
                }
            }
        }
        alice.say(&c, "still listening").await;
        let f = event_frame(&mut listening, "the message").await;
        assert_eq!(f["data"]["content"], "still listening");
        let (code, reason, frames) = close_of(&mut deaf).await;
        assert_eq!(code, 4009, "{reason}");
        assert!(reason.contains("heartbeat"), "{reason}");
        let last_sent = frames
            .iter()
            .filter(|f| f["op"] == "event")
            .filter_map(|f| f["seq"].as_u64())
            .next_back()
            .unwrap_or(deaf_ready);
        assert_eq!(resume_point(&reason), last_sent, "{frames:?}");

        // The ticket expires 30 s after it was issued (whole seconds, so a little sooner).
        let expiry = Duration::from_millis(30_050);
        if let Some(left) = expiry.checked_sub(issued.elapsed()) {
            smol::Timer::after(left).await;
        }
        let (code, reason) = close_of_url(&stale).await;
        assert_eq!(code, 4001, "an expired ticket: {reason}");
        // A fresh one still works.
        let (ws, _) = started(&alice).await;
        drop(ws);
    });
}
