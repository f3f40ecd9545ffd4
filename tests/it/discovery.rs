//! LAN discovery over mDNS between real `hearth serve` processes, each in a network
//! namespace this test makes, joined by a veth pair (10.77.0.1/24 ↔ 10.77.0.2/24) and
//! nothing else: no packet touches the host's own interfaces. The test reads what each server heard
//! through its admin socket (a file, reachable across network namespaces).
//!
//! Needs root and `ip` (iproute2; `.ci/setup` installs it); elsewhere the namespace test
//! says why and skips.

use crate::common::*;
use hearth::admin::{self, Command};
use hearth::client::Client;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const A_ADDR: &str = "10.77.0.1";
const B_ADDR: &str = "10.77.0.2";

/// Runs `ip ARGS`.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two network namespaces joined by a veth pair; deleted (with the veth) when dropped,
/// whether the test passed or not.
struct Namespaces {
    a: String,
    b: String,
    made: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.made.iter().rev() {
            if let Err(e) = ip(&["netns", "delete", name]) {
                eprintln!("discovery test: cleaning up: {e}");
            }
        }
    }
}

/// Why the namespaces were not made.
enum Unable {
    /// Not root, or no `ip`.
    Skip(String),
    /// `ip` failed.
    Failed(String),
}

impl From<String> for Unable {
    fn from(reason: String) -> Unable {
        Unable::Failed(reason)
    }
}

impl Namespaces {
    fn make() -> Result<Namespaces, Unable> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Unable::Skip(
                "not running as root (network namespaces need it)".into(),
            ));
        }
        if std::process::Command::new("ip").arg("-V").output().is_err() {
            return Err(Unable::Skip(
                "no `ip` command (Debian: apt-get install iproute2; .ci/setup does)".into(),
            ));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tag = format!("{}-{}", std::process::id(), stamp % 100_000);
        let mut spaces = Namespaces {
            a: format!("hearth-mdns-{tag}-a"),
            b: format!("hearth-mdns-{tag}-b"),
            made: Vec::new(),
        };
        let (a, b) = (spaces.a.clone(), spaces.b.clone());
        for name in [&a, &b] {
            ip(&["netns", "add", name])?;
            spaces.made.push(name.clone());
        }
        // The veth pair is made inside A with its peer end put straight into B, so it
        // never exists in the host's namespace.
        ip(&[
            "-n", &a, "link", "add", "hveth", "type", "veth", "peer", "name", "hveth", "netns", &b,
        ])?;
        for (ns, addr) in [(&a, A_ADDR), (&b, B_ADDR)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "hveth",
            ])?;
        }
        Ok(spaces)
    }

    /// Brings the links up (the servers may start before, as on a box whose network
    /// comes up after the server).
    fn up(&self) -> Result<(), String> {
        for ns in [&self.a, &self.b] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", "hveth", "up", "multicast", "on"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", "hveth"])?;
        }
        Ok(())
    }
}

/// A `hearth serve` (HTTPS, discovery on) inside a namespace; SIGKILLed when dropped.
struct NsServer {
    child: Child,
    origin: String,
    data: PathBuf,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl NsServer {
    fn start(ns: &str, listen: &str, name: &str, public_url: Option<&str>) -> NsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let config = dir.path().join("hearth.toml");
        let mut text = format!("name = {name:?}\n");
        if let Some(url) = public_url {
            text.push_str(&format!("public_url = {url:?}\n"));
        }
        // TLS and discovery stay on (their defaults).
        text.push_str(
            "[auth]\nargon2_memory_kib = 256\nargon2_iterations = 1\n[discovery]\nenabled = true\n",
        );
        std::fs::write(&config, text).expect("write config");
        let mut child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_hearth"),
                "--config",
            ])
            .arg(&config)
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth serve in a namespace");
        let pipe = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = stderr.clone();
        let (found, origin) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split(" as ").nth(1) {
                    if line.contains("listening on") {
                        let _ = found.send(rest.split_whitespace().next().unwrap_or("").into());
                    }
                }
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let origin = origin.recv_timeout(Duration::from_secs(30));
        let mut server = NsServer {
            child,
            origin: String::new(),
            data,
            stderr,
            _dir: dir,
        };
        match origin {
            Ok(origin) => server.origin = origin,
            Err(_) => {
                server.kill();
                panic!("hearth serve did not start; stderr:\n{}", server.stderr());
            }
        }
        server
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends an admin command through the server's socket.
    fn admin(&self, command: &Command) -> Result<Value, String> {
        let config = hearth::config::Config {
            data_dir: self.data.clone(),
            ..Default::default()
        };
        let socket = hearth::app::admin_socket_path(&config);
        match admin::send(&socket, command) {
            Ok(Some(answer)) => answer,
            Ok(None) => Err("no server on the admin socket".into()),
            Err(e) => Err(format!("admin socket: {e}")),
        }
    }

    fn discovered(&self) -> Value {
        self.admin(&Command::ListDiscovered)
            .unwrap_or_else(|e| panic!("ListDiscovered: {e}; stderr:\n{}", self.stderr()))
    }

    /// This server's own key and fingerprints, as it lists them.
    fn own(&self) -> Value {
        self.discovered()["self"].clone()
    }

    /// SIGTERM, then the exit status (within 10 s).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within 10 s of SIGTERM; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SHA-256 of the certificate in a PEM file, lowercase hex.
fn pem_fingerprint(path: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(path).expect("read cert.pem");
    hearth::lan::tls::fingerprint(der.as_ref())
}

/// Polls `server`'s discovered list until `check` finds what it wants (30 s at most).
fn wait_for(server: &NsServer, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listing = server.discovered();
        let servers = listing["servers"].as_array().cloned().unwrap_or_default();
        if check(&servers) {
            return servers;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never seen; last listing {listing:#}\nstderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn with_key<'a>(servers: &'a [Value], key: &Value) -> Option<&'a Value> {
    servers.iter().find(|s| &s["server_key"] == key)
}

#[test]
fn servers_find_each_other_and_a_spoof_is_a_conflict() {
    let spaces = match Namespaces::make() {
        Ok(s) => s,
        Err(Unable::Skip(reason)) => {
            eprintln!("SKIPPED discovery namespace test: {reason}");
            return;
        }
        // Root with `ip` (CI) must manage; elsewhere (a container without the
        // capability, say) say why and skip.
        Err(Unable::Failed(reason)) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED discovery namespace test: {reason}");
            return;
        }
        Err(Unable::Failed(reason)) => panic!("cannot make network namespaces: {reason}"),
    };
    // A listens on its address, B on the wildcard (its origin configured), both before
    // their links are up: announcements follow the interfaces as they come.
    let a = NsServer::start(&spaces.a, &format!("{A_ADDR}:0"), "Hearth A", None);
    let b_origin = format!("https://{B_ADDR}:8443");
    let b = NsServer::start(&spaces.b, "0.0.0.0:8443", "Hearth B", Some(&b_origin));
    spaces.up().expect("links up");
    assert_eq!(b.origin, b_origin);
    assert!(
        a.origin.starts_with(&format!("https://{A_ADDR}:")),
        "{}",
        a.origin
    );
    let (me_a, me_b) = (a.own(), b.own());
    assert_eq!(a.discovered()["advertised_as"], "Hearth A");
    assert_eq!(a.discovered()["running"], true);
    // The TLS fingerprints they announce are those of their certificates.
    let tls_a = pem_fingerprint(&a.data.join("tls/cert.pem"));
    let tls_b = pem_fingerprint(&b.data.join("tls/cert.pem"));
    assert_eq!(me_a["tls_fingerprint"], tls_a.as_str());
    assert_eq!(me_b["tls_fingerprint"], tls_b.as_str());

    // Each lists the other with its key, key fingerprint, TLS fingerprint and address, and
    // never itself.
    for (finder, other, other_me, other_tls, other_addr) in [
        (&a, &b, &me_b, &tls_b, B_ADDR),
        (&b, &a, &me_a, &tls_a, A_ADDR),
    ] {
        let servers = wait_for(finder, "the other server", |servers| {
            with_key(servers, &other_me["server_key"]).is_some()
        });
        let entry = with_key(&servers, &other_me["server_key"]).unwrap();
        assert_eq!(entry["origin"], other.origin.as_str(), "{entry:#}");
        assert_eq!(entry["fingerprint"], other_me["fingerprint"]);
        assert_eq!(entry["tls_fingerprint"], other_tls.as_str());
        assert_eq!(entry["addresses"], json!([other_addr]));
        assert_eq!(entry["present"], true);
        assert_eq!(entry["peer"], false);
        assert_eq!(entry["conflict"], false, "{entry:#}");
        assert_eq!(servers.len(), 1, "only the other server: {servers:#?}");
    }

    // A adds B from its announcement: a wrong fingerprint is refused, the right one pins
    // the announced key (and B's TLS certificate fingerprint).
    let wrong = a.admin(&Command::AddDiscoveredPeer {
        origin: b.origin.clone(),
        fingerprint: me_a["fingerprint"].as_str().unwrap().into(),
    });
    assert!(
        matches!(&wrong, Err(e) if e.contains("fingerprint")),
        "{wrong:?}"
    );
    let added = a
        .admin(&Command::AddDiscoveredPeer {
            origin: b.origin.clone(),
            fingerprint: me_b["fingerprint"].as_str().unwrap().to_uppercase(),
        })
        .expect("add B from its announcement");
    assert_eq!(added["server_key"], me_b["server_key"]);
    assert_eq!(added["name"], "Hearth B");
    assert_eq!(added["tls_fingerprint"], tls_b.as_str());
    let peers = a.admin(&Command::ListPeers).expect("list peers");
    assert_eq!(peers[0]["origin"], b.origin.as_str());
    assert_eq!(peers[0]["server_key"], me_b["server_key"]);
    let pins = std::fs::read_to_string(a.data.join("tls/pins")).expect("A's TLS pins");
    assert!(pins.contains(&format!("{} {tls_b}", b.origin)), "{pins}");
    let servers = a.discovered()["servers"].as_array().cloned().unwrap();
    assert_eq!(
        with_key(&servers, &me_b["server_key"]).unwrap()["peer"],
        true
    );

    // A spoof: another server in A's namespace announcing B's name and B's origin under
    // its own key.
    let mut spoof = NsServer::start(
        &spaces.a,
        &format!("{A_ADDR}:0"),
        "Hearth B",
        Some(&b.origin),
    );
    let me_spoof = spoof.own();
    assert_ne!(me_spoof["server_key"], me_b["server_key"]);
    let servers = wait_for(&a, "the spoof on A", |servers| {
        with_key(servers, &me_spoof["server_key"]).is_some()
    });
    let fake = with_key(&servers, &me_spoof["server_key"]).unwrap();
    assert_eq!(fake["origin"], b.origin.as_str());
    assert_eq!(fake["conflict"], true, "{fake:#}");
    assert_eq!(fake["peer"], false);
    let real = with_key(&servers, &me_b["server_key"]).unwrap();
    assert_eq!(real["conflict"], true, "both are marked: {real:#}");
    assert_eq!(real["peer"], true);
    // B sees someone claiming its own origin and name.
    let servers = wait_for(&b, "the spoof on B", |servers| {
        with_key(servers, &me_spoof["server_key"]).is_some()
    });
    assert_eq!(
        with_key(&servers, &me_spoof["server_key"]).unwrap()["conflict"],
        true
    );
    assert_eq!(
        with_key(&servers, &me_a["server_key"]).unwrap()["conflict"],
        false
    );
    // Neither key can be added from the announcements now, and B's pinned key stays.
    for fp in [&me_spoof["fingerprint"], &me_b["fingerprint"]] {
        let refused = a.admin(&Command::AddDiscoveredPeer {
            origin: b.origin.clone(),
            fingerprint: fp.as_str().unwrap().into(),
        });
        assert!(
            matches!(&refused, Err(e) if e.contains("cannot be added")),
            "{refused:?}"
        );
    }
    let peers = a.admin(&Command::ListPeers).expect("list peers");
    assert_eq!(peers.as_array().unwrap().len(), 1);
    assert_eq!(peers[0]["server_key"], me_b["server_key"]);

    // A clean stop withdraws the announcement (mDNS goodbye); the conflict stays listed.
    assert!(spoof.terminate().success(), "{}", spoof.stderr());
    let servers = wait_for(&a, "the spoof's goodbye", |servers| {
        with_key(servers, &me_spoof["server_key"]).is_some_and(|s| s["present"] == false)
    });
    assert_eq!(
        with_key(&servers, &me_spoof["server_key"]).unwrap()["conflict"],
        true
    );
    drop(spoof);
    drop((a, b));
    drop(spaces);
}

/// The admin API: administrators only; with discovery off it says so and lists nothing.
#[test]
fn admin_api_lists_discovered_servers_for_admins_only() {
    let server = TestServer::start();
    block_on(async {
        let user = user(&server, "someone").await;
        let answer = user
            .get(&server.url("/api/v1/admin/discovered"))
            .await
            .unwrap();
        assert_eq!(answer.status, 403);

        let mut child = hearth_command(&["user", "add", "root", "--password-stdin", "--admin"])
            .arg("--data")
            .arg(&server.data)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"admin-password-1\n")
            .unwrap();
        assert!(child.wait().unwrap().success());
        let root = Client::new();
        root.login_password(&server.origin, "root", "admin-password-1")
            .await
            .unwrap();
        let listing = root
            .get(&server.url("/api/v1/admin/discovered"))
            .await
            .unwrap()
            .ok()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(listing["enabled"], false);
        assert_eq!(listing["running"], false);
        assert_eq!(listing["servers"], json!([]));
        assert!(listing["note"].as_str().unwrap().contains("turned off"));
        assert!(listing["self"]["fingerprint"].is_string());

        let missing = root
            .post(
                &server.url("/api/v1/admin/discovered"),
                json!({"origin": "https://10.9.9.9:8443", "fingerprint": "ab"}),
            )
            .await
            .unwrap();
        assert_eq!(missing.status, 404, "{missing:?}");
        let forbidden = user
            .post(
                &server.url("/api/v1/admin/discovered"),
                json!({"origin": "https://10.9.9.9:8443", "fingerprint": "ab"}),
            )
            .await
            .unwrap();
        assert_eq!(forbidden.status, 403);
    });
}
