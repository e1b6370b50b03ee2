//! One k-bucket: live entries in least-recently-seen order plus a replacement cache.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Instant;

use crate::{NodeId, Peer};

/// The IPv6 addresses of a table's entries, kept aside so that an entry holds four bytes
/// of IP: an IPv6 entry holds the index of its slot here instead. Slots are not freed one by
/// one; when they reach twice the number in use, [`V6Addrs::compact`] rebuilds the list from
/// the entries that still point into it.
#[derive(Clone, Debug, Default)]
pub(crate) struct V6Addrs {
    /// IP and scope id (a link-local peer needs it). The flow label is not kept: a peer's
    /// address on the wire has none.
    slots: Vec<([u8; 16], u32)>,
}

impl V6Addrs {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    fn push(&mut self, ip: [u8; 16], scope: u32) -> u32 {
        self.slots.push((ip, scope));
        // A table holds far fewer than 2^32 entries; `compact` keeps the list near that.
        u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
    }

    /// Does `e`'s slot exist?
    pub fn holds(&self, e: &Entry) -> bool {
        usize::try_from(e.slot()).is_ok_and(|i| i < self.slots.len())
    }

    fn get(&self, slot: u32) -> ([u8; 16], u32) {
        usize::try_from(slot)
            .ok()
            .and_then(|i| self.slots.get(i))
            .copied()
            .unwrap_or(([0; 16], 0))
    }

    /// Rebuilds the list with only the slots `entries` point to, in their order, and points
    /// them at their new slots.
    pub fn compact<'a>(&mut self, entries: impl Iterator<Item = &'a mut Entry>) {
        let mut slots = Vec::new();
        for e in entries.filter(|e| e.is_v6()) {
            slots.push(self.get(e.slot()));
            e.ip = u32::try_from(slots.len() - 1)
                .unwrap_or(u32::MAX)
                .to_le_bytes();
        }
        self.slots = slots;
    }
}

/// Bits of [`Entry::state`].
const FAILURES: u16 = 0x3ff;
const PINGING: u16 = 1 << 10;
const VERIFIED: u16 = 1 << 11;
const V6: u16 = 1 << 12;

/// A peer in the routing table, in 32 bytes: its id, an IPv4 address and port (or the port
/// and the slot of its IPv6 address in the table's [`V6Addrs`]), when it was last heard
/// from, and its state in one 16-bit word. Tables of a few hundred entries (and as many
/// replacements) are most of a node's memory, so the bytes matter to a 100,000-node
/// simulation: a `Peer` alone is 52 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: NodeId,
    /// The IPv4 octets, or the little-endian slot of an IPv6 address.
    ip: [u8; 4],
    port: u16,
    /// When it was last heard from, in whole seconds since the table's epoch (rounded
    /// down; `u32` seconds last 136 years).
    pub seen: u32,
    /// Consecutive failed requests (bits 0 to 9: the limit is at most 1000,
    /// `Config::failures_before_eviction`), whether a liveness ping is in flight, whether
    /// it has answered one of our requests from its address (so it owns that address), and
    /// whether its address is IPv6.
    state: u16,
}

impl Entry {
    /// A new entry for `peer`; an IPv6 address takes a slot in `v6`.
    pub fn new(peer: Peer, seen: u32, v6: &mut V6Addrs) -> Entry {
        let (ip, state) = match peer.addr {
            SocketAddr::V4(a) => (a.ip().octets(), 0),
            SocketAddr::V6(a) => (v6.push(a.ip().octets(), a.scope_id()).to_le_bytes(), V6),
        };
        Entry {
            id: peer.id,
            ip,
            port: peer.addr.port(),
            seen,
            state,
        }
    }

    fn slot(&self) -> u32 {
        u32::from_le_bytes(self.ip)
    }

    /// Was it an IPv6 socket address (a mapped IPv4 one included)?
    pub fn is_v6(&self) -> bool {
        self.state & V6 != 0
    }

    /// The IPv4 octets of an IPv4 socket address.
    pub fn v4(&self) -> Option<[u8; 4]> {
        (!self.is_v6()).then_some(self.ip)
    }

    /// The IP as 16 bytes (an IPv4 address mapped into IPv6).
    pub fn ip16(&self, v6: &V6Addrs) -> [u8; 16] {
        if self.is_v6() {
            v6.get(self.slot()).0
        } else {
            Ipv4Addr::from(self.ip).to_ipv6_mapped().octets()
        }
    }

    pub fn addr(&self, v6: &V6Addrs) -> SocketAddr {
        if self.is_v6() {
            let (ip, scope) = v6.get(self.slot());
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), self.port, 0, scope))
        } else {
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(self.ip), self.port))
        }
    }

    /// Is the entry's address `addr` (flow label aside)?
    pub fn is_at(&self, addr: &SocketAddr, v6: &V6Addrs) -> bool {
        if self.port != addr.port() {
            return false;
        }
        match addr {
            SocketAddr::V4(a) => !self.is_v6() && self.ip == a.ip().octets(),
            SocketAddr::V6(a) => {
                self.is_v6() && v6.get(self.slot()) == (a.ip().octets(), a.scope_id())
            }
        }
    }

    pub fn peer(&self, v6: &V6Addrs) -> Peer {
        Peer {
            id: self.id,
            addr: self.addr(v6),
        }
    }

    /// Consecutive failed requests.
    pub fn failures(&self) -> u16 {
        self.state & FAILURES
    }

    /// Counts one more failed request (saturating at 1023, past any configured limit).
    pub fn fail(&mut self) {
        if self.failures() < FAILURES {
            self.state += 1;
        }
    }

    /// A liveness ping is in flight (ping-the-oldest before eviction).
    pub fn pinging(&self) -> bool {
        self.state & PINGING != 0
    }

    pub fn set_pinging(&mut self, on: bool) {
        self.set(PINGING, on);
    }

    /// It has answered one of our requests from its address: it owns that address.
    pub fn verified(&self) -> bool {
        self.state & VERIFIED != 0
    }

    pub fn set_verified(&mut self) {
        self.set(VERIFIED, true);
    }

    /// Heard from at `seen`: alive, no failures, no ping pending.
    fn refresh(&mut self, seen: u32) {
        self.seen = seen;
        self.state &= !(FAILURES | PINGING);
    }

    fn set(&mut self, bit: u16, on: bool) {
        if on {
            self.state |= bit;
        } else {
            self.state &= !bit;
        }
    }
}

/// A k-bucket. `entries` is ordered oldest-seen first, as in the paper: the head is the
/// first to be checked when a newcomer wants in.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    pub entries: Vec<Entry>,
    /// Peers that talked to us while the bucket was full, newest last.
    pub replacements: Vec<Entry>,
    /// Last time an entry joined or was heard from (drives stale-bucket refresh).
    pub last_active: Instant,
}

impl Bucket {
    pub fn new(now: Instant) -> Bucket {
        Bucket {
            entries: Vec::new(),
            replacements: Vec::new(),
            last_active: now,
        }
    }

    pub fn position(&self, id: &NodeId) -> Option<usize> {
        self.entries.iter().position(|e| e.id == *id)
    }

    pub fn replacement_position(&self, id: &NodeId) -> Option<usize> {
        self.replacements.iter().position(|e| e.id == *id)
    }

    /// Moves entry `pos` to the tail (most recently seen, at `seen` seconds) and marks it
    /// alive.
    pub fn touch(&mut self, pos: usize, seen: u32, now: Instant) {
        let mut e = self.entries.remove(pos);
        e.refresh(seen);
        self.entries.push(e);
        self.last_active = now;
    }

    /// Adds an entry whose id is not in the replacement cache (newest last), dropping the
    /// oldest when full.
    pub fn add_replacement(&mut self, e: Entry, cap: usize) {
        if cap == 0 {
            return;
        }
        if self.replacements.len() >= cap {
            self.replacements.remove(0);
        }
        push_capped(&mut self.replacements, e, cap);
    }

    /// Heard from replacement `pos` again at `seen`: it becomes the newest, at the address
    /// it was first heard from.
    pub fn refresh_replacement(&mut self, pos: usize, seen: u32) {
        let mut e = self.replacements.remove(pos);
        e.refresh(seen);
        self.replacements.push(e);
    }

    /// Inserts an entry keeping `entries` ordered by `seen`.
    pub fn insert_by_age(&mut self, e: Entry) {
        let pos = self
            .entries
            .iter()
            .position(|x| x.seen > e.seen)
            .unwrap_or(self.entries.len());
        self.entries.insert(pos, e);
    }
}

/// Pushes onto a list that never holds more than `cap` entries. It grows four slots at a
/// time and never past `cap`: a plain `Vec` of 20 entries has room for 32 (60 % more
/// memory for a full bucket), and doubling leaves a bucket being filled up to half empty.
/// A bucket fills once in its life, so the extra reallocations cost nothing that shows.
pub(crate) fn push_capped(list: &mut Vec<Entry>, e: Entry, cap: usize) {
    const STEP: usize = 4;
    if list.len() == list.capacity() {
        let want = (list.len() + STEP).min(cap.max(list.len() + 1));
        list.reserve_exact(want - list.len());
    }
    list.push(e);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_entry_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn a_capped_list_never_has_more_than_three_spare_slots_nor_room_past_its_cap() {
        let mut v6 = V6Addrs::default();
        for cap in [1, 2, 3, 5, 8, 20, 33] {
            let mut list = Vec::new();
            for i in 0..cap {
                let addr = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), i as u16));
                push_capped(&mut list, entry(addr, &mut v6), cap);
                assert!(
                    list.capacity() <= cap,
                    "cap {cap}: {} slots",
                    list.capacity()
                );
                assert!(
                    list.capacity() - list.len() <= 3,
                    "cap {cap}, len {}",
                    list.len()
                );
            }
            assert_eq!(list.capacity(), cap);
        }
    }

    fn addr_strategy() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::from((Ipv4Addr::from(ip), port))),
            (any::<[u8; 16]>(), any::<u16>(), any::<u32>()).prop_map(|(ip, port, scope)| {
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, scope))
            }),
            // IPv4-mapped IPv6 stays IPv6.
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
                let v6 = Ipv4Addr::from(ip).to_ipv6_mapped();
                SocketAddr::V6(SocketAddrV6::new(v6, port, 0, 0))
            }),
        ]
    }

    fn entry(addr: SocketAddr, v6: &mut V6Addrs) -> Entry {
        let peer = Peer {
            id: NodeId::for_key(&addr.to_string()),
            addr,
        };
        Entry::new(peer, 7, v6)
    }

    proptest! {
        #[test]
        fn addresses_come_back_unchanged_and_survive_compaction(
            addrs in proptest::collection::vec(addr_strategy(), 1..20),
            keep in proptest::collection::vec(any::<bool>(), 20),
            b in addr_strategy(),
        ) {
            let mut v6 = V6Addrs::default();
            let mut entries: Vec<Entry> = addrs.iter().map(|a| entry(*a, &mut v6)).collect();
            for (e, a) in entries.iter().zip(&addrs) {
                prop_assert_eq!(e.addr(&v6), *a);
                prop_assert!(e.is_at(a, &v6));
                prop_assert_eq!(e.is_at(&b, &v6), *a == b);
                prop_assert_eq!(e.is_v6(), a.is_ipv6());
                let ip16 = match a {
                    SocketAddr::V4(x) => x.ip().to_ipv6_mapped().octets(),
                    SocketAddr::V6(x) => x.ip().octets(),
                };
                prop_assert_eq!(e.ip16(&v6), ip16);
            }
            // Drop some entries, compact, and the rest still have their addresses.
            let mut kept: Vec<(Entry, SocketAddr)> = entries
                .drain(..)
                .zip(addrs)
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(x, _)| x)
                .collect();
            v6.compact(kept.iter_mut().map(|(e, _)| e));
            prop_assert_eq!(v6.len(), kept.iter().filter(|(_, a)| a.is_ipv6()).count());
            for (e, a) in &kept {
                prop_assert_eq!(e.addr(&v6), *a);
            }
        }
    }

    #[test]
    fn state_bits_do_not_disturb_each_other() {
        let mut v6 = V6Addrs::default();
        let a = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 0, 3));
        let mut e = entry(a, &mut v6);
        for n in 1..=1023u16 {
            e.fail();
            assert_eq!(e.failures(), n);
        }
        e.fail();
        assert_eq!(e.failures(), 1023, "saturates");
        assert!(!e.pinging() && !e.verified() && e.is_v6());
        e.set_pinging(true);
        e.set_verified();
        assert_eq!(e.failures(), 1023);
        assert!(e.pinging() && e.verified() && e.is_v6());
        e.refresh(99);
        assert_eq!((e.failures(), e.pinging(), e.verified()), (0, false, true));
        assert_eq!((e.seen, e.addr(&v6)), (99, a));
    }

    #[test]
    fn the_flow_label_is_not_part_of_the_address() {
        let ip = Ipv6Addr::LOCALHOST;
        let mut v6 = V6Addrs::default();
        let e = entry(SocketAddr::V6(SocketAddrV6::new(ip, 9, 7, 0)), &mut v6);
        assert!(e.is_at(&SocketAddr::V6(SocketAddrV6::new(ip, 9, 0, 0)), &v6));
        assert_eq!(e.addr(&v6), SocketAddr::V6(SocketAddrV6::new(ip, 9, 0, 0)));
    }
}
