//! Schema migrations: the steps that bring a database written by an older Hearth up to
//! the schema this build writes.
//!
//! `META["schema_version"]` says which schema a file has. [`MIGRATIONS`] lists the steps
//! in order: entry `i` takes schema `i + 1` to `i + 2`, so [`SCHEMA_VERSION`] is one more
//! than the number of steps. When [`super::Store::open`] finds an older schema, it first
//! writes a copy of the database beside it (`hearth.redb.schema-N.bak`, from one read
//! snapshot), then runs each missing step in a write transaction of its own that also
//! stores the new version, so a crash or power loss between steps resumes at the first
//! step not committed. A newer schema is refused with [`super::StoreError::SchemaTooNew`]
//! and the file is left untouched.
//!
//! A value whose shape changes needs no migration: it bumps its own version in
//! [`super::codec`] and decodes the old form. A migration is for what values cannot do on
//! their own: a new table or index filled from existing rows, keys that change shape,
//! counters derived from many rows.
//!
//! Adding one: write `fn fill_something(tx: &Tx) -> Result<(), StoreError>` below (read
//! with `tx.rows`, write with `tx.put`; emit no events, since no client can be listening)
//! and append it to [`MIGRATIONS`]. The schema version follows; a test then opens
//! `tests/fixtures/schema-1.redb.gz` (written by the build before any migration) through
//! every step.

use super::tables::META;
use super::{EventSink, StoreError, Tx};
use redb::ReadableDatabase;
use std::path::{Path, PathBuf};

/// One step: changes the rows of schema N into those of schema N + 1.
pub type Migration = fn(&Tx) -> Result<(), StoreError>;

/// Every step, oldest first: entry `i` takes schema `i + 1` to `i + 2`.
pub const MIGRATIONS: &[Migration] = &[counters_into_read_states];

/// The schema version this build writes. Opening a newer file is refused.
pub const SCHEMA_VERSION: u64 = MIGRATIONS.len() as u64 + 1;

/// The `META` row holding the schema version.
pub(crate) const SCHEMA_KEY: &[u8] = b"schema_version";

/// Reads the schema version in `tx` (`None` for a new, empty database).
pub(crate) fn stored_version(tx: &Tx) -> Result<Option<u64>, StoreError> {
    Ok(tx.get(META, SCHEMA_KEY)?.map(|bytes| {
        bytes
            .as_slice()
            .try_into()
            .map(u64::from_be_bytes)
            // An unreadable version is treated as newer than any: never migrated blindly.
            .unwrap_or(u64::MAX)
    }))
}

fn store_version(tx: &Tx, version: u64) -> Result<(), StoreError> {
    tx.put(META, SCHEMA_KEY, &version.to_be_bytes().to_vec())
}

/// Refuses a database whose schema is newer than `target`, reading only (a new file has
/// no tables yet and passes).
pub(crate) fn refuse_newer(db: &redb::Database, target: u64) -> Result<(), StoreError> {
    let txn = db.begin_read()?;
    match txn.open_table(META.def()) {
        Ok(_) => {}
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    match stored_version(&Tx::Read(&txn))? {
        Some(found) if found > target => Err(StoreError::SchemaTooNew {
            found,
            supported: target,
        }),
        _ => Ok(()),
    }
}

/// Schema 1 → 2: a channel's message counter moves to its row among the channel's read
/// states ([`crate::model::COUNTER_ROW`]), so that posting a message writes one table
/// fewer, and each message carries its own counter value (`Message::seq`) in place of a
/// row per message in a table of its own. Messages from schema 1 keep `seq` 0: read
/// states never move back, so reading one of them keeps the reader's count until they
/// read a newer message.
fn counters_into_read_states(tx: &Tx) -> Result<(), StoreError> {
    use super::tables::{CHANNEL_COUNTER_V1, CHANNEL_MESSAGE_SEQ_V1, CHANNEL_READ_STATE};
    use super::Rows;
    use crate::model::COUNTER_ROW;
    for (channel, counter) in tx.rows(CHANNEL_COUNTER_V1, Rows::all())? {
        tx.put(
            CHANNEL_READ_STATE,
            (channel, COUNTER_ROW),
            &counter.to_row(),
        )?;
    }
    tx.delete_table(CHANNEL_COUNTER_V1.name)?;
    tx.delete_table(CHANNEL_MESSAGE_SEQ_V1.name)?;
    Ok(())
}

/// Where the copy made before migrating from `version` goes.
pub fn pre_migration_copy(path: &Path, version: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".schema-{version}.bak"));
    path.with_file_name(name)
}

/// Brings the database at `path` (open as `db`) to the schema `steps` lead to: a new
/// database gets that version; an older one is copied and migrated step by step; a newer
/// one is refused. Returns the version found (`None` for a new database).
pub(crate) fn migrate(
    db: &redb::Database,
    path: &Path,
    steps: &[Migration],
) -> Result<Option<u64>, StoreError> {
    let target = steps.len() as u64 + 1;
    let found = {
        let txn = db.begin_read()?;
        stored_version(&Tx::Read(&txn))?
    };
    let Some(found) = found else {
        let txn = db.begin_write()?;
        {
            let sink = EventSink::default();
            let tx = Tx::Write(&txn, &sink);
            store_version(&tx, target)?;
        }
        txn.commit()?;
        return Ok(None);
    };
    if found > target {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: target,
        });
    }
    if found == target {
        return Ok(Some(found));
    }
    let copy = pre_migration_copy(path, found);
    super::copy_database(db, &copy)?;
    log::warn!(
        "migrating the database from schema {found} to {target}; a copy from before is in {}",
        copy.display()
    );
    for (index, step) in steps.iter().enumerate().skip((found - 1) as usize) {
        let next = index as u64 + 2;
        let txn = db.begin_write()?;
        {
            let sink = EventSink::default();
            let tx = Tx::Write(&txn, &sink);
            step(&tx)?;
            store_version(&tx, next)?;
        }
        txn.commit()?;
        log::info!("database migrated to schema {next}");
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Id;
    use crate::storage::tables::{Present, Table, CHANNEL_MESSAGE_SEQ_V1, GUILD_CHANNEL};
    use crate::storage::{Retention, Rows, Store};

    /// The fixture: a database written by the build before the first migration (schema 1),
    /// gzipped (1 MiB of mostly empty pages becomes 3 kB).
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema-1.redb.gz")
    }

    const RETENTION: Retention = Retention {
        max_events: 100,
        max_age_secs: 3600,
    };

    /// The fixture was written by the build of schema 1 (before the first migration, at
    /// commit 6d441e6) holding two guilds' channels (`GUILD_CHANNEL` (1, 10), (1, 11),
    /// (2, 20)) and three rows of schema 1's `channel_message_seq`.
    fn table_names(path: &Path) -> Vec<String> {
        use redb::ReadableDatabase;
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        txn.list_tables()
            .unwrap()
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect()
    }

    /// An index the test step fills: channel id ‖ guild id → (a reverse index).
    const CHANNEL_GUILD: Table<Present, crate::storage::keys::IdPair> =
        Table::new("test_channel_guild");

    /// A step as a real one would be: a new table filled from existing rows.
    fn fill_channel_guild(tx: &Tx) -> Result<(), StoreError> {
        for ((guild, channel), _) in tx.rows(GUILD_CHANNEL, Rows::all())? {
            tx.put(CHANNEL_GUILD, (channel, guild), &Present)?;
        }
        Ok(())
    }

    fn copy_fixture(dir: &Path) -> PathBuf {
        let path = dir.join("hearth.redb");
        let fixture = std::fs::File::open(fixture()).expect("tests/fixtures/schema-1.redb.gz");
        let mut out = std::fs::File::create(&path).unwrap();
        std::io::copy(&mut flate2::read::GzDecoder::new(fixture), &mut out).unwrap();
        path
    }

    #[test]
    fn this_build_opens_the_schema_1_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let path = copy_fixture(dir.path());
        assert!(table_names(&path).contains(&CHANNEL_MESSAGE_SEQ_V1.name.to_string()));
        let store = Store::open(&path, 1 << 20, 16, RETENTION).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let channels = store
            .read(|tx| tx.count(GUILD_CHANNEL, Rows::prefix(Id(1))))
            .unwrap();
        assert_eq!(channels, 2);
        drop(store);
        // Schema 2 keeps message numbers in the messages: the old table is gone.
        assert!(!table_names(&path).contains(&CHANNEL_MESSAGE_SEQ_V1.name.to_string()));
    }

    #[test]
    fn an_old_schema_is_copied_then_migrated_once_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = copy_fixture(dir.path());
        let original = std::fs::read(&path).unwrap();
        let steps: &[Migration] = &[counters_into_read_states, fill_channel_guild];
        let store = Store::open_with(&path, 1 << 20, 16, RETENTION, steps).unwrap();
        assert_eq!(store.schema_version().unwrap(), 3);
        let reverse: Vec<(u64, u64)> = store
            .read(|tx| tx.rows(CHANNEL_GUILD, Rows::all()))
            .unwrap()
            .into_iter()
            .map(|((c, g), _)| (c.0, g.0))
            .collect();
        assert_eq!(reverse, vec![(10, 1), (11, 1), (20, 2)]);
        // The copy from before holds schema 1 and opens as such.
        let copy = pre_migration_copy(&path, 1);
        assert!(copy.exists());
        drop(store);
        let old = Store::open_with(&copy, 1 << 20, 16, RETENTION, &[]).unwrap();
        assert_eq!(old.schema_version().unwrap(), 1);
        drop(old);
        // A second open runs nothing again (the copy is not rewritten).
        std::fs::remove_file(&copy).unwrap();
        let store = Store::open_with(&path, 1 << 20, 16, RETENTION, steps).unwrap();
        assert!(!copy.exists());
        drop(store);
        // This build (schema 2) refuses the file of schema 3, and leaves it as it was.
        let migrated = std::fs::read(&path).unwrap();
        assert_ne!(migrated, original);
        let refused = Store::open(&path, 1 << 20, 16, RETENTION).err().unwrap();
        assert!(matches!(
            refused,
            StoreError::SchemaTooNew {
                found: 3,
                supported: SCHEMA_VERSION
            }
        ));
        assert!(refused.to_string().contains("newer Hearth"), "{refused}");
    }

    #[test]
    fn a_failing_step_leaves_the_old_schema() {
        fn broken(_tx: &Tx) -> Result<(), StoreError> {
            Err(StoreError::Database("step failed".into()))
        }
        let dir = tempfile::tempdir().unwrap();
        let path = copy_fixture(dir.path());
        let steps: &[Migration] = &[broken];
        assert!(Store::open_with(&path, 1 << 20, 16, RETENTION, steps).is_err());
        let store = Store::open_with(&path, 1 << 20, 16, RETENTION, &[]).unwrap();
        assert_eq!(store.schema_version().unwrap(), 1);
    }
}
