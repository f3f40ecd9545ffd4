//! Bad input gets a clear 4xx in the shape `{"error": code, "message": text}`, never a
//! 5xx, and nothing stored is lost; random bodies never make the server fail.

use crate::common::*;
use hearth::client::{Client, Response};
use serde_json::{json, Value};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// One bad request and the answer it must get.
struct Case {
    name: String,
    method: &'static str,
    /// Path under `/api/v1` (or `~/` for the root) with `{g}`, `{c}`, `{m}`, `{vc}` for
    /// the guild, (text) channel, first message and voice channel.
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// Sent with the client's access token and a DPoP proof.
    auth: bool,
    status: u16,
    /// The `error` code, when it is part of the contract.
    code: Option<&'static str>,
}

fn case(name: &str, method: &'static str, path: &str) -> Case {
    Case {
        name: name.to_string(),
        method,
        path: path.to_string(),
        content_type: None,
        body: Vec::new(),
        auth: true,
        status: 400,
        code: None,
    }
}

impl Case {
    fn json(mut self, body: Value) -> Case {
        self.content_type = Some(JSON);
        self.body = body.to_string().into_bytes();
        self
    }

    fn raw(mut self, content_type: Option<&'static str>, body: impl Into<Vec<u8>>) -> Case {
        self.content_type = content_type;
        self.body = body.into();
        self
    }

    fn no_auth(mut self) -> Case {
        self.auth = false;
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Case {
        self.status = status;
        self.code = Some(code);
        self
    }

    fn status(mut self, status: u16) -> Case {
        self.status = status;
        self
    }
}

struct Place {
    guild: String,
    channel: String,
    message: String,
    voice: String,
}

impl Place {
    /// The full path: `~/x` is `/x`, any other path is under `/api/v1`.
    fn fill(&self, path: &str) -> String {
        let path = path
            .replace("{g}", &self.guild)
            .replace("{c}", &self.channel)
            .replace("{m}", &self.message)
            .replace("{vc}", &self.voice);
        match path.strip_prefix('~') {
            Some(outside) => outside.to_string(),
            None => format!("/api/v1{path}"),
        }
    }
}

async fn send(client: &Client, server: &TestServer, place: &Place, c: &Case) -> Response {
    let path = place.fill(&c.path);
    client
        .send_bytes(
            &server.url(&path),
            c.method,
            c.content_type,
            c.body.clone(),
            c.auth,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: no answer: {e}", c.name))
}

/// The error shape: a JSON object with a string `error` (the expected code, if given)
/// and a non-empty string `message`.
fn check_error(name: &str, r: &Response, status: u16, code: Option<&str>) -> Result<(), String> {
    let body = String::from_utf8_lossy(&r.body);
    if r.status != status {
        return Err(format!(
            "{name}: status {} instead of {status}: {body}",
            r.status
        ));
    }
    let is_json = r
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("application/json"));
    let json = r.json().ok().filter(|_| is_json).ok_or_else(|| {
        format!(
            "{name}: not a JSON answer ({:?}): {body}",
            r.header("Content-Type")
        )
    })?;
    let error = json["error"].as_str();
    let message = json["message"].as_str().unwrap_or("");
    if error.is_none() || message.is_empty() {
        return Err(format!("{name}: not {{error, message}}: {json}"));
    }
    if let Some(code) = code {
        if error != Some(code) {
            return Err(format!(
                "{name}: error {error:?} instead of {code:?}: {json}"
            ));
        }
    }
    Ok(())
}

async fn ok_json(client: &Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let r = client
        .send(url, method, body, true)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    assert!(
        (200..300).contains(&r.status),
        "{method} {url}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    r.json().unwrap_or(Value::Null)
}

struct World {
    server: TestServer,
    alice: Client,
    place: Place,
    /// Messages posted before the bad input: (id, content).
    posted: Vec<(String, String)>,
}

async fn world(server: TestServer) -> World {
    let alice = user(&server, "alice").await;
    let guild = ok_json(
        &alice,
        "POST",
        &server.url("/api/v1/guilds"),
        Some(json!({"name": "Home", "description": "the house"})),
    )
    .await;
    let guild_id = guild["id"].as_str().expect("guild id").to_string();
    let channel = guild["channels"][0]["id"]
        .as_str()
        .expect("a first channel")
        .to_string();
    let voice = ok_json(
        &alice,
        "POST",
        &server.url(&format!("/api/v1/guilds/{guild_id}/channels")),
        Some(json!({"name": "Lounge", "kind": "voice"})),
    )
    .await["id"]
        .as_str()
        .expect("a voice channel")
        .to_string();
    let mut posted = Vec::new();
    for text in ["first", "second: ünïcödé ✓", "third\nwith a newline"] {
        let m = ok_json(
            &alice,
            "POST",
            &server.url(&format!("/api/v1/channels/{channel}/messages")),
            Some(json!({ "content": text })),
        )
        .await;
        posted.push((m["id"].as_str().expect("id").to_string(), text.to_string()));
    }
    let place = Place {
        guild: guild_id,
        channel,
        message: posted[0].0.clone(),
        voice,
    };
    World {
        server,
        alice,
        place,
        posted,
    }
}

/// What must still be true after the bad input: every message posted is there with its
/// text, the profile and the guild are as they were, and the server answers.
async fn assert_intact(w: &World) {
    let s = &w.server;
    let c = &w.place.channel;
    let list = ok_json(
        &w.alice,
        "GET",
        &s.url(&format!("/api/v1/channels/{c}/messages?limit=100")),
        None,
    )
    .await;
    let list = list.as_array().expect("message list");
    for (id, text) in &w.posted {
        let found = list.iter().find(|m| m["id"] == id.as_str());
        let found = found.unwrap_or_else(|| panic!("message {id} ({text:?}) is gone"));
        assert_eq!(found["content"], text.as_str(), "message {id} changed");
        let one = ok_json(
            &w.alice,
            "GET",
            &s.url(&format!("/api/v1/channels/{c}/messages/{id}")),
            None,
        )
        .await;
        assert_eq!(one["content"], text.as_str());
        assert!(one["edited_at"].is_null(), "message {id} was edited: {one}");
    }
    let me = ok_json(&w.alice, "GET", &s.url("/api/v1/users/@me"), None).await;
    assert_eq!(me["name"], "alice", "{me}");
    assert_eq!(me["is_admin"], false, "{me}");
    assert_eq!(me["push_subscriptions"], json!([]), "{me}");
    let guild = ok_json(
        &w.alice,
        "GET",
        &s.url(&format!("/api/v1/guilds/{}", w.place.guild)),
        None,
    )
    .await;
    assert_eq!(guild["name"], "Home", "{guild}");
    assert_eq!(guild["description"], "the house", "{guild}");
    let r = w
        .alice
        .send(&s.url("/.well-known/hearth"), "GET", None, false)
        .await
        .expect("the server still answers");
    assert_eq!(r.status, 200);
}

fn long(c: char, n: usize) -> String {
    std::iter::repeat_n(c, n).collect()
}

fn cases(w: &World) -> Vec<Case> {
    let alice_id = w.alice.user_id(&w.server.origin).expect("user id");
    let unknown_user = "A".repeat(43);
    let file_ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("{i:064x}")).collect() };
    let subscriptions = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| push_subscription(&format!("https://push.example/{i}")))
            .collect()
    };
    let overwrites = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|_| json!({"target": {"member": alice_id}, "allow": 0, "deny": 0}))
            .collect()
    };
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let big = |field: &str| {
        json!({ field: long('a', 70 * 1024) })
            .to_string()
            .into_bytes()
    };
    let role_mentions: String = (1..=51).map(|i| format!("<@&{i}> ")).collect();

    vec![
        // Malformed JSON.
        case("truncated JSON", "POST", "/channels/{c}/messages")
            .raw(Some(JSON), r#"{"content": "hi""#)
            .expect(400, "invalid_json"),
        case("empty body", "POST", "/channels/{c}/messages")
            .raw(Some(JSON), "")
            .expect(400, "invalid_json"),
        case("null body", "POST", "/channels/{c}/messages")
            .raw(Some(JSON), "null")
            .expect(400, "invalid_json"),
        case("array body", "POST", "/guilds")
            .raw(Some(JSON), "[]")
            .expect(400, "invalid_json"),
        case("trailing garbage", "POST", "/guilds")
            .raw(Some(JSON), r#"{"name": "x"} and more"#)
            .expect(400, "invalid_json"),
        case(
            "invalid UTF-8 in a string",
            "POST",
            "/channels/{c}/messages",
        )
        .raw(Some(JSON), b"{\"content\": \"\xff\xfe\"}".to_vec())
        .expect(400, "invalid_json"),
        case("deeply nested JSON", "POST", "/channels/{c}/messages")
            .raw(
                Some(JSON),
                format!(r#"{{"content": "x", "reply_to": {nested}}}"#),
            )
            .status(413),
        case("nested JSON under the limit", "PATCH", "/users/@me")
            .raw(
                Some(JSON),
                format!(
                    r#"{{"guild_order": {}{}}}"#,
                    "[".repeat(20_000),
                    "]".repeat(20_000)
                ),
            )
            .expect(400, "invalid_json"),
        case("JSON in a form body", "PATCH", "/users/@me")
            .raw(Some(FORM), "name=mallory")
            .expect(400, "invalid_json"),
        case("registration, truncated", "POST", "/register")
            .raw(Some(JSON), "{")
            .no_auth()
            .expect(400, "invalid_json"),
        // Wrong types.
        case("content is a number", "POST", "/channels/{c}/messages")
            .json(json!({"content": 5}))
            .expect(400, "invalid_json"),
        case("attachments is a string", "POST", "/channels/{c}/messages")
            .json(json!({"content": "x", "attachments": "file"}))
            .expect(400, "invalid_json"),
        case("reply_to is a boolean", "POST", "/channels/{c}/messages")
            .json(json!({"content": "x", "reply_to": true}))
            .expect(400, "invalid_json"),
        case("reply_to is not an id", "POST", "/channels/{c}/messages")
            .json(json!({"content": "x", "reply_to": "abc"}))
            .expect(400, "invalid_json"),
        case("guild name is an array", "POST", "/guilds")
            .json(json!({"name": ["x"]}))
            .expect(400, "invalid_json"),
        case("unknown presence", "PATCH", "/users/@me")
            .json(json!({"presence": "invisible-ish"}))
            .expect(400, "invalid_json"),
        case("guild_order of words", "PATCH", "/users/@me")
            .json(json!({"guild_order": ["one", "two"]}))
            .expect(400, "invalid_json"),
        case("unknown channel kind", "POST", "/guilds/{g}/channels")
            .json(json!({"name": "x", "kind": "banana"}))
            .expect(400, "invalid_json"),
        case("position beyond i32", "POST", "/guilds/{g}/channels")
            .json(json!({"name": "x", "position": 99_999_999_999u64}))
            .expect(400, "invalid_json"),
        case("negative permissions", "POST", "/guilds/{g}/roles")
            .json(json!({"name": "x", "permissions": -1}))
            .expect(400, "invalid_json"),
        case("overwrite target of another kind", "PATCH", "/channels/{c}")
            .json(json!({"overwrites": [{"target": {"robot": "1"}, "allow": 0, "deny": 0}]}))
            .expect(400, "invalid_json"),
        case("nick is null", "PATCH", "/guilds/{g}/members/@me")
            .json(json!({"nick": null}))
            .expect(400, "invalid_json"),
        // Unknown fields.
        case("unknown message field", "POST", "/channels/{c}/messages")
            .json(json!({"content": "x", "embed": {}}))
            .expect(400, "invalid_json"),
        case("unknown guild field", "POST", "/guilds")
            .json(json!({"name": "x", "owner_id": "me"}))
            .expect(400, "invalid_json"),
        case("making oneself admin", "PATCH", "/users/@me")
            .json(json!({"is_admin": true}))
            .expect(400, "invalid_json"),
        case(
            "moving a channel to another guild",
            "PATCH",
            "/channels/{c}",
        )
        .json(json!({"guild_id": "1"}))
        .expect(400, "invalid_json"),
        case("unknown edit field", "PATCH", "/channels/{c}/messages/{m}")
            .json(json!({"content": "x", "author_id": "1"}))
            .expect(400, "invalid_json"),
        case("unknown registration field", "POST", "/register")
            .json(
                json!({"username": "x", "password": "12345678", "identity_key": "x",
                         "device_certificate": "x", "admin": true}),
            )
            .no_auth()
            .expect(400, "invalid_json"),
        // Unknown ids, numeric and garbage.
        case("unknown channel", "GET", "/channels/1/messages").expect(404, "unknown_channel"),
        case(
            "largest id",
            "GET",
            "/channels/18446744073709551615/messages",
        )
        .expect(404, "unknown_channel"),
        case(
            "id past u64",
            "GET",
            "/channels/18446744073709551616/messages",
        )
        .expect(404, "unknown_channel"),
        case("garbage channel id", "GET", "/channels/abc/messages").expect(404, "unknown_channel"),
        case("negative channel id", "GET", "/channels/-1").expect(404, "unknown_channel"),
        case("percent-encoded channel id", "GET", "/channels/%31%32").status(404),
        case("unknown message", "GET", "/channels/{c}/messages/1").expect(404, "unknown_message"),
        case("garbage message id", "DELETE", "/channels/{c}/messages/x1")
            .expect(404, "unknown_message"),
        case("unknown guild", "GET", "/guilds/1").expect(404, "unknown_guild"),
        case("garbage guild id", "DELETE", "/guilds/%00").status(404),
        case(
            "largest guild id, members",
            "GET",
            "/guilds/18446744073709551615/members",
        )
        .expect(404, "unknown_guild"),
        case("unknown role", "PATCH", "/guilds/{g}/roles/123")
            .json(json!({"name": "x"}))
            .expect(404, "unknown_role"),
        case("garbage role id", "PUT", "/guilds/{g}/members/@me/roles/r1")
            .expect(404, "unknown_role"),
        case("garbage user id", "GET", "/users/not-a-user").expect(404, "unknown_user"),
        case("unknown user", "GET", &format!("/users/{unknown_user}")).expect(404, "unknown_user"),
        case(
            "unknown member",
            "GET",
            &format!("/guilds/{{g}}/members/{unknown_user}"),
        )
        .status(404),
        case(
            "reply to an unknown message",
            "POST",
            "/channels/{c}/messages",
        )
        .json(json!({"content": "x", "reply_to": "1"}))
        .expect(400, "invalid_reply"),
        case("unknown invite", "POST", "/invites/nope").status(404),
        case("unknown invite preview", "GET", "/invites/nope")
            .no_auth()
            .status(404),
        case("unknown device", "DELETE", "/users/@me/devices/nope").expect(404, "unknown_device"),
        // The box's setup, its settings and accounts (tests/it/setup.rs has the rest).
        case("setup: not JSON", "POST", "/setup")
            .raw(Some(JSON), "{")
            .no_auth()
            .expect(400, "invalid_json"),
        case("setup: off on this box", "POST", "/setup")
            .json(json!({"name": "x", "registration": "open", "owner": {
                "username": "x", "password": "password-x", "identity_key": "x",
                "device_certificate": "x"}}))
            .no_auth()
            .expect(403, "setup_disabled"),
        case("setup: unknown mode", "POST", "/setup")
            .json(json!({"name": "x", "registration": "sometimes", "owner": {}}))
            .no_auth()
            .expect(400, "invalid_json"),
        case("reset link: unknown", "GET", "/password-resets/nope")
            .no_auth()
            .expect(404, "unknown_reset_link"),
        case("reset link: short password", "POST", "/password-resets/nope")
            .json(json!({"password": "short"}))
            .no_auth()
            .expect(400, "invalid_password"),
        case("box icon: none", "GET", "/box/icon")
            .no_auth()
            .expect(404, "unknown_icon"),
        case("admin users: not an administrator", "GET", "/admin/users?limit=x")
            .expect(403, "forbidden"),
        case("admin settings: not an administrator", "PATCH", "/admin/settings")
            .json(json!({"icon": "data:image/svg+xml;base64,PHN2Zz4="}))
            .expect(403, "forbidden"),
        // Bodies over 64 KiB.
        case("oversize message body", "POST", "/channels/{c}/messages")
            .raw(Some(JSON), big("content"))
            .expect(413, "body_too_large"),
        case("oversize profile body", "PATCH", "/users/@me")
            .raw(Some(JSON), big("bio"))
            .expect(413, "body_too_large"),
        case("oversize registration", "POST", "/register")
            .raw(Some(JSON), big("username"))
            .no_auth()
            .expect(413, "body_too_large"),
        case("oversize token request", "POST", "~/oauth/token")
            .raw(
                Some(FORM),
                format!("grant_type=password&x={}", long('a', 70 * 1024)),
            )
            .no_auth()
            .expect(413, "body_too_large"),
        case("oversize revocation", "POST", "~/oauth/revoke")
            .raw(Some(FORM), format!("token={}", long('a', 70 * 1024)))
            .no_auth()
            .expect(413, "body_too_large"),
        // Strings over their limits.
        case(
            "message of 4001 characters",
            "POST",
            "/channels/{c}/messages",
        )
        .json(json!({"content": long('x', 4001)}))
        .expect(400, "too_long"),
        case(
            "message of 4001 two-byte characters",
            "POST",
            "/channels/{c}/messages",
        )
        .json(json!({"content": long('é', 4001)}))
        .expect(400, "too_long"),
        case(
            "edit to 4001 characters",
            "PATCH",
            "/channels/{c}/messages/{m}",
        )
        .json(json!({"content": long('x', 4001)}))
        .expect(400, "too_long"),
        case("guild name of 101", "POST", "/guilds")
            .json(json!({"name": long('g', 101)}))
            .expect(400, "too_long"),
        case("guild rename to 101", "PATCH", "/guilds/{g}")
            .json(json!({"name": long('g', 101)}))
            .expect(400, "too_long"),
        case("guild description of 1001", "PATCH", "/guilds/{g}")
            .json(json!({"description": long('d', 1001)}))
            .expect(400, "too_long"),
        case("display name of 101", "PATCH", "/users/@me")
            .json(json!({"name": long('n', 101)}))
            .expect(400, "too_long"),
        case("channel name of 101", "POST", "/guilds/{g}/channels")
            .json(json!({"name": long('c', 101)}))
            .expect(400, "too_long"),
        case("channel topic of 1001", "PATCH", "/channels/{c}")
            .json(json!({"topic": long('t', 1001)}))
            .expect(400, "too_long"),
        case("role name of 101", "POST", "/guilds/{g}/roles")
            .json(json!({"name": long('r', 101)}))
            .expect(400, "too_long"),
        case("empty display name", "PATCH", "/users/@me")
            .json(json!({"name": "   "}))
            .expect(400, "invalid_field"),
        case("control characters in a name", "PATCH", "/users/@me")
            .json(json!({"name": "a\u{7}b"}))
            .expect(400, "invalid_field"),
        case("avatar_url that is not http", "PATCH", "/users/@me")
            .json(json!({"avatar_url": "javascript:alert(1)"}))
            .expect(400, "invalid_url"),
        case("avatar_color that is not a colour", "PATCH", "/users/@me")
            .json(json!({"avatar_color": "red"}))
            .expect(400, "invalid_color"),
        // Too many items.
        case("11 attachments", "POST", "/channels/{c}/messages")
            .json(json!({"content": "x", "attachments": file_ids(11)}))
            .expect(400, "too_many_items"),
        case("a push subscription's key off the curve", "PATCH", "/users/@me")
            .json(json!({"push_subscriptions": [{"endpoint": "https://push.example/0",
                "keys": {"p256dh": format!("BA{}", "A".repeat(85)), "auth": "BTBZMqHH6r4Tts7J_aSIgg"}}]}))
            .expect(400, "invalid_push_subscription"),
        case("a push subscription's auth of 3 bytes", "PATCH", "/users/@me")
            .json(json!({"push_subscriptions": [{"endpoint": "https://push.example/0",
                "keys": {"p256dh": push_subscription("x")["keys"]["p256dh"], "auth": "AAAA"}}]}))
            .expect(400, "invalid_push_subscription"),
        case("11 push subscriptions", "PATCH", "/users/@me")
            .json(json!({"push_subscriptions": subscriptions(11)}))
            .expect(400, "too_many_items"),
        case("11 FCM tokens", "PATCH", "/users/@me")
            .json(json!({"fcm_tokens": file_ids(11)}))
            .expect(400, "too_many_items"),
        case("101 overwrites on a channel", "PATCH", "/channels/{c}")
            .json(json!({"overwrites": overwrites(101)}))
            .expect(400, "too_many_items"),
        case(
            "101 overwrites on a new channel",
            "POST",
            "/guilds/{g}/channels",
        )
        .json(json!({"name": "crowded", "overwrites": overwrites(101)}))
        .expect(400, "too_many_items"),
        case("51 mentions", "POST", "/channels/{c}/messages")
            .json(json!({ "content": role_mentions }))
            .expect(400, "too_many_items"),
        // Empty messages.
        case("empty content", "POST", "/channels/{c}/messages")
            .json(json!({"content": ""}))
            .expect(400, "empty_message"),
        case("blank content", "POST", "/channels/{c}/messages")
            .json(json!({"content": " \n\t "}))
            .expect(400, "empty_message"),
        case("no content at all", "POST", "/channels/{c}/messages")
            .json(json!({}))
            .expect(400, "empty_message"),
        case("edit to empty", "PATCH", "/channels/{c}/messages/{m}")
            .json(json!({"content": ""}))
            .expect(400, "empty_message"),
        // Bad emoji.
        case(
            "emoji of 65 bytes",
            "PUT",
            &format!("/channels/{{c}}/messages/{{m}}/reactions/{}", long('e', 65)),
        )
        .expect(400, "invalid_emoji"),
        case(
            "emoji with a space",
            "PUT",
            "/channels/{c}/messages/{m}/reactions/a%20b",
        )
        .expect(400, "invalid_emoji"),
        case(
            "emoji with a newline",
            "PUT",
            "/channels/{c}/messages/{m}/reactions/%0A",
        )
        .expect(400, "invalid_emoji"),
        case(
            "emoji of invalid UTF-8",
            "PUT",
            "/channels/{c}/messages/{m}/reactions/%FF",
        )
        .expect(400, "invalid_path"),
        case(
            "removing a bad emoji",
            "DELETE",
            &format!("/channels/{{c}}/messages/{{m}}/reactions/{}", long('e', 65)),
        )
        .expect(400, "invalid_emoji"),
        // Bad file ids.
        case(
            "file id that is not hex",
            "GET",
            "/channels/{c}/files/not-hex",
        )
        .expect(404, "unknown_file"),
        case(
            "file id with a path",
            "GET",
            "/channels/{c}/files/..%2F..%2Fhearth.redb",
        )
        .status(404),
        case(
            "file id never uploaded",
            "GET",
            &format!("/channels/{{c}}/files/{}", "0".repeat(64)),
        )
        .expect(404, "unknown_file"),
        case("attachment of a path", "POST", "/channels/{c}/messages")
            .json(json!({"content": "x", "attachments": ["../../hearth.redb"]}))
            .expect(400, "invalid_attachment"),
        case(
            "attachment never uploaded",
            "POST",
            "/channels/{c}/messages",
        )
        .json(json!({"content": "x", "attachments": file_ids(1)}))
        .expect(400, "invalid_attachment"),
        case(
            "upload with a slash in its name",
            "POST",
            "/channels/{c}/files?filename=a%2Fb",
        )
        .raw(Some("text/plain"), "hello")
        .expect(400, "invalid_field"),
        case("empty upload", "POST", "/channels/{c}/files?filename=a.txt")
            .raw(Some("text/plain"), "")
            .expect(400, "empty_file"),
        // Queries.
        case("limit 0", "GET", "/channels/{c}/messages?limit=0").expect(400, "invalid_query"),
        case("limit 101", "GET", "/channels/{c}/messages?limit=101").expect(400, "invalid_query"),
        case(
            "limit of letters",
            "GET",
            "/channels/{c}/messages?limit=ten",
        )
        .expect(400, "invalid_query"),
        case(
            "before of letters",
            "GET",
            "/channels/{c}/messages?before=yesterday",
        )
        .expect(400, "invalid_query"),
        case(
            "members after garbage",
            "GET",
            "/guilds/{g}/members?after=zzz",
        )
        .expect(400, "invalid_query"),
        case(
            "members limit negative",
            "GET",
            "/guilds/{g}/members?limit=-1",
        )
        .expect(400, "invalid_query"),
        // Unknown routes and methods.
        case("unknown API route", "GET", "/nothing-here").expect(404, "not_found"),
        case("unknown route", "GET", "~/nothing-here")
            .no_auth()
            .expect(404, "not_found"),
        case("unknown sub-route", "POST", "/users/@me/nothing")
            .json(json!({}))
            .expect(404, "not_found"),
        case("DELETE on a list", "DELETE", "/users/@me/guilds").expect(405, "method_not_allowed"),
        case("PUT on guilds", "PUT", "/guilds")
            .json(json!({"name": "x"}))
            .expect(405, "method_not_allowed"),
        case("GET on the token endpoint", "GET", "~/oauth/token")
            .no_auth()
            .expect(405, "method_not_allowed"),
        case("PATCH on discovery", "PATCH", "~/.well-known/hearth")
            .no_auth()
            .expect(405, "method_not_allowed"),
        // Voice. Alice owns the guild and is not connected to voice.
        case(
            "voice ticket for a text channel",
            "POST",
            "/channels/{c}/voice",
        )
        .json(json!({}))
        .expect(400, "not_voice"),
        case("voice list of a text channel", "GET", "/channels/{c}/voice").expect(400, "not_voice"),
        case("voice ticket, unknown channel", "POST", "/channels/1/voice")
            .json(json!({}))
            .expect(404, "unknown_channel"),
        case(
            "voice ticket, garbage channel id",
            "POST",
            "/channels/abc/voice",
        )
        .json(json!({}))
        .expect(404, "unknown_channel"),
        case(
            "voice ticket, id past u64",
            "POST",
            "/channels/18446744073709551616/voice",
        )
        .json(json!({}))
        .expect(404, "unknown_channel"),
        case(
            "voice list, negative channel id",
            "GET",
            "/channels/-1/voice",
        )
        .expect(404, "unknown_channel"),
        case(
            "voice list, largest id",
            "GET",
            "/channels/18446744073709551615/voice",
        )
        .expect(404, "unknown_channel"),
        case("guild voice, unknown guild", "GET", "/guilds/1/voice").expect(404, "unknown_guild"),
        case("guild voice, garbage guild id", "GET", "/guilds/g1/voice")
            .expect(404, "unknown_guild"),
        case(
            "voice moderation, unknown guild",
            "PATCH",
            "/guilds/1/voice/@me",
        )
        .json(json!({"mute": true}))
        .expect(404, "unknown_guild"),
        case(
            "voice moderation, garbage guild id",
            "PATCH",
            "/guilds/%00/voice/@me",
        )
        .json(json!({"mute": true}))
        .status(404),
        case(
            "voice moderation, garbage user id",
            "PATCH",
            "/guilds/{g}/voice/not-a-user",
        )
        .json(json!({"mute": true}))
        .expect(404, "unknown_user"),
        case(
            "voice moderation, not a member",
            "PATCH",
            &format!("/guilds/{{g}}/voice/{unknown_user}"),
        )
        .json(json!({"mute": true}))
        .status(404),
        case(
            "moving someone not in voice",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"channel_id": w.place.voice}))
        .expect(404, "not_in_voice"),
        case(
            "disconnecting someone not in voice",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"channel_id": null}))
        .expect(404, "not_in_voice"),
        case(
            "voice moderation, no fields",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({}))
        .expect(400, "invalid_body"),
        case(
            "voice moderation, only nulls",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"mute": null, "deaf": null}))
        .expect(400, "invalid_body"),
        case("mute is a string", "PATCH", "/guilds/{g}/voice/@me")
            .json(json!({"mute": "yes"}))
            .expect(400, "invalid_json"),
        case("deaf is a number", "PATCH", "/guilds/{g}/voice/@me")
            .json(json!({"deaf": 1}))
            .expect(400, "invalid_json"),
        case(
            "voice channel_id is a boolean",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"channel_id": true}))
        .expect(400, "invalid_json"),
        case(
            "voice channel_id is not an id",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"channel_id": "lounge"}))
        .expect(400, "invalid_json"),
        case(
            "voice channel_id past u64",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"channel_id": "18446744073709551616"}))
        .expect(400, "invalid_json"),
        case(
            "voice channel_id is negative",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"channel_id": -1}))
        .expect(400, "invalid_json"),
        case(
            "voice channel_id is a list",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"channel_id": [w.place.voice]}))
        .expect(400, "invalid_json"),
        case("unknown moderation field", "PATCH", "/guilds/{g}/voice/@me")
            .json(json!({"mute": true, "suppress": true}))
            .expect(400, "invalid_json"),
        case(
            "own state through moderation",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .json(json!({"self_mute": true}))
        .expect(400, "invalid_json"),
        case("duplicate mute", "PATCH", "/guilds/{g}/voice/@me")
            .raw(Some(JSON), r#"{"mute": true, "mute": false}"#)
            .expect(400, "invalid_json"),
        case(
            "voice moderation, truncated JSON",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .raw(Some(JSON), r#"{"mute": tru"#)
        .expect(400, "invalid_json"),
        case(
            "voice moderation, empty body",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .raw(Some(JSON), "")
        .expect(400, "invalid_json"),
        case(
            "voice moderation, null body",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .raw(Some(JSON), "null")
        .expect(400, "invalid_json"),
        case(
            "voice moderation, array body",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .raw(Some(JSON), r#"[{"mute": true}]"#)
        .expect(400, "invalid_json"),
        case(
            "voice moderation, form body",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .raw(Some(FORM), "mute=true")
        .expect(400, "invalid_json"),
        case(
            "voice moderation, text body",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .raw(Some("text/plain"), "mute")
        .expect(400, "invalid_json"),
        case(
            "oversize voice moderation",
            "PATCH",
            "/guilds/{g}/voice/@me",
        )
        .raw(Some(JSON), big("channel_id"))
        .expect(413, "body_too_large"),
        // The voice socket: websocket only.
        case("voice socket without upgrade", "GET", "/voice")
            .no_auth()
            .expect(426, "upgrade_required"),
        case(
            "voice socket with a ticket, without upgrade",
            "GET",
            "/voice?ticket=nope",
        )
        .no_auth()
        .expect(426, "upgrade_required"),
        case("voice socket, signed in, without upgrade", "GET", "/voice")
            .expect(426, "upgrade_required"),
        case("POST on the voice socket", "POST", "/voice")
            .json(json!({}))
            .expect(405, "method_not_allowed"),
        case(
            "DELETE on a voice channel's voice",
            "DELETE",
            "/channels/{vc}/voice",
        )
        .expect(405, "method_not_allowed"),
        case("POST on a guild's voice", "POST", "/guilds/{g}/voice")
            .json(json!({}))
            .expect(405, "method_not_allowed"),
        // The token endpoint takes forms only.
        case("JSON token request", "POST", "~/oauth/token")
            .json(json!({"grant_type": "password", "username": "alice", "password": "x"}))
            .no_auth()
            .expect(400, "invalid_request"),
        case("token request without a type", "POST", "~/oauth/token")
            .raw(None, "grant_type=password&username=alice&password=x")
            .no_auth()
            .expect(400, "invalid_request"),
        case("text token request", "POST", "~/oauth/token")
            .raw(Some("text/plain"), "grant_type=password")
            .no_auth()
            .expect(400, "invalid_request"),
    ]
}

#[test]
fn bad_input_gets_a_clear_4xx_and_nothing_is_lost() {
    let server = TestServer::start();
    block_on(async {
        let w = world(server).await;
        let mut failures = Vec::new();
        for c in cases(&w) {
            let r = send(&w.alice, &w.server, &w.place, &c).await;
            if let Err(e) = check_error(&c.name, &r, c.status, c.code) {
                failures.push(e);
            }
        }
        assert!(
            failures.is_empty(),
            "{} bad requests were mishandled:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert_intact(&w).await;
    });
}

/// Moving a member who is connected to voice somewhere that is not a voice channel of the
/// guild gets a clear 4xx, and they stay where they were.
#[test]
fn voice_moves_to_bad_targets_get_a_clear_4xx() {
    let server = TestServer::start();
    block_on(async {
        let w = world(server).await;
        let s = &w.server;
        let p = &w.place;
        let category = ok_json(
            &w.alice,
            "POST",
            &s.url(&format!("/api/v1/guilds/{}/channels", p.guild)),
            Some(json!({"name": "Rooms", "kind": "category"})),
        )
        .await["id"]
            .as_str()
            .expect("a category")
            .to_string();
        let elsewhere = ok_json(
            &w.alice,
            "POST",
            &s.url("/api/v1/guilds"),
            Some(json!({"name": "Elsewhere"})),
        )
        .await;
        let other_guild = elsewhere["id"].as_str().expect("guild id").to_string();
        let other_voice = ok_json(
            &w.alice,
            "POST",
            &s.url(&format!("/api/v1/guilds/{other_guild}/channels")),
            Some(json!({"name": "Far", "kind": "voice"})),
        )
        .await["id"]
            .as_str()
            .expect("a voice channel")
            .to_string();
        let joined = w
            .alice
            .join_voice(&s.origin, &p.voice)
            .await
            .expect("alice joins voice");
        let moving = |name: &str, to: Value| case(name, "PATCH", "/guilds/{g}/voice/@me").json(to);
        let cases = vec![
            moving("move to a text channel", json!({"channel_id": p.channel}))
                .expect(400, "not_voice"),
            moving("move to a category", json!({"channel_id": category})).expect(400, "not_voice"),
            moving("move to an unknown channel", json!({"channel_id": "1"}))
                .expect(404, "unknown_channel"),
            moving("move to channel 0", json!({"channel_id": 0})).expect(404, "unknown_channel"),
            moving(
                "move to another guild's voice channel",
                json!({"channel_id": other_voice}),
            )
            .expect(404, "unknown_channel"),
            moving("move to a garbage id", json!({"channel_id": "../../voice"}))
                .expect(400, "invalid_json"),
            // Moderating in a guild one is not connected in: nobody to move.
            case(
                "move within a guild one is not in voice in",
                "PATCH",
                &format!("/guilds/{other_guild}/voice/@me"),
            )
            .json(json!({"channel_id": other_voice}))
            .expect(404, "not_in_voice"),
        ];
        let mut failures = Vec::new();
        for c in &cases {
            let r = send(&w.alice, s, p, c).await;
            if let Err(e) = check_error(&c.name, &r, c.status, c.code) {
                failures.push(e);
            }
        }
        assert!(
            failures.is_empty(),
            "{} bad moves were mishandled:\n{}",
            failures.len(),
            failures.join("\n")
        );
        // Still connected, still in the channel joined.
        let here = ok_json(
            &w.alice,
            "GET",
            &s.url(&format!("/api/v1/channels/{}/voice", p.voice)),
            None,
        )
        .await;
        let alice_id = w.alice.user_id(&s.origin).expect("user id");
        assert!(
            here.as_array()
                .is_some_and(|list| list.iter().any(|v| v["user_id"] == alice_id.as_str())),
            "alice left {} after the bad moves: {here}",
            p.voice
        );
        let all = ok_json(
            &w.alice,
            "GET",
            &s.url(&format!("/api/v1/guilds/{}/voice", p.guild)),
            None,
        )
        .await;
        assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
        assert_eq!(all[0]["channel_id"], p.voice.as_str(), "{all}");
        assert_eq!(all[0]["mute"], false, "{all}");
        joined.leave().await;
        assert_intact(&w).await;
    });
}

#[test]
fn limits_are_inclusive_and_count_characters() {
    let server = TestServer::start();
    block_on(async {
        let w = world(server).await;
        let c = &w.place.channel;
        let url = w.server.url(&format!("/api/v1/channels/{c}/messages"));
        // 4000 two-byte characters: 8000 bytes, but within the 4000-character limit.
        let text = long('é', 4000);
        let m = ok_json(&w.alice, "POST", &url, Some(json!({ "content": text }))).await;
        assert_eq!(m["content"].as_str().map(|s| s.chars().count()), Some(4000));
        let guild = ok_json(
            &w.alice,
            "POST",
            &w.server.url("/api/v1/guilds"),
            Some(json!({"name": long('g', 100)})),
        )
        .await;
        assert_eq!(guild["name"].as_str().map(str::len), Some(100));
        let me = ok_json(
            &w.alice,
            "PATCH",
            &w.server.url("/api/v1/users/@me"),
            Some(json!({"push_subscriptions": (0..10).map(|i| push_subscription(&format!("https://p.example/{i}"))).collect::<Vec<_>>()})),
        )
        .await;
        assert_eq!(me["push_subscriptions"].as_array().map(Vec::len), Some(10));
    });
}

#[test]
fn extreme_channel_positions_do_not_break_channel_creation() {
    let server = TestServer::start();
    block_on(async {
        let w = world(server).await;
        let url = w
            .server
            .url(&format!("/api/v1/guilds/{}/channels", w.place.guild));
        let edge = ok_json(
            &w.alice,
            "POST",
            &url,
            Some(json!({"name": "edge", "position": i32::MAX})),
        )
        .await;
        assert_eq!(edge["position"], i32::MAX);
        // A channel without a position goes last; there is no room after i32::MAX.
        let r = w
            .alice
            .post(&url, json!({"name": "after-the-edge"}))
            .await
            .expect("answer");
        assert!(
            r.status == 201 || (400..500).contains(&r.status),
            "a channel after position i32::MAX: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if r.status != 201 {
            check_error("after the edge", &r, r.status, None).unwrap();
        }
        assert_intact(&w).await;
    });
}

/// A refused body is not read; the request after it on the same connection must still be
/// answered at once (async-h1 used to swallow it while draining, a 60 s stall).
#[test]
fn the_request_after_an_unread_body_is_answered_at_once() {
    use futures_lite::FutureExt;
    let server = TestServer::start();
    block_on(async {
        let oversize = format!("{{\"username\": \"{}\"}}", long('a', 70 * 1024));
        let unread: [(&str, &str, Vec<u8>, u16); 2] = [
            ("/api/v1/register", JSON, oversize.into_bytes(), 413),
            (
                "/oauth/token",
                JSON,
                br#"{"grant_type": "password"}"#.to_vec(),
                400,
            ),
        ];
        for round in 0..60 {
            let client = Client::new();
            for (path, content_type, body, status) in &unread {
                let r = client
                    .raw(
                        &server.url(path),
                        "POST",
                        &[("Content-Type", content_type.to_string())],
                        body.clone(),
                    )
                    .await
                    .expect("answer");
                assert_eq!(r.status, *status, "{path}");
                let next = async {
                    let r = client
                        .raw(&server.url("/.well-known/hearth"), "GET", &[], Vec::new())
                        .await;
                    Some(r.map(|r| r.status))
                }
                .or(async {
                    smol::Timer::after(std::time::Duration::from_secs(5)).await;
                    None
                })
                .await;
                assert_eq!(
                    next.map(|r| r.ok()),
                    Some(Some(200)),
                    "round {round}: the request after {path} was not answered within 5 s"
                );
            }
        }
    });
}

/// xorshift64*: deterministic and good enough to make junk.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Text made of JSON's own characters, so parsers get further than byte one.
    fn jsonish(&mut self, n: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"{}[]\":,.-+0123456789eE truefalsnul\\u\n\"content\"\"name\"";
        (0..n)
            .map(|_| ALPHABET[self.below(ALPHABET.len())])
            .collect()
    }

    /// A valid body with a few bytes changed, inserted or removed.
    fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut out = valid.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(3) {
                0 if at < out.len() => out[at] = self.next() as u8,
                1 => out.insert(at, self.next() as u8),
                _ if at < out.len() => {
                    out.remove(at);
                }
                _ => out.push(self.next() as u8),
            }
        }
        out
    }
}

#[test]
fn random_bodies_never_cause_a_server_error() {
    let server = TestServer::start();
    block_on(async {
        let w = world(server).await;
        let p = &w.place;
        // (method, path, content type, authenticated, a valid body to mutate)
        let routes: Vec<(&str, String, &str, bool, String)> = vec![
            (
                "POST",
                format!("/api/v1/channels/{}/messages", p.channel),
                JSON,
                true,
                json!({"content": "fuzz", "reply_to": p.message}).to_string(),
            ),
            (
                "POST",
                "/api/v1/guilds".into(),
                JSON,
                true,
                json!({"name": "fuzz", "description": "d"}).to_string(),
            ),
            (
                "POST",
                format!("/api/v1/guilds/{}/channels", p.guild),
                JSON,
                true,
                json!({"name": "fuzz", "kind": "voice", "position": 3}).to_string(),
            ),
            (
                "POST",
                format!("/api/v1/guilds/{}/roles", p.guild),
                JSON,
                true,
                json!({"name": "fuzz", "permissions": 3, "color": 255}).to_string(),
            ),
            (
                "POST",
                format!("/api/v1/channels/{}/invites", p.channel),
                JSON,
                true,
                json!({"max_age_secs": 60, "max_uses": 2}).to_string(),
            ),
            (
                "PATCH",
                format!("/api/v1/channels/{}/messages/{}", p.channel, p.message),
                JSON,
                true,
                json!({"content": "first"}).to_string(),
            ),
            (
                "PATCH",
                format!("/api/v1/guilds/{}/voice/@me", p.guild),
                JSON,
                true,
                json!({"mute": false, "deaf": false}).to_string(),
            ),
            (
                "POST",
                "/api/v1/register".into(),
                JSON,
                false,
                json!({"username": "fuzz", "password": "12345678", "identity_key": "k",
                       "device_certificate": "c"})
                .to_string(),
            ),
            (
                "POST",
                "/oauth/token".into(),
                FORM,
                false,
                "grant_type=password&username=alice&password=wrong-password".into(),
            ),
            (
                "POST",
                "/oauth/revoke".into(),
                FORM,
                false,
                "token=abc".into(),
            ),
            (
                "POST",
                "/api/v1/device-links".into(),
                JSON,
                false,
                json!({"device_key": {"kty": "OKP", "crv": "Ed25519",
                       "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                       "device_name": "fuzz", "username": "alice"})
                .to_string(),
            ),
            (
                "POST",
                "/api/v1/device-links/ABCD-EFGH".into(),
                JSON,
                true,
                json!({"device_certificate": "c", "key_transfer": "k"}).to_string(),
            ),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut failures = Vec::new();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        for i in 0..450 {
            let (method, path, content_type, auth, valid) = &routes[i % routes.len()];
            let body = match rng.below(3) {
                0 => {
                    let n = rng.below(300);
                    rng.bytes(n)
                }
                1 => {
                    let n = rng.below(200);
                    rng.jsonish(n)
                }
                _ => rng.mutate(valid.as_bytes()),
            };
            let url = w.server.url(path);
            let r = if *auth {
                w.alice
                    .send_bytes(&url, method, Some(content_type), body.clone(), true)
                    .await
            } else {
                // The token endpoint gets a real proof so the body is what is tested.
                let mut headers = vec![("Content-Type", content_type.to_string())];
                if path == "/oauth/token" {
                    headers.push(("DPoP", w.alice.proof("POST", &url, None).expect("proof")));
                }
                w.alice.raw(&url, method, &headers, body.clone()).await
            };
            let r = r.unwrap_or_else(|e| panic!("#{i} {method} {path}: no answer: {e}"));
            *statuses.entry(r.status).or_default() += 1;
            if r.status >= 500 {
                failures.push(format!(
                    "#{i} {method} {path} {:?} → {} {}",
                    String::from_utf8_lossy(&body),
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            } else if r.status >= 400 {
                if let Err(e) = check_error(&format!("#{i} {method} {path}"), &r, r.status, None) {
                    failures.push(e);
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} random bodies were mishandled:\n{}",
            failures.len(),
            failures.join("\n")
        );
        eprintln!("statuses of the random bodies: {statuses:?}");
        // The junk reached the handlers rather than bouncing off authentication.
        assert!(
            statuses.keys().any(|s| *s == 400),
            "no 400 among {statuses:?}"
        );
        assert!(
            !statuses.contains_key(&401),
            "authentication failed: {statuses:?}"
        );
        // The fuzzed edits may have changed the first message; the others must be intact.
        let c = &p.channel;
        for (id, text) in &w.posted[1..] {
            let m = ok_json(
                &w.alice,
                "GET",
                &w.server.url(&format!("/api/v1/channels/{c}/messages/{id}")),
                None,
            )
            .await;
            assert_eq!(m["content"], text.as_str());
        }
        let me = ok_json(&w.alice, "GET", &w.server.url("/api/v1/users/@me"), None).await;
        assert_eq!(me["name"], "alice");
    });
}

/// A push subscription to `endpoint` with valid keys (RFC 8291's example).
fn push_subscription(endpoint: &str) -> Value {
    json!({
        "endpoint": endpoint,
        "keys": {
            "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "auth": "BTBZMqHH6r4Tts7J_aSIgg",
        },
    })
}
