//! Addresses that proved who they are: they answered one of our requests from the address
//! it went to, with the id they now claim. Such a sender's stores are accepted and its
//! large replies drawn from a per-address allowance; any other sender's large reply or
//! store waits for a verification ping (see `Core::reply`).
//!
//! Two generations of at most `max / 2` entries each: when the young one fills, it becomes
//! the old one and the old one is forgotten. Bounded, ordered (no hash iteration) and
//! O(log n), at the price of forgetting an address somewhere between `max / 2` and `max`
//! newer verifications later, which only costs that address one extra round trip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::NodeId;

/// How long a verification counts: after this the address must answer again (addresses
/// change hands behind NATs).
pub(crate) const VERIFIED_FOR: Duration = Duration::from_secs(3600);

/// One proven address: the id that answered from it, when, and what is left of its reply
/// allowance (bytes beyond the per-request factor that replies to it may take).
#[derive(Clone, Copy, Debug)]
struct Proof {
    id: NodeId,
    at: Instant,
    tokens: u32,
    refilled: Instant,
}

#[derive(Debug)]
pub(crate) struct Verified {
    young: BTreeMap<SocketAddr, Proof>,
    old: BTreeMap<SocketAddr, Proof>,
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

    /// `addr` answered us at `now` as `id`. Its allowance carries over (a renewed proof
    /// is no new allowance: else answering pings would refill it at will).
    pub fn insert(&mut self, addr: SocketAddr, id: NodeId, now: Instant, allowance: u32) {
        let known = self
            .young
            .get(&addr)
            .or_else(|| self.old.get(&addr))
            .copied();
        if self.young.len() >= self.half && !self.young.contains_key(&addr) {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&addr);
        let (tokens, refilled) = known.map_or((allowance, now), |p| (p.tokens, p.refilled));
        self.young.insert(
            addr,
            Proof {
                id,
                at: now,
                tokens,
                refilled,
            },
        );
    }

    fn get(&self, addr: &SocketAddr, now: Instant) -> Option<&Proof> {
        self.young
            .get(addr)
            .or_else(|| self.old.get(addr))
            .filter(|p| now.saturating_duration_since(p.at) < VERIFIED_FOR)
    }

    /// Did `addr` answer us within the last [`VERIFIED_FOR`]?
    pub fn contains(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.get(addr, now).is_some()
    }

    /// The id that answered from `addr` within the last [`VERIFIED_FOR`].
    pub fn id_of(&self, addr: &SocketAddr, now: Instant) -> Option<NodeId> {
        self.get(addr, now).map(|p| p.id)
    }

    /// Takes `bytes` from `addr`'s allowance, a token bucket of `allowance` bytes that
    /// refills in `window`. False (nothing taken) when it has not that much left or the
    /// address is not here.
    pub fn spend(
        &mut self,
        addr: &SocketAddr,
        now: Instant,
        bytes: usize,
        allowance: u32,
        window: Duration,
    ) -> bool {
        let Some(proof) = self.refilled(addr, now, allowance, window) else {
            return false;
        };
        let Ok(bytes) = u32::try_from(bytes) else {
            return false;
        };
        if proof.tokens < bytes {
            return false;
        }
        proof.tokens -= bytes;
        true
    }

    /// What is left of `addr`'s allowance at `now` (see [`Verified::spend`]), taking
    /// nothing; `None` when the address is not here or its proof is older than
    /// [`VERIFIED_FOR`] (`contains` says no: a caller that spends renews the proof first).
    /// It refills the bucket as `spend` does, so asking first and spending after is the
    /// same as spending.
    pub fn tokens(
        &mut self,
        addr: &SocketAddr,
        now: Instant,
        allowance: u32,
        window: Duration,
    ) -> Option<u32> {
        if !self.contains(addr, now) {
            return None;
        }
        self.refilled(addr, now, allowance, window)
            .map(|p| p.tokens)
    }

    /// `addr`'s proof, its allowance refilled for the time since it last was.
    fn refilled(
        &mut self,
        addr: &SocketAddr,
        now: Instant,
        allowance: u32,
        window: Duration,
    ) -> Option<&mut Proof> {
        let proof = match self.young.get_mut(addr) {
            Some(p) => p,
            None => self.old.get_mut(addr)?,
        };
        let elapsed = now.saturating_duration_since(proof.refilled);
        let window_ns = window.as_nanos().max(1);
        let refill = u128::from(allowance) * elapsed.as_nanos() / window_ns;
        if refill > 0 {
            let tokens = (u128::from(proof.tokens) + refill).min(u128::from(allowance));
            proof.tokens = u32::try_from(tokens).unwrap_or(allowance);
            proof.refilled = now;
        }
        Some(proof)
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
        let id = NodeId::default();
        let mut v = Verified::new(4);
        for i in 0..10 {
            v.insert(addr(i), id, t0, 100);
            v.check().unwrap();
            assert!(v.len() <= 4);
            assert!(v.contains(&addr(i), t0));
        }
        // The two newest generations survive; the first addresses are forgotten.
        assert!(v.contains(&addr(9), t0) && v.contains(&addr(6), t0));
        assert!(!v.contains(&addr(0), t0));
        assert!(!v.contains(&addr(9), t0 + VERIFIED_FOR));
        // Renewing an old entry moves it to the young generation.
        v.insert(addr(7), id, t0, 100);
        v.check().unwrap();
        assert!(v.contains(&addr(7), t0));
    }

    /// An expired proof has no allowance to ask about: the caller must renew it first
    /// (`insert`), as it does before it spends.
    #[test]
    fn an_expired_proof_tells_no_tokens() {
        let t0 = Instant::now();
        let mut v = Verified::new(4);
        let window = Duration::from_secs(60);
        v.insert(addr(1), NodeId::default(), t0, 100);
        assert_eq!(v.tokens(&addr(1), t0, 100, window), Some(100));
        assert!(v.spend(&addr(1), t0, 100, 100, window));
        assert_eq!(v.tokens(&addr(1), t0, 100, window), Some(0));
        assert_eq!(v.tokens(&addr(1), t0 + VERIFIED_FOR, 100, window), None);
        assert_eq!(v.tokens(&addr(2), t0, 100, window), None);
    }

    #[test]
    fn allowance_is_spent_refills_and_survives_reproof() {
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let mut v = Verified::new(8);
        assert!(!v.spend(&addr(1), t0, 1, 1000, w), "unknown address");
        v.insert(addr(1), NodeId::default(), t0, 1000);
        assert!(v.spend(&addr(1), t0, 600, 1000, w));
        assert!(!v.spend(&addr(1), t0, 600, 1000, w), "only 400 left");
        // Proving the address again does not refill it.
        v.insert(addr(1), NodeId::default(), t0, 1000);
        assert!(!v.spend(&addr(1), t0, 600, 1000, w));
        // Half a window later, half the allowance is back.
        assert!(v.spend(&addr(1), t0 + w / 2, 900, 1000, w));
        assert!(!v.spend(&addr(1), t0 + w / 2, 1, 1000, w));
    }
}
