//! One k-bucket: live entries in least-recently-seen order plus a replacement cache.

use std::time::Instant;

use crate::{NodeId, Peer};

/// A peer in the routing table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub peer: Peer,
    pub last_seen: Instant,
    /// Consecutive failed requests; reset by any message from the peer.
    pub failures: u32,
    /// A liveness ping is in flight (ping-the-oldest before eviction).
    pub pinging: bool,
    /// It has answered one of our requests from `peer.addr`, so it owns that address.
    pub verified: bool,
}

impl Entry {
    pub fn new(peer: Peer, now: Instant) -> Entry {
        Entry {
            peer,
            last_seen: now,
            failures: 0,
            pinging: false,
            verified: false,
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
        self.entries.iter().position(|e| e.peer.id == *id)
    }

    pub fn replacement_position(&self, id: &NodeId) -> Option<usize> {
        self.replacements.iter().position(|e| e.peer.id == *id)
    }

    /// Moves entry `pos` to the tail (most recently seen) and marks it alive.
    pub fn touch(&mut self, pos: usize, now: Instant) {
        let mut e = self.entries.remove(pos);
        e.last_seen = now;
        e.failures = 0;
        e.pinging = false;
        self.entries.push(e);
        self.last_active = now;
    }

    /// Adds a peer to the replacement cache (newest last), dropping the oldest when full.
    pub fn add_replacement(&mut self, peer: Peer, now: Instant, cap: usize) {
        if cap == 0 {
            return;
        }
        if let Some(pos) = self.replacement_position(&peer.id) {
            self.replacements.remove(pos);
        } else if self.replacements.len() >= cap {
            self.replacements.remove(0);
        }
        push_capped(&mut self.replacements, Entry::new(peer, now), cap);
    }

    /// Inserts an entry keeping `entries` ordered by `last_seen`.
    pub fn insert_by_age(&mut self, e: Entry) {
        let pos = self
            .entries
            .iter()
            .position(|x| x.last_seen > e.last_seen)
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
