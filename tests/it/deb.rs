//! The Debian package (`[package.metadata.deb]` in Cargo.toml, `deb/`): cargo-deb packages
//! the binary this test run built, and the package is installed, used, upgraded over
//! itself (with its data and a changed conffile kept), removed and purged, with the real
//! `dpkg` and maintainer scripts, in a throwaway copy of this machine's root: an overlay
//! of `/` whose writes go to a temp dir, seen in a private mount namespace (`unshare
//! --mount`) and entered with `chroot`. Nothing reaches the machine's own root. No
//! systemd runs in there: a stand-in of `deb-systemd-invoke` records what the scripts ask
//! of the service (start on install, restart on upgrade, stop on removal).
//!
//! Needs root, `unshare` (util-linux), overlayfs and cargo-deb (`.ci/setup` installs the
//! pinned version). Elsewhere it says why and skips; under CI (`CI` set) a missing piece
//! fails it instead, so the check cannot silently stop running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Skips (or, under CI, fails) the test for `reason`.
fn unable(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("the .deb test cannot run: {reason}");
    }
    eprintln!("deb test skipped: {reason}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn succeeded(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A copy-on-write copy of `/`: the overlay's upper and work directories live here.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        // Under /var/tmp rather than a tmpfs /tmp: an overlay's upper directory must be
        // on a file system that supports it, and /var/tmp is on the root's.
        let dir = tempfile::Builder::new()
            .prefix("hearth-deb-")
            .tempdir_in("/var/tmp")
            .expect("temp dir");
        for sub in ["upper", "work", "root"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        Sandbox { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Runs `script` (sh) as root inside the copy; the mounts vanish with the namespace,
    /// the writes stay in `upper` for the next call.
    fn sh(&self, script: &str) -> Output {
        let root = self.path("root");
        let setup = format!(
            "set -e\n\
             mount -t overlay overlay -o lowerdir=/,upperdir={upper},workdir={work} {root}\n\
             mount --rbind /dev {root}/dev\n\
             mount -t proc proc {root}/proc\n\
             mount -t tmpfs tmpfs {root}/run\n\
             exec chroot {root} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
             LC_ALL=C.UTF-8 /bin/sh -ec \"$1\"",
            upper = self.path("upper").display(),
            work = self.path("work").display(),
            root = root.display(),
        );
        run(Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &setup,
                "sh",
            ])
            .arg(script))
    }

    fn ok(&self, what: &str, script: &str) -> String {
        succeeded(what, self.sh(script))
    }
}

/// Packages the binary at `bin` with cargo-deb as Debian revision `revision`, in `out`.
fn package(bin: &Path, work: &Path, out: &Path, revision: &str) -> PathBuf {
    // cargo-deb takes `target/release/hearth` from the target directory it is given; a
    // directory of our own holds this run's binary there, without debug info (which
    // would only make the package ten times larger).
    let target = work.join("target");
    std::fs::create_dir_all(target.join("release")).expect("mkdir");
    let copy = target.join("release").join("hearth");
    std::fs::copy(bin, &copy).expect("copy the binary");
    let _ = run(Command::new("strip").arg("--strip-debug").arg(&copy));
    let made = succeeded(
        "cargo deb",
        run(Command::new("cargo")
            .args([
                "deb",
                "--no-build",
                "--no-strip",
                "--fast",
                "--deb-revision",
                revision,
            ])
            .arg("--output")
            .arg(out)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))),
    );
    let path = PathBuf::from(made.lines().last().unwrap_or("").trim());
    assert!(path.is_file(), "cargo deb printed {made:?}");
    path
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    succeeded(
        "dpkg-deb",
        run(Command::new("dpkg-deb").args(args).arg(deb)),
    )
}

#[test]
fn the_package_installs_upgrades_keeping_data_and_purges() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return unable("needs root (mount namespaces, overlayfs, chroot)");
    }
    for (tool, why) in [
        ("unshare", "util-linux"),
        ("dpkg-deb", "dpkg"),
        ("cargo-deb", "bash .ci/setup installs it"),
    ] {
        let found = run(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
        if !found.status.success() {
            return unable(&format!("{tool} is missing ({why})"));
        }
    }
    let sandbox = Sandbox::new();
    let probe = sandbox.sh("test -x /usr/bin/dpkg");
    if !probe.status.success() {
        return unable(&format!(
            "cannot make an overlay of / in a mount namespace: {}",
            text(&probe.stderr).trim()
        ));
    }
    let version = env!("CARGO_PKG_VERSION");
    let bin = Path::new(env!("CARGO_BIN_EXE_hearth"));
    let out = sandbox.path("debs");
    let first = package(bin, &sandbox.path("build"), &out, "1");
    let second = package(bin, &sandbox.path("build"), &out, "2");
    let size = std::fs::metadata(&first).expect("stat").len();
    eprintln!(
        "deb test: {} is {size} bytes (debug build, fast compression)",
        first.display()
    );

    // What is in it: the files, the conffile, the scripts, the metadata.
    let contents = dpkg_deb(&["--contents"], &first);
    for path in [
        "./usr/bin/hearth",
        "./usr/lib/systemd/system/hearth.service",
        "./usr/lib/sysusers.d/hearth.conf",
        "./usr/lib/tmpfiles.d/hearth.conf",
        "./etc/hearth/hearth.toml",
        "./usr/share/doc/hearth/copyright",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} missing:\n{contents}"
        );
    }
    assert!(
        !contents.contains("./var/lib/hearth"),
        "data is made, never shipped"
    );
    assert_eq!(
        dpkg_deb(&["--field"], &first)
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .map(str::to_owned),
        Some(format!("{version}-1"))
    );
    let info = dpkg_deb(&["--info"], &first);
    for part in ["conffiles", "postinst", "prerm", "postrm", "Depends: libc6"] {
        assert!(info.contains(part), "{part} missing:\n{info}");
    }
    let control = sandbox.path("control");
    succeeded(
        "dpkg-deb --control",
        run(Command::new("dpkg-deb")
            .arg("--control")
            .arg(&first)
            .arg(&control)),
    );
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).expect("conffiles"),
        "/etc/hearth/hearth.toml\n"
    );

    // The maintainer scripts start, restart and stop the service only where systemd runs
    // (/run/systemd/system); here a stand-in of deb-systemd-invoke, in the copy only,
    // records what it was asked. (Enabling is deb-systemd-helper's, which works offline.)
    sandbox.ok(
        "stand-in",
        "printf '#!/bin/sh\\necho \"deb-systemd-invoke $*\" >>/var/log/hearth-deb-test\\n' \
             >/usr/bin/deb-systemd-invoke && chmod 755 /usr/bin/deb-systemd-invoke",
    );
    let with_systemd = |command: &str| format!("mkdir -p /run/systemd/system && {command}");
    let asked = |sandbox: &Sandbox| {
        let log = sandbox.ok(
            "log",
            "cat /var/log/hearth-deb-test; : >/var/log/hearth-deb-test",
        );
        log.lines().map(str::to_owned).collect::<Vec<_>>()
    };

    // Install: the user, its data directory, the conffile the CLI reads by default; the
    // service started.
    let (first, second) = (first.display(), second.display());
    sandbox.ok("dpkg -i", &with_systemd(&format!("dpkg -i {first}")));
    assert_eq!(asked(&sandbox), ["deb-systemd-invoke start hearth.service"]);
    assert_eq!(
        sandbox.ok("status", "dpkg-query -W -f '${Status} ${Version}' hearth"),
        format!("install ok installed {version}-1")
    );
    assert!(sandbox
        .ok("user", "getent passwd hearth")
        .contains("/var/lib/hearth"));
    assert_eq!(
        sandbox
            .ok("data dir", "stat -c '%U %G %a' /var/lib/hearth")
            .trim(),
        "hearth hearth 700"
    );
    assert!(sandbox
        .ok("config check", "hearth config check")
        .contains("/etc/hearth/hearth.toml: ok"));
    assert!(sandbox
        .ok(
            "enabled",
            "readlink /etc/systemd/system/multi-user.target.wants/hearth.service"
        )
        .contains("hearth.service"));
    // No --config, no --data: the CLI uses the box's data directory.
    sandbox.ok(
        "user add",
        "echo bob-password-1 | runuser -u hearth -- hearth user add bob --password-stdin",
    );
    sandbox.ok("database", "test -f /var/lib/hearth/hearth.redb");
    // As root with no server running, the CLI refuses to leave root-owned files there.
    let as_root = sandbox.sh("echo pw-carol-1 | hearth user add carol --password-stdin");
    assert!(!as_root.status.success());
    assert!(
        text(&as_root.stderr).contains("runuser -u hearth"),
        "{}",
        text(&as_root.stderr)
    );

    // Upgrade over itself with a changed conffile: both kept, no question asked.
    sandbox.ok(
        "edit conffile",
        "sed -i 's/^name = .*/name = \"Our Box\"/' /etc/hearth/hearth.toml",
    );
    sandbox.ok("upgrade", &with_systemd(&format!("dpkg -i {second}")));
    // Not stopped before the new files are in; restarted after.
    assert_eq!(
        asked(&sandbox),
        ["deb-systemd-invoke restart hearth.service"]
    );
    assert_eq!(
        sandbox.ok("status", "dpkg-query -W -f '${Version}' hearth"),
        format!("{version}-2")
    );
    assert!(sandbox
        .ok("conffile kept", "cat /etc/hearth/hearth.toml")
        .contains("name = \"Our Box\""));
    let again =
        sandbox.sh("echo x-password-1 | runuser -u hearth -- hearth user add bob --password-stdin");
    assert!(
        text(&again.stderr).contains("taken"),
        "bob is still there after the upgrade: {}",
        text(&again.stderr)
    );

    // Remove keeps data and configuration; purge deletes both.
    sandbox.ok("remove", &with_systemd("dpkg --remove hearth"));
    assert_eq!(asked(&sandbox), ["deb-systemd-invoke stop hearth.service"]);
    sandbox.ok("binary gone", "test ! -e /usr/bin/hearth");
    sandbox.ok("data kept", "test -f /var/lib/hearth/hearth.redb");
    sandbox.ok("conffile kept", "test -f /etc/hearth/hearth.toml");
    sandbox.ok("purge", "dpkg --purge hearth");
    sandbox.ok("data gone", "test ! -e /var/lib/hearth");
    sandbox.ok("conffile gone", "test ! -e /etc/hearth");
    sandbox.ok(
        "not installed",
        "! dpkg-query -W -f '${Status}' hearth 2>/dev/null | grep -q installed",
    );
}
