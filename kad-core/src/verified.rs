//! Addresses that proved they are what they claim: they answered one of our requests from
//! the address it went to. Such a sender gets full replies at once; any other sender's
//! large reply waits for a verification ping (see `Core::reply`).
//!
//! Two generations of at most `max / 2` entries each: when the young one fills, it becomes
//! the old one and the old one is forgotten. Bounded, ordered (no hash iteration) and
//! O(log n), at the price of forgetting an address somewhere between `max / 2` and `max`
//! newer verifications later, which only costs that address one extra round trip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a verification counts: after this the address must answer again (addresses
/// change hands behind NATs).
pub(crate) const VERIFIED_FOR: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub(crate) struct Verified {
    young: BTreeMap<SocketAddr, Instant>,
    old: BTreeMap<SocketAddr, Instant>,
    half: usize,
}

impl Verified {
    pub fn new(max: usize) -> Self {
        Verified {
            young: BTreeMap::new(),
            old: BTreeMap::new(),
            half: (max / 2).max(1),
        }
    }

    /// `addr` answered us at `now`.
    pub fn insert(&mut self, addr: SocketAddr, now: Instant) {
        if self.young.len() >= self.half && !self.young.contains_key(&addr) {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&addr);
        self.young.insert(addr, now);
    }

    /// Did `addr` answer us within the last [`VERIFIED_FOR`]?
    pub fn contains(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.young
            .get(addr)
            .or_else(|| self.old.get(addr))
            .is_some_and(|t| now.saturating_duration_since(*t) < VERIFIED_FOR)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn check(&self) -> Result<(), String> {
        if self.young.len() > self.half || self.old.len() > self.half {
            return Err("verified-address cache above its limit".into());
        }
        if self.young.keys().any(|a| self.old.contains_key(a)) {
            return Err("an address in both verified generations".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some Instant to start from
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    #[test]
    fn bounded_and_expiring() {
        let t0 = Instant::now();
        let mut v = Verified::new(4);
        for i in 0..10 {
            v.insert(addr(i), t0);
            v.check().unwrap();
            assert!(v.len() <= 4);
            assert!(v.contains(&addr(i), t0));
        }
        // The two newest generations survive; the first addresses are forgotten.
        assert!(v.contains(&addr(9), t0) && v.contains(&addr(6), t0));
        assert!(!v.contains(&addr(0), t0));
        assert!(!v.contains(&addr(9), t0 + VERIFIED_FOR));
        // Renewing an old entry moves it to the young generation.
        v.insert(addr(7), t0);
        v.check().unwrap();
        assert!(v.contains(&addr(7), t0));
    }
}
