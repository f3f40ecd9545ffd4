//! Push notifications and PropagateBan across real servers on loopback, with a small HTTP
//! sink standing in for UnifiedPush distributors (and, serving a `/.well-known/hearth` of
//! its own, for a peer whose calls the test signs itself). The sink reads each push as the
//! subscribed device would: it decrypts the body (RFC 8291) with the subscription's key
//! and auth secret, which [`subscription`] gives every test (`push_encryption` checks the
//! same bodies with an implementation written elsewhere).

use crate::common::*;
use hearth::auth::server_key::ServerKey;
use hearth::client::{Client, Response};
use hearth::config::Config;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---- the sink ----

type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// An HTTP server on 127.0.0.1 that records the path and JSON body of every POST (pushes
/// decrypted; one that does not decrypt is recorded as the string `undecryptable`) and
/// answers 200; with an identity it also serves `/.well-known/hearth` and signs its answers
/// to server calls as a peer would.
struct Sink {
    addr: SocketAddr,
    received: Received,
    identity: Option<Value>,
    key: Option<[u8; 32]>,
    running: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl Sink {
    fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let mut sink = Sink {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            identity: None,
            key: None,
            running: None,
        };
        sink.run(listener);
        sink
    }

    /// A sink that is also a federation peer with `key`.
    fn peer(key: &ServerKey) -> Sink {
        let mut sink = Sink::start();
        sink.identity = Some(json!({
            "name": "sink",
            "version": "test",
            "server_key": key.public_key_b64u(),
            "origin": sink.origin(),
        }));
        sink.key = Some(key.to_bytes());
        // Restart so the serving thread has the identity.
        sink.down();
        sink.up();
        sink
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn run(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = self.received.clone();
        let identity = self.identity.clone();
        let key = self.key.map(|k| ServerKey::from_bytes(&k));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        serve_one(stream, &received, identity.as_ref(), key.as_ref())
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.running = Some((stop, thread));
    }

    /// Stops listening: connections are refused until [`Sink::up`].
    fn down(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            thread.join().unwrap();
        }
    }

    /// Listens again on the same address.
    fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).expect("rebind sink");
        self.run(listener);
    }

    /// Bodies POSTed to `path`.
    fn bodies(&self, path: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn total(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.down();
    }
}

fn serve_one(
    mut stream: TcpStream,
    received: &Received,
    identity: Option<&Value>,
    key: Option<&ServerKey>,
) {
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
    let mut lines = head.lines();
    let mut request = lines.next().unwrap_or("").split_whitespace();
    let method = request.next().unwrap_or("").to_string();
    let path = request.next().unwrap_or("").to_string();
    let length: usize = lines
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
    let body = &data[header_end..header_end + length];
    let (status, answer) = match (method.as_str(), identity) {
        ("GET", Some(identity)) if path == "/.well-known/hearth" => {
            ("200 OK", identity.to_string())
        }
        ("POST", _) => {
            let encrypted = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(name, value)| {
                    name.trim().eq_ignore_ascii_case("content-encoding")
                        && value.trim() == "aes128gcm"
                })
            });
            let plain = if encrypted {
                decrypt(body)
            } else {
                Some(body.to_vec())
            };
            let value = match plain {
                Some(plain) => serde_json::from_slice(&plain)
                    .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&plain).to_string())),
                None => Value::from("undecryptable"),
            };
            received.lock().unwrap().push((path, value));
            ("200 OK", "{}".to_string())
        }
        _ => ("404 Not Found", "{}".to_string()),
    };
    // A peer signs its answer to a server call for the call's jti.
    let call_jti = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("hearth-signature"))
        .and_then(|(_, v)| hearth::federation::signature::peek_jti(v.trim()).ok());
    let signature = match (key, identity, call_jti) {
        (Some(key), Some(identity), Some(jti)) => format!(
            "Hearth-Signature: {}\r\n",
            hearth::federation::signature::sign_answer(
                key,
                identity["origin"].as_str().unwrap_or(""),
                &jti,
                status[..3].parse().unwrap_or(200),
                answer.as_bytes(),
            )
        ),
        _ => String::new(),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{signature}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    );
}

// ---- servers ----

/// A federating server on a data directory that stays put across restarts, and its key.
struct Node {
    dir: tempfile::TempDir,
    server: TestServer,
    key: ServerKey,
    allow_loopback: bool,
}

impl Node {
    fn start() -> Node {
        Self::start_with(true)
    }

    fn start_with(allow_loopback: bool) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = federating(dir.path());
        config.federation.allow_loopback = allow_loopback;
        // Open the data directory once first, to learn the server key the test will use
        // to mint tokens as this server.
        let key = {
            let app = hearth::app::App::open(config.clone(), "http://127.0.0.1:1".into(), "http")
                .expect("open data");
            app.services.server_key.clone()
        };
        let server = TestServer::start_config(config, None);
        Node {
            dir,
            server,
            key,
            allow_loopback,
        }
    }

    fn config(&self) -> Config {
        let mut config = federating(self.dir.path());
        config.federation.allow_loopback = self.allow_loopback;
        config
    }

    fn restart(&mut self) {
        let address = self.server.addr.to_string();
        self.server.stop();
        self.server = TestServer::start_at(&address, self.config(), None);
    }

    /// Every outbox item, read from the data directory of the stopped server.
    fn outbox_when_stopped(&mut self) -> Vec<hearth::model::OutboxItem> {
        self.server.stop();
        let app = hearth::app::App::open(self.config(), self.server.origin.clone(), "http")
            .expect("open data");
        hearth::service::outbox::pending(&app.services).expect("read outbox")
    }
}

fn hearth_cli(server: &TestServer, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    all.push("--data".as_ref());
    all.push(server.data.as_os_str());
    run_hearth(&all, stdin)
}

fn peer_remove(server: &TestServer, url: &str) {
    let out = hearth_cli(server, &["peer", "remove", url], None);
    assert!(
        out.status.success(),
        "peer remove {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn admin(server: &TestServer, name: &str) -> Client {
    let password = "password-of-some-length";
    let out = hearth_cli(
        server,
        &["user", "add", name, "--password-stdin", "--admin"],
        Some(&format!("{password}\n")),
    );
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = Client::new();
    client
        .login_password(&server.origin, name, password)
        .await
        .expect("admin logs in");
    client
}

async fn ok_json(response: Result<Response, hearth::client::ClientError>) -> Value {
    let response = response.expect("request");
    let status = response.status;
    let text = String::from_utf8_lossy(&response.body).to_string();
    response
        .ok()
        .unwrap_or_else(|e| panic!("{status}: {text}: {e:?}"))
        .json()
        .unwrap_or(Value::Null)
}

async fn post(client: &Client, server: &TestServer, channel: &str, content: &str) -> Value {
    ok_json(
        client
            .post(
                &server.url(&format!("/api/v1/channels/{channel}/messages")),
                json!({ "content": content }),
            )
            .await,
    )
    .await
}

/// Subscribes the user's device (see [`subscription`]) at each of `urls`.
async fn set_distributors(client: &Client, server: &TestServer, urls: &[String]) {
    let subscriptions: Vec<Value> = urls.iter().map(|u| subscription(u)).collect();
    ok_json(
        client
            .patch(
                &server.url("/api/v1/users/@me"),
                json!({ "push_subscriptions": subscriptions }),
            )
            .await,
    )
    .await;
}

/// A server-to-server call signed by `key` as `from`.
async fn signed_call(
    key: &ServerKey,
    from: &str,
    to: &TestServer,
    call: &str,
    body: &Value,
) -> Response {
    let path = format!("/federation/v1/{call}");
    let bytes = body.to_string().into_bytes();
    let signature = hearth::federation::signature::sign(
        key,
        from,
        &to.origin,
        "POST",
        &path,
        &bytes,
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
            bytes,
        )
        .await
        .expect("signed call")
}

fn push_token(key: &ServerKey, claims: Value) -> String {
    let mut header = serde_json::Map::new();
    header.insert("typ".into(), Value::from("hearth-push+jwt"));
    key.sign_jws(header, &claims)
}

/// Waits a little and checks `path` got exactly `n` bodies.
async fn settles_at(sink: &Sink, path: &str, n: usize) {
    smol::Timer::after(Duration::from_millis(1500)).await;
    assert_eq!(sink.bodies(path).len(), n, "{:?}", sink.bodies(path));
}

// ---- tests ----

#[test]
fn mentions_reach_the_users_distributors_once_and_survive_a_distributor_outage() {
    let a = Node::start();
    let b = Node::start();
    let (a, b) = (&a.server, &b.server);
    let mut sink = Sink::start();
    block_on(async {
        peer_both(a, b);
        let alice = user(a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        set_distributors(&alice, a, &[sink.url("/up/alice")]).await;
        let bob = user(b, "bob").await;
        let on_b = guild_on(&bob, &b.origin, "Over the hill").await;
        ok_json(
            alice
                .post(&b.url(&format!("/api/v1/invites/{}", on_b.code)), json!({}))
                .await,
        )
        .await;
        // VerifyUser runs in the background: A issues B a push token for alice (listed to
        // her), and B keeps it in the commit that applies the answer, a moment later.
        let delegated = eventually(Duration::from_secs(15), async || {
            let list = ok_json(
                alice
                    .get(&a.url("/api/v1/users/@me/push-delegations"))
                    .await,
            )
            .await;
            list[0]["host"] == b.origin.as_str()
        })
        .await;
        assert!(delegated, "A never issued B a push token for alice");
        smol::Timer::after(Duration::from_millis(1000)).await;

        // A mention on B: B → A (PushNotification with the token) → A → the distributor.
        let message = post(
            &bob,
            b,
            &on_b.channel,
            &format!("hi <@{alice_id}>, dinner?"),
        )
        .await;
        let arrived = eventually(Duration::from_secs(15), async || {
            !sink.bodies("/up/alice").is_empty()
        })
        .await;
        assert!(arrived, "no notification reached the distributor");
        settles_at(&sink, "/up/alice", 1).await;
        let got = &sink.bodies("/up/alice")[0];
        assert_eq!(got["type"], "mention");
        assert_eq!(got["host"], b.origin.as_str());
        assert_eq!(got["user_id"], alice_id.as_str());
        assert_eq!(got["guild_id"], on_b.id.as_str());
        assert_eq!(got["channel_id"], on_b.channel.as_str());
        assert_eq!(got["message_id"], message["id"]);
        assert_eq!(
            got["title"],
            format!("Over the hill #{}", on_b.channel_name).as_str()
        );
        assert_eq!(got["body"], "bob: hi @alice, dinner?");
        // Messages that mention nobody push nothing.
        post(&bob, b, &on_b.channel, "nobody mentioned here").await;

        // A long message: the preview is cut to 200 characters, never more.
        let long = format!("<@{alice_id}> {}", "x".repeat(3000));
        post(&bob, b, &on_b.channel, &long).await;
        assert!(
            eventually(Duration::from_secs(15), async || {
                sink.bodies("/up/alice").len() == 2
            })
            .await
        );
        settles_at(&sink, "/up/alice", 2).await;
        let cut = sink.bodies("/up/alice")[1]["body"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(cut.chars().count(), 200, "{cut}");
        assert!(
            cut.starts_with("bob: @alice xxx") && cut.ends_with('…'),
            "{cut}"
        );

        // A channel alice may not view: mentioning her there pushes nothing.
        let hidden = ok_json(
            bob.post(
                &b.url(&format!("/api/v1/guilds/{}/channels", on_b.id)),
                json!({"name": "staff", "overwrites": [
                    {"target": {"role": on_b.id}, "allow": 0, "deny": 1}]}),
            )
            .await,
        )
        .await;
        post(
            &bob,
            b,
            hidden["id"].as_str().unwrap(),
            &format!("<@{alice_id}> secret"),
        )
        .await;

        // A local mention on A goes to alice's distributor directly.
        let dave = user(a, "dave").await;
        let on_a = guild_on(&dave, &a.origin, "Kitchen").await;
        ok_json(
            alice
                .post(&a.url(&format!("/api/v1/invites/{}", on_a.code)), json!({}))
                .await,
        )
        .await;
        post(
            &dave,
            a,
            &on_a.channel,
            &format!("<@{alice_id}> local hello"),
        )
        .await;
        assert!(
            eventually(Duration::from_secs(15), async || {
                sink.bodies("/up/alice").len() == 3
            })
            .await,
            "the local mention was not pushed: {:?}",
            sink.bodies("/up/alice")
        );
        settles_at(&sink, "/up/alice", 3).await;
        let local = &sink.bodies("/up/alice")[2];
        assert_eq!(local["host"], a.origin.as_str());
        assert_eq!(local["body"], "dave: @alice local hello");
        assert_eq!(
            local["title"],
            format!("Kitchen #{}", on_a.channel_name).as_str()
        );

        // The distributor is down for a while: the delivery is retried and arrives once
        // it is back, once.
        sink.down();
        post(
            &bob,
            b,
            &on_b.channel,
            &format!("<@{alice_id}> while you were out"),
        )
        .await;
        smol::Timer::after(Duration::from_millis(2500)).await;
        assert_eq!(sink.bodies("/up/alice").len(), 3);
        sink.up();
        assert!(
            eventually(Duration::from_secs(30), async || {
                sink.bodies("/up/alice").len() == 4
            })
            .await,
            "the delivery was not retried"
        );
        settles_at(&sink, "/up/alice", 4).await;
        assert_eq!(
            sink.bodies("/up/alice")[3]["body"],
            "bob: @alice while you were out"
        );
        assert_eq!(sink.total(), 4);
    });
}

#[test]
fn bad_push_tokens_are_refused_and_nothing_is_delivered() {
    let mut home = Node::start();
    let sink_key = ServerKey::generate();
    let peer = Sink::peer(&sink_key);
    let c = peer.origin();
    block_on(async {
        let a = &home.server;
        peer_add(a, &c);
        let alice = user(a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let dave = user(a, "dave").await;
        let dave_id = dave.user_id(&a.origin).unwrap();
        set_distributors(&alice, a, &[peer.url("/up/alice")]).await;
        set_distributors(&dave, a, &[peer.url("/up/dave")]).await;

        // The peer runs VerifyUser and gets a real token for alice, issued to it.
        let verified = signed_call(
            &sink_key,
            &c,
            a,
            "verify_user",
            &json!({"id": "1", "user_id": alice_id}),
        )
        .await;
        assert_eq!(verified.status, 200);
        let token = verified.json().unwrap()["push_token"]
            .as_str()
            .unwrap()
            .to_string();
        let notification = |id: u64, token: &str, user: &str| {
            json!({"id": id.to_string(), "token": token, "user_id": user,
                   "guild_id": "10", "channel_id": "11", "message_id": "12",
                   "title": "Guild #general", "body": "someone: hello"})
        };
        let push =
            async |body: Value| signed_call(&sink_key, &c, a, "push_notification", &body).await;

        // The real token works, once per call id.
        let good = push(notification(100, &token, &alice_id)).await;
        assert_eq!(good.status, 200, "{:?}", good.json());
        assert_eq!(good.json().unwrap()["queued"], 1);
        assert!(
            eventually(Duration::from_secs(10), async || {
                peer.bodies("/up/alice").len() == 1
            })
            .await
        );
        let again = push(notification(100, &token, &alice_id)).await;
        assert_eq!(again.json().unwrap()["duplicate"], true);
        let got = &peer.bodies("/up/alice")[0];
        assert_eq!(got["host"], c.as_str());
        assert_eq!(got["title"], "Guild #general");
        assert_eq!(got["body"], "someone: hello");

        let now = hearth::system::now();
        let claims = |aud: &str, sub: &str, exp: u64, jti: &str| {
            json!({"iss": a.origin, "aud": aud, "sub": sub, "scope": "push",
                   "iat": now - 10, "exp": exp, "jti": jti})
        };
        let refused = async |id: u64, token: String, user: &str, code: &str, words: &str| {
            let answer = push(notification(id, &token, user)).await;
            let body = answer.json().unwrap();
            assert_eq!(answer.status, 403, "{body}");
            assert_eq!(body["error"], code, "{body}");
            assert!(body["message"].as_str().unwrap().contains(words), "{body}");
        };
        // Forged: right claims, signed by another key.
        let forged = push_token(&sink_key, claims(&c, &alice_id, now + 3600, "f"));
        refused(
            101,
            forged,
            &alice_id,
            "invalid_push_token",
            "not issued by this server",
        )
        .await;
        // alice's real token used for dave.
        refused(
            102,
            token.clone(),
            &dave_id,
            "invalid_push_token",
            "another user",
        )
        .await;
        // A token A issued to another server, presented by this one.
        let elsewhere = push_token(
            &home.key,
            claims("http://127.0.0.1:9", &alice_id, now + 3600, "e"),
        );
        refused(
            103,
            elsewhere,
            &alice_id,
            "invalid_push_token",
            "issued to http://127.0.0.1:9",
        )
        .await;
        // Expired.
        let expired = push_token(&home.key, claims(&c, &alice_id, now - 1, "x"));
        refused(104, expired, &alice_id, "push_token_expired", "expired").await;
        // Signed by A's key but never issued (recorded) by A.
        let unrecorded = push_token(&home.key, claims(&c, &alice_id, now + 3600, "never"));
        refused(105, unrecorded, &alice_id, "push_token_revoked", "revoked").await;

        // alice revokes the delegation: the real token stops working.
        let listed = ok_json(
            alice
                .get(&a.url("/api/v1/users/@me/push-delegations"))
                .await,
        )
        .await;
        assert_eq!(
            listed,
            json!([{"host": c, "tokens": 1,
            "issued_at": listed[0]["issued_at"], "expires_at": listed[0]["expires_at"]}])
        );
        let revoke = a.url(&format!("/api/v1/users/@me/push-delegations?host={c}"));
        assert_eq!(alice.delete(&revoke).await.unwrap().status, 204);
        assert_eq!(alice.delete(&revoke).await.unwrap().status, 404);
        refused(
            106,
            token.clone(),
            &alice_id,
            "push_token_revoked",
            "revoked",
        )
        .await;
        let listed = ok_json(
            alice
                .get(&a.url("/api/v1/users/@me/push-delegations"))
                .await,
        )
        .await;
        assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed[0]["host"], c.as_str());
        assert!(listed[0]["revoked_at"].is_u64(), "{listed}");
        // The revocation sticks: the host's next VerifyUser gets no token.
        let verified = signed_call(
            &sink_key,
            &c,
            a,
            "verify_user",
            &json!({"id": "2", "user_id": alice_id}),
        )
        .await;
        assert_eq!(verified.status, 200);
        assert!(verified.json().unwrap().get("push_token").is_none());

        // alice allows the host again: it gets a new token at its next VerifyUser. Then the
        // administrator removes the peer: its tokens are revoked, and stay so when the peer
        // is added again.
        assert_eq!(alice.put(&revoke, None).await.unwrap().status, 204);
        assert_eq!(alice.put(&revoke, None).await.unwrap().status, 404);
        let verified = signed_call(
            &sink_key,
            &c,
            a,
            "verify_user",
            &json!({"id": "3", "user_id": alice_id}),
        )
        .await;
        let second = verified.json().unwrap()["push_token"]
            .as_str()
            .unwrap()
            .to_string();
        peer_remove(a, &c);
        let gone = push(notification(107, &second, &alice_id)).await;
        assert_eq!(gone.status, 401);
        assert_eq!(gone.error_code().as_deref(), Some("not_a_peer"));
        peer_add(a, &c);
        refused(108, second, &alice_id, "push_token_revoked", "revoked").await;

        // Nothing but the one good notification was delivered.
        settles_at(&peer, "/up/alice", 1).await;
        assert!(peer.bodies("/up/dave").is_empty());
    });
    let pending = home.outbox_when_stopped();
    assert!(pending.is_empty(), "{pending:?}");
}

#[test]
fn a_distributor_on_the_box_itself_is_never_contacted() {
    // Loopback is this box: a server that may not contact it (the default) must not
    // deliver there, and must not keep retrying either.
    let mut home = Node::start_with(false);
    let sink = Sink::start();
    block_on(async {
        let a = &home.server;
        let alice = user(a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        set_distributors(
            &alice,
            a,
            &[sink.url("/up/alice"), a.url("/api/v1/register")],
        )
        .await;
        let dave = user(a, "dave").await;
        let on_a = guild_on(&dave, &a.origin, "Kitchen").await;
        ok_json(
            alice
                .post(&a.url(&format!("/api/v1/invites/{}", on_a.code)), json!({}))
                .await,
        )
        .await;
        post(&dave, a, &on_a.channel, &format!("<@{alice_id}> hello")).await;
        smol::Timer::after(Duration::from_millis(2000)).await;
        assert_eq!(sink.total(), 0, "the SSRF guard let a delivery through");
    });
    // Both deliveries were attempted and ended (refused for good), not left to retry.
    let pending = home.outbox_when_stopped();
    assert!(pending.is_empty(), "{pending:?}");
}

#[test]
fn a_ban_on_b_reaches_as_administrators_once() {
    let mut a = Node::start();
    let mut b = Node::start();
    let (a_origin, b_origin) = (a.server.origin.clone(), b.server.origin.clone());
    block_on(async {
        peer_both(&a.server, &b.server);
        let root = admin(&a.server, "root").await;
        let alice = user(&a.server, "alice").await;
        let alice_id = alice.user_id(&a_origin).unwrap();
        let bob = user(&b.server, "bob").await;
        let bob_id = bob.user_id(&b_origin).unwrap();
        let on_b = guild_on(&bob, &b.server.origin, "Over the hill").await;
        ok_json(
            alice
                .post(
                    &b.server.url(&format!("/api/v1/invites/{}", on_b.code)),
                    json!({}),
                )
                .await,
        )
        .await;
        let list_url = a.server.url("/api/v1/admin/ban-notifications");

        // A is down when B bans alice, and B restarts with the call still queued.
        let a_address = a.server.addr.to_string();
        a.server.stop();
        ok_json(
            bob.put(
                &b.server
                    .url(&format!("/api/v1/guilds/{}/bans/{alice_id}", on_b.id)),
                Some(json!({"reason": "spam"})),
            )
            .await,
        )
        .await;
        smol::Timer::after(Duration::from_millis(300)).await;
        b.restart();
        a.server = TestServer::start_at(&a_address, a.config(), None);

        let arrived = eventually(Duration::from_secs(30), async || {
            let list = ok_json(root.get(&list_url).await).await;
            !list.as_array().unwrap().is_empty()
        })
        .await;
        assert!(arrived, "the ban notification never arrived");
        let list = ok_json(root.get(&list_url).await).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        let notice = &list[0];
        assert_eq!(notice["host"], b_origin.as_str());
        assert_eq!(notice["user_id"], alice_id.as_str());
        assert_eq!(notice["guild_id"], on_b.id.as_str());
        assert_eq!(notice["guild_name"], "Over the hill");
        assert_eq!(notice["reason"], "spam");

        // B's call delivered again (same id, freshly signed by B): recorded once.
        let again = json!({"id": notice["call_id"], "user_id": alice_id, "guild_id": on_b.id,
                           "guild_name": "Over the hill", "reason": "spam"});
        let answer = signed_call(&b.key, &b_origin, &a.server, "propagate_ban", &again).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json().unwrap()["duplicate"], true);
        let list = ok_json(root.get(&list_url).await).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        let filtered = ok_json(root.get(&format!("{list_url}?user_id={alice_id}")).await).await;
        assert_eq!(filtered.as_array().unwrap().len(), 1);
        let filtered = ok_json(root.get(&format!("{list_url}?user_id={bob_id}")).await).await;
        assert_eq!(filtered, json!([]));

        // A user who is not homed at A: 404.
        let stranger = json!({"id": "77", "user_id": bob_id, "guild_id": on_b.id,
                              "guild_name": "x", "reason": ""});
        let answer = signed_call(&b.key, &b_origin, &a.server, "propagate_ban", &stranger).await;
        assert_eq!(answer.status, 404);

        // Only administrators see the list.
        let denied = alice.get(&list_url).await.unwrap();
        assert_eq!(denied.status, 403);
        assert_eq!(denied.error_code().as_deref(), Some("forbidden"));
    });
}

#[test]
fn a_distributor_the_administrator_named_on_the_box_is_reached() {
    // ntfy running on the Pi itself: named in `local_push_distributors`, it is reached
    // although the box is otherwise off limits; other URLs on the box still are not.
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = federating(dir.path());
    config.federation.allow_loopback = false;
    config.federation.local_push_distributors = vec![sink.url("/up/")];
    let a = TestServer::start_config(config, Some(dir));
    block_on(async {
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        set_distributors(&alice, &a, &[sink.url("/up/alice"), sink.url("/elsewhere")]).await;
        let dave = user(&a, "dave").await;
        let on_a = guild_on(&dave, &a.origin, "Kitchen").await;
        ok_json(
            alice
                .post(&a.url(&format!("/api/v1/invites/{}", on_a.code)), json!({}))
                .await,
        )
        .await;
        post(&dave, &a, &on_a.channel, &format!("<@{alice_id}> dinner")).await;
        settles_at(&sink, "/up/alice", 1).await;
        smol::Timer::after(Duration::from_millis(500)).await;
        assert_eq!(sink.total(), 1, "only the named distributor may be reached");
    });
}
