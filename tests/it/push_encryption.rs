//! Encrypted push checked by an implementation no one here wrote: a real server delivers
//! mentions to push endpoints served by `tests/py/push_sink.py`, which decrypts every body
//! with the Python `http_ece` package (RFC 8291, `aes128gcm`) using the subscription's
//! private key and auth secret this test made, and checks the VAPID header (RFC 8292) with
//! `cryptography`. The test asserts that each payload decrypts to the notification's JSON
//! and that nothing of it (message text, ids) is readable on the wire; and that an https
//! endpoint's certificate is pinned at first contact, a new one refused.

use crate::common::*;
use hearth::auth::jose::b64u;
use hearth::client::Client;
use serde_json::{json, Value};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

const PIP_INSTALL: &str = "python3 -m pip install http_ece==1.2.1";

/// The subscribed device: its P-256 key and auth secret, fresh per test.
struct Device {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Device {
    fn new() -> Device {
        let mut auth = [0u8; 16];
        getrandom::fill(&mut auth).expect("random");
        let secret = loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("random");
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                break secret;
            }
        };
        Device { secret, auth }
    }

    /// The subscription to `endpoint`, as a browser's `PushSubscription.toJSON()` gives it.
    fn subscription(&self, endpoint: &str) -> Value {
        use p256::elliptic_curve::sec1::ToSec1Point as _;
        json!({
            "endpoint": endpoint,
            "expirationTime": null,
            "keys": {
                "p256dh": b64u(self.secret.public_key().to_sec1_point(false).as_bytes()),
                "auth": b64u(&self.auth),
            },
        })
    }
}

/// `tests/py/push_sink.py`, running; killed on drop.
struct PySink {
    child: std::process::Child,
    commands: std::process::ChildStdin,
    port: u16,
    tls: bool,
    lines: async_channel::Receiver<String>,
}

impl PySink {
    /// Starts a sink for `device`, expecting pushes signed by `vapid_key` with `sub`, on
    /// `port` (0: any), over https with a fresh self-signed certificate if `tls`.
    fn start(device: &Device, vapid_key: &str, sub: &str, port: u16, tls: bool) -> PySink {
        let probe = Command::new("python3")
            .args(["-c", "import http_ece, cryptography"])
            .output();
        match probe {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "the Python package `http_ece` is not installed; install it with `{PIP_INSTALL}` ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => panic!("python3 cannot be run ({e}); install Python 3 and then `{PIP_INSTALL}`"),
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/push_sink.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            // `--name=value`: a base64url value may start with `-`, which argparse would
            // take for an option of its own.
            .arg(format!("--private-key={}", b64u(&device.secret.to_bytes())))
            .arg(format!("--auth={}", b64u(&device.auth)))
            .arg(format!("--vapid-key={vapid_key}"))
            .arg(format!("--sub={sub}"))
            .args(["--port", &port.to_string()]);
        if tls {
            command.arg("--tls");
        }
        // What the sink says on standard error is shown if it does not start.
        let errors = tempfile::NamedTempFile::new().expect("a file for the sink's errors");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(errors.reopen().expect("the sink's error file"))
            .spawn()
            .expect("start python3");
        let stdout = child.stdout.take().expect("stdout");
        let commands = child.stdin.take().expect("stdin");
        let (lines_tx, lines) = async_channel::unbounded::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send_blocking(line).is_err() {
                    break;
                }
            }
        });
        let ready = block_on(within(Duration::from_secs(20), lines.recv()))
            .and_then(|l| l.ok())
            .unwrap_or_else(|| {
                let said = std::fs::read_to_string(errors.path()).unwrap_or_default();
                panic!("the sink did not start: {said}")
            });
        let port = ready
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("expected READY <port>, got {ready:?}"));
        PySink {
            child,
            commands,
            port,
            tls,
            lines,
        }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// The endpoint presents a new self-signed certificate from its next connection on,
    /// at the same port.
    async fn new_certificate(&mut self) {
        use std::io::Write as _;
        writeln!(self.commands, "NEWCERT").expect("tell the sink");
        self.commands.flush().expect("tell the sink");
        let line = within(Duration::from_secs(20), self.lines.recv())
            .await
            .and_then(|l| l.ok());
        assert_eq!(line.as_deref(), Some("RENEWED"), "the sink's certificate");
    }

    /// The sink's report of the next push, if one arrives within `limit`.
    async fn next_push(&self, limit: Duration) -> Option<Value> {
        let line = within(limit, self.lines.recv()).await?.ok()?;
        let report = line
            .strip_prefix("PUSH ")
            .unwrap_or_else(|| panic!("expected PUSH <json>, got {line:?}"));
        Some(serde_json::from_str(report).expect("the report is JSON"))
    }
}

impl Drop for PySink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn within<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> Option<T> {
    use futures_lite::FutureExt;
    async { Some(f.await) }
        .or(async {
            smol::Timer::after(limit).await;
            None
        })
        .await
}

async fn call(client: &Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let response = match (method, body) {
        ("GET", _) => client.get(url).await,
        ("PATCH", Some(body)) => client.patch(url, body).await,
        (_, body) => client.post(url, body.unwrap_or(Value::Null)).await,
    }
    .expect("request");
    let status = response.status;
    let text = String::from_utf8_lossy(&response.body).to_string();
    assert!(
        (200..300).contains(&status),
        "{method} {url}: {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// alice, who will be mentioned, and dave, whose guild she joined, on `server`.
struct Scene {
    alice: Client,
    alice_id: String,
    dave: Client,
    guild: Guild,
    vapid_key: String,
}

async fn scene(server: &TestServer) -> Scene {
    let alice = user(server, "alice").await;
    let alice_id = alice.user_id(&server.origin).unwrap();
    let dave = user(server, "dave").await;
    let guild = guild_on(&dave, &server.origin, "Kitchen").await;
    call(
        &alice,
        "POST",
        &server.url(&format!("/api/v1/invites/{}", guild.code)),
        Some(json!({})),
    )
    .await;
    let known = call(&alice, "GET", &server.url("/.well-known/hearth"), None).await;
    let vapid_key = known["vapid_public_key"]
        .as_str()
        .expect("/.well-known/hearth names the VAPID key")
        .to_string();
    Scene {
        alice,
        alice_id,
        dave,
        guild,
        vapid_key,
    }
}

async fn subscribe(scene: &Scene, server: &TestServer, subscriptions: Vec<Value>) {
    let me = call(
        &scene.alice,
        "PATCH",
        &server.url("/api/v1/users/@me"),
        Some(json!({ "push_subscriptions": subscriptions })),
    )
    .await;
    let stored: Vec<Value> = subscriptions
        .iter()
        .map(|s| json!({"endpoint": s["endpoint"], "keys": s["keys"]}))
        .collect();
    assert_eq!(me["push_subscriptions"], json!(stored));
}

async fn mention(scene: &Scene, server: &TestServer, text: &str) -> Value {
    call(
        &scene.dave,
        "POST",
        &server.url(&format!(
            "/api/v1/channels/{}/messages",
            scene.guild.channel
        )),
        Some(json!({ "content": format!("<@{}> {text}", scene.alice_id) })),
    )
    .await
}

/// The notification a sink decrypted, after checking the sink found nothing wrong.
fn decrypted(report: &Value) -> Value {
    assert_eq!(report["ok"], true, "the sink refused a push: {report}");
    serde_json::from_str(report["plaintext"].as_str().expect("plaintext"))
        .unwrap_or_else(|e| panic!("the plaintext is not JSON ({e}): {report}"))
}

#[test]
fn every_push_decrypts_with_http_ece_and_shows_nothing_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_config(federating(dir.path()), Some(dir));
    let device = Device::new();
    block_on(async {
        let scene = scene(&server).await;
        let sink = PySink::start(&device, &scene.vapid_key, &server.origin, 0, false);
        subscribe(
            &scene,
            &server,
            vec![device.subscription(&sink.url("/up/alice"))],
        )
        .await;
        for (n, text) in [
            "the secret word is xylophone-42",
            "and the second one is zanzibar-77, which is rather longer than the first",
        ]
        .into_iter()
        .enumerate()
        {
            let message = mention(&scene, &server, text).await;
            let report = sink
                .next_push(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("push {n} never reached the endpoint"));
            assert_eq!(report["path"], "/up/alice");
            assert_eq!(report["headers"]["content-encoding"], "aes128gcm");
            assert_eq!(report["headers"]["ttl"], "86400");
            let got = decrypted(&report);
            assert_eq!(got["type"], "mention", "{got}");
            assert_eq!(got["host"], server.origin.as_str());
            assert_eq!(got["user_id"], scene.alice_id.as_str());
            assert_eq!(got["guild_id"], scene.guild.id.as_str());
            assert_eq!(got["channel_id"], scene.guild.channel.as_str());
            assert_eq!(got["message_id"], message["id"]);
            assert_eq!(
                got["title"],
                format!("Kitchen #{}", scene.guild.channel_name).as_str()
            );
            assert_eq!(got["body"], format!("dave: @alice {text}").as_str());
            let wire = base64_decode(report["body_b64"].as_str().unwrap());
            let word = text.split_whitespace().find(|w| w.contains('-')).unwrap();
            for clear in [
                word,
                "dave",
                "Kitchen",
                "mention",
                &scene.guild.channel,
                &scene.guild.id,
                message["id"].as_str().unwrap(),
                &scene.alice_id,
            ] {
                assert!(
                    !wire.windows(clear.len()).any(|w| w == clear.as_bytes()),
                    "{clear:?} is readable on the wire"
                );
            }
        }
    });
}

#[test]
fn an_https_endpoint_is_pinned_at_first_contact_and_a_new_certificate_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = federating(dir.path());
    let mut server = TestServer::start_config(config.clone(), None);
    let device = Device::new();
    block_on(async {
        let scene = scene(&server).await;
        let mut sink = PySink::start(&device, &scene.vapid_key, &server.origin, 0, true);
        let endpoint = sink.url("/wpush/alice");
        subscribe(&scene, &server, vec![device.subscription(&endpoint)]).await;
        mention(&scene, &server, "over TLS").await;
        let report = sink
            .next_push(Duration::from_secs(20))
            .await
            .expect("the https endpoint was reached");
        assert_eq!(decrypted(&report)["body"], "dave: @alice over TLS");

        // The endpoint presents another certificate at the same address: nothing more is
        // sent to it.
        sink.new_certificate().await;
        mention(&scene, &server, "after the switch").await;
        assert!(
            sink.next_push(Duration::from_secs(4)).await.is_none(),
            "a push went to an endpoint whose certificate changed"
        );
    });
    server.stop();
    let app = hearth::app::App::open(config, server.origin.clone(), "http").expect("open data");
    let pending = hearth::service::outbox::pending(&app.services).expect("outbox");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0].last_error.contains("certificate") && pending[0].attempts >= 1,
        "{pending:?}"
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

#[test]
fn a_subscription_without_keys_or_removed_is_never_sent_to() {
    use hearth::federation::calls::push::{seal, Sealed};
    let dir = tempfile::tempdir().unwrap();
    let config = federating(dir.path());
    let mut server = TestServer::start_config(config.clone(), None);
    let device = Device::new();
    let (alice_id, endpoint) = block_on(async {
        let scene = scene(&server).await;
        let endpoint = "http://192.0.2.7:2586/upAlice".to_string();
        subscribe(&scene, &server, vec![device.subscription(&endpoint)]).await;
        (scene.alice_id, endpoint)
    });
    server.stop();
    let app = hearth::app::App::open(config, server.origin.clone(), "http").expect("open data");
    let services = &app.services;
    let payload =
        json!({"id": "1", "type": "mention", "user_id": alice_id, "body": "psst"}).to_string();
    let now = hearth::system::now();
    match seal(services, &endpoint, &payload, now).expect("seal") {
        Sealed::Send { headers, body } => {
            assert!(headers
                .iter()
                .any(|(name, value)| *name == "Content-Encoding" && value == "aes128gcm"));
            assert!(!body.windows(4).any(|w| w == b"psst"));
        }
        Sealed::Drop(why) => panic!("a subscription with keys was not sent to: {why}"),
    }
    // As a URL stored before subscriptions had keys reads: the same endpoint, no keys.
    let user = hearth::model::UserId::parse(&alice_id).unwrap();
    services
        .store
        .write_blocking(move |tx| {
            let mut record = tx.get(hearth::storage::tables::USER, user)?.unwrap();
            for subscription in &mut record.push_subscriptions {
                subscription.keys = None;
            }
            tx.put(hearth::storage::tables::USER, user, &record)
        })
        .expect("write");
    assert!(
        matches!(seal(services, &endpoint, &payload, now), Ok(Sealed::Drop(why)) if why.contains("no keys")),
        "a keyless subscription must be dropped"
    );
    assert!(
        matches!(seal(services, "http://192.0.2.7:2586/other", &payload, now), Ok(Sealed::Drop(why)) if why.contains("no longer")),
        "a removed subscription must be dropped"
    );
}
