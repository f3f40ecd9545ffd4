//! TLS on by default: a self-signed certificate made at first start, its fingerprint
//! published, pinned by the client at first use, and a changed certificate refused with a
//! clear error. Also the owner's own certificate, and websockets (gateway, voice) over TLS.

use crate::common::*;
use hearth::client::{Client, ClientError, GatewayMessage};
use hearth::config::Config;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The test configuration with TLS left at its default (on).
fn tls_config(data: std::path::PathBuf) -> Config {
    let mut config = test_config(data);
    config.tls = hearth::config::TlsConfig::default();
    config
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the first certificate in a PEM file.
fn pem_fingerprint(path: &std::path::Path) -> String {
    hex(&Sha256::digest(pem_der(path)))
}

/// The DER of the first certificate in a PEM file.
fn pem_der(path: &std::path::Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).expect("read cert");
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}

#[test]
fn https_by_default_with_a_published_fingerprint_pinned_on_first_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_config(tls_config(dir.path().join("data")), None);
    assert!(server.origin.starts_with("https://"), "{}", server.origin);
    let cert = server.data.join("tls/cert.pem");
    let on_disk = pem_fingerprint(&cert);
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data.join("tls/key.pem"))
            .expect("key file")
            .permissions(),
    );
    assert_eq!(key_mode & 0o077, 0, "the private key is readable by others");
    block_on(async {
        let alice = user(&server, "alice").await;
        let pinned = alice
            .tls_pins()
            .get(&server.origin)
            .expect("pinned at first use");
        assert_eq!(pinned, on_disk);
        let known = alice
            .get(&server.url("/.well-known/hearth"))
            .await
            .expect("well-known")
            .ok()
            .expect("200")
            .json()
            .expect("json");
        assert_eq!(known["tls_fingerprint"], on_disk);
        assert_eq!(known["origin"], server.origin);
        // DPoP's htu is the https URL: authenticated calls work.
        let me = alice
            .get(&server.url("/api/v1/users/@me"))
            .await
            .expect("me")
            .ok()
            .expect("200")
            .json()
            .expect("json");
        assert_eq!(me["name"], "alice");
        // Websockets over TLS: the gateway delivers an event.
        let g = alice
            .post(&server.url("/api/v1/guilds"), json!({"name": "tls"}))
            .await
            .expect("guild")
            .ok()
            .expect("201")
            .json()
            .expect("json");
        let channel = g["channels"][0]["id"]
            .as_str()
            .expect("channel")
            .to_string();
        let events = alice.events(&server.origin, None).await.expect("events");
        let mut started = false;
        for _ in 0..20 {
            if let Some(GatewayMessage::Ready { .. }) =
                futures_lite::future::or(async { events.next().await }, async {
                    smol::Timer::after(Duration::from_secs(5)).await;
                    None
                })
                .await
            {
                started = true;
                break;
            }
        }
        assert!(started, "the gateway did not start over TLS");
        alice
            .post(
                &server.url(&format!("/api/v1/channels/{channel}/messages")),
                json!({"content": "over tls"}),
            )
            .await
            .expect("post")
            .ok()
            .expect("201");
        let (_, kind, data) = events
            .next_event(Duration::from_secs(5))
            .await
            .expect("an event");
        assert_eq!(kind, "message_create");
        assert_eq!(data["content"], "over tls");
        // The voice socket over TLS.
        let v = alice
            .post(
                &server.url(&format!(
                    "/api/v1/guilds/{}/channels",
                    g["id"].as_str().unwrap()
                )),
                json!({"name": "talk", "kind": "voice"}),
            )
            .await
            .expect("voice channel")
            .ok()
            .expect("201")
            .json()
            .expect("json");
        let voice = alice
            .join_voice(&server.origin, v["id"].as_str().expect("id"))
            .await
            .expect("voice over TLS");
        assert_eq!(voice.ready["channel_id"], v["id"]);
        voice.leave().await;
    });
}

#[test]
fn plain_http_to_the_tls_port_gets_no_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_config(tls_config(dir.path().join("data")), None);
    block_on(async {
        let plain = server.origin.replace("https://", "http://");
        let client = Client::new();
        let answer = futures_lite::future::or(
            async {
                client
                    .raw(
                        &format!("{plain}/.well-known/hearth"),
                        "GET",
                        &[],
                        Vec::new(),
                    )
                    .await
                    .ok()
            },
            async {
                smol::Timer::after(Duration::from_secs(15)).await;
                None
            },
        )
        .await;
        assert!(
            answer.is_none(),
            "a plaintext request was answered: {answer:?}"
        );
    });
}

#[test]
fn a_changed_certificate_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = TestServer::start_config(tls_config(data.clone()), None);
    let address = server.addr.to_string();
    let origin = server.origin.clone();
    let alice = block_on(user(&server, "alice"));
    let first = alice.tls_pins().get(&origin).expect("pinned");
    server.stop();
    // The box gets a new certificate (or someone else answers at its address).
    std::fs::remove_dir_all(data.join("tls")).expect("remove tls dir");
    let _server = TestServer::start_at(&address, tls_config(data.clone()), None);
    let second = pem_fingerprint(&data.join("tls/cert.pem"));
    assert_ne!(first, second);
    block_on(async {
        match alice.get(&format!("{origin}/api/v1/users/@me")).await {
            Err(ClientError::CertificateChanged {
                origin: o,
                pinned,
                presented,
            }) => {
                assert_eq!(o, origin);
                assert_eq!(pinned, first);
                assert_eq!(presented, second);
            }
            other => panic!("expected CertificateChanged, got {other:?}"),
        }
        // The message names what happened.
        let text = alice
            .get(&format!("{origin}/.well-known/hearth"))
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            text.contains("certificate") && text.contains("changed"),
            "{text}"
        );
        // Still refused for websockets.
        assert!(matches!(
            alice.events(&origin, None).await.err(),
            Some(ClientError::CertificateChanged { .. })
        ));
        // A client that pins the new fingerprint (read from the box's log) gets through.
        alice.tls_pins().set(&origin, &second);
        alice
            .get(&format!("{origin}/.well-known/hearth"))
            .await
            .expect("after re-pinning")
            .ok()
            .expect("200");
        // A pin set before first contact is enforced too.
        let careful = Client::new();
        careful.tls_pins().set(&origin, &first);
        assert!(matches!(
            careful
                .raw(
                    &format!("{origin}/.well-known/hearth"),
                    "GET",
                    &[],
                    Vec::new()
                )
                .await,
            Err(ClientError::CertificateChanged { .. })
        ));
    });
}

#[test]
fn the_owners_own_certificate_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let made = rcgen::generate_simple_self_signed(vec!["chat.example.lan".to_string()])
        .expect("certificate");
    let cert = dir.path().join("own-cert.pem");
    let key = dir.path().join("own-key.pem");
    std::fs::write(&cert, made.cert.pem()).expect("write cert");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
    let mut config = tls_config(dir.path().join("data"));
    config.tls.cert_file = Some(cert.clone());
    config.tls.key_file = Some(key);
    let server = TestServer::start_config(config, None);
    assert!(
        !server.data.join("tls/cert.pem").exists(),
        "no self-signed certificate is made when the owner gives one"
    );
    let expected = hex(&Sha256::digest(made.cert.der()));
    assert_eq!(pem_fingerprint(&cert), expected);
    block_on(async {
        let client = Client::new();
        let known = client
            .raw(&server.url("/.well-known/hearth"), "GET", &[], Vec::new())
            .await
            .expect("well-known")
            .ok()
            .expect("200")
            .json()
            .expect("json");
        assert_eq!(known["tls_fingerprint"], expected);
        assert_eq!(client.tls_pins().get(&server.origin), Some(expected));
    });
}

#[test]
fn a_half_configured_certificate_stops_the_start_with_a_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tls_config(dir.path().join("data"));
    config.tls.cert_file = Some(dir.path().join("only-cert.pem"));
    let listener = smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let result = smol::block_on(hearth::server::run(listener, config, async {}));
    let error = result.expect_err("refused").to_string();
    assert!(error.contains("cert_file and key_file"), "{error}");
}

/// `hearth peer add URL --data DIR` (through the running server's admin socket).
fn peer_add(server: &TestServer, url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["peer", "add", url, "--data"])
        .arg(&server.data)
        .output()
        .expect("run hearth peer add")
}

#[test]
fn servers_federate_over_tls_and_pin_each_other() {
    let dir_a = tempfile::tempdir().expect("temp dir");
    let dir_b = tempfile::tempdir().expect("temp dir");
    let mut config_a = tls_config(dir_a.path().join("data"));
    config_a.federation.allow_loopback = true;
    let mut config_b = tls_config(dir_b.path().join("data"));
    config_b.federation.allow_loopback = true;
    let a = TestServer::start_config(config_a, None);
    let b = TestServer::start_config(config_b, None);
    for (from, to) in [(&a, &b), (&b, &a)] {
        let out = peer_add(from, &to.origin);
        assert!(
            out.status.success(),
            "peer add over TLS: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fingerprint_a = pem_fingerprint(&a.data.join("tls/cert.pem"));
    block_on(async {
        let alice = user(&a, "alice").await;
        let bob = user(&b, "bob").await;
        let g = bob
            .post(&b.url("/api/v1/guilds"), json!({"name": "Over TLS"}))
            .await
            .expect("guild")
            .ok()
            .expect("201")
            .json()
            .expect("json");
        let channel = g["channels"][0]["id"]
            .as_str()
            .expect("channel")
            .to_string();
        let invite = bob
            .post(
                &b.url(&format!("/api/v1/channels/{channel}/invites")),
                json!({}),
            )
            .await
            .expect("invite")
            .ok()
            .expect("201")
            .json()
            .expect("json");
        let code = invite["code"].as_str().expect("code");
        // Alice, homed on A, uses B directly with A's token; B verifies her with A in the
        // background, over TLS.
        alice
            .post(&b.url(&format!("/api/v1/invites/{code}")), json!({}))
            .await
            .expect("join")
            .ok()
            .expect("joined");
        alice
            .post(
                &b.url(&format!("/api/v1/channels/{channel}/messages")),
                json!({"content": "hello from A"}),
            )
            .await
            .expect("post")
            .ok()
            .expect("posted");
        // B pinned A's certificate when it first called A, and kept it on disk.
        let pins_file = b.data.join("tls/pins");
        let pinned = eventually(Duration::from_secs(10), async || {
            std::fs::read_to_string(&pins_file)
                .unwrap_or_default()
                .contains(&format!("{} {fingerprint_a}", a.origin))
        })
        .await;
        assert!(
            pinned,
            "B did not pin A's certificate in {}",
            pins_file.display()
        );
    });
}

#[test]
fn the_certificate_covers_the_box_names_and_is_remade_with_its_key_when_they_change() {
    use hearth::lan::tls::{certificate_names, key_fingerprint};
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let cert = data.join("tls/cert.pem");
    let mut server = TestServer::start_config(tls_config(data.clone()), None);
    let (address, origin) = (server.addr.to_string(), server.origin.clone());
    let names = certificate_names(&pem_der(&cert)).expect("SANs");
    let host = format!(
        "{}.local",
        hearth::lan::tls::host_name().to_ascii_lowercase()
    );
    for dns in ["hearth.local", "localhost", host.as_str()] {
        assert!(names.dns.iter().any(|d| d == dns), "{dns} not in {names:?}");
    }
    // The address it listens on (a wildcard listen: every interface's).
    assert!(names.ips.contains(&server.addr.ip()), "{names:?}");
    let alice = block_on(user(&server, "alice"));
    let first = pem_fingerprint(&cert);
    assert_eq!(
        alice.tls_pins().get(&origin).as_deref(),
        Some(first.as_str())
    );
    let key = key_fingerprint(&pem_der(&cert)).expect("key");
    assert_eq!(alice.tls_pins().key(&origin).as_deref(), Some(key.as_str()));
    // A pin of the certificate alone, as read out from the log, gains the key on use.
    let bob = Client::new();
    bob.tls_pins().set(&origin, &first);
    assert_eq!(bob.tls_pins().key(&origin), None);
    let answer = block_on(bob.send(&format!("{origin}/.well-known/hearth"), "GET", None, false));
    assert_eq!(answer.expect("bob's pin").status, 200);
    assert_eq!(bob.tls_pins().key(&origin).as_deref(), Some(key.as_str()));
    server.stop();

    // Started again with the same names: the same certificate.
    let mut server = TestServer::start_at(&address, tls_config(data.clone()), None);
    assert_eq!(pem_fingerprint(&cert), first);
    server.stop();

    // The box is now (also) announced as hearth-2.local: the certificate is made again,
    // with the same key, and covers it.
    let key_file = std::fs::read(data.join("tls/key.pem")).expect("key file");
    let mut renamed = tls_config(data.clone());
    renamed.tls.names.push("hearth-2.local".into());
    let _server = TestServer::start_at(&address, renamed, None);
    let second = pem_fingerprint(&cert);
    assert_ne!(second, first, "a new certificate");
    assert_eq!(
        std::fs::read(data.join("tls/key.pem")).expect("key"),
        key_file
    );
    assert_eq!(
        key_fingerprint(&pem_der(&cert)).as_deref(),
        Some(key.as_str())
    );
    let names = certificate_names(&pem_der(&cert)).expect("SANs");
    assert!(names.dns.iter().any(|d| d == "hearth-2.local"), "{names:?}");
    assert!(names.dns.iter().any(|d| d == "hearth.local"), "{names:?}");

    // Clients that pinned the key follow the new certificate; a pin of the old
    // certificate alone is refused, as before.
    for client in [&alice, &bob] {
        let answer =
            block_on(client.send(&format!("{origin}/.well-known/hearth"), "GET", None, false));
        assert_eq!(answer.expect("the pinned key").status, 200);
        assert_eq!(
            client.tls_pins().get(&origin).as_deref(),
            Some(second.as_str())
        );
    }
    let careful = Client::new();
    careful.tls_pins().set(&origin, &first);
    assert!(matches!(
        block_on(careful.send(&format!("{origin}/.well-known/hearth"), "GET", None, false)).err(),
        Some(ClientError::CertificateChanged { .. })
    ));
}
