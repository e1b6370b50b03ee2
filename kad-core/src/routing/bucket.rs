//! One k-bucket: live entries in least-recently-seen order plus a replacement cache.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Instant;

use crate::{NodeId, Peer};

/// A socket address in 24 bytes instead of `SocketAddr`'s 32: the IP as 16 bytes, the
/// port, and an IPv6 scope id (a link-local peer needs it). The IPv6 flow label is not
/// kept (a peer's address on the wire has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackedAddr {
    ip: [u8; 16],
    scope: u32,
    port: u16,
    v6: bool,
}

impl PackedAddr {
    pub fn new(addr: &SocketAddr) -> PackedAddr {
        match addr {
            SocketAddr::V4(a) => PackedAddr {
                ip: a.ip().to_ipv6_mapped().octets(),
                scope: 0,
                port: a.port(),
                v6: false,
            },
            SocketAddr::V6(a) => PackedAddr {
                ip: a.ip().octets(),
                scope: a.scope_id(),
                port: a.port(),
                v6: true,
            },
        }
    }

    /// The IP as 16 bytes (an IPv4 address mapped into IPv6).
    pub fn ip(&self) -> [u8; 16] {
        self.ip
    }

    /// Was it an IPv6 socket address (a mapped IPv4 one included)?
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    pub fn get(&self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.ip);
        match (self.v6, v6.to_ipv4_mapped()) {
            (false, Some(v4)) => SocketAddr::V4(SocketAddrV4::new(v4, self.port)),
            (false, None) => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, self.port)),
            (true, _) => SocketAddr::V6(SocketAddrV6::new(v6, self.port, 0, self.scope)),
        }
    }
}

/// A peer in the routing table, in 52 bytes (a `Peer` alone is 52 with its `SocketAddr`;
/// with an `Instant` and the flags an entry took 80). Tables of a few hundred entries per
/// node are most of a node's memory, so the bytes matter to a 100,000-node simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: NodeId,
    addr: PackedAddr,
    /// When it was last heard from, in whole seconds since the table's epoch (rounded
    /// down; `u32` seconds last 136 years).
    pub seen: u32,
    /// Consecutive failed requests; reset by any message from the peer. The limit is at
    /// most 1000 (`Config::failures_before_eviction`), so 16 bits do.
    pub failures: u16,
    /// A liveness ping is in flight (ping-the-oldest before eviction).
    pub pinging: bool,
    /// It has answered one of our requests from its address, so it owns that address.
    pub verified: bool,
}

impl Entry {
    pub fn new(peer: Peer, seen: u32) -> Entry {
        Entry {
            id: peer.id,
            addr: PackedAddr::new(&peer.addr),
            seen,
            failures: 0,
            pinging: false,
            verified: false,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.get()
    }

    pub fn packed_addr(&self) -> &PackedAddr {
        &self.addr
    }

    /// Is the entry's address `addr` (flow label aside)?
    pub fn is_at(&self, addr: &SocketAddr) -> bool {
        self.addr == PackedAddr::new(addr)
    }

    pub fn peer(&self) -> Peer {
        Peer {
            id: self.id,
            addr: self.addr(),
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
        e.seen = seen;
        e.failures = 0;
        e.pinging = false;
        self.entries.push(e);
        self.last_active = now;
    }

    /// Adds a peer to the replacement cache (newest last), dropping the oldest when full.
    pub fn add_replacement(&mut self, peer: Peer, seen: u32, cap: usize) {
        if cap == 0 {
            return;
        }
        if let Some(pos) = self.replacement_position(&peer.id) {
            self.replacements.remove(pos);
        } else if self.replacements.len() >= cap {
            self.replacements.remove(0);
        }
        push_capped(&mut self.replacements, Entry::new(peer, seen), cap);
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

/// Pushes onto a list that never holds more than `cap` entries: it grows as a `Vec` does
/// (4, 8, 16, ...) but never past `cap`, so a full bucket carries no unused capacity (a
/// plain `Vec` of 20 entries has room for 32: 60 % more memory for a routing table).
pub(crate) fn push_capped(list: &mut Vec<Entry>, e: Entry, cap: usize) {
    if list.len() == list.capacity() {
        let want = (list.len() * 2).max(4).min(cap.max(list.len() + 1));
        list.reserve_exact(want - list.len());
    }
    list.push(e);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_entry_is_52_bytes() {
        assert_eq!(std::mem::size_of::<PackedAddr>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 52);
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

    proptest! {
        #[test]
        fn packed_addresses_come_back_unchanged(a in addr_strategy(), b in addr_strategy()) {
            let pa = PackedAddr::new(&a);
            prop_assert_eq!(pa.get(), a);
            prop_assert_eq!(pa == PackedAddr::new(&b), a == b);
        }
    }

    #[test]
    fn the_flow_label_is_not_part_of_the_address() {
        let ip = Ipv6Addr::LOCALHOST;
        let a = SocketAddr::V6(SocketAddrV6::new(ip, 9, 7, 0));
        let e = Entry::new(
            Peer {
                id: NodeId::for_key("x"),
                addr: a,
            },
            0,
        );
        assert!(e.is_at(&SocketAddr::V6(SocketAddrV6::new(ip, 9, 0, 0))));
        assert_eq!(e.addr(), SocketAddr::V6(SocketAddrV6::new(ip, 9, 0, 0)));
    }
}
