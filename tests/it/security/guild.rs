//! Inside a guild: event audiences (resume and live), overwrite and role escalation (review items 5, 6, 7).

use crate::common::*;
use futures_lite::future;
use hearth::client::{Client, EventStream, GatewayMessage, Response};
use hearth::model::Permissions as P;
use serde_json::{json, Value};
use std::time::Duration;

/// How long one expected frame may take.
const WAIT: Duration = Duration::from_secs(20);

/// A signed-in user of one server.
struct Member {
    c: Client,
    origin: String,
    id: String,
    name: &'static str,
}

impl Member {
    async fn new(server: &TestServer, name: &'static str) -> Member {
        let c = user(server, name).await;
        let id = c.user_id(&server.origin).expect("signed in");
        Member {
            c,
            origin: server.origin.clone(),
            id,
            name,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let url = format!("{}/api/v1{path}", self.origin);
        self.c
            .send(&url, method, body, true)
            .await
            .unwrap_or_else(|e| panic!("{} {method} {path}: {e}", self.name))
    }

    /// A request that must succeed; its JSON (null when empty).
    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&r.status),
            "{} {method} {path}: {} {}",
            self.name,
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json().unwrap_or(Value::Null)
    }

    /// A request that must be refused with `status` in the one JSON error shape.
    async fn refused(&self, status: u16, method: &str, path: &str, body: Option<Value>) {
        let r = self.call(method, path, body).await;
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(
            r.status, status,
            "{} {method} {path} should be refused: {text}",
            self.name
        );
        let error = r.json().unwrap_or(Value::Null);
        assert!(
            error["error"].is_string() && error["message"].is_string(),
            "{method} {path}: error shape {text}"
        );
    }

    async fn say(&self, channel: &str, content: &str) -> String {
        let m = self
            .ok(
                "POST",
                &format!("/channels/{channel}/messages"),
                Some(json!({ "content": content })),
            )
            .await;
        m["id"].as_str().expect("message id").to_string()
    }

    async fn events(&self, resume: Option<u64>) -> EventStream {
        self.c
            .events(&self.origin, resume)
            .await
            .unwrap_or_else(|e| panic!("{} opens an event stream: {e}", self.name))
    }
}

async fn next(stream: &EventStream) -> Option<GatewayMessage> {
    future::or(async { stream.next().await }, async {
        smol::Timer::after(WAIT).await;
        None
    })
    .await
}

/// Every event of a resume from `seq` up to `ready`: (seq, kind, data).
async fn replay(who: &Member, seq: u64) -> Vec<(u64, String, Value)> {
    let stream = who.events(Some(seq)).await;
    let mut out = Vec::new();
    loop {
        match next(&stream).await {
            Some(GatewayMessage::Event { seq, kind, data }) => out.push((seq, kind, data)),
            Some(GatewayMessage::Ready { .. }) => return out,
            Some(GatewayMessage::Ephemeral { .. }) => {}
            other => panic!("{}: during replay got {other:?}", who.name),
        }
    }
}

/// Live events until a `message_create` whose content is `marker` (included).
async fn until_marker(who: &Member, stream: &EventStream, marker: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    loop {
        match next(stream).await {
            Some(GatewayMessage::Event { kind, data, .. }) => {
                let done = kind == "message_create" && data["content"] == marker;
                out.push((kind, data));
                if done {
                    return out;
                }
            }
            Some(GatewayMessage::Ephemeral { .. }) => {}
            other => panic!("{}: waiting for {marker:?} got {other:?}", who.name),
        }
    }
}

/// A live stream that has passed `ready`.
async fn live(who: &Member) -> EventStream {
    let stream = who.events(None).await;
    loop {
        match next(&stream).await {
            Some(GatewayMessage::Ready { .. }) => return stream,
            Some(GatewayMessage::Ephemeral { .. }) => {}
            other => panic!("{}: expected ready, got {other:?}", who.name),
        }
    }
}

/// A guild owned by `owner`: (guild id, first channel id, an invite code).
async fn guild(owner: &Member, name: &str) -> (String, String, String) {
    let guild = guild_on(&owner.c, &owner.origin, name).await;
    (guild.id, guild.channel, guild.code)
}

async fn join(who: &Member, code: &str) {
    crate::common::join(&who.c, &who.origin, code).await;
}

async fn role(owner: &Member, guild: &str, name: &str, position: i32, permissions: P) -> String {
    let r = owner
        .ok(
            "POST",
            &format!("/guilds/{guild}/roles"),
            Some(json!({"name": name, "position": position, "permissions": permissions.bits()})),
        )
        .await;
    r["id"].as_str().expect("role id").to_string()
}

async fn give(owner: &Member, guild: &str, who: &Member, role: &str) {
    owner
        .ok(
            "PUT",
            &format!("/guilds/{guild}/members/{}/roles/{role}", who.id),
            None,
        )
        .await;
}

fn texts(events: &[(u64, String, Value)]) -> String {
    events
        .iter()
        .map(|(seq, kind, data)| format!("{seq} {kind} {data}\n"))
        .collect()
}

// ---- item 5: resume replays only what REST shows now ----

#[test]
fn resume_replays_only_what_rest_would_show_now() {
    let server = TestServer::start();
    block_on(async {
        let alice = Member::new(&server, "alice").await;
        let bob = Member::new(&server, "bob").await;
        let carol = Member::new(&server, "carol").await;
        let (g, c, code) = guild(&alice, "Home").await;
        // Before anyone joins: a guild name that was replaced, a message that stays, one
        // deleted and one edited.
        alice
            .ok(
                "PATCH",
                &format!("/guilds/{g}"),
                Some(json!({"name": "OLD-GUILD-NAME"})),
            )
            .await;
        alice
            .ok(
                "PATCH",
                &format!("/guilds/{g}"),
                Some(json!({"name": "Hearthside"})),
            )
            .await;
        let kept = alice.say(&c, "KEPT-TEXT").await;
        let deleted = alice.say(&c, "DELETED-TEXT").await;
        alice
            .ok("DELETE", &format!("/channels/{c}/messages/{deleted}"), None)
            .await;
        let edited = alice.say(&c, "ORIGINAL-TEXT").await;
        alice
            .ok(
                "PATCH",
                &format!("/channels/{c}/messages/{edited}"),
                Some(json!({"content": "CURRENT-TEXT"})),
            )
            .await;
        // History is for readers only: @everyone loses it, a role gives it back.
        alice
            .ok(
                "PATCH",
                &format!("/guilds/{g}/roles/{g}"),
                Some(json!({"permissions": P::DEFAULT_EVERYONE.remove(P::READ_MESSAGE_HISTORY).bits()})),
            )
            .await;
        let readers = role(&alice, &g, "readers", 1, P::READ_MESSAGE_HISTORY).await;
        join(&bob, &code).await;
        join(&carol, &code).await;
        give(&alice, &g, &carol, &readers).await;

        // What REST shows each of them.
        bob.refused(403, "GET", &format!("/channels/{c}/messages"), None)
            .await;
        let history = channel_history(&carol.c, &server.origin, &c).await;
        let shown: Vec<&str> = history
            .iter()
            .map(|m| m["content"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(shown, ["CURRENT-TEXT", "KEPT-TEXT"]);

        // Bob, without history, resumes from the start of the log: no message event of
        // the channel, and nothing of the guild from before he joined.
        let bobs = replay(&bob, 0).await;
        let all = texts(&bobs);
        for secret in [
            "KEPT-TEXT",
            "DELETED-TEXT",
            "ORIGINAL-TEXT",
            "OLD-GUILD-NAME",
        ] {
            assert!(!all.contains(secret), "bob's replay shows {secret}:\n{all}");
        }
        assert!(
            bobs.iter().all(|(_, kind, _)| !kind.starts_with("message_")
                && !kind.starts_with("reaction_")
                && !kind.starts_with("pin_")),
            "bob has no history permission, yet got:\n{all}"
        );
        assert!(
            bobs.iter()
                .any(|(_, kind, d)| kind == "member_add" && d["user_id"] == bob.id),
            "bob's own join is replayed:\n{all}"
        );

        // Carol, a reader: messages as they are now; the deleted one only as a deletion.
        let carols = replay(&carol, 0).await;
        let all = texts(&carols);
        for secret in ["DELETED-TEXT", "ORIGINAL-TEXT", "OLD-GUILD-NAME"] {
            assert!(
                !all.contains(secret),
                "carol's replay shows {secret}:\n{all}"
            );
        }
        let created: Vec<(String, String)> = carols
            .iter()
            .filter(|(_, kind, _)| kind == "message_create")
            .map(|(_, _, d)| {
                (
                    d["id"].as_str().unwrap_or("").to_string(),
                    d["content"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            created,
            [
                (kept.clone(), "KEPT-TEXT".to_string()),
                (edited.clone(), "CURRENT-TEXT".to_string())
            ],
            "{all}"
        );
        let deletion = carols
            .iter()
            .find(|(_, kind, _)| kind == "message_delete")
            .unwrap_or_else(|| panic!("the deletion is replayed:\n{all}"));
        assert_eq!(deletion.2["id"], deleted.as_str());
        assert!(deletion.2.get("content").is_none(), "{all}");

        // Live: an edit of an old message is history too; a new message is not.
        let stream = live(&bob).await;
        alice
            .ok(
                "PATCH",
                &format!("/channels/{c}/messages/{kept}"),
                Some(json!({"content": "EDITED-LIVE"})),
            )
            .await;
        alice.say(&c, "new for everyone").await;
        let got = until_marker(&bob, &stream, "new for everyone").await;
        assert_eq!(
            got.len(),
            1,
            "bob, without history, got the edit of an old message: {got:?}"
        );
    });
}

// ---- item 6: overwrites and role assignment grant only what the editor holds ----

#[test]
fn overwrites_and_role_assignment_cannot_escalate() {
    let server = TestServer::start();
    block_on(async {
        let alice = Member::new(&server, "alice").await;
        let bob = Member::new(&server, "bob").await;
        let carol = Member::new(&server, "carol").await;
        let (g, c, code) = guild(&alice, "Home").await;
        join(&bob, &code).await;
        join(&carol, &code).await;
        let moderator = role(&alice, &g, "Moderator", 10, P::MANAGE_MESSAGES).await;
        let editor = role(
            &alice,
            &g,
            "Editor",
            2,
            P::MANAGE_CHANNELS | P::MANAGE_ROLES,
        )
        .await;
        let pinner = role(&alice, &g, "Pinner", 1, P::MANAGE_MESSAGES).await;
        give(&alice, &g, &carol, &moderator).await;
        give(&alice, &g, &bob, &editor).await;
        let alices = alice.say(&c, "alice's words").await;
        let grab = (P::MANAGE_MESSAGES | P::MENTION_EVERYONE).bits();
        let channel = format!("/channels/{c}");

        // Bob grants himself what he lacks through overwrites: for @everyone, for his
        // own role, for himself.
        for target in [
            json!({"role": g}),
            json!({"role": editor}),
            json!({"member": bob.id}),
        ] {
            bob.refused(
                403,
                "PATCH",
                &channel,
                Some(json!({"overwrites": [{"target": target, "allow": grab, "deny": 0}]})),
            )
            .await;
        }
        // ... or in a channel he creates.
        bob.refused(
            403,
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({"name": "mine", "overwrites": [
                {"target": {"role": g}, "allow": grab, "deny": 0}
            ]})),
        )
        .await;
        // ... or by taking a role below his that holds it.
        bob.refused(
            403,
            "PUT",
            &format!("/guilds/{g}/members/{}/roles/{pinner}", bob.id),
            None,
        )
        .await;
        bob.refused(
            403,
            "DELETE",
            &format!("/channels/{c}/messages/{alices}"),
            None,
        )
        .await;

        // Bob hides the channel from the higher Moderator role.
        bob.refused(
            403,
            "PATCH",
            &channel,
            Some(json!({"overwrites": [
                {"target": {"role": moderator}, "allow": 0, "deny": P::VIEW_CHANNEL.bits()}
            ]})),
        )
        .await;
        bob.refused(
            403,
            "PATCH",
            &channel,
            Some(json!({"overwrites": [
                {"target": {"member": carol.id}, "allow": 0, "deny": P::VIEW_CHANNEL.bits()}
            ]})),
        )
        .await;
        carol.ok("GET", &channel, None).await;
        let now = alice.ok("GET", &channel, None).await;
        assert_eq!(now["overwrites"], json!([]), "nothing was stored");

        // What he holds, for those below him, he may still set and take back.
        let mute = json!({"overwrites": [
            {"target": {"role": g}, "allow": 0, "deny": P::SEND_MESSAGES.bits()}
        ]});
        bob.ok("PATCH", &channel, Some(mute)).await;
        // And an overwrite set by the owner for the Moderator stays as it is when Bob
        // changes another.
        let moderators_own =
            json!({"target": {"role": moderator}, "allow": P::MENTION_EVERYONE.bits(), "deny": 0});
        alice
            .ok(
                "PATCH",
                &channel,
                Some(json!({"overwrites": [moderators_own.clone()]})),
            )
            .await;
        bob.ok(
            "PATCH",
            &channel,
            Some(json!({"overwrites": [
                moderators_own,
                {"target": {"role": g}, "allow": 0, "deny": P::ADD_REACTIONS.bits()}
            ]})),
        )
        .await;
        bob.refused(403, "PATCH", &channel, Some(json!({"overwrites": []})))
            .await;

        // A private category Bob may manage: its channel opens to everyone if it leaves
        // the category, by a move or by deleting the category.
        let dave = Member::new(&server, "dave").await;
        join(&dave, &code).await;
        let private = json!([
            {"target": {"role": g}, "allow": 0, "deny": P::VIEW_CHANNEL.bits()},
            {"target": {"role": editor}, "allow": P::VIEW_CHANNEL.bits(), "deny": 0},
            {"target": {"role": moderator}, "allow": P::VIEW_CHANNEL.bits(), "deny": 0},
        ]);
        let category = alice
            .ok(
                "POST",
                &format!("/guilds/{g}/channels"),
                Some(json!({"name": "staff", "kind": "category", "overwrites": private})),
            )
            .await["id"]
            .as_str()
            .expect("category id")
            .to_string();
        let plans = alice
            .ok(
                "POST",
                &format!("/guilds/{g}/channels"),
                Some(json!({"name": "plans", "parent_id": category})),
            )
            .await["id"]
            .as_str()
            .expect("channel id")
            .to_string();
        dave.refused(404, "GET", &format!("/channels/{plans}"), None)
            .await;
        bob.refused(
            403,
            "PATCH",
            &format!("/channels/{plans}"),
            Some(json!({"parent_id": "0"})),
        )
        .await;
        bob.refused(403, "DELETE", &format!("/channels/{category}"), None)
            .await;
        dave.refused(404, "GET", &format!("/channels/{plans}"), None)
            .await;
        // Moving a channel in, under the Moderator's overwrite, is a change for them too.
        bob.refused(403, "PATCH", &channel, Some(json!({"parent_id": category})))
            .await;
        dave.ok("GET", &channel, None).await;
    });
}

// ---- item 7: invite codes and ban details only for those who may list them ----

#[test]
fn invite_codes_and_ban_reasons_reach_only_those_who_may_list_them() {
    let server = TestServer::start();
    block_on(async {
        let alice = Member::new(&server, "alice").await;
        let bob = Member::new(&server, "bob").await;
        let dave = Member::new(&server, "dave").await;
        let carol = Member::new(&server, "carol").await;
        let (g, c, code) = guild(&alice, "Home").await;
        for who in [&bob, &dave, &carol] {
            join(who, &code).await;
        }
        let staff = role(&alice, &g, "staff", 5, P::MANAGE_GUILD | P::BAN_MEMBERS).await;
        give(&alice, &g, &dave, &staff).await;
        let start = bob.events(None).await;
        let first = match next(&start).await {
            Some(GatewayMessage::Ready { seq }) => seq,
            other => panic!("expected ready, got {other:?}"),
        };
        drop(start);
        let bobs = live(&bob).await;
        let daves = live(&dave).await;

        let invite = bob
            .ok(
                "POST",
                &format!("/channels/{c}/invites"),
                Some(json!({"max_uses": 3})),
            )
            .await;
        let bobs_code = invite["code"].as_str().expect("code").to_string();
        let staff_code = alice
            .ok("POST", &format!("/channels/{c}/invites"), Some(json!({})))
            .await["code"]
            .as_str()
            .expect("code")
            .to_string();
        alice
            .ok(
                "PUT",
                &format!("/guilds/{g}/bans/{}", carol.id),
                Some(json!({"reason": "SECRET-REASON"})),
            )
            .await;
        alice.say(&c, "marker").await;

        // Bob may not list invites or bans over REST, so the gateway does not tell him.
        bob.refused(403, "GET", &format!("/guilds/{g}/invites"), None)
            .await;
        bob.refused(403, "GET", &format!("/guilds/{g}/bans"), None)
            .await;
        let got = until_marker(&bob, &bobs, "marker").await;
        let text = format!("{got:?}");
        assert!(
            !text.contains(&staff_code) && !text.contains("SECRET-REASON"),
            "bob learnt an invite code or a ban reason: {text}"
        );
        // His own invite he may hear of again (he got it in the answer anyway).
        assert!(
            got.iter().all(|(kind, d)| kind != "ban_add"
                && (kind != "invite_create" || d["code"] == bobs_code.as_str())),
            "{text}"
        );
        assert!(
            got.iter()
                .any(|(kind, d)| kind == "member_remove" && d["user_id"] == carol.id),
            "members still see carol leave: {text}"
        );
        // Nor does a resume.
        let again = replay(&bob, first).await;
        let text = texts(&again);
        assert!(
            !text.contains(&staff_code) && !text.contains("SECRET-REASON"),
            "bob's resume shows an invite code or a ban reason: {text}"
        );

        // Dave may list both: he gets both, with the details.
        let got = until_marker(&dave, &daves, "marker").await;
        let codes: Vec<&str> = got
            .iter()
            .filter(|(kind, _)| kind == "invite_create")
            .map(|(_, d)| d["code"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(codes, [bobs_code.as_str(), staff_code.as_str()], "{got:?}");
        let ban = got
            .iter()
            .find(|(kind, _)| kind == "ban_add")
            .unwrap_or_else(|| panic!("dave gets the ban: {got:?}"));
        assert_eq!(
            (ban.1["reason"].as_str(), ban.1["banned_by"].as_str()),
            (Some("SECRET-REASON"), Some(alice.id.as_str()))
        );
    });
}
