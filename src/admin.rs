//! The local admin channel: a Unix socket in the data directory (mode 0600) through which
//! `hearth user add`, `hearth invite create` and `hearth backup` reach a running server,
//! since redb locks the database file. One JSON request line, one JSON answer line.
//! When no server runs, the CLI opens the database itself and calls the same [`execute`].

use crate::app::App;
use crate::model::Id;
use crate::service::guilds::NewInvite;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A command for the server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Create a local account. K_id was made and wrapped by the CLI.
    AddUser {
        /// Login name.
        username: String,
        /// Password.
        password: String,
        /// K_id public key.
        identity_key: String,
        /// K_id wrapped under the password.
        key_backup: String,
        /// Server administrator.
        admin: bool,
    },
    /// Create an invite to a guild, made in its owner's name.
    CreateInvite {
        /// Guild.
        guild: Id,
        /// Channel (default: the guild's first text channel).
        channel: Option<Id>,
        /// Uses allowed.
        max_uses: Option<u32>,
        /// Lifetime in seconds.
        max_age_secs: Option<u64>,
    },
    /// Pin a peer's key (fetched from its `/.well-known/hearth`).
    AddPeer {
        /// Its URL.
        url: String,
        /// The fingerprint the administrator expects, if known.
        fingerprint: Option<String>,
    },
    /// Forget a peer.
    RemovePeer {
        /// Its URL.
        url: String,
    },
    /// List peers.
    ListPeers,
    /// List the Hearth servers heard on the LAN (mDNS), with fingerprints and conflicts.
    ListDiscovered,
    /// Pin the key a discovered server announced, once its fingerprint is confirmed.
    AddDiscoveredPeer {
        /// Its origin, as listed by `ListDiscovered`.
        origin: String,
        /// Its key fingerprint, as its administrator reads it out.
        fingerprint: String,
    },
    /// List server-to-server calls waiting in the outbox.
    ListOutbox,
    /// The setup code while the box is unclaimed (made now if the box never ran).
    SetupCode,
    /// Write a consistent copy of the database.
    Backup {
        /// Destination file.
        path: PathBuf,
    },
    /// Write a backup archive (database, files, TLS, configuration).
    BackupArchive {
        /// Destination file.
        path: PathBuf,
    },
    /// Write the portable export (JSON lines).
    Export {
        /// Destination file.
        path: PathBuf,
    },
}

/// Runs a command against an open app.
pub async fn execute(app: &App, command: Command) -> Result<Value, String> {
    let s = &app.services;
    match command {
        Command::AddUser {
            username,
            password,
            identity_key,
            key_backup,
            admin,
        } => {
            let user = s
                .add_user(&username, &password, &identity_key, key_backup, admin)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({ "id": user.id, "username": user.username }))
        }
        Command::CreateInvite {
            guild,
            channel,
            max_uses,
            max_age_secs,
        } => {
            let invite = s
                .admin_create_invite(
                    guild,
                    channel,
                    NewInvite {
                        max_age_secs,
                        max_uses,
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            let url = crate::service::invites::invite_url(
                &s.origin,
                &invite.code,
                app.tls_fingerprint.get().map(String::as_str),
            );
            Ok(json!({ "code": invite.code, "url": url }))
        }
        Command::AddPeer { url, fingerprint } => {
            let peer = crate::federation::add_peer(&app.federation, &url, fingerprint.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            Ok(crate::federation::peer_view(&peer))
        }
        Command::RemovePeer { url } => {
            let removed = crate::federation::remove_peer(&app.federation, &url)
                .await
                .map_err(|e| e.to_string())?;
            if removed {
                Ok(json!({ "removed": url }))
            } else {
                Err(format!("{url} is not a peer"))
            }
        }
        Command::SetupCode => {
            let code = s.prepare_setup().await.map_err(|e| e.to_string())?;
            let info = s.box_info().map_err(|e| e.to_string())?;
            Ok(json!({
                "code": code,
                "claimed": info.claimed,
                "first_visitor_claims": s.config.setup.first_visitor_claims,
                "from_browser": s.config.setup.from_browser,
                "origin": s.origin,
            }))
        }
        Command::ListOutbox => {
            let pending =
                crate::service::outbox::pending(&app.services).map_err(|e| e.to_string())?;
            Ok(Value::from(
                pending
                    .iter()
                    .map(|item| {
                        json!({
                            "id": item.id.to_string(),
                            "target": item.target,
                            "call": item.call,
                            "attempts": item.attempts,
                            "next_attempt_ms": item.next_attempt_ms,
                            "last_error": item.last_error,
                        })
                    })
                    .collect::<Vec<_>>(),
            ))
        }
        Command::ListDiscovered => crate::federation::discovered::listing(
            &app.federation,
            &app.discovered,
            app.tls_fingerprint.get().map(String::as_str),
        )
        .map_err(|e| e.to_string()),
        Command::AddDiscoveredPeer {
            origin,
            fingerprint,
        } => {
            let (peer, tls) = crate::federation::discovered::add_discovered_peer(
                &app.federation,
                &app.discovered,
                &origin,
                &fingerprint,
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut view = crate::federation::peer_view(&peer);
            view["tls_fingerprint"] = Value::from(tls);
            Ok(view)
        }
        Command::ListPeers => {
            let peers =
                crate::federation::list_peers(&app.federation).map_err(|e| e.to_string())?;
            Ok(Value::from(
                peers
                    .iter()
                    .map(crate::federation::peer_view)
                    .collect::<Vec<_>>(),
            ))
        }
        Command::Backup { path } => {
            let live = crate::app::database_path(&s.config);
            let same = match (std::fs::canonicalize(&live), std::fs::canonicalize(&path)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if same {
                return Err(format!(
                    "{} is the live database; write the backup somewhere else",
                    path.display()
                ));
            }
            let store = s.store.clone();
            let target = path.clone();
            let rows = smol::unblock(move || store.backup(&target))
                .await
                .map_err(|e| format!("cannot write the backup to {}: {e}", path.display()))?;
            Ok(json!({ "rows": rows }))
        }
        Command::BackupArchive { path } => {
            let manifest = s
                .write_archive(path.clone(), app.tls_fingerprint.get().cloned())
                .await
                .map_err(|e| format!("cannot write the backup to {}: {e}", path.display()))?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            Ok(json!({
                "members": manifest.members.len(),
                "bytes": manifest.total_size(),
                "size": size,
                "schema_version": manifest.schema_version,
            }))
        }
        Command::Export { path } => {
            let store = s.store.clone();
            let data_dir = s.config.data_dir.clone();
            let target = path.clone();
            let summary = smol::unblock(move || {
                // It holds every secret of the box: owner only from the first byte.
                let file = {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&target)
                        .map_err(|e| e.to_string())?
                };
                let mut out = std::io::BufWriter::new(file);
                let summary = store
                    .export(&data_dir, &mut out)
                    .map_err(|e| e.to_string())?;
                out.into_inner()
                    .map_err(|e| e.to_string())?
                    .sync_all()
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(summary)
            })
            .await
            .map_err(|e| format!("cannot write the export to {}: {e}", path.display()))?;
            Ok(json!(summary))
        }
    }
}

/// A running admin listener; dropping it stops accepting.
pub struct AdminListener {
    _task: smol::Task<()>,
}

/// Starts listening on `path`.
pub fn serve(path: PathBuf, app: Arc<App>) -> std::io::Result<AdminListener> {
    if let Some(dir) = fallback_dir(&path) {
        use std::os::unix::fs::DirBuilderExt;
        // Made private in one step (no window with the umask's mode); if it is there
        // already, it must be this user's own and private.
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        check_private_dir(dir, &[unsafe { libc::geteuid() }])?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = smol::net::unix::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let task = smol::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let app = app.clone();
            smol::spawn(async move {
                let _ = handle(stream, &app).await;
            })
            .detach();
        }
    });
    Ok(AdminListener { _task: task })
}

async fn handle(stream: smol::net::unix::UnixStream, app: &App) -> std::io::Result<()> {
    use futures_lite::{AsyncBufReadExt, AsyncWriteExt};
    let mut reader = futures_lite::io::BufReader::new(stream.clone());
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let answer = match serde_json::from_str::<Command>(&line) {
        Ok(command) => match execute(app, command).await {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "error": e }),
        },
        Err(e) => json!({ "error": format!("bad admin command: {e}") }),
    };
    let mut writer = stream;
    writer.write_all(format!("{answer}\n").as_bytes()).await?;
    writer.flush().await
}

/// The directory of an admin socket that lives in the fallback location under the temp
/// dir (`TMP/hearth-UID/`, see [`crate::app::admin_socket_path`]), which others can
/// write beside; `None` for a socket in the data directory.
fn fallback_dir(socket: &std::path::Path) -> Option<&std::path::Path> {
    let dir = socket.parent()?;
    let is_fallback = dir.parent() == Some(std::env::temp_dir().as_path())
        && dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("hearth-"));
    is_fallback.then_some(dir)
}

/// Refuses a socket directory that another user could swap the socket in (and so read
/// what the administrator sends, passwords included): it must be a real directory (not a
/// link), owned by one of `owners`, with no access for group or others.
fn check_private_dir(dir: &std::path::Path, owners: &[u32]) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the admin socket directory {} {why}; remove it (or set a shorter data \
                 directory path, which keeps the socket inside it) and start again",
                dir.display()
            ),
        ))
    };
    if !meta.file_type().is_dir() {
        return refuse("is not a directory".into());
    }
    if !owners.contains(&meta.uid()) {
        return refuse(format!(
            "belongs to user {}, not to the server's user",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return refuse("must not be accessible to other users".into());
    }
    Ok(())
}

/// Sends a command to a running server. `Ok(None)` means no server is listening.
pub fn send(
    path: &std::path::Path,
    command: &Command,
) -> std::io::Result<Option<Result<Value, String>>> {
    use std::io::{BufRead, Write};
    if let Some(dir) = fallback_dir(path) {
        // Only a directory the server's user made (its uid is in the name), or root's,
        // is trusted with the command.
        let named: Option<u32> = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("hearth-"))
            .and_then(|uid| uid.parse().ok());
        match check_private_dir(dir, &[named.unwrap_or(0), 0]) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    let stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut writer = stream.try_clone()?;
    writer.write_all(
        format!(
            "{}\n",
            serde_json::to_string(command).map_err(std::io::Error::other)?
        )
        .as_bytes(),
    )?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    let value: Value = serde_json::from_str(&line).map_err(std::io::Error::other)?;
    Ok(Some(match (value.get("ok"), value.get("error")) {
        (Some(ok), _) => Ok(ok.clone()),
        (_, Some(err)) => Err(err.as_str().unwrap_or("error").to_string()),
        _ => Err("malformed answer from the server".into()),
    }))
}
