//! The web client across two federated boxes, driven in Debian's Chromium by
//! playwright-core (`tests/js/web/settings.mjs`): an invite opened on the box that made it
//! handed to the person's home client, chat and a picture on the other box, a linked
//! tablet using that box with its device certificate and then removed, push distributors
//! and push delegations in Settings, and moving the home to the other box.

use crate::common::*;

#[test]
fn a_person_uses_two_boxes_from_the_browser_and_moves_home() {
    require_browser();
    let (a, b) = federated_pair();
    let out = std::process::Command::new("node")
        .arg("tests/js/web/settings.mjs")
        .arg(&a.origin)
        .arg(&b.origin)
        .output()
        .expect("run node (install Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all steps passed"),
        "the browser test failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}
