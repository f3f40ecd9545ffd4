//! Durable message posting over HTTP, server memory, and DPoP verification cost.
//!
//! `cargo bench --bench messages` runs for 30 to 50 seconds after the build; every phase
//! stops on a clock. It
//!
//! 1. starts the release binary (`hearth serve --listen 127.0.0.1:0`) as a child process
//!    with default argon2 and generous login limits, registers 16 users with EdDSA device
//!    keys, makes one guild, and has everyone join it through an invite;
//! 2. posts messages to one channel with 1, 16 and 200 concurrent senders, each with its
//!    own keep-alive connection and a fresh DPoP proof per request, on a 2-thread
//!    `smol::Executor` in this process, and reports durable messages/s (a 201 is only
//!    sent after the group commit is on disk), latency percentiles, server CPU
//!    (utime+stime, and per thread from `/proc/PID/task`), the number of commits and so
//!    the average group-commit batch (exactly, from `perf stat` on the server's
//!    fdatasync calls when perf is usable, else from the transaction id in the redb file
//!    header), bytes written per message, and what the writer thread is doing (sampled
//!    from `/proc/PID/task/TID/syscall`);
//! 3. reads VmRSS/VmHWM right after start, after setup, and after at least 100,000
//!    messages;
//! 4. times `DpopVerifier::verify` (ES256 and EdDSA, nonces required, fresh jtis), the
//!    Ed25519 signature check alone, `make_proof`, `verify_access_token` and a
//!    token-cache hit in this process.
//!
//! Linux only (it reads `/proc`). Client and server share the machine's CPUs, so the
//! client's own CPU use is printed next to the server's.

use hearth::auth::dpop::{make_proof, DpopConfig, DpopRequest, DpopVerifier};
use hearth::auth::jose::{Jws, SigningKey};
use hearth::auth::server_key::ServerKey;
use hearth::auth::tokens::{mint_access_token, verify_access_token, AccessTokenCache};
use hearth::client::Client;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Signed-in users; senders are spread over them round-robin.
const USERS: usize = 16;
/// Client executor threads.
const CLIENT_THREADS: usize = 2;
/// Messages that must have been posted before the "after fill" memory reading.
const FILL_TARGET: u64 = 100_000;
/// Iterations of each in-process micro-benchmark.
const MICRO_N: usize = 3000;
/// The password every bench user gets.
const PASSWORD: &str = "benchmark password of some length";

/// One load phase: `senders` concurrent senders for at least `min` and at most `max`;
/// between the two it stops once `stop_at_total` messages have been posted overall.
struct Phase {
    senders: usize,
    min: Duration,
    max: Duration,
    stop_at_total: Option<u64>,
}

const PHASES: [Phase; 3] = [
    Phase {
        senders: 1,
        min: Duration::from_secs(5),
        max: Duration::from_secs(5),
        stop_at_total: None,
    },
    Phase {
        senders: 16,
        min: Duration::from_secs(6),
        max: Duration::from_secs(6),
        stop_at_total: None,
    },
    Phase {
        senders: 200,
        min: Duration::from_secs(8),
        max: Duration::from_secs(30),
        stop_at_total: Some(FILL_TARGET),
    },
];

fn main() {
    let started = Instant::now();
    let git = git_info();
    let load_before = loadavg();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let clk_tck = clock_ticks_per_second();

    let scratch = tempfile::Builder::new()
        .prefix("hearth-bench-messages-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir under target/tmp");
    let data = scratch.path().join("data");
    let fs = filesystem_of(scratch.path());
    let calibration = calibrate_commits(scratch.path());

    let binary = PathBuf::from(env!("CARGO_BIN_EXE_hearth"));
    let config_path = scratch.path().join("hearth.toml");
    std::fs::write(
        &config_path,
        "# hearth bench: default argon2, generous login limits\n\
         [auth]\n\
         login_failures_per_account = 1000\n\
         login_attempts_per_address = 100000\n\
         [tls]\n\
         enabled = false\n\
         [discovery]\n\
         enabled = false\n\
         # the bench is one address posting as fast as it can\n\
         [throttle]\n\
         registrations_per_address_hour = 1000000\n\
         messages_per_user_minute = 1000000\n\
         messages_per_address_minute = 1000000\n\
         max_connections_per_address = 1024\n",
    )
    .expect("write config");

    let mut server = ServerProcess::start(&binary, &data, &config_path);
    let idle = memory(server.pid);
    eprintln!(
        "bench: server pid {} at {} (idle VmRSS {} KiB)",
        server.pid, server.origin, idle.0
    );

    let pool = ClientPool::new(CLIENT_THREADS);
    let setup_started = Instant::now();
    let world = pool.block_on(setup(pool.executor.clone(), server.origin.clone()));
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let after_setup = memory(server.pid);
    eprintln!(
        "bench: {USERS} users registered and joined in {setup_secs:.1} s; channel {}",
        world.channel
    );

    let total = Arc::new(AtomicU64::new(0));
    let mut results = Vec::new();
    for phase in &PHASES {
        eprintln!("bench: {} sender(s)...", phase.senders);
        let result = run_phase(&pool, &server, &world, phase, &total);
        eprintln!(
            "bench:   {} messages in {:.1} s, {} errors",
            result.ok,
            result.elapsed.as_secs_f64(),
            result.errors()
        );
        results.push(result);
    }
    let posted = total.load(Ordering::Relaxed);
    let after_fill = memory(server.pid);
    let server_log = server.stop();
    drop(pool);

    eprintln!("bench: DPoP and token micro-benchmarks...");
    let micro = micro_benchmarks();
    let load_after = loadavg();

    // ---- report ----
    println!();
    println!("Hearth message benchmark (benches/messages.rs)");
    println!("  code:    {git}");
    println!("  run at:  {} UTC", utc_now());
    println!("  machine: {cpus} CPU(s); load average before {load_before}, after {load_after}.");
    let busiest_others = results
        .iter()
        .map(|r| 100.0 * r.others_ticks as f64 / clk_tck / r.elapsed.as_secs_f64())
        .fold(0.0, f64::max);
    if busiest_others > 10.0 {
        println!(
            "           Other processes used up to {busiest_others:.0}% of a core during the \
             phases (\"oth CPU%\"): this is a loaded machine, so throughput is a lower \
             bound and latencies are inflated."
        );
    }
    println!(
        "  server:  {} (release), default argon2, login limits raised; data on {fs}",
        binary.display()
    );
    println!(
        "  client:  same machine, smol::Executor on {CLIENT_THREADS} threads; {USERS} users \
         (EdDSA device keys, to keep client signing cheap) who joined one guild by invite; \
         every sender has its own keep-alive connection and signs a fresh DPoP proof \
         (with the server nonce) for every request; senders share their user's token."
    );
    println!(
        "           latency = request written .. response read (proof signing excluded), \
         including nonce retries."
    );
    println!();
    print_load_table(&results, clk_tck, &calibration);
    println!();
    print_where_time_goes(&results, clk_tck, &calibration);
    println!();
    println!("Server memory (from /proc/PID/status)");
    println!("  {:<44} {:>10} {:>10}", "when", "VmRSS MiB", "VmHWM MiB");
    for (label, (rss, hwm)) in [
        ("idle, right after start".to_string(), idle),
        (
            format!("after {USERS} registrations + logins (argon2)"),
            after_setup,
        ),
        (format!("after {posted} messages posted"), after_fill),
    ] {
        println!(
            "  {:<44} {:>10.1} {:>10.1}",
            label,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    if posted < FILL_TARGET {
        println!(
            "  (only {posted} of the {FILL_TARGET} messages fit in the time limit of the last phase)"
        );
    }
    println!();
    println!(
        "In-process costs (this process, {MICRO_N} iterations each, one thread; on a loaded \
         machine the median is the figure to trust, means and p99 include preemption)"
    );
    println!(
        "  {:<58} {:>9} {:>9} {:>9}",
        "operation", "mean µs", "p50 µs", "p99 µs"
    );
    for row in &micro {
        println!(
            "  {:<58} {:>9.1} {:>9.1} {:>9.1}",
            row.name, row.mean_us, row.p50_us, row.p99_us
        );
    }
    let dpop_eddsa = micro
        .iter()
        .find(|r| r.name.starts_with("DpopVerifier::verify, EdDSA"))
        .map(|r| r.p50_us);
    if let (Some(dpop), Some(busiest)) = (dpop_eddsa, results.last()) {
        let http_us = busiest.threads.http.cpu_ns as f64 / 1e3 / busiest.ok.max(1) as f64;
        let server_us = busiest.server_ticks as f64 / clk_tck * 1e6 / busiest.ok.max(1) as f64;
        println!(
            "  -> with {} senders the server spent {server_us:.0} µs CPU per message, {http_us:.0} µs \
             of it on the HTTP threads; one EdDSA DPoP verification ({dpop:.0} µs median here) is \
             {:.0}% of the HTTP-thread cost and {:.0}% of the total",
            busiest.senders,
            100.0 * dpop / http_us.max(1e-9),
            100.0 * dpop / server_us.max(1e-9)
        );
    }
    let failures: Vec<&PhaseResult> = results.iter().filter(|r| r.errors() > 0).collect();
    if !failures.is_empty() {
        println!();
        println!("Errors:");
        for r in failures {
            println!(
                "  {} senders: {} network errors, statuses {:?}, first: {}",
                r.senders,
                r.net_errors,
                r.statuses,
                r.first_error.as_deref().unwrap_or("-")
            );
        }
        if !server_log.is_empty() {
            println!("  server stderr (last lines):");
            for line in server_log {
                println!("    {line}");
            }
        }
    }
    println!();
    println!("Total bench time {:.0} s.", started.elapsed().as_secs_f64());
    assert!(
        results.iter().all(|r| r.ok > 0),
        "a phase posted no message at all"
    );
}

// ---------------------------------------------------------------------------------------
// Reports

impl PhaseResult {
    /// Durable commits in the phase: the perf fdatasync count when available ("="), else
    /// the header transaction id movement divided by the calibrated ids per commit ("~").
    fn commits(&self, calibration: &Calibration) -> Option<(f64, &'static str)> {
        match (self.syncs, self.txn_ids, calibration.ids_per_commit) {
            (Some(n), _, _) if n > 0 => Some((n as f64, "=")),
            (_, Some(ids), Some(per)) if ids > 0 && per > 0.0 => Some((ids as f64 / per, "~")),
            _ => None,
        }
    }
}

fn print_load_table(results: &[PhaseResult], clk_tck: f64, calibration: &Calibration) {
    println!("POST /api/v1/channels/{{c}}/messages, durable (201 only after the group commit)");
    println!(
        "  {:>7} {:>5} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "senders",
        "secs",
        "messages",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "srv CPU%",
        "srv µs/msg",
        "cli CPU%",
        "oth CPU%",
        "commits",
        "avg batch",
        "KiB/msg"
    );
    for r in results {
        let secs = r.elapsed.as_secs_f64();
        let srv_cpu = r.server_ticks as f64 / clk_tck;
        let cli_cpu = r.client_ticks as f64 / clk_tck;
        let (commits, batch) = match r.commits(calibration) {
            Some((c, mark)) => (
                format!("{mark}{c:.0}"),
                format!("{mark}{:.1}", r.ok as f64 / c),
            ),
            None => ("?".to_string(), "?".to_string()),
        };
        println!(
            "  {:>7} {:>5.1} {:>8} {:>7.0} {:>7.2} {:>7.2} {:>7.1} {:>6} {:>8.0} {:>10.0} {:>8.0} {:>8.0} {:>8} {:>9} {:>8.2}",
            r.senders,
            secs,
            r.ok,
            r.ok as f64 / secs,
            percentile(&r.latencies, 50.0) / 1000.0,
            percentile(&r.latencies, 99.0) / 1000.0,
            r.latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
            r.errors(),
            100.0 * srv_cpu / secs,
            1e6 * srv_cpu / r.ok.max(1) as f64,
            100.0 * cli_cpu / secs,
            100.0 * r.others_ticks as f64 / clk_tck / secs,
            commits,
            batch,
            r.write_bytes as f64 / 1024.0 / r.ok.max(1) as f64,
        );
    }
    println!(
        "  CPU% is of one core (utime+stime from /proc/PID/stat; cli = this bench process, load generator plus the 1 kHz /proc sampler; \
         oth = every other process on the machine, from /proc/stat). \
         commits: \"=\" counted exactly (perf stat on the server's fdatasync/fsync calls; \
         redb makes one per durable commit), \"~\" estimated from the redb header's \
         transaction id. avg batch = messages / commits. KiB/msg = write_bytes of \
         /proc/PID/io per message."
    );
    if results.iter().any(|r| r.nonce_retries > 0) {
        let retries: Vec<String> = results
            .iter()
            .map(|r| format!("{}: {}", r.senders, r.nonce_retries))
            .collect();
        println!(
            "  use_dpop_nonce retries by senders: {}",
            retries.join(", ")
        );
    }
}

fn print_where_time_goes(results: &[PhaseResult], clk_tck: f64, calibration: &Calibration) {
    println!("Where the time goes (server threads; /proc/PID/task/*/stat and schedstat)");
    println!(
        "  {:>7} {:>25} {:>25} {:>10} {:>12} {:>14}",
        "senders",
        "http threads CPU%",
        "writer thread CPU%",
        "other CPU%",
        "http µs/msg",
        "writer µs/msg"
    );
    for r in results {
        let secs = r.elapsed.as_secs_f64();
        let pct = |g: &ThreadGroup| {
            format!(
                "{:.0} ({:.0}u+{:.0}s) wait {:.0}",
                100.0 * g.cpu_ns as f64 / 1e9 / secs,
                100.0 * g.user_ticks as f64 / clk_tck / secs,
                100.0 * g.sys_ticks as f64 / clk_tck / secs,
                100.0 * g.wait_ns as f64 / 1e9 / secs
            )
        };
        let per_msg = |g: &ThreadGroup| g.cpu_ns as f64 / 1e3 / r.ok.max(1) as f64;
        println!(
            "  {:>7} {:>25} {:>25} {:>10.0} {:>12.0} {:>14.0}",
            r.senders,
            pct(&r.threads.http),
            pct(&r.threads.writer),
            100.0 * r.threads.other.cpu_ns as f64 / 1e9 / secs,
            per_msg(&r.threads.http),
            per_msg(&r.threads.writer),
        );
    }
    println!(
        "  u/s = user/system time; wait = runnable but waiting for a CPU (run queue); \
         http = the {} hearth-http-N threads, other = accept loop, reactor, blocking pool",
        results.first().map_or(0, |r| r.threads.http.threads)
    );
    for r in results {
        let samples: u64 = r.writer_states.values().sum();
        if samples == 0 {
            continue;
        }
        let mut states: Vec<(&String, &u64)> = r.writer_states.iter().collect();
        states.sort_by(|a, b| b.1.cmp(a.1));
        let shown: Vec<String> = states
            .iter()
            .take(6)
            .map(|(s, n)| format!("{s} {:.0}%", 100.0 * **n as f64 / samples as f64))
            .collect();
        println!(
            "  writer thread state, {} senders ({samples} samples): {}",
            r.senders,
            shown.join(", ")
        );
        if let Some((commits, mark)) = r.commits(calibration) {
            let secs = r.elapsed.as_secs_f64();
            let in_sync =
                r.writer_states.get("fdatasync").copied().unwrap_or(0) as f64 / samples as f64;
            let ids = r.txn_ids.map_or(String::new(), |ids| {
                format!("; header transaction ids moved {ids}")
            });
            println!(
                "    {mark}{:.0} commits/s, {:.0} µs per commit, {:.0} µs of it blocked in fdatasync, \
                 writer CPU {:.0} µs per commit{ids}",
                commits / secs,
                1e6 * secs / commits,
                1e6 * secs * in_sync / commits,
                r.threads.writer.cpu_ns as f64 / 1e3 / commits,
            );
        }
    }
    println!(
        "  (writer states sampled every ~1 ms from /proc/PID/task/TID/syscall: runnable = on a \
         CPU or waiting for one, including time inside syscalls that do not block; futex = \
         idle, waiting for requests)"
    );
    println!(
        "  calibration on the same file system (this process, redb directly): 1-row commit \
         {:.0} µs, empty commit {:.0} µs, 4 KiB write+fdatasync {:.0} µs; header transaction \
         ids per 1-row commit: {}",
        calibration.row_commit_us,
        calibration.empty_commit_us,
        calibration.fdatasync_us,
        calibration
            .ids_per_commit
            .map_or("unreadable".to_string(), |r| format!("{r:.2}"))
    );
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

// ---------------------------------------------------------------------------------------
// Client executor

/// A `smol::Executor` run by `threads` OS threads until dropped.
struct ClientPool {
    executor: Arc<smol::Executor<'static>>,
    stop: Option<async_channel::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ClientPool {
    fn new(threads: usize) -> ClientPool {
        let executor = Arc::new(smol::Executor::new());
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let threads = (0..threads)
            .map(|i| {
                let executor = executor.clone();
                let stopped = stopped.clone();
                std::thread::Builder::new()
                    .name(format!("bench-client-{i}"))
                    .spawn(move || {
                        smol::block_on(executor.run(async move {
                            let _ = stopped.recv().await;
                        }))
                    })
                    .expect("client thread")
            })
            .collect();
        ClientPool {
            executor,
            stop: Some(stop),
            threads,
        }
    }

    /// Runs `future` on the pool and waits for it from this thread.
    fn block_on<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        smol::block_on(self.executor.spawn(future))
    }

    fn spawn<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> smol::Task<T> {
        self.executor.spawn(future)
    }
}

impl Drop for ClientPool {
    fn drop(&mut self) {
        self.stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Setup: users, guild, invite

struct World {
    addr: SocketAddr,
    channel: String,
    users: Vec<BenchUser>,
}

#[derive(Clone)]
struct BenchUser {
    client: Client,
    authorization: Arc<str>,
}

async fn setup(executor: Arc<smol::Executor<'static>>, origin: String) -> World {
    let addr: SocketAddr = origin
        .trim_start_matches("http://")
        .parse()
        .expect("origin is http://IP:PORT");
    // Two registrations at a time: each costs an argon2id hash in the client (key backup)
    // and two on the server (hash, then the password login).
    let mut clients = Vec::new();
    for pair in (0..USERS).collect::<Vec<_>>().chunks(2) {
        let tasks: Vec<_> = pair
            .iter()
            .map(|&i| {
                let origin = origin.clone();
                executor.spawn(async move {
                    let client = Client::with_device_key(SigningKey::generate_ed25519());
                    client
                        .register(&origin, &format!("bench{i:02}"), PASSWORD)
                        .await
                        .unwrap_or_else(|e| panic!("register bench{i:02}: {e}"));
                    client
                })
            })
            .collect();
        for task in tasks {
            clients.push(task.await);
        }
    }
    let owner = &clients[0];
    let guild = owner
        .post(
            &format!("{origin}/api/v1/guilds"),
            json!({"name": "Bench guild"}),
        )
        .await
        .and_then(|r| r.ok())
        .and_then(|r| r.json())
        .expect("create guild");
    let channel = guild["channels"][0]["id"]
        .as_str()
        .expect("the new guild has a text channel")
        .to_string();
    let invite = owner
        .post(
            &format!("{origin}/api/v1/channels/{channel}/invites"),
            json!({}),
        )
        .await
        .and_then(|r| r.ok())
        .and_then(|r| r.json())
        .expect("create invite");
    let code = invite["code"].as_str().expect("invite code").to_string();
    for (i, client) in clients.iter().enumerate().skip(1) {
        client
            .post(&format!("{origin}/api/v1/invites/{code}"), json!({}))
            .await
            .and_then(|r| r.ok())
            .unwrap_or_else(|e| panic!("bench{i:02} joins: {e}"));
    }
    let users = clients
        .into_iter()
        .map(|client| {
            let token = client.access_token(&origin).expect("signed in");
            BenchUser {
                client,
                authorization: format!("DPoP {token}").into(),
            }
        })
        .collect();
    World {
        addr,
        channel,
        users,
    }
}

// ---------------------------------------------------------------------------------------
// Load phases

#[derive(Default)]
struct SenderStats {
    ok: u64,
    latencies: Vec<u32>,
    nonce_retries: u64,
    net_errors: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
}

impl SenderStats {
    fn error(&mut self, message: String) {
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }
}

struct PhaseResult {
    senders: usize,
    elapsed: Duration,
    ok: u64,
    /// Sorted, microseconds.
    latencies: Vec<u32>,
    nonce_retries: u64,
    net_errors: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
    server_ticks: u64,
    client_ticks: u64,
    /// CPU ticks used by everything else on the machine during the phase.
    others_ticks: u64,
    /// fdatasync+fsync calls of the server during the phase (perf), ≈ commits.
    syncs: Option<u64>,
    /// Movement of the redb header's transaction id.
    txn_ids: Option<u64>,
    write_bytes: u64,
    threads: ThreadDeltas,
    writer_states: BTreeMap<String, u64>,
}

impl PhaseResult {
    fn errors(&self) -> u64 {
        self.net_errors + self.statuses.values().sum::<u64>()
    }
}

#[derive(Clone, Copy)]
struct StopRule {
    min_until: Instant,
    max_until: Instant,
    stop_at_total: Option<u64>,
}

impl StopRule {
    fn done(&self, total: &AtomicU64) -> bool {
        let now = Instant::now();
        now >= self.max_until
            || (now >= self.min_until
                && self
                    .stop_at_total
                    .is_some_and(|t| total.load(Ordering::Relaxed) >= t))
    }
}

/// What one sender needs; the connection is its own.
struct Sender {
    id: usize,
    user: BenchUser,
    url: http_types::Url,
    url_text: String,
    addr: SocketAddr,
    nonce: String,
    stream: Option<smol::net::TcpStream>,
}

async fn connect(addr: SocketAddr) -> std::io::Result<smol::net::TcpStream> {
    let stream = smol::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn run_phase(
    pool: &ClientPool,
    server: &ServerProcess,
    world: &World,
    phase: &Phase,
    total: &Arc<AtomicU64>,
) -> PhaseResult {
    let url_text = format!(
        "http://{}/api/v1/channels/{}/messages",
        world.addr, world.channel
    );
    let url = http_types::Url::parse(&url_text).expect("url");
    // Connections and a current nonce first, outside the timed window.
    let addr = world.addr;
    let origin = format!("http://{addr}");
    let nonce = pool
        .block_on({
            let client = world.users[0].client.clone();
            async move { client.fetch_nonce(&origin).await }
        })
        .expect("nonce");
    let senders: Vec<Sender> = pool.block_on({
        let users = world.users.clone();
        let count = phase.senders;
        async move {
            let mut senders = Vec::with_capacity(count);
            for id in 0..count {
                senders.push(Sender {
                    id,
                    user: users[id % users.len()].clone(),
                    url: url.clone(),
                    url_text: url_text.clone(),
                    addr,
                    nonce: nonce.clone(),
                    stream: Some(connect(addr).await.expect("connect")),
                });
            }
            senders
        }
    });

    let db = server.data.join("hearth.redb");
    let sync_counter = SyncCounter::start(server.pid);
    let before = Snapshot::take(server.pid, &db);
    let writer_sampler = WriterSampler::start(server.pid);
    let t0 = Instant::now();
    let rule = StopRule {
        min_until: t0 + phase.min,
        max_until: t0 + phase.max,
        stop_at_total: phase.stop_at_total,
    };
    let tasks: Vec<smol::Task<SenderStats>> = senders
        .into_iter()
        .map(|s| pool.spawn(send_loop(s, rule, total.clone())))
        .collect();
    let stats: Vec<SenderStats> = tasks.into_iter().map(smol::block_on).collect();
    let elapsed = t0.elapsed();
    let after = Snapshot::take(server.pid, &db);
    let writer_states = writer_sampler
        .map(WriterSampler::finish)
        .unwrap_or_default();
    let syncs = sync_counter.and_then(SyncCounter::finish);

    let mut result = PhaseResult {
        senders: phase.senders,
        elapsed,
        ok: 0,
        latencies: Vec::new(),
        nonce_retries: 0,
        net_errors: 0,
        statuses: BTreeMap::new(),
        first_error: None,
        server_ticks: after.server_ticks.saturating_sub(before.server_ticks),
        client_ticks: after.client_ticks.saturating_sub(before.client_ticks),
        others_ticks: after
            .machine_ticks
            .saturating_sub(before.machine_ticks)
            .saturating_sub(after.server_ticks.saturating_sub(before.server_ticks))
            .saturating_sub(after.client_ticks.saturating_sub(before.client_ticks)),
        syncs,
        txn_ids: match (before.txn_id, after.txn_id) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        write_bytes: after.write_bytes.saturating_sub(before.write_bytes),
        threads: ThreadDeltas::between(&before.threads, &after.threads),
        writer_states,
    };
    for s in stats {
        result.ok += s.ok;
        result.latencies.extend(s.latencies);
        result.nonce_retries += s.nonce_retries;
        result.net_errors += s.net_errors;
        for (status, n) in s.statuses {
            *result.statuses.entry(status).or_default() += n;
        }
        if result.first_error.is_none() {
            result.first_error = s.first_error;
        }
    }
    result.latencies.sort_unstable();
    result
}

struct Reply {
    status: u16,
    nonce: Option<String>,
    keep_alive: bool,
    body: Vec<u8>,
}

async fn exchange(
    stream: &smol::net::TcpStream,
    url: &http_types::Url,
    authorization: &str,
    proof: &str,
    body: Vec<u8>,
) -> Result<Reply, String> {
    let mut req = http_types::Request::new(http_types::Method::Post, url.clone());
    req.insert_header("Authorization", authorization);
    req.insert_header("DPoP", proof);
    req.insert_header("Content-Type", "application/json");
    req.set_body(body);
    let mut response = async_h1::connect(stream.clone(), req)
        .await
        .map_err(|e| e.to_string())?;
    let body = response.body_bytes().await.map_err(|e| e.to_string())?;
    Ok(Reply {
        status: response.status().into(),
        nonce: response
            .header("DPoP-Nonce")
            .map(|v| v.as_str().to_string()),
        keep_alive: response
            .header("Connection")
            .is_none_or(|v| !v.as_str().eq_ignore_ascii_case("close")),
        body,
    })
}

async fn send_loop(mut s: Sender, rule: StopRule, total: Arc<AtomicU64>) -> SenderStats {
    let mut stats = SenderStats {
        latencies: Vec::with_capacity(4096),
        ..SenderStats::default()
    };
    let mut seq = 0u64;
    while !rule.done(&total) {
        seq += 1;
        let body = format!(
            r#"{{"content":"bench message {} #{seq}: the quick brown fox jumps over the lazy dog"}}"#,
            s.id
        )
        .into_bytes();
        let mut elapsed = Duration::ZERO;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let proof = make_proof(
                s.user.client.device_key(),
                "POST",
                &s.url_text,
                Some(s.user.authorization.trim_start_matches("DPoP ")),
                Some(&s.nonce),
                unix_now(),
            );
            let started = Instant::now();
            let stream = match s.stream.take() {
                Some(stream) => stream,
                None => match connect(s.addr).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        stats.net_errors += 1;
                        stats.error(format!("connect: {e}"));
                        smol::Timer::after(Duration::from_millis(10)).await;
                        break;
                    }
                },
            };
            let reply =
                exchange(&stream, &s.url, &s.user.authorization, &proof, body.clone()).await;
            elapsed += started.elapsed();
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) => {
                    stats.net_errors += 1;
                    stats.error(format!("network: {e}"));
                    break;
                }
            };
            if reply.keep_alive {
                s.stream = Some(stream);
            }
            if let Some(nonce) = reply.nonce {
                s.nonce = nonce;
            }
            if reply.status == 201 {
                stats.ok += 1;
                total.fetch_add(1, Ordering::Relaxed);
                stats
                    .latencies
                    .push(elapsed.as_micros().min(u32::MAX as u128) as u32);
                break;
            }
            let text = String::from_utf8_lossy(&reply.body).into_owned();
            if reply.status == 401 && text.contains("use_dpop_nonce") && attempts < 3 {
                stats.nonce_retries += 1;
                continue;
            }
            *stats.statuses.entry(reply.status).or_default() += 1;
            stats.error(format!("{}: {text}", reply.status));
            break;
        }
    }
    stats
}

// ---------------------------------------------------------------------------------------
// The server process

struct ServerProcess {
    child: Child,
    pid: u32,
    origin: String,
    data: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    fn start(binary: &Path, data: &Path, config: &Path) -> ServerProcess {
        assert!(
            binary.exists(),
            "{} is missing: run `cargo build --release` (cargo bench builds it too)",
            binary.display()
        );
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth serve");
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, origin) = mpsc::channel::<String>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut found = Some(found);
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.strip_prefix("hearth: listening on ") {
                        let origin = rest.split_whitespace().next().unwrap_or("").to_string();
                        if let Some(tx) = found.take() {
                            let _ = tx.send(origin);
                        }
                    }
                    // Keep the first 30 lines (start-up trouble) and the last 20.
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push(line);
                    if log.len() > 50 {
                        log.remove(30);
                    }
                }
            });
        }
        let origin = match origin.recv_timeout(Duration::from_secs(20)) {
            Ok(origin) => origin,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
                panic!("hearth serve did not report its address; its stderr:\n{log}");
            }
        };
        ServerProcess {
            child,
            pid,
            origin,
            data: data.to_path_buf(),
            log,
        }
    }

    /// SIGTERM, then SIGKILL after 10 s. Returns the last lines of stderr.
    fn stop(&mut self) -> Vec<String> {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid.to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// /proc readers

/// (VmRSS, VmHWM) in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of a whole process, in clock ticks.
fn cpu_ticks(stat_path: &str) -> u64 {
    let (user, sys) = user_sys_ticks(Path::new(stat_path));
    user + sys
}

/// (utime, stime) in clock ticks from a `stat` file of proc(5).
fn user_sys_ticks(stat_path: &Path) -> (u64, u64) {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); after the comm, the state is index 0.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get(11), get(12))
}

/// Busy time of all CPUs together (everything but idle and iowait), clock ticks.
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let fields: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    fields.iter().sum::<u64>() - fields.get(3).unwrap_or(&0) - fields.get(4).unwrap_or(&0)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn io_write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One server thread's counters.
#[derive(Clone, Default)]
struct ThreadTimes {
    name: String,
    /// On-CPU and run-queue wait time from `schedstat`, ns.
    cpu_ns: u64,
    wait_ns: u64,
    /// utime and stime from `stat`, clock ticks.
    user_ticks: u64,
    sys_ticks: u64,
}

/// Per thread id.
fn thread_times(pid: u32) -> HashMap<u32, ThreadTimes> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let sched = std::fs::read_to_string(entry.path().join("schedstat")).unwrap_or_default();
        let mut parts = sched
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        let (user_ticks, sys_ticks) = user_sys_ticks(&entry.path().join("stat"));
        out.insert(
            tid,
            ThreadTimes {
                name: comm.trim().to_string(),
                cpu_ns: parts.next().unwrap_or(0),
                wait_ns: parts.next().unwrap_or(0),
                user_ticks,
                sys_ticks,
            },
        );
    }
    out
}

#[derive(Default, Clone, Copy)]
struct ThreadGroup {
    threads: usize,
    cpu_ns: u64,
    wait_ns: u64,
    user_ticks: u64,
    sys_ticks: u64,
}

#[derive(Default)]
struct ThreadDeltas {
    http: ThreadGroup,
    writer: ThreadGroup,
    other: ThreadGroup,
}

impl ThreadDeltas {
    fn between(
        before: &HashMap<u32, ThreadTimes>,
        after: &HashMap<u32, ThreadTimes>,
    ) -> ThreadDeltas {
        let mut d = ThreadDeltas::default();
        for (tid, now) in after {
            let then = before.get(tid).cloned().unwrap_or_default();
            let group = if now.name == "hearth-writer" {
                &mut d.writer
            } else if now.name.starts_with("hearth-http") {
                &mut d.http
            } else {
                &mut d.other
            };
            group.threads += 1;
            group.cpu_ns += now.cpu_ns.saturating_sub(then.cpu_ns);
            group.wait_ns += now.wait_ns.saturating_sub(then.wait_ns);
            group.user_ticks += now.user_ticks.saturating_sub(then.user_ticks);
            group.sys_ticks += now.sys_ticks.saturating_sub(then.sys_ticks);
        }
        d
    }
}

struct Snapshot {
    /// Busy clock ticks of the whole machine (all CPUs), from /proc/stat.
    machine_ticks: u64,
    server_ticks: u64,
    client_ticks: u64,
    txn_id: Option<u64>,
    write_bytes: u64,
    threads: HashMap<u32, ThreadTimes>,
}

impl Snapshot {
    fn take(pid: u32, db: &Path) -> Snapshot {
        Snapshot {
            machine_ticks: machine_busy_ticks(),
            server_ticks: cpu_ticks(&format!("/proc/{pid}/stat")),
            client_ticks: cpu_ticks("/proc/self/stat"),
            txn_id: redb_transaction_id(db),
            write_bytes: io_write_bytes(pid),
            threads: thread_times(pid),
        }
    }
}

/// The last committed transaction id in a redb file: the larger of the two commit
/// slots' ids (redb 4 header: slots at 64 and 192, id at offset 104 in a slot). Checked
/// against a known number of commits by [`calibrate_commits`].
fn redb_transaction_id(path: &Path) -> Option<u64> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 320];
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_exact(&mut header).ok()?;
    if &header[..4] != b"redb" {
        return None;
    }
    let id = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or([0; 8]));
    Some(id(64 + 104).max(id(192 + 104)))
}

/// Samples what the server's writer thread is doing (`/proc/PID/task/TID/syscall`)
/// about once a millisecond from a thread of its own.
struct WriterSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<String, u64>>,
}

impl WriterSampler {
    fn start(pid: u32) -> Option<WriterSampler> {
        let tid = thread_times(pid)
            .into_iter()
            .find(|(_, t)| t.name == "hearth-writer")
            .map(|(tid, _)| tid)?;
        let path = format!("/proc/{pid}/task/{tid}/syscall");
        std::fs::read_to_string(&path).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut states = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(text) = std::fs::read_to_string(&path) else {
                        break;
                    };
                    let first = text.split_whitespace().next().unwrap_or("?");
                    *states.entry(syscall_name(first)).or_insert(0u64) += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                states
            })
        };
        Some(WriterSampler { stop, thread })
    }

    fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn syscall_name(first: &str) -> String {
    let name = match first {
        "running" => "runnable",
        "-1" => "preempted",
        #[cfg(target_arch = "x86_64")]
        n => match n {
            "0" => "read",
            "1" => "write",
            "17" => "pread64",
            "18" => "pwrite64",
            "74" => "fsync",
            "75" => "fdatasync",
            "202" => "futex",
            "9" => "mmap",
            "11" => "munmap",
            "28" => "madvise",
            "77" => "ftruncate",
            "285" => "fallocate",
            other => return format!("syscall {other}"),
        },
        #[cfg(not(target_arch = "x86_64"))]
        other => return format!("syscall {other}"),
    };
    name.to_string()
}

// ---------------------------------------------------------------------------------------
// Commit calibration

struct Calibration {
    /// How far the redb header's transaction id moves per durable commit that changes
    /// data: redb 4 spends a second id on a non-durable "epilogue" commit whenever the
    /// commit freed pages, so 2 in steady state and 1 when nothing could be freed.
    ids_per_commit: Option<f64>,
    row_commit_us: f64,
    empty_commit_us: f64,
    fdatasync_us: f64,
}

/// Times durable redb commits and a raw write+fdatasync on the bench's file system, and
/// measures how [`redb_transaction_id`] moves per commit.
fn calibrate_commits(dir: &Path) -> Calibration {
    const N: u64 = 200;
    let path = dir.join("calibration.redb");
    let table: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("t");
    let db = redb::Database::create(&path).expect("calibration database");
    let commit = |insert: Option<u64>| {
        let txn = db.begin_write().expect("begin");
        if let Some(i) = insert {
            txn.open_table(table)
                .expect("table")
                .insert(i, i)
                .expect("insert");
        }
        txn.commit().expect("commit");
    };
    commit(Some(0));
    let first = redb_transaction_id(&path);
    let start = Instant::now();
    for i in 0..N {
        commit(Some(i));
    }
    let row_commit_us = start.elapsed().as_secs_f64() * 1e6 / N as f64;
    let last = redb_transaction_id(&path);
    let ids_per_commit = match (first, last) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / N as f64),
        _ => None,
    };
    let start = Instant::now();
    for _ in 0..N {
        commit(None);
    }
    let empty_commit_us = start.elapsed().as_secs_f64() * 1e6 / N as f64;
    drop(db);
    let _ = std::fs::remove_file(&path);

    let raw = dir.join("calibration.raw");
    let mut file = std::fs::File::create(&raw).expect("calibration file");
    let page = [7u8; 4096];
    let start = Instant::now();
    for _ in 0..N {
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.write_all(&page).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let fdatasync_us = start.elapsed().as_secs_f64() * 1e6 / N as f64;
    drop(file);
    let _ = std::fs::remove_file(&raw);
    Calibration {
        ids_per_commit,
        row_commit_us,
        empty_commit_us,
        fdatasync_us,
    }
}

/// Counts the server's fdatasync/fsync calls exactly with `perf stat` on the
/// `syscalls:sys_enter_*` tracepoints, when perf is installed and allowed. redb makes one
/// fdatasync per durable commit (plus one when it grows the file).
struct SyncCounter {
    child: Child,
}

impl SyncCounter {
    fn start(pid: u32) -> Option<SyncCounter> {
        let mut child = Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                "syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync",
                "-p",
                &pid.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        // Let perf attach before the load starts; nothing is written meanwhile.
        std::thread::sleep(Duration::from_millis(300));
        if !matches!(child.try_wait(), Ok(None)) {
            let _ = child.wait();
            return None;
        }
        Some(SyncCounter { child })
    }

    fn finish(mut self) -> Option<u64> {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let mut text = String::new();
        self.child.stderr.take()?.read_to_string(&mut text).ok()?;
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.contains("syscalls:sys_enter_"))
            .map(|l| l.split(',').next().unwrap_or("").trim().parse::<u64>())
            .collect::<Result<_, _>>()
            .ok()?;
        (counts.len() == 2).then(|| counts.iter().sum())
    }
}

// ---------------------------------------------------------------------------------------
// In-process micro-benchmarks

struct MicroRow {
    name: String,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
}

fn micro_row(name: impl Into<String>, mut times: Vec<Duration>) -> MicroRow {
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pick = |p: f64| {
        let rank = ((p / 100.0) * times.len() as f64).ceil() as usize;
        us(times[rank.clamp(1, times.len()) - 1])
    };
    MicroRow {
        name: name.into(),
        mean_us: times.iter().map(|d| us(*d)).sum::<f64>() / times.len() as f64,
        p50_us: pick(50.0),
        p99_us: pick(99.0),
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn micro_benchmarks() -> Vec<MicroRow> {
    let origin = "http://127.0.0.1:8080";
    let url = format!("{origin}/api/v1/channels/1234567890/messages");
    let server_key = ServerKey::generate();
    let now = unix_now();
    let mut rows = Vec::new();
    let mut token_for_cache = None;
    for key in [SigningKey::generate_es256(), SigningKey::generate_ed25519()] {
        let alg = key.alg();
        let mut secret = [0u8; 32];
        secret
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let verifier = DpopVerifier::new(
            secret,
            DpopConfig {
                require_nonce: true,
                // Large enough that no early nonce rotation happens during the loop.
                jti_capacity: 4 * MICRO_N,
                ..DpopConfig::default()
            },
        );
        let nonce = verifier.nonce(now);
        let jkt = key.public_jwk().thumbprint();
        let (token, _) = mint_access_token(&server_key, origin, "bench-user", &jkt, now, 900);
        let (proofs, sign_times): (Vec<String>, Vec<Duration>) = (0..MICRO_N)
            .map(|_| timed(|| make_proof(&key, "POST", &url, Some(&token), Some(&nonce), now)))
            .unzip();
        let verify_times: Vec<Duration> = proofs
            .iter()
            .map(|proof| {
                let list = [proof.as_str()];
                let urls = [url.as_str()];
                let request = DpopRequest {
                    proofs: &list,
                    method: "POST",
                    urls: &urls,
                    access_token: Some(&token),
                };
                let (verified, took) = timed(|| verifier.verify(&request, now));
                let verified = verified.expect("a fresh proof verifies");
                assert_eq!(verified.jkt, jkt);
                took
            })
            .collect();
        let jwk = key.public_jwk();
        let parse_times: Vec<Duration> = proofs
            .iter()
            .map(|p| {
                let (jws, took) = timed(|| Jws::parse(p).expect("parse"));
                let (ok, sig) = timed(|| jws.verify(&jwk));
                ok.expect("signature");
                took + sig
            })
            .collect();
        rows.push(micro_row(
            format!("DpopVerifier::verify, {alg} proof (nonce, ath, fresh jti)"),
            verify_times,
        ));
        rows.push(micro_row(
            format!("  of which Jws::parse + signature check, {alg}"),
            parse_times,
        ));
        rows.push(micro_row(
            format!("make_proof, {alg} (client side, per request)"),
            sign_times,
        ));
        if let SigningKey::EdDsa(secret) = &key {
            rows.extend(ed25519_signature_only(
                &secret.verifying_key().to_bytes(),
                &proofs,
            ));
        }
        token_for_cache = Some((token, jkt));
    }
    let (token, _) = token_for_cache.expect("a token");
    let public = server_key.public_bytes();
    let verify_times: Vec<Duration> = (0..MICRO_N)
        .map(|_| {
            let (claims, took) = timed(|| verify_access_token(&token, &public, origin, now, 0));
            claims.expect("token verifies");
            took
        })
        .collect();
    rows.push(micro_row(
        "verify_access_token (EdDSA JWT, not cached)",
        verify_times,
    ));
    let cache = AccessTokenCache::new(10_000);
    let claims = verify_access_token(&token, &public, origin, now, 0).expect("token verifies");
    cache.insert(&token, claims);
    let hit_times: Vec<Duration> = (0..MICRO_N)
        .map(|_| {
            let (hit, took) = timed(|| cache.get(&token, now));
            assert!(hit.is_some());
            took
        })
        .collect();
    rows.push(micro_row(
        "AccessTokenCache::get hit (what the server does per request)",
        hit_times,
    ));
    rows
}

/// The Ed25519 signature check alone, as the server does it (ed25519-dalek
/// `verify_strict`, key decoded per call) and with ring, on the same proofs.
fn ed25519_signature_only(public: &[u8; 32], proofs: &[String]) -> Vec<MicroRow> {
    let parts: Vec<(&str, Vec<u8>)> = proofs
        .iter()
        .map(|p| {
            let (input, sig) = p.rsplit_once('.').expect("compact JWS");
            (
                input,
                hearth::auth::jose::b64u_decode(sig).expect("base64url"),
            )
        })
        .collect();
    let dalek: Vec<Duration> = parts
        .iter()
        .map(|(input, sig)| {
            let (ok, took) = timed(|| {
                let key = ed25519_dalek::VerifyingKey::from_bytes(public).expect("key");
                let sig = ed25519_dalek::Signature::from_slice(sig).expect("signature");
                key.verify_strict(input.as_bytes(), &sig).is_ok()
            });
            assert!(ok);
            took
        })
        .collect();
    let ring: Vec<Duration> = parts
        .iter()
        .map(|(input, sig)| {
            let (ok, took) = timed(|| {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
                    .verify(input.as_bytes(), sig)
                    .is_ok()
            });
            assert!(ok);
            took
        })
        .collect();
    vec![
        micro_row(
            "  Ed25519 signature only: ed25519-dalek verify_strict (now)",
            dalek,
        ),
        micro_row("  Ed25519 signature only: ring ED25519 (alternative)", ring),
    ]
}

// ---------------------------------------------------------------------------------------
// Small helpers

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn utc_now() -> String {
    let secs = unix_now();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn git_info() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    match run(&["log", "-1", "--format=%H (committed %cI)"]) {
        Some(head) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}, plus uncommitted changes in the working tree")
            } else {
                head
            }
        }
        None => "unknown (git not available)".to_string(),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// "ext4 (/dev/vda)" for the mount holding `path`.
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), f[2], f[0]))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, fs, dev)| format!("{fs} ({dev})"))
        .unwrap_or_else(|| "unknown file system".into())
}
