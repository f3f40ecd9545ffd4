//! Storage: one redb file with typed tables, versioned bincode values and big-endian
//! composite keys. All writes go through one writer thread that groups concurrent
//! requests into one durable commit ([`writer`]); reads run anywhere on snapshots.
//!
//! Keys are typed: each table names its key shape ([`keys::KeyCodec`]) in
//! [`tables::Table`], callers pass keys as values (`tx.get(GUILD_MEMBER, (guild, user))`)
//! and get decoded keys back from [`Tx::rows`], which selects rows by a leading part of
//! the key and named options ([`Rows`]) rather than byte ranges. Only `META` (byte names)
//! and `REFRESH_TOKEN` (SHA-256 digests) keep [`keys::Raw`] byte keys.
//!
//! The schema version and the steps that bring an older database up to it are in
//! [`migrations`] (adding one is a function and a list entry); whole-box backup archives
//! and their restore in [`archive`]; the portable JSON-lines export in [`export`], whose
//! [`export::portable_tables`] must name every table.

pub mod archive;
pub mod codec;
pub mod export;
pub mod keys;
pub mod migrations;
pub mod tables;
pub mod writer;

use crate::model::{Audience, Event, Id};
use codec::{decode, encode, CodecError, Stored};
use keys::{KeyCodec, KeyPrefix};
use redb::{ReadableDatabase, ReadableTable};
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use tables::{Table, ALL_TABLES, EVENT_LOG, META};

pub use migrations::SCHEMA_VERSION;
pub use writer::Writer;

/// Storage errors. Callers map them to "internal error": they mean the disk or the file
/// is in trouble, never that the user sent something wrong. redb's kinds are kept apart
/// because on an SD card "the disk is full" and "the file is damaged" need different
/// help from the operator.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StoreError {
    /// The file system has no space left (or the quota is used up).
    #[error("disk full, free some space: {0}")]
    DiskFull(String),
    /// Another I/O error of the file system (database file or backups).
    #[error("i/o error ({kind:?}): {message}")]
    Io {
        /// What the operating system said, as `std::io::ErrorKind`.
        kind: std::io::ErrorKind,
        /// The error's text.
        message: String,
    },
    /// redb found the database file damaged.
    #[error("the database file is corrupted: {0}")]
    Corrupted(String),
    /// Another process (or another open in this one) holds the database file's lock.
    #[error("the database file is already open elsewhere (another Hearth holds its lock)")]
    AlreadyOpen,
    /// Any other redb failure.
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
    #[error(
        "the database was written by a newer Hearth (schema {found}; this build reads up to \
         schema {supported}): run that version again, or restore a backup made by this one"
    )]
    SchemaTooNew {
        /// Found in the file.
        found: u64,
        /// Supported by this build.
        supported: u64,
    },
    /// The writer thread has stopped.
    #[error("the database writer has stopped")]
    WriterGone,
    /// A write was attempted in a read-only transaction.
    #[error("write in a read-only transaction")]
    ReadOnly,
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                StoreError::DiskFull(e.to_string())
            }
            kind => StoreError::Io {
                kind,
                message: e.to_string(),
            },
        }
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Io(io) => StoreError::from(io),
            redb::StorageError::Corrupted(text) => StoreError::Corrupted(text),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<redb::DatabaseError> for StoreError {
    fn from(e: redb::DatabaseError) -> Self {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
            redb::DatabaseError::Storage(storage) => StoreError::from(storage),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        match e {
            redb::TransactionError::Storage(storage) => StoreError::from(storage),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        match e {
            redb::TableError::Storage(storage) => StoreError::from(storage),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        match e {
            redb::CommitError::Storage(storage) => StoreError::from(storage),
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Io(io) => StoreError::from(io),
            redb::Error::Corrupted(text) => StoreError::Corrupted(text),
            redb::Error::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
            other => StoreError::Database(other.to_string()),
        }
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

/// Where builds before 2026-12 kept the last event sequence number, rewritten by every
/// commit; it is now the log's last key (pruning always keeps the newest event), which
/// saves a table written per commit. Still read, for a log emptied by such a build.
const EVENT_SEQ_KEY: &[u8] = b"event_seq";

/// The last event sequence number handed out (0 before the first event).
fn last_event_seq_in(tx: &Tx) -> Result<u64, StoreError> {
    let mut in_log = 0;
    tx.scan_rows(EVENT_LOG, &Rows::all().reverse().limit(1), |seq, _, _| {
        in_log = seq;
        Ok(())
    })?;
    let kept = tx
        .get(META, EVENT_SEQ_KEY)?
        .and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0);
    Ok(in_log.max(kept))
}

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

/// Walks the rows with keys in `[lower, upper)` (upper `None` = to the end), ascending or
/// descending, handing each key and value to `visit` until it answers `false`.
fn scan_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    lower: &[u8],
    upper: Option<&[u8]>,
    reverse: bool,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let range = match upper {
        Some(upper) if upper <= lower => return Ok(()),
        Some(upper) => table.range::<&[u8]>(lower..upper)?,
        None => table.range::<&[u8]>(lower..)?,
    };
    if reverse {
        for item in range.rev() {
            let (k, v) = item?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
    } else {
        for item in range {
            let (k, v) = item?;
            if !visit(k.value(), v.value())? {
                break;
            }
        }
    }
    Ok(())
}

/// Which rows a typed read takes: every row, or those whose key starts with a prefix,
/// narrowed by named options. Bounds are keys of the table's shape `K`.
///
/// ```text
/// tx.rows(CHANNEL_MESSAGE, Rows::prefix(channel).before((channel, last)).reverse().limit(50))
/// ```
pub struct Rows<K> {
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    reverse: bool,
    limit: usize,
    _key: PhantomData<fn() -> K>,
}

impl<K: KeyCodec> Rows<K> {
    /// Every row, ascending.
    pub fn all() -> Self {
        Rows {
            lower: Vec::new(),
            upper: None,
            reverse: false,
            limit: usize::MAX,
            _key: PhantomData,
        }
    }

    /// The rows whose key starts with `prefix` (the first part of a composite key).
    pub fn prefix<P>(prefix: P) -> Self
    where
        K: KeyPrefix<P>,
    {
        let lower = K::encode_prefix(prefix);
        let upper = prefix_end(&lower);
        Rows {
            lower,
            upper,
            ..Rows::all()
        }
    }

    /// Only rows at `key` or after it.
    pub fn at_or_after(mut self, key: K::Key<'_>) -> Self {
        self.lower = self.lower.max(K::encode(key).as_ref().to_vec());
        self
    }

    /// Only rows after `key`.
    pub fn after(mut self, key: K::Key<'_>) -> Self {
        // The smallest byte string above a key is the key followed by a 0 byte.
        let mut above = K::encode(key).as_ref().to_vec();
        above.push(0);
        self.lower = self.lower.max(above);
        self
    }

    /// Only rows before `key`.
    pub fn before(mut self, key: K::Key<'_>) -> Self {
        let key = K::encode(key).as_ref().to_vec();
        self.upper = Some(match self.upper.take() {
            Some(upper) => upper.min(key),
            None => key,
        });
        self
    }

    /// Highest keys first.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }

    /// At most `limit` rows.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

impl Tx<'_> {
    /// Runs `scan_in` on `table` in this transaction.
    fn scan<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        lower: &[u8],
        upper: Option<&[u8]>,
        reverse: bool,
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Tx::Read(t) => scan_in(&t.open_table(table.def())?, lower, upper, reverse, visit),
            Tx::Write(t, _) => scan_in(&t.open_table(table.def())?, lower, upper, reverse, visit),
        }
    }

    /// Runs `scan` over `rows`, handing `visit` each row whose key has the table's shape
    /// (others are skipped) until it answers `false` or the limit is reached.
    fn scan_rows<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        rows: &Rows<K>,
        mut visit: impl FnMut(K::Owned, &[u8], &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if rows.limit == 0 {
            return Ok(());
        }
        let mut taken = 0;
        self.scan(
            table,
            &rows.lower,
            rows.upper.as_deref(),
            rows.reverse,
            |k, v| {
                if let Some(key) = K::decode(k) {
                    visit(key, k, v)?;
                    taken += 1;
                }
                Ok(taken < rows.limit)
            },
        )
    }

    /// One value by key.
    pub fn get<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        key: K::Key<'_>,
    ) -> Result<Option<V>, StoreError> {
        let key = K::encode(key);
        let key = key.as_ref();
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
    pub fn contains<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        key: K::Key<'_>,
    ) -> Result<bool, StoreError> {
        let key = K::encode(key);
        let key = key.as_ref();
        Ok(match self {
            Tx::Read(t) => t.open_table(table.def())?.get(key)?.is_some(),
            Tx::Write(t, _) => t.open_table(table.def())?.get(key)?.is_some(),
        })
    }

    /// Typed rows with their decoded keys, as `rows` selects them.
    pub fn rows<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        rows: Rows<K>,
    ) -> Result<Vec<(K::Owned, V)>, StoreError> {
        let mut out = Vec::new();
        self.scan_rows(table, &rows, |key, _, value| {
            out.push((key, decode(value).map_err(|e| corrupt(table.name, e))?));
            Ok(())
        })?;
        Ok(out)
    }

    /// How many rows `rows` selects (its limit caps the count).
    pub fn count<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        rows: Rows<K>,
    ) -> Result<usize, StoreError> {
        let mut count = 0;
        self.scan_rows(table, &rows, |_, _, _| {
            count += 1;
            Ok(())
        })?;
        Ok(count)
    }

    /// Removes the rows `rows` selects (writer only). Returns how many.
    pub fn delete_rows<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        rows: Rows<K>,
    ) -> Result<usize, StoreError> {
        let Tx::Write(t, _) = self else {
            return Err(StoreError::ReadOnly);
        };
        let mut doomed = Vec::new();
        self.scan_rows(table, &rows, |_, key, _| {
            doomed.push(key.to_vec());
            Ok(())
        })?;
        let mut table_handle = t.open_table(table.def())?;
        for key in &doomed {
            table_handle.remove(key.as_slice())?;
        }
        Ok(doomed.len())
    }

    /// Drops a whole table (writer only; migrations). Returns whether it existed.
    pub(crate) fn delete_table(&self, name: &str) -> Result<bool, StoreError> {
        match self {
            Tx::Read(_) => Err(StoreError::ReadOnly),
            Tx::Write(t, _) => {
                let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
                Ok(t.delete_table(def)?)
            }
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
            None => last_event_seq_in(self)? + 1,
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
        self.put(EVENT_LOG, seq, &event)?;
        sink.next_seq.set(Some(seq + 1));
        sink.emitted.borrow_mut().push(event);
        Ok(seq)
    }

    /// Inserts or replaces a value (writer only).
    pub fn put<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        key: K::Key<'_>,
        value: &V,
    ) -> Result<(), StoreError> {
        match self {
            Tx::Read(_) => Err(StoreError::ReadOnly),
            Tx::Write(t, _) => {
                t.open_table(table.def())?
                    .insert(K::encode(key).as_ref(), encode(value).as_slice())?;
                Ok(())
            }
        }
    }

    /// Opens `table` once for several reads and writes in the writer's transaction (each
    /// [`Tx::get`] and [`Tx::put`] opens it anew: a lookup in redb's table of tables). The
    /// table cannot be opened again until the handle is dropped.
    pub fn open_mut<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
    ) -> Result<TableMut<'_, V, K>, StoreError> {
        match self {
            Tx::Read(_) => Err(StoreError::ReadOnly),
            Tx::Write(t, _) => Ok(TableMut {
                handle: t.open_table(table.def())?,
                table,
            }),
        }
    }

    /// Removes a key (writer only). Returns whether it existed.
    pub fn delete<V: Stored, K: KeyCodec>(
        &self,
        table: Table<V, K>,
        key: K::Key<'_>,
    ) -> Result<bool, StoreError> {
        match self {
            Tx::Read(_) => Err(StoreError::ReadOnly),
            Tx::Write(t, _) => Ok(t
                .open_table(table.def())?
                .remove(K::encode(key).as_ref())?
                .is_some()),
        }
    }
}

/// A table opened for the writer ([`Tx::open_mut`]).
pub struct TableMut<'t, V, K> {
    handle: redb::Table<'t, &'static [u8], &'static [u8]>,
    table: Table<V, K>,
}

impl<V: Stored, K: KeyCodec> TableMut<'_, V, K> {
    /// One value by key.
    pub fn get(&self, key: K::Key<'_>) -> Result<Option<V>, StoreError> {
        let raw = self
            .handle
            .get(K::encode(key).as_ref())?
            .map(|g| g.value().to_vec());
        raw.map(|bytes| decode(&bytes).map_err(|e| corrupt(self.table.name, e)))
            .transpose()
    }

    /// Inserts or replaces a value.
    pub fn put(&mut self, key: K::Key<'_>, value: &V) -> Result<(), StoreError> {
        self.handle
            .insert(K::encode(key).as_ref(), encode(value).as_slice())?;
        Ok(())
    }
}

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Ends a batch: prunes the log by count and age, always keeping its newest event (whose
/// key is the last sequence number handed out).
pub(crate) fn finish_batch(tx: &Tx, retention: Retention) -> Result<(), StoreError> {
    let Tx::Write(_, sink) = tx else {
        return Err(StoreError::ReadOnly);
    };
    let Some(last) = sink.last_seq() else {
        return Ok(());
    };
    // Sequence numbers are contiguous, so pruning by count needs only the keys below the
    // cut; only rows being deleted (a few per commit in steady state) are read.
    let oldest_kept_by_count = last.saturating_sub(retention.max_events.max(1)) + 1;
    let doomed = tx.rows(
        EVENT_LOG,
        Rows::all()
            .before(oldest_kept_by_count)
            .limit(PRUNE_PER_COMMIT),
    )?;
    let mut pruned = doomed.len();
    for (seq, _) in doomed {
        tx.delete(EVENT_LOG, seq)?;
    }
    // Then by age, oldest first, reading one row at a time and stopping at the first
    // young one (normally the very first).
    let age_cutoff = now_ms().saturating_sub(retention.max_age_secs.saturating_mul(1000));
    while pruned < PRUNE_PER_COMMIT {
        let Some((seq, oldest)) = tx.rows(EVENT_LOG, Rows::all().limit(1))?.pop() else {
            break;
        };
        if oldest.at_ms >= age_cutoff || oldest.seq == last {
            break;
        }
        tx.delete(EVENT_LOG, seq)?;
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
    /// Opens (or creates) the database file, refuses a newer schema, creates missing
    /// tables and runs the migrations an older schema needs ([`migrations`]).
    pub fn open(
        path: &Path,
        cache_bytes: usize,
        max_batch: usize,
        retention: Retention,
    ) -> Result<Store, StoreError> {
        Self::open_with(
            path,
            cache_bytes,
            max_batch,
            retention,
            migrations::MIGRATIONS,
        )
    }

    /// [`Store::open`] with the given migration steps (tests run steps of their own).
    pub(crate) fn open_with(
        path: &Path,
        cache_bytes: usize,
        max_batch: usize,
        retention: Retention,
        steps: &[migrations::Migration],
    ) -> Result<Store, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        // The database holds the server key and every user's secrets: owner only, also
        // when it was made under a lax umask or copied in readable.
        make_private(path)?;
        // Before anything is written: a newer file is left exactly as it is.
        migrations::refuse_newer(&db, steps.len() as u64 + 1)?;
        let txn = db.begin_write()?;
        for name in ALL_TABLES {
            let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
            txn.open_table(def)?;
        }
        txn.commit()?;
        migrations::migrate(&db, path, steps)?;
        let db = Arc::new(db);
        let writer = Writer::start(db.clone(), max_batch, retention);
        Ok(Store { db, writer })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        self.read(|tx| Ok(migrations::stored_version(tx)?.unwrap_or(SCHEMA_VERSION)))
    }

    /// How long group commits took (see [`Writer::commit_times`]).
    pub fn commit_times(&self) -> &crate::metrics::Histogram {
        self.writer.commit_times()
    }

    /// Rows in `table`, from the count redb keeps (no scan).
    pub fn table_len<V: Stored, K: KeyCodec>(&self, table: Table<V, K>) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(table.def())?.len()?)
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
                .rows(EVENT_LOG, Rows::all().limit(1))?
                .first()
                .map(|(_, e)| e.seq);
            let events = tx
                .rows(
                    EVENT_LOG,
                    Rows::all()
                        .at_or_after(after.saturating_add(1))
                        .limit(limit),
                )?
                .into_iter()
                .map(|(_, e)| e)
                .collect();
            Ok((events, oldest))
        })
    }

    /// The last sequence number handed out (0 before the first event).
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.read(last_event_seq_in)
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
        copy_database(&self.db, dest)
    }
}

/// Copies every table of `db` from one read snapshot to a new database at `dest` (temp
/// file, fsync, rename). Returns the number of rows.
fn copy_database(db: &redb::Database, dest: &Path) -> Result<u64, StoreError> {
    let snapshot = db.begin_read()?;
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

    #[test]
    fn schema_1_counters_move_into_read_states() {
        use crate::model::{ChannelCounter, Id, ReadState, COUNTER_ROW};
        use tables::{CHANNEL_COUNTER_V1, CHANNEL_MESSAGE_SEQ_V1, CHANNEL_READ_STATE};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let counter = ChannelCounter {
            seq: 41,
            last_message_id: Some(Id(900)),
        };
        {
            // A schema-1 file as that code left it: the counter and a message's counter
            // value in tables of their own.
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let sink = EventSink::default();
                let tx = Tx::Write(&txn, &sink);
                tx.put(META, b"schema_version", &1u64.to_be_bytes().to_vec())
                    .unwrap();
                tx.put(CHANNEL_COUNTER_V1, Id(5), &counter).unwrap();
                tx.put(CHANNEL_MESSAGE_SEQ_V1, (Id(5), Id(900)), &41u64)
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = open(dir.path(), 10);
        let row = store
            .read(|tx| tx.get(CHANNEL_READ_STATE, (Id(5), COUNTER_ROW)))
            .unwrap()
            .expect("the counter moved");
        assert_eq!(ChannelCounter::from_row(&row), counter);
        assert_eq!(
            row,
            ReadState {
                last_read_id: Id(900),
                read_seq: 41
            }
        );
        let version = store.read(|tx| tx.get(META, b"schema_version")).unwrap();
        assert_eq!(version, Some(SCHEMA_VERSION.to_be_bytes().to_vec()));
        drop(store);
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect();
        assert!(
            !names.iter().any(|n| n == CHANNEL_COUNTER_V1.name),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n == CHANNEL_MESSAGE_SEQ_V1.name));
    }

    #[test]
    fn redb_errors_keep_their_kind() {
        use std::io::{Error, ErrorKind};
        let full = redb::StorageError::Io(Error::from(ErrorKind::StorageFull));
        assert!(matches!(StoreError::from(full), StoreError::DiskFull(_)));
        let enospc = redb::StorageError::Io(Error::from_raw_os_error(28));
        let error = StoreError::from(redb::CommitError::Storage(enospc));
        assert!(matches!(error, StoreError::DiskFull(_)));
        assert!(error.to_string().starts_with("disk full"), "{error}");
        let quota = redb::Error::Io(Error::from(ErrorKind::QuotaExceeded));
        assert!(matches!(StoreError::from(quota), StoreError::DiskFull(_)));

        let denied = redb::StorageError::Io(Error::from(ErrorKind::PermissionDenied));
        assert!(matches!(
            StoreError::from(redb::TableError::Storage(denied)),
            StoreError::Io {
                kind: ErrorKind::PermissionDenied,
                ..
            }
        ));
        let damaged = redb::StorageError::Corrupted("bad checksum".into());
        assert!(matches!(
            StoreError::from(redb::TransactionError::Storage(damaged)),
            StoreError::Corrupted(text) if text == "bad checksum"
        ));
        assert!(matches!(
            StoreError::from(redb::DatabaseError::DatabaseAlreadyOpen),
            StoreError::AlreadyOpen
        ));
        assert!(matches!(
            StoreError::from(redb::StorageError::ValueTooLarge(1 << 40)),
            StoreError::Database(_)
        ));
    }

    #[test]
    fn a_second_open_of_the_file_is_already_open() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open(dir.path(), 10);
        let second = Store::open(
            &dir.path().join("db.redb"),
            1 << 20,
            64,
            Retention {
                max_events: 10,
                max_age_secs: 3600,
            },
        );
        assert!(matches!(second, Err(StoreError::AlreadyOpen)));
    }

    #[test]
    fn typed_rows_decode_keys_narrow_by_options_and_skip_garbled_keys() {
        use crate::storage::keys::IdPair;
        use crate::storage::tables::GUILD_CHANNEL as TYPED;
        // The same table read with byte keys, to write and see what the typed one skips.
        const RAW: Table<tables::Present> = Table::new("guild_channel");
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 10);
        store
            .write_blocking(|tx| {
                for (g, c) in [(1, 1), (1, 2), (1, 300), (2, 1)] {
                    tx.put(TYPED, (Id(g), Id(c)), &tables::Present)?;
                }
                // A key of the wrong width, as a bug or a damaged file could leave.
                tx.put(RAW, &[0, 0, 0, 0, 0, 0, 0, 1, 7], &tables::Present)
            })
            .unwrap();
        let listed = |rows: Rows<IdPair>| -> Vec<(u64, u64)> {
            store
                .read(|tx| tx.rows(TYPED, rows))
                .unwrap()
                .into_iter()
                .map(|((g, c), _)| (g.0, c.0))
                .collect()
        };
        assert_eq!(listed(Rows::all()), vec![(1, 1), (1, 2), (1, 300), (2, 1)]);
        assert_eq!(listed(Rows::prefix(Id(1))), vec![(1, 1), (1, 2), (1, 300)]);
        assert_eq!(
            listed(Rows::prefix(Id(1)).reverse().limit(2)),
            vec![(1, 300), (1, 2)]
        );
        assert_eq!(
            listed(
                Rows::prefix(Id(1))
                    .after((Id(1), Id(1)))
                    .before((Id(1), Id(300)))
            ),
            vec![(1, 2)]
        );
        assert_eq!(
            listed(Rows::all().at_or_after((Id(1), Id(300)))),
            vec![(1, 300), (2, 1)]
        );
        assert_eq!(listed(Rows::prefix(Id(1)).before((Id(0), Id(9)))), vec![]);
        let (raw, typed, counted) = store
            .read(|tx| {
                Ok::<_, StoreError>((
                    tx.count(RAW, Rows::prefix(&Id(1).to_be()[..]))?,
                    tx.count(TYPED, Rows::prefix(Id(1)))?,
                    tx.count(TYPED, Rows::prefix(Id(1)).limit(2))?,
                ))
            })
            .unwrap();
        assert_eq!((raw, typed, counted), (4, 3, 2));
        let removed = store
            .write_blocking(|tx| tx.delete_rows(TYPED, Rows::prefix(Id(1)).limit(2)))
            .unwrap();
        assert_eq!(removed, 2);
        let left: Vec<Vec<u8>> = store
            .read(|tx| tx.rows(RAW, Rows::all()))
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(left.len(), 3);
    }
}
