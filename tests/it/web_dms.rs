//! Direct messages in the web client across three federated boxes, driven in Debian's
//! Chromium by playwright-core (`tests/js/web/dms.mjs`): a DM opened from a person's card,
//! listed unread in both of the other person's browsers and cleared in one when read in
//! the other, answered live, a call in the DM, a group DM with someone of a third box who
//! is then removed, blocking, and the DM listed as unreachable while its box is stopped.
//!
//! Control channel: the script prints `control: stop A` / `control: start A` and waits
//! for `ok` on its standard input.

use crate::common::*;
use std::io::{BufRead, Write};
use std::process::{Command, Stdio};

#[test]
fn direct_messages_in_the_browser_across_boxes() {
    require_browser();
    let dir_a = tempfile::tempdir().expect("temp dir");
    let config_a = federating(dir_a.path());
    let mut a = TestServer::start_config(config_a.clone(), None);
    let b = start_federating();
    let c = start_federating();
    peer_all(&[&a, &b, &c]);
    let mut script = Command::new("node")
        .arg("tests/js/web/dms.mjs")
        .arg(&a.origin)
        .arg(&b.origin)
        .arg(&c.origin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (install Node.js)");
    let mut answers = script.stdin.take().expect("node's stdin");
    let stdout = script.stdout.take().expect("node's stdout");
    let stderr = script.stderr.take().expect("node's stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text);
        text
    });
    let a_address = a.addr.to_string();
    let mut output = String::new();
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        output.push_str(&line);
        output.push('\n');
        let Some(command) = line.strip_prefix("control: ") else {
            continue;
        };
        let answer = match command.trim() {
            "stop A" => {
                a.stop();
                "ok".to_string()
            }
            "start A" => {
                a = TestServer::start_at(&a_address, config_a.clone(), None);
                "ok".to_string()
            }
            other => format!("unknown control line: {other}"),
        };
        writeln!(answers, "{answer}")
            .and_then(|()| answers.flush())
            .expect("answer the script");
    }
    let status = script.wait().expect("wait for node");
    let stderr = errors.join().unwrap_or_default();
    assert!(
        status.success() && output.contains("all steps passed"),
        "the browser test failed\n--- stdout\n{output}\n--- stderr\n{stderr}"
    );
}
