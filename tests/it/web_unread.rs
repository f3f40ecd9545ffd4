//! Unread state and notification settings in the web client, driven in Debian's Chromium
//! by playwright-core (`tests/js/web/unread.mjs`) against a real server: unread channels
//! and mention badges, the "new messages" divider, read markers reaching another browser
//! of the same person, "Mark as read", and a channel's notification settings kept and
//! followed by the other browser.

use crate::common::*;

#[test]
fn unread_badges_and_notification_settings_in_the_browser() {
    require_browser();
    let server = TestServer::start();
    let out = std::process::Command::new("node")
        .arg("tests/js/web/unread.mjs")
        .arg(&server.origin)
        .output()
        .expect("run node (install Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all steps passed"),
        "the browser test failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}
