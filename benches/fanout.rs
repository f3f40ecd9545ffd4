//! Realtime fan-out: delivery latency from POST to receipt at 10, 100 and 1,000
//! subscribers in one channel, and server RSS per idle websocket.
//!
//! `cargo bench --bench fanout` (about a minute, bounded). It starts the release binary as
//! a child process (light argon2 so that setting up users is quick; gateway limits raised
//! so one user may hold many sockets), signs in 10 users who all join one guild, opens N
//! raw websockets spread over them (each with its own ticket, `start`), then posts 200
//! messages, one every 20 ms, and records, for every subscriber, the time from just
//! before the POST to the arrival of its `message_create`. Server RSS is read from
//! `/proc/PID/status` before and after 1,000 idle sockets are open. Linux only.

use async_tungstenite::tungstenite::Message;
use futures_lite::StreamExt;
use hearth::auth::jose::SigningKey;
use hearth::client::Client;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USERS: usize = 10;
const MESSAGES: usize = 200;
/// Pause between messages: 50 messages/s into one channel is already a busy chat.
const INTERVAL_MS: u64 = 20;
const PASSWORD: &str = "benchmark password of some length";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Server {
    child: Child,
    origin: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hearth.toml");
    std::fs::File::create(&config)
        .and_then(|mut f| {
            f.write_all(
                b"[auth]\nargon2_memory_kib = 256\nargon2_iterations = 1\nlogin_failures_per_account = 1000\nlogin_attempts_per_address = 100000\n[gateway]\nmax_connections_per_user = 2000\n[tls]\nenabled = false\n[discovery]\nenabled = false\n[throttle]\nmax_connections = 8192\nmax_connections_per_address = 8192\nregistrations_per_address_hour = 1000000\nmessages_per_user_minute = 1000000\nmessages_per_address_minute = 1000000\nreactions_per_user_minute = 1000000\nreactions_per_address_minute = 1000000\nuploads_per_user_minute = 1000000\nuploads_per_address_minute = 1000000\n",
            )
        })
        .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--config", config.to_str().unwrap_or_default(), "--data"])
        .arg(dir.path().join("data"))
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
    Server {
        child,
        origin,
        _dir: dir,
    }
}

type Socket = async_tungstenite::WebSocketStream<smol::net::TcpStream>;

async fn open_socket(client: &Client, origin: &str) -> Socket {
    let answer = client
        .post(&format!("{origin}/api/v1/gateway/ticket"), json!({}))
        .await
        .expect("ticket")
        .ok()
        .expect("ticket ok")
        .json()
        .expect("json");
    let url = answer["url"].as_str().expect("url").to_string();
    let addr = origin.trim_start_matches("http://");
    let tcp = smol::net::TcpStream::connect(addr).await.expect("connect");
    let (mut ws, _) = async_tungstenite::client_async(url.as_str(), tcp)
        .await
        .expect("handshake");
    ws.send(Message::Text(json!({"op": "start"}).to_string().into()))
        .await
        .expect("start");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"ready\"") => return ws,
            Some(Ok(_)) => continue,
            other => panic!("socket ended before ready: {other:?}"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    let server = start_server();
    let origin = server.origin.clone();
    let pid = server.child.id();
    let executor = Arc::new(smol::Executor::new());
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let ex = executor.clone();
            let stopped = stopped.clone();
            std::thread::spawn(move || {
                smol::block_on(ex.run(async move {
                    let _ = stopped.recv().await;
                }))
            })
        })
        .collect();
    smol::block_on(executor.run(async {
        let mut users = Vec::new();
        for i in 0..USERS {
            let c = Client::with_device_key(SigningKey::generate_ed25519());
            c.register(&origin, &format!("user{i}"), PASSWORD).await.expect("register");
            users.push(c);
        }
        let guild = users[0]
            .post(&format!("{origin}/api/v1/guilds"), json!({"name": "Bench"}))
            .await.expect("guild").ok().expect("guild ok").json().expect("json");
        let channel = guild["channels"][0]["id"].as_str().expect("channel").to_string();
        let invite = users[0]
            .post(&format!("{origin}/api/v1/channels/{channel}/invites"), json!({}))
            .await.expect("invite").ok().expect("invite ok").json().expect("json");
        let code = invite["code"].as_str().expect("code").to_string();
        for u in &users[1..] {
            u.post(&format!("{origin}/api/v1/invites/{code}"), json!({})).await.expect("join").ok().expect("join ok");
        }
        println!("fanout bench: {USERS} users, {MESSAGES} messages per step, server pid {pid}");
        println!("{:>12} {:>10} {:>10} {:>10} {:>10}", "subscribers", "p50 ms", "p99 ms", "max ms", "delivered");
        let mut sockets: Vec<Socket> = Vec::new();
        let mut idle_report = None;
        for &target in &[10usize, 100, 1000] {
            let before = rss_kib(pid);
            while sockets.len() < target {
                let user = &users[sockets.len() % USERS];
                sockets.push(open_socket(user, &origin).await);
            }
            if target == 1000 {
                smol::Timer::after(Duration::from_millis(500)).await;
                idle_report = Some((before, rss_kib(pid), 1000 - 100));
            }
            let latencies = Arc::new(Mutex::new(Vec::with_capacity(target * MESSAGES)));
            let sent_at = Arc::new(Mutex::new(std::collections::HashMap::<String, Instant>::new()));
            let mut readers = Vec::new();
            for mut ws in sockets.drain(..) {
                let latencies = latencies.clone();
                let sent_at = sent_at.clone();
                readers.push(smol::spawn(async move {
                    let mut got = 0;
                    while got < MESSAGES {
                        let frame = futures_lite::future::or(async { ws.next().await }, async {
                            smol::Timer::after(Duration::from_secs(20)).await;
                            None
                        })
                        .await;
                        let Some(Ok(Message::Text(text))) = frame else {
                            if frame.is_none() { break } else { continue }
                        };
                        let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                        if value["type"] != "message_create" {
                            continue;
                        }
                        let arrived = Instant::now();
                        let content = value["data"]["content"].as_str().unwrap_or("").to_string();
                        let start = sent_at.lock().unwrap().get(&content).copied();
                        if let Some(start) = start {
                            latencies.lock().unwrap().push(arrived - start);
                        }
                        got += 1;
                    }
                    ws
                }));
            }
            for i in 0..MESSAGES {
                let content = format!("m{target}-{i}");
                sent_at.lock().unwrap().insert(content.clone(), Instant::now());
                users[0]
                    .post(&format!("{origin}/api/v1/channels/{channel}/messages"), json!({"content": content}))
                    .await.expect("post").ok().expect("post ok");
                smol::Timer::after(Duration::from_millis(INTERVAL_MS)).await;
            }
            for r in readers {
                sockets.push(r.await);
            }
            let mut all = latencies.lock().unwrap().clone();
            all.sort();
            println!(
                "{:>12} {:>10.2} {:>10.2} {:>10.2} {:>10}",
                target,
                percentile(&all, 0.5).as_secs_f64() * 1000.0,
                percentile(&all, 0.99).as_secs_f64() * 1000.0,
                all.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
                format!("{}/{}", all.len(), target * MESSAGES),
            );
        }
        if let Some((before, after, added)) = idle_report {
            println!(
                "server RSS with 100 sockets {before} KiB, with 1000 idle sockets {after} KiB: {:.1} KiB per socket",
                (after.saturating_sub(before)) as f64 / added as f64
            );
        }
    }));
    drop(stop);
    for t in threads {
        let _ = t.join();
    }
}
