//! [`RedbStore`]: a [`RecordStore`] that keeps a node's records on disk, in a redb database.
//!
//! The node lends records out by reference ([`RecordStore::get`] returns `&Record`), so
//! every record is also held in memory, in a [`MemoryStore`] that keeps the limits, the
//! per-source quotas and the expiry and republish schedules; redb holds the same records
//! on disk. Every change is written through at once, in its own transaction (redb syncs
//! each commit), so a node killed at any moment keeps every record it acknowledged, where
//! a state file keeps what it held at its last write. Opening the database loads what it
//! holds: a node built on it serves those records at once.
//!
//! A record's times are `Instant`s, which mean nothing after a restart: on disk they are
//! wall-clock milliseconds since the Unix epoch, turned back into `Instant`s when the
//! database is opened (the time a node was down counts against its records' lifetime).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kad_tokio::{MemoryStore, Record, RecordKind, RecordStore, StoreFull, Value};
use redb::{Database, ReadableTable, TableDefinition};

/// One record on disk: kind, expiry and republish time (Unix ms), the source it counts
/// against, whether the value is text, and the value's bytes.
type Row<'a> = (u8, u64, Option<u64>, Option<[u8; 8]>, bool, &'a [u8]);

/// The records, by key.
const RECORDS: TableDefinition<&str, Row<'static>> = TableDefinition::new("records");

/// What opening or writing the database can fail with (redb has an error type per step).
pub type DbError = Box<dyn std::error::Error + Send + Sync>;

/// A node's records in memory and in a redb database (see the [module docs](self)).
pub struct RedbStore {
    db: Database,
    memory: MemoryStore,
    /// One moment read from both clocks: how `Instant`s and wall-clock times convert.
    clock: (Instant, SystemTime),
}

impl RedbStore {
    /// Opens (or creates) the database at `path` and loads its unexpired records, within
    /// `max_records` records and `max_bytes` bytes (`percent_per_source` percent for one
    /// source IP), as the in-memory store would hold them. Records past their expiry, or
    /// beyond the limits, are deleted from the file.
    pub fn open(
        path: impl AsRef<Path>,
        max_records: usize,
        max_bytes: usize,
        percent_per_source: usize,
    ) -> Result<RedbStore, DbError> {
        let db = Database::create(path)?;
        let mut store = RedbStore {
            db,
            memory: MemoryStore::new(max_records, max_bytes, percent_per_source),
            clock: (Instant::now(), SystemTime::now()),
        };
        let txn = store.db.begin_write()?;
        {
            let mut table = txn.open_table(RECORDS)?;
            let mut gone = Vec::new();
            for row in table.iter()? {
                let (key, row) = row?;
                let key = key.value().to_owned();
                let record = store.record(row.value());
                if record.expires <= store.clock.0 || store.memory.put(&key, record).is_err() {
                    gone.push(key);
                }
            }
            for key in gone {
                table.remove(key.as_str())?;
            }
        }
        txn.commit()?;
        Ok(store)
    }

    /// `at` on the wall clock, in milliseconds since the Unix epoch.
    fn unix_ms(&self, at: Instant) -> u64 {
        let (base, wall) = self.clock;
        let ms = |w: SystemTime| {
            let since = w.duration_since(UNIX_EPOCH).unwrap_or_default();
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        };
        match at.checked_duration_since(base) {
            Some(ahead) => wall.checked_add(ahead).map_or(u64::MAX, ms),
            None => wall.checked_sub(base - at).map_or(0, ms),
        }
    }

    /// The `Instant` of `ms` milliseconds since the Unix epoch (the past clamps to the
    /// moment the database was opened: it has passed).
    fn instant(&self, ms: u64) -> Instant {
        let (base, wall) = self.clock;
        let now_ms = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let ahead = Duration::from_millis(ms).saturating_sub(now_ms);
        // Beyond what an `Instant` holds is as good as never.
        base.checked_add(ahead)
            .unwrap_or_else(|| base + Duration::from_secs(100 * 365 * 86_400))
    }

    fn row<'a>(&self, r: &'a Record) -> Row<'a> {
        let kind = match r.kind {
            RecordKind::Published => 0,
            RecordKind::Replica => 1,
            RecordKind::Cached => 2,
        };
        let (text, bytes) = match &r.value {
            Value::Text(s) => (true, s.as_bytes()),
            Value::Bytes(b) => (false, &b[..]),
        };
        let republish = r.republish_at.map(|t| self.unix_ms(t));
        (
            kind,
            self.unix_ms(r.expires),
            republish,
            r.source,
            text,
            bytes,
        )
    }

    fn record(&self, row: Row<'_>) -> Record {
        let (kind, expires, republish, source, text, bytes) = row;
        let kind = match kind {
            0 => RecordKind::Published,
            1 => RecordKind::Replica,
            _ => RecordKind::Cached,
        };
        let value = match text {
            true => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
            false => Value::Bytes(Bytes::copy_from_slice(bytes)),
        };
        Record {
            value,
            kind,
            expires: self.instant(expires),
            republish_at: republish.map(|ms| self.instant(ms)),
            source,
        }
    }

    /// Writes `key`'s record to disk, or deletes it (`None`), in one transaction.
    fn write(&self, changes: &[(&str, Option<&Record>)]) {
        let written = (|| -> Result<(), DbError> {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(RECORDS)?;
                for (key, record) in changes {
                    match record {
                        Some(r) => table.insert(*key, self.row(r))?,
                        None => table.remove(*key)?,
                    };
                }
            }
            txn.commit()?;
            Ok(())
        })();
        // The trait has no room for an I/O error: the node goes on with the record in
        // memory, and the disk catches up at the record's next change.
        if let Err(e) = written {
            tracing::warn!("record store: write failed: {e}");
        }
    }
}

impl RecordStore for RedbStore {
    fn len(&self) -> usize {
        self.memory.len()
    }

    fn get(&self, now: Instant, key: &str) -> Option<&Record> {
        self.memory.get(now, key)
    }

    fn put(&mut self, key: &str, record: Record) -> Result<(), StoreFull> {
        self.memory.put(key, record.clone())?;
        self.write(&[(key, Some(&record))]);
        Ok(())
    }

    fn remove(&mut self, key: &str) -> Option<Record> {
        let record = self.memory.remove(key)?;
        self.write(&[(key, None)]);
        Some(record)
    }

    fn expire(&mut self, now: Instant) -> u64 {
        if self.memory.next_expiry().is_none_or(|t| t > now) {
            return 0;
        }
        // Something expires: find what, to delete it from the disk too.
        let gone: Vec<String> = self
            .memory
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let count = self.memory.expire(now);
        let changes: Vec<(&str, Option<&Record>)> =
            gone.iter().map(|k| (k.as_str(), None)).collect();
        self.write(&changes);
        count
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&String, &Record)> + '_> {
        Box::new(self.memory.iter())
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.memory.next_expiry()
    }

    fn next_republish(&self) -> Option<Instant> {
        self.memory.next_republish()
    }

    fn take_due_republish(
        &mut self,
        now: Instant,
        next: &dyn Fn(RecordKind) -> Instant,
    ) -> Option<(String, Record)> {
        let (key, record) = self.memory.take_due_republish(now, next)?;
        // Its next republish time is part of the record: a restart keeps the schedule.
        self.write(&[(&key, Some(&record))]);
        Some((key, record))
    }

    fn renew(&mut self, key: &str, expires: Instant) {
        self.memory.renew(key, expires);
        // The record in memory is the one to write; its lookup by key is a scan.
        let renewed = self.memory.iter().find(|(k, _)| *k == key).map(|(_, r)| r);
        if let Some(record) = renewed {
            self.write(&[(key, Some(record))]);
        }
    }

    fn check(&self) -> Result<(), String> {
        self.memory.check()
    }
}
