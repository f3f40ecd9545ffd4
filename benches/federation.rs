//! Federation costs: JoinInvite latency on B for users of A with A up and with A down,
//! outbox throughput when A comes back, and the memory of a server with 10 peers.
//!
//! `cargo bench --bench federation` (about a minute, bounded). Servers are the release
//! binary as child processes on loopback, with light argon2 and
//! `federation.allow_loopback = true`, pinned to each other with `hearth peer add`.

use hearth::auth::jose::SigningKey;
use hearth::client::Client;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USERS_PER_PHASE: usize = 200;
const PEERS: usize = 10;
const PASSWORD: &str = "benchmark password of some length";

struct Server {
    child: Option<Child>,
    origin: String,
    listen: String,
    data: PathBuf,
    config: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("hearth.toml");
    std::fs::File::create(&path)
        .and_then(|mut f| {
            f.write_all(
                b"[auth]\nargon2_memory_kib = 256\nargon2_iterations = 1\nlogin_failures_per_account = 100000\nlogin_attempts_per_address = 1000000\n[federation]\nallow_loopback = true\n[tls]\nenabled = false\n[discovery]\nenabled = false\n[throttle]\nmax_connections = 8192\nmax_connections_per_address = 8192\nregistrations_per_address_hour = 1000000\nmessages_per_user_minute = 1000000\nmessages_per_address_minute = 1000000\nreactions_per_user_minute = 1000000\nreactions_per_address_minute = 1000000\nuploads_per_user_minute = 1000000\nuploads_per_address_minute = 1000000\n",
            )
        })
        .expect("config");
    path
}

impl Server {
    fn start(dir: &Path, name: &str) -> Server {
        let data = dir.join(name);
        let config = write_config(dir);
        let listen = format!("127.0.0.1:{}", free_port());
        let mut server = Server {
            child: None,
            origin: format!("http://{listen}"),
            listen,
            data,
            config,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(&self.data)
            .args(["serve", "--listen", &self.listen])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth");
        let stderr = child.stderr.take().expect("stderr");
        let mut line = String::new();
        BufReader::new(stderr)
            .read_line(&mut line)
            .expect("ready line");
        assert!(line.contains("listening"), "{line}");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Calls waiting in this server's outbox (`hearth outbox`).
    fn outbox_len(&self) -> usize {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(&self.data)
            .arg("outbox")
            .output()
            .expect("hearth outbox");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn peer_add(&self, other: &Server) {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["peer", "add", &other.origin, "--data"])
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("peer add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn signed_in(origin: &str, name: &str) -> Client {
    let c = Client::with_device_key(SigningKey::generate_ed25519());
    c.register(origin, name, PASSWORD).await.expect("register");
    c
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = Server::start(dir.path(), "a");
    let b = Server::start(dir.path(), "b");
    a.peer_add(&b);
    b.peer_add(&a);
    smol::block_on(async {
        let owner = signed_in(&b.origin, "owner").await;
        let guild = owner
            .post(
                &format!("{}/api/v1/guilds", b.origin),
                json!({"name": "Bench"}),
            )
            .await
            .expect("guild")
            .ok()
            .expect("guild ok")
            .json()
            .expect("json");
        let channel = guild["channels"][0]["id"]
            .as_str()
            .expect("channel")
            .to_string();
        let invite = owner
            .post(
                &format!("{}/api/v1/channels/{channel}/invites", b.origin),
                json!({}),
            )
            .await
            .expect("invite")
            .ok()
            .expect("invite ok")
            .json()
            .expect("json");
        let code = invite["code"].as_str().expect("code").to_string();
        let join_url = format!("{}/api/v1/invites/{code}", b.origin);

        let mut users = Vec::new();
        for i in 0..2 * USERS_PER_PHASE {
            let c = signed_in(&a.origin, &format!("u{i}")).await;
            // A first request to B to fetch its nonce, so the join itself is measured.
            let _ = c.fetch_nonce(&b.origin).await;
            users.push(c);
        }
        println!("federation bench: JoinInvite on B by users of A ({USERS_PER_PHASE} each), first request of each user to B");
        println!(
            "{:>10} {:>10} {:>10} {:>10}",
            "A is", "p50 ms", "p99 ms", "max ms"
        );
        let measure = async |slice: &[Client], label: &str| {
            let mut took = Vec::new();
            for c in slice {
                let start = Instant::now();
                c.post(&join_url, json!({}))
                    .await
                    .expect("join")
                    .ok()
                    .expect("join ok");
                took.push(start.elapsed());
            }
            took.sort();
            println!(
                "{:>10} {:>10.2} {:>10.2} {:>10.2}",
                label,
                percentile(&took, 0.5),
                percentile(&took, 0.99),
                took.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
            );
        };
        measure(&users[..USERS_PER_PHASE], "up").await;
        // Let A answer the VerifyUser calls of the first phase.
        smol::Timer::after(Duration::from_secs(2)).await;
        a.kill();
        measure(&users[USERS_PER_PHASE..], "down").await;

        // A returns: B's outbox delivers the waiting VerifyUser calls.
        let queued = b.outbox_len();
        a.spawn();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(120);
        let mut done = false;
        let mut first_delivery: Option<Instant> = None;
        while Instant::now() < deadline {
            let left = b.outbox_len();
            if left < queued && first_delivery.is_none() {
                first_delivery = Some(Instant::now());
            }
            if left == 0 {
                done = true;
                break;
            }
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        if let Some(first) = first_delivery {
            let window = first.elapsed().max(Duration::from_millis(10));
            println!(
                "outbox: once the retry was due, {queued} calls went out in {:.0} ms ({:.0} calls/s, signed, one connection each)",
                window.as_secs_f64() * 1000.0,
                queued as f64 / window.as_secs_f64()
            );
        }
        let elapsed = start.elapsed();
        if done {
            println!(
                "outbox: {} calls queued while A was down, all delivered and applied {:.2} s after A returned (back-off included): {:.0} calls/s",
                queued,
                elapsed.as_secs_f64(),
                queued as f64 / elapsed.as_secs_f64()
            );
        } else {
            println!("outbox: calls not all delivered within 120 s");
        }

        // Memory of a server with 10 peers.
        let before = rss_kib(b.pid());
        let mut peers = Vec::new();
        for i in 0..PEERS {
            let p = Server::start(dir.path(), &format!("p{i}"));
            b.peer_add(&p);
            p.peer_add(&b);
            peers.push(p);
        }
        smol::Timer::after(Duration::from_millis(500)).await;
        println!(
            "memory: B with 1 peer {before} KiB, with {} peers {} KiB (VmRSS)",
            PEERS + 1,
            rss_kib(b.pid())
        );
    });
}
