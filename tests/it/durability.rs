//! Durability of the real binary: many concurrent senders, the server SIGKILLed in the
//! middle and restarted on the same data, again and again; and `hearth backup` taken
//! while senders post.
//!
//! Every sender posts numbered messages one after the other (`TAG#0`, `TAG#1`, ...) and
//! sends the next only once the previous one was answered. So, besides "every message
//! answered 2xx is there", any consistent state of the database holds, for each sender,
//! exactly a prefix of its sequence.

use crate::common::*;
use hearth::client::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "durable-password-123";

/// What the senders did.
#[derive(Default)]
struct Ledger {
    /// Content of every message sent (answered or not).
    attempted: HashSet<String>,
    /// Content → id of every message answered 2xx.
    acked: HashMap<String, String>,
    /// Anything that should not happen while the server is up.
    unexpected: Vec<String>,
}

/// A running group of senders.
struct Load {
    acked: Arc<AtomicUsize>,
    /// The sender whose acknowledgement brings `acked` to `target` signals `reached`, so
    /// the server can be killed right after an answer, when a commit that answered too
    /// early would still be in progress.
    target: Arc<AtomicUsize>,
    reached: async_channel::Receiver<()>,
    /// Set just before the server is killed: errors after it are expected.
    killing: Arc<AtomicBool>,
    /// Set to end the senders politely.
    stop: Arc<AtomicBool>,
    tasks: Vec<smol::Task<()>>,
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    hearth::system::random_bytes(&mut bytes);
    u64::from_le_bytes(bytes) % n
}

async fn timeout<T>(secs: u64, f: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(f.await) }, async {
        smol::Timer::after(Duration::from_secs(secs)).await;
        None
    })
    .await
}

impl Load {
    /// Starts one sender per client, each posting `{prefix}w{i}#{n}` to `channel`.
    fn start(
        clients: &[Client],
        origin: &str,
        channel: &str,
        prefix: &str,
        ledger: &Arc<Mutex<Ledger>>,
    ) -> Load {
        let acked = Arc::new(AtomicUsize::new(0));
        let target = Arc::new(AtomicUsize::new(usize::MAX));
        let (reach, reached) = async_channel::bounded::<()>(1);
        let killing = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{origin}/api/v1/channels/{channel}/messages");
        let tasks = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let (client, url, tag) = (client.clone(), url.clone(), format!("{prefix}w{i}"));
                let (ledger, acked, killing, stop) =
                    (ledger.clone(), acked.clone(), killing.clone(), stop.clone());
                let (target, reach) = (target.clone(), reach.clone());
                smol::spawn(async move {
                    for seq in 0u64.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let content = format!("{tag}#{seq}");
                        lock(&ledger).attempted.insert(content.clone());
                        let answer = client.post(&url, json!({ "content": content })).await;
                        let mut ledger = lock(&ledger);
                        match answer {
                            Ok(r) if (200..300).contains(&r.status) => {
                                let body = r.json().unwrap_or_default();
                                if body["content"] != content.as_str()
                                    && killing.load(Ordering::SeqCst)
                                {
                                    // An answer cut short by the kill: not acknowledged.
                                    return;
                                }
                                if body["content"] != content.as_str() {
                                    ledger
                                        .unexpected
                                        .push(format!("{content}: answered {body}"));
                                    return;
                                }
                                let id = body["id"].as_str().unwrap_or_default().to_string();
                                ledger.acked.insert(content, id);
                                let count = acked.fetch_add(1, Ordering::SeqCst) + 1;
                                if count >= target.load(Ordering::SeqCst) {
                                    let _ = reach.try_send(());
                                }
                            }
                            Ok(r) => {
                                ledger.unexpected.push(format!(
                                    "{content}: HTTP {} {}",
                                    r.status,
                                    String::from_utf8_lossy(&r.body)
                                ));
                                return;
                            }
                            Err(e) => {
                                if !killing.load(Ordering::SeqCst) {
                                    ledger.unexpected.push(format!("{content}: {e}"));
                                }
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            acked,
            target,
            reached,
            killing,
            stop,
            tasks,
        }
    }

    fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages of this load were acknowledged.
    fn wait_for(&self, n: usize, server: &HearthProcess) {
        self.target.store(n, Ordering::SeqCst);
        while self.acked() < n {
            let signalled = block_on(timeout(30, self.reached.recv()));
            assert!(
                matches!(signalled, Some(Ok(()))),
                "only {} of {n} messages acknowledged in 30 s (or every sender stopped); \
                 server stderr:\n{}",
                self.acked(),
                server.stderr()
            );
        }
    }

    /// Waits for every sender to end (they end on their first failed request).
    fn join(self) {
        let tasks = self.tasks;
        let finished = block_on(timeout(30, async {
            for task in tasks {
                task.await;
            }
        }));
        assert!(finished.is_some(), "senders did not stop within 30 s");
    }
}

/// A guild whose first text channel every user can post in.
struct Community {
    channel: String,
    users: Vec<String>,
}

async fn community(origin: &str, users: usize) -> Community {
    let names: Vec<String> = (0..users).map(|i| format!("sender{i}")).collect();
    let owner = Client::new();
    owner
        .register(origin, &names[0], PASSWORD)
        .await
        .expect("register owner");
    let Guild { channel, code, .. } = guild_on(&owner, origin, "Durable").await;
    for name in &names[1..] {
        let member = Client::new();
        member
            .register(origin, name, PASSWORD)
            .await
            .expect("register member");
        join(&member, origin, &code).await;
    }
    Community {
        channel,
        users: names,
    }
}

/// Signs every sender in at `origin` with the password grant (user `i % n`).
async fn sign_in(clients: &[Client], origin: &str, users: &[String]) {
    for (i, client) in clients.iter().enumerate() {
        client
            .login_password(origin, &users[i % users.len()], PASSWORD)
            .await
            .expect("password login");
    }
}

/// Checks the channel history against the ledger: no duplicates, newest first, nothing
/// unknown, each sender's messages a prefix of its sequence, and every message in
/// `must_have` there with the id it was acknowledged with. Returns the history size.
fn check_history(history: &[Value], ledger: &Ledger, must_have: &HashMap<String, String>) -> usize {
    let mut by_content: HashMap<&str, &str> = HashMap::new();
    let mut ids = HashSet::new();
    let mut previous = u64::MAX;
    let mut sequences: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for message in history {
        let content = message["content"].as_str().expect("content");
        let id = message["id"].as_str().expect("id");
        assert!(
            ids.insert(id),
            "message id {id} appears twice in the history"
        );
        assert!(
            by_content.insert(content, id).is_none(),
            "message {content:?} is stored twice"
        );
        assert!(
            ledger.attempted.contains(content),
            "history holds {content:?}, which no sender sent"
        );
        let numeric: u64 = id.parse().expect("numeric id");
        assert!(numeric < previous, "history is not newest first at {id}");
        previous = numeric;
        let (tag, seq) = content.split_once('#').expect("TAG#N");
        sequences
            .entry(tag)
            .or_default()
            .push(seq.parse().expect("sequence number"));
    }
    for (tag, mut seqs) in sequences {
        seqs.sort_unstable();
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(
            seqs, expected,
            "sender {tag}'s messages are not a prefix of what it sent"
        );
    }
    let mut missing: Vec<&String> = must_have
        .keys()
        .filter(|c| !by_content.contains_key(c.as_str()))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} acknowledged messages are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    for (content, id) in must_have {
        assert_eq!(
            by_content[content.as_str()],
            id.as_str(),
            "acknowledged message {content:?} changed its id"
        );
    }
    history.len()
}

fn server_key(server: &HearthProcess) -> String {
    let answer =
        block_on(Client::new().send(&server.url("/.well-known/hearth"), "GET", None, false))
            .expect("well-known");
    answer.json().expect("json")["server_key"]
        .as_str()
        .expect("server_key")
        .to_string()
}

#[test]
fn acknowledged_messages_survive_repeated_sigkill() {
    const SENDERS: usize = 32;
    const CYCLES: usize = 8;
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_light_config(dir.path(), "");
    let data = dir.path().join("data");
    let mut server = HearthProcess::serve(&config, &data);
    let community = block_on(community(&server.origin, 4));
    let key = server_key(&server);
    let clients: Vec<Client> = (0..SENDERS).map(|_| Client::new()).collect();
    let reader = Client::new();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut report = Vec::new();
    for cycle in 0..CYCLES {
        // Every start listens on a new port, so the origin (and tokens' `iss`) changes.
        block_on(sign_in(&clients, &server.origin, &community.users));
        let (attempted_before, acked_before) = {
            let l = lock(&ledger);
            (l.attempted.len(), l.acked.len())
        };
        let load = Load::start(
            &clients,
            &server.origin,
            &community.channel,
            &format!("c{cycle}"),
            &ledger,
        );
        // Kill at a different point each time.
        load.wait_for(100 + random_below(600) as usize, &server);
        load.killing.store(true, Ordering::SeqCst);
        server.kill();
        load.join();
        let (attempted, acked) = {
            let l = lock(&ledger);
            assert!(
                l.unexpected.is_empty(),
                "unexpected answers while the server ran: {:?}",
                l.unexpected
            );
            (
                l.attempted.len() - attempted_before,
                l.acked.len() - acked_before,
            )
        };
        assert!(
            attempted > acked,
            "the kill interrupted no request (cycle {cycle})"
        );

        server = HearthProcess::serve(&config, &data);
        assert_eq!(
            server_key(&server),
            key,
            "the server key changed on restart"
        );
        block_on(reader.login_password(&server.origin, &community.users[0], PASSWORD))
            .expect("login after restart");
        let history = block_on(channel_history(&reader, &server.origin, &community.channel));
        let l = lock(&ledger);
        let total = check_history(&history, &l, &l.acked);
        drop(l);

        // The restarted server takes writes, and new ids come after every old one.
        let probe = format!("probe{cycle}#0");
        lock(&ledger).attempted.insert(probe.clone());
        let posted = block_on(reader.post(
            &server.url(&format!("/api/v1/channels/{}/messages", community.channel)),
            json!({ "content": probe }),
        ))
        .expect("post after restart")
        .ok()
        .expect("post accepted after restart")
        .json()
        .expect("json");
        let probe_id = posted["id"].as_str().expect("id").to_string();
        if let Some(newest) = history.first() {
            let newest: u64 = newest["id"].as_str().unwrap().parse().unwrap();
            assert!(
                probe_id.parse::<u64>().unwrap() > newest,
                "a message posted after the restart got an id below older ones"
            );
        }
        lock(&ledger).acked.insert(probe, probe_id);
        report.push(format!(
            "cycle {cycle}: {acked} acknowledged, {} in flight at the kill, {total} in history",
            attempted - acked
        ));
    }
    // One more look at everything, from a fresh start.
    server.kill();
    let server = HearthProcess::serve(&config, &data);
    block_on(reader.login_password(&server.origin, &community.users[1], PASSWORD)).expect("login");
    let history = block_on(channel_history(&reader, &server.origin, &community.channel));
    let l = lock(&ledger);
    let total = check_history(&history, &l, &l.acked);
    eprintln!(
        "{}\nfinal: {} acknowledged, {total} in history, {:.1} s",
        report.join("\n"),
        l.acked.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn backup_under_load_holds_everything_acknowledged_before_it_started() {
    const SENDERS: usize = 16;
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_light_config(dir.path(), "");
    let data = dir.path().join("data");
    let mut server = HearthProcess::serve(&config, &data);
    let community = block_on(community(&server.origin, 2));
    let key = server_key(&server);
    let clients: Vec<Client> = (0..SENDERS).map(|_| Client::new()).collect();
    block_on(sign_in(&clients, &server.origin, &community.users));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let load = Load::start(&clients, &server.origin, &community.channel, "b", &ledger);
    load.wait_for(600, &server);

    // Everything acknowledged before the command starts must be in the backup.
    let before: HashMap<String, String> = lock(&ledger).acked.clone();
    let acked_before_backup = load.acked();
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).expect("mkdir");
    let backup = saved.join("hearth-backup.redb");
    let args: Vec<std::ffi::OsString> = vec![
        "--config".into(),
        config.clone().into(),
        "backup".into(),
        backup.clone().into(),
        "--data".into(),
        data.clone().into(),
    ];
    let output = block_on(smol::unblock(move || run_hearth(&args, None)));
    let acked_after_backup = load.acked();
    assert!(
        output.status.success(),
        "hearth backup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("backup written to"),
        "unexpected output: {stdout}"
    );
    // The server keeps taking writes after the backup.
    load.wait_for(acked_after_backup + 100, &server);
    assert!(server.running(), "the server stopped");
    load.stop.store(true, Ordering::SeqCst);
    load.join();
    {
        let l = lock(&ledger);
        assert!(l.unexpected.is_empty(), "unexpected: {:?}", l.unexpected);
    }
    server.kill();
    let leftovers: Vec<_> = std::fs::read_dir(&saved)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("hearth-backup.redb")]
    );

    // A fresh data directory whose database is the backup.
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).expect("mkdir");
    std::fs::copy(&backup, restored.join("hearth.redb")).expect("copy backup");
    let server = HearthProcess::serve(&config, &restored);
    assert_eq!(server_key(&server), key, "the backup lost the server key");
    let mut reader = None;
    for name in &community.users {
        let client = Client::new();
        block_on(client.login_password(&server.origin, name, PASSWORD))
            .expect("users can log in on the restored server");
        let me = block_on(client.get(&server.url("/api/v1/users/@me")))
            .expect("@me")
            .ok()
            .expect("@me ok")
            .json()
            .expect("json");
        assert_eq!(me["name"], name.as_str());
        reader = Some(client);
    }
    let reader = reader.expect("a user");
    let history = block_on(channel_history(&reader, &server.origin, &community.channel));
    let l = lock(&ledger);
    let total = check_history(&history, &l, &before);
    // The senders stopped politely, so every message sent was answered: whatever the
    // backup holds was acknowledged, with the same id.
    assert_eq!(l.attempted.len(), l.acked.len());
    for message in &history {
        let content = message["content"].as_str().expect("content");
        assert_eq!(
            l.acked.get(content).map(String::as_str),
            message["id"].as_str(),
            "{content:?} in the backup differs from what was acknowledged"
        );
    }
    drop(l);
    // The restored database takes writes.
    block_on(reader.post(
        &server.url(&format!("/api/v1/channels/{}/messages", community.channel)),
        json!({ "content": "after restore" }),
    ))
    .expect("post")
    .ok()
    .expect("post to the restored server");
    eprintln!(
        "backup: {} acknowledged before it, {} while it ran, {} in it, {} acknowledged in all, {:.1} s",
        before.len(),
        acked_after_backup - acked_before_backup,
        total,
        lock(&ledger).acked.len(),
        started.elapsed().as_secs_f64()
    );
}
