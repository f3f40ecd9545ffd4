//! Direct messages in the web client across three federated boxes, driven in Debian's
//! Chromium by playwright-core (`tests/js/web/dms.mjs`): a DM opened from a person's card,
//! listed unread in both of the other person's browsers and cleared in one when read in
//! the other, answered live, a call in the DM, a group DM with someone of a third box who
//! is then removed, blocking, and the DM listed as unreachable while its box is stopped.
//!
//! Control channel: the script prints `control: stop A` / `control: start A` and waits
//! for `ok` on its standard input.

use crate::common::*;

#[test]
fn direct_messages_in_the_browser_across_boxes() {
    require_browser();
    let dir_a = tempfile::tempdir().expect("temp dir");
    let config_a = federating(dir_a.path());
    let mut a = TestServer::start_config(config_a.clone(), None);
    let b = start_federating();
    let c = start_federating();
    peer_all(&[&a, &b, &c]);
    let a_address = a.addr.to_string();
    run_controlled_script(
        "tests/js/web/dms.mjs",
        &[&a.origin.clone(), &b.origin, &c.origin],
        |command| match command {
            "stop A" => {
                a.stop();
                "ok".to_string()
            }
            "start A" => {
                a = TestServer::start_at(&a_address, config_a.clone(), None);
                "ok".to_string()
            }
            other => format!("unknown control line: {other}"),
        },
    );
}
