//! The record store as an extension point: a node keeps its records in any
//! [`RecordStore`]; [`crate::MemoryStore`] (in memory, with limits and exact expiry) is the default.
//!
//! The trait is the store's whole face as the node uses it, so another store (on disk, with
//! other eviction rules) can take its place without the node changing. Like the rest of
//! kad-core it is sans-IO in spirit: every method gets the time it needs as an argument,
//! and a store must answer the same calls with the same results (iterate in key order, no
//! hash-map order), or a simulation stops replaying.

use std::time::Instant;

use crate::store::{Full, Kind, Record, Store};

/// Where a node keeps its records. See the [module docs](self).
///
/// The node calls it from one thread at a time; `Send` lets an adapter move the node into
/// a task. Methods mirror [`crate::MemoryStore`], whose docs say what each must do.
pub trait RecordStore: Send {
    /// Number of records held (expired ones may linger until [`RecordStore::expire`]).
    fn len(&self) -> usize;

    /// Is the store empty?
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The record for `key` if it has not expired at `now`.
    fn get(&self, now: Instant, key: &str) -> Option<&Record>;

    /// Stores or replaces the record of `key`, within the store's limits; [`Full`] when it
    /// does not fit. Replacing a record by itself (same value) must always succeed.
    /// `record.source` names the IP (IPv6 prefix) that sent it, for stores that keep
    /// per-source quotas as [`crate::MemoryStore`] does.
    fn put(&mut self, key: &str, record: Record) -> Result<(), Full>;

    /// Removes the record of `key`, returning it.
    fn remove(&mut self, key: &str) -> Option<Record>;

    /// Removes every record whose expiry is at or before `now`; returns how many.
    fn expire(&mut self, now: Instant) -> u64;

    /// Every record, in key order (expired ones included until [`RecordStore::expire`]).
    fn iter(&self) -> Box<dyn Iterator<Item = (&String, &Record)> + '_>;

    /// The earliest expiry of any record.
    fn next_expiry(&self) -> Option<Instant>;

    /// The earliest republish time of any record.
    fn next_republish(&self) -> Option<Instant>;

    /// Takes the record due for republishing first, if its time (at or before `now`) has
    /// come, and reschedules it at `next(kind)`; returns its key and record.
    fn take_due_republish(
        &mut self,
        now: Instant,
        next: &dyn Fn(Kind) -> Instant,
    ) -> Option<(String, Record)>;

    /// Moves the expiry of `key`'s record (a publisher renews its own record when it
    /// republishes). Does nothing when there is no such record.
    fn renew(&mut self, key: &str, expires: Instant);

    /// Bytes the records take by the store's own measure, if it keeps one
    /// ([`crate::MemoryStore`] counts keys and values as `max_store_bytes` does); for the
    /// `kad_store_bytes` metric.
    fn bytes(&self) -> Option<usize> {
        None
    }

    /// Checks the store's own invariants (limits kept, indexes in step), for tests and
    /// simulations; an error names the broken one.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

impl RecordStore for Store {
    fn len(&self) -> usize {
        Store::len(self)
    }

    fn get(&self, now: Instant, key: &str) -> Option<&Record> {
        Store::get(self, now, key)
    }

    fn bytes(&self) -> Option<usize> {
        Some(Store::bytes(self))
    }

    fn put(&mut self, key: &str, record: Record) -> Result<(), Full> {
        Store::put(self, key, record)
    }

    fn remove(&mut self, key: &str) -> Option<Record> {
        Store::remove(self, key)
    }

    fn expire(&mut self, now: Instant) -> u64 {
        Store::expire(self, now)
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&String, &Record)> + '_> {
        Box::new(Store::iter(self))
    }

    fn next_expiry(&self) -> Option<Instant> {
        Store::next_expiry(self)
    }

    fn next_republish(&self) -> Option<Instant> {
        Store::next_republish(self)
    }

    fn take_due_republish(
        &mut self,
        now: Instant,
        next: &dyn Fn(Kind) -> Instant,
    ) -> Option<(String, Record)> {
        Store::take_due_republish(self, now, next)
    }

    fn renew(&mut self, key: &str, expires: Instant) {
        Store::renew(self, key, expires)
    }

    fn check(&self) -> Result<(), String> {
        Store::check(self)
    }
}

/// A boxed store is a store: what a builder holds ([`crate::server::StoreSlot`]) can be
/// handed to [`crate::Node::with_store`].
impl<S: RecordStore + ?Sized> RecordStore for Box<S> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn is_empty(&self) -> bool {
        (**self).is_empty()
    }

    fn get(&self, now: Instant, key: &str) -> Option<&Record> {
        (**self).get(now, key)
    }

    fn put(&mut self, key: &str, record: Record) -> Result<(), Full> {
        (**self).put(key, record)
    }

    fn remove(&mut self, key: &str) -> Option<Record> {
        (**self).remove(key)
    }

    fn expire(&mut self, now: Instant) -> u64 {
        (**self).expire(now)
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&String, &Record)> + '_> {
        (**self).iter()
    }

    fn next_expiry(&self) -> Option<Instant> {
        (**self).next_expiry()
    }

    fn next_republish(&self) -> Option<Instant> {
        (**self).next_republish()
    }

    fn take_due_republish(
        &mut self,
        now: Instant,
        next: &dyn Fn(Kind) -> Instant,
    ) -> Option<(String, Record)> {
        (**self).take_due_republish(now, next)
    }

    fn renew(&mut self, key: &str, expires: Instant) {
        (**self).renew(key, expires)
    }

    fn bytes(&self) -> Option<usize> {
        (**self).bytes()
    }

    fn check(&self) -> Result<(), String> {
        (**self).check()
    }
}

#[cfg(test)]
// Tests need one real instant as a base; the code under test never reads the clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        Config, Event, MemoryStore, Node, NodeId, PutError, QueryResult, Snapshot, SnapshotRecord,
        Value,
    };

    /// A store that refuses every record: proves the node writes through the trait.
    struct Refusing;

    impl RecordStore for Refusing {
        fn len(&self) -> usize {
            0
        }
        fn get(&self, _: Instant, _: &str) -> Option<&Record> {
            None
        }
        fn put(&mut self, _: &str, _: Record) -> Result<(), Full> {
            Err(Full)
        }
        fn remove(&mut self, _: &str) -> Option<Record> {
            None
        }
        fn expire(&mut self, _: Instant) -> u64 {
            0
        }
        fn iter(&self) -> Box<dyn Iterator<Item = (&String, &Record)> + '_> {
            Box::new(std::iter::empty())
        }
        fn next_expiry(&self) -> Option<Instant> {
            None
        }
        fn next_republish(&self) -> Option<Instant> {
            None
        }
        fn take_due_republish(
            &mut self,
            _: Instant,
            _: &dyn Fn(Kind) -> Instant,
        ) -> Option<(String, Record)> {
            None
        }
        fn renew(&mut self, _: &str, _: Instant) {}
    }

    #[test]
    fn a_node_writes_and_reads_through_its_store() {
        let now = Instant::now();
        let id = NodeId::for_key("n");
        let mut refusing = Node::with_store(Config::default(), id, [1; 32], now, Refusing);
        assert_eq!(refusing.put(now, "k", "v"), Err(PutError::StoreFull));

        // A store that already holds a record (as a disk store would after a restart):
        // the node serves it at once, and it expires exactly when the store says.
        let mut held = MemoryStore::new(10, 1 << 20, 100);
        let record = Record {
            value: Value::from("kept"),
            kind: Kind::Replica,
            expires: now + Duration::from_secs(60),
            republish_at: None,
            source: None,
        };
        held.put("k", record).unwrap();
        let mut node = Node::with_store(Config::default(), id, [1; 32], now, held);
        assert_eq!(node.record_count(), 1);
        let q = node.get(now, "k").unwrap();
        let Some(Event::QueryFinished { id, result, .. }) = node.poll_event() else {
            panic!("a local get finishes at once");
        };
        assert_eq!(id, q);
        assert!(matches!(result, QueryResult::Get(Ok(Some(v))) if v == Value::from("kept")));
        let later = now + Duration::from_secs(60);
        node.handle_timeout(later);
        assert_eq!(node.get_local(later, "k"), None);
        assert_eq!(node.record_count(), 0);
        node.check_invariants().unwrap();
    }

    #[test]
    fn a_snapshot_restored_onto_a_store_adds_only_what_the_store_lacks() {
        let now = Instant::now();
        let record = |v: &str| Record {
            value: Value::from(v),
            kind: Kind::Replica,
            expires: now + Duration::from_secs(60),
            republish_at: None,
            source: None,
        };
        let mut store = MemoryStore::new(10, 1 << 20, 100);
        store.put("k", record("newer")).unwrap();
        let snapshot_record = |key: &str, v: &str| SnapshotRecord {
            key: key.into(),
            value: Value::from(v),
            kind: Kind::Replica,
            expires_in: Duration::from_secs(60),
            republish_in: None,
        };
        let snapshot = Snapshot {
            id: NodeId::for_key("n"),
            peers: Vec::new(),
            records: vec![
                snapshot_record("k", "older"),
                snapshot_record("j", "only here"),
            ],
        };
        let (node, left_out) =
            Node::restore_with_store(Config::default(), &snapshot, [1; 32], now, store);
        assert_eq!((node.id(), left_out), (snapshot.id, 0));
        assert_eq!(node.get_local(now, "k"), Some(Value::from("newer")));
        assert_eq!(node.get_local(now, "j"), Some(Value::from("only here")));
    }
}
