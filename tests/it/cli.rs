//! The `hearth` command line, run as the real binary: `user add` with and without a
//! running server, `invite create`, `backup` and `serve`'s flags over its config file.

use crate::common::*;
use hearth::client::{Client, ClientError};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

/// A temp dir with a light `hearth.toml` and a data dir.
struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    data: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let config = write_light_config(&root, "");
        Env {
            data: root.join("data"),
            root,
            config,
            _dir: dir,
        }
    }

    /// `hearth --config CONFIG ARGS --data DATA`.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all: Vec<std::ffi::OsString> = vec!["--config".into(), self.config.clone().into()];
        all.extend(args.iter().map(Into::into));
        all.push("--data".into());
        all.push(self.data.clone().into());
        run_hearth(&all, stdin)
    }

    fn serve(&self) -> HearthProcess {
        HearthProcess::serve(&self.config, &self.data)
    }

    /// `user add NAME --password-stdin`, which must succeed; returns the printed user id.
    fn add_user(&self, name: &str, password: &str) -> String {
        let out = self.run(
            &["user", "add", name, "--password-stdin"],
            Some(&format!("{password}\n")),
        );
        assert!(
            out.status.success(),
            "user add {name} failed: {}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        let prefix = format!("created user {name} (");
        let id = stdout
            .trim()
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected output of user add: {stdout:?}"));
        assert_eq!(id.len(), 43, "user id {id:?} is not a base64url key");
        id.to_string()
    }

    fn database(&self) -> Vec<u8> {
        std::fs::read(self.data.join("hearth.redb")).expect("read hearth.redb")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn b64u(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn me(client: &Client, server: &HearthProcess) -> Value {
    block_on(client.get(&server.url("/api/v1/users/@me")))
        .expect("GET @me")
        .ok()
        .expect("@me answered")
        .json()
        .expect("json")
}

/// Fails with a non-zero exit and a message on standard error containing `needle`.
fn assert_fails(out: &Output, needle: &str) {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(needle),
        "stderr does not mention {needle:?}: {stderr}"
    );
}

/// Logs in with the password grant, checks @me, unwraps K_id from the key backup and
/// checks it is the user's key; returns K_id's secret bytes.
fn login_and_recover(server: &HearthProcess, name: &str, password: &str, id: &str) -> [u8; 32] {
    let client = Client::new();
    block_on(client.login_password(&server.origin, name, password)).expect("password login");
    assert_eq!(client.user_id(&server.origin).as_deref(), Some(id));
    let profile = me(&client, server);
    assert_eq!(profile["id"], id);
    assert_eq!(profile["name"], name);
    // Whether made through the socket or offline, the user's home is the running server.
    assert_eq!(profile["homeserver"], server.origin.as_str());
    // The wrong password does not open the backup.
    let wrong = block_on(client.recover_identity(&server.origin, "not-the-password"));
    assert!(matches!(wrong, Err(ClientError::Key(_))), "{wrong:?}");
    assert!(client.identity().is_none());
    block_on(client.recover_identity(&server.origin, password)).expect("recover K_id");
    let key = client.identity().expect("identity key");
    assert_eq!(b64u(&key.verifying_key().to_bytes()), id);
    // K_id really is this user's identity: it certifies a new device that can sign in.
    let device = Client::new();
    device.set_identity(key.clone());
    block_on(device.login_certificate(&server.origin)).expect("device-certificate login");
    assert_eq!(me(&device, server)["id"], id);
    key.to_bytes()
}

/// The database holds the user's public key but not the secret one, in any form.
fn assert_secret_not_stored(env: &Env, id: &str, secret: &[u8; 32]) {
    let db = env.database();
    let public = hearth::model::UserId::parse(id).expect("user id").0;
    assert!(
        contains(&db, &public),
        "the public key is not in hearth.redb"
    );
    assert!(
        !contains(&db, secret),
        "the secret identity key is stored in the clear"
    );
    assert!(
        !contains(&db, b64u(secret).as_bytes()),
        "the secret identity key is stored base64url-encoded"
    );
}

#[test]
fn user_add_without_a_server_then_password_login() {
    let env = Env::new();
    let id = env.add_user("alice", "alice-password-1");
    assert!(!env.data.join("admin.sock").exists());
    let mut server = env.serve();
    let secret = login_and_recover(&server, "alice", "alice-password-1", &id);
    server.kill();
    assert_secret_not_stored(&env, &id, &secret);
}

#[test]
fn user_add_with_the_server_running_goes_through_the_admin_socket() {
    let env = Env::new();
    let mut server = env.serve();
    let socket = env.data.join("admin.sock");
    let mode = std::fs::metadata(&socket)
        .expect("admin.sock exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin.sock mode {mode:o}");
    // The server holds the database lock, so only the socket can have made this user;
    // and the running server knows the user at once.
    let id = env.add_user("carol", "carol-password-1");
    let secret = login_and_recover(&server, "carol", "carol-password-1", &id);

    let again = env.run(
        &["user", "add", "carol", "--password-stdin"],
        Some("another-password\n"),
    );
    assert_fails(&again, "username carol is taken");
    let upper = env.run(
        &["user", "add", "CAROL", "--password-stdin"],
        Some("another-password\n"),
    );
    assert_fails(&upper, "taken");
    let short = env.run(&["user", "add", "dan", "--password-stdin"], Some("short\n"));
    assert_fails(&short, "password must be");
    let no_flag = env.run(&["user", "add", "dan"], Some("dan-password-1\n"));
    assert_fails(&no_flag, "--password-stdin");
    let dan = Client::new();
    assert!(
        block_on(dan.login_password(&server.origin, "dan", "dan-password-1")).is_err(),
        "a failed user add created an account"
    );
    // The first account is untouched by the failed duplicates.
    let carol = Client::new();
    block_on(carol.login_password(&server.origin, "carol", "carol-password-1"))
        .expect("carol still logs in with her password");
    assert_eq!(me(&carol, &server)["id"], id.as_str());
    // `hearth peers`: the pinned peers (none) and what LAN discovery found (it is off in
    // tests).
    let peers = env.run(&["peers"], None);
    assert!(peers.status.success(), "{}", text(&peers.stderr));
    let listing = text(&peers.stdout);
    assert!(listing.contains("Pinned peers: none"), "{listing}");
    assert!(listing.contains("LAN discovery is off"), "{listing}");
    server.kill();
    assert_secret_not_stored(&env, &id, &secret);
}

#[test]
fn user_add_failures_without_a_server() {
    let env = Env::new();
    let id = env.add_user("dave", "dave-password-1");
    let again = env.run(
        &["user", "add", "dave", "--password-stdin"],
        Some("dave-password-2\n"),
    );
    assert_fails(&again, "username dave is taken");
    let no_flag = env.run(&["user", "add", "erin"], Some("erin-password-1\n"));
    assert_fails(&no_flag, "--password-stdin");
    let bad_name = env.run(
        &["user", "add", "no spaces", "--password-stdin"],
        Some("erin-password-1\n"),
    );
    assert_fails(&bad_name, "username must be");

    let server = env.serve();
    let erin = Client::new();
    assert!(block_on(erin.login_password(&server.origin, "erin", "erin-password-1")).is_err());
    let dave = Client::new();
    assert!(
        block_on(dave.login_password(&server.origin, "dave", "dave-password-2")).is_err(),
        "the duplicate changed dave's password"
    );
    block_on(dave.login_password(&server.origin, "dave", "dave-password-1")).expect("login");
    assert_eq!(me(&dave, &server)["id"], id.as_str());
}

#[test]
fn user_add_after_a_crash_ignores_the_stale_socket() {
    let env = Env::new();
    let mut server = env.serve();
    server.kill();
    assert!(
        env.data.join("admin.sock").exists(),
        "SIGKILL should leave the socket file behind"
    );
    let id = env.add_user("frank", "frank-password-1");
    let server = env.serve();
    let frank = Client::new();
    block_on(frank.login_password(&server.origin, "frank", "frank-password-1")).expect("login");
    assert_eq!(me(&frank, &server)["id"], id.as_str());
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let env = Env::new();
    let mut server = env.serve();
    let id = env.add_user("hana", "hana-password-1");
    // A signed-in client keeps an idle keep-alive connection open across the stop.
    let hana = Client::new();
    block_on(hana.login_password(&server.origin, "hana", "hana-password-1")).expect("login");
    assert_eq!(me(&hana, &server)["id"], id.as_str());
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !server.stderr().contains("hearth: stopped") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        server.stderr().contains("hearth: stopped"),
        "{}",
        server.stderr()
    );
    assert!(
        !env.data.join("admin.sock").exists(),
        "a clean stop leaves no admin socket"
    );
    let server = env.serve();
    let again = Client::new();
    block_on(again.login_password(&server.origin, "hana", "hana-password-1")).expect("login");
    assert_eq!(me(&again, &server)["id"], id.as_str());
}

fn preview(server: &HearthProcess, code: &str) -> hearth::client::Response {
    block_on(Client::new().send(
        &server.url(&format!("/api/v1/invites/{code}")),
        "GET",
        None,
        false,
    ))
    .expect("preview request")
}

/// The code of an invite URL printed by `invite create`, checking the URL's shape.
fn invite_code(out: &Output, origin: &str) -> String {
    assert!(
        out.status.success(),
        "invite create failed: {}",
        text(&out.stderr)
    );
    let url = text(&out.stdout).trim().to_string();
    let code = url
        .strip_prefix(&format!("{origin}/invite/"))
        .unwrap_or_else(|| panic!("{url:?} is not {origin}/invite/CODE"));
    assert!(
        !code.is_empty()
            && code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "odd invite code {code:?}"
    );
    code.to_string()
}

#[test]
fn invite_create_prints_a_link_that_previews_the_guild() {
    let env = Env::new();
    env.add_user("olivia", "olivia-password-1");
    let mut server = env.serve();
    let owner = Client::new();
    block_on(owner.login_password(&server.origin, "olivia", "olivia-password-1")).expect("login");
    let guild = block_on(owner.post(
        &server.url("/api/v1/guilds"),
        json!({ "name": "Reading Room", "description": "books" }),
    ))
    .expect("create guild")
    .ok()
    .expect("guild created")
    .json()
    .expect("json");
    let guild_id = guild["id"].as_str().expect("guild id").to_string();
    let channel_id = guild["channels"][0]["id"]
        .as_str()
        .expect("channel")
        .to_string();

    // Through the running server.
    let out = env.run(&["invite", "create", "--guild", &guild_id], None);
    let code = invite_code(&out, &server.origin);
    let answer = preview(&server, &code);
    assert_eq!(answer.status, 200, "{}", text(&answer.body));
    let shown = answer.json().expect("json");
    assert_eq!(shown["code"], code.as_str());
    assert_eq!(shown["guild_id"], guild_id.as_str());
    assert_eq!(shown["guild_name"], "Reading Room");
    assert_eq!(shown["channel_id"], channel_id.as_str());
    assert_eq!(shown["member_count"], 1);
    let week = hearth::system::now() + 7 * 24 * 3600;
    let expires = shown["expires_at"].as_u64().expect("a default lifetime");
    assert!(
        expires.abs_diff(week) < 120,
        "expires_at {expires}, not in 7 days"
    );
    assert!(preview(&server, "no-such-code").status == 404);

    // Limits pass through: one use, then the link is used up.
    let out = env.run(
        &[
            "invite",
            "create",
            "--guild",
            &guild_id,
            "--channel",
            &channel_id,
            "--max-uses",
            "1",
        ],
        None,
    );
    let single = invite_code(&out, &server.origin);
    assert_ne!(single, code);
    let out = env.run(
        &["invite", "create", "--guild", &guild_id, "--max-age", "0"],
        None,
    );
    let forever = invite_code(&out, &server.origin);
    assert_eq!(
        preview(&server, &forever).json().unwrap()["expires_at"],
        Value::Null
    );
    let guest = Client::new();
    block_on(guest.register(&server.origin, "guest", "guest-password-1")).expect("register");
    block_on(guest.post(&server.url(&format!("/api/v1/invites/{single}")), json!({})))
        .expect("join")
        .ok()
        .expect("joined with the one-use link");
    assert!(
        preview(&server, &single).status >= 400,
        "a used-up link still previews"
    );
    assert_eq!(preview(&server, &code).json().unwrap()["member_count"], 2);

    assert_fails(
        &env.run(&["invite", "create", "--guild", "nope"], None),
        "--guild",
    );
    assert_fails(
        &env.run(&["invite", "create", "--guild", "12345"], None),
        "unknown guild",
    );

    // Without a server: the CLI opens the data itself; the code works once it runs.
    server.kill();
    let out = env.run(&["invite", "create", "--guild", &guild_id], None);
    let offline = invite_code(&out, "http://127.0.0.1:8080");
    let server = env.serve();
    let shown = preview(&server, &offline).json().expect("json");
    assert_eq!(shown["guild_id"], guild_id.as_str(), "{shown}");
    assert_eq!(shown["guild_name"], "Reading Room");
}

#[test]
fn backup_without_a_server_opens_as_a_data_directory() {
    let env = Env::new();
    let id = env.add_user("gina", "gina-password-1");
    let file = env.root.join("copy.redb");
    let out = env.run(&["backup", file.to_str().expect("utf-8 path")], None);
    assert!(out.status.success(), "backup failed: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("backup written to"));
    let restored = env.root.join("restored");
    std::fs::create_dir(&restored).expect("mkdir");
    std::fs::rename(&file, restored.join("hearth.redb")).expect("move backup");
    let server = HearthProcess::serve(&env.config, &restored);
    let gina = Client::new();
    block_on(gina.login_password(&server.origin, "gina", "gina-password-1")).expect("login");
    assert_eq!(me(&gina, &server)["id"], id.as_str());
}

fn well_known(server: &HearthProcess) -> Value {
    block_on(Client::new().send(&server.url("/.well-known/hearth"), "GET", None, false))
        .expect("well-known")
        .json()
        .expect("json")
}

#[test]
fn serve_flags_override_the_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let from_config = dir.path().join("from-config");
    let from_flag = dir.path().join("from-flag");
    // Port 1 cannot be bound by an unprivileged user; a used --listen flag makes it moot.
    let config = write_light_config(
        dir.path(),
        &format!(
            "name = \"Configured Hearth\"\ndata_dir = {:?}\nlisten = \"127.0.0.1:1\"",
            from_config.to_str().expect("utf-8 path")
        ),
    );
    let cfg = config.to_str().expect("utf-8 path");
    let flag_dir = from_flag.to_str().expect("utf-8 path");
    let mut server = HearthProcess::spawn(&[
        "--config",
        cfg,
        "serve",
        "--data",
        flag_dir,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(server.addr.port(), 1);
    assert!(server.addr.ip().is_loopback());
    assert_eq!(well_known(&server)["name"], "Configured Hearth");
    assert_eq!(well_known(&server)["origin"], server.origin.as_str());
    assert!(server.stderr().contains(flag_dir), "{}", server.stderr());
    assert!(from_flag.join("hearth.redb").exists());
    assert!(!from_config.exists(), "the config's data_dir was used");
    server.kill();

    // Without flags the file decides.
    let config = write_light_config(
        dir.path(),
        &format!(
            "name = \"Configured Hearth\"\ndata_dir = {:?}\nlisten = \"127.0.0.1:0\"",
            from_config.to_str().expect("utf-8 path")
        ),
    );
    let server = HearthProcess::spawn(&["--config", config.to_str().unwrap(), "serve"]);
    assert_eq!(well_known(&server)["name"], "Configured Hearth");
    assert!(from_config.join("hearth.redb").exists());
    drop(server);

    // A broken config file is refused with a message naming it.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "no_such_setting = 1\n").expect("write");
    let out = run_hearth(
        &[
            "--config",
            bad.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_fails(&out, "bad.toml");
}

#[test]
fn a_long_data_directory_still_gets_an_admin_channel() {
    let mut env = Env::new();
    env.data = env.root.join("d".repeat(60)).join("e".repeat(60));
    let mut server = env.serve();
    assert!(
        !env.data.join("admin.sock").exists(),
        "the socket path would not fit sun_path"
    );
    let id = env.add_user("longpath", "longpath-password");
    let client = Client::new();
    block_on(client.login_password(&server.origin, "longpath", "longpath-password"))
        .expect("the user made through the fallback socket logs in");
    assert_eq!(me(&client, &server)["id"], id.as_str());
    server.kill();
}

#[test]
fn backup_refuses_to_overwrite_the_live_database() {
    let env = Env::new();
    let mut server = env.serve();
    let id = env.add_user("erin", "erin-password-1");
    let live = env.data.join("hearth.redb");
    let out = env.run(&["backup", live.to_str().expect("utf-8 path")], None);
    assert_fails(&out, "live database");
    let client = Client::new();
    block_on(client.login_password(&server.origin, "erin", "erin-password-1"))
        .expect("the data is intact");
    assert_eq!(me(&client, &server)["id"], id.as_str());
    server.kill();
}

/// `hearth ARGS` with `HEARTH_CONFIG` set and run in `cwd`, feeding `stdin`.
fn run_with_default_config(
    default_config: &std::path::Path,
    cwd: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = hearth_command(args)
        .env(hearth::config::CONFIG_ENV, default_config)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hearth");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("wait for hearth")
}

#[test]
fn without_config_the_default_file_decides_and_no_stray_data_directory_is_made() {
    let dir = tempfile::tempdir().expect("temp dir");
    let box_data = dir.path().join("var-lib-hearth");
    let cwd = dir.path().join("somewhere");
    std::fs::create_dir(&cwd).expect("mkdir");
    // The box's own file, as the package installs it: its data directory is the server's.
    let system_config = write_light_config(
        dir.path(),
        &format!("data_dir = {:?}", box_data.to_str().expect("utf-8 path")),
    );
    let server = HearthProcess::spawn_command({
        let mut command = hearth_command(&["serve", "--listen", "127.0.0.1:0"]);
        command
            .env(hearth::config::CONFIG_ENV, &system_config)
            .current_dir(&cwd);
        command
    });
    let out = run_with_default_config(
        &system_config,
        &cwd,
        &["user", "add", "bob", "--password-stdin"],
        Some("bob-password-1\n"),
    );
    assert!(out.status.success(), "user add: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("created user bob ("));
    assert!(!cwd.join("hearth-data").exists(), "a stray ./hearth-data");
    let bob = Client::new();
    block_on(bob.login_password(&server.origin, "bob", "bob-password-1"))
        .expect("the running server knows bob");
    drop(server);

    // No file at the default path and no --data: refused rather than a new ./hearth-data.
    let nowhere = dir.path().join("no-such.toml");
    let out = run_with_default_config(
        &nowhere,
        &cwd,
        &["user", "add", "carol", "--password-stdin"],
        Some("carol-password-1\n"),
    );
    assert_fails(&out, "no configuration at");
    assert_fails(&out, "--data");
    assert!(!cwd.join("hearth-data").exists(), "a stray ./hearth-data");
    // --data alone still works offline on the embedded defaults.
    let out = run_with_default_config(
        &nowhere,
        &cwd,
        &[
            "user",
            "add",
            "carol",
            "--password-stdin",
            "--data",
            box_data.to_str().expect("utf-8 path"),
        ],
        Some("carol-password-1\n"),
    );
    assert!(
        out.status.success(),
        "user add --data: {}",
        text(&out.stderr)
    );
}

#[test]
fn a_config_flag_naming_a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.toml");
    let out = run_hearth(
        &[
            "--config",
            missing.to_str().expect("utf-8 path"),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_fails(&out, "no configuration file at");
    assert_fails(&out, "missing.toml");
    assert!(!dir.path().join("hearth-data").exists());
}

#[test]
fn config_check_names_each_problem_and_sets_the_exit_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = write_light_config(dir.path(), "name = \"Good\"\nlisten = \"0.0.0.0:443\"");
    let good = good.to_str().expect("utf-8 path");
    let out = run_hearth(&["config", "check", good], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(": ok"), "{}", text(&out.stdout));
    // --config is what is checked when no FILE is given.
    let out = run_hearth(&["--config", good, "config", "check"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "name = \"x\"\n[tls]\nenable = true\n").expect("write");
    let out = run_hearth(&["config", "check", unknown.to_str().unwrap()], None);
    assert_fails(&out, "unknown.toml");
    assert_fails(&out, "enable");

    let wrong_type = dir.path().join("type.toml");
    std::fs::write(&wrong_type, "[voice]\nbitrate = \"fast\"\n").expect("write");
    assert_fails(
        &run_hearth(&["config", "check", wrong_type.to_str().unwrap()], None),
        "bitrate",
    );

    let bad_values = dir.path().join("values.toml");
    std::fs::write(
        &bad_values,
        "listen = \"443\"\npublic_url = \"hearth.local\"\n[auth]\naccess_token_secs = 3600\n",
    )
    .expect("write");
    let out = run_hearth(&["config", "check", bad_values.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    for needle in ["listen", "public_url", "access_token_secs"] {
        assert_fails(&out, needle);
    }
    // The server refuses the same file.
    let out = run_hearth(&["--config", bad_values.to_str().unwrap(), "serve"], None);
    assert_fails(&out, "access_token_secs");

    let missing = dir.path().join("missing.toml");
    assert_fails(
        &run_hearth(&["config", "check", missing.to_str().unwrap()], None),
        "no configuration file at",
    );
}

#[test]
fn a_socket_nobody_answers_on_is_named_when_the_database_is_busy() {
    let env = Env::new();
    let server = env.serve();
    // The server runs (its database locked) but its socket file answers no more.
    let socket = env.data.join("admin.sock");
    std::fs::remove_file(&socket).expect("remove the socket");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("a dead socket file"));
    let out = env.run(
        &["user", "add", "ida", "--password-stdin"],
        Some("ida-password-1\n"),
    );
    assert_fails(&out, "opening the data directory");
    assert_fails(&out, "is there but no server answered on it");
    drop(server);
}
