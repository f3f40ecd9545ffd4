//! Health, metrics and the administrators' status API: `/healthz` healthy and failing (a
//! threshold, and a really full file system: a tiny tmpfs in a mount namespace of the
//! server's own), `/metrics` for loopback and administrators only (a non-loopback address
//! of this machine plays "another machine") with values that move, and the admin status,
//! voice, log and TLS routes, with uploads checked and served after a restart.

use crate::common::*;
use hearth::client::Client;
use serde_json::{json, Value};
use std::time::Duration;

pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// `hearth user add NAME --admin` through the running server's admin socket.
pub fn add_admin(data: &std::path::Path, name: &str) {
    use std::io::Write;
    let mut child = hearth_command(&["user", "add", name, "--password-stdin", "--admin", "--data"])
        .arg(data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run hearth user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{ADMIN_PASSWORD}\n").as_bytes())
        .expect("password");
    assert!(child.wait().expect("wait").success(), "user add {name}");
}

/// An administrator of `server`, signed in at `origin`.
pub async fn admin_at(server: &TestServer, origin: &str, name: &str) -> Client {
    add_admin(&server.data, name);
    let client = Client::new();
    client
        .login_password(origin, name, ADMIN_PASSWORD)
        .await
        .expect("admin signs in");
    client
}

async fn get(client: &Client, url: &str) -> (u16, Value) {
    let answer = client.get(url).await.expect("request");
    (answer.status, answer.json().unwrap_or(Value::Null))
}

/// `GET url` with no credentials.
async fn anonymous(url: &str) -> hearth::client::Response {
    Client::new()
        .send(url, "GET", None, false)
        .await
        .expect("request")
}

async fn healthz(server: &TestServer) -> (u16, Value) {
    let answer = anonymous(&server.url("/healthz")).await;
    (answer.status, answer.json().unwrap_or(Value::Null))
}

#[test]
fn healthz_is_public_cheap_and_healthy() {
    let server = TestServer::start();
    block_on(async {
        let (status, report) = healthz(&server).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["status"], "ok", "{report}");
        assert_eq!(report["failing"], json!([]));
        for check in ["database", "data_dir", "disk", "outbox"] {
            assert_eq!(report[check]["ok"], true, "{check}: {report}");
        }
        assert_eq!(report["outbox_backlog"], 0);
        assert!(report["free_bytes"].as_u64().unwrap() > 0);
        // Asked again at once, the same report: the probe ran once.
        let (_, again) = healthz(&server).await;
        assert_eq!(again, report);
        smol::Timer::after(Duration::from_millis(1100)).await;
        let (status, _) = healthz(&server).await;
        assert_eq!(status, 200);
    });
}

#[test]
fn healthz_answers_503_naming_the_failing_check() {
    let server = TestServer::start_with(|c| c.health.min_free_bytes = u64::MAX);
    block_on(async {
        let answer = anonymous(&server.url("/healthz")).await;
        assert_eq!(answer.status, 503);
        assert_eq!(answer.header("retry-after"), Some("5"));
        let report = answer.json().unwrap();
        assert_eq!(report["status"], "failing");
        assert_eq!(report["failing"], json!(["disk"]), "{report}");
        assert_eq!(report["database"]["ok"], true);
    });
}

/// A thread in a mount namespace of its own with a small tmpfs at `dir`: the server it
/// starts (its threads inherit the namespace) keeps its data there, and the thread fills
/// or frees that file system on request. The host never sees the mount.
struct TinyDisk {
    commands: std::sync::mpsc::Sender<(bool, std::sync::mpsc::Sender<()>)>,
}

impl TinyDisk {
    fn start(dir: std::path::PathBuf, megabytes: u32) -> (TinyDisk, TestServer) {
        let (commands, requests) =
            std::sync::mpsc::channel::<(bool, std::sync::mpsc::Sender<()>)>();
        let (started, server) = std::sync::mpsc::channel::<TestServer>();
        std::thread::spawn(move || {
            mount_private_tmpfs(&dir, megabytes);
            let mut config = test_config(dir.join("data"));
            config.health.min_free_bytes = 1024 * 1024;
            let _ = started.send(TestServer::start_config(config, None));
            let filler = dir.join("filler");
            while let Ok((fill, done)) = requests.recv() {
                if fill {
                    use std::io::Write;
                    let mut file = std::fs::File::create(&filler).expect("filler");
                    let chunk = vec![7u8; 64 * 1024];
                    while file.write_all(&chunk).is_ok() {}
                    let _ = file.sync_all();
                } else {
                    let _ = std::fs::remove_file(&filler);
                }
                let _ = done.send(());
            }
        });
        let server = server
            .recv_timeout(Duration::from_secs(30))
            .expect("server on the tmpfs");
        (TinyDisk { commands }, server)
    }

    fn set_full(&self, full: bool) {
        let (done, finished) = std::sync::mpsc::channel();
        self.commands.send((full, done)).expect("disk thread");
        finished
            .recv_timeout(Duration::from_secs(30))
            .expect("disk thread done");
    }
}

/// Moves the calling thread into a new mount namespace (private, so nothing propagates
/// back to the host) and mounts a tmpfs of `megabytes` at `dir`.
fn mount_private_tmpfs(dir: &std::path::Path, megabytes: u32) {
    use std::ffi::CString;
    // SAFETY: plain system calls on NUL-terminated strings that outlive them.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS),
            0,
            "unshare: {}",
            std::io::Error::last_os_error()
        );
        let root = CString::new("/").unwrap();
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0,
            "make / private: {}",
            std::io::Error::last_os_error()
        );
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let kind = CString::new("tmpfs").unwrap();
        let options = CString::new(format!("size={megabytes}m,mode=0700")).unwrap();
        assert_eq!(
            libc::mount(
                kind.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                0,
                options.as_ptr().cast()
            ),
            0,
            "mount tmpfs: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Whether this process may make mount namespaces (root, or CAP_SYS_ADMIN).
fn can_mount() -> bool {
    std::process::Command::new("unshare")
        .args(["-m", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn healthz_fails_when_the_card_is_full_and_recovers() {
    if !can_mount() {
        eprintln!("skipped: this process cannot make a mount namespace for a tiny tmpfs");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (disk, server) = TinyDisk::start(dir.path().to_path_buf(), 24);
    block_on(async {
        let (status, report) = healthz(&server).await;
        assert_eq!(status, 200, "{report}");
        disk.set_full(true);
        smol::Timer::after(Duration::from_millis(1100)).await;
        let (status, report) = healthz(&server).await;
        assert_eq!(status, 503, "{report}");
        let failing = report["failing"].as_array().unwrap();
        assert!(failing.contains(&json!("disk")), "{report}");
        assert!(failing.contains(&json!("data_dir")), "{report}");
        assert!(report["free_bytes"].as_u64().unwrap() < 1024 * 1024);
        disk.set_full(false);
        smol::Timer::after(Duration::from_millis(1100)).await;
        let (status, report) = healthz(&server).await;
        assert_eq!(report["disk"]["ok"], true, "{report}");
        assert_eq!(report["data_dir"]["ok"], true, "{report}");
        // When the test write itself hit the full card, redb refuses every write after
        // that failed commit until the database is opened again: the box stays failing,
        // with redb's reason, until it restarts.
        if report["database"]["ok"] == false {
            assert_eq!(status, 503, "{report}");
            let detail = report["database"]["detail"].as_str().unwrap();
            assert!(detail.contains("re-open the database"), "{report}");
        } else {
            assert_eq!(status, 200, "{report}");
        }
    });
    drop(server);
}

/// One metric's value in a Prometheus text answer.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

async fn metrics_text(client: Option<&Client>, url: &str) -> (u16, String) {
    let answer = match client {
        Some(client) => client.get(url).await.expect("request"),
        None => anonymous(url).await,
    };
    (
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    )
}

/// An address of this machine that is not loopback (the first interface's), if any.
fn non_loopback_address() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the source address a packet
    // to that destination would leave from.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.255:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn metrics_for_loopback_and_administrators_only_and_values_move() {
    let server = TestServer::start();
    block_on(async {
        // From loopback: no token needed.
        let (status, text) = metrics_text(None, &server.url("/metrics")).await;
        assert_eq!(status, 200, "{text}");
        for name in [
            "hearth_http_connections",
            "hearth_gateway_sockets",
            "hearth_voice_rooms",
            "hearth_voice_participants",
            "hearth_voice_late_frames_total",
            "hearth_voice_concealed_frames_total",
            "hearth_outbox_depth",
            "hearth_commit_seconds_count",
            "process_resident_memory_bytes",
        ] {
            metric(&text, name);
        }
        assert!(text.contains("# TYPE hearth_commit_seconds histogram"));
        assert!(metric(&text, "hearth_http_connections") >= 1.0);
        assert!(metric(&text, "process_resident_memory_bytes") > 1e6);
        let commits = metric(&text, "hearth_commit_seconds_count");

        // Values move: a message is a commit; a gateway socket; a voice room.
        let alice = user(&server, "alice").await;
        let guild = guild_on(&alice, &server.origin, "Metrics").await;
        api_json(
            &alice,
            "POST",
            &server.url(&format!("/api/v1/channels/{}/messages", guild.channel)),
            json!({"content": "hello"}),
        )
        .await;
        let voice_channel = api_json(
            &alice,
            "POST",
            &server.url(&format!("/api/v1/guilds/{}/channels", guild.id)),
            json!({"name": "talk", "kind": "voice"}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let _events = alice.events(&server.origin, None).await.expect("gateway");
        let voice = alice
            .join_voice(&server.origin, &voice_channel)
            .await
            .expect("join voice");
        // Twenty frames in real time with every fifth left out (concealed), then the
        // missing ones long after their time (late).
        let mut held = Vec::new();
        for k in 0..20u64 {
            let phase = std::f64::consts::TAU * 440.0 * (k * 960) as f64 / 48_000.0;
            let pcm: Box<hearth::voice::PcmFrame> = Box::new(
                hearth::voice::sine(440.0, 8000.0, 960, phase)
                    .try_into()
                    .unwrap(),
            );
            let frame = voice.encode(&pcm).expect("encode");
            if k % 5 == 3 {
                held.push(frame);
            } else {
                voice.send_frame(&frame).await.expect("send");
            }
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        smol::Timer::after(Duration::from_millis(300)).await;
        for frame in &held {
            voice.send_frame(frame).await.expect("send late");
        }
        let mut last = String::new();
        let moved = eventually(Duration::from_secs(10), async || {
            last = metrics_text(None, &server.url("/metrics")).await.1;
            metric(&last, "hearth_commit_seconds_count") > commits
                && metric(&last, "hearth_gateway_sockets") >= 1.0
                && metric(&last, "hearth_voice_rooms") == 1.0
                && metric(&last, "hearth_voice_participants") == 1.0
                && metric(&last, "hearth_voice_concealed_frames_total") > 0.0
                && metric(&last, "hearth_voice_late_frames_total") > 0.0
        })
        .await;
        assert!(moved, "metrics did not move:\n{last}");
        voice.leave().await;
    });
}

#[test]
fn metrics_from_another_machine_need_an_administrator() {
    let Some(ip) = non_loopback_address() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    // The server listens on the machine's own LAN address; a client on the same machine
    // reaches it from that address, not from loopback (the packets never leave the host).
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_at(
        &format!("{ip}:0"),
        test_config(dir.path().join("data")),
        None,
    );
    block_on(async {
        let url = server.url("/metrics");
        let (status, text) = metrics_text(None, &url).await;
        assert_eq!(status, 401, "{text}");
        let bob = user(&server, "bob").await;
        let (status, text) = metrics_text(Some(&bob), &url).await;
        assert_eq!(status, 403, "{text}");
        let root = admin_at(&server, &server.origin, "root").await;
        let (status, text) = metrics_text(Some(&root), &url).await;
        assert_eq!(status, 200, "{text}");
        metric(&text, "hearth_outbox_depth");
    });
    drop(server);
}

#[test]
fn admin_status_voice_and_log_are_for_administrators() {
    let server = TestServer::start();
    block_on(async {
        let bob = user(&server, "bob").await;
        for path in [
            "/api/v1/admin/status",
            "/api/v1/admin/voice",
            "/api/v1/admin/log",
            "/api/v1/admin/tls",
            "/api/v1/admin/peers/preview?url=http://127.0.0.1:1",
        ] {
            let (status, body) = get(&bob, &server.url(path)).await;
            assert_eq!(status, 403, "{path}: {body}");
            assert_eq!(body["error"], "forbidden");
        }
        let answer = anonymous(&server.url("/api/v1/admin/status")).await;
        assert_eq!(answer.status, 401);

        let root = admin_at(&server, &server.origin, "root").await;
        // Files count toward storage (summed at most every 30 s: this is the first sum).
        std::fs::write(server.data.join("files").join("blob"), [0u8; 4096]).unwrap();
        let (status, s) = get(&root, &server.url("/api/v1/admin/status")).await;
        assert!(s["storage"]["files_bytes"].as_u64().unwrap() >= 4096, "{s}");
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
        assert!(s["memory"]["rss_bytes"].as_u64().unwrap() > 0);
        assert!(s["cpu"]["user_secs"].as_f64().unwrap() > 0.0);
        assert_eq!(s["cpu"]["load"].as_array().unwrap().len(), 3);
        assert!(s["storage"]["database_bytes"].as_u64().unwrap() > 0);
        assert!(s["storage"]["free_bytes"].as_u64().unwrap() > 0);
        assert!(s["connections"].as_u64().unwrap() >= 1);
        assert_eq!(s["voice"]["rooms"], 0);
        assert_eq!(s["health"]["status"], "ok");
        assert_eq!(s["tls"]["enabled"], false);

        let (status, v) = get(&root, &server.url("/api/v1/admin/voice")).await;
        assert_eq!(status, 200);
        assert_eq!(v["rooms"], json!([]));

        // Warnings reach the ring; the newest comes first, and `limit` bounds the answer.
        hearth::logging::recent().record(log::Level::Warn, "hearth::test", "first warning");
        hearth::logging::recent().record(log::Level::Error, "hearth::test", "then an error");
        let (status, l) = get(&root, &server.url("/api/v1/admin/log?limit=2")).await;
        assert_eq!(status, 200, "{l}");
        let records = l["records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["message"], "then an error");
        assert_eq!(records[0]["level"], "error");
        assert_eq!(records[1]["message"], "first warning");
        let (status, body) = get(&root, &server.url("/api/v1/admin/log?limit=x")).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_query");
    });
}

#[test]
fn a_voice_room_shows_in_the_admin_voice_listing() {
    let server = TestServer::start();
    block_on(async {
        let root = admin_at(&server, &server.origin, "root").await;
        let guild = guild_on(&root, &server.origin, "Rooms").await;
        let channel = api_json(
            &root,
            "POST",
            &server.url(&format!("/api/v1/guilds/{}/channels", guild.id)),
            json!({"name": "lounge", "kind": "voice"}),
        )
        .await;
        let channel_id = channel["id"].as_str().unwrap().to_string();
        let voice = root
            .join_voice(&server.origin, &channel_id)
            .await
            .expect("join voice");
        let (status, v) = get(&root, &server.url("/api/v1/admin/voice")).await;
        assert_eq!(status, 200);
        let rooms = v["rooms"].as_array().unwrap();
        assert_eq!(rooms.len(), 1, "{v}");
        assert_eq!(rooms[0]["channel_id"], channel_id.as_str());
        assert_eq!(rooms[0]["channel_name"], "lounge");
        assert_eq!(rooms[0]["participants"].as_array().unwrap().len(), 1);
        let (_, s) = get(&root, &server.url("/api/v1/admin/status")).await;
        assert_eq!(s["voice"]["rooms"], 1);
        assert_eq!(s["voice"]["participants"], 1);
        voice.leave().await;
    });
}

#[test]
fn peers_list_their_contact_and_waiting_calls_after_a_fingerprint_preview() {
    let a = start_federating();
    let b = start_federating();
    block_on(async {
        let root = admin_at(&a, &a.origin, "root").await;
        let preview_url = a.url(&format!(
            "/api/v1/admin/peers/preview?url={}",
            percent(&b.origin)
        ));
        let (status, preview) = get(&root, &preview_url).await;
        assert_eq!(status, 200, "{preview}");
        assert_eq!(preview["origin"], b.origin.as_str());
        assert_eq!(preview["pinned_fingerprint"], Value::Null);
        let fingerprint = preview["fingerprint"].as_str().unwrap().to_string();
        let known = anonymous(&b.url("/.well-known/hearth"))
            .await
            .json()
            .unwrap();
        let key = hearth::auth::jose::b64u_decode(known["server_key"].as_str().unwrap()).unwrap();
        assert_eq!(
            hearth::model::federation::fingerprint(&key.try_into().unwrap()),
            fingerprint,
            "the fingerprint B's own page shows"
        );
        // Nothing was pinned by the preview.
        let (_, peers) = get(&root, &a.url("/api/v1/admin/peers")).await;
        assert_eq!(peers, json!([]));
        // A wrong fingerprint is refused; the one shown is pinned.
        let wrong = root
            .post(
                &a.url("/api/v1/admin/peers"),
                json!({"url": b.origin, "fingerprint": "0000"}),
            )
            .await
            .unwrap();
        assert_eq!(wrong.status, 409);
        let added = root
            .post(
                &a.url("/api/v1/admin/peers"),
                json!({"url": b.origin, "fingerprint": fingerprint}),
            )
            .await
            .unwrap();
        assert_eq!(added.status, 201);
        let (_, peers) = get(&root, &a.url("/api/v1/admin/peers")).await;
        let peer = &peers[0];
        assert_eq!(peer["origin"], b.origin.as_str(), "{peers}");
        assert_eq!(peer["fingerprint"], fingerprint.as_str());
        assert_eq!(peer["reachable"], true, "{peer}");
        assert!(peer["last_contact"].as_u64().is_some(), "{peer}");
        assert_eq!(peer["waiting_calls"], 0);
        let (_, preview) = get(&root, &preview_url).await;
        assert_eq!(preview["pinned_fingerprint"], fingerprint.as_str());
    });
}

fn percent(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A self-signed certificate and its key (PEM) for `localhost`, valid until `not_after`
/// when given.
fn certificate(not_after: Option<(i32, u8, u8)>) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    if let Some((y, m, d)) = not_after {
        params.not_before = rcgen::date_time_ymd(y - 1, m, d);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[test]
fn an_uploaded_certificate_is_checked_and_served_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path().join("data"));
    config.tls = hearth::config::TlsConfig::default();
    let mut server = TestServer::start_config(config.clone(), None);
    let (cert, key) = certificate(None);
    let (other_cert, other_key) = certificate(None);
    let (expired_cert, expired_key) = certificate(Some((2001, 1, 1)));
    let new_fingerprint = block_on(async {
        let bob = user(&server, "bob").await;
        let url = server.url("/api/v1/admin/tls");
        let forbidden = bob
            .put(&url, Some(json!({"certificate": cert, "key": key})))
            .await
            .unwrap();
        assert_eq!(forbidden.status, 403);
        let root = admin_at(&server, &server.origin, "root").await;
        let (status, before) = get(&root, &url).await;
        assert_eq!(status, 200, "{before}");
        let serving = before["certificate"]["fingerprint"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(before["pending"], Value::Null, "{before}");
        assert_eq!(before["upload_allowed"], true);
        assert_eq!(
            before["uploaded"], false,
            "the self-signed one was made here"
        );
        assert!(before["certificate"]["not_after"].as_i64().unwrap() > 0);
        for (body, why) in [
            (json!({"certificate": "not a pem", "key": key}), "bad PEM"),
            (
                json!({"certificate": cert, "key": other_key}),
                "mismatched key",
            ),
            (
                json!({"certificate": other_cert, "key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
                "bad key",
            ),
            (
                json!({"certificate": expired_cert, "key": expired_key}),
                "expired",
            ),
        ] {
            let answer = root.put(&url, Some(body)).await.unwrap();
            let error = answer.json().unwrap();
            assert_eq!(answer.status, 400, "{why}: {error}");
            assert_eq!(error["error"], "invalid_certificate", "{why}: {error}");
        }
        let refused = root
            .put(&url, Some(json!({"certificate": cert})))
            .await
            .unwrap();
        assert_eq!(refused.status, 400);
        let (_, after) = get(&root, &url).await;
        assert_eq!(
            after["pending"],
            Value::Null,
            "a refused upload changed nothing"
        );

        let answer = root
            .put(&url, Some(json!({"certificate": cert, "key": key})))
            .await
            .unwrap();
        let uploaded = answer.json().unwrap();
        assert_eq!(answer.status, 200, "{uploaded}");
        let fingerprint = uploaded["pending"]["fingerprint"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(fingerprint, serving);
        assert_eq!(uploaded["pending"]["names"], json!(["localhost"]));
        let (_, after) = get(&root, &url).await;
        assert_eq!(after["certificate"]["fingerprint"], serving.as_str());
        assert_eq!(after["pending"]["fingerprint"], fingerprint.as_str());
        assert_eq!(after["uploaded"], true);
        fingerprint
    });
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data.join("tls/key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o077, 0, "the uploaded key is private");
    server.stop();
    let server = TestServer::start_config(config, None);
    block_on(async {
        let fresh = Client::new();
        let known = fresh
            .send(&server.url("/.well-known/hearth"), "GET", None, false)
            .await
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(
            known["tls_fingerprint"],
            new_fingerprint.as_str(),
            "{known}"
        );
        assert_eq!(
            fresh.tls_pins().get(&server.origin).as_deref(),
            Some(new_fingerprint.as_str())
        );
    });
}
