//! Backup archives: one gzip-compressed tar holding everything a box needs to come back
//! on another card, and their restore.
//!
//! ```text
//! manifest.json        format and schema versions, box name, key fingerprints,
//!                      created_at, and the size and SHA-256 of every other member
//! hearth.redb          a consistent snapshot of the database (one read transaction)
//! tls/cert.pem …       the box's TLS certificate and key (DATA_DIR/tls)
//! hearth.toml          the configuration file the server was started with, if any
//! files/ab/abcd…       every stored file (content-addressed, immutable)
//! ```
//!
//! The manifest comes first, so a restore refuses a newer format or schema before
//! reading further, and every checksum is known before a byte is written.
//!
//! Consistency while the server runs: the database snapshot is taken first, the files
//! are listed after it. A file's bytes are on disk (renamed into place) before the
//! commit that refers to it, and files are never changed or removed, so every file the
//! snapshot refers to is in the archive; a file uploaded during the backup may be there
//! too, unreferenced, which is harmless.
//!
//! gzip (the `flate2` crate on its pure-Rust backend) rather than zstd: it needs no C
//! toolchain for the Pi's cross build, every computer opens the archive, and the bulk of
//! a box (photos and other uploads) is already compressed, so a stronger codec would
//! mostly cost CPU time on the Pi. The fastest level is used for the same reason.

use super::migrations::SCHEMA_VERSION;
use super::{make_private, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What `manifest.json` says in `format`.
pub const FORMAT: &str = "hearth-backup";
/// The archive layout this build writes; a newer one is refused.
pub const FORMAT_VERSION: u32 = 1;
/// The first member.
pub const MANIFEST: &str = "manifest.json";
/// The database snapshot's member (and file name in the data directory).
pub const DATABASE: &str = "hearth.redb";
/// The configuration file's member.
pub const CONFIG: &str = "hearth.toml";
/// Where a restore leaves the archived configuration in the data directory: it is never
/// applied by itself, since paths and addresses belong to the machine.
pub const RESTORED_CONFIG: &str = "config-from-backup.toml";
/// The largest manifest read (a box with a million files has a manifest of ~120 MB; this
/// is far above any box Hearth is made for, and keeps a hostile archive from exhausting
/// memory).
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;
/// The directory of the data directory where an uploaded restore waits for the next start.
pub const RESTORE_DIR: &str = "restore";
/// The staged archive, in [`RESTORE_DIR`].
const PENDING: &str = "pending.tar.gz";
/// The staged archive's manifest, in [`RESTORE_DIR`] (so listing it needs no unpacking).
const PENDING_MANIFEST: &str = "pending.json";
/// Where a staged archive that failed to apply is kept, in [`RESTORE_DIR`].
const REJECTED: &str = "rejected.tar.gz";
/// The entries of a data directory a restore replaces.
const REPLACED: &[&str] = &[DATABASE, "files", "tls", RESTORED_CONFIG];

/// Errors writing, checking or restoring an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The database could not be read.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The file system failed (reading or writing).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a Hearth backup, or it is damaged.
    #[error("not a valid Hearth backup: {0}")]
    Invalid(String),
    /// A member's bytes differ from the manifest's checksum.
    #[error("the backup is damaged: {0} does not match its checksum")]
    Checksum(String),
    /// The archive was written by a newer Hearth.
    #[error(
        "the backup was made by a newer Hearth ({what} {found}; this build reads up to \
         {supported}): restore it with that version or a newer one"
    )]
    TooNew {
        /// `format` or `schema`.
        what: &'static str,
        /// Found in the manifest.
        found: u64,
        /// Understood by this build.
        supported: u64,
    },
    /// A stored file's bytes no longer match its name (its SHA-256): the card is failing.
    #[error("stored file {0} is damaged on disk (its bytes do not match its checksum)")]
    DamagedFile(String),
    /// The target data directory is used by a running server.
    #[error("{0} is in use by a running Hearth: stop it first")]
    InUse(PathBuf),
    /// The target data directory holds data and `--force` was not given.
    #[error("{0} is not empty: pass --force to replace its data")]
    NotEmpty(PathBuf),
}

/// One member of the archive as the manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Member {
    /// Path inside the archive.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The archive layout ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The database's schema version.
    pub schema_version: u64,
    /// The Hearth version that wrote it.
    pub hearth_version: String,
    /// The box's name.
    pub box_name: String,
    /// The server key's fingerprint (as `/.well-known/hearth` shows it).
    pub key_fingerprint: String,
    /// The TLS certificate's SHA-256 fingerprint, when the box serves HTTPS.
    pub tls_fingerprint: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Every other member, in archive order.
    pub members: Vec<Member>,
}

impl Manifest {
    /// Bytes of all members.
    pub fn total_size(&self) -> u64 {
        self.members.iter().map(|m| m.size).sum()
    }
}

/// What a backup is made of, besides the database.
pub struct Source<'a> {
    /// The data directory (`files/`, `tls/` are read from it; the snapshot is staged in it).
    pub data_dir: &'a Path,
    /// The configuration file the server was started with.
    pub config_file: Option<&'a Path>,
    /// The box's name.
    pub box_name: &'a str,
    /// The server key's fingerprint.
    pub key_fingerprint: String,
    /// The TLS certificate's fingerprint.
    pub tls_fingerprint: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    crate::system::random_bytes(&mut bytes);
    hex(&bytes)
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex(&self.hasher.finalize()), self.read)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut reader = Hashing::new(std::fs::File::open(path)?);
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(reader.finish())
}

/// Whether `name` is a file id: 64 lowercase hex digits.
fn is_file_id(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `path` names a member this build writes: the only paths a restore accepts,
/// so nothing in an archive can land outside the data directory.
fn allowed_member(path: &str) -> bool {
    match path.split('/').collect::<Vec<_>>()[..] {
        [DATABASE] | [CONFIG] => true,
        ["tls", name] => {
            !name.is_empty()
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        }
        ["files", dir, id] => is_file_id(id) && id.starts_with(dir) && dir.len() == 2,
        _ => false,
    }
}

/// The stored files under `files_dir`, as (archive path, path on disk), sorted. Partial
/// uploads (`.tmp-…`) and anything that is not a content-addressed file are left out.
pub fn stored_files(files_dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let dirs = match std::fs::read_dir(files_dir) {
        Ok(dirs) => dirs,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for dir in dirs {
        let dir = dir?;
        let dir_name = dir.file_name().to_string_lossy().into_owned();
        if dir_name.len() != 2 || !dir.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            let name = file.file_name().to_string_lossy().into_owned();
            if is_file_id(&name) && name.starts_with(&dir_name) && file.file_type()?.is_file() {
                found.push((format!("files/{dir_name}/{name}"), file.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The regular files of `DATA_DIR/tls`, as (archive path, path on disk).
fn tls_files(data_dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(data_dir.join("tls")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = format!("tls/{}", entry.file_name().to_string_lossy());
        if entry.file_type()?.is_file() && allowed_member(&path) {
            found.push((path, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Removes a file (or directory) when dropped, unless told to keep it.
pub(crate) struct TempPath(Option<PathBuf>);

impl TempPath {
    /// `path`, removed when dropped.
    pub(crate) fn new(path: PathBuf) -> Self {
        TempPath(Some(path))
    }

    /// The path.
    pub(crate) fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
        }
    }
}

/// fsyncs the directory holding `path`, so a rename into it survives power loss.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}

/// Writes a backup archive of `store` and `source` to `dest` (temp file, fsync, rename),
/// while the server keeps running. Returns its manifest.
pub fn write(store: &Store, source: &Source, dest: &Path) -> Result<Manifest, ArchiveError> {
    let snapshot = TempPath(Some(
        source
            .data_dir
            .join(format!(".backup-{}.redb", random_suffix())),
    ));
    let snapshot_path = snapshot.0.clone().unwrap_or_default();
    store.backup(&snapshot_path)?;
    // Listed after the snapshot: see the module docs.
    let mut sources: Vec<(String, PathBuf)> = vec![(DATABASE.into(), snapshot_path)];
    sources.extend(tls_files(source.data_dir)?);
    if let Some(config) = source.config_file.filter(|c| c.is_file()) {
        sources.push((CONFIG.into(), config.to_path_buf()));
    }
    let files = stored_files(&source.data_dir.join("files"))?;
    let mut members = Vec::with_capacity(sources.len() + files.len());
    for (path, on_disk) in &sources {
        let (sha256, size) = hash_file(on_disk)?;
        members.push(Member {
            path: path.clone(),
            size,
            sha256,
        });
    }
    for (path, on_disk) in &files {
        // The name is the SHA-256; it is checked again while the bytes are archived.
        let size = std::fs::metadata(on_disk)?.len();
        let sha256 = path.rsplit('/').next().unwrap_or_default().to_string();
        members.push(Member {
            path: path.clone(),
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        schema_version: store.schema_version()?,
        hearth_version: env!("CARGO_PKG_VERSION").into(),
        box_name: source.box_name.into(),
        key_fingerprint: source.key_fingerprint.clone(),
        tls_fingerprint: source.tls_fingerprint.clone(),
        created_at: crate::system::now(),
        members,
    };
    let partial = TempPath(Some(dest.with_file_name(format!(
        ".{}.partial-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        random_suffix()
    ))));
    let partial_path = partial.0.clone().unwrap_or_default();
    let file = create_private(&partial_path)?;
    let gzip = flate2::write::GzEncoder::new(
        std::io::BufWriter::with_capacity(256 * 1024, file),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gzip);
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ArchiveError::Invalid(format!("cannot encode the manifest: {e}")))?;
    append(
        &mut tar,
        MANIFEST,
        manifest_bytes.len() as u64,
        &manifest_bytes[..],
    )?;
    let all = sources.iter().chain(files.iter());
    for ((path, on_disk), member) in all.zip(&manifest.members) {
        let mut reader = Hashing::new(std::fs::File::open(on_disk)?.take(member.size));
        append(&mut tar, path, member.size, &mut reader)?;
        let (sha256, size) = reader.finish();
        if sha256 != member.sha256 || size != member.size {
            return Err(ArchiveError::DamagedFile(path.clone()));
        }
    }
    let gzip = tar.into_inner()?;
    let file = gzip
        .finish()?
        .into_inner()
        .map_err(|e| ArchiveError::Io(e.into_error()))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial_path, dest)?;
    partial.keep();
    sync_parent(dest)?;
    drop(snapshot);
    Ok(manifest)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(crate::system::now());
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

/// Opens an archive for reading: gzip-compressed (as written) or a plain tar (one a person
/// unpacked to look at and packed again).
fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read>>, ArchiveError> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let gzip = {
        use std::io::BufRead;
        file.fill_buf()?.starts_with(&[0x1f, 0x8b])
    };
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(tar::Archive::new(reader))
}

/// Checks a manifest's format and schema against this build.
fn check_manifest(manifest: &Manifest) -> Result<(), ArchiveError> {
    if manifest.format != FORMAT {
        return Err(ArchiveError::Invalid(format!(
            "its manifest says format {:?}",
            manifest.format
        )));
    }
    if manifest.format_version > FORMAT_VERSION {
        return Err(ArchiveError::TooNew {
            what: "format",
            found: manifest.format_version.into(),
            supported: FORMAT_VERSION.into(),
        });
    }
    if manifest.schema_version > SCHEMA_VERSION {
        return Err(ArchiveError::TooNew {
            what: "schema",
            found: manifest.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for member in &manifest.members {
        if !allowed_member(&member.path) || !seen.insert(member.path.as_str()) {
            return Err(ArchiveError::Invalid(format!(
                "its manifest lists {:?}, which a backup never holds",
                member.path
            )));
        }
    }
    if !seen.contains(DATABASE) {
        return Err(ArchiveError::Invalid("it holds no database".into()));
    }
    Ok(())
}

/// Reads the archive through, checking the manifest first and then every member against
/// it; with `into`, also writes each member under that directory (files 0600, directories
/// 0700, each fsynced). Returns the manifest.
fn read_through(path: &Path, into: Option<&Path>) -> Result<Manifest, ArchiveError> {
    let mut archive = open(path)?;
    let mut entries = archive
        .entries()
        .map_err(|e| ArchiveError::Invalid(e.to_string()))?;
    let damaged = |e: std::io::Error| ArchiveError::Invalid(e.to_string());
    let first = entries
        .next()
        .ok_or_else(|| ArchiveError::Invalid("it is empty".into()))?
        .map_err(damaged)?;
    if first.path_bytes().as_ref() != MANIFEST.as_bytes() || first.size() > MAX_MANIFEST_BYTES {
        return Err(ArchiveError::Invalid(format!(
            "its first member is not {MANIFEST}"
        )));
    }
    let mut text = Vec::new();
    first
        .take(MAX_MANIFEST_BYTES)
        .read_to_end(&mut text)
        .map_err(damaged)?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| ArchiveError::Invalid(format!("its manifest is unreadable: {e}")))?;
    check_manifest(&manifest)?;
    let expected: std::collections::HashMap<&str, &Member> = manifest
        .members
        .iter()
        .map(|m| (m.path.as_str(), m))
        .collect();
    let mut found = std::collections::HashSet::new();
    for entry in entries {
        let entry = entry.map_err(damaged)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(member) = expected.get(name.as_str()) else {
            return Err(ArchiveError::Invalid(format!(
                "it holds {name:?}, which its manifest does not list"
            )));
        };
        if !found.insert(member.path.clone()) {
            return Err(ArchiveError::Invalid(format!("it holds {name:?} twice")));
        }
        if entry.header().entry_type() != tar::EntryType::Regular || entry.size() != member.size {
            return Err(ArchiveError::Checksum(name));
        }
        let mut reader = Hashing::new(entry);
        match into {
            Some(dir) => {
                let target = dir.join(&member.path);
                if let Some(parent) = target.parent() {
                    create_private_dirs(parent)?;
                }
                let mut out = create_private(&target)?;
                std::io::copy(&mut reader, &mut out).map_err(damaged)?;
                out.sync_all()?;
            }
            None => {
                std::io::copy(&mut reader, &mut std::io::sink()).map_err(damaged)?;
            }
        }
        let (sha256, size) = reader.finish();
        if sha256 != member.sha256 || size != member.size {
            return Err(ArchiveError::Checksum(name));
        }
    }
    if let Some(missing) = manifest.members.iter().find(|m| !found.contains(&m.path)) {
        return Err(ArchiveError::Invalid(format!(
            "it lacks {}, which its manifest lists",
            missing.path
        )));
    }
    Ok(manifest)
}

/// Creates (or truncates) a file readable and writable by its owner only, from the start:
/// what goes in holds the box's secrets.
pub(crate) fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through `open`: set it too.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

pub(crate) fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Checks an archive completely (manifest, format, schema, every member's checksum)
/// without writing anything.
pub fn verify(path: &Path) -> Result<Manifest, ArchiveError> {
    read_through(path, None)
}

/// Whether another process holds the lock of the database in `data_dir` (a running
/// server, or a CLI command that opened it). The same `flock` redb takes.
pub fn database_in_use(data_dir: &Path) -> Result<bool, ArchiveError> {
    use std::os::fd::AsRawFd;
    let file = match std::fs::File::open(data_dir.join(DATABASE)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    // SAFETY: flock on a descriptor this function owns; the lock goes with the file.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if taken == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
        return Ok(false);
    }
    match std::io::Error::last_os_error() {
        e if e.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
        e => Err(e.into()),
    }
}

/// Whether `data_dir` holds anything (a missing directory is empty).
pub fn has_data(data_dir: &Path) -> Result<bool, ArchiveError> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Restores an archive into `data_dir`: checks the whole archive first, refuses a
/// directory whose database is in use, and one that holds anything unless `force`; then
/// unpacks into a temporary directory inside it and renames each part into place (the
/// old database, `files/` and `tls/` are removed once the new ones are in). The archived
/// configuration is left as [`RESTORED_CONFIG`].
pub fn restore(archive: &Path, data_dir: &Path, force: bool) -> Result<Manifest, ArchiveError> {
    verify(archive)?;
    if database_in_use(data_dir)? {
        return Err(ArchiveError::InUse(data_dir.to_path_buf()));
    }
    if !force && has_data(data_dir)? {
        return Err(ArchiveError::NotEmpty(data_dir.to_path_buf()));
    }
    unpack_into(archive, data_dir)
}

/// Unpacks a verified archive into `data_dir` (see [`restore`]), with no checks of the
/// directory: for a staged restore applied by the server itself before it opens the
/// database.
pub fn unpack_into(archive: &Path, data_dir: &Path) -> Result<Manifest, ArchiveError> {
    create_private_dirs(data_dir)?;
    let staging = TempPath(Some(data_dir.join(format!(".restore-{}", random_suffix()))));
    let staging_dir = staging.0.clone().unwrap_or_default();
    create_private_dirs(&staging_dir)?;
    let manifest = read_through(archive, Some(&staging_dir))?;
    if staging_dir.join(CONFIG).exists() {
        std::fs::rename(staging_dir.join(CONFIG), staging_dir.join(RESTORED_CONFIG))?;
    }
    install_staged(&staging_dir, data_dir)?;
    drop(staging);
    Ok(manifest)
}

/// Moves the parts of a box written to `staging_dir` into `data_dir`. Every replaced
/// part goes aside first, then the new ones come in, then the old ones go: a crash in
/// between leaves the old parts beside, never a mix inside one part.
pub(crate) fn install_staged(staging_dir: &Path, data_dir: &Path) -> std::io::Result<()> {
    let aside = TempPath::new(data_dir.join(format!(".replaced-{}", random_suffix())));
    create_private_dirs(aside.path())?;
    for name in REPLACED {
        let current = data_dir.join(name);
        if std::fs::symlink_metadata(&current).is_ok() {
            std::fs::rename(&current, aside.path().join(name))?;
        }
    }
    for name in REPLACED {
        let new = staging_dir.join(name);
        if new.exists() {
            std::fs::rename(&new, data_dir.join(name))?;
        }
    }
    if !data_dir.join("files").exists() {
        create_private_dirs(&data_dir.join("files"))?;
    }
    std::fs::File::open(data_dir)?.sync_all()?;
    drop(aside);
    Ok(())
}

/// Removes what an interrupted backup, restore or upload left in `data_dir` (database
/// snapshots, unpacked archives, partial uploads). Not the parts a restore set aside
/// (`.replaced-…`): after a crash in the middle of one, they may be the only copy of
/// the old data. Call only while no server uses the directory.
pub fn remove_leftovers(data_dir: &Path) -> std::io::Result<()> {
    let remove = |path: &Path| -> std::io::Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
            Ok(_) => std::fs::remove_file(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    };
    let left = |dir: &Path, prefixes: &[&str]| -> std::io::Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| name.starts_with(p)) {
                found.push(entry.path());
            }
        }
        Ok(found)
    };
    for path in left(data_dir, &[".backup-", ".restore-", ".import"])? {
        remove(&path)?;
    }
    for path in left(&data_dir.join(RESTORE_DIR), &[".upload-", ".pending"])? {
        remove(&path)?;
    }
    Ok(())
}

/// Checks the archive at `upload` completely and stages it in `data_dir` for the next
/// start (replacing one staged before); `upload` is moved, not copied.
pub fn stage(upload: &Path, data_dir: &Path) -> Result<Manifest, ArchiveError> {
    let manifest = verify(upload)?;
    let dir = data_dir.join(RESTORE_DIR);
    create_private_dirs(&dir)?;
    let text = serde_json::to_vec(&manifest)
        .map_err(|e| ArchiveError::Invalid(format!("cannot encode the manifest: {e}")))?;
    let tmp = TempPath::new(dir.join(format!(".{PENDING_MANIFEST}.{}", random_suffix())));
    std::fs::write(tmp.path(), text)?;
    make_private(tmp.path())?;
    std::fs::File::open(tmp.path())?.sync_all()?;
    // The archive first: a manifest names a staged archive only once it is in place.
    std::fs::rename(upload, dir.join(PENDING))?;
    std::fs::rename(tmp.path(), dir.join(PENDING_MANIFEST))?;
    tmp.keep();
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(manifest)
}

/// The manifest of the restore staged in `data_dir`, if any.
pub fn staged(data_dir: &Path) -> Result<Option<Manifest>, ArchiveError> {
    let dir = data_dir.join(RESTORE_DIR);
    if !dir.join(PENDING).is_file() {
        return Ok(None);
    }
    match std::fs::read(dir.join(PENDING_MANIFEST)) {
        Ok(text) => serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| ArchiveError::Invalid(format!("the staged manifest: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes the restore staged in `data_dir`; `false` when there was none.
pub fn unstage(data_dir: &Path) -> Result<bool, ArchiveError> {
    let dir = data_dir.join(RESTORE_DIR);
    let existed = staged(data_dir)?.is_some();
    for name in [PENDING_MANIFEST, PENDING] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(existed)
}

/// Applies the restore staged in `data_dir`, if any: for the server itself, at start,
/// before it opens the database. An archive that fails (damaged since it was staged) is
/// kept as `restore/rejected.tar.gz` and the data directory is left as it was.
pub fn apply_pending(data_dir: &Path) -> Result<Option<Manifest>, ArchiveError> {
    let dir = data_dir.join(RESTORE_DIR);
    let pending = dir.join(PENDING);
    if !pending.is_file() {
        return Ok(None);
    }
    match unpack_into(&pending, data_dir) {
        Ok(manifest) => {
            unstage(data_dir)?;
            Ok(Some(manifest))
        }
        Err(e) => {
            std::fs::rename(&pending, dir.join(REJECTED))?;
            let _ = std::fs::remove_file(dir.join(PENDING_MANIFEST));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_members_a_backup_holds_are_accepted() {
        let id = "ab".repeat(32);
        for good in [
            "hearth.redb".to_string(),
            "hearth.toml".to_string(),
            "tls/cert.pem".to_string(),
            "tls/key.pem".to_string(),
            format!("files/ab/{id}"),
        ] {
            assert!(allowed_member(&good), "{good}");
        }
        for bad in [
            "../hearth.redb".to_string(),
            "/etc/passwd".to_string(),
            "tls/../../x".to_string(),
            "tls/.hidden".to_string(),
            "tls/a/b".to_string(),
            "tls/".to_string(),
            format!("files/cd/{id}"),
            format!("files/ab/{id}/x"),
            "files/ab/..".to_string(),
            "manifest.json".to_string(),
            "admin.sock".to_string(),
            String::new(),
        ] {
            assert!(!allowed_member(&bad), "{bad}");
        }
    }

    #[test]
    fn a_manifest_must_list_the_database_and_nothing_twice() {
        let member = |path: &str| Member {
            path: path.into(),
            size: 1,
            sha256: "00".repeat(32),
        };
        let mut manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            hearth_version: "0".into(),
            box_name: "b".into(),
            key_fingerprint: String::new(),
            tls_fingerprint: None,
            created_at: 0,
            members: vec![member("tls/cert.pem")],
        };
        assert!(matches!(
            check_manifest(&manifest),
            Err(ArchiveError::Invalid(_))
        ));
        manifest.members.push(member(DATABASE));
        assert!(check_manifest(&manifest).is_ok());
        manifest.members.push(member(DATABASE));
        assert!(check_manifest(&manifest).is_err());
        manifest.members.pop();
        manifest.format_version = FORMAT_VERSION + 1;
        assert!(matches!(
            check_manifest(&manifest),
            Err(ArchiveError::TooNew { what: "format", .. })
        ));
    }
}
