//! Backups kept on the box and restores staged for the next start.
//!
//! A kept backup is an archive ([`crate::storage::archive`]) named
//! `hearth-YYYYMMDD-HHMMSS.tar.gz` (UTC) in `[backup] dir`; only names of that shape are
//! listed, served or rotated, so no request can name another file. [`schedule`] makes one
//! every `[backup] every_hours` and keeps the newest `[backup] keep`.
//!
//! A restore uploaded through the admin API is written to `DATA_DIR/restore/`, checked
//! completely, and kept as [`archive::PENDING`] with its manifest beside it; the server
//! applies it at its next start, before the database opens
//! ([`archive::apply_pending`]).

use super::{invalid, Error, Result, Services};
use crate::storage::archive::{self, ArchiveError, Manifest};
use crate::storage::StoreError;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// A kept backup as the admin API lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupInfo {
    /// File name (`hearth-YYYYMMDD-HHMMSS.tar.gz`).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Unix seconds it was written.
    pub created_at: u64,
}

/// The delay before the first scheduled backup of a box that keeps none.
const FIRST_BACKUP_DELAY_SECS: u64 = 600;
/// The delay before trying again after a scheduled backup failed.
const RETRY_SECS: u64 = 3600;

impl From<ArchiveError> for Error {
    fn from(e: ArchiveError) -> Error {
        match e {
            ArchiveError::Store(e) => Error::Store(e),
            ArchiveError::Io(e) => Error::Store(StoreError::from(e)),
            ArchiveError::TooNew { .. } => invalid("backup_too_new", e.to_string()),
            ArchiveError::Checksum(_) => invalid("backup_damaged", e.to_string()),
            ArchiveError::Invalid(_) => invalid("invalid_backup", e.to_string()),
            ArchiveError::DamagedFile(_) => Error::Store(StoreError::Corrupted(e.to_string())),
            ArchiveError::InUse(_) | ArchiveError::NotEmpty(_) => Error::Conflict {
                code: "data_in_use",
                message: e.to_string(),
            },
        }
    }
}

/// The name of a backup written at `unix` seconds.
pub fn backup_name(unix: u64) -> String {
    let (days, secs) = (unix / 86_400, unix % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "hearth-{year:04}{month:02}{day:02}-{:02}{:02}{:02}.tar.gz",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Whether `name` is one [`backup_name`] makes: the only names listed, served or deleted.
pub fn is_backup_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix("hearth-")
        .and_then(|rest| rest.strip_suffix(".tar.gz"))
    else {
        return false;
    };
    let bytes = stamp.as_bytes();
    bytes.len() == 15
        && bytes[8] == b'-'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit())
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Services {
    /// Where kept backups go.
    pub fn backup_dir(&self) -> PathBuf {
        self.config
            .backup
            .dir
            .clone()
            .unwrap_or_else(|| self.config.data_dir.join("backups"))
    }

    /// Writes an archive of the whole box to `dest` while the server runs.
    pub async fn write_archive(
        &self,
        dest: PathBuf,
        tls_fingerprint: Option<String>,
    ) -> Result<Manifest> {
        let store = self.store.clone();
        let data_dir = self.config.data_dir.clone();
        let config_file = self.config.loaded_from.clone();
        let box_name = self.config.name.clone();
        let key_fingerprint =
            crate::model::federation::fingerprint(&self.server_key.public_bytes());
        let manifest = smol::unblock(move || {
            let source = archive::Source {
                data_dir: &data_dir,
                config_file: config_file.as_deref(),
                box_name: &box_name,
                key_fingerprint,
                tls_fingerprint,
            };
            archive::write(&store, &source, &dest)
        })
        .await?;
        Ok(manifest)
    }

    /// Makes a backup in the backup directory now, then deletes the oldest beyond
    /// `[backup] keep`. Answers once it is written.
    pub async fn make_backup(&self, tls_fingerprint: Option<String>) -> Result<BackupInfo> {
        let dir = self.backup_dir();
        archive::create_private_dirs(&dir).map_err(StoreError::from)?;
        let name = backup_name(crate::system::now());
        let dest = dir.join(&name);
        if dest.exists() {
            return Err(Error::Conflict {
                code: "backup_exists",
                message: format!("{name} was made this very second; try again"),
            });
        }
        let manifest = self.write_archive(dest.clone(), tls_fingerprint).await?;
        let size = std::fs::metadata(&dest).map_err(StoreError::from)?.len();
        self.rotate_backups()?;
        Ok(BackupInfo {
            name,
            size,
            created_at: manifest.created_at,
        })
    }

    /// The kept backups, newest first.
    pub fn list_backups(&self) -> Result<Vec<BackupInfo>> {
        let entries = match std::fs::read_dir(self.backup_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::Store(e.into())),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StoreError::from)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().map_err(StoreError::from)?;
            if is_backup_name(&name) && meta.is_file() {
                let created_at = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                found.push(BackupInfo {
                    name,
                    size: meta.len(),
                    created_at,
                });
            }
        }
        // The names hold the UTC time: in order, whatever the clock did since.
        found.sort_by(|a, b| b.name.cmp(&a.name));
        Ok(found)
    }

    /// A kept backup and its path, for download.
    pub fn find_backup(&self, name: &str) -> Result<(BackupInfo, PathBuf)> {
        if !is_backup_name(name) {
            return Err(Error::NotFound("backup"));
        }
        let info = self
            .list_backups()?
            .into_iter()
            .find(|b| b.name == name)
            .ok_or(Error::NotFound("backup"))?;
        Ok((info, self.backup_dir().join(name)))
    }

    /// Deletes the kept backups beyond the newest `[backup] keep`.
    fn rotate_backups(&self) -> Result<()> {
        let keep = self.config.backup.keep.max(1);
        for old in self.list_backups()?.into_iter().skip(keep) {
            std::fs::remove_file(self.backup_dir().join(&old.name)).map_err(StoreError::from)?;
            log::info!("deleted the old backup {}", old.name);
        }
        Ok(())
    }

    /// Takes an uploaded archive (at most `[backup] max_restore_bytes`), checks it
    /// completely and stages it for the next start, replacing one staged before.
    pub async fn stage_restore(
        &self,
        mut body: impl futures_lite::AsyncRead + Unpin,
    ) -> Result<Manifest> {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let dir = self.config.data_dir.join(archive::RESTORE_DIR);
        archive::create_private_dirs(&dir).map_err(StoreError::from)?;
        let mut random = [0u8; 6];
        crate::system::random_bytes(&mut random);
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let upload = archive::TempPath::new(dir.join(format!(".upload-{suffix}")));
        let limit = self.config.backup.max_restore_bytes;
        let io = |e: std::io::Error| Error::Store(StoreError::from(e));
        let mut file = smol::fs::File::create(upload.path()).await.map_err(io)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = body.read(&mut buf).await.map_err(Error::Body)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > limit {
                return Err(Error::TooLarge {
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                });
            }
            file.write_all(&buf[..n]).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        let path = upload.path().to_path_buf();
        let data_dir = self.config.data_dir.clone();
        let manifest = smol::unblock(move || archive::stage(&path, &data_dir)).await?;
        Ok(manifest)
    }

    /// The restore staged for the next start, if any.
    pub fn staged_restore(&self) -> Result<Option<Manifest>> {
        Ok(archive::staged(&self.config.data_dir)?)
    }

    /// Cancels the staged restore; `false` when there was none.
    pub fn cancel_restore(&self) -> Result<bool> {
        Ok(archive::unstage(&self.config.data_dir)?)
    }
}

/// When the next scheduled backup is due (unix seconds), given the newest kept one; `None`
/// when scheduled backups are off.
pub fn next_backup_due(every_hours: u64, newest: Option<u64>, now: u64) -> Option<u64> {
    if every_hours == 0 {
        return None;
    }
    let period = every_hours.saturating_mul(3600);
    Some(match newest {
        // A clock set back (a Pi without a real-time clock) must not postpone it for long.
        Some(newest) => newest
            .saturating_add(period)
            .min(now.saturating_add(period)),
        None => now + FIRST_BACKUP_DELAY_SECS,
    })
}

/// Makes the scheduled backups until `stop` fires (or is dropped). `tls_fingerprint` goes
/// into each manifest.
pub async fn schedule(
    services: Arc<Services>,
    tls_fingerprint: Option<String>,
    stop: async_channel::Receiver<()>,
) {
    use futures_lite::FutureExt;
    let mut retry_at: Option<u64> = None;
    loop {
        let now = crate::system::now();
        let newest = services
            .list_backups()
            .ok()
            .and_then(|kept| kept.first().map(|b| b.created_at));
        let Some(due) = next_backup_due(services.config.backup.every_hours, newest, now) else {
            return;
        };
        let due = retry_at.map_or(due, |retry| retry.min(due));
        let wait = std::time::Duration::from_secs(due.saturating_sub(now));
        let stopped = async {
            let _ = stop.recv().await;
            true
        }
        .or(async {
            smol::Timer::after(wait).await;
            false
        })
        .await;
        if stopped {
            return;
        }
        match services.make_backup(tls_fingerprint.clone()).await {
            Ok(made) => {
                retry_at = None;
                log::info!(
                    "scheduled backup {} written ({} bytes)",
                    made.name,
                    made.size
                );
            }
            Err(e) => {
                retry_at = Some(crate::system::now() + RETRY_SECS);
                log::error!("the scheduled backup failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_hold_the_utc_time_and_only_they_are_accepted() {
        assert_eq!(backup_name(0), "hearth-19700101-000000.tar.gz");
        assert_eq!(backup_name(1_796_546_645), "hearth-20261206-084405.tar.gz");
        assert_eq!(backup_name(951_782_400), "hearth-20000229-000000.tar.gz");
        assert!(is_backup_name("hearth-20261206-084405.tar.gz"));
        for bad in [
            "../hearth.redb",
            "hearth-20261206-084405.tar.gz/..",
            "hearth-2026120-0844050.tar.gz",
            "hearth-20261206_084405.tar.gz",
            "hearth-..%2f..%2fetc.tar.gz",
            "x-20261206-084405.tar.gz",
            "",
        ] {
            assert!(!is_backup_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_schedule_follows_the_newest_backup() {
        assert_eq!(next_backup_due(0, Some(5), 10), None);
        assert_eq!(next_backup_due(24, None, 1000), Some(1000 + 600));
        assert_eq!(next_backup_due(24, Some(1000), 2000), Some(1000 + 86_400));
        // A backup "from the future" (the clock went back) waits one period at most.
        assert_eq!(next_backup_due(1, Some(1_000_000), 10), Some(10 + 3600));
    }
}
