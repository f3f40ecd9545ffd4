//! Every authenticated route of the protocol table (docs/protocol.md) (and the account and voice
//! routes next to it), each called by five callers:
//!
//! - **a** nobody: no token at all → 401 with a `WWW-Authenticate: DPoP …` challenge;
//! - **b** a signed-in user who is not a member of the guild → 404 (the guild, channel or
//!   invite stays invisible);
//! - **c** a member whose only role is `@everyone`, which holds nothing but the base the
//!   route needs to see its channel (`VIEW_CHANNEL`, and `READ_MESSAGE_HISTORY` where
//!   that is not what is being tested) → 403;
//! - **c2** a member holding a role with every permission except the needed ones (and
//!   except administrator) → 403, so a route that checks the wrong bit is caught;
//! - **d** a member holding exactly the needed permissions, through a role → 2xx.
//!
//! Every row gets a fresh guild, so destructive calls cannot disturb other rows. Routes
//! that are not guild-scoped say what their b/c columns mean, or that they do not apply.
//! On failure the whole matrix is printed, naming each route and caller.

use crate::common::*;
use hearth::client::{Client, Response};
use hearth::model::Permissions as P;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

const PASSWORD: &str = "password-of-some-length";

/// Who makes a call.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Who {
    /// No token, no proof.
    Nobody,
    /// Signed in, never a member of the row's guild.
    Outsider,
    /// Member with `@everyone` only.
    Bare,
    /// Member with a role holding everything but the needed permissions.
    AllBut,
    /// Member with a role holding exactly the needed permissions.
    Granted,
    /// The guild's owner.
    Owner,
    /// A member who is the target of moderation (banned first where the row says so).
    Victim,
    /// A user registered for this row only (for calls that sign the caller out).
    Fresh,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Nobody => "nobody",
            Who::Outsider => "outsider",
            Who::Bare => "bare member",
            Who::AllBut => "all-but",
            Who::Granted => "granted",
            Who::Owner => "owner",
            Who::Victim => "banned",
            Who::Fresh => "self",
        }
    }
}

/// What a caller should get.
#[derive(Clone, Copy)]
enum Exp {
    Is(u16),
    /// The column does not apply to this route (why).
    Na(&'static str),
}

#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Needs no guild fixture.
    User,
    /// Gets a fresh guild.
    Guild,
}

/// Extra state a row needs before the calls.
#[derive(Clone, Copy, PartialEq)]
enum Prep {
    None,
    /// The owner pins `{m}`.
    PinMessage,
    /// The victim holds role `{r}`.
    VictimHasRole,
    /// The outsider is banned.
    BanOutsider,
    /// The victim is banned (and so no longer a member).
    BanVictim,
    /// A fresh user with a second signed-in device `{dev}`.
    SecondDevice,
    /// A fresh user (the caller of d).
    FreshUser,
    /// The victim is connected to voice channel `{vc}` for the whole row.
    VictimInVoice,
}

#[derive(Clone, Copy)]
enum Body {
    Empty,
    Json(&'static str),
    Bytes(&'static str, &'static [u8]),
}

struct Row {
    method: &'static str,
    path: &'static str,
    body: Body,
    scope: Scope,
    /// Permissions of `@everyone` in the row's guild.
    base: P,
    /// Permissions of the role the granted member holds.
    grant: P,
    prep: Prep,
    callers: [(Who, Exp); 5],
}

const COLUMNS: [&str; 5] = ["a", "b", "c", "c2", "d"];

fn guild_row(method: &'static str, path: &'static str, base: P, grant: P, ok: u16) -> Row {
    Row {
        method,
        path,
        body: Body::Empty,
        scope: Scope::Guild,
        base,
        grant,
        prep: Prep::None,
        callers: [
            (Who::Nobody, Exp::Is(401)),
            (Who::Outsider, Exp::Is(404)),
            (Who::Bare, Exp::Is(403)),
            (Who::AllBut, Exp::Is(403)),
            (Who::Granted, Exp::Is(ok)),
        ],
    }
}

/// A guild route any member may use.
fn member_row(method: &'static str, path: &'static str, ok: u16) -> Row {
    let mut row = guild_row(method, path, P::NONE, P::NONE, ok);
    row.callers[2].1 = Exp::Is(ok);
    row.callers[3].1 = Exp::Is(ok);
    row
}

/// A route about the caller's own account.
fn user_row(method: &'static str, path: &'static str, ok: u16) -> Row {
    Row {
        method,
        path,
        body: Body::Empty,
        scope: Scope::User,
        base: P::NONE,
        grant: P::NONE,
        prep: Prep::None,
        callers: [
            (Who::Nobody, Exp::Is(401)),
            (Who::Outsider, Exp::Na("about the caller's own account")),
            (Who::Bare, Exp::Na("not guild-scoped")),
            (Who::AllBut, Exp::Na("not guild-scoped")),
            (Who::Granted, Exp::Is(ok)),
        ],
    }
}

impl Row {
    fn json(mut self, body: &'static str) -> Row {
        self.body = Body::Json(body);
        self
    }
    fn bytes(mut self, content_type: &'static str, bytes: &'static [u8]) -> Row {
        self.body = Body::Bytes(content_type, bytes);
        self
    }
    fn prep(mut self, prep: Prep) -> Row {
        self.prep = prep;
        self
    }
    fn caller(mut self, column: usize, who: Who, exp: Exp) -> Row {
        self.callers[column] = (who, exp);
        self
    }
    fn expect(mut self, column: usize, exp: Exp) -> Row {
        self.callers[column].1 = exp;
        self
    }
    fn name(&self) -> String {
        let name = match self.body {
            Body::Json(text) if text.len() > 2 => format!("{} {} {text}", self.method, self.path),
            _ => format!("{} {}", self.method, self.path),
        };
        match self.prep {
            Prep::VictimInVoice => format!("{name} (victim in voice)"),
            _ => name,
        }
    }
}

fn rows() -> Vec<Row> {
    let v = P::VIEW_CHANNEL;
    let vr = P::VIEW_CHANNEL | P::READ_MESSAGE_HISTORY;
    let none = P::NONE;
    vec![
        // ---- account ----
        user_row("GET", "/users/@me", 200),
        user_row("PATCH", "/users/@me", 200).json(r#"{"bio": "in the matrix"}"#),
        user_row("GET", "/users/@me/guilds", 200),
        user_row("GET", "/users/@me/key-backup", 200),
        user_row("GET", "/users/@me/devices", 200),
        user_row("DELETE", "/users/@me/devices/{dev}", 204)
            .prep(Prep::SecondDevice)
            .expect(1, Exp::Is(404)) // someone else's device: not among the caller's
            .caller(4, Who::Fresh, Exp::Is(204)),
        user_row("POST", "/auth/logout", 204)
            .json("{}")
            .prep(Prep::FreshUser)
            .caller(4, Who::Fresh, Exp::Is(204)),
        user_row("GET", "/users/{owner}", 200).expect(1, Exp::Is(200)), // public profile
        user_row("POST", "/guilds", 201).json(r#"{"name": "Mine"}"#),
        // ---- guilds ----
        member_row("GET", "/guilds/{g}", 200),
        guild_row("PATCH", "/guilds/{g}", none, P::MANAGE_GUILD, 200)
            .json(r#"{"description": "renamed"}"#),
        guild_row("DELETE", "/guilds/{g}", none, none, 204).caller(4, Who::Owner, Exp::Is(204)),
        member_row("GET", "/guilds/{g}/channels", 200),
        guild_row(
            "POST",
            "/guilds/{g}/channels",
            none,
            P::MANAGE_CHANNELS,
            201,
        )
        .json(r#"{"name": "added", "kind": "text"}"#),
        member_row("GET", "/guilds/{g}/roles", 200),
        guild_row("POST", "/guilds/{g}/roles", none, P::MANAGE_ROLES, 201)
            .json(r#"{"name": "added"}"#),
        guild_row("PATCH", "/guilds/{g}/roles/{r}", none, P::MANAGE_ROLES, 200)
            .json(r#"{"color": 255}"#),
        guild_row(
            "DELETE",
            "/guilds/{g}/roles/{r}",
            none,
            P::MANAGE_ROLES,
            204,
        ),
        member_row("GET", "/guilds/{g}/members", 200),
        member_row("GET", "/guilds/{g}/members/{owner}", 200),
        guild_row(
            "PATCH",
            "/guilds/{g}/members/@me",
            none,
            P::CHANGE_NICKNAME,
            200,
        )
        .json(r#"{"nick": "nick"}"#),
        member_row("DELETE", "/guilds/{g}/members/@me", 204), // leave
        guild_row(
            "DELETE",
            "/guilds/{g}/members/{victim}",
            none,
            P::KICK_MEMBERS,
            204,
        ),
        guild_row(
            "PUT",
            "/guilds/{g}/members/{victim}/roles/{r}",
            none,
            P::MANAGE_ROLES,
            200,
        ),
        guild_row(
            "DELETE",
            "/guilds/{g}/members/{victim}/roles/{r}",
            none,
            P::MANAGE_ROLES,
            200,
        )
        .prep(Prep::VictimHasRole),
        guild_row("GET", "/guilds/{g}/bans", none, P::BAN_MEMBERS, 200),
        guild_row(
            "PUT",
            "/guilds/{g}/bans/{victim}",
            none,
            P::BAN_MEMBERS,
            200,
        )
        .json(r#"{"reason": "matrix"}"#),
        guild_row(
            "DELETE",
            "/guilds/{g}/bans/{outsider}",
            none,
            P::BAN_MEMBERS,
            204,
        )
        .prep(Prep::BanOutsider),
        guild_row("GET", "/guilds/{g}/invites", none, P::MANAGE_GUILD, 200),
        // ---- channels ----
        // Without VIEW_CHANNEL the channel is invisible: 404, not 403.
        guild_row("GET", "/channels/{c}", none, v, 200)
            .expect(2, Exp::Is(404))
            .expect(3, Exp::Is(404)),
        guild_row("PATCH", "/channels/{c}", v, P::MANAGE_CHANNELS, 200)
            .json(r#"{"topic": "new topic"}"#),
        guild_row(
            "PATCH",
            "/channels/{c}",
            v,
            P::MANAGE_CHANNELS | P::MANAGE_ROLES,
            200,
        )
        .json(r#"{"overwrites": []}"#),
        guild_row("DELETE", "/channels/{c}", v, P::MANAGE_CHANNELS, 204),
        guild_row(
            "GET",
            "/channels/{c}/messages",
            v,
            P::READ_MESSAGE_HISTORY,
            200,
        ),
        guild_row("POST", "/channels/{c}/messages", v, P::SEND_MESSAGES, 201)
            .json(r#"{"content": "hello"}"#),
        guild_row(
            "GET",
            "/channels/{c}/messages/{m}",
            v,
            P::READ_MESSAGE_HISTORY,
            200,
        ),
        // Editing: the author only (c2 holds MANAGE_MESSAGES and still may not).
        guild_row("PATCH", "/channels/{c}/messages/{mine}", v, none, 200)
            .json(r#"{"content": "edited"}"#),
        // Deleting someone else's message: MANAGE_MESSAGES.
        guild_row(
            "DELETE",
            "/channels/{c}/messages/{m}",
            v,
            P::MANAGE_MESSAGES,
            204,
        ),
        // Deleting one's own message: the author.
        guild_row("DELETE", "/channels/{c}/messages/{mine}", v, none, 204)
            .expect(3, Exp::Na("holds MANAGE_MESSAGES, which also allows it")),
        // A new emoji: ADD_REACTIONS.
        guild_row(
            "PUT",
            "/channels/{c}/messages/{m}/reactions/%F0%9F%8E%89",
            vr,
            P::ADD_REACTIONS,
            200,
        ),
        // Taking back one's own reaction: READ_MESSAGE_HISTORY (d reacted 👍 before).
        guild_row(
            "DELETE",
            "/channels/{c}/messages/{m}/reactions/%F0%9F%91%8D",
            v,
            P::READ_MESSAGE_HISTORY,
            200,
        ),
        // Removing someone else's reaction: MANAGE_MESSAGES.
        guild_row(
            "DELETE",
            "/channels/{c}/messages/{m}/reactions/%F0%9F%91%8D/{owner}",
            vr,
            P::MANAGE_MESSAGES,
            200,
        ),
        guild_row("GET", "/channels/{c}/pins", v, P::READ_MESSAGE_HISTORY, 200),
        guild_row("PUT", "/channels/{c}/pins/{m}", v, P::MANAGE_MESSAGES, 200),
        guild_row(
            "DELETE",
            "/channels/{c}/pins/{m}",
            v,
            P::MANAGE_MESSAGES,
            200,
        )
        .prep(Prep::PinMessage),
        guild_row("POST", "/channels/{c}/invites", v, P::CREATE_INVITE, 201).json("{}"),
        guild_row(
            "POST",
            "/channels/{c}/files?filename=m.txt",
            v,
            P::SEND_MESSAGES | P::ATTACH_FILES,
            201,
        )
        .bytes("text/plain", b"matrix upload"),
        guild_row(
            "GET",
            "/channels/{c}/files/{file}",
            v,
            P::READ_MESSAGE_HISTORY,
            200,
        ),
        // ---- invites ----
        // Joining is for people outside the guild; a banned user may not; a member
        // joining again is a no-op success.
        guild_row("POST", "/invites/{code}", none, none, 200)
            .json("{}")
            .prep(Prep::BanVictim)
            .caller(1, Who::Outsider, Exp::Is(200))
            .caller(2, Who::Victim, Exp::Is(403))
            .expect(3, Exp::Na("a member: same as d"))
            .caller(4, Who::Granted, Exp::Is(200)),
        // Revoking: the creator or MANAGE_GUILD.
        guild_row("DELETE", "/invites/{code}", none, P::MANAGE_GUILD, 204),
        // ---- voice ----
        // A ticket: CONNECT in a voice channel (SPEAK is not needed: without it one
        // joins to listen only).
        guild_row("POST", "/channels/{vc}/voice", v, P::CONNECT, 200).json("{}"),
        // Who is in a voice channel: seeing it is enough; unseen, it is unknown.
        guild_row("GET", "/channels/{vc}/voice", none, v, 200)
            .expect(2, Exp::Is(404))
            .expect(3, Exp::Is(404)),
        // Everyone in the guild's voice channels: any member (filtered to what they see).
        member_row("GET", "/guilds/{g}/voice", 200),
        // Muting or deafening a member who is not connected: guild-wide permissions.
        guild_row(
            "PATCH",
            "/guilds/{g}/voice/{victim}",
            none,
            P::MUTE_MEMBERS,
            200,
        )
        .json(r#"{"mute": true}"#),
        guild_row(
            "PATCH",
            "/guilds/{g}/voice/{victim}",
            none,
            P::DEAFEN_MEMBERS,
            200,
        )
        .json(r#"{"deaf": true}"#),
        // A member connected to {vc}: the permissions in that channel, where voice
        // permissions count only with CONNECT (c2 without CONNECT alone is refused too).
        guild_row(
            "PATCH",
            "/guilds/{g}/voice/{victim}",
            v,
            P::CONNECT | P::MUTE_MEMBERS,
            200,
        )
        .json(r#"{"mute": true}"#)
        .prep(Prep::VictimInVoice),
        guild_row(
            "PATCH",
            "/guilds/{g}/voice/{victim}",
            v,
            P::CONNECT | P::DEAFEN_MEMBERS,
            200,
        )
        .json(r#"{"deaf": true}"#)
        .prep(Prep::VictimInVoice),
        // Moving: MOVE_MEMBERS in both channels (the victim may connect to both).
        guild_row(
            "PATCH",
            "/guilds/{g}/voice/{victim}",
            v,
            P::CONNECT | P::MOVE_MEMBERS,
            200,
        )
        .json(r#"{"channel_id": "{vc2}"}"#)
        .prep(Prep::VictimInVoice),
        // Disconnecting: MOVE_MEMBERS.
        guild_row(
            "PATCH",
            "/guilds/{g}/voice/{victim}",
            v,
            P::CONNECT | P::MOVE_MEMBERS,
            200,
        )
        .json(r#"{"channel_id": null}"#)
        .prep(Prep::VictimInVoice),
        // Moving a member who is not connected: 404 `not_in_voice`, but only for a caller
        // who could move members; others get 403 and learn nothing about who is connected.
        guild_row(
            "PATCH",
            "/guilds/{g}/voice/{victim}",
            none,
            P::MOVE_MEMBERS,
            404,
        )
        .json(r#"{"channel_id": "{vc}"}"#),
    ]
}

/// The users every row shares.
struct Cast {
    owner: Client,
    outsider: Client,
    bare: Client,
    allbut: Client,
    granted: Client,
    victim: Client,
}

static FRESH: AtomicUsize = AtomicUsize::new(0);

async fn register(server: &TestServer, name: &str) -> Client {
    let client = Client::new();
    client
        .register(&server.origin, name, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("register {name}: {e}"));
    client
}

fn uid(server: &TestServer, c: &Client) -> String {
    c.user_id(&server.origin).expect("signed in")
}

/// A setup call that must succeed.
async fn must(server: &TestServer, c: &Client, method: &str, path: &str, body: Value) -> Value {
    let body = if body.is_null() { None } else { Some(body) };
    let r = c
        .send(&server.url(&format!("/api/v1{path}")), method, body, true)
        .await
        .unwrap_or_else(|e| panic!("setup {method} {path}: {e}"));
    assert!(
        (200..300).contains(&r.status),
        "setup {method} {path}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json().unwrap()
    }
}

fn sid(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_string()
}

/// Builds a fresh guild for one row and returns the placeholder values.
async fn guild_fixture(server: &TestServer, cast: &Cast, row: &Row) -> Vec<(&'static str, String)> {
    let o = &cast.owner;
    let guild = must(server, o, "POST", "/guilds", json!({"name": "Matrix"})).await;
    let g = sid(&guild, "id");
    let c = sid(&guild["channels"][0], "id");
    let role = |name: &'static str, position: i32, permissions: P| {
        let g = g.clone();
        async move {
            let r = must(
                server,
                o,
                "POST",
                &format!("/guilds/{g}/roles"),
                json!({"name": name, "position": position, "permissions": permissions.bits()}),
            )
            .await;
            sid(&r, "id")
        }
    };
    let target = role("target", 1, P::NONE).await;
    let allbut = role("all-but", 4, P::ALL.remove(row.grant | P::ADMINISTRATOR)).await;
    let granted = role("granted", 5, row.grant).await;
    let invite = must(
        server,
        o,
        "POST",
        &format!("/channels/{c}/invites"),
        json!({}),
    )
    .await;
    let code = sid(&invite, "code");
    for member in [&cast.bare, &cast.allbut, &cast.granted, &cast.victim] {
        must(
            server,
            member,
            "POST",
            &format!("/invites/{code}"),
            json!({}),
        )
        .await;
    }
    // Two voice channels the victim (a member by now) may always connect to, through a
    // member overwrite, so that cutting @everyone down does not disconnect them (rows
    // with Prep::VictimInVoice).
    let victim_may_connect = json!([{
        "target": {"member": uid(server, &cast.victim)},
        "allow": (P::VIEW_CHANNEL | P::CONNECT | P::SPEAK).bits(),
        "deny": 0,
    }]);
    let mut voice = Vec::new();
    for name in ["voice", "voice-2"] {
        let channel = must(
            server,
            o,
            "POST",
            &format!("/guilds/{g}/channels"),
            json!({"name": name, "kind": "voice", "overwrites": victim_may_connect}),
        )
        .await;
        voice.push(sid(&channel, "id"));
    }
    let [vc, vc2] = <[String; 2]>::try_from(voice).expect("two voice channels");
    for (member, r) in [(&cast.allbut, &allbut), (&cast.granted, &granted)] {
        let path = format!("/guilds/{g}/members/{}/roles/{r}", uid(server, member));
        must(server, o, "PUT", &path, Value::Null).await;
    }
    let messages = format!("/channels/{c}/messages");
    let m = sid(
        &must(server, o, "POST", &messages, json!({"content": "owner's"})).await,
        "id",
    );
    let mine = sid(
        &must(
            server,
            &cast.granted,
            "POST",
            &messages,
            json!({"content": "mine"}),
        )
        .await,
        "id",
    );
    let thumbs = format!("{messages}/{m}/reactions/%F0%9F%91%8D");
    must(server, o, "PUT", &thumbs, Value::Null).await;
    must(server, &cast.granted, "PUT", &thumbs, Value::Null).await;
    let upload = o
        .send_bytes(
            &server.url(&format!("/api/v1/channels/{c}/files?filename=f.bin")),
            "POST",
            Some("application/octet-stream"),
            vec![1, 2, 3, 4, 5],
            true,
        )
        .await
        .unwrap();
    assert_eq!(upload.status, 201, "setup upload");
    let file = sid(&upload.json().unwrap(), "file_id");
    match row.prep {
        Prep::PinMessage => {
            must(
                server,
                o,
                "PUT",
                &format!("/channels/{c}/pins/{m}"),
                Value::Null,
            )
            .await;
        }
        Prep::VictimHasRole => {
            let path = format!(
                "/guilds/{g}/members/{}/roles/{target}",
                uid(server, &cast.victim)
            );
            must(server, o, "PUT", &path, Value::Null).await;
        }
        Prep::BanOutsider | Prep::BanVictim => {
            let who = if row.prep == Prep::BanOutsider {
                &cast.outsider
            } else {
                &cast.victim
            };
            let path = format!("/guilds/{g}/bans/{}", uid(server, who));
            must(server, o, "PUT", &path, json!({})).await;
        }
        _ => {}
    }
    // Last, cut @everyone down to the row's base.
    must(
        server,
        o,
        "PATCH",
        &format!("/guilds/{g}/roles/{g}"),
        json!({"permissions": row.base.bits()}),
    )
    .await;
    vec![
        ("{g}", g),
        ("{c}", c),
        ("{m}", m),
        ("{mine}", mine),
        ("{r}", target),
        ("{allbut}", allbut),
        ("{file}", file),
        ("{code}", code),
        ("{vc}", vc),
        ("{vc2}", vc2),
    ]
}

/// One cell of the matrix.
struct Cell {
    /// The column (a, b, c, c2, d) or, for extra checks, what was checked.
    column: String,
    who: Who,
    exp: Exp,
    got: Option<u16>,
    problem: Option<String>,
}

/// Makes one call as `who` and judges the answer.
async fn check(
    who: Who,
    client: Option<&Client>,
    method: &str,
    url: &str,
    (content_type, bytes): (Option<&str>, &[u8]),
    want: u16,
) -> (u16, Option<String>) {
    let bytes = bytes.to_vec();
    let answer: Response = match client {
        None => {
            let mut headers: Vec<(&str, String)> = Vec::new();
            if let Some(ct) = content_type {
                headers.push(("Content-Type", ct.to_string()));
            }
            Client::new()
                .raw(url, method, &headers, bytes)
                .await
                .expect("request")
        }
        Some(c) => c
            .send_bytes(url, method, content_type, bytes, true)
            .await
            .expect("request"),
    };
    let problem = if answer.status != want {
        Some(
            String::from_utf8_lossy(&answer.body)
                .chars()
                .take(160)
                .collect(),
        )
    } else if who == Who::Nobody {
        let challenge = answer.header("www-authenticate").unwrap_or("");
        (!challenge.starts_with("DPoP")).then(|| format!("WWW-Authenticate is {challenge:?}"))
    } else {
        None
    };
    (answer.status, problem)
}

async fn run_row(server: &TestServer, cast: &Cast, row: &Row) -> Vec<Cell> {
    let mut vars: Vec<(&'static str, String)> = vec![
        ("{owner}", uid(server, &cast.owner)),
        ("{victim}", uid(server, &cast.victim)),
        ("{outsider}", uid(server, &cast.outsider)),
    ];
    if row.scope == Scope::Guild {
        vars.extend(guild_fixture(server, cast, row).await);
    }
    let mut fresh: Option<Client> = None;
    let mut second: Option<Client> = None;
    if matches!(row.prep, Prep::FreshUser | Prep::SecondDevice) {
        let name = format!("fresh{}", FRESH.fetch_add(1, Ordering::Relaxed));
        let f = register(server, &name).await;
        if row.prep == Prep::SecondDevice {
            let other = Client::new();
            other
                .login_password(&server.origin, &name, PASSWORD)
                .await
                .expect("second device signs in");
            must(server, &other, "GET", "/users/@me", Value::Null).await;
            vars.push(("{dev}", other.device_thumbprint()));
            second = Some(other);
        }
        fresh = Some(f);
    }
    let mut voice = None;
    if row.prep == Prep::VictimInVoice {
        let (_, vc) = vars
            .iter()
            .find(|(k, _)| *k == "{vc}")
            .expect("a voice channel");
        let joined = cast
            .victim
            .join_voice(&server.origin, vc)
            .await
            .expect("the victim joins voice");
        voice = Some(joined);
    }
    // Placeholders are `{name}`; JSON bodies have braces of their own.
    let fill = |template: &str| {
        let mut text = template.to_string();
        for (k, v) in &vars {
            text = text.replace(k, v);
        }
        let unfilled = text.split('{').skip(1).any(|rest| {
            rest.split_once('}').is_some_and(|(name, _)| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric())
            })
        });
        assert!(!unfilled, "unfilled placeholder in {text}");
        text
    };
    let url = server.url(&format!("/api/v1{}", fill(row.path)));
    let (content_type, bytes) = match row.body {
        Body::Empty => (None, Vec::new()),
        Body::Json(text) => (Some("application/json"), fill(text).into_bytes()),
        Body::Bytes(ct, b) => (Some(ct), b.to_vec()),
    };
    let payload = (content_type, bytes.as_slice());

    let mut cells = Vec::new();
    for (i, &(who, exp)) in row.callers.iter().enumerate() {
        let (got, problem) = match exp {
            Exp::Na(_) => (None, None),
            Exp::Is(want) => {
                let client = match who {
                    Who::Nobody => None,
                    Who::Outsider => Some(&cast.outsider),
                    Who::Bare => Some(&cast.bare),
                    Who::AllBut => Some(&cast.allbut),
                    Who::Granted => Some(&cast.granted),
                    Who::Owner => Some(&cast.owner),
                    Who::Victim => Some(&cast.victim),
                    Who::Fresh => Some(fresh.as_ref().expect("a fresh user")),
                };
                let (got, problem) = check(who, client, row.method, &url, payload, want).await;
                (Some(got), problem)
            }
        };
        cells.push(Cell {
            column: COLUMNS[i].to_string(),
            who,
            exp,
            got,
            problem,
        });
        // When more than one permission is needed, lacking any single one of them is
        // enough to be refused: c2 again, with its role missing one needed bit at a time.
        if i == 3 && who == Who::AllBut && row.grant.names().len() > 1 {
            if let Exp::Is(want) = exp {
                for (name, bit) in P::NAMES.iter().filter(|(_, b)| row.grant.contains(*b)) {
                    let role = fill("/guilds/{g}/roles/{allbut}");
                    let perms = P::ALL.remove(*bit | P::ADMINISTRATOR).bits();
                    must(
                        server,
                        &cast.owner,
                        "PATCH",
                        &role,
                        json!({"permissions": perms}),
                    )
                    .await;
                    let (got, problem) =
                        check(who, Some(&cast.allbut), row.method, &url, payload, want).await;
                    cells.push(Cell {
                        column: format!("c2 without {name} only"),
                        who,
                        exp,
                        got: Some(got),
                        problem,
                    });
                }
                let role = fill("/guilds/{g}/roles/{allbut}");
                let perms = P::ALL.remove(row.grant | P::ADMINISTRATOR).bits();
                must(
                    server,
                    &cast.owner,
                    "PATCH",
                    &role,
                    json!({"permissions": perms}),
                )
                .await;
            }
        }
    }

    if let Some(joined) = voice {
        joined.leave().await;
    }

    // Signing out must take effect at once.
    let signed_out = match row.prep {
        Prep::SecondDevice => second.as_ref(),
        Prep::FreshUser => fresh.as_ref(),
        _ => None,
    };
    if let Some(gone) = signed_out {
        let r = gone
            .get(&server.url("/api/v1/users/@me"))
            .await
            .expect("request");
        cells.push(Cell {
            column: "signed out afterwards".into(),
            who: Who::Fresh,
            exp: Exp::Is(401),
            got: Some(r.status),
            problem: (r.status != 401).then(|| "the signed-out device still gets in".to_string()),
        });
    }
    cells
}

fn cell_text(cell: &Cell) -> String {
    match (cell.exp, cell.got) {
        (Exp::Na(_), _) => "n/a".to_string(),
        (Exp::Is(_), Some(got)) if cell.problem.is_none() => {
            format!("{} {got} ok", cell.who.label())
        }
        (Exp::Is(want), got) => format!(
            "{} FAIL {want}≠{}",
            cell.who.label(),
            got.map(|g| g.to_string()).unwrap_or_default()
        ),
    }
}

/// The whole matrix, one line per route, for the failure message.
fn render(results: &[(String, Vec<Cell>)]) -> String {
    let width = results.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = format!("{:width$} ", "route");
    for c in COLUMNS {
        out.push_str(&format!("| {c:<22}"));
    }
    out.push_str("| more\n");
    let mut notes = Vec::new();
    for (name, cells) in results {
        out.push_str(&format!("{name:width$} "));
        for cell in cells {
            if let Exp::Na(why) = cell.exp {
                notes.push(format!("{name} [{}]: {why}", cell.column));
            }
            if COLUMNS.contains(&cell.column.as_str()) {
                out.push_str(&format!("| {:<22}", cell_text(cell)));
            } else {
                out.push_str(&format!("| {}: {} ", cell.column, cell_text(cell)));
            }
        }
        out.push('\n');
    }
    out.push_str("not applicable:\n");
    for note in notes {
        out.push_str(&format!("  {note}\n"));
    }
    out
}

#[test]
fn every_route_checks_who_is_calling() {
    let server = TestServer::start();
    let started = std::time::Instant::now();
    let rows = rows();
    let results = block_on(Box::pin(async {
        let cast = Cast {
            owner: register(&server, "owner").await,
            outsider: register(&server, "outsider").await,
            bare: register(&server, "bare").await,
            allbut: register(&server, "allbut").await,
            granted: register(&server, "granted").await,
            victim: register(&server, "victim").await,
        };
        let mut results = Vec::new();
        for row in &rows {
            let cells = Box::pin(run_row(&server, &cast, row)).await;
            results.push((row.name(), cells));
        }
        results
    }));
    let failures: Vec<String> = results
        .iter()
        .flat_map(|(name, cells)| {
            cells.iter().filter_map(move |cell| {
                let problem = cell.problem.as_ref()?;
                let column = &cell.column;
                let want = match cell.exp {
                    Exp::Is(w) => w.to_string(),
                    Exp::Na(_) => "-".into(),
                };
                Some(format!(
                    "{name} [{column}: {}] expected {want}, got {}: {problem}",
                    cell.who.label(),
                    cell.got.map(|g| g.to_string()).unwrap_or_default()
                ))
            })
        })
        .collect();
    if !failures.is_empty() {
        println!("{}", render(&results));
        panic!(
            "{} of the matrix's cells are wrong:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    // Every route of the table is in the matrix.
    assert!(rows.len() >= 60, "the matrix lost rows: {}", rows.len());
    println!(
        "{} routes × callers checked in {:?}",
        rows.len(),
        started.elapsed()
    );
}
