//! Direct messages in the web client across two federated boxes, driven in Debian's
//! Chromium by playwright-core (`tests/js/web/dms.mjs`): a DM opened from a person's card,
//! listed unread in both of the other person's browsers and cleared in one when read in
//! the other, answered live, a call in the DM, the people picker, and blocking.

use crate::common::*;

#[test]
fn direct_messages_in_the_browser_across_boxes() {
    require_browser();
    let (a, b) = federated_pair();
    let out = std::process::Command::new("node")
        .arg("tests/js/web/dms.mjs")
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
