//! `hearth serve` under a service manager: the sd_notify(3) messages systemd receives from a
//! `Type=notify` unit with `WatchdogSec=` (systemd/hearth.service). The test plays systemd
//! with a Unix datagram socket of its own passed as `NOTIFY_SOCKET`.

use crate::common::*;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// 200 ms, as `WatchdogSec=0.2` would set it: pings every 100 ms.
const WATCHDOG_USEC: &str = "200000";

/// The notification socket, as systemd listens on it.
struct Manager {
    socket: UnixDatagram,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).expect("bind the notification socket");
        Manager { socket }
    }

    /// The next message, or `None` if none came by `deadline`.
    fn next(&self, deadline: Instant) -> Option<String> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set timeout");
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("receiving a notification: {e}"),
        }
    }

    /// Every message until (and with) the first that has the line `line`.
    fn until(&self, line: &str, within: Duration, server: &Server) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let Some(message) = self.next(deadline) else {
                panic!(
                    "no {line} within {within:?}; got {seen:?}; stderr:\n{}",
                    server.stderr()
                );
            };
            let done = message.lines().any(|l| l == line);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// Every message that arrives in the next `period`.
    fn during(&self, period: Duration) -> Vec<String> {
        let deadline = Instant::now() + period;
        std::iter::from_fn(|| self.next(deadline)).collect()
    }
}

/// `hearth serve` started as systemd would start the unit; SIGKILLed when dropped.
struct Server {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(config: &Path, data: &Path, notify_socket: &Path) -> Server {
        let args: Vec<&std::ffi::OsStr> = vec![
            "--config".as_ref(),
            config.as_os_str(),
            "serve".as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ];
        let mut child = hearth_command(&args)
            .env("NOTIFY_SOCKET", notify_socket)
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth serve");
        let mut pipe = child.stderr.take().expect("stderr pipe");
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Server { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn sigterm(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
    }

    fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hearth did not exit within {within:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(messages: &[String], line: &str) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == line))
        .count()
}

/// READY=1 once the server answers (with a STATUS= naming its origin), WATCHDOG=1 every
/// half watchdog interval while it serves, STOPPING=1 on SIGTERM, then a clean exit.
fn notify_protocol(tls: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hearth.toml");
    std::fs::write(&config, format!("[tls]\nenabled = {tls}\n")).expect("write hearth.toml");
    let socket_path = dir.path().join("notify.sock");
    let manager = Manager::bind(&socket_path);
    let mut server = Server::start(&config, &dir.path().join("data"), &socket_path);

    let before_ready = manager.until("READY=1", Duration::from_secs(30), &server);
    let ready = before_ready.last().expect("the READY=1 message");
    assert_eq!(
        count(&before_ready, "WATCHDOG=1"),
        0,
        "watchdog pings before READY=1: {before_ready:?}"
    );
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 came without STATUS=: {ready:?}"));
    let origin = status
        .strip_prefix("serving ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("STATUS= does not name the origin: {status:?}"));

    // Ready means ready: the first request, made right away, is answered.
    let answer = block_on(hearth::client::Client::new().send(
        &format!("{origin}/.well-known/hearth"),
        "GET",
        None,
        false,
    ))
    .unwrap_or_else(|e| panic!("{origin} does not answer after READY=1: {e}"));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json().expect("json")["origin"], origin);

    let serving = manager.during(Duration::from_millis(1500));
    let pings = count(&serving, "WATCHDOG=1");
    assert!(
        pings >= 3,
        "{pings} WATCHDOG=1 in 1.5 s with WATCHDOG_USEC={WATCHDOG_USEC}: {serving:?}; stderr:\n{}",
        server.stderr()
    );
    assert_eq!(count(&serving, "STOPPING=1"), 0, "{serving:?}");

    server.sigterm();
    manager.until("STOPPING=1", Duration::from_secs(10), &server);
    let status = server.wait(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit after SIGTERM: {status:?}; stderr:\n{}",
        server.stderr()
    );
    // A ping already on its way when the signal came may trail STOPPING=1; no more.
    let after = manager.during(Duration::from_millis(300));
    assert!(
        count(&after, "WATCHDOG=1") <= 1,
        "pings after STOPPING=1: {after:?}"
    );
}

#[test]
fn notify_protocol_over_https() {
    notify_protocol(true);
}

#[test]
fn notify_protocol_over_plain_http() {
    notify_protocol(false);
}

/// Runs `hearth serve` (plain HTTP, port 0, `extra` arguments) with standard error on a
/// pipe whose device and inode `journal_stream` may name, as systemd names the journal
/// stream it connects; stops it with SIGTERM once `ready` appears in its standard error
/// and returns everything written there.
fn serve_with_stderr_pipe(journal_stream: impl FnOnce(u64, u64) -> String, ready: &str) -> String {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hearth.toml");
    std::fs::write(&config, "[tls]\nenabled = false\n").expect("write hearth.toml");
    let data = dir.path().join("data");
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let pipe = std::fs::File::from(writer.as_fd().try_clone_to_owned().expect("dup"))
        .metadata()
        .expect("fstat the pipe");
    let args: Vec<&std::ffi::OsStr> = vec![
        "--config".as_ref(),
        config.as_os_str(),
        "serve".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    let child = hearth_command(&args)
        .env("JOURNAL_STREAM", journal_stream(pipe.dev(), pipe.ino()))
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .spawn()
        .expect("start hearth serve");
    let stderr = Arc::new(Mutex::new(String::new()));
    let log = stderr.clone();
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut server = Server {
        child,
        stderr: stderr.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.stderr().contains(ready) {
        assert!(
            Instant::now() < deadline,
            "no {ready:?} within 30 s; stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.sigterm();
    let status = server.wait(Duration::from_secs(10));
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    reading.join().expect("stderr reader");
    server.stderr()
}

/// When `JOURNAL_STREAM` names standard error (systemd connected it to the journal), every
/// line carries its syslog priority as journald reads it (`<6>` for info) and no
/// `hearth: ` prefix (the journal names the unit).
#[test]
fn journal_stream_lines_carry_priorities() {
    let stderr = serve_with_stderr_pipe(|dev, ino| format!("{dev}:{ino}"), "<6>listening on");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("<6>listening on http://")),
        "{stderr}"
    );
    assert!(stderr.lines().any(|l| l == "<6>stopped"), "{stderr}");
    for line in stderr.lines() {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "a line without a priority: {line:?}; stderr:\n{stderr}"
        );
        assert!(!line.contains("hearth: "), "{line:?}");
    }
}

/// A `JOURNAL_STREAM` naming another stream (inherited from a parent under systemd) leaves
/// the log on standard error as `hearth: ` lines.
#[test]
fn journal_stream_of_another_stream_keeps_stderr_lines() {
    let stderr = serve_with_stderr_pipe(
        |dev, ino| format!("{dev}:{}", ino + 1),
        "hearth: listening on",
    );
    assert!(stderr.contains("hearth: listening on http://"), "{stderr}");
    assert!(stderr.contains("hearth: stopped"), "{stderr}");
    assert!(!stderr.contains("<6>"), "{stderr}");
}

/// A log level that does not exist stops `hearth serve` at start, naming the value.
#[test]
fn unknown_log_level_is_a_start_up_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("hearth.toml");
    let data = dir.path().join("data");
    let flag = hearth_command(&["serve", "--log-level", "loud", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run hearth serve");
    assert!(!flag.status.success());
    let said = String::from_utf8_lossy(&flag.stderr);
    assert!(
        said.contains("loud") && said.contains("expected error, warn"),
        "{said}"
    );
    std::fs::write(&config, "[log]\nlevel = \"loud\"\n").expect("write hearth.toml");
    let file = hearth_command(&["serve", "--data"])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run hearth serve");
    assert!(!file.status.success());
    let said = String::from_utf8_lossy(&file.stderr);
    assert!(
        said.contains("invalid configuration") && said.contains("loud"),
        "{said}"
    );
}
