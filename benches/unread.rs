//! The start-up unread summary on a full box: `GET /api/v1/users/@me/read-states` for a
//! user in 50 guilds with 500 text channels and 1,000,000 messages.
//!
//! `cargo bench --bench unread` (a few minutes, most of it filling). It
//!
//! 1. starts the release binary (`hearth serve --listen 127.0.0.1:0`) as a child process
//!    with light argon2, registers alice and bob, and stops it;
//! 2. opens the data directory in this process and, through the service layer, has alice
//!    make 50 guilds of 10 text channels each and bob join all of them; then writes
//!    2,000 messages per channel straight through the storage writer, 20,000 per
//!    transaction, keeping the read-state counters as posting does
//!    (`read_states::on_message_posted`); one message in 250 names bob, one in 1,000
//!    says `@everyone`; bob then reads half of the channels up to their 1,500th message;
//! 3. times the summary in this process (the service call alone, 50 runs), then starts
//!    the release binary again on that data, signs bob in, and times 200 summary requests
//!    over HTTP on one keep-alive connection, each with its own DPoP proof: p50, p99 and
//!    the answer's size.
//!
//! Linux only (it stops the server with SIGTERM).

use hearth::client::Client;
use hearth::model::{Id, Message, UserId};
use hearth::service::read_states::on_message_posted;
use hearth::storage::tables::CHANNEL_MESSAGE;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GUILDS: usize = 50;
const CHANNELS_PER_GUILD: usize = 10;
const MESSAGES_PER_CHANNEL: usize = 2_000;
/// Messages written per transaction while filling.
const CHANNELS_PER_TRANSACTION: usize = 10;
/// Bob's read position in the channels he has read: this many messages in.
const READ_UP_TO: usize = 1_500;
const REQUESTS: usize = 200;
const PASSWORD: &str = "benchmark password of some length";

const CONFIG: &str = "[auth]\nargon2_memory_kib = 256\nargon2_iterations = 1\n\
login_failures_per_account = 1000\nlogin_attempts_per_address = 100000\n\
[tls]\nenabled = false\n[discovery]\nenabled = false\n";

struct Server {
    child: Child,
    origin: String,
}

impl Server {
    fn start(config: &Path, data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["--config", config.to_str().expect("utf-8 path"), "--data"])
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth");
        let stderr = child.stderr.take().expect("stderr");
        let mut line = String::new();
        BufReader::new(stderr)
            .read_line(&mut line)
            .expect("read listen line");
        let origin = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("listen address")
            .to_string();
        Server { child, origin }
    }

    /// Stops the server cleanly (SIGTERM), so the database is closed before reuse.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let scratch = tempfile::Builder::new()
        .prefix("hearth-bench-unread-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir under target/tmp");
    let config_path = scratch.path().join("hearth.toml");
    std::fs::write(&config_path, CONFIG).expect("config");
    let data = scratch.path().join("data");

    // 1. Two accounts, made the ordinary way.
    let server = Server::start(&config_path, &data);
    let (alice_id, bob_id) = smol::block_on(async {
        let mut ids = Vec::new();
        for name in ["alice", "bob"] {
            let client = Client::new();
            client
                .register(&server.origin, name, PASSWORD)
                .await
                .expect("register");
            let id = client.user_id(&server.origin).expect("signed in");
            ids.push(UserId::parse(&id).expect("user id"));
        }
        (ids[0], ids[1])
    });
    server.stop();

    // 2. Fill the box in this process.
    let mut config = hearth::config::Config::load(&config_path).expect("config");
    config.data_dir = data.clone();
    let app = hearth::app::App::open(config, "http://127.0.0.1:1".into(), "http").expect("open");
    let services = app.services.clone();
    let fill_started = Instant::now();
    let mut channels: Vec<(Id, Id)> = Vec::new();
    smol::block_on(async {
        for g in 0..GUILDS {
            let guild = services
                .create_guild(alice_id, &format!("guild {g}"), "")
                .await
                .expect("guild");
            let first = guild.channels[0].id;
            channels.push((guild.guild.id, first));
            for c in 1..CHANNELS_PER_GUILD {
                let new = serde_json::from_value(json!({ "name": format!("channel-{c}") }))
                    .expect("new channel");
                let channel = services
                    .create_channel(alice_id, guild.guild.id, new)
                    .await
                    .expect("channel");
                channels.push((guild.guild.id, channel.id));
            }
            let invite = services
                .create_invite(alice_id, first, serde_json::from_value(json!({})).unwrap())
                .await
                .expect("invite");
            services
                .join_invite(bob_id, invite.code)
                .await
                .expect("join");
        }
    });
    let mut read_at: Vec<(Id, Id)> = Vec::new();
    let mut written = 0usize;
    for batch in channels.chunks(CHANNELS_PER_TRANSACTION) {
        let mut messages = Vec::with_capacity(batch.len() * MESSAGES_PER_CHANNEL);
        for (i, (guild_id, channel)) in batch.iter().enumerate() {
            let index = written / MESSAGES_PER_CHANNEL + i;
            for n in 0..MESSAGES_PER_CHANNEL {
                let id = services.next_id();
                if index.is_multiple_of(2) && n + 1 == READ_UP_TO {
                    read_at.push((*channel, id));
                }
                let names_bob = n % 250 == 7;
                let everyone = n % 1000 == 11;
                messages.push(Message {
                    id,
                    channel_id: *channel,
                    guild_id: *guild_id,
                    author_id: alice_id,
                    content: format!("message {n} in this channel, of ordinary length"),
                    created_at: id.timestamp_ms(),
                    edited_at: None,
                    reply_to: None,
                    mentions: if names_bob { vec![bob_id] } else { vec![] },
                    mention_roles: vec![],
                    mention_everyone: everyone,
                    attachments: vec![],
                    pinned: false,
                    seq: 0,
                });
            }
        }
        written += messages.len();
        services
            .store
            .write_blocking(move |tx| {
                for mut message in messages {
                    on_message_posted(tx, &mut message)?;
                    tx.put(CHANNEL_MESSAGE, (message.channel_id, message.id), &message)?;
                }
                Ok::<_, hearth::service::Error>(())
            })
            .expect("fill");
    }
    smol::block_on(async {
        for (channel, message) in &read_at {
            services
                .mark_read(bob_id, *channel, *message)
                .await
                .expect("mark read");
        }
    });
    let fill = fill_started.elapsed();

    let mut in_process = Vec::new();
    let mut summary = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        summary = services.read_states(bob_id).expect("summary");
        in_process.push(started.elapsed());
    }
    in_process.sort();
    let unread: u64 = summary.iter().map(|s| s.unread).sum();
    let mentions: u64 = summary.iter().map(|s| s.mentions).sum();
    drop(services);
    drop(app);

    // 3. Over HTTP, on the release binary.
    let server = Server::start(&config_path, &data);
    let (timings, bytes) = smol::block_on(async {
        let bob = Client::new();
        bob.login_password(&server.origin, "bob", PASSWORD)
            .await
            .expect("bob signs in");
        let url = format!("{}/api/v1/users/@me/read-states", server.origin);
        let mut timings = Vec::with_capacity(REQUESTS);
        let mut bytes = 0;
        for _ in 0..REQUESTS {
            let started = Instant::now();
            let answer = bob.get(&url).await.expect("summary");
            timings.push(started.elapsed());
            assert_eq!(answer.status, 200);
            bytes = answer.body.len();
        }
        (timings, bytes)
    });
    server.stop();
    let mut timings = timings;
    timings.sort();

    println!(
        "unread summary: {GUILDS} guilds, {} channels, {written} messages",
        channels.len()
    );
    println!("  fill: {:.1} s", fill.as_secs_f64());
    println!(
        "  channels in the answer: {}, unread {unread}, mentions {mentions}",
        summary.len()
    );
    println!(
        "  in process (service call, 50 runs): p50 {} p99 {}",
        ms(percentile(&in_process, 0.5)),
        ms(percentile(&in_process, 0.99))
    );
    println!(
        "  over HTTP ({REQUESTS} requests, one DPoP proof each): p50 {} p99 {} max {}",
        ms(percentile(&timings, 0.5)),
        ms(percentile(&timings, 0.99)),
        ms(*timings.last().expect("timings"))
    );
    println!("  answer: {bytes} bytes");
}
