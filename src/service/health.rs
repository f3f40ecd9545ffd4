//! The box's health (`GET /healthz`) and what administrators read about the machine: a
//! tiny write transaction and a file written in the data directory (the database and the
//! card still take writes), the free space on the data directory's file system, and the
//! outbox backlog; and the process's memory, CPU time and the load.
//!
//! The checks write to the card, so they run at most once per [`PROBE_INTERVAL`] whoever
//! asks: callers in between get the last report, and callers during a probe wait for it
//! rather than start another.

use super::Services;
use crate::storage::{tables::META, tables::OUTBOX, StoreError};
use futures_lite::FutureExt;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the checks run at most.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The file written and removed in the data directory by each probe.
const PROBE_FILE: &str = ".health-probe";

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// What was seen, for people.
    pub detail: String,
}

/// The outcome of every check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `ok` or `failing`.
    pub status: &'static str,
    /// Names of the failing checks.
    pub failing: Vec<&'static str>,
    /// The database took a write transaction (and how long it took).
    pub database: Check,
    /// A file could be written and synced in the data directory.
    pub data_dir: Check,
    /// Free space on the data directory's file system.
    pub disk: Check,
    /// Calls waiting in the outbox.
    pub outbox: Check,
    /// Free bytes on the data directory's file system.
    pub free_bytes: u64,
    /// Calls waiting in the outbox.
    pub outbox_backlog: u64,
    /// Milliseconds the test write took.
    pub commit_ms: u64,
}

impl Report {
    /// Whether every check passed.
    pub fn healthy(&self) -> bool {
        self.failing.is_empty()
    }

    /// The failing checks with what each saw, on one line.
    pub fn summary(&self) -> String {
        [
            ("database", &self.database),
            ("data_dir", &self.data_dir),
            ("disk", &self.disk),
            ("outbox", &self.outbox),
        ]
        .iter()
        .filter(|(_, check)| !check.ok)
        .map(|(name, check)| format!("{name}: {}", check.detail))
        .collect::<Vec<_>>()
        .join("; ")
    }
}

/// The data directory the checks look at, and the last report with when it was made.
pub struct Health {
    /// The data directory, held open: the checks look at the file system the server
    /// opened its data on, from whichever thread runs them.
    data_dir: Arc<std::fs::File>,
    last: smol::lock::Mutex<Option<(Instant, Report)>>,
    /// The size of `files/` and when it was summed: the console asks every few seconds,
    /// and a walk of a big tree on an SD card is not free.
    files: smol::lock::Mutex<Option<(Instant, (u64, bool))>>,
}

/// How long a sum of the files' sizes is reused.
pub const FILES_SUM_INTERVAL: Duration = Duration::from_secs(30);

impl Health {
    /// Checks of the data directory `dir` (which must exist); no report yet.
    pub fn new(dir: &Path) -> std::io::Result<Health> {
        Ok(Health {
            data_dir: Arc::new(std::fs::File::open(dir)?),
            last: smol::lock::Mutex::new(None),
            files: smol::lock::Mutex::new(None),
        })
    }

    /// The bytes of the files under `dir` and whether the sum is partial (see
    /// [`tree_bytes`]), summed at most once per [`FILES_SUM_INTERVAL`].
    pub async fn files_bytes(&self, dir: &Path) -> (u64, bool) {
        let mut last = self.files.lock().await;
        if let Some((at, sum)) = *last {
            if at.elapsed() < FILES_SUM_INTERVAL {
                return sum;
            }
        }
        let dir = dir.to_path_buf();
        let sum = smol::unblock(move || tree_bytes(&dir)).await;
        *last = Some((Instant::now(), sum));
        sum
    }

    /// The space on the data directory's file system.
    pub async fn space(&self) -> std::io::Result<Space> {
        let dir = self.data_dir.clone();
        smol::unblock(move || space_of(&dir)).await
    }

    /// The current report: the last one if it is younger than [`PROBE_INTERVAL`], else a
    /// fresh one.
    pub async fn report(&self, services: &Services) -> Report {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < PROBE_INTERVAL {
                return report.clone();
            }
        }
        let report = probe(services, &self.data_dir).await;
        let was_healthy = last.as_ref().is_none_or(|(_, r)| r.healthy());
        if was_healthy && !report.healthy() {
            log::warn!("health check failing: {}", report.summary());
        } else if !was_healthy && report.healthy() {
            log::info!("health checks pass again");
        }
        *last = Some((Instant::now(), report.clone()));
        report
    }
}

async fn probe(services: &Services, dir: &Arc<std::fs::File>) -> Report {
    let config = &services.config.health;
    let limit = Duration::from_millis(config.max_commit_ms.max(1));
    let began = Instant::now();
    let written = services
        .store
        .write(|tx| {
            tx.put(
                META,
                b"health_probe",
                &crate::system::now_ms().to_be_bytes().to_vec(),
            )?;
            Ok::<_, StoreError>(())
        })
        .or(async {
            smol::Timer::after(limit).await;
            Err(StoreError::Database(format!(
                "no commit within {} ms",
                limit.as_millis()
            )))
        })
        .await;
    let commit_ms = began.elapsed().as_millis() as u64;
    let database = match written {
        Ok(()) => Check {
            ok: true,
            detail: format!("a write committed in {commit_ms} ms"),
        },
        Err(e) => Check {
            ok: false,
            detail: format!("the database takes no writes: {e}"),
        },
    };
    let handle = dir.clone();
    let data_dir_check = match smol::unblock(move || write_probe_file(&handle)).await {
        Ok(()) => Check {
            ok: true,
            detail: "a file was written and synced".into(),
        },
        // The report is public: it names no path.
        Err(e) => Check {
            ok: false,
            detail: format!("cannot write in the data directory: {e}"),
        },
    };
    let handle = dir.clone();
    let (free_bytes, disk) = match smol::unblock(move || space_of(&handle)).await {
        Ok(space) => (
            space.free,
            Check {
                ok: space.free >= config.min_free_bytes,
                detail: format!(
                    "{} MiB free of {} MiB (at least {} MiB wanted)",
                    space.free / MIB,
                    space.total / MIB,
                    config.min_free_bytes / MIB
                ),
            },
        ),
        Err(e) => (
            0,
            Check {
                ok: false,
                detail: format!("cannot read the free space: {e}"),
            },
        ),
    };
    let (outbox_backlog, outbox) = match services.store.table_len(OUTBOX) {
        Ok(n) => (
            n,
            Check {
                ok: n <= config.max_outbox_backlog,
                detail: format!(
                    "{n} calls waiting (at most {} wanted)",
                    config.max_outbox_backlog
                ),
            },
        ),
        Err(e) => (
            0,
            Check {
                ok: false,
                detail: format!("cannot count the outbox: {e}"),
            },
        ),
    };
    let mut failing = Vec::new();
    for (name, check) in [
        ("database", &database),
        ("data_dir", &data_dir_check),
        ("disk", &disk),
        ("outbox", &outbox),
    ] {
        if !check.ok {
            failing.push(name);
        }
    }
    Report {
        status: if failing.is_empty() { "ok" } else { "failing" },
        failing,
        database,
        data_dir: data_dir_check,
        disk,
        outbox,
        free_bytes,
        outbox_backlog,
        commit_ms,
    }
}

const MIB: u64 = 1024 * 1024;

/// Writes, syncs and removes a small file in the directory `dir`: a full card, or one
/// remounted read-only after errors, fails here even when the database can still commit
/// into pages its file already holds.
fn write_probe_file(dir: &std::fs::File) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    let name = std::ffi::CString::new(PROBE_FILE).expect("no NUL in the name");
    // SAFETY: `dir` is an open directory and `name` a NUL-terminated string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let result = file.write_all(&[0u8; 512]).and_then(|()| file.sync_all());
    drop(file);
    // SAFETY: as for openat.
    unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    result
}

/// A file system's size and the space an unprivileged process may still use, bytes.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Space {
    /// Available to the server.
    pub free: u64,
    /// The file system's size.
    pub total: u64,
}

/// The space on the file system holding the open file or directory `file`.
pub fn space_of(file: &std::fs::File) -> std::io::Result<Space> {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid statvfs (plain integers).
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open and `stat` a valid statvfs to fill.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = stat.f_frsize as u64;
    Ok(Space {
        free: (stat.f_bavail as u64).saturating_mul(unit),
        total: (stat.f_blocks as u64).saturating_mul(unit),
    })
}

/// The server process as the kernel sees it.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcessStats {
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// CPU time in user mode, seconds.
    pub cpu_user_secs: f64,
    /// CPU time in the kernel, seconds.
    pub cpu_system_secs: f64,
    /// The machine's load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
}

/// Resident memory of this process, bytes (0 where `/proc` is missing).
pub fn rss_bytes() -> u64 {
    // statm: size resident shared text lib data dt, in pages.
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page).unwrap_or(4096))
}

/// Memory, CPU time and load now.
pub fn process_stats() -> ProcessStats {
    // SAFETY: all-zero is a valid rusage (plain integers).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage to fill.
    let have_usage = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let mut load = [0f64; 3];
    // SAFETY: `load` has room for the three values asked for.
    let loads = unsafe { libc::getloadavg(load.as_mut_ptr(), 3) };
    if loads < 3 {
        load = [0.0; 3];
    }
    ProcessStats {
        rss_bytes: rss_bytes(),
        cpu_user_secs: if have_usage {
            secs(usage.ru_utime)
        } else {
            0.0
        },
        cpu_system_secs: if have_usage {
            secs(usage.ru_stime)
        } else {
            0.0
        },
        load,
    }
}

/// Most directory entries [`tree_bytes`] visits: a status page must not walk a huge tree.
pub const MAX_WALK_ENTRIES: usize = 200_000;

/// The bytes of the files under `dir`, and whether the walk stopped at
/// [`MAX_WALK_ENTRIES`] (the total is then a lower bound).
pub fn tree_bytes(dir: &Path) -> (u64, bool) {
    let mut total = 0u64;
    let mut visited = 0usize;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_WALK_ENTRIES {
                return (total, true);
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => {
                    total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    (total, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_reads() {
        assert!(rss_bytes() > 0);
        let dir = tempfile::tempdir().unwrap();
        let handle = std::fs::File::open(dir.path()).unwrap();
        let here = space_of(&handle).unwrap();
        assert!(here.total >= here.free && here.total > 0);
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a").join("b"), [1u8; 10]).unwrap();
        std::fs::write(dir.path().join("c"), [1u8; 5]).unwrap();
        assert_eq!(tree_bytes(dir.path()), (15, false));
        write_probe_file(&handle).unwrap();
        assert!(!dir.path().join(PROBE_FILE).exists());
    }
}
