//! The one test helper: a real server on 127.0.0.1 port 0 with its own temp data dir,
//! stopped cleanly when dropped; the set-ups the modules share are in `fixtures`.
#![allow(dead_code)]

mod browser;
mod fixtures;
mod webpush;
pub use browser::*;
pub use fixtures::*;
pub use webpush::*;

use hearth::client::Client;
use hearth::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

pub struct TestServer {
    pub origin: String,
    pub addr: SocketAddr,
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
    stop: Option<async_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A configuration for tests: light argon2 so logins are quick.
pub fn test_config(data: PathBuf) -> Config {
    let mut config = Config {
        data_dir: data,
        ..Config::default()
    };
    config.auth.argon2_memory_kib = 256;
    config.auth.argon2_iterations = 1;
    config.auth.login_failures_per_account = 1000;
    config.auth.login_attempts_per_address = 100_000;
    // Tests register, post and react far faster than people; the security tests that
    // check these limits set them back.
    config.throttle = generous_throttle();
    // Plain HTTP, as configured for development; tests/it/tls.rs runs the default (HTTPS).
    config.tls.enabled = false;
    // Tests never send multicast on the host's network; tests/it/discovery.rs turns it on
    // inside network namespaces of its own.
    config.discovery.enabled = false;
    // The web client signs in on a fresh box; tests/it/setup.rs and web_setup.rs turn the
    // browser setup back on.
    config.setup.from_browser = false;
    config
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path().join("data"));
        adjust(&mut config);
        Self::start_config(config, Some(dir))
    }

    pub fn start_config(config: Config, dir: Option<tempfile::TempDir>) -> TestServer {
        Self::start_at("127.0.0.1:0", config, dir)
    }

    /// Starts a server on a given address (to restart one where its peers expect it).
    pub fn start_at(address: &str, config: Config, dir: Option<tempfile::TempDir>) -> TestServer {
        let data = config.data_dir.clone();
        let listener = smol::block_on(smol::net::TcpListener::bind(address)).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let (ready, is_ready) = std::sync::mpsc::channel::<String>();
        let thread = std::thread::spawn(move || {
            smol::block_on(hearth::server::run_with(
                listener,
                config,
                async move {
                    let _ = stopped.recv().await;
                },
                move |origin| {
                    let _ = ready.send(origin.to_string());
                },
            ))
            .expect("server runs");
        });
        // Return only once the database, keys and admin socket are open.
        let origin = is_ready
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("server became ready");
        TestServer {
            origin,
            addr,
            data,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.origin, path)
    }

    /// Stops the server and waits until it has let go of its files.
    pub fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Registers and signs in a fresh user.
pub async fn user(server: &TestServer, name: &str) -> Client {
    let client = Client::new();
    client
        .register(&server.origin, name, "password-of-some-length")
        .await
        .expect("register");
    client
}

pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(f)
}

// ---- The real `hearth` binary as a child process (tests/it/durability.rs, cli.rs) ----

/// Writes `DIR/hearth.toml` with light argon2 and generous login limits; `top` is extra
/// top-level TOML (e.g. `name = "x"`) put before the sections.
pub fn write_light_config(dir: &std::path::Path, top: &str) -> PathBuf {
    let path = dir.join("hearth.toml");
    let text = format!(
        "{top}\n[auth]\nargon2_memory_kib = 256\nargon2_iterations = 1\n\
         login_failures_per_account = 1000\nlogin_attempts_per_address = 100000\n\
         [tls]\nenabled = false\n[discovery]\nenabled = false\n\
         [throttle]\nregistrations_per_address_hour = 100000\n\
         messages_per_user_minute = 100000\nmessages_per_address_minute = 100000\n\
         reactions_per_user_minute = 100000\nreactions_per_address_minute = 100000\n\
         uploads_per_user_minute = 100000\nuploads_per_address_minute = 100000\n"
    );
    std::fs::write(&path, text).expect("write hearth.toml");
    path
}

/// `hearth` with the given arguments.
pub fn hearth_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    command.args(args);
    command
}

/// Runs `hearth` to completion, feeding `stdin` (if any) on standard input.
pub fn run_hearth<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = hearth_command(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hearth");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for hearth")
}

/// A `hearth serve` child process; SIGKILLed when dropped.
pub struct HearthProcess {
    child: std::process::Child,
    pub origin: String,
    pub addr: SocketAddr,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl HearthProcess {
    /// `hearth --config CONFIG serve --data DATA --listen 127.0.0.1:0`.
    pub fn serve(config: &std::path::Path, data: &std::path::Path) -> HearthProcess {
        let args: Vec<&std::ffi::OsStr> = vec![
            "--config".as_ref(),
            config.as_os_str(),
            "serve".as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ];
        HearthProcess::spawn(&args)
    }

    /// Starts `hearth ARGS`, reads the bound address from its `listening on` line and
    /// waits until it answers HTTP (so its admin socket exists too).
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> HearthProcess {
        HearthProcess::spawn_command(hearth_command(args))
    }

    /// Like [`HearthProcess::spawn`], for a command that runs `hearth serve` (e.g. under
    /// `faketime`).
    pub fn spawn_command(mut command: std::process::Command) -> HearthProcess {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth serve");
        let pipe = child.stderr.take().expect("stderr pipe");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (found, address) = std::sync::mpsc::channel::<String>();
        let log = stderr.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or("");
                    let addr = url.split("://").nth(1).unwrap_or(url);
                    let _ = found.send(addr.to_string());
                }
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match address.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                std::thread::sleep(std::time::Duration::from_millis(100));
                panic!(
                    "hearth serve did not report its address ({status:?}); stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let addr: SocketAddr = addr.parse().expect("address in the listening line");
        let process = HearthProcess {
            child,
            origin: format!("http://{addr}"),
            addr,
            stderr,
        };
        process.wait_ready();
        process
    }

    fn wait_ready(&self) {
        let url = format!("{}/.well-known/hearth", self.origin);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let answer = smol::block_on(Client::new().send(&url, "GET", None, false));
            if matches!(&answer, Ok(r) if r.status == 200) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hearth serve never answered: {answer:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.origin, path)
    }

    /// What the server wrote to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (through `kill -TERM PID`), then waits up to 10 s for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hearth did not stop within 10 s of SIGTERM; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for HearthProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every message of a channel, newest first, paged with `before`; and the same oldest
/// first, paged with `after`. Panics if the two disagree.
pub async fn channel_history(
    client: &Client,
    origin: &str,
    channel: &str,
) -> Vec<serde_json::Value> {
    let base = format!("{origin}/api/v1/channels/{channel}/messages?limit=100");
    let page = |url: String| async move {
        let answer = client.get(&url).await.expect("history page");
        assert_eq!(answer.status, 200, "history page {url}: {answer:?}");
        answer
            .json()
            .expect("json")
            .as_array()
            .expect("array")
            .clone()
    };
    let mut newest_first = Vec::new();
    let mut url = base.clone();
    loop {
        let rows = page(url).await;
        let Some(last) = rows.last() else { break };
        url = format!("{base}&before={}", last["id"].as_str().expect("id"));
        newest_first.extend(rows);
    }
    let mut oldest_first = Vec::new();
    let mut url = format!("{base}&after=0");
    loop {
        let rows = page(url).await;
        let Some(last) = rows.last() else { break };
        url = format!("{base}&after={}", last["id"].as_str().expect("id"));
        oldest_first.extend(rows);
    }
    let down: Vec<&serde_json::Value> = newest_first.iter().map(|m| &m["id"]).collect();
    let up: Vec<&serde_json::Value> = oldest_first.iter().rev().map(|m| &m["id"]).collect();
    assert_eq!(down, up, "paging with before and with after disagree");
    newest_first
}

/// A test configuration whose outgoing calls may reach loopback (where the test's other
/// servers are); [`start_federating`] starts a server on it.
pub fn federating(dir: &std::path::Path) -> Config {
    let mut config = test_config(dir.join("data"));
    config.federation.allow_loopback = true;
    config
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually(limit: std::time::Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        smol::Timer::after(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Fails with a clear message unless the browser tests can run: Debian's Chromium and
/// playwright-core (both installed by `.ci/setup`).
pub fn require_browser() {
    for (path, what) in [
        ("/usr/bin/chromium", "Debian's chromium"),
        (
            "tests/js/node_modules/playwright-core/package.json",
            "playwright-core (npm ci in tests/js)",
        ),
    ] {
        assert!(
            std::path::Path::new(path).exists(),
            "{what} is missing: run `bash .ci/setup`"
        );
    }
}

/// `method url` with a JSON body (ignored for GET), which must answer 2xx; its JSON (or
/// null).
pub async fn api_json(
    client: &Client,
    method: &str,
    url: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let answer = match method {
        "POST" => client.post(url, body).await,
        "PATCH" => client.patch(url, body).await,
        _ => client.get(url).await,
    }
    .expect("request");
    assert!(
        (200..300).contains(&answer.status),
        "{method} {url}: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    answer.json().unwrap_or(serde_json::Value::Null)
}

/// Rate limits and connection caps far above anything a test does from its one address
/// (see [`test_config`]); deadlines stay at their defaults.
pub fn generous_throttle() -> hearth::config::ThrottleConfig {
    hearth::config::ThrottleConfig {
        max_connections_per_address: 4096,
        max_connections: 8192,
        registrations_per_address_hour: 100_000,
        messages_per_user_minute: 100_000,
        messages_per_address_minute: 100_000,
        reactions_per_user_minute: 100_000,
        reactions_per_address_minute: 100_000,
        uploads_per_user_minute: 100_000,
        uploads_per_address_minute: 100_000,
        tickets_per_device: 1000,
        tickets_per_user: 1000,
        ..Default::default()
    }
}

impl HearthProcess {
    /// The server process's id (to read its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
