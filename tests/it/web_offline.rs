//! The installable web client in Debian's Chromium (`tests/js/web/offline.mjs`): its
//! service worker keeps the app shell and nothing of the API, and a reload with the
//! server stopped shows the client's own page. The script asks for the server to be
//! stopped and started again (`control: stop|start` on its stdout, `ok` on its stdin);
//! it comes back at the same address with the same data, so the browser's session holds.

use crate::common::*;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

#[test]
fn the_client_opens_with_the_server_down_and_never_caches_the_api() {
    require_browser();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || test_config(dir.path().join("data"));
    let mut server = Some(TestServer::start_config(config(), None));
    let address = server.as_ref().unwrap().addr.to_string();
    let origin = server.as_ref().unwrap().origin.clone();
    let mut child = Command::new("node")
        .arg("tests/js/web/offline.mjs")
        .arg(&origin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (install Node.js)");
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
        text
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("node's output");
        match line.as_str() {
            "control: stop" => {
                if let Some(mut running) = server.take() {
                    running.stop();
                }
            }
            "control: start" => {
                let restarted = TestServer::start_at(&address, config(), None);
                assert_eq!(restarted.origin, origin, "the server came back elsewhere");
                server = Some(restarted);
            }
            _ => {}
        }
        if line.starts_with("control: ") {
            writeln!(stdin, "ok").expect("answer node");
            stdin.flush().expect("answer node");
        }
        lines.push(line);
    }
    let status = child.wait().expect("node ends");
    let stderr = stderr.join().unwrap();
    let stdout = lines.join("\n");
    println!("{stdout}");
    assert!(
        status.success() && stdout.contains("all steps passed"),
        "the browser test failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}
