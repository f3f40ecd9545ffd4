//! Whole user journeys over real HTTP: two people set up a guild, talk, react, pin, share
//! files, get restricted by roles, kicked, banned and let back in; plus history paging,
//! invite limits, the role hierarchy for moderators, and the profile.

use crate::common::*;
use hearth::client::{Client, Response};
use hearth::model::Permissions as P;
use serde_json::{json, Value};
use std::collections::HashSet;

/// A signed-in person on one test server, with short ways to call the API and check the
/// answer. Every failed expectation names the person, the request and the server's answer.
struct Person<'a> {
    server: &'a TestServer,
    client: Client,
    id: String,
    name: &'static str,
}

async fn person<'a>(server: &'a TestServer, name: &'static str) -> Person<'a> {
    let client = user(server, name).await;
    let id = client.user_id(&server.origin).expect("signed in");
    Person {
        server,
        client,
        id,
        name,
    }
}

fn body_text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

impl Person<'_> {
    fn url(&self, path: &str) -> String {
        self.server.url(&format!("/api/v1{path}"))
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        self.client
            .send(&self.url(path), method, body, true)
            .await
            .unwrap_or_else(|e| panic!("{} {method} {path}: {e}", self.name))
    }

    /// Makes the request and asserts the status.
    async fn expect(&self, status: u16, method: &str, path: &str, body: Option<Value>) -> Response {
        let r = self.call(method, path, body).await;
        assert_eq!(
            r.status,
            status,
            "{} {method} {path}: expected {status}, got {} {}",
            self.name,
            r.status,
            body_text(&r)
        );
        r
    }

    /// Makes the request, asserts the status and the error code.
    async fn refused(
        &self,
        status: u16,
        code: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) {
        let r = self.expect(status, method, path, body).await;
        assert_eq!(
            r.error_code().as_deref(),
            Some(code),
            "{} {method} {path}: error code in {}",
            self.name,
            body_text(&r)
        );
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&r.status),
            "{} {method} {path}: expected success, got {} {}",
            self.name,
            r.status,
            body_text(&r)
        );
        if r.body.is_empty() {
            Value::Null
        } else {
            r.json().expect("JSON answer")
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.ok("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.ok("POST", path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Value {
        self.ok("PATCH", path, Some(body)).await
    }

    async fn put(&self, path: &str) -> Value {
        self.ok("PUT", path, None).await
    }

    async fn delete(&self, path: &str) {
        self.expect(204, "DELETE", path, None).await;
    }

    async fn say(&self, channel: &str, content: &str) -> Value {
        self.expect(
            201,
            "POST",
            &format!("/channels/{channel}/messages"),
            Some(json!({ "content": content })),
        )
        .await
        .json()
        .unwrap()
    }

    async fn permission_version(&self, guild: &str) -> u64 {
        self.get(&format!("/guilds/{guild}"))
            .await
            .get("permission_version")
            .and_then(Value::as_u64)
            .expect("permission_version in the guild view")
    }

    async fn guild_ids(&self) -> Vec<String> {
        ids(&self.get("/users/@me/guilds").await)
    }
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no string id in {v}"))
        .to_string()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(id)
        .collect()
}

fn channel_names(guild_view: &Value) -> Vec<String> {
    guild_view["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Previews an invite the way a browser without an account does: no token, no proof.
async fn preview(server: &TestServer, code: &str) -> Response {
    Client::new()
        .raw(
            &server.url(&format!("/api/v1/invites/{code}")),
            "GET",
            &[],
            Vec::new(),
        )
        .await
        .expect("preview request")
}

/// A message's reactions as (emoji, count, me), sorted by emoji (the order is not part of
/// the protocol).
fn reactions(message: &Value) -> Vec<(String, u64, bool)> {
    let mut list: Vec<(String, u64, bool)> = message["reactions"]
        .as_array()
        .unwrap_or_else(|| panic!("no reactions in {message}"))
        .iter()
        .map(|r| {
            (
                r["emoji"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
                r["me"].as_bool().unwrap(),
            )
        })
        .collect();
    list.sort();
    list
}

fn reaction_list(list: &Value) -> Vec<(String, u64, bool)> {
    reactions(&json!({ "reactions": list }))
}

const THUMBS: &str = "%F0%9F%91%8D"; // 👍 in a URL
const HEART: &str = "%E2%9D%A4"; // ❤

/// What the journey has built so far; each phase below adds to it.
struct Journey<'a> {
    server: &'a TestServer,
    alice: Person<'a>,
    bob: Person<'a>,
    carol: Person<'a>,
    g: String,
    general: String,
    lounge: String,
    code: String,
    hello: String,
    hidden: String,
}

/// The journey runs in phases, each boxed: as one unboxed future it overflows the test
/// thread's stack in debug builds.
#[test]
fn two_people_build_a_guild_and_live_in_it() {
    let server = TestServer::start();
    block_on(Box::pin(async {
        let mut j = Journey {
            server: &server,
            alice: person(&server, "alice").await,
            bob: person(&server, "bob").await,
            carol: person(&server, "carol").await, // never joins
            g: String::new(),
            general: String::new(),
            lounge: String::new(),
            code: String::new(),
            hello: String::new(),
            hidden: String::new(),
        };
        Box::pin(j.guild_and_channels()).await;
        Box::pin(j.invite_and_join()).await;
        Box::pin(j.messages()).await;
        Box::pin(j.reactions()).await;
        Box::pin(j.pins()).await;
        Box::pin(j.files()).await;
        Box::pin(j.role_hides_a_channel()).await;
        Box::pin(j.role_takes_away_sending()).await;
        Box::pin(j.kick()).await;
        Box::pin(j.ban()).await;
        Box::pin(j.leave()).await;
        Box::pin(j.delete_guild()).await;
    }));
}

impl Journey<'_> {
    /// The guild and its channels.
    async fn guild_and_channels(&mut self) {
        let alice = &self.alice;
        let guild = alice
            .expect(
                201,
                "POST",
                "/guilds",
                Some(json!({"name": "Fireside", "description": "our place"})),
            )
            .await
            .json()
            .unwrap();
        let g = id(&guild);
        assert_eq!(guild["name"], "Fireside");
        assert_eq!(guild["owner"], alice.id.as_str());
        assert_eq!(guild["my_permissions"].as_u64(), Some(P::ALL.bits()));
        assert_eq!(channel_names(&guild), ["general"]);
        let general = id(&guild["channels"][0]);
        let everyone = &guild["roles"][0];
        assert_eq!(everyone["name"], "@everyone");
        assert_eq!(id(everyone), g, "@everyone has the guild's id");

        let category = alice
            .post(
                &format!("/guilds/{g}/channels"),
                json!({"name": "Projects", "kind": "category"}),
            )
            .await;
        assert_eq!(category["kind"], "category");
        let lounge = alice
            .post(
                &format!("/guilds/{g}/channels"),
                json!({"name": "lounge", "kind": "text", "topic": "anything",
                       "parent_id": id(&category)}),
            )
            .await;
        assert_eq!(lounge["parent_id"], category["id"]);
        assert_eq!(lounge["topic"], "anything");
        let lounge = id(&lounge);
        let voice = alice
            .post(
                &format!("/guilds/{g}/channels"),
                json!({"name": "Hangout", "kind": "voice"}),
            )
            .await;
        assert_eq!(voice["kind"], "voice");
        let voice = id(&voice);
        // A channel inside a text channel is refused.
        alice
            .refused(
                400,
                "invalid_parent",
                "POST",
                &format!("/guilds/{g}/channels"),
                Some(json!({"name": "nested", "parent_id": general})),
            )
            .await;
        let listed = alice.get(&format!("/guilds/{g}/channels")).await;
        let mut names: Vec<String> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["Hangout", "Projects", "general", "lounge"]);
        // Messages only go in text channels.
        alice
            .refused(
                400,
                "not_a_text_channel",
                "POST",
                &format!("/channels/{voice}/messages"),
                Some(json!({"content": "hello?"})),
            )
            .await;
        self.g = g;
        self.general = general;
        self.lounge = lounge;
    }

    /// Invite, preview without an account, join.
    async fn invite_and_join(&mut self) {
        let server = self.server;
        let alice = &self.alice;
        let bob = &self.bob;
        let g = self.g.clone();
        let general = self.general.clone();
        let invite = alice
            .expect(
                201,
                "POST",
                &format!("/channels/{general}/invites"),
                Some(json!({})),
            )
            .await
            .json()
            .unwrap();
        let code = invite["code"].as_str().unwrap().to_string();
        let before_join = preview(server, &code).await;
        assert_eq!(before_join.status, 200, "{}", body_text(&before_join));
        let p = before_join.json().unwrap();
        assert_eq!(p["guild_name"], "Fireside");
        assert_eq!(p["guild_description"], "our place");
        assert_eq!(p["channel_name"], "general");
        assert_eq!(p["member_count"], 1);
        assert_eq!(preview(server, "NoSuchCode42").await.status, 404);
        // Not a member yet: the guild is invisible.
        bob.refused(404, "unknown_guild", "GET", &format!("/guilds/{g}"), None)
            .await;
        bob.expect(404, "GET", &format!("/channels/{general}/messages"), None)
            .await;

        let joined = bob.post(&format!("/invites/{code}"), json!({})).await;
        assert_eq!(id(&joined), g);
        assert_eq!(
            joined["my_permissions"].as_u64(),
            Some(P::DEFAULT_EVERYONE.bits())
        );
        assert_eq!(
            preview(server, &code).await.json().unwrap()["member_count"],
            2
        );
        assert_eq!(bob.guild_ids().await, vec![g.clone()]);
        let members = alice.get(&format!("/guilds/{g}/members")).await;
        let mut member_ids: Vec<&str> = members
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user_id"].as_str().unwrap())
            .collect();
        member_ids.sort();
        let mut expected = vec![alice.id.as_str(), bob.id.as_str()];
        expected.sort();
        assert_eq!(member_ids, expected);
        self.code = code;
    }

    /// Messages: post, mention, edit, delete, reply.
    async fn messages(&mut self) {
        let alice = &self.alice;
        let bob = &self.bob;
        let carol = &self.carol;
        let g = self.g.clone();
        let general = self.general.clone();
        let lounge = self.lounge.clone();
        let m_hello = alice
            .say(&general, &format!("welcome <@{}>!", bob.id))
            .await;
        assert_eq!(m_hello["author_id"], alice.id.as_str());
        assert_eq!(m_hello["mentions"], json!([bob.id]));
        assert!(m_hello["edited_at"].is_null());
        // A mention of someone outside the guild does not count; duplicates count once.
        let m_bob = bob
            .say(
                &general,
                &format!("hi <@{}> and <@{}> and <@{}>", alice.id, alice.id, carol.id),
            )
            .await;
        assert_eq!(m_bob["mentions"], json!([alice.id]));

        // Role and @everyone mentions: a role that is not mentionable, and @everyone,
        // only count from someone with MENTION_EVERYONE (Alice, the owner; not Bob).
        let crew = id(&alice
            .post(&format!("/guilds/{g}/roles"), json!({"name": "crew"}))
            .await);
        let pals = id(&alice
            .post(
                &format!("/guilds/{g}/roles"),
                json!({"name": "pals", "mentionable": true}),
            )
            .await);
        let loud = format!("hey <@&{crew}> and <@&{pals}> and @everyone");
        let from_alice = alice.say(&general, &loud).await;
        assert_eq!(from_alice["mention_roles"], json!([crew, pals]));
        assert_eq!(from_alice["mention_everyone"], true);
        let from_bob = bob.say(&general, &loud).await;
        assert_eq!(from_bob["mention_roles"], json!([pals]));
        assert_eq!(from_bob["mention_everyone"], false);
        // Editing cannot sneak in what posting would not allow.
        let quiet_bob = bob.say(&general, "nothing to see").await;
        let sneaky = bob
            .patch(
                &format!("/channels/{general}/messages/{}", id(&quiet_bob)),
                json!({"content": format!("now <@&{crew}> <@&{pals}> @everyone <@{}>", alice.id)}),
            )
            .await;
        assert_eq!(sneaky["mention_roles"], json!([pals]), "edit: {sneaky}");
        assert_eq!(sneaky["mention_everyone"], false);
        assert_eq!(sneaky["mentions"], json!([alice.id]));
        for m in [&from_alice, &from_bob, &quiet_bob] {
            alice
                .delete(&format!("/channels/{general}/messages/{}", id(m)))
                .await;
        }
        let m_typo = alice.say(&general, "tpyo").await;

        let hello = id(&m_hello);
        let edited = alice
            .patch(
                &format!("/channels/{general}/messages/{hello}"),
                json!({"content": "welcome, everyone"}),
            )
            .await;
        assert_eq!(edited["content"], "welcome, everyone");
        assert!(
            edited["edited_at"].as_u64().unwrap() >= edited["created_at"].as_u64().unwrap(),
            "edited_at set: {edited}"
        );
        assert_eq!(edited["mentions"], json!([]), "mentions follow the edit");
        let fetched = bob
            .get(&format!("/channels/{general}/messages/{hello}"))
            .await;
        assert_eq!(fetched["content"], "welcome, everyone");
        assert_eq!(fetched["edited_at"], edited["edited_at"]);
        // Only the author edits; only the author or a moderator deletes.
        bob.expect(
            403,
            "PATCH",
            &format!("/channels/{general}/messages/{hello}"),
            Some(json!({"content": "hijacked"})),
        )
        .await;
        bob.expect(
            403,
            "DELETE",
            &format!("/channels/{general}/messages/{hello}"),
            None,
        )
        .await;

        let typo = id(&m_typo);
        alice
            .delete(&format!("/channels/{general}/messages/{typo}"))
            .await;
        bob.refused(
            404,
            "unknown_message",
            "GET",
            &format!("/channels/{general}/messages/{typo}"),
            None,
        )
        .await;
        let history = bob.get(&format!("/channels/{general}/messages")).await;
        assert_eq!(ids(&history), [id(&m_bob), hello.clone()]);

        let reply = bob
            .post(
                &format!("/channels/{general}/messages"),
                json!({"content": "thanks!", "reply_to": hello}),
            )
            .await;
        assert_eq!(reply["reply_to"], hello.as_str());
        // A reply to a deleted message, or to a message of another channel, is refused.
        bob.refused(
            400,
            "invalid_reply",
            "POST",
            &format!("/channels/{general}/messages"),
            Some(json!({"content": "to nothing", "reply_to": typo})),
        )
        .await;
        bob.refused(
            400,
            "invalid_reply",
            "POST",
            &format!("/channels/{lounge}/messages"),
            Some(json!({"content": "elsewhere", "reply_to": hello})),
        )
        .await;
        // Bob may delete his own message.
        let oops = bob.say(&general, "oops").await;
        bob.delete(&format!("/channels/{general}/messages/{}", id(&oops)))
            .await;
        assert_eq!(
            ids(&alice.get(&format!("/channels/{general}/messages")).await),
            [id(&reply), id(&m_bob), hello.clone()]
        );
        self.hello = hello;
    }

    /// Reactions.
    async fn reactions(&mut self) {
        let alice = &self.alice;
        let bob = &self.bob;
        let general = self.general.clone();
        let hello = self.hello.clone();
        let on_hello = format!("/channels/{general}/messages/{hello}/reactions");
        let r = alice.put(&format!("{on_hello}/{THUMBS}")).await;
        assert_eq!(reaction_list(&r), [("👍".into(), 1, true)]);
        let r = bob.put(&format!("{on_hello}/{THUMBS}")).await;
        assert_eq!(reaction_list(&r), [("👍".into(), 2, true)]);
        // Adding the same reaction twice counts once.
        let r = bob.put(&format!("{on_hello}/{THUMBS}")).await;
        assert_eq!(reaction_list(&r), [("👍".into(), 2, true)]);
        let r = bob.put(&format!("{on_hello}/{HEART}")).await;
        assert_eq!(
            reaction_list(&r),
            [("❤".into(), 1, true), ("👍".into(), 2, true)]
        );
        let seen_by_alice = alice
            .get(&format!("/channels/{general}/messages/{hello}"))
            .await;
        assert_eq!(
            reactions(&seen_by_alice),
            [("❤".into(), 1, false), ("👍".into(), 2, true)]
        );
        // Bob cannot take away Alice's reaction; he can take away his own.
        bob.expect(
            403,
            "DELETE",
            &format!("{on_hello}/{THUMBS}/{}", alice.id),
            None,
        )
        .await;
        let r = bob
            .ok("DELETE", &format!("{on_hello}/{THUMBS}"), None)
            .await;
        assert_eq!(
            reaction_list(&r),
            [("❤".into(), 1, true), ("👍".into(), 1, false)]
        );
        bob.expect(404, "DELETE", &format!("{on_hello}/{THUMBS}"), None)
            .await;
        // The owner (MANAGE_MESSAGES) removes Bob's heart.
        let r = alice
            .ok("DELETE", &format!("{on_hello}/{HEART}/{}", bob.id), None)
            .await;
        assert_eq!(reaction_list(&r), [("👍".into(), 1, true)]);
        let in_history = bob.get(&format!("/channels/{general}/messages")).await;
        let listed_hello = in_history
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == hello.as_str())
            .unwrap();
        assert_eq!(reactions(listed_hello), [("👍".into(), 1, false)]);
    }

    /// Pins: MANAGE_MESSAGES only.
    async fn pins(&mut self) {
        let alice = &self.alice;
        let bob = &self.bob;
        let general = self.general.clone();
        let hello = self.hello.clone();
        let pin = format!("/channels/{general}/pins/{hello}");
        bob.expect(403, "PUT", &pin, None).await;
        let pinned = alice.put(&pin).await;
        assert_eq!(pinned["pinned"], true);
        let pins = bob.get(&format!("/channels/{general}/pins")).await;
        assert_eq!(ids(&pins), vec![hello.clone()]);
        assert_eq!(
            bob.get(&format!("/channels/{general}/messages/{hello}"))
                .await["pinned"],
            true
        );
        bob.expect(403, "DELETE", &pin, None).await;
        let unpinned = alice.ok("DELETE", &pin, None).await;
        assert_eq!(unpinned["pinned"], false);
        assert_eq!(
            bob.get(&format!("/channels/{general}/pins")).await,
            json!([])
        );
    }

    /// Files.
    async fn files(&mut self) {
        let alice = &self.alice;
        let bob = &self.bob;
        let carol = &self.carol;
        let general = self.general.clone();
        let lounge = self.lounge.clone();
        let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let uploaded = alice
            .client
            .send_bytes(
                &alice.url(&format!("/channels/{general}/files?filename=photo.png")),
                "POST",
                Some("image/png"),
                bytes.clone(),
                true,
            )
            .await
            .unwrap();
        assert_eq!(uploaded.status, 201, "{}", body_text(&uploaded));
        let meta = uploaded.json().unwrap();
        let file_id = meta["file_id"].as_str().unwrap().to_string();
        assert_eq!(meta["size"], bytes.len());
        assert_eq!(meta["content_type"], "image/png");
        assert_eq!(meta["filename"], "photo.png");
        let with_file = alice
            .post(
                &format!("/channels/{general}/messages"),
                json!({"content": "look", "attachments": [file_id]}),
            )
            .await;
        assert_eq!(with_file["attachments"][0]["file_id"], file_id.as_str());
        assert_eq!(with_file["attachments"][0]["size"], bytes.len());
        let file_path = format!("/channels/{general}/files/{file_id}");
        let download = bob.expect(200, "GET", &file_path, None).await;
        assert!(download.body == bytes, "downloaded bytes differ");
        assert_eq!(download.header("content-type"), Some("image/png"));
        // Someone outside the guild cannot fetch it, even knowing its id.
        carol
            .refused(404, "unknown_channel", "GET", &file_path, None)
            .await;
        // Nor is it reachable through another channel it was not uploaded to.
        alice
            .expect(
                404,
                "GET",
                &format!("/channels/{lounge}/files/{file_id}"),
                None,
            )
            .await;
        // An attachment must have been uploaded to the channel.
        alice
            .refused(
                400,
                "invalid_attachment",
                "POST",
                &format!("/channels/{lounge}/messages"),
                Some(json!({"content": "x", "attachments": [file_id]})),
            )
            .await;
    }

    /// A role that hides a channel from Bob.
    async fn role_hides_a_channel(&mut self) {
        let alice = &self.alice;
        let bob = &self.bob;
        let g = self.g.clone();
        let lounge = self.lounge.clone();
        let lounge_file = alice
            .client
            .send_bytes(
                &alice.url(&format!("/channels/{lounge}/files?filename=notes.txt")),
                "POST",
                Some("text/plain"),
                b"lounge notes".to_vec(),
                true,
            )
            .await
            .unwrap()
            .json()
            .unwrap()["file_id"]
            .as_str()
            .unwrap()
            .to_string();
        bob.say(&lounge, "I like it here").await;
        assert!(channel_names(&bob.get(&format!("/guilds/{g}")).await).contains(&"lounge".into()));

        let v0 = alice.permission_version(&g).await;
        let hidden = alice
            .post(&format!("/guilds/{g}/roles"), json!({"name": "no-lounge"}))
            .await;
        let hidden = id(&hidden);
        let v1 = alice.permission_version(&g).await;
        assert!(
            v1 > v0,
            "creating a role bumps permission_version ({v0} → {v1})"
        );
        alice
            .patch(
                &format!("/channels/{lounge}"),
                json!({"overwrites": [{"target": {"role": hidden}, "allow": 0,
                                        "deny": P::VIEW_CHANNEL.bits()}]}),
            )
            .await;
        let v2 = alice.permission_version(&g).await;
        assert!(
            v2 > v1,
            "changing overwrites bumps permission_version ({v1} → {v2})"
        );
        // Nobody has the role yet: Bob still sees the lounge.
        bob.get(&format!("/channels/{lounge}/messages")).await;
        let assigned = alice
            .put(&format!("/guilds/{g}/members/{}/roles/{hidden}", bob.id))
            .await;
        assert_eq!(assigned["roles"], json!([hidden]));
        let v3 = alice.permission_version(&g).await;
        assert!(
            v3 > v2,
            "assigning a role bumps permission_version ({v2} → {v3})"
        );

        bob.refused(
            404,
            "unknown_channel",
            "GET",
            &format!("/channels/{lounge}/messages"),
            None,
        )
        .await;
        bob.expect(404, "GET", &format!("/channels/{lounge}"), None)
            .await;
        bob.expect(
            404,
            "POST",
            &format!("/channels/{lounge}/messages"),
            Some(json!({"content": "still here?"})),
        )
        .await;
        bob.expect(
            404,
            "GET",
            &format!("/channels/{lounge}/files/{lounge_file}"),
            None,
        )
        .await;
        let bobs_view = bob.get(&format!("/guilds/{g}")).await;
        assert!(
            !channel_names(&bobs_view).contains(&"lounge".into()),
            "the lounge left Bob's guild view: {:?}",
            channel_names(&bobs_view)
        );
        assert!(channel_names(&bobs_view).contains(&"general".into()));
        let bobs_list = bob.get(&format!("/guilds/{g}/channels")).await;
        assert!(!bobs_list.to_string().contains("lounge"));
        // Alice, the owner, still sees everything.
        assert!(channel_names(&alice.get(&format!("/guilds/{g}")).await).contains(&"lounge".into()));
        alice.get(&format!("/channels/{lounge}/messages")).await;

        // The same deny on the lounge's category hides the lounge too; an allow on the
        // lounge itself wins over its category.
        let category = alice.get(&format!("/channels/{lounge}")).await["parent_id"]
            .as_str()
            .expect("the lounge is in a category")
            .to_string();
        alice
            .patch(&format!("/channels/{lounge}"), json!({"overwrites": []}))
            .await;
        bob.get(&format!("/channels/{lounge}/messages")).await;
        let deny_view = json!({"overwrites": [{"target": {"role": hidden}, "allow": 0,
                                                "deny": P::VIEW_CHANNEL.bits()}]});
        alice
            .patch(&format!("/channels/{category}"), deny_view)
            .await;
        bob.expect(404, "GET", &format!("/channels/{lounge}/messages"), None)
            .await;
        bob.expect(404, "GET", &format!("/channels/{category}"), None)
            .await;
        let names = channel_names(&bob.get(&format!("/guilds/{g}")).await);
        assert!(
            !names.contains(&"lounge".into()) && !names.contains(&"Projects".into()),
            "{names:?}"
        );
        alice
            .patch(
                &format!("/channels/{lounge}"),
                json!({"overwrites": [{"target": {"role": hidden},
                                        "allow": P::VIEW_CHANNEL.bits(), "deny": 0}]}),
            )
            .await;
        bob.get(&format!("/channels/{lounge}/messages")).await;
        let names = channel_names(&bob.get(&format!("/guilds/{g}")).await);
        assert!(names.contains(&"lounge".into()), "{names:?}");
        // A member overwrite for Bob alone beats his roles.
        alice
            .patch(
                &format!("/channels/{lounge}"),
                json!({"overwrites": [
                    {"target": {"role": hidden}, "allow": P::VIEW_CHANNEL.bits(), "deny": 0},
                    {"target": {"member": bob.id}, "allow": 0, "deny": P::VIEW_CHANNEL.bits()},
                ]}),
            )
            .await;
        bob.expect(404, "GET", &format!("/channels/{lounge}/messages"), None)
            .await;
        alice
            .patch(
                &format!("/channels/{lounge}"),
                json!({"overwrites": [{"target": {"role": hidden},
                                        "allow": P::VIEW_CHANNEL.bits(), "deny": 0}]}),
            )
            .await;
        bob.get(&format!("/channels/{lounge}/messages")).await;
        self.hidden = hidden;
    }

    /// A role that takes away sending in general.
    async fn role_takes_away_sending(&mut self) {
        let alice = &self.alice;
        let bob = &self.bob;
        let g = self.g.clone();
        let general = self.general.clone();
        let hidden = self.hidden.clone();
        let hello = self.hello.clone();
        let on_hello = format!("/channels/{general}/messages/{hello}/reactions");
        let v3 = alice.permission_version(&g).await;
        let quiet = alice
            .post(
                &format!("/guilds/{g}/roles"),
                json!({"name": "quiet", "color": 0x888888}),
            )
            .await;
        let quiet = id(&quiet);
        let v4 = alice.permission_version(&g).await;
        assert!(v4 > v3);
        alice
            .patch(
                &format!("/channels/{general}"),
                json!({"overwrites": [{"target": {"role": quiet}, "allow": 0,
                                        "deny": P::SEND_MESSAGES.bits()}]}),
            )
            .await;
        let v5 = alice.permission_version(&g).await;
        assert!(v5 > v4);
        alice
            .put(&format!("/guilds/{g}/members/{}/roles/{quiet}", bob.id))
            .await;
        let v6 = alice.permission_version(&g).await;
        assert!(v6 > v5);
        bob.refused(
            403,
            "forbidden",
            "POST",
            &format!("/channels/{general}/messages"),
            Some(json!({"content": "can I talk?"})),
        )
        .await;
        // Without SEND_MESSAGES he cannot upload either, but he can still read and react.
        let no_upload = bob
            .client
            .send_bytes(
                &bob.url(&format!("/channels/{general}/files?filename=a.txt")),
                "POST",
                Some("text/plain"),
                b"x".to_vec(),
                true,
            )
            .await
            .unwrap();
        assert_eq!(no_upload.status, 403, "{}", body_text(&no_upload));
        bob.get(&format!("/channels/{general}/messages")).await;
        bob.put(&format!("{on_hello}/{THUMBS}")).await;
        // Changing the role's permissions and taking it away both bump the version.
        alice
            .patch(
                &format!("/guilds/{g}/roles/{quiet}"),
                json!({"name": "very quiet"}),
            )
            .await;
        let v7 = alice.permission_version(&g).await;
        assert!(
            v7 > v6,
            "editing a role bumps permission_version ({v6} → {v7})"
        );
        let taken = alice
            .ok(
                "DELETE",
                &format!("/guilds/{g}/members/{}/roles/{quiet}", bob.id),
                None,
            )
            .await;
        assert_eq!(taken["roles"], json!([hidden]));
        let v8 = alice.permission_version(&g).await;
        assert!(
            v8 > v7,
            "taking a role away bumps permission_version ({v7} → {v8})"
        );
        bob.say(&general, "I can talk again").await;
        alice.delete(&format!("/guilds/{g}/roles/{quiet}")).await;
        let v9 = alice.permission_version(&g).await;
        assert!(
            v9 > v8,
            "deleting a role bumps permission_version ({v8} → {v9})"
        );
    }

    /// Kick: Bob can come back with an invite, without his old roles.
    async fn kick(&mut self) {
        let server = self.server;
        let alice = &self.alice;
        let bob = &self.bob;
        let g = self.g.clone();
        let general = self.general.clone();
        let code = self.code.clone();
        let v9 = alice.permission_version(&g).await;
        bob.refused(
            403,
            "forbidden",
            "DELETE",
            &format!("/guilds/{g}/members/{}", alice.id),
            None,
        )
        .await;
        alice
            .delete(&format!("/guilds/{g}/members/{}", bob.id))
            .await;
        assert!(alice.permission_version(&g).await > v9);
        bob.expect(404, "GET", &format!("/guilds/{g}"), None).await;
        bob.expect(404, "GET", &format!("/channels/{general}/messages"), None)
            .await;
        assert!(bob.guild_ids().await.is_empty());
        assert_eq!(
            preview(server, &code).await.json().unwrap()["member_count"],
            1
        );
        bob.post(&format!("/invites/{code}"), json!({})).await;
        let me_again = bob.get(&format!("/guilds/{g}/members/{}", bob.id)).await;
        assert_eq!(
            me_again["roles"],
            json!([]),
            "a kick drops the member's roles"
        );
        assert!(channel_names(&bob.get(&format!("/guilds/{g}")).await).contains(&"lounge".into()));
        assert_eq!(bob.guild_ids().await, vec![g.clone()]);
    }

    /// Ban: no way back until unbanned.
    async fn ban(&mut self) {
        let alice = &self.alice;
        let bob = &self.bob;
        let g = self.g.clone();
        let general = self.general.clone();
        let code = self.code.clone();
        let ban = alice
            .ok(
                "PUT",
                &format!("/guilds/{g}/bans/{}", bob.id),
                Some(json!({"reason": "too loud"})),
            )
            .await;
        assert_eq!(ban["reason"], "too loud");
        bob.expect(404, "GET", &format!("/guilds/{g}"), None).await;
        let bans = alice.get(&format!("/guilds/{g}/bans")).await;
        assert_eq!(bans.as_array().unwrap().len(), 1);
        assert_eq!(bans[0]["user_id"], bob.id.as_str());
        bob.refused(
            403,
            "banned",
            "POST",
            &format!("/invites/{code}"),
            Some(json!({})),
        )
        .await;
        // A fresh invite does not help either.
        let fresh = alice
            .post(&format!("/channels/{general}/invites"), json!({}))
            .await["code"]
            .as_str()
            .unwrap()
            .to_string();
        bob.refused(
            403,
            "banned",
            "POST",
            &format!("/invites/{fresh}"),
            Some(json!({})),
        )
        .await;
        alice.delete(&format!("/guilds/{g}/bans/{}", bob.id)).await;
        assert_eq!(alice.get(&format!("/guilds/{g}/bans")).await, json!([]));
        alice
            .expect(404, "DELETE", &format!("/guilds/{g}/bans/{}", bob.id), None)
            .await;
        bob.post(&format!("/invites/{code}"), json!({})).await;
        bob.say(&general, "back again").await;
    }

    /// Leaving, and the owner who cannot leave.
    async fn leave(&mut self) {
        let alice = &self.alice;
        let bob = &self.bob;
        let g = self.g.clone();
        alice
            .refused(
                400,
                "owner_cannot_leave",
                "DELETE",
                &format!("/guilds/{g}/members/@me"),
                None,
            )
            .await;
        bob.delete(&format!("/guilds/{g}/members/@me")).await;
        bob.expect(404, "GET", &format!("/guilds/{g}"), None).await;
    }

    /// Deleting the guild: only the owner; everything disappears.
    async fn delete_guild(&mut self) {
        let server = self.server;
        let alice = &self.alice;
        let bob = &self.bob;
        let g = self.g.clone();
        let general = self.general.clone();
        let code = self.code.clone();
        bob.post(&format!("/invites/{code}"), json!({})).await;
        bob.expect(403, "DELETE", &format!("/guilds/{g}"), None)
            .await;
        alice.delete(&format!("/guilds/{g}")).await;
        alice
            .expect(404, "GET", &format!("/guilds/{g}"), None)
            .await;
        bob.expect(404, "GET", &format!("/channels/{general}/messages"), None)
            .await;
        assert!(bob.guild_ids().await.is_empty());
        assert!(alice.guild_ids().await.is_empty());
        assert_eq!(preview(server, &code).await.status, 404);
    }
}

#[test]
fn history_pages_without_gaps_or_duplicates() {
    let server = TestServer::start();
    block_on(Box::pin(async {
        let alice = person(&server, "alice").await;
        let bob = person(&server, "bob").await;
        let guild = alice.post("/guilds", json!({"name": "Pages"})).await;
        let c = id(&guild["channels"][0]);
        let code = alice
            .post(&format!("/channels/{c}/invites"), json!({}))
            .await["code"]
            .as_str()
            .unwrap()
            .to_string();
        bob.post(&format!("/invites/{code}"), json!({})).await;

        let mut sent = Vec::new(); // oldest first
        for i in 0..30 {
            let who = if i % 3 == 0 { &bob } else { &alice };
            let m = who.say(&c, &format!("message {i:02}")).await;
            sent.push(id(&m));
        }
        let as_numbers: Vec<u64> = sent.iter().map(|s| s.parse().unwrap()).collect();
        assert!(
            as_numbers.windows(2).all(|w| w[0] < w[1]),
            "ids grow with time"
        );
        let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
        let page = |q: String| {
            let bob = &bob;
            let c = c.clone();
            async move { ids(&bob.get(&format!("/channels/{c}/messages{q}")).await) }
        };

        // Default: newest first, everything fits in the default limit of 50.
        assert_eq!(page(String::new()).await, newest_first);

        // Backwards with before, 7 at a time.
        let mut walked = Vec::new();
        let mut q = "?limit=7".to_string();
        for pages in 1.. {
            assert!(pages <= 6, "paging with before does not end: {walked:?}");
            let rows = page(q.clone()).await;
            assert!(rows.len() <= 7);
            let Some(last) = rows.last().cloned() else {
                break;
            };
            walked.extend(rows);
            q = format!("?limit=7&before={last}");
        }
        assert_eq!(
            walked, newest_first,
            "before-paging: order, gaps or duplicates"
        );

        // Forwards with after, 8 at a time, starting before the first message.
        let mut walked = Vec::new();
        let mut q = "?limit=8&after=0".to_string();
        for pages in 1.. {
            assert!(pages <= 5, "paging with after does not end: {walked:?}");
            let rows = page(q.clone()).await;
            assert!(rows.len() <= 8);
            let Some(last) = rows.last().cloned() else {
                break;
            };
            walked.extend(rows);
            q = format!("?limit=8&after={last}");
        }
        assert_eq!(walked, sent, "after-paging: order, gaps or duplicates");
        let unique: HashSet<&String> = walked.iter().collect();
        assert_eq!(unique.len(), 30);

        // A window: strictly between two messages, oldest first.
        let window = page(format!("?after={}&before={}", sent[4], sent[10])).await;
        assert_eq!(window, sent[5..10].to_vec());
        // A window with a limit smaller than it: the oldest ones of the window.
        let window = page(format!("?after={}&before={}&limit=2", sent[4], sent[10])).await;
        assert_eq!(window, sent[5..7].to_vec());
        // The exact ends.
        assert_eq!(
            page(format!("?before={}", sent[0])).await,
            Vec::<String>::new()
        );
        assert_eq!(
            page(format!("?after={}", sent[29])).await,
            Vec::<String>::new()
        );
        assert_eq!(page("?limit=1".into()).await, [sent[29].clone()]);
        assert_eq!(page("?limit=100".into()).await, newest_first);

        // Deleted messages leave no hole in the paging.
        alice
            .delete(&format!("/channels/{c}/messages/{}", sent[13]))
            .await;
        let rest = page(format!("?before={}&limit=3", sent[15])).await;
        assert_eq!(rest, [sent[14].clone(), sent[12].clone(), sent[11].clone()]);

        // Bad paging requests.
        for q in [
            "?limit=0",
            "?limit=101",
            "?limit=x",
            "?before=abc",
            "?after=-1",
        ] {
            bob.refused(
                400,
                "invalid_query",
                "GET",
                &format!("/channels/{c}/messages{q}"),
                None,
            )
            .await;
        }
    }));
}

#[test]
fn invites_run_out_expire_and_can_be_revoked() {
    let server = TestServer::start();
    block_on(Box::pin(async {
        let alice = person(&server, "alice").await;
        let bob = person(&server, "bob").await;
        let carol = person(&server, "carol").await;
        let dave = person(&server, "dave").await;
        let guild = alice.post("/guilds", json!({"name": "Doors"})).await;
        let g = id(&guild);
        let c = id(&guild["channels"][0]);

        // One use only. Joining a guild one is already in uses nothing up.
        let once = alice
            .post(&format!("/channels/{c}/invites"), json!({"max_uses": 1}))
            .await;
        assert_eq!(once["max_uses"], 1);
        assert_eq!(once["uses"], 0);
        let once = once["code"].as_str().unwrap().to_string();
        alice.post(&format!("/invites/{once}"), json!({})).await;
        bob.post(&format!("/invites/{once}"), json!({})).await;
        let listed = alice.get(&format!("/guilds/{g}/invites")).await;
        let entry = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["code"] == once.as_str())
            .expect("the invite is listed");
        assert_eq!(entry["uses"], 1);
        carol
            .refused(
                410,
                "invite_expired",
                "POST",
                &format!("/invites/{once}"),
                Some(json!({})),
            )
            .await;
        assert_eq!(preview(&server, &once).await.status, 410);
        carol
            .expect(404, "GET", &format!("/guilds/{g}"), None)
            .await;
        alice
            .refused(
                400,
                "invalid_field",
                "POST",
                &format!("/channels/{c}/invites"),
                Some(json!({"max_uses": 0})),
            )
            .await;

        // Revoked: by a member who did not create it and lacks MANAGE_GUILD, no.
        let open = alice
            .post(&format!("/channels/{c}/invites"), json!({}))
            .await["code"]
            .as_str()
            .unwrap()
            .to_string();
        bob.expect(403, "DELETE", &format!("/invites/{open}"), None)
            .await;
        // By a non-member: unknown.
        carol
            .expect(404, "DELETE", &format!("/invites/{open}"), None)
            .await;
        assert_eq!(preview(&server, &open).await.status, 200);
        alice.delete(&format!("/invites/{open}")).await;
        let gone = preview(&server, &open).await;
        assert_eq!(gone.status, 410);
        assert_eq!(gone.error_code().as_deref(), Some("invite_expired"));
        carol
            .refused(
                410,
                "invite_expired",
                "POST",
                &format!("/invites/{open}"),
                Some(json!({})),
            )
            .await;

        // The creator may revoke their own invite without MANAGE_GUILD.
        let bobs = bob.post(&format!("/channels/{c}/invites"), json!({})).await["code"]
            .as_str()
            .unwrap()
            .to_string();
        bob.delete(&format!("/invites/{bobs}")).await;
        assert_eq!(preview(&server, &bobs).await.status, 410);

        // Expiry by age.
        let short = alice
            .post(
                &format!("/channels/{c}/invites"),
                json!({"max_age_secs": 1}),
            )
            .await;
        assert!(short["expires_at"].as_u64().is_some());
        let short = short["code"].as_str().unwrap().to_string();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        dave.refused(
            410,
            "invite_expired",
            "POST",
            &format!("/invites/{short}"),
            Some(json!({})),
        )
        .await;
        // A never-expiring invite still works.
        let forever = alice
            .post(
                &format!("/channels/{c}/invites"),
                json!({"max_age_secs": 0}),
            )
            .await;
        assert!(forever["expires_at"].is_null());
        dave.post(
            &format!("/invites/{}", forever["code"].as_str().unwrap()),
            json!({}),
        )
        .await;
        dave.get(&format!("/guilds/{g}")).await;
        // Unknown codes.
        dave.expect(404, "POST", "/invites/doesnotexist", Some(json!({})))
            .await;
    }));
}

#[test]
fn moderators_stay_below_their_own_rank() {
    let server = TestServer::start();
    block_on(Box::pin(async {
        let owner = person(&server, "owner").await;
        let moder = person(&server, "moder").await;
        let senior = person(&server, "senior").await;
        let junior = person(&server, "junior").await;
        let guild = owner.post("/guilds", json!({"name": "Ranks"})).await;
        let g = id(&guild);
        let c = id(&guild["channels"][0]);
        let code = owner
            .post(&format!("/channels/{c}/invites"), json!({}))
            .await["code"]
            .as_str()
            .unwrap()
            .to_string();
        for p in [&moder, &senior, &junior] {
            p.post(&format!("/invites/{code}"), json!({})).await;
        }
        let role = |name: &'static str, position: i32, permissions: P| {
            let owner = &owner;
            let g = g.clone();
            async move {
                let r = owner
                    .post(
                        &format!("/guilds/{g}/roles"),
                        json!({"name": name, "position": position,
                               "permissions": permissions.bits()}),
                    )
                    .await;
                assert_eq!(r["position"], position);
                id(&r)
            }
        };
        let mod_perms = P::MANAGE_ROLES | P::KICK_MEMBERS | P::BAN_MEMBERS | P::MANAGE_MESSAGES;
        let mod_role = role("Moderator", 5, mod_perms).await;
        let senior_role = role("Senior", 7, P::NONE).await;
        let peer_role = role("Peer", 5, P::NONE).await;
        let junior_role = role("Junior", 2, P::NONE).await;
        let member_roles = |u: &Person| format!("/guilds/{g}/members/{}/roles", u.id);
        owner
            .put(&format!("{}/{mod_role}", member_roles(&moder)))
            .await;
        owner
            .put(&format!("{}/{senior_role}", member_roles(&senior)))
            .await;
        owner
            .put(&format!("{}/{junior_role}", member_roles(&junior)))
            .await;

        // Editing roles: only strictly below one's own highest role.
        let role_path = |r: &str| format!("/guilds/{g}/roles/{r}");
        for (r, what) in [
            (&senior_role, "a higher role"),
            (&mod_role, "their own role"),
            (&peer_role, "a role at the same position"),
        ] {
            let resp = moder
                .call("PATCH", &role_path(r), Some(json!({"color": 0xff0000})))
                .await;
            assert_eq!(resp.status, 403, "editing {what}: {}", body_text(&resp));
            let resp = moder.call("DELETE", &role_path(r), None).await;
            assert_eq!(resp.status, 403, "deleting {what}: {}", body_text(&resp));
        }
        let edited = moder
            .patch(&role_path(&junior_role), json!({"color": 0x00ff00}))
            .await;
        assert_eq!(edited["color"], 0x00ff00);
        // No lifting a role to one's own rank, no granting what one lacks.
        moder
            .expect(
                403,
                "PATCH",
                &role_path(&junior_role),
                Some(json!({"position": 5})),
            )
            .await;
        moder
            .expect(
                403,
                "PATCH",
                &role_path(&junior_role),
                Some(json!({"permissions": P::ADMINISTRATOR.bits()})),
            )
            .await;
        moder
            .expect(
                403,
                "PATCH",
                &role_path(&junior_role),
                Some(json!({"permissions": P::MANAGE_GUILD.bits()})),
            )
            .await;
        let lifted = moder
            .patch(
                &role_path(&junior_role),
                json!({"position": 4, "permissions": P::KICK_MEMBERS.bits()}),
            )
            .await;
        assert_eq!(lifted["position"], 4);
        // Creating roles: below one's rank only.
        for position in [5, 6, 100] {
            moder
                .expect(
                    403,
                    "POST",
                    &format!("/guilds/{g}/roles"),
                    Some(json!({"name": "sneaky", "position": position})),
                )
                .await;
        }
        let made = moder
            .post(
                &format!("/guilds/{g}/roles"),
                json!({"name": "Helper", "position": 3}),
            )
            .await;
        let helper = id(&made);

        // Assigning: the same rule, for others and for oneself.
        for r in [&senior_role, &mod_role, &peer_role] {
            moder
                .expect(403, "PUT", &format!("{}/{r}", member_roles(&junior)), None)
                .await;
        }
        moder
            .expect(
                403,
                "PUT",
                &format!("{}/{peer_role}", member_roles(&moder)),
                None,
            )
            .await;
        moder
            .expect(
                403,
                "DELETE",
                &format!("{}/{senior_role}", member_roles(&senior)),
                None,
            )
            .await;
        // A lower role still cannot be handed to (or taken from) someone who outranks.
        moder
            .expect(
                403,
                "PUT",
                &format!("{}/{helper}", member_roles(&senior)),
                None,
            )
            .await;
        let j = moder
            .put(&format!("{}/{helper}", member_roles(&junior)))
            .await;
        let mut has: Vec<&str> = j["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        has.sort();
        let mut want = vec![junior_role.as_str(), helper.as_str()];
        want.sort();
        assert_eq!(has, want);

        // Kicking and banning: only people strictly below; never the owner.
        moder
            .refused(
                403,
                "forbidden",
                "DELETE",
                &format!("/guilds/{g}/members/{}", owner.id),
                None,
            )
            .await;
        moder
            .refused(
                403,
                "forbidden",
                "PUT",
                &format!("/guilds/{g}/bans/{}", owner.id),
                Some(json!({})),
            )
            .await;
        moder
            .expect(
                403,
                "DELETE",
                &format!("/guilds/{g}/members/{}", senior.id),
                None,
            )
            .await;
        moder
            .expect(
                403,
                "PUT",
                &format!("/guilds/{g}/bans/{}", senior.id),
                Some(json!({})),
            )
            .await;
        // Junior has KICK_MEMBERS now but is below the moderator.
        junior
            .expect(
                403,
                "DELETE",
                &format!("/guilds/{g}/members/{}", moder.id),
                None,
            )
            .await;
        senior.get(&format!("/guilds/{g}")).await;
        owner
            .get(&format!("/guilds/{g}/members/{}", senior.id))
            .await;
        moder
            .delete(&format!("/guilds/{g}/members/{}", junior.id))
            .await;
        junior
            .expect(404, "GET", &format!("/guilds/{g}"), None)
            .await;

        // The owner outranks everyone, even a role placed at the very top.
        let top = role("Top", i32::MAX - 1, P::ADMINISTRATOR).await;
        owner.put(&format!("{}/{top}", member_roles(&senior))).await;
        senior
            .refused(
                403,
                "forbidden",
                "DELETE",
                &format!("/guilds/{g}/members/{}", owner.id),
                None,
            )
            .await;
        senior
            .expect(403, "DELETE", &format!("/guilds/{g}"), None)
            .await;
        // An administrator below the top can be removed by the owner.
        owner
            .delete(&format!("/guilds/{g}/members/{}", senior.id))
            .await;
    }));
}

#[test]
fn profile_settings_and_guild_order() {
    let server = TestServer::start();
    block_on(Box::pin(async {
        let alice = person(&server, "alice").await;
        let bob = person(&server, "bob").await;

        let me = alice.get("/users/@me").await;
        assert_eq!(me["id"], alice.id.as_str());
        assert_eq!(me["username"], "alice");
        assert_eq!(me["name"], "alice");
        assert_eq!(me["homeserver"], server.origin.as_str());

        // A W3C PushSubscription (its `toJSON()`), with RFC 8291's example keys.
        let keys = json!({
            "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "auth": "BTBZMqHH6r4Tts7J_aSIgg",
        });
        let subscription = json!({
            "endpoint": "https://push.example.org/up/abc",
            "keys": keys,
        });
        let updated = alice
            .patch(
                "/users/@me",
                json!({
                    "name": "Alice Liddell",
                    "bio": "down the rabbit hole",
                    "avatar_color": "#ff8800",
                    "push_subscriptions": [{
                        "endpoint": "https://push.example.org/up/abc",
                        "expirationTime": null,
                        "keys": keys,
                    }],
                }),
            )
            .await;
        assert_eq!(updated["name"], "Alice Liddell");
        assert_eq!(updated["bio"], "down the rabbit hole");
        assert_eq!(updated["avatar_color"], "#ff8800");
        assert_eq!(updated["push_subscriptions"], json!([subscription]));
        let me = alice.get("/users/@me").await;
        assert_eq!(me["name"], "Alice Liddell");
        assert_eq!(me["bio"], "down the rabbit hole");
        assert_eq!(me["avatar_color"], "#ff8800");
        assert_eq!(me["push_subscriptions"], json!([subscription]));
        assert_eq!(me["username"], "alice", "the login name does not change");

        // Others see the public part only.
        let seen = bob.get(&format!("/users/{}", alice.id)).await;
        assert_eq!(seen["name"], "Alice Liddell");
        assert_eq!(seen["bio"], "down the rabbit hole");
        assert_eq!(seen["avatar_color"], "#ff8800");
        for private in [
            "push_subscriptions",
            "fcm_tokens",
            "guild_order",
            "is_admin",
        ] {
            assert!(seen.get(private).is_none(), "{private} leaked: {seen}");
        }

        // A partial update keeps the rest; bad values change nothing.
        alice.patch("/users/@me", json!({"bio": ""})).await;
        for bad in [
            json!({"avatar_color": "orange", "name": "X"}),
            json!({"avatar_color": "#12345", "name": "X"}),
            json!({"push_subscriptions": [{"endpoint": "not a url", "keys": keys}], "name": "X"}),
            json!({"push_subscriptions": [{"endpoint": "ftp://push.example.org/", "keys": keys}], "name": "X"}),
            json!({"push_subscriptions": [{"endpoint": "https://push.example.org/x"}], "name": "X"}),
            json!({"push_subscriptions": [{"endpoint": "https://push.example.org/x",
                "keys": {"p256dh": &keys["p256dh"].as_str().unwrap()[..43], "auth": keys["auth"]}}], "name": "X"}),
            json!({"push_subscriptions": [{"endpoint": "https://push.example.org/x",
                "keys": {"p256dh": keys["p256dh"], "auth": "AAAA"}}], "name": "X"}),
            json!({"push_subscriptions": ["https://push.example.org/x"], "name": "X"}),
            json!({"push_distributors": ["https://push.example.org/x"], "name": "X"}),
            json!({"name": "   "}),
            json!({"nickname": "X"}),
        ] {
            let r = alice.call("PATCH", "/users/@me", Some(bad.clone())).await;
            assert_eq!(r.status, 400, "{bad}: {}", body_text(&r));
        }
        let me = alice.get("/users/@me").await;
        assert_eq!(me["name"], "Alice Liddell");
        assert_eq!(me["bio"], "");
        assert_eq!(me["avatar_color"], "#ff8800");
        assert_eq!(me["push_subscriptions"], json!([subscription]));
        alice
            .patch("/users/@me", json!({"push_subscriptions": []}))
            .await;
        assert_eq!(
            alice.get("/users/@me").await["push_subscriptions"],
            json!([])
        );

        // Guild order.
        let mut made = Vec::new();
        for name in ["One", "Two", "Three", "Four"] {
            made.push(id(&alice.post("/guilds", json!({"name": name})).await));
        }
        assert_eq!(
            alice.guild_ids().await,
            made,
            "by default, in the order joined"
        );
        let order = vec![
            made[2].clone(),
            made[0].clone(),
            made[3].clone(),
            made[1].clone(),
        ];
        let saved = alice
            .patch("/users/@me", json!({"guild_order": order}))
            .await;
        assert_eq!(saved["guild_order"], json!(order));
        assert_eq!(alice.guild_ids().await, order);
        // Guilds missing from the order come after the ordered ones; duplicates and
        // unknown ids do no harm.
        alice
            .patch(
                "/users/@me",
                json!({"guild_order": [made[3], made[3], "12345", made[1]]}),
            )
            .await;
        assert_eq!(
            alice.guild_ids().await,
            [
                made[3].clone(),
                made[1].clone(),
                made[0].clone(),
                made[2].clone()
            ]
        );
        // The order is Alice's alone.
        let code = alice
            .post(
                &format!(
                    "/channels/{}/invites",
                    id(&alice.get(&format!("/guilds/{}", made[1])).await["channels"][0])
                ),
                json!({}),
            )
            .await["code"]
            .as_str()
            .unwrap()
            .to_string();
        bob.post(&format!("/invites/{code}"), json!({})).await;
        assert_eq!(bob.guild_ids().await, [made[1].clone()]);
        assert_eq!(bob.get("/users/@me").await["guild_order"], json!([]));
    }));
}

/// A request whose body the server does not read (joining takes no fields, but clients
/// send `{}`) must not spoil the kept-alive connection for the next request: that one
/// used to wait for the server's 60-second header timeout now and then.
#[test]
fn an_unread_request_body_does_not_stall_the_next_request() {
    let server = TestServer::start();
    block_on(Box::pin(async {
        let alice = person(&server, "alice").await;
        let bob = person(&server, "bob").await;
        let guild = alice.post("/guilds", json!({"name": "Keepalive"})).await;
        let g = id(&guild);
        let c = id(&guild["channels"][0]);
        let code = alice
            .post(&format!("/channels/{c}/invites"), json!({}))
            .await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let limit = std::time::Duration::from_secs(5);
        for round in 0..150 {
            for (method, path, body) in [
                (
                    "POST",
                    format!("/invites/{code}"),
                    Some(json!({"unused": round})),
                ),
                ("GET", format!("/guilds/{g}/members/@me"), None),
            ] {
                let started = std::time::Instant::now();
                let answer = futures_lite::future::or(
                    async { Some(bob.call(method, &path, body).await) },
                    async {
                        smol::Timer::after(limit).await;
                        None
                    },
                )
                .await;
                let answer = answer.unwrap_or_else(|| {
                    panic!("round {round}: {method} {path} took more than {limit:?}")
                });
                assert!(
                    (200..300).contains(&answer.status),
                    "round {round}: {method} {path}: {} {} after {:?}",
                    answer.status,
                    body_text(&answer),
                    started.elapsed()
                );
            }
        }
    }));
}
