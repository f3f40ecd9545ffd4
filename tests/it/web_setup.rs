//! The setup of a fresh box in the web client, driven in Chromium
//! (`tests/js/web/setup.mjs`): the setup code is required (a wrong one is shown as an
//! error), and the owner it makes is signed in, is an administrator, creates a guild and
//! sends a message there.

use crate::common::*;

#[test]
fn a_fresh_box_is_set_up_in_the_browser() {
    let server = TestServer::start_with(|c| c.setup.from_browser = true);
    let out = hearth_command(&["setup-code", "--data"])
        .arg(&server.data)
        .output()
        .expect("run hearth setup-code");
    assert!(out.status.success());
    let code = String::from_utf8(out.stdout).unwrap();
    run_browser_script("tests/js/web/setup.mjs", &[&server.origin, code.trim()]);
}
