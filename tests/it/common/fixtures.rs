//! The set-ups the test modules share: federating servers and their peering, a federated
//! pair with a user on each, and a guild with an invite that people joined.

use super::{api_json, block_on, federating, hearth_command, user, TestServer};
use hearth::client::Client;
use serde_json::json;

/// A server whose outgoing calls may reach the test's other servers on loopback.
pub fn start_federating() -> TestServer {
    start_federating_with(|_| {})
}

/// [`start_federating`], with `adjust` applied to its configuration first.
pub fn start_federating_with(adjust: impl FnOnce(&mut hearth::config::Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = federating(dir.path());
    adjust(&mut config);
    TestServer::start_config(config, Some(dir))
}

/// `hearth peer add URL --data DIR` (through the running server's admin socket), which
/// must succeed.
pub fn peer_add(server: &TestServer, url: &str) {
    let out = hearth_command(&["peer", "add", url, "--data"])
        .arg(&server.data)
        .output()
        .expect("run hearth peer add");
    assert!(
        out.status.success(),
        "peer add {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both servers pin each other: `a` adds `b`, then `b` adds `a`.
pub fn peer_both(a: &TestServer, b: &TestServer) {
    peer_add(a, &b.origin);
    peer_add(b, &a.origin);
}

/// Every server pins every other.
pub fn peer_all(servers: &[&TestServer]) {
    for a in servers {
        for b in servers {
            if a.origin != b.origin {
                peer_add(a, &b.origin);
            }
        }
    }
}

/// A federated pair: two federating servers (A, B), peered both ways.
pub fn federated_pair() -> (TestServer, TestServer) {
    let a = start_federating();
    let b = start_federating();
    peer_both(&a, &b);
    (a, b)
}

/// A federated pair with a user on each: `on_a` registered at A, then `on_b` at B.
pub fn federated_pair_with(on_a: &str, on_b: &str) -> (TestServer, TestServer, Client, Client) {
    let (a, b) = federated_pair();
    let (user_a, user_b) = block_on(async { (user(&a, on_a).await, user(&b, on_b).await) });
    (a, b, user_a, user_b)
}

/// A guild as its owner made it: its first (text) channel and an invite to that channel.
pub struct Guild {
    pub id: String,
    pub channel: String,
    pub channel_name: String,
    pub code: String,
}

/// `owner` makes the guild `name` at `origin` and an invite to its first channel.
pub async fn guild_on(owner: &Client, origin: &str, name: &str) -> Guild {
    let guild = api_json(
        owner,
        "POST",
        &format!("{origin}/api/v1/guilds"),
        json!({ "name": name }),
    )
    .await;
    let channel = guild["channels"][0]["id"]
        .as_str()
        .expect("first channel")
        .to_string();
    let invite = api_json(
        owner,
        "POST",
        &format!("{origin}/api/v1/channels/{channel}/invites"),
        json!({}),
    )
    .await;
    Guild {
        id: guild["id"].as_str().expect("guild id").to_string(),
        channel,
        channel_name: guild["channels"][0]["name"]
            .as_str()
            .expect("channel name")
            .to_string(),
        code: invite["code"].as_str().expect("invite code").to_string(),
    }
}

/// `who` joins by the invite `code` at `origin`.
pub async fn join(who: &Client, origin: &str, code: &str) {
    api_json(
        who,
        "POST",
        &format!("{origin}/api/v1/invites/{code}"),
        json!({}),
    )
    .await;
}

/// N people, a guild, an invite: `owner`'s guild `name` at `origin`, which each of
/// `members` joined, in order, by its invite.
pub async fn guild_joined_by(
    owner: &Client,
    origin: &str,
    name: &str,
    members: &[&Client],
) -> Guild {
    let guild = guild_on(owner, origin, name).await;
    for member in members {
        join(member, origin, &guild.code).await;
    }
    guild
}
