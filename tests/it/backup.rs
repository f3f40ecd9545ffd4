//! Backups that restore: `hearth backup --archive` while messages and files arrive,
//! `hearth restore` on a fresh data directory and a box started on it (the same users,
//! guilds, messages, files, keys and TLS certificate; a token issued before still works),
//! the restore's refusals, the administrators' backup API with its staged restore, the
//! portable export and import, and a server started on a database of schema 1.

use crate::common::*;
use hearth::client::Client;
use hearth::config::Config;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `hearth --config CONFIG ARGS --data DATA`.
fn hearth(config: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<std::ffi::OsString> = vec!["--config".into(), config.into()];
    all.extend(args.iter().map(Into::into));
    all.push("--data".into());
    all.push(data.into());
    run_hearth(&all, None)
}

fn succeeded(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn refused(out: &std::process::Output, what: &str, expected: &str) {
    assert!(!out.status.success(), "{what} was not refused");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(expected), "{what}: {stderr}");
}

/// The backup configuration of these tests: no scheduled backups unless asked.
fn config_in(data: PathBuf, tls: bool) -> Config {
    let mut config = test_config(data);
    if tls {
        config.tls = hearth::config::TlsConfig::default();
    }
    config.backup.every_hours = 0;
    config
}

async fn post_message(client: &Client, origin: &str, channel: &str, body: Value) -> Value {
    api_json(
        client,
        "POST",
        &format!("{origin}/api/v1/channels/{channel}/messages"),
        body,
    )
    .await
}

async fn upload(client: &Client, origin: &str, channel: &str, bytes: Vec<u8>) -> String {
    let answer = client
        .send_bytes(
            &format!("{origin}/api/v1/channels/{channel}/files?filename=f.bin"),
            "POST",
            Some("application/octet-stream"),
            bytes,
            true,
        )
        .await
        .expect("upload");
    assert_eq!(answer.status, 201, "{}", text(&answer.body));
    answer.json().unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn well_known(origin: &str) -> Value {
    Client::new()
        .send(&format!("{origin}/.well-known/hearth"), "GET", None, false)
        .await
        .expect("well-known")
        .json()
        .unwrap()
}

fn random_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut state = seed as u64 + 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[test]
fn a_backup_made_under_load_restores_the_same_box_on_a_fresh_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = write_light_config(dir.path(), "name = \"Backed up\"");
    let mut config = config_in(dir.path().join("data"), true);
    config.name = "Backed up".into();
    config.loaded_from = Some(config_file.clone());
    let mut server = TestServer::start_config(config.clone(), None);
    let origin = server.origin.clone();
    let addr = server.addr;
    let (alice, bob, guild, file_bytes, file_id) = block_on(async {
        let alice = user(&server, "alice").await;
        let bob = user(&server, "bob").await;
        let guild = guild_on(&alice, &origin, "Kept").await;
        join(&bob, &origin, &guild.code).await;
        let file_bytes = random_bytes(300_000, 1);
        let file_id = upload(&alice, &origin, &guild.channel, file_bytes.clone()).await;
        for i in 0..20 {
            post_message(
                &alice,
                &origin,
                &guild.channel,
                json!({ "content": format!("before {i}") }),
            )
            .await;
        }
        post_message(
            &alice,
            &origin,
            &guild.channel,
            json!({ "content": "with a file", "attachments": [file_id] }),
        )
        .await;
        (alice, bob, guild, file_bytes, file_id)
    });
    let known_before = block_on(well_known(&origin));
    let token_before = alice.access_token(&origin).expect("access token");
    let acked_before: Vec<Value> = block_on(channel_history(&alice, &origin, &guild.channel));

    // Bob posts and uploads while the backup runs.
    let loading = Arc::new(AtomicBool::new(true));
    let load = {
        let (bob, origin, channel, loading) = (
            bob.clone(),
            origin.clone(),
            guild.channel.clone(),
            loading.clone(),
        );
        std::thread::spawn(move || {
            block_on(async {
                let mut posted = 0u32;
                let mut uploaded = false;
                while loading.load(Ordering::SeqCst) || posted < 10 {
                    if posted == 3 && !uploaded {
                        let id = upload(&bob, &origin, &channel, random_bytes(200_000, 2)).await;
                        post_message(
                            &bob,
                            &origin,
                            &channel,
                            json!({ "content": "during", "attachments": [id] }),
                        )
                        .await;
                        uploaded = true;
                    }
                    post_message(
                        &bob,
                        &origin,
                        &channel,
                        json!({ "content": format!("during {posted}") }),
                    )
                    .await;
                    posted += 1;
                }
                posted
            })
        })
    };
    let archive = dir.path().join("box.tar.gz");
    let out = hearth(
        &config_file,
        &server.data,
        &["backup", "--archive", archive.to_str().unwrap()],
    );
    loading.store(false, Ordering::SeqCst);
    let printed = succeeded(&out, "backup --archive");
    assert!(printed.contains("backup archive written to"), "{printed}");
    assert!(load.join().unwrap() >= 10);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&archive).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the archive holds keys: owner only");
    server.stop();

    // A fresh box restored from it, where the old one was (its clients' origin).
    let fresh = dir.path().join("fresh");
    let out = hearth(
        &config_file,
        &fresh,
        &["restore", archive.to_str().unwrap()],
    );
    let printed = succeeded(&out, "restore");
    assert!(printed.contains("\"Backed up\""), "{printed}");
    assert_eq!(
        std::fs::read(fresh.join("config-from-backup.toml")).unwrap(),
        std::fs::read(&config_file).unwrap()
    );
    let restored = TestServer::start_at(&addr.to_string(), config_in(fresh.clone(), true), None);
    assert_eq!(restored.origin, origin);
    block_on(async {
        let known = well_known(&origin).await;
        assert_eq!(known["server_key"], known_before["server_key"]);
        assert_eq!(known["vapid_public_key"], known_before["vapid_public_key"]);
        assert_eq!(known["tls_fingerprint"], known_before["tls_fingerprint"]);
        // The same client (its TLS pin and its access token from before the backup).
        let me = api_json(
            &alice,
            "GET",
            &format!("{origin}/api/v1/users/@me"),
            json!({}),
        )
        .await;
        assert_eq!(me["username"], "alice");
        assert_eq!(
            alice.access_token(&origin).as_deref(),
            Some(token_before.as_str()),
            "the token issued before the backup was not accepted"
        );
        let guilds = api_json(
            &alice,
            "GET",
            &format!("{origin}/api/v1/users/@me/guilds"),
            json!({}),
        )
        .await;
        assert!(
            guilds.to_string().contains(&guild.id),
            "guild missing: {guilds}"
        );
        let history = channel_history(&bob, &origin, &guild.channel).await;
        for message in &acked_before {
            assert!(
                history
                    .iter()
                    .any(|m| m["id"] == message["id"] && m["content"] == message["content"]),
                "message {} lost",
                message["id"]
            );
        }
        // Whatever arrived during the backup is consistent: every file a message refers
        // to is there, with its bytes.
        for message in &history {
            for attachment in message["attachments"].as_array().into_iter().flatten() {
                let id = attachment["file_id"].as_str().unwrap();
                let answer = bob
                    .get(&format!(
                        "{origin}/api/v1/channels/{}/files/{id}",
                        guild.channel
                    ))
                    .await
                    .unwrap();
                assert_eq!(
                    answer.status, 200,
                    "file {id} of a restored message is missing"
                );
                assert_eq!(hex(&Sha256::digest(&answer.body)), id);
            }
        }
        let answer = alice
            .get(&format!(
                "{origin}/api/v1/channels/{}/files/{file_id}",
                guild.channel
            ))
            .await
            .unwrap();
        assert!(answer.body == file_bytes, "the file's bytes differ");
    });
}

/// A small box's archive and its config file, for the refusal tests.
fn small_archive(dir: &Path) -> (PathBuf, PathBuf) {
    let config_file = write_light_config(dir, "");
    let server = TestServer::start_config(config_in(dir.join("data"), false), None);
    block_on(async {
        let alice = user(&server, "alice").await;
        guild_on(&alice, &server.origin, "Small").await;
    });
    let archive = dir.join("small.tar.gz");
    let out = hearth(
        &config_file,
        &server.data,
        &["backup", "--archive", archive.to_str().unwrap()],
    );
    succeeded(&out, "backup --archive");
    (archive, config_file)
}

/// The archive's members, in order.
fn members(archive: &Path) -> Vec<(String, Vec<u8>)> {
    let gzip = flate2::read::GzDecoder::new(std::fs::File::open(archive).unwrap());
    let mut tar = tar::Archive::new(gzip);
    tar.entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Writes an archive of `members`.
fn pack(path: &Path, members: &[(String, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        // Raw name bytes: the tar crate refuses to write a `..` a hostile archive has.
        let raw = &mut header.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        tar.append(&header, &bytes[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

#[test]
fn restore_refuses_a_directory_in_use_or_holding_data_and_a_damaged_or_newer_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, config_file) = small_archive(dir.path());
    let archive_arg = archive.to_str().unwrap();
    let manifest: Value = serde_json::from_slice(&members(&archive)[0].1).unwrap();
    assert_eq!(manifest["format"], "hearth-backup");
    assert_eq!(manifest["schema_version"], hearth::storage::SCHEMA_VERSION);
    assert!(manifest["key_fingerprint"].as_str().unwrap().len() > 20);
    let names: Vec<String> = members(&archive).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names[..2],
        ["manifest.json".to_string(), "hearth.redb".to_string()]
    );

    // In use: a running server's data directory (its admin socket answers)...
    let running = TestServer::start_config(config_in(dir.path().join("running"), false), None);
    let out = hearth(
        &config_file,
        &running.data,
        &["restore", archive_arg, "--force"],
    );
    refused(&out, "restore into a running server's data", "running");
    drop(running);
    // ...or a database another process holds open (its lock).
    let locked = dir.path().join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    let store = hearth::storage::Store::open(
        &locked.join("hearth.redb"),
        1 << 20,
        16,
        hearth::storage::Retention {
            max_events: 10,
            max_age_secs: 10,
        },
    )
    .unwrap();
    let error = hearth::storage::archive::restore(&archive, &locked, true).unwrap_err();
    assert!(error.to_string().contains("in use"), "{error}");
    drop(store);

    // Not empty, without --force; with it, the data is replaced.
    let full = dir.path().join("full");
    std::fs::create_dir_all(full.join("files")).unwrap();
    std::fs::write(full.join("hearth.redb"), b"old").unwrap();
    let out = hearth(&config_file, &full, &["restore", archive_arg]);
    refused(&out, "restore into a directory with data", "--force");
    assert_eq!(std::fs::read(full.join("hearth.redb")).unwrap(), b"old");
    let out = hearth(&config_file, &full, &["restore", archive_arg, "--force"]);
    succeeded(&out, "restore --force");
    assert_ne!(std::fs::read(full.join("hearth.redb")).unwrap(), b"old");

    // A damaged member: nothing is written.
    let mut damaged = members(&archive);
    let last = damaged[1].1.len() - 1;
    damaged[1].1[last] ^= 0xff;
    let bad = dir.path().join("damaged.tar.gz");
    pack(&bad, &damaged);
    let target = dir.path().join("target");
    let out = hearth(&config_file, &target, &["restore", bad.to_str().unwrap()]);
    refused(&out, "a damaged archive", "does not match its checksum");
    assert!(!target.join("hearth.redb").exists());

    // A member the manifest does not list (and that would land outside the directory).
    let mut smuggled = members(&archive);
    smuggled.push(("../evil".into(), b"x".to_vec()));
    let bad = dir.path().join("smuggled.tar.gz");
    pack(&bad, &smuggled);
    let out = hearth(&config_file, &target, &["restore", bad.to_str().unwrap()]);
    refused(
        &out,
        "an archive with an extra member",
        "not a valid Hearth backup",
    );
    assert!(!dir.path().join("evil").exists());

    // A newer schema than this build.
    let mut newer = members(&archive);
    let mut manifest: Value = serde_json::from_slice(&newer[0].1).unwrap();
    manifest["schema_version"] = json!(hearth::storage::SCHEMA_VERSION + 1);
    newer[0].1 = serde_json::to_vec(&manifest).unwrap();
    let bad = dir.path().join("newer.tar.gz");
    pack(&bad, &newer);
    let out = hearth(&config_file, &target, &["restore", bad.to_str().unwrap()]);
    refused(&out, "an archive of a newer schema", "newer Hearth");
    assert!(!target.join("hearth.redb").exists());
}

/// An administrator (made with the CLI through the admin socket) signed in.
fn admin(server: &TestServer, config_file: &Path) -> Client {
    let mut command = hearth_command(&[
        "--config".as_ref(),
        config_file.as_os_str(),
        "user".as_ref(),
        "add".as_ref(),
        "root".as_ref(),
        "--admin".as_ref(),
        "--password-stdin".as_ref(),
        "--data".as_ref(),
        server.data.as_os_str(),
    ]);
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"password-of-root\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    succeeded(&out, "user add --admin");
    let client = Client::new();
    block_on(client.login_password(&server.origin, "root", "password-of-root")).unwrap();
    client
}

#[test]
fn administrators_list_make_download_and_stage_backups_and_others_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = write_light_config(dir.path(), "");
    let mut config = config_in(dir.path().join("data"), false);
    config.backup.keep = 2;
    let mut server = TestServer::start_config(config.clone(), None);
    let origin = server.origin.clone();
    let root = admin(&server, &config_file);
    let (alice, guild) = block_on(async {
        let alice = user(&server, "alice").await;
        let guild = guild_on(&alice, &origin, "Before").await;
        (alice, guild)
    });
    let url = |path: &str| format!("{origin}/api/v1/admin/{path}");
    let made = block_on(async {
        // Not for other users.
        for (method, path) in [
            ("GET", "backups"),
            ("POST", "backups"),
            ("GET", "backups/hearth-20260101-000000.tar.gz"),
            ("GET", "restore"),
            ("POST", "restore"),
            ("DELETE", "restore"),
        ] {
            let answer = alice
                .send_bytes(&url(path), method, None, Vec::new(), true)
                .await
                .unwrap();
            assert_eq!(
                answer.status,
                403,
                "{method} {path}: {}",
                text(&answer.body)
            );
            assert_eq!(answer.json().unwrap()["error"], "forbidden");
        }
        let listed = api_json(&root, "GET", &url("backups"), json!({})).await;
        assert_eq!(listed, json!([]));
        let made = root.post(&url("backups"), json!({})).await.unwrap();
        assert_eq!(made.status, 201, "{}", text(&made.body));
        made.json().unwrap()
    });
    let name = made["name"].as_str().unwrap().to_string();
    let on_disk = server.data.join("backups").join(&name);
    assert_eq!(made["size"], std::fs::metadata(&on_disk).unwrap().len());
    let archive = block_on(async {
        let listed = api_json(&root, "GET", &url("backups"), json!({})).await;
        assert_eq!(listed[0]["name"], name.as_str());
        let download = root.get(&url(&format!("backups/{name}"))).await.unwrap();
        assert_eq!(download.status, 200);
        assert_eq!(download.header("content-type"), Some("application/gzip"));
        assert!(download.body == std::fs::read(&on_disk).unwrap());
        // Only names of kept backups, never a path.
        for bad in [
            "..%2Fhearth.redb",
            "..%2F..%2Fhearth.redb",
            "%2E%2E",
            "hearth.redb",
            "hearth-20260101-000000.tar.gz",
        ] {
            let answer = root.get(&url(&format!("backups/{bad}"))).await.unwrap();
            assert_eq!(answer.status, 404, "{bad}: {}", text(&answer.body));
        }
        download.body
    });
    // Rotation: two more, a second apart; the oldest goes.
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let answer = block_on(root.post(&url("backups"), json!({}))).unwrap();
        assert_eq!(answer.status, 201);
    }
    let listed = block_on(api_json(&root, "GET", &url("backups"), json!({})));
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(!on_disk.exists());

    // Staging a restore: refused garbage, staged, cancelled, staged again.
    block_on(async {
        let garbage = root
            .send_bytes(
                &url("restore"),
                "POST",
                Some("application/gzip"),
                b"not a backup".to_vec(),
                true,
            )
            .await
            .unwrap();
        assert_eq!(garbage.status, 400, "{}", text(&garbage.body));
        assert_eq!(garbage.json().unwrap()["error"], "invalid_backup");
        let none = root.get(&url("restore")).await.unwrap();
        assert_eq!(none.status, 404);
        let staged = root
            .send_bytes(
                &url("restore"),
                "POST",
                Some("application/gzip"),
                archive.clone(),
                true,
            )
            .await
            .unwrap();
        assert_eq!(staged.status, 202, "{}", text(&staged.body));
        let shown = api_json(&root, "GET", &url("restore"), json!({})).await;
        assert_eq!(shown["restore"]["box_name"], "Hearth");
        let cancelled = root.delete(&url("restore")).await.unwrap();
        assert_eq!(cancelled.status, 204);
        assert_eq!(root.get(&url("restore")).await.unwrap().status, 404);
        assert_eq!(root.delete(&url("restore")).await.unwrap().status, 404);
        let staged = root
            .send_bytes(
                &url("restore"),
                "POST",
                Some("application/gzip"),
                archive,
                true,
            )
            .await
            .unwrap();
        assert_eq!(staged.status, 202);
        // A guild made after the backup disappears with the restore.
        guild_on(&alice, &origin, "After").await;
    });
    let addr = server.addr;
    server.stop();
    let server = TestServer::start_at(&addr.to_string(), config, None);
    block_on(async {
        let guilds = api_json(
            &alice,
            "GET",
            &format!("{origin}/api/v1/users/@me/guilds"),
            json!({}),
        )
        .await;
        let text = guilds.to_string();
        assert!(
            text.contains(&guild.id) && !text.contains("After"),
            "{text}"
        );
        let gone = root.get(&url("restore")).await.unwrap();
        assert_eq!(
            gone.status, 404,
            "the staged restore was applied and removed"
        );
    });
    drop(server);
}

#[test]
fn a_scheduled_backup_is_made_when_the_newest_is_due_and_old_ones_are_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path().join("data"), false);
    config.backup.every_hours = 1;
    config.backup.keep = 1;
    config.backup.dir = Some(dir.path().join("kept"));
    // A backup two hours old: the next one is due at once.
    std::fs::create_dir_all(dir.path().join("kept")).unwrap();
    let old = dir.path().join("kept/hearth-20000101-000000.tar.gz");
    let file = std::fs::File::create(&old).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    drop(file);
    // Not a backup's name: never listed or rotated.
    std::fs::write(dir.path().join("kept/notes.txt"), b"mine").unwrap();
    let _server = TestServer::start_config(config, None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let kept = loop {
        let names: Vec<String> = std::fs::read_dir(dir.path().join("kept"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("hearth-"))
            .collect();
        if !old.exists() && names.len() == 1 {
            break names;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup: {names:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(kept[0].ends_with(".tar.gz") && kept[0] != "hearth-20000101-000000.tar.gz");
    assert!(dir.path().join("kept/notes.txt").exists());
    let verified =
        hearth::storage::archive::verify(&dir.path().join("kept").join(&kept[0])).unwrap();
    assert_eq!(verified.box_name, "Hearth");
}

#[test]
fn an_administrators_restore_upload_may_take_longer_than_the_request_deadline() {
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let config_file = write_light_config(dir.path(), "");
    let mut config = config_in(dir.path().join("data"), false);
    config.throttle.request_secs = 1;
    let server = TestServer::start_config(config, None);
    let root = admin(&server, &config_file);
    let made: Value = block_on(api_json(
        &root,
        "POST",
        &server.url("/api/v1/admin/backups"),
        json!({}),
    ));
    let name = made["name"].as_str().unwrap();
    let archive = std::fs::read(server.data.join("backups").join(name)).unwrap();
    let url = server.url("/api/v1/admin/restore");
    block_on(root.fetch_nonce(&server.origin)).unwrap();
    let token = root.access_token(&server.origin).unwrap();
    let proof = root.proof("POST", &url, Some(&token)).unwrap();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "POST /api/v1/admin/restore HTTP/1.1\r\nHost: {}\r\nAuthorization: DPoP {token}\r\n\
         DPoP: {proof}\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        server.addr,
        archive.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let half = archive.len() / 2;
    stream.write_all(&archive[..half]).unwrap();
    // Longer than `request_secs` before the rest of the body.
    std::thread::sleep(std::time::Duration::from_millis(1600));
    stream.write_all(&archive[half..]).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

/// Every row of an export, by table and key (the header, with its time, left out).
fn export_rows(path: &Path) -> std::collections::BTreeMap<String, Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|row| row.get("table").is_some() || row.get("file").is_some())
        .map(|row| {
            let key = format!("{}|{}|{}", row["table"], row["key"], row["file"]);
            (key, row)
        })
        .collect()
}

#[test]
fn an_export_imported_into_a_fresh_directory_starts_the_same_box() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = write_light_config(dir.path(), "");
    let config = config_in(dir.path().join("data"), false);
    let mut server = TestServer::start_config(config.clone(), None);
    let origin = server.origin.clone();
    let addr = server.addr;
    let bytes = random_bytes(50_000, 3);
    let (alice, guild, file_id) = block_on(async {
        let alice = user(&server, "alice").await;
        let guild = guild_on(&alice, &origin, "Portable").await;
        let file_id = upload(&alice, &origin, &guild.channel, bytes.clone()).await;
        post_message(
            &alice,
            &origin,
            &guild.channel,
            json!({ "content": "ünïcode ✓", "attachments": [file_id] }),
        )
        .await;
        (alice, guild, file_id)
    });
    let token = alice.access_token(&origin).unwrap();
    let export = dir.path().join("box.jsonl");
    let out = hearth(
        &config_file,
        &server.data,
        &["export", "--out", export.to_str().unwrap()],
    );
    succeeded(&out, "export");
    server.stop();

    let fresh = dir.path().join("fresh");
    let out = hearth(&config_file, &fresh, &["import", export.to_str().unwrap()]);
    succeeded(&out, "import");
    // Not twice into the same directory.
    let out = hearth(&config_file, &fresh, &["import", export.to_str().unwrap()]);
    refused(&out, "import into a directory with data", "not empty");
    // A truncated export is refused.
    let text = std::fs::read_to_string(&export).unwrap();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, text.lines().take(5).collect::<Vec<_>>().join("\n")).unwrap();
    let out = hearth(
        &config_file,
        &dir.path().join("cut"),
        &["import", cut.to_str().unwrap()],
    );
    refused(&out, "a truncated export", "cut short");

    let restored = TestServer::start_at(&addr.to_string(), config_in(fresh.clone(), false), None);
    block_on(async {
        let me = api_json(
            &alice,
            "GET",
            &format!("{origin}/api/v1/users/@me"),
            json!({}),
        )
        .await;
        assert_eq!(me["username"], "alice");
        assert_eq!(alice.access_token(&origin).as_deref(), Some(token.as_str()));
        let history = channel_history(&alice, &origin, &guild.channel).await;
        assert_eq!(history[0]["content"], "ünïcode ✓");
        let answer = alice
            .get(&format!(
                "{origin}/api/v1/channels/{}/files/{file_id}",
                guild.channel
            ))
            .await
            .unwrap();
        assert!(answer.body == bytes);
    });
    // The imported box exports the same rows and files.
    let again = dir.path().join("again.jsonl");
    let out = hearth(
        &config_file,
        &fresh,
        &["export", "--out", again.to_str().unwrap()],
    );
    succeeded(&out, "export of the imported box");
    drop(restored);
    let (before, after) = (export_rows(&export), export_rows(&again));
    let changed: Vec<&String> = before
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        changed.is_empty(),
        "rows differ after export → import: {changed:?}"
    );
    assert_eq!(before.len(), after.len());
}

#[test]
fn a_server_starts_on_a_database_of_schema_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-1.redb.gz");
    let mut gzip = flate2::read::GzDecoder::new(std::fs::File::open(fixture).unwrap());
    let mut out = std::fs::File::create(data.join("hearth.redb")).unwrap();
    std::io::copy(&mut gzip, &mut out).unwrap();
    drop(out);
    let server = TestServer::start_config(config_in(data, false), None);
    block_on(async {
        let alice = user(&server, "alice").await;
        guild_on(&alice, &server.origin, "On an old file").await;
    });
}

/// Backup and restore time and archive size for 100,000 messages and 100 MB of files
/// (numbers for docs/measurements.md). By hand:
/// `cargo test --test it backup::measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_backup_and_restore_of_100000_messages_and_100_mb_of_files() {
    use hearth::model::{Id, Message, UserId};
    use hearth::storage::tables::CHANNEL_MESSAGE;
    let dir = tempfile::tempdir().unwrap();
    let config_file = write_light_config(dir.path(), "");
    let config = config_in(dir.path().join("data"), false);
    let (data, guild, channel, author) = {
        let server = TestServer::start_config(config.clone(), None);
        let (guild, author) = block_on(async {
            let alice = user(&server, "alice").await;
            let guild = guild_on(&alice, &server.origin, "Big").await;
            (guild, alice.user_id(&server.origin).unwrap())
        });
        (server.data.clone(), guild.id, guild.channel, author)
    };
    let guild = Id::parse(&guild).unwrap();
    let channel = Id::parse(&channel).unwrap();
    let author: UserId = serde_json::from_value(json!(author)).unwrap();
    let store = hearth::storage::Store::open(
        &data.join("hearth.redb"),
        16 << 20,
        1024,
        hearth::storage::Retention {
            max_events: 10,
            max_age_secs: 10,
        },
    )
    .unwrap();
    let base = 1u64 << 40;
    for batch in 0..100u64 {
        store
            .write_blocking(move |tx| {
                for i in 0..1000u64 {
                    let n = batch * 1000 + i;
                    let message = Message {
                        id: Id(base + n),
                        channel_id: channel,
                        guild_id: guild,
                        author_id: author,
                        content: format!("message {n}: a line of chat of an ordinary length"),
                        created_at: 1_700_000_000_000 + n,
                        edited_at: None,
                        reply_to: None,
                        mentions: vec![],
                        mention_roles: vec![],
                        mention_everyone: false,
                        attachments: vec![],
                        pinned: false,
                        seq: n + 1,
                    };
                    tx.put(CHANNEL_MESSAGE, (channel, Id(base + n)), &message)?;
                }
                Ok::<_, hearth::storage::StoreError>(())
            })
            .unwrap();
    }
    drop(store);
    // 100 MB of files that do not compress (as photos do not), 4 MB each.
    for i in 0..25u8 {
        let bytes = random_bytes(4_000_000, i);
        let id = hex(&Sha256::digest(&bytes));
        let path = data.join("files").join(&id[..2]).join(&id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let db_size = std::fs::metadata(data.join("hearth.redb")).unwrap().len();
    let archive = dir.path().join("big.tar.gz");
    let export = dir.path().join("big.jsonl");
    // Runs one command to success and answers how long it took, in seconds.
    let timed = |data: &std::path::Path, args: &[&str]| {
        let started = std::time::Instant::now();
        succeeded(&hearth(&config_file, data, args), args[0]);
        started.elapsed().as_secs_f64()
    };
    let backup_secs = timed(&data, &["backup", "--archive", archive.to_str().unwrap()]);
    let size = std::fs::metadata(&archive).unwrap().len();
    let restore_secs = timed(
        &dir.path().join("restored"),
        &["restore", archive.to_str().unwrap()],
    );
    let export_secs = timed(&data, &["export", "--out", export.to_str().unwrap()]);
    let import_secs = timed(
        &dir.path().join("imported"),
        &["import", export.to_str().unwrap()],
    );
    println!(
        "database {:.1} MB + files 100.0 MB: backup {backup_secs:.1} s, archive {:.1} MB, \
         restore {restore_secs:.1} s; export {export_secs:.1} s ({:.1} MB), import \
         {import_secs:.1} s",
        db_size as f64 / 1e6,
        size as f64 / 1e6,
        std::fs::metadata(&export).unwrap().len() as f64 / 1e6,
    );
}
