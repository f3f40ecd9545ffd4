//! The one test helper: a real server on 127.0.0.1 port 0 with its own temp data dir,
//! stopped cleanly when dropped.
#![allow(dead_code)]

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
        let data = config.data_dir.clone();
        let listener = smol::block_on(smol::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = async_channel::bounded::<()>(1);
        let thread = std::thread::spawn(move || {
            smol::block_on(hearth::app::run(listener, config, async move {
                let _ = stopped.recv().await;
            }))
            .expect("server runs");
        });
        TestServer {
            origin: format!("http://{addr}"),
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
