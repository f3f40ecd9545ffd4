//! An independent DPoP implementation against the server: the npm `dpop` package (in
//! tests/js, installed with `npm ci --prefix tests/js`) signs in with the password grant of
//! an account made by the real `hearth user add`, and reads `/api/v1/users/@me`.

use crate::common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery staple";

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
}

/// Runs a command to completion (killing it after `limit`), returning status and output.
fn run(mut command: Command, stdin: &str, limit: Duration) -> (bool, String, String) {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.as_bytes()).expect("write stdin");
    drop(pipe);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.success(), stdout, stderr)
}

/// `node tests/js/dpop-login.mjs ORIGIN USER PASSWORD ALG`.
fn node_login(origin: &str, name: &str, password: &str, alg: &str) -> (bool, String, String) {
    let mut node = Command::new("node");
    node.arg(js_dir().join("dpop-login.mjs"))
        .args([origin, name, password, alg])
        .current_dir(js_dir());
    run(node, "", Duration::from_secs(60))
}

#[test]
fn the_npm_dpop_client_signs_in_and_reads_its_profile() {
    assert!(
        js_dir().join("node_modules/dpop/package.json").is_file(),
        "tests/js/node_modules is missing: run `npm ci --prefix tests/js` first (.ci/run does)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs Node.js 20 or later on PATH: {node:?}"
    );

    let server = TestServer::start();
    // The first answer means the server has opened its data directory and admin socket.
    block_on(hearth::client::Client::new().fetch_nonce(&server.origin)).expect("server up");

    // The account comes from the real CLI, through the running server's admin socket.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let mut add = Command::new(env!("CARGO_BIN_EXE_hearth"));
    add.args(["user", "add", "carol", "--password-stdin", "--data"])
        .arg(&server.data)
        .current_dir(elsewhere.path());
    let (ok, stdout, stderr) = run(add, &format!("{PASSWORD}\n"), Duration::from_secs(60));
    assert!(ok, "hearth user add failed:\n{stdout}\n{stderr}");
    let id = stdout
        .trim()
        .strip_prefix("created user carol (")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected output of hearth user add: {stdout}"))
        .to_string();
    assert_eq!(id.len(), 43, "user id {id}");

    for alg in ["ES256", "Ed25519"] {
        let (ok, stdout, stderr) = node_login(&server.origin, "carol", PASSWORD, alg);
        assert!(
            ok,
            "the npm dpop client ({alg}) failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        eprint!("{stderr}");
        let me: serde_json::Value = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("the script printed no JSON user: {stdout}"));
        assert_eq!(me["id"], id.as_str(), "{me}");
        assert_eq!(me["name"], "carol", "{me}");
        assert_eq!(me["username"], "carol", "{me}");
        assert_eq!(me["homeserver"], server.origin.as_str(), "{me}");
    }

    // The script does fail when the server says no.
    let (ok, stdout, stderr) = node_login(&server.origin, "carol", "not the password", "ES256");
    assert!(
        !ok,
        "a wrong password must make the script fail:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("invalid_grant"), "{stderr}");
}
