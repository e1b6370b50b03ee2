//! Stored records with exact expiry, republish schedule, and hard limits.
//!
//! Full-store policy: a new key is refused when the store is at `max_records` or
//! `max_store_bytes`, except that a cached copy (the cheapest thing to lose: it exists only to
//! shorten lookups) may be evicted to make room for a replica or our own record. Existing
//! replicas are never evicted by newcomers before they expire, so a stranger flooding us with
//! junk keys cannot push out the records we already hold; the flooder just gets no `set_res`.
//!
//! Per-source quotas: a record stored for another node remembers the IP it came from (an
//! IPv6 prefix counts as one), and one source may hold at most a share of the records and
//! bytes. A host flooding junk fills its share, not the store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::Value;

/// How we came to hold a record: published by us (republished every
/// `original_publisher_republish_interval`), a replica stored for another node by `set`
/// (re-replicated every `non_publisher_restore_interval`), or a cached copy from
/// `set_cached` (lives for the dynamic cache TTL, never republished).
pub use crate::snapshot::RecordKind as Kind;

/// The IP (or IPv6 prefix) a record came from, as the per-IP limits count it.
pub type Source = [u8; 8];

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
    /// Who stored it here, when that counts against a quota (`None`: ourselves, a
    /// snapshot, or an exempt address).
    pub source: Option<Source>,
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
    /// Records and bytes held per source.
    by_source: BTreeMap<Source, (usize, usize)>,
    /// Most records and bytes one source may hold.
    source_records: usize,
    source_bytes: usize,
}

/// Bytes a record costs beside its key and value: the record itself and an entry in each
/// of the indexes (by key, by expiry, by republish time).
const RECORD_OVERHEAD: usize = 160;

/// What a record really costs in memory: the key is held by three indexes.
fn cost(key: &str, value: &Value) -> usize {
    3 * key.len() + value.byte_len() + RECORD_OVERHEAD
}

impl Store {
    /// A store of at most `max_records` records and `max_bytes` bytes (as [`cost`] counts
    /// them), of which one source may hold `percent_per_source` percent.
    pub fn new(max_records: usize, max_bytes: usize, percent_per_source: usize) -> Store {
        // A small store still lets one source hold a useful number of records (at least
        // 64, or all of them): in a network of few nodes one publisher's keys all land on
        // every node.
        let share = |max: usize, floor: usize| {
            (max / 100)
                .saturating_mul(percent_per_source)
                .max(floor.min(max))
        };
        Store {
            max_records,
            max_bytes,
            source_records: share(max_records, 64),
            source_bytes: share(max_bytes, 1 << 20),
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

    /// Bytes held, as `max_store_bytes` counts them (each key three times, plus 160 bytes
    /// of bookkeeping a record).
    pub fn bytes(&self) -> usize {
        self.bytes
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
        if let Some(src) = record.source {
            let (n, b) = self.by_source.get(&src).copied().unwrap_or((0, 0));
            let (old_n, old_b) = match self.records.get(key) {
                Some(r) if r.source == Some(src) => (1, old_cost),
                _ => (0, 0),
            };
            if n - old_n >= self.source_records || b - old_b + new_cost > self.source_bytes {
                return Err(Full);
            }
        }
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
        if let Some(src) = record.source {
            let e = self.by_source.entry(src).or_insert((0, 0));
            e.0 += 1;
            e.1 += new_cost;
        }
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
        let c = cost(&k, &r.value);
        self.bytes -= c;
        if let Some(src) = r.source {
            if let Some(e) = self.by_source.get_mut(&src) {
                e.0 -= 1;
                e.1 -= c;
                if e.0 == 0 {
                    self.by_source.remove(&src);
                }
            }
        }
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
        // Look before taking: this runs after every datagram a node handles, and a
        // clone of the key allocated each time.
        let &(at, _) = self.republish.first()?;
        if at > now {
            return None;
        }
        let (_, key) = self.republish.pop_first()?;
        let record = self.records.get_mut(&key)?;
        let again = next(record.kind);
        record.republish_at = Some(again);
        self.republish.insert((again, key.clone()));
        Some((key, record.clone()))
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
        let mut by_source: BTreeMap<Source, (usize, usize)> = BTreeMap::new();
        for (k, r) in &self.records {
            if let Some(src) = r.source {
                let e = by_source.entry(src).or_insert((0, 0));
                e.0 += 1;
                e.1 += cost(k, &r.value);
            }
        }
        if by_source != self.by_source {
            return Err("per-source counts out of step".into());
        }
        if by_source
            .values()
            .any(|&(n, b)| n > self.source_records || b > self.source_bytes)
        {
            return Err("a source above its quota".into());
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
            source: None,
        }
    }

    #[test]
    fn full_store_refuses_new_keys_but_evicts_cached_for_replicas() {
        let now = Instant::now();
        let mut s = Store::new(2, 1 << 20, 100);
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
        let mut s = Store::new(10, 1 << 20, 100);
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
        let mut s = Store::new(100, RECORD_OVERHEAD + 10, 100);
        s.put("k", rec(Kind::Replica, now, 10)).unwrap(); // 3 + 1 + overhead
        let big = Record {
            value: Value::from("123456789"),
            ..rec(Kind::Replica, now, 10)
        };
        assert_eq!(s.put("x", big), Err(Full));
        s.check().unwrap();
    }

    #[test]
    fn one_source_holds_at_most_its_share() {
        let now = Instant::now();
        let mut s = Store::new(1000, 1 << 30, 1);
        s.source_records = 10;
        let flooder = Some([4, 10, 0, 0, 1, 0, 0, 0]);
        let honest = Some([4, 10, 0, 0, 2, 0, 0, 0]);
        let from = |src| Record {
            source: src,
            ..rec(Kind::Replica, now, 10)
        };
        let stored = (0..50)
            .filter(|i| s.put(&format!("junk{i}"), from(flooder)).is_ok())
            .count();
        assert_eq!(stored, 10, "its quota");
        // Replacing one of its own keys is still allowed; the honest source has its share.
        s.put("junk3", from(flooder)).unwrap();
        s.put("mine", from(honest)).unwrap();
        // A key taken over by another source moves from one share to the other.
        s.put("junk4", from(honest)).unwrap();
        s.put("junk99", from(flooder)).unwrap();
        s.check().unwrap();
        s.remove("junk99");
        s.expire(now + Duration::from_secs(10));
        assert_eq!(s.len(), 0);
        s.check().unwrap();
    }
}
