//! The web client across two federated boxes, driven in Debian's Chromium by
//! playwright-core (`tests/js/web/settings.mjs`): an invite opened on the box that made it
//! handed to the person's home client, chat and a picture on the other box, a linked
//! tablet using that box with its device certificate and then removed, push distributors
//! and push delegations in Settings, and moving the home to the other box.

use crate::common::*;

#[test]
fn a_person_uses_two_boxes_from_the_browser_and_moves_home() {
    let (a, b) = federated_pair();
    run_browser_script("tests/js/web/settings.mjs", &[&a.origin, &b.origin]);
}
