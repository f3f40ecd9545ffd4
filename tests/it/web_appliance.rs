//! The box out of the box, in Debian's Chromium (`tests/js/web/appliance.mjs`): a fresh box
//! is claimed with its setup code, its owner makes a guild, adds a peer in the console
//! after comparing its fingerprint, and downloads a backup from the console; that backup,
//! restored with `hearth restore` into a fresh data directory and served where the box
//! was, shows the owner the same guild, message and peer.
//!
//! Control channel: the script prints `control: restore PATH` and waits for `ok`.

use crate::common::*;

#[test]
fn a_box_is_claimed_backed_up_and_restored_from_the_browser() {
    require_browser();
    let dir_a = tempfile::tempdir().expect("temp dir");
    let mut config_a = federating(dir_a.path());
    config_a.setup.from_browser = true;
    let mut a = TestServer::start_config(config_a.clone(), None);
    let b = start_federating();
    let out = hearth_command(&["setup-code", "--data"])
        .arg(&a.data)
        .output()
        .expect("run hearth setup-code");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout).unwrap();
    let downloads = tempfile::tempdir().expect("temp dir");
    let fresh = tempfile::tempdir().expect("temp dir");
    let address = a.addr.to_string();
    run_controlled_script(
        "tests/js/web/appliance.mjs",
        &[
            &a.origin.clone(),
            &b.origin,
            code.trim(),
            downloads.path().to_str().unwrap(),
        ],
        |command| match command.strip_prefix("restore ") {
            Some(archive) => {
                // Another box: a fresh data directory, served at the same address (a
                // restore is the same box only where its origin was).
                a.stop();
                let data = fresh.path().join("data");
                let out = hearth_command(&["restore", archive, "--data"])
                    .arg(&data)
                    .output()
                    .expect("run hearth restore");
                if !out.status.success() {
                    return format!("restore failed: {}", String::from_utf8_lossy(&out.stderr));
                }
                let mut config = config_a.clone();
                config.data_dir = data;
                a = TestServer::start_at(&address, config, None);
                "ok".to_string()
            }
            None => format!("unknown control line: {command}"),
        },
    );
}
