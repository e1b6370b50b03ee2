//! IPs that proved too many ids: one host presenting many identities (Sybils).
//!
//! Every answer to a request of ours, from the address it went to, proves one id at one
//! IP (an IPv6 prefix of `ipv6_prefix_len` bits). A host runs one node, or a few behind one
//! NAT; an IP at which more than `Config::max_ids_per_ip` distinct ids proved themselves
//! lately is **crowded**: a host placing ids where it likes (next to a key, to catch its
//! stores and outvote its replicas). A crowded IP loses all standing with us: its entries
//! leave the routing table and none join, lookups neither ask nor count it, its answers
//! count as failures and its stores are refused. Only proofs count, never claims: nobody
//! can make an honest IP look crowded without answering from it.
//!
//! Two generations of at most `max / 2` IPs each, like [`crate::verified`]'s: bounded,
//! ordered, O(log n). An IP is forgotten [`CROWD_FOR`] after its last proof (a crowded one
//! too: addresses change hands), or sooner when the young generation turns over.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::NodeId;

/// How long an IP's proofs count after the last one.
pub(crate) const CROWD_FOR: Duration = Duration::from_secs(3600);

/// Distinct ids remembered per IP: one more than any allowed `max_ids_per_ip` needs.
const TRACKED: usize = 8;

/// The ids proven at one IP: each (address, id) pair seen, one pair an address and one an
/// id. An id is its keyed fingerprint ([`Crowds::fingerprint`]); an address is its port
/// (IPv4) or its keyed fingerprint (an IPv6 prefix holds many addresses).
#[derive(Clone, Copy, Debug)]
struct Ids {
    seen: [(u64, u64); TRACKED],
    count: u8,
    at: Instant,
}

impl Ids {
    fn add(&mut self, addr: u64, id: u64) {
        let n = usize::from(self.count);
        for pair in &mut self.seen[..n] {
            // A new id at a known address is a restart there (a script that makes a new
            // node each run); a known id at a new address is the same node moved.
            if pair.0 == addr || pair.1 == id {
                *pair = (addr, id);
                return;
            }
        }
        if n < TRACKED {
            self.seen[n] = (addr, id);
            self.count += 1;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Crowds {
    young: BTreeMap<[u8; 8], Ids>,
    old: BTreeMap<[u8; 8], Ids>,
    half: usize,
    /// More distinct ids than this at one IP and it is crowded (0: nothing is).
    allowed: usize,
    /// Secret key of the fingerprints.
    key: [u8; 20],
    /// The latest time we were told of ([`Crowds::advance`], [`Crowds::prove`]): lookups
    /// ask without a clock at hand.
    clock: Option<Instant>,
}

impl Crowds {
    /// `key` is secret: ids that share any fixed bytes (Sybils next to one key share
    /// dozens of leading bits) still differ in their fingerprints, and nobody can make
    /// two ids collide without knowing it.
    pub fn new(max_ips: usize, allowed: usize, key: [u8; 20]) -> Crowds {
        Crowds {
            young: BTreeMap::new(),
            old: BTreeMap::new(),
            half: (max_ips / 2).max(1),
            allowed: allowed.min(TRACKED - 1),
            clock: None,
            key,
        }
    }

    fn fingerprint(&self, bytes: &[u8]) -> u64 {
        let digest = Sha1::new()
            .chain_update(self.key)
            .chain_update(bytes)
            .finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(b)
    }

    /// Time has come to `now`.
    pub fn advance(&mut self, now: Instant) {
        if self.clock.is_none_or(|c| c < now) {
            self.clock = Some(now);
        }
    }

    fn get(&self, ip: &[u8; 8], now: Instant) -> Option<&Ids> {
        self.young
            .get(ip)
            .or_else(|| self.old.get(ip))
            .filter(|ids| now.saturating_duration_since(ids.at) < CROWD_FOR)
    }

    /// `id` answered us from `addr`, counted under `ip`, at `now`. Returns true if that
    /// made the IP crowded (it was not before).
    pub fn prove(&mut self, ip: [u8; 8], addr: &SocketAddr, id: &NodeId, now: Instant) -> bool {
        self.advance(now);
        if self.allowed == 0 {
            return false;
        }
        let before = self.get(&ip, now).copied();
        let was = before.is_some_and(|ids| usize::from(ids.count) > self.allowed);
        let mut ids = before.unwrap_or(Ids {
            seen: [(0, 0); TRACKED],
            count: 0,
            at: now,
        });
        // A crowded IP stays so while it keeps proving ids: no need to tell them apart.
        if !was {
            let a = match addr {
                // The IP is the key: the port tells its addresses apart.
                SocketAddr::V4(a) => u64::from(a.port()),
                // Many addresses share a prefix: they are hashed, so that no two the
                // host chooses can pass for one.
                SocketAddr::V6(a) => {
                    let mut b = [0u8; 18];
                    b[..16].copy_from_slice(&a.ip().octets());
                    b[16..].copy_from_slice(&a.port().to_be_bytes());
                    self.fingerprint(&b)
                }
            };
            ids.add(a, self.fingerprint(&id.0));
        }
        ids.at = now;
        if self.young.len() >= self.half && !self.young.contains_key(&ip) {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&ip);
        self.young.insert(ip, ids);
        !was && usize::from(ids.count) > self.allowed
    }

    /// Has `ip` proved more than the allowed number of distinct ids lately?
    pub fn is_crowded(&self, ip: &[u8; 8]) -> bool {
        self.allowed > 0
            && self.clock.is_some_and(|now| {
                self.get(ip, now)
                    .is_some_and(|ids| usize::from(ids.count) > self.allowed)
            })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.young.len() > self.half || self.old.len() > self.half {
            return Err("crowd cache above its limit".into());
        }
        if self.young.keys().any(|a| self.old.contains_key(a)) {
            return Err("an IP in both crowd generations".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test needs some Instant to start from
mod tests {
    use super::*;

    /// Ids that share their first 19 bytes, as Sybils next to one key do.
    fn id(i: u8) -> NodeId {
        let mut b = [0x5a; 20];
        b[19] = i;
        NodeId(b)
    }

    const IP: [u8; 8] = [4, 10, 0, 0, 1, 0, 0, 0];

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_third_id_crowds_an_ip_and_it_expires() {
        let t0 = Instant::now();
        let mut c = Crowds::new(64, 2, [7; 20]);
        assert!(!c.prove(IP, &at(1), &id(1), t0));
        assert!(
            !c.prove(IP, &at(1), &id(1), t0),
            "the same id again is one id"
        );
        assert!(
            !c.prove(IP, &at(9), &id(1), t0),
            "the same id moved is one id"
        );
        assert!(!c.prove(IP, &at(2), &id(2), t0));
        assert!(!c.is_crowded(&IP), "two ids: a NAT, allowed");
        for restart in 10..20 {
            assert!(
                !c.prove(IP, &at(2), &id(restart), t0),
                "restarts at one address"
            );
        }
        assert!(!c.is_crowded(&IP));
        assert!(c.prove(IP, &at(3), &id(3), t0), "the third one crowds it");
        assert!(!c.prove(IP, &at(4), &id(4), t0), "already crowded");
        assert!(c.is_crowded(&IP));
        assert!(!c.is_crowded(&[4, 10, 0, 0, 2, 0, 0, 0]));
        c.advance(t0 + CROWD_FOR / 2);
        assert!(c.is_crowded(&IP));
        c.advance(t0 + CROWD_FOR);
        assert!(!c.is_crowded(&IP), "forgotten an hour after its last proof");
        c.check().unwrap();
    }

    #[test]
    fn zero_turns_it_off() {
        let t0 = Instant::now();
        let mut c = Crowds::new(64, 0, [7; 20]);
        for i in 0..20 {
            assert!(!c.prove(IP, &at(u16::from(i)), &id(i), t0));
        }
        assert!(!c.is_crowded(&IP));
        assert!(c.young.is_empty(), "nothing remembered when off");
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut c = Crowds::new(4, 1, [7; 20]);
        for i in 0..100u8 {
            c.prove([4, 10, 0, 0, i, 0, 0, 0], &at(1), &id(i), t0);
            c.check().unwrap();
            assert!(c.young.len() + c.old.len() <= 4);
        }
    }
}
