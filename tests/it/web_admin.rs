//! The administrators' console in Debian's Chromium (`tests/js/web/admin.mjs`): an
//! administrator sees the box's status and adds a second box as a peer through the
//! fingerprint comparison step (the fingerprint the other box's owner reads on that box's
//! console), sees it listed with its status, and removes it; someone who is no
//! administrator sees no console entry.

use crate::common::*;
use crate::health::{add_admin, ADMIN_PASSWORD};

#[test]
fn an_administrator_runs_the_box_and_pins_a_peer_after_comparing_fingerprints() {
    let a = start_federating();
    let b = start_federating();
    add_admin(&a.data, "root");
    add_admin(&b.data, "rootb");
    run_browser_script(
        "tests/js/web/admin.mjs",
        &[&a.origin, &b.origin, ADMIN_PASSWORD],
    );
}
