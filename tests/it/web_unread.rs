//! Unread state and notification settings in the web client, driven in Debian's Chromium
//! by playwright-core (`tests/js/web/unread.mjs`) against a real server: unread channels
//! and mention badges, the "new messages" divider, read markers reaching another browser
//! of the same person, "Mark as read", and a channel's notification settings kept and
//! followed by the other browser.

use crate::common::*;

#[test]
fn unread_badges_and_notification_settings_in_the_browser() {
    let server = TestServer::start();
    run_browser_script("tests/js/web/unread.mjs", &[&server.origin]);
}
