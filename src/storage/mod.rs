//! Storage: one redb file with typed tables, versioned bincode values and big-endian
//! composite keys. All writes go through one writer thread that groups concurrent
//! requests into one durable commit ([`writer`]); reads run anywhere on snapshots.

pub mod codec;
pub mod keys;
pub mod tables;
pub mod writer;

use crate::model::{Audience, Event, Id};
use codec::{decode, encode, CodecError, Stored};
use redb::{ReadableDatabase, ReadableTable};
use std::path::Path;
use std::sync::Arc;
use tables::{Table, ALL_TABLES, EVENT_LOG, META};

pub use writer::Writer;

/// The schema version this build writes. Opening a newer file is refused.
pub const SCHEMA_VERSION: u64 = 1;

/// Storage errors. Callers map them to "internal error": they mean the disk or the file
/// is in trouble, never that the user sent something wrong.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StoreError {
    /// redb failed.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be decoded.
    #[error("corrupt value in table {table}: {reason}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Decoder message.
        reason: String,
    },
    /// The file was written by a newer Hearth.
    #[error("database schema {found} is newer than this build understands ({supported})")]
    SchemaTooNew {
        /// Found in the file.
        found: u64,
        /// Supported by this build.
        supported: u64,
    },
    /// The writer thread has stopped.
    #[error("the database writer has stopped")]
    WriterGone,
    /// A write was attempted in a read transaction.
    #[error("write in a read-only transaction")]
    ReadOnly,
    /// File system error (backups).
    #[error("i/o error: {0}")]
    Io(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Database(e.to_string()) }
    })*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

fn corrupt(table: &'static str, e: CodecError) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: e.to_string(),
    }
}

/// A transaction, read-only or the writer's, with typed table access.
pub enum Tx<'a> {
    /// A snapshot for reading.
    Read(&'a redb::ReadTransaction),
    /// The writer's open transaction (sees its own writes) and the events of its batch.
    Write(&'a redb::WriteTransaction, &'a EventSink),
}

/// Events recorded in the current write batch; published after the commit. It also notes
/// whether the batch queued outbox work, so the outbox worker is woken after the commit.
#[derive(Default)]
pub struct EventSink {
    next_seq: std::cell::Cell<Option<u64>>,
    emitted: std::cell::RefCell<Vec<Event>>,
    queued: std::cell::Cell<bool>,
}

impl EventSink {
    /// Takes the batch's events.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.emitted.borrow_mut())
    }

    /// Whether the batch queued outbox work.
    pub fn queued(&self) -> bool {
        self.queued.get()
    }

    /// The last sequence number given out in this batch, if any.
    fn last_seq(&self) -> Option<u64> {
        self.next_seq.get().map(|n| n - 1)
    }
}

/// How much of the event log to keep.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Keep at most this many events.
    pub max_events: u64,
    /// Drop events older than this many seconds.
    pub max_age_secs: u64,
}

/// Events removed from the log per commit at most, so pruning never stalls a batch.
const PRUNE_PER_COMMIT: usize = 2048;

const EVENT_SEQ_KEY: &[u8] = b"event_seq";

/// The smallest byte string greater than every string that starts with `prefix`
/// (`None` if there is none: the prefix is all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

type RangeItem<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

fn scan_in<V: Stored, T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    name: &'static str,
    lower: &[u8],
    upper: Option<&[u8]>,
    reverse: bool,
    limit: usize,
) -> Result<Vec<(Vec<u8>, V)>, StoreError> {
    let mut out = Vec::new();
    let mut push = |item: RangeItem| -> Result<bool, StoreError> {
        let (k, v) = item?;
        out.push((
            k.value().to_vec(),
            decode(v.value()).map_err(|e| corrupt(name, e))?,
        ));
        Ok(out.len() < limit)
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    match upper {
        Some(upper) => {
            let range = table.range::<&[u8]>(lower..upper)?;
            if reverse {
                for item in range.rev() {
                    if !push(item)? {
                        break;
                    }
                }
            } else {
                for item in range {
                    if !push(item)? {
                        break;
                    }
                }
            }
        }
        None => {
            let range = table.range::<&[u8]>(lower..)?;
            if reverse {
                for item in range.rev() {
                    if !push(item)? {
                        break;
                    }
                }
            } else {
                for item in range {
                    if !push(item)? {
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

impl Tx<'_> {
    /// One value by key.
    pub fn get<V: Stored>(&self, table: Table<V>, key: &[u8]) -> Result<Option<V>, StoreError> {
        let raw = match self {
            Tx::Read(t) => t
                .open_table(table.def())?
                .get(key)?
                .map(|g| g.value().to_vec()),
            Tx::Write(t, _) => t
                .open_table(table.def())?
                .get(key)?
                .map(|g| g.value().to_vec()),
        };
        raw.map(|bytes| decode(&bytes).map_err(|e| corrupt(table.name, e)))
            .transpose()
    }

    /// Whether a key exists.
    pub fn contains<V: Stored>(&self, table: Table<V>, key: &[u8]) -> Result<bool, StoreError> {
        Ok(match self {
            Tx::Read(t) => t.open_table(table.def())?.get(key)?.is_some(),
            Tx::Write(t, _) => t.open_table(table.def())?.get(key)?.is_some(),
        })
    }

    /// Rows with keys in `[lower, upper)` (upper `None` = to the end), at most `limit`,
    /// ascending or descending.
    pub fn range<V: Stored>(
        &self,
        table: Table<V>,
        lower: &[u8],
        upper: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, V)>, StoreError> {
        match self {
            Tx::Read(t) => scan_in(
                &t.open_table(table.def())?,
                table.name,
                lower,
                upper,
                reverse,
                limit,
            ),
            Tx::Write(t, _) => scan_in(
                &t.open_table(table.def())?,
                table.name,
                lower,
                upper,
                reverse,
                limit,
            ),
        }
    }

    /// Rows whose key starts with `prefix`, ascending, at most `limit`.
    pub fn scan_prefix<V: Stored>(
        &self,
        table: Table<V>,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, V)>, StoreError> {
        let end = prefix_end(prefix);
        self.range(table, prefix, end.as_deref(), false, limit)
    }

    /// Number of rows whose key starts with `prefix`, counting at most `cap`.
    pub fn count_prefix<V: Stored>(
        &self,
        table: Table<V>,
        prefix: &[u8],
        cap: usize,
    ) -> Result<usize, StoreError> {
        let end = prefix_end(prefix);
        let count = |t: &dyn Fn() -> Result<usize, StoreError>| t();
        match self {
            Tx::Read(t) => count(&|| {
                let table = t.open_table(table.def())?;
                let iter = match &end {
                    Some(e) => table.range::<&[u8]>(prefix..e.as_slice())?,
                    None => table.range::<&[u8]>(prefix..)?,
                };
                Ok(iter.take(cap).count())
            }),
            Tx::Write(t, _) => count(&|| {
                let table = t.open_table(table.def())?;
                let iter = match &end {
                    Some(e) => table.range::<&[u8]>(prefix..e.as_slice())?,
                    None => table.range::<&[u8]>(prefix..)?,
                };
                Ok(iter.take(cap).count())
            }),
        }
    }

    /// Notes that this commit queued outbox work, so the outbox worker is woken once it is
    /// durable (nothing on a read transaction).
    pub fn note_queued(&self) {
        if let Tx::Write(_, sink) = self {
            sink.queued.set(true);
        }
    }

    /// Records an event in this commit (writer only) and returns its sequence number. Like
    /// writes, emit only after every check that can fail.
    pub fn emit<T: serde::Serialize>(
        &self,
        kind: &str,
        audience: Audience,
        permission_change: Option<Id>,
        data: &T,
    ) -> Result<u64, StoreError> {
        let Tx::Write(_, sink) = self else {
            return Err(StoreError::ReadOnly);
        };
        let seq = match sink.next_seq.get() {
            Some(seq) => seq,
            None => {
                let last = self
                    .get(META, EVENT_SEQ_KEY)?
                    .and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(0);
                last + 1
            }
        };
        let data = serde_json::to_string(data)
            .map_err(|e| StoreError::Database(format!("cannot encode event: {e}")))?;
        let event = Event {
            seq,
            kind: kind.to_string(),
            audience,
            permission_change,
            data,
            at_ms: now_ms(),
        };
        self.put(EVENT_LOG, &seq.to_be_bytes(), &event)?;
        sink.next_seq.set(Some(seq + 1));
        sink.emitted.borrow_mut().push(event);
        Ok(seq)
    }

    /// Inserts or replaces a value (writer only).
    pub fn put<V: Stored>(&self, table: Table<V>, key: &[u8], value: &V) -> Result<(), StoreError> {
        match self {
            Tx::Read(_) => Err(StoreError::ReadOnly),
            Tx::Write(t, _) => {
                t.open_table(table.def())?
                    .insert(key, encode(value).as_slice())?;
                Ok(())
            }
        }
    }

    /// Removes a key (writer only). Returns whether it existed.
    pub fn delete<V: Stored>(&self, table: Table<V>, key: &[u8]) -> Result<bool, StoreError> {
        match self {
            Tx::Read(_) => Err(StoreError::ReadOnly),
            Tx::Write(t, _) => Ok(t.open_table(table.def())?.remove(key)?.is_some()),
        }
    }

    /// Removes every key that starts with `prefix` (writer only). Returns how many.
    pub fn delete_prefix<V: Stored>(
        &self,
        table: Table<V>,
        prefix: &[u8],
    ) -> Result<usize, StoreError> {
        let Tx::Write(t, _) = self else {
            return Err(StoreError::ReadOnly);
        };
        let mut table_handle = t.open_table(table.def())?;
        let end = prefix_end(prefix);
        let keys: Vec<Vec<u8>> = {
            let iter = match &end {
                Some(e) => table_handle.range::<&[u8]>(prefix..e.as_slice())?,
                None => table_handle.range::<&[u8]>(prefix..)?,
            };
            let mut keys = Vec::new();
            for item in iter {
                keys.push(item?.0.value().to_vec());
            }
            keys
        };
        for key in &keys {
            table_handle.remove(key.as_slice())?;
        }
        Ok(keys.len())
    }
}

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Ends a batch: stores the sequence counter and prunes the log by count and age.
pub(crate) fn finish_batch(tx: &Tx, retention: Retention) -> Result<(), StoreError> {
    let Tx::Write(_, sink) = tx else {
        return Err(StoreError::ReadOnly);
    };
    let Some(last) = sink.last_seq() else {
        return Ok(());
    };
    tx.put(META, EVENT_SEQ_KEY, &last.to_be_bytes().to_vec())?;
    // Sequence numbers are contiguous, so pruning by count needs only the keys below the
    // cut; only rows being deleted (a few per commit in steady state) are read.
    let oldest_kept_by_count = last.saturating_sub(retention.max_events.max(1)) + 1;
    let doomed = tx.range(
        EVENT_LOG,
        &[],
        Some(&oldest_kept_by_count.to_be_bytes()),
        false,
        PRUNE_PER_COMMIT,
    )?;
    let mut pruned = doomed.len();
    for (key, _) in doomed {
        tx.delete(EVENT_LOG, &key)?;
    }
    // Then by age, oldest first, reading one row at a time and stopping at the first
    // young one (normally the very first).
    let age_cutoff = now_ms().saturating_sub(retention.max_age_secs.saturating_mul(1000));
    while pruned < PRUNE_PER_COMMIT {
        let Some((key, oldest)) = tx.range(EVENT_LOG, &[], None, false, 1)?.pop() else {
            break;
        };
        if oldest.at_ms >= age_cutoff || oldest.seq == last {
            break;
        }
        tx.delete(EVENT_LOG, &key)?;
        pruned += 1;
    }
    Ok(())
}

/// The database: a redb file plus the group-commit writer.
#[derive(Clone)]
pub struct Store {
    db: Arc<redb::Database>,
    writer: Writer,
}

impl Store {
    /// Opens (or creates) the database file, creates missing tables and checks the schema.
    pub fn open(
        path: &Path,
        cache_bytes: usize,
        max_batch: usize,
        retention: Retention,
    ) -> Result<Store, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        // The database holds the server key and every user's secrets: owner only, also
        // when it was made under a lax umask or copied in readable.
        make_private(path)?;
        let txn = db.begin_write()?;
        for name in ALL_TABLES {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
            txn.open_table(def)?;
        }
        {
            let sink = EventSink::default();
            let tx = Tx::Write(&txn, &sink);
            match tx.get(META, b"schema_version")? {
                None => tx.put(
                    META,
                    b"schema_version",
                    &SCHEMA_VERSION.to_be_bytes().to_vec(),
                )?,
                Some(bytes) => {
                    let found = bytes
                        .as_slice()
                        .try_into()
                        .map(u64::from_be_bytes)
                        .unwrap_or(u64::MAX);
                    if found > SCHEMA_VERSION {
                        return Err(StoreError::SchemaTooNew {
                            found,
                            supported: SCHEMA_VERSION,
                        });
                    }
                }
            }
        }
        txn.commit()?;
        let db = Arc::new(db);
        let writer = Writer::start(db.clone(), max_batch, retention);
        Ok(Store { db, writer })
    }

    /// Sets what runs after each durable commit with that commit's events (the gateway's
    /// fan-out). Replaces any earlier hook.
    pub fn on_events(&self, hook: impl Fn(Vec<Event>) + Send + Sync + 'static) {
        self.writer.on_events(Box::new(hook));
    }

    /// Sets what runs after each durable commit that queued outbox work (waking the
    /// outbox worker). Replaces any earlier hook.
    pub fn on_queued(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.writer.on_queued(Box::new(hook));
    }

    /// Events with sequence numbers above `after`, at most `limit`, oldest first, and the
    /// oldest sequence number still in the log (`None` when the log is empty).
    pub fn events_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<u64>), StoreError> {
        self.read(|tx| {
            let oldest = tx
                .range(EVENT_LOG, &[], None, false, 1)?
                .first()
                .map(|(_, e)| e.seq);
            let start = after.saturating_add(1).to_be_bytes();
            let events = tx
                .range(EVENT_LOG, &start, None, false, limit)?
                .into_iter()
                .map(|(_, e)| e)
                .collect();
            Ok((events, oldest))
        })
    }

    /// The last sequence number handed out (0 before the first event).
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.read(|tx| {
            Ok(tx
                .get(META, EVENT_SEQ_KEY)?
                .and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0))
        })
    }

    /// Runs `f` on a consistent snapshot.
    pub fn read<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx) -> Result<R, E>,
    ) -> Result<R, E> {
        let txn = self.db.begin_read().map_err(StoreError::from)?;
        f(&Tx::Read(&txn))
    }

    /// Runs `f` in the writer's next group commit and returns its result once the commit
    /// is durable. `f` must do every check that can fail *before* its first write: an
    /// error after writing would leave those writes in the shared commit.
    pub async fn write<R, E>(
        &self,
        f: impl FnOnce(&Tx) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.writer.submit(f).await
    }

    /// Blocking form of [`Store::write`], for tools that run outside an executor.
    pub fn write_blocking<R, E>(
        &self,
        f: impl FnOnce(&Tx) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        smol::block_on(self.writer.submit(f))
    }

    /// Writes a consistent copy of the whole database to `dest` (temp file, fsync, rename)
    /// from one read snapshot, so it can run while the server keeps writing.
    pub fn backup(&self, dest: &Path) -> Result<u64, StoreError> {
        let snapshot = self.db.begin_read()?;
        let tmp = dest.with_extension("partial");
        let _ = std::fs::remove_file(&tmp);
        let mut rows = 0u64;
        {
            let copy = redb::Database::create(&tmp)?;
            // A backup holds the server key too; private before anything is written.
            make_private(&tmp)?;
            let txn = copy.begin_write()?;
            for name in ALL_TABLES {
                let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
                let source = snapshot.open_table(def)?;
                let mut target = txn.open_table(def)?;
                for item in source.iter()? {
                    let (k, v) = item?;
                    target.insert(k.value(), v.value())?;
                    rows += 1;
                }
            }
            txn.commit()?;
        }
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(rows)
    }
}

/// Makes a file readable and writable by its owner only (0600).
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, max_events: u64) -> Store {
        Store::open(
            &dir.join("db.redb"),
            1 << 20,
            64,
            Retention {
                max_events,
                max_age_secs: 3600,
            },
        )
        .expect("open")
    }

    #[test]
    fn events_are_numbered_without_gaps_and_pruned_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 5);
        for i in 0..12u64 {
            let seq = store
                .write_blocking(move |tx| tx.emit("test", Audience::default(), None, &i))
                .unwrap();
            assert_eq!(seq, i + 1);
        }
        let (events, oldest) = store.events_after(0, 100).unwrap();
        assert_eq!(oldest, Some(8));
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![8, 9, 10, 11, 12]
        );
        assert_eq!(events[0].data, "7");
        assert_eq!(store.last_event_seq().unwrap(), 12);
        // Numbering survives a reopen.
        drop(store);
        let store = open(dir.path(), 5);
        let seq = store
            .write_blocking(|tx| tx.emit("test", Audience::default(), None, &0))
            .unwrap();
        assert_eq!(seq, 13);
    }

    #[test]
    fn events_of_one_batch_share_the_commit_and_failed_jobs_emit_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 100);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        store.on_events(move |events| {
            sink.lock()
                .unwrap()
                .extend(events.into_iter().map(|e| e.seq))
        });
        let failed: Result<u64, StoreError> =
            store.write_blocking(|_tx| Err(StoreError::Database("refused".into())));
        assert!(failed.is_err());
        store
            .write_blocking(|tx| {
                tx.emit("a", Audience::default(), None, &1)?;
                tx.emit("b", Audience::default(), None, &2)
            })
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
        let read_only: Result<u64, StoreError> =
            store.read(|tx| tx.emit("c", Audience::default(), None, &3));
        assert!(matches!(read_only, Err(StoreError::ReadOnly)));
    }
}
