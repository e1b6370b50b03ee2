//! Stored records with exact expiry, republish schedule, and hard limits.
//!
//! Full-store policy: a new key is refused when the store is at `max_records` or
//! `max_store_bytes`, except that a cached copy (the cheapest thing to lose: it exists only to
//! shorten lookups) may be evicted to make room for a replica or our own record. Existing
//! replicas are never evicted by newcomers before they expire, so a stranger flooding us with
//! junk keys cannot push out the records we already hold; the flooder just gets no `set_res`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::Value;

/// How we came to hold a record: published by us (republished every
/// `original_publisher_republish_interval`), a replica stored for another node by `set`
/// (re-replicated every `non_publisher_restore_interval`), or a cached copy from
/// `set_cached` (lives for the dynamic cache TTL, never republished).
pub use crate::snapshot::RecordKind as Kind;

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The value.
    pub value: Value,
    /// Published, replica or cached.
    pub kind: Kind,
    /// When it expires: [`crate::RecordStore::get`] no longer returns it from this instant.
    pub expires: Instant,
    /// When it is next republished (or restored), if it is.
    pub republish_at: Option<Instant>,
}

/// The store refused a record (it is at its record or byte limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the record store is full")]
pub struct Full;

/// The default [`crate::RecordStore`]: records in memory with exact expiry, at most
/// `max_records` records and `max_store_bytes` bytes of keys and values.
#[derive(Debug, Default)]
pub struct Store {
    records: BTreeMap<String, Record>,
    expiry: BTreeSet<(Instant, String)>,
    republish: BTreeSet<(Instant, String)>,
    cached: BTreeSet<(Instant, String)>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
}

fn cost(key: &str, value: &Value) -> usize {
    key.len() + value.byte_len()
}

impl Store {
    /// An empty store holding at most `max_records` records and `max_bytes` bytes of keys
    /// and values.
    pub fn new(max_records: usize, max_bytes: usize) -> Store {
        Store {
            max_records,
            max_bytes,
            ..Store::default()
        }
    }

    /// Number of records held (expired ones linger until [`Store::expire`]).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Does the store hold no record?
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record for `key` if it has not expired.
    pub fn get(&self, now: Instant, key: &str) -> Option<&Record> {
        self.records.get(key).filter(|r| now < r.expires)
    }

    /// Stores or replaces a record, keeping the limits.
    pub fn put(&mut self, key: &str, record: Record) -> Result<(), Full> {
        let new_cost = cost(key, &record.value);
        let old_cost = self.records.get(key).map_or(0, |r| cost(key, &r.value));
        let is_new = old_cost == 0 && !self.records.contains_key(key);
        loop {
            let records_ok = !is_new || self.records.len() < self.max_records;
            let bytes_ok = self.bytes - old_cost + new_cost <= self.max_bytes;
            if records_ok && bytes_ok {
                break;
            }
            // Only a replica or our own record may push out a cached copy, never the
            // copy being replaced.
            if record.kind == Kind::Cached || !self.evict_one_cached(key) {
                return Err(Full);
            }
        }
        self.remove(key);
        self.bytes += new_cost;
        self.expiry.insert((record.expires, key.to_owned()));
        if let Some(at) = record.republish_at {
            self.republish.insert((at, key.to_owned()));
        }
        if record.kind == Kind::Cached {
            self.cached.insert((record.expires, key.to_owned()));
        }
        self.records.insert(key.to_owned(), record);
        Ok(())
    }

    fn evict_one_cached(&mut self, except: &str) -> bool {
        let victim = self
            .cached
            .iter()
            .find(|(_, k)| k != except)
            .map(|(_, k)| k.clone());
        match victim {
            Some(k) => {
                self.remove(&k);
                true
            }
            None => false,
        }
    }

    /// Removes a record and its index entries.
    pub fn remove(&mut self, key: &str) -> Option<Record> {
        let (k, r) = self.records.remove_entry(key)?;
        self.bytes -= cost(&k, &r.value);
        self.expiry.remove(&(r.expires, k.clone()));
        if let Some(at) = r.republish_at {
            self.republish.remove(&(at, k.clone()));
        }
        if r.kind == Kind::Cached {
            self.cached.remove(&(r.expires, k));
        }
        Some(r)
    }

    /// Removes every record whose time is up; returns how many.
    pub fn expire(&mut self, now: Instant) -> u64 {
        let mut n = 0;
        while let Some((at, key)) = self.expiry.first().cloned() {
            if at > now {
                break;
            }
            self.remove(&key);
            n += 1;
        }
        n
    }

    /// All records, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Record)> {
        self.records.iter()
    }

    /// The earliest expiry of any record.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// The earliest republish time of any record.
    pub fn next_republish(&self) -> Option<Instant> {
        self.republish.first().map(|(t, _)| *t)
    }

    /// Takes the next record due for republishing at `now`, rescheduled at `next(kind)`.
    pub fn take_due_republish(
        &mut self,
        now: Instant,
        next: impl Fn(Kind) -> Instant,
    ) -> Option<(String, Record)> {
        let (at, key) = self.republish.first().cloned()?;
        if at > now {
            return None;
        }
        self.republish.pop_first();
        let record = self.records.get_mut(&key)?;
        let again = next(record.kind);
        record.republish_at = Some(again);
        self.republish.insert((again, key.clone()));
        Some((key.clone(), record.clone()))
    }

    /// Moves a record's expiry (a publisher renews its own record when it republishes).
    pub fn renew(&mut self, key: &str, expires: Instant) {
        let Some(r) = self.records.get_mut(key) else {
            return;
        };
        self.expiry.remove(&(r.expires, key.to_owned()));
        r.expires = expires;
        self.expiry.insert((expires, key.to_owned()));
    }

    /// Checks the limits and that the indexes agree with the records.
    pub fn check(&self) -> Result<(), String> {
        if self.records.len() > self.max_records {
            return Err(format!(
                "{} records > max {}",
                self.records.len(),
                self.max_records
            ));
        }
        if self.bytes > self.max_bytes {
            return Err(format!("{} bytes > max {}", self.bytes, self.max_bytes));
        }
        let bytes: usize = self.records.iter().map(|(k, r)| cost(k, &r.value)).sum();
        if bytes != self.bytes || self.expiry.len() != self.records.len() {
            return Err("store indexes out of step".into());
        }
        Ok(())
    }
}

#[cfg(test)]
// Tests need one real instant as a base; the code under test never reads the clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(kind: Kind, now: Instant, secs: u64) -> Record {
        Record {
            value: Value::from("v"),
            kind,
            expires: now + Duration::from_secs(secs),
            republish_at: None,
        }
    }

    #[test]
    fn full_store_refuses_new_keys_but_evicts_cached_for_replicas() {
        let now = Instant::now();
        let mut s = Store::new(2, 1 << 20);
        s.put("a", rec(Kind::Replica, now, 10)).unwrap();
        s.put("b", rec(Kind::Cached, now, 10)).unwrap();
        assert_eq!(s.put("c", rec(Kind::Cached, now, 10)), Err(Full));
        s.put("c", rec(Kind::Replica, now, 10)).unwrap();
        assert!(s.get(now, "b").is_none(), "the cached copy made room");
        assert_eq!(s.put("d", rec(Kind::Replica, now, 10)), Err(Full));
        // Replacing an existing key is always allowed.
        s.put("a", rec(Kind::Replica, now, 20)).unwrap();
        s.check().unwrap();
    }

    #[test]
    fn records_expire_exactly() {
        let now = Instant::now();
        let mut s = Store::new(10, 1 << 20);
        s.put("a", rec(Kind::Replica, now, 10)).unwrap();
        assert!(s.get(now + Duration::from_millis(9999), "a").is_some());
        assert!(s.get(now + Duration::from_secs(10), "a").is_none());
        assert_eq!(s.expire(now + Duration::from_secs(9)), 0);
        assert_eq!(s.expire(now + Duration::from_secs(10)), 1);
        assert_eq!(s.len(), 0);
        s.check().unwrap();
    }

    #[test]
    fn byte_limit_holds() {
        let now = Instant::now();
        let mut s = Store::new(100, 10);
        s.put("k", rec(Kind::Replica, now, 10)).unwrap(); // 2 bytes
        let big = Record {
            value: Value::from("123456789"),
            ..rec(Kind::Replica, now, 10)
        };
        assert_eq!(s.put("x", big), Err(Full));
        s.check().unwrap();
    }
}
