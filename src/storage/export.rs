//! The portable export: the whole box as JSON lines, readable by any later Hearth
//! whatever becomes of redb's file format or of bincode's encoding.
//!
//! ```text
//! {"format":"hearth-export","version":1,"schema_version":1,"hearth_version":"…","created_at":…}
//! {"table":"user","key":"<user id>","value":{…the user as JSON…}}   one line per row
//! {"file":"files/ab/abcd…","data":"<base64>"}                      one line per file
//! {"file":"tls/cert.pem","data":"<base64>"}                         the TLS certificate and key
//! {"end":{"rows":…,"files":…}}
//! ```
//!
//! Keys and values are decoded with their table's types ([`portable_tables`]) and written
//! with serde's JSON forms (ids as text, user ids as base64url); an import encodes them
//! again with this build's codec, so the values come out at the current version. The
//! server key and the Web Push key are rows of `meta`. Rows come from one read snapshot
//! and the files are listed after it (as for archives: see [`super::archive`]). The
//! `end` line makes a truncated export an error rather than a smaller box.

use super::archive::{has_data, stored_files, ArchiveError};
use super::codec::{decode, encode, Stored};
use super::keys::*;
use super::migrations::SCHEMA_VERSION;
use super::tables::*;
use super::{Store, StoreError};
use base64::Engine;
use redb::ReadableDatabase;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};
use std::path::Path;

/// What the first line says in `format`.
pub const FORMAT: &str = "hearth-export";
/// The export layout this build writes; a newer one is refused.
pub const FORMAT_VERSION: u64 = 1;
/// The longest line an import reads (a file of the largest upload size, in base64, fits
/// many times over).
const MAX_LINE_BYTES: u64 = 512 * 1024 * 1024;

/// Errors exporting or importing.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The data directory check failed (in use, not empty).
    #[error("{0}")]
    Target(#[from] ArchiveError),
    /// The export is not one this build can import.
    #[error("line {line}: {message}")]
    Invalid {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// A key shape an export can write as JSON and read back.
pub trait PortableKey: KeyCodec<Owned: Serialize + DeserializeOwned> {
    /// The bytes of a key read back from JSON.
    fn bytes_of(key: &Self::Owned) -> Vec<u8>;
}

macro_rules! portable_key {
    ($($codec:ty => |$key:ident| $borrowed:expr;)*) => {
        $(impl PortableKey for $codec {
            fn bytes_of($key: &Self::Owned) -> Vec<u8> {
                AsRef::<[u8]>::as_ref(&<$codec>::encode($borrowed)).to_vec()
            }
        })*
    };
}

portable_key! {
    Raw => |k| k.as_slice();
    IdKey => |k| *k;
    IdPair => |k| *k;
    IdUser => |k| *k;
    UserKey => |k| *k;
    UserThenId => |k| *k;
    Seq => |k| *k;
    Text => |k| k.as_str();
    IdText => |k| (k.0, k.1.as_str());
    UserText => |k| (k.0, k.1.as_str());
    OriginUser => |k| (k.0.as_str(), k.1);
    OriginSeq => |k| (k.0.as_str(), k.1);
    UserOriginSeq => |k| (k.0, k.1.as_str(), k.2);
    UserOriginText => |k| (k.0, k.1.as_str(), k.2.as_str());
    Upload => |k| (k.0, k.1.as_str(), k.2);
    ReactionKey => |k| (k.0, k.1.as_str(), k.2);
    IdUserId => |k| *k;
}

type ToJson = fn(&[u8], &[u8]) -> Result<(Value, Value), String>;
type FromJson = fn(Value, Value) -> Result<(Vec<u8>, Vec<u8>), String>;

/// One table as the export knows it: its name and the typed conversions of its rows.
pub struct PortableTable {
    /// The table's name.
    pub name: &'static str,
    to_json: ToJson,
    from_json: FromJson,
}

fn row_to_json<V: Stored, K: PortableKey>(
    key: &[u8],
    value: &[u8],
) -> Result<(Value, Value), String> {
    let key = K::decode(key).ok_or("its key does not have the table's shape")?;
    let value: V = decode(value).map_err(|e| e.to_string())?;
    Ok((
        serde_json::to_value(key).map_err(|e| e.to_string())?,
        serde_json::to_value(value).map_err(|e| e.to_string())?,
    ))
}

fn row_from_json<V: Stored, K: PortableKey>(
    key: Value,
    value: Value,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let key: K::Owned = serde_json::from_value(key).map_err(|e| format!("key: {e}"))?;
    let value: V = serde_json::from_value(value).map_err(|e| format!("value: {e}"))?;
    Ok((K::bytes_of(&key), encode(&value)))
}

fn portable<V: Stored, K: PortableKey>(table: Table<V, K>) -> PortableTable {
    PortableTable {
        name: table.name,
        to_json: row_to_json::<V, K>,
        from_json: row_from_json::<V, K>,
    }
}

/// Every table with its types. A table in [`ALL_TABLES`] missing here fails the tests
/// (`every_table_is_portable`): add it with its constant.
pub fn portable_tables() -> Vec<PortableTable> {
    vec![
        portable(META),
        portable(USER),
        portable(USERNAME_USER),
        portable(USER_DEVICE),
        portable(USER_DEVICE_REMOVED),
        portable(REFRESH_TOKEN),
        portable(GUILD),
        portable(CHANNEL),
        portable(GUILD_CHANNEL),
        portable(GUILD_ROLE),
        portable(GUILD_MEMBER),
        portable(GUILD_MEMBER_SINCE),
        portable(USER_GUILD),
        portable(CHANNEL_MESSAGE),
        portable(MESSAGE_REACTION),
        portable(CHANNEL_PIN),
        portable(INVITE),
        portable(GUILD_INVITE),
        portable(GUILD_BAN),
        portable(FILE),
        portable(CHANNEL_FILE),
        portable(CHANNEL_UPLOAD),
        portable(CHANNEL_READ_STATE),
        portable(CHANNEL_USER_MENTION),
        portable(CHANNEL_BROAD_MENTION),
        portable(EVENT_LOG),
        portable(PEER),
        portable(OUTBOX),
        portable(INBOX),
        portable(PUSH_DELEGATION),
        portable(BAN_NOTIFICATION),
        portable(PUSH_GRANT),
        portable(PUSH_REVOKED),
        portable(USER_MIGRATION),
        portable(USER_MOVED),
        portable(USER_TOMBSTONE),
        portable(DIRECTORY),
        portable(DIRECTORY_BY_HOME),
        portable(DIRECTORY_PROVEN),
        portable(SHADOW_SYNC),
        portable(USER_PEER),
        portable(USER_NOTIFY_BOX),
        portable(USER_GUILD_NOTIFY),
        portable(USER_CHANNEL_NOTIFY),
        portable(SCOPE_NOTIFY_ALL),
        portable(DM),
        portable(USER_DM),
        portable(USER_REMOTE_DM),
        portable(USER_DM_POLICY),
        portable(USER_BLOCK),
        portable(BOX_SETTINGS),
        portable(USER_DISABLED),
        portable(PASSWORD_RESET),
    ]
}

/// What an export or import moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Rows.
    pub rows: u64,
    /// Files (stored files and TLS files).
    pub files: u64,
    /// Rows left out because they could not be decoded (damaged), each logged.
    pub skipped: u64,
}

fn write_line(out: &mut impl Write, value: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// The files an export carries besides the rows: TLS files, then stored files, as
/// (path in the export, path on disk).
fn export_files(data_dir: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(data_dir.join("tls")) {
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                files.push((format!("tls/{name}"), entry.path()));
            }
        }
    }
    files.sort();
    files.extend(stored_files(&data_dir.join("files"))?);
    Ok(files)
}

impl Store {
    /// Writes the whole database (one read snapshot) and the files of `data_dir` to `out`
    /// as JSON lines.
    pub fn export(&self, data_dir: &Path, out: &mut impl Write) -> Result<Summary, ExportError> {
        let tables = portable_tables();
        let mut summary = Summary::default();
        write_line(
            out,
            &json!({
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "schema_version": self.schema_version()?,
                "hearth_version": env!("CARGO_PKG_VERSION"),
                "created_at": crate::system::now(),
            }),
        )?;
        let snapshot = self.db.begin_read().map_err(StoreError::from)?;
        for table in &tables {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(table.name);
            let source = snapshot.open_table(def).map_err(StoreError::from)?;
            for item in redb::ReadableTable::iter(&source).map_err(StoreError::from)? {
                let (key, value) = item.map_err(StoreError::from)?;
                match (table.to_json)(key.value(), value.value()) {
                    Ok((key, value)) => {
                        write_line(
                            out,
                            &json!({ "table": table.name, "key": key, "value": value }),
                        )?;
                        summary.rows += 1;
                    }
                    Err(why) => {
                        log::warn!("export: a row of {} is left out: {why}", table.name);
                        summary.skipped += 1;
                    }
                }
            }
        }
        drop(snapshot);
        let engine = base64::engine::general_purpose::STANDARD;
        for (path, on_disk) in export_files(data_dir)? {
            let bytes = std::fs::read(&on_disk)?;
            write_line(out, &json!({ "file": path, "data": engine.encode(bytes) }))?;
            summary.files += 1;
        }
        write_line(out, &json!({ "end": summary }))?;
        out.flush()?;
        Ok(summary)
    }
}

/// Whether `path` is one an import may write: `tls/NAME` or `files/ab/abcd…` (the hash).
fn importable_file(path: &str, bytes: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    match path.split('/').collect::<Vec<_>>()[..] {
        ["tls", name] => {
            !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
        ["files", dir, id] => {
            let digest: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            dir.len() == 2 && id.starts_with(dir) && digest == id
        }
        _ => false,
    }
}

/// Imports an export into `data_dir`, which must hold nothing (and so is used by no
/// server). The database and files are written to a directory inside it and renamed into
/// place once the `end` line has checked that nothing is missing.
pub fn import(input: impl Read, data_dir: &Path) -> Result<Summary, ExportError> {
    if has_data(data_dir)? {
        return Err(ArchiveError::NotEmpty(data_dir.to_path_buf()).into());
    }
    super::archive::create_private_dirs(data_dir)?;
    let staging = super::archive::TempPath::new(data_dir.join(".import"));
    let staging_dir = staging.path().to_path_buf();
    super::archive::create_private_dirs(&staging_dir)?;
    let summary = import_into(input, &staging_dir)?;
    super::archive::install_staged(&staging_dir, data_dir)?;
    Ok(summary)
}

fn import_into(input: impl Read, dir: &Path) -> Result<Summary, ExportError> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, input);
    let mut number = 0u64;
    let mut next_line =
        |reader: &mut std::io::BufReader<_>| -> Result<Option<(u64, Value)>, ExportError> {
            let mut line = Vec::new();
            let read = reader
                .by_ref()
                .take(MAX_LINE_BYTES)
                .read_until(b'\n', &mut line)?;
            number += 1;
            if read == 0 {
                return Ok(None);
            }
            let value = serde_json::from_slice(&line).map_err(|e| ExportError::Invalid {
                line: number,
                message: format!("not JSON: {e}"),
            })?;
            Ok(Some((number, value)))
        };
    let invalid = |line: u64, message: String| ExportError::Invalid { line, message };
    let (_, header) = next_line(&mut reader)?.ok_or_else(|| invalid(1, "empty".into()))?;
    if header["format"] != FORMAT {
        return Err(invalid(1, "not a Hearth export".into()));
    }
    let version = header["version"].as_u64().unwrap_or(u64::MAX);
    let schema = header["schema_version"].as_u64().unwrap_or(u64::MAX);
    if version > FORMAT_VERSION || schema > SCHEMA_VERSION {
        return Err(invalid(
            1,
            format!(
                "made by a newer Hearth (export version {version}, schema {schema}; this \
                 build reads up to {FORMAT_VERSION} and {SCHEMA_VERSION})"
            ),
        ));
    }
    let tables = portable_tables();
    let db_path = dir.join(super::archive::DATABASE);
    let db = redb::Database::create(&db_path).map_err(StoreError::from)?;
    super::make_private(&db_path)?;
    let txn = db.begin_write().map_err(StoreError::from)?;
    for name in ALL_TABLES {
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
        txn.open_table(def).map_err(StoreError::from)?;
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let mut summary = Summary::default();
    let mut ended = None;
    while let Some((line, mut value)) = next_line(&mut reader)? {
        if ended.is_some() {
            return Err(invalid(line, "lines after the end".into()));
        }
        if let Some(name) = value["table"].as_str().map(str::to_string) {
            let name = name.as_str();
            let table = tables
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| invalid(line, format!("unknown table {name:?}")))?;
            let (key, value) = (table.from_json)(value["key"].take(), value["value"].take())
                .map_err(|e| invalid(line, format!("{name}: {e}")))?;
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
            txn.open_table(def)
                .map_err(StoreError::from)?
                .insert(key.as_slice(), value.as_slice())
                .map_err(StoreError::from)?;
            summary.rows += 1;
        } else if let Some(path) = value["file"].as_str().map(str::to_string) {
            let path = path.as_str();
            let bytes = engine
                .decode(value["data"].as_str().unwrap_or_default())
                .map_err(|e| invalid(line, format!("{path}: {e}")))?;
            if !importable_file(path, &bytes) {
                return Err(invalid(line, format!("{path} is not a file a box holds")));
            }
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                super::archive::create_private_dirs(parent)?;
            }
            let mut file = super::archive::create_private(&target)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            summary.files += 1;
        } else if value.get("end").is_some() {
            ended = Some(value["end"].take());
        } else {
            return Err(invalid(line, "neither a row, a file nor the end".into()));
        }
    }
    let Some(end) = ended else {
        return Err(invalid(
            number,
            "the export is cut short (no end line)".into(),
        ));
    };
    if end["rows"].as_u64() != Some(summary.rows) || end["files"].as_u64() != Some(summary.files) {
        return Err(invalid(
            number,
            format!("the end line counts {end}, but {summary:?} were read"),
        ));
    }
    txn.commit().map_err(StoreError::from)?;
    drop(db);
    std::fs::File::open(&db_path)?.sync_all()?;
    std::fs::create_dir_all(dir.join("files"))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_portable() {
        let portable: Vec<&str> = portable_tables().iter().map(|t| t.name).collect();
        for name in ALL_TABLES {
            assert!(
                portable.contains(name),
                "table {name} has no export support: add it to portable_tables()"
            );
        }
        assert_eq!(portable.len(), ALL_TABLES.len(), "a table is listed twice");
    }
}
