//! Boxes whose clocks are wrong. A Raspberry Pi has no real-time clock: after a power cut
//! on a LAN without NTP it runs behind by the length of the outage. Here a real `hearth`
//! runs with libfaketime preloaded (Debian package `faketime`, installed by `.ci/setup`)
//! three hours behind, and clients and a peer on the right time use it.

use crate::common::*;
use hearth::client::Client;
use serde_json::{json, Value};
use std::time::Duration;

const SKEW_SECS: u64 = 3 * 3600;

/// libfaketime, preloaded into `hearth` itself (not through the `faketime` program,
/// which would stand between the test and the server and outlive a kill).
fn libfaketime() -> &'static str {
    let path = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: run `bash .ci/setup` (it installs Debian's faketime)"
    );
    path
}

/// `hearth serve` with its clock SKEW_SECS behind (monotonic time left alone, so timers
/// run normally).
fn serve_behind(dir: &std::path::Path, federating: bool) -> HearthProcess {
    let config = write_light_config(dir, "");
    if federating {
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("[federation]\nallow_loopback = true\n");
        std::fs::write(&config, text).unwrap();
    }
    let mut command = hearth_command(&["--config".as_ref(), config.as_os_str()]);
    command
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", format!("-{SKEW_SECS}"))
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"));
    HearthProcess::spawn_command(command)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The server's own clock, from `/.well-known/hearth`: proves the skew is real (without
/// it these tests would pass on any server).
async fn server_time(origin: &str) -> u64 {
    let identity: Value = Client::new()
        .raw(
            &format!("{origin}/.well-known/hearth"),
            "GET",
            &[],
            Vec::new(),
        )
        .await
        .unwrap()
        .json()
        .unwrap();
    identity["time"]
        .as_u64()
        .expect("time in /.well-known/hearth")
}

async fn assert_behind(origin: &str) {
    let behind = unix_now() as i64 - server_time(origin).await as i64;
    assert!(
        (behind - SKEW_SECS as i64).abs() < 120,
        "the server under faketime is {behind} s behind, not {SKEW_SECS}"
    );
}

#[test]
fn clients_on_the_right_time_use_a_box_running_hours_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_behind(dir.path(), false);
    block_on(async {
        assert_behind(&server.origin).await;
        // Registration carries a device certificate dated by the client (3 h "in the
        // future" for the box); every request carries a DPoP proof dated the same way.
        let alice = user_at(&server.origin, "alice").await;
        let guild = api_json(
            &alice,
            "POST",
            &server.url("/api/v1/guilds"),
            json!({"name": "after the power cut"}),
        )
        .await;
        let channel =
            first_text_channel(&alice, &server.origin, guild["id"].as_str().unwrap()).await;
        let messages = server.url(&format!("/api/v1/channels/{channel}/messages"));
        api_json(&alice, "POST", &messages, json!({"content": "still here"})).await;
        let history = api_json(&alice, "GET", &messages, json!({})).await;
        assert_eq!(history[0]["content"], "still here");

        // A password login on a second device, and a token refresh.
        let phone = Client::new();
        phone
            .login_password(&server.origin, "alice", "password-of-some-length")
            .await
            .expect("password login while the box is behind");
        phone.refresh(&server.origin).await.expect("refresh");
        let history = api_json(&phone, "GET", &messages, json!({})).await;
        assert_eq!(history[0]["content"], "still here");
    });
}

async fn user_at(origin: &str, name: &str) -> Client {
    let client = Client::new();
    client
        .register(origin, name, "password-of-some-length")
        .await
        .expect("register");
    client
}

fn peer_add(config_and_data: (&std::path::Path, &std::path::Path), url: &str) {
    let (config, data) = config_and_data;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--config")
        .arg(config)
        .args(["peer", "add", url, "--data"])
        .arg(data)
        .output()
        .expect("run hearth peer add");
    assert!(
        out.status.success(),
        "peer add {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn peers_whose_clocks_differ_by_hours_federate_both_ways() {
    // A on the right time (in this process), B three hours behind (its own process).
    let dir_a = tempfile::tempdir().unwrap();
    let a = TestServer::start_config(federating(dir_a.path()), None);
    let dir_b = tempfile::tempdir().unwrap();
    let b = serve_behind(dir_b.path(), true);
    // A runs in this process; the CLI reaches it through its data directory alone (an
    // empty configuration: a --config naming no file is an error).
    let config_a = dir_a.path().join("empty.toml");
    std::fs::write(&config_a, "").unwrap();
    peer_add((&config_a, &a.data), &b.origin);
    peer_add(
        (
            &dir_b.path().join("hearth.toml"),
            &dir_b.path().join("data"),
        ),
        &a.origin,
    );
    block_on(async {
        assert_behind(&b.origin).await;
        let alice = user(&a, "alice").await;
        let alice_id = alice.user_id(&a.origin).unwrap();
        let bob = user_at(&b.origin, "bob").await;

        // Alice joins and posts on B with A's token (Refrain's path): by B's clock it
        // was issued 3 h in the future. B measures A's clock and accepts it.
        let channel_b = guild_joined_by(&bob, &alice, &b.origin, "on B").await;
        let posted = api_json(
            &alice,
            "POST",
            &b.url(&format!("/api/v1/channels/{channel_b}/messages")),
            json!({"content": "hello from the right time"}),
        )
        .await;
        assert_eq!(posted["author_id"], alice_id.as_str());

        // B → A: VerifyUser, signed by B in A's time; B's shadow of alice gets her profile.
        let verified = eventually(Duration::from_secs(20), async || {
            let seen = api_json(
                &bob,
                "GET",
                &b.url(&format!("/api/v1/users/{alice_id}")),
                json!({}),
            )
            .await;
            seen["name"] == "alice" && seen["homeserver"] == a.origin.as_str()
        })
        .await;
        assert!(
            verified,
            "B never verified alice with A; B's log:\n{}",
            b.stderr()
        );

        // A → B: a profile update, refused once for its time, then re-signed in B's time.
        api_json(
            &alice,
            "PATCH",
            &a.url("/api/v1/users/@me"),
            json!({"name": "alice renamed"}),
        )
        .await;
        let updated = eventually(Duration::from_secs(20), async || {
            let seen = api_json(
                &bob,
                "GET",
                &b.url(&format!("/api/v1/users/{alice_id}")),
                json!({}),
            )
            .await;
            seen["name"] == "alice renamed"
        })
        .await;
        assert!(
            updated,
            "B never got alice's new name from A; B's log:\n{}",
            b.stderr()
        );

        // Bob uses A with B's token: by A's clock it expired hours ago.
        let channel_a = guild_joined_by(&alice, &bob, &a.origin, "on A").await;
        api_json(
            &bob,
            "POST",
            &a.url(&format!("/api/v1/channels/{channel_a}/messages")),
            json!({"content": "hello from three hours ago"}),
        )
        .await;

        // Each side logged what it measured.
        assert!(
            b.stderr()
                .contains(&format!("the clock of {} reads +", a.origin)),
            "B's log:\n{}",
            b.stderr()
        );
    });
}

async fn first_text_channel(client: &Client, origin: &str, guild: &str) -> String {
    let channels = api_json(
        client,
        "GET",
        &format!("{origin}/api/v1/guilds/{guild}/channels"),
        json!({}),
    )
    .await;
    channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "text")
        .expect("a text channel")["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `owner` makes a guild at `origin`, and `guest` joins it by invite; returns the guild's
/// first text channel.
async fn guild_joined_by(owner: &Client, guest: &Client, origin: &str, name: &str) -> String {
    let guild = api_json(
        owner,
        "POST",
        &format!("{origin}/api/v1/guilds"),
        json!({ "name": name }),
    )
    .await;
    let channel = first_text_channel(owner, origin, guild["id"].as_str().unwrap()).await;
    let invite = api_json(
        owner,
        "POST",
        &format!("{origin}/api/v1/channels/{channel}/invites"),
        json!({}),
    )
    .await;
    let code = invite["code"].as_str().unwrap();
    api_json(
        guest,
        "POST",
        &format!("{origin}/api/v1/invites/{code}"),
        json!({}),
    )
    .await;
    channel
}
