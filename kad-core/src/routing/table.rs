//! The routing table: buckets indexed by the length of the common prefix with our own id.
//!
//! Bucket `i` holds peers whose distance to us has exactly `i` leading zero bits, except the
//! last bucket, which holds everything at least that close (it contains our own id). Only the
//! last bucket splits, exactly as the Python package's prefix tree splits the bucket that owns
//! our id, but a lookup is an index computation instead of a scan.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_core::RngCore;

use super::bucket::{push_capped, Bucket, Entry, V6Addrs};
use crate::id::{Distance, ID_BITS};
use crate::{NodeId, Peer};

/// What [`Table::on_heard`] did with a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    /// Already known at that address: moved to the tail of its bucket.
    Refreshed,
    /// The id is an entry at another address, which should be pinged: only if it fails
    /// there does the entry go (and the id may then join from its new address). A claim
    /// from elsewhere never moves, refreshes or fails an entry by itself.
    Moved(Peer),
    /// New entry.
    Added,
    /// The bucket is full; the peer waits in the replacement cache.
    Waiting,
    /// As `Waiting`, and the bucket's oldest entry should be pinged: if it fails often
    /// enough it is evicted and the freshest replacement takes its place.
    PingOldest(Peer),
    /// Our own id: never stored.
    Ignored,
    /// Refused: the peer's IP already holds its share of the bucket or the table.
    IpLimited,
}

/// What a failed request did to the routing table ([`Table::on_failure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// The entry stays (or there was none at that address).
    Kept,
    /// The entry left the table; `replacement` is the replacement-cache entry that took
    /// its place, if one did.
    Evicted {
        /// The peer promoted from the replacement cache.
        replacement: Option<Peer>,
    },
}

/// Is `addr` globally routable, as far as the diversity caps care: not loopback, private
/// (RFC 1918), shared (RFC 6598), link-local, or IPv6 unique-local.
fn is_global(addr: &SocketAddr) -> bool {
    let v4 = |ip: Ipv4Addr| {
        let [a, b, ..] = ip.octets();
        !(ip.is_loopback()
            || ip.is_private()
            || ip.is_link_local()
            || (a == 100 && (64..128).contains(&b)))
    };
    match addr {
        SocketAddr::V4(a) => v4(*a.ip()),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(ip) => v4(ip),
            None => {
                let first = a.ip().segments()[0];
                !(a.ip().is_loopback() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80)
            }
        },
    }
}

/// Caps on routing-table entries per IP address (per IPv6 prefix, /48 by default), against
/// Sybil floods from one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IpLimits {
    pub per_bucket: usize,
    pub per_table: usize,
    /// Loopback addresses are exempt, so a local swarm of many nodes works.
    pub exempt_loopback: bool,
    /// Leading bits of an IPv6 address that name one "IP" (at most 64).
    pub v6_prefix_bits: u8,
}

impl IpLimits {
    pub const NONE: IpLimits = IpLimits {
        per_bucket: usize::MAX,
        per_table: usize::MAX,
        exempt_loopback: true,
        v6_prefix_bits: 64,
    };

    /// The keys a lookup's diversity caps count `addr` under: its IP (an IPv6 prefix),
    /// and its /24 (the same prefix for IPv6). `None` when exempt: with
    /// `ip_limits_exempt_loopback` (the default), every address that is not globally
    /// routable (loopback, private, shared, link-local, unique-local) is, so a LAN or
    /// container network of many nodes in one /24 looks its peers up as before, while a
    /// host on the internet cannot fill a lookup with its ids.
    pub fn diversity_keys(&self, addr: &SocketAddr) -> Option<([u8; 8], [u8; 8])> {
        if self.exempt_loopback && !is_global(addr) {
            return None;
        }
        let ip = self.key(addr)?;
        let mut net = ip;
        if net[0] == 4 {
            net[0] = 24;
            net[4] = 0;
        }
        Some((ip, net))
    }

    /// The key an address is counted under, or `None` when it is exempt.
    pub fn key(&self, addr: &SocketAddr) -> Option<[u8; 8]> {
        match addr {
            SocketAddr::V4(a) => self.v4_key(a.ip().octets()),
            SocketAddr::V6(a) => self.v6_key(&a.ip().octets()),
        }
    }

    /// [`IpLimits::key`] of a table entry's address, without unpacking it: the caps scan
    /// the table on every add.
    fn entry_key(&self, e: &Entry, v6: &V6Addrs) -> Option<[u8; 8]> {
        match e.v4() {
            Some(ip) => self.v4_key(ip),
            None => self.v6_key(&e.ip16(v6)),
        }
    }

    /// The key of an IPv4 socket address.
    fn v4_key(&self, ip: [u8; 4]) -> Option<[u8; 8]> {
        if self.exempt_loopback && ip[0] == 127 {
            return None;
        }
        Some([4, ip[0], ip[1], ip[2], ip[3], 0, 0, 0])
    }

    /// The key of an IPv6 socket address. An IPv4-mapped one counts as its IPv4 address
    /// (but only `::1` is loopback).
    fn v6_key(&self, ip: &[u8; 16]) -> Option<[u8; 8]> {
        if self.exempt_loopback && *ip == Ipv6Addr::LOCALHOST.octets() {
            return None;
        }
        if ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] {
            return Some([4, ip[12], ip[13], ip[14], ip[15], 0, 0, 0]);
        }
        // One host usually owns a whole /64, and one site a /48.
        let mut key = [0u8; 8];
        key.copy_from_slice(&ip[..8]);
        let bits = u32::from(self.v6_prefix_bits.min(64));
        let word = u64::from_be_bytes(key);
        let mask = u64::MAX.checked_shl(64 - bits).unwrap_or(0);
        Some((word & mask).to_be_bytes())
    }
}

/// Slots `V6Addrs` may hold before the first compaction.
const V6_MIN_LIMIT: usize = 64;

/// Counters of [`Table::ip_bins`].
const IP_BINS: usize = 128;

/// The counter of [`Table::ip_bins`] an IP key falls in.
fn ip_bin(key: &[u8; 8]) -> usize {
    (u64::from_le_bytes(*key).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize
}

/// The routing table of one node.
#[derive(Clone, Debug)]
pub(crate) struct Table {
    own: NodeId,
    k: usize,
    replacement_cap: usize,
    failure_limit: u32,
    buckets: Vec<Bucket>,
    len: usize,
    /// The IPv6 addresses of entries and replacements.
    v6: V6Addrs,
    /// `v6` is compacted when it grows past this many slots.
    v6_limit: usize,
    limits: IpLimits,
    /// A full bucket's oldest entry is pinged for a newcomer only once silent this long.
    ping_oldest_after: Duration,
    /// Entries' `seen` times count seconds from here.
    epoch: Instant,
    /// Entries (not replacements) per counted IP key, hashed into [`IP_BINS`] counters:
    /// each counter is at least the number of entries of every key that falls in it (a
    /// full one, 255, stays full). Only when a key's counter reaches the per-table cap
    /// does [`Table::ip_count`] scan the table; an honest newcomer's never does, and the
    /// scan touched every entry of a cold table for each peer added (128 bytes a table).
    ip_bins: [u8; IP_BINS],
}

impl Table {
    pub fn new(
        own: NodeId,
        k: usize,
        replacement_cap: usize,
        failure_limit: u32,
        now: Instant,
    ) -> Table {
        Table {
            own,
            k,
            replacement_cap,
            failure_limit,
            buckets: vec![Bucket::new(now)],
            len: 0,
            v6: V6Addrs::default(),
            v6_limit: V6_MIN_LIMIT,
            limits: IpLimits::NONE,
            ping_oldest_after: Duration::ZERO,
            epoch: now,
            ip_bins: [0; IP_BINS],
        }
    }

    /// `now` as an entry's `seen`: whole seconds since the epoch.
    fn stamp(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.epoch).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// How long ago an entry was last heard from, to the second (never less than the truth
    /// minus one second).
    fn silent_for(&self, e: &Entry, now: Instant) -> Duration {
        let seen = Duration::from_secs(u64::from(e.seen));
        now.saturating_duration_since(self.epoch)
            .saturating_sub(seen)
    }

    /// A full bucket pings its oldest entry for a newcomer only if that entry has been
    /// silent at least `age` (zero: always, as in the paper).
    pub fn set_ping_oldest_after(&mut self, age: Duration) {
        self.ping_oldest_after = age;
    }

    pub fn set_ip_limits(&mut self, limits: IpLimits) {
        self.limits = limits;
        self.ip_bins = self.count_ip_bins();
    }

    /// [`Table::ip_bins`] counted afresh from the entries.
    fn count_ip_bins(&self) -> [u8; IP_BINS] {
        let mut bins = [0u8; IP_BINS];
        for e in self.buckets.iter().flat_map(|b| &b.entries) {
            if let Some(key) = self.limits.entry_key(e, &self.v6) {
                let n = &mut bins[ip_bin(&key)];
                *n = n.saturating_add(1);
            }
        }
        bins
    }

    /// Counts entry `e` in (`add`) or out of [`Table::ip_bins`].
    fn bin_entry(&mut self, e: &Entry, add: bool) {
        let Some(key) = self.limits.entry_key(e, &self.v6) else {
            return;
        };
        let n = &mut self.ip_bins[ip_bin(&key)];
        if add {
            *n = n.saturating_add(1);
        } else if *n < u8::MAX {
            *n -= 1;
        }
    }

    /// Has the IP counted under `key` at least `per_table` entries? The counter answers
    /// no for all but a crowded IP (or bin); the scan answers the rest.
    fn ip_full(&self, key: &[u8; 8]) -> bool {
        usize::from(self.ip_bins[ip_bin(key)]) >= self.limits.per_table
            && self.ip_count(key) >= self.limits.per_table
    }

    /// Entries (not replacements) of the table at a counted address. A scan rather than a
    /// map kept beside the table: it runs only when a peer is about to become an entry,
    /// and a map cost about 30 bytes per entry of every node's memory.
    fn ip_count(&self, key: &[u8; 8]) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| &b.entries)
            .filter(|e| self.limits.entry_key(e, &self.v6).as_ref() == Some(key))
            .count()
    }

    /// May a peer at `addr` join bucket `bi` (as entry or replacement)?
    fn ip_allowed(&self, bi: usize, addr: &SocketAddr, as_entry: bool) -> bool {
        let Some(key) = self.limits.key(addr) else {
            return true;
        };
        if as_entry && self.ip_full(&key) {
            return false;
        }
        let b = &self.buckets[bi];
        let in_bucket = b
            .entries
            .iter()
            .chain(&b.replacements)
            .filter(|e| self.limits.entry_key(e, &self.v6) == Some(key))
            .count();
        in_bucket < self.limits.per_bucket
    }

    /// Would the table take `id` if it proved itself: not known yet, and its bucket has
    /// room, can split, or has room in its replacement cache (or a replacement silent for
    /// `ping_oldest_after`, which the newcomer would push out)? A verification ping to a
    /// stranger the table could not take is wasted.
    pub fn wants(&self, id: &NodeId, now: Instant) -> bool {
        if *id == self.own {
            return false;
        }
        let bi = self.index(id);
        let b = &self.buckets[bi];
        if b.position(id).is_some() || b.replacement_position(id).is_some() {
            return false;
        }
        let last = self.buckets.len() - 1;
        b.entries.len() < self.k
            || (bi == last && last < ID_BITS - 1)
            || b.replacements.len() < self.replacement_cap
            || b.replacements
                .first()
                .is_some_and(|r| self.silent_for(r, now) >= self.ping_oldest_after)
    }

    /// Does a verified entry or replacement live at `addr`? A scan of the table (a few
    /// hundred entries), for callers that know an address but no id.
    pub fn has_verified_addr(&self, addr: &SocketAddr) -> bool {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter().chain(&b.replacements))
            .any(|e| e.verified() && e.is_at(addr, &self.v6))
    }

    /// Has the peer with this id answered us from this address (as an entry or a
    /// replacement)?
    pub fn is_verified(&self, id: &NodeId, addr: &SocketAddr) -> bool {
        let b = &self.buckets[self.index(id)];
        let at = |e: &Entry| e.verified() && e.is_at(addr, &self.v6);
        b.position(id).is_some_and(|pos| at(&b.entries[pos]))
            || b.replacement_position(id)
                .is_some_and(|pos| at(&b.replacements[pos]))
    }

    /// Number of peers in the table (replacements not counted).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// How many entries the bucket that `id` falls in holds; `None` for the last bucket,
    /// which covers our own id and splits instead of filling.
    pub fn bucket_len_for(&self, id: &NodeId) -> Option<usize> {
        let i = self.index(id);
        (i + 1 < self.buckets.len()).then(|| self.buckets[i].entries.len())
    }

    fn index(&self, id: &NodeId) -> usize {
        let lz = self.own.distance(id).leading_zeros();
        lz.min(self.buckets.len() - 1)
    }

    /// A peer proved itself: it answered a request of ours from the address the request
    /// went to (`proven`). Only such peers enter the table, the replacement cache, or
    /// refresh an entry; a request from a stranger is a claim and changes nothing here.
    /// (`proven` false is for entries restored from a snapshot: they must answer again
    /// before they count as verified, and they never refresh an entry.)
    pub fn on_heard(&mut self, now: Instant, peer: Peer, proven: bool) -> Heard {
        if peer.id == self.own {
            return Heard::Ignored;
        }
        let seen = self.stamp(now);
        loop {
            let last = self.buckets.len() - 1;
            let bi = self.index(&peer.id);
            let k = self.k;
            let cap = self.replacement_cap;
            let bucket = &mut self.buckets[bi];
            if let Some(pos) = bucket.position(&peer.id) {
                let e = &mut bucket.entries[pos];
                if !e.is_at(&peer.addr, &self.v6) {
                    // The address of a known id is kept: a newcomer claiming an id we
                    // know cannot take over its entry while the real one answers. Ask
                    // the old address (once at a time).
                    if !proven || e.pinging() {
                        return Heard::Waiting;
                    }
                    e.set_pinging(true);
                    return Heard::Moved(e.peer(&self.v6));
                }
                if proven {
                    bucket.touch(pos, seen, now);
                    bucket.entries.last_mut().map(Entry::set_verified);
                }
                return Heard::Refreshed;
            }
            if bucket.entries.len() < k {
                if let Some(pos) = bucket.replacement_position(&peer.id) {
                    bucket.replacements.remove(pos);
                }
                if !self.ip_allowed(bi, &peer.addr, true) {
                    return Heard::IpLimited;
                }
                let mut e = self.new_entry(peer, seen);
                if proven {
                    e.set_verified();
                }
                self.bin_entry(&e, true);
                let bucket = &mut self.buckets[bi];
                push_capped(&mut bucket.entries, e, k);
                bucket.last_active = now;
                self.len += 1;
                return Heard::Added;
            }
            if bi == last && last < ID_BITS - 1 {
                self.split_last(now);
                continue;
            }
            // A known replacement keeps the address it was first heard from, as entries
            // do: re-heard from elsewhere, it must not carry a second IP past the cap.
            // Replacements are proven peers only: one is promoted into the table unasked.
            if !proven {
                return Heard::Waiting;
            }
            match bucket.replacement_position(&peer.id) {
                Some(pos) if bucket.replacements[pos].is_at(&peer.addr, &self.v6) => {
                    bucket.refresh_replacement(pos, seen);
                }
                Some(_) => return Heard::Waiting,
                None if !self.ip_allowed(bi, &peer.addr, false) => return Heard::IpLimited,
                None if cap > 0 => {
                    let mut e = self.new_entry(peer, seen);
                    e.set_verified();
                    self.buckets[bi].add_replacement(e, cap);
                }
                None => {}
            }
            if self.buckets[bi].entries.iter().any(|e| e.pinging()) {
                return Heard::Waiting;
            }
            // The head is the least recently seen: if it spoke lately, they all did.
            if self.silent_for(&self.buckets[bi].entries[0], now) < self.ping_oldest_after {
                return Heard::Waiting;
            }
            let oldest = &mut self.buckets[bi].entries[0];
            oldest.set_pinging(true);
            return Heard::PingOldest(oldest.peer(&self.v6));
        }
    }

    /// An entry for `peer`. An IPv6 address takes a slot in `v6`; slots of entries gone
    /// since are reclaimed once they are half of all.
    fn new_entry(&mut self, peer: Peer, seen: u32) -> Entry {
        let mut e = Entry::new(peer, seen, &mut self.v6);
        if self.v6.len() > self.v6_limit {
            let all = self
                .buckets
                .iter_mut()
                .flat_map(|b| b.entries.iter_mut().chain(b.replacements.iter_mut()));
            self.v6.compact(all.chain(std::iter::once(&mut e)));
            self.v6_limit = (2 * self.v6.len()).max(V6_MIN_LIMIT);
        }
        e
    }

    fn split_last(&mut self, now: Instant) {
        let last = self.buckets.len() - 1;
        let own = self.own;
        let stays = |e: &Entry| own.distance(&e.id).leading_zeros() == last;
        let old = &mut self.buckets[last];
        let mut next = Bucket::new(now);
        next.last_active = old.last_active;
        let (mut keep, mut moved): (Vec<Entry>, Vec<Entry>) =
            old.entries.drain(..).partition(stays);
        keep.shrink_to_fit();
        moved.shrink_to_fit();
        old.entries = keep;
        next.entries = moved;
        let (mut keep, mut moved): (Vec<Entry>, Vec<Entry>) =
            old.replacements.drain(..).partition(stays);
        keep.shrink_to_fit();
        moved.shrink_to_fit();
        old.replacements = keep;
        next.replacements = moved;
        self.buckets.push(next);
    }

    /// A request to `id` at `addr` failed (no answer, or another id answered). Only the
    /// entry or replacement that lives at `addr` pays: a ping to an address somebody
    /// merely claimed for `id` says nothing about the `id` we know elsewhere. Says whether
    /// that evicted the peer, and who took its place.
    pub fn on_failure(&mut self, id: &NodeId, addr: &SocketAddr) -> Failed {
        let bi = self.index(id);
        let limit = self.failure_limit;
        let bucket = &mut self.buckets[bi];
        if let Some(pos) = bucket.replacement_position(id) {
            if bucket.replacements[pos].is_at(addr, &self.v6) {
                bucket.replacements.remove(pos);
            }
        }
        let Some(pos) = bucket.position(id) else {
            return Failed::Kept;
        };
        if !bucket.entries[pos].is_at(addr, &self.v6) {
            return Failed::Kept;
        }
        let entry = &mut bucket.entries[pos];
        entry.fail();
        entry.set_pinging(false);
        // A peer that never answered us from its address may not even own it: one failure
        // is enough.
        if u32::from(entry.failures()) < limit && entry.verified() {
            return Failed::Kept;
        }
        let gone = bucket.entries.remove(pos);
        self.bin_entry(&gone, false);
        self.len -= 1;
        // The freshest replacement talked to us most recently: the likeliest to be alive.
        let pick = self.buckets[bi].replacements.iter().rposition(|r| {
            self.limits
                .entry_key(r, &self.v6)
                .is_none_or(|key| !self.ip_full(&key))
        });
        let replacement = pick.map(|i| {
            let r = self.buckets[bi].replacements.remove(i);
            let peer = r.peer(&self.v6);
            self.bin_entry(&r, true);
            self.buckets[bi].insert_by_age(r);
            self.len += 1;
            peer
        });
        Failed::Evicted { replacement }
    }

    /// Removes every entry and replacement at the IP counted under `key` (see
    /// [`IpLimits::key`]); returns the entries removed. Their buckets keep the room for
    /// the next proven newcomers.
    pub fn remove_ip(&mut self, key: &[u8; 8]) -> Vec<Peer> {
        let (limits, v6) = (self.limits, &self.v6);
        let mut gone = Vec::new();
        for b in &mut self.buckets {
            b.entries.retain(|e| {
                let keep = limits.entry_key(e, v6).as_ref() != Some(key);
                if !keep {
                    gone.push(e.peer(v6));
                }
                keep
            });
            b.replacements
                .retain(|e| limits.entry_key(e, v6).as_ref() != Some(key));
        }
        self.len -= gone.len();
        if !gone.is_empty() {
            self.ip_bins = self.count_ip_bins();
        }
        gone
    }

    /// A ping to the entry ended (or could not be sent) without its answer being handled
    /// elsewhere.
    pub fn clear_ping(&mut self, id: &NodeId) {
        let bi = self.index(id);
        if let Some(pos) = self.buckets[bi].position(id) {
            self.buckets[bi].entries[pos].set_pinging(false);
        }
    }

    /// Is `id` in the table (not counting replacements)?
    pub fn contains(&self, id: &NodeId) -> bool {
        self.buckets[self.index(id)].position(id).is_some()
    }

    /// Up to `count` peers closest to `target`, closest first, skipping `exclude`.
    ///
    /// Buckets are visited from the target's outward, so a lookup looks at about `count`
    /// entries rather than the whole table. Let `b` be the bucket the target falls in. If
    /// `b` is not the last bucket: every peer of bucket `b` shares more leading bits with
    /// the target than any peer of the buckets after it (which all share exactly `b`), and
    /// those share more than any peer of bucket `b - 1`, `b - 2`, ... (which share exactly
    /// that index). If `b` is the last bucket, its peers come first, then `b - 1`, ... So
    /// each group only needs sorting within itself.
    ///
    /// The buckets after `b` are ordered among themselves too, so that they are visited
    /// one at a time (a reply needs one or two of them, not half the table): bucket `j`'s
    /// peers agree with our id on bits `0..j` and differ at bit `j`, while every deeper
    /// peer agrees with it there too. So where the target differs from our id at bit
    /// `j`, all of bucket `j` is closer to the target than every deeper peer, and farther
    /// where it agrees: the buckets where it differs come first, shallowest first, then
    /// the last bucket, then the buckets where it agrees, deepest first.
    pub fn closest(&self, target: &NodeId, count: usize, exclude: Option<&NodeId>) -> Vec<Peer> {
        self.closest_where(target, count, exclude, false, |p| p)
    }

    /// As [`Table::closest`], but only entries that answered us from their address: what
    /// we tell others. An entry restored from a snapshot is asked by our own lookups, but
    /// not served until it has proven itself again.
    pub fn closest_verified(
        &self,
        target: &NodeId,
        count: usize,
        exclude: Option<&NodeId>,
    ) -> Vec<Peer> {
        self.closest_where(target, count, exclude, true, |p| p)
    }

    /// As [`Table::closest_verified`], each peer made into a `T` by `make` as it is found
    /// (a reply's peer list is built without a `Vec<Peer>` in between).
    pub fn closest_verified_as<T>(
        &self,
        target: &NodeId,
        count: usize,
        exclude: Option<&NodeId>,
        make: impl Fn(Peer) -> T,
    ) -> Vec<T> {
        self.closest_where(target, count, exclude, true, make)
    }

    fn closest_where<T>(
        &self,
        target: &NodeId,
        count: usize,
        exclude: Option<&NodeId>,
        verified_only: bool,
        make: impl Fn(Peer) -> T,
    ) -> Vec<T> {
        if count == 0 {
            return Vec::new();
        }
        let last = self.buckets.len() - 1;
        let b = self.index(target);
        // Each group is final once sorted: an entry is unpacked only if it is among the
        // `count` returned, straight into the result.
        let mut found = Vec::with_capacity(count.min(self.len));
        let mut keys = Vec::with_capacity(self.k);
        let pick = Pick {
            target,
            exclude,
            verified_only,
            count,
        };
        let make = |e: &Entry| make(e.peer(&self.v6));
        pick.collect(&self.buckets[b], &mut keys, &mut found, &make);
        if b < last && found.len() < count {
            let apart = self.own.distance(target);
            let differs = |j: &usize| apart.0[j / 8] & (0x80 >> (j % 8)) != 0;
            let order = (b + 1..last)
                .filter(differs)
                .chain(std::iter::once(last))
                .chain((b + 1..last).rev().filter(|j| !differs(j)));
            for j in order {
                if found.len() >= count {
                    break;
                }
                pick.collect(&self.buckets[j], &mut keys, &mut found, &make);
            }
        }
        for i in (0..b).rev() {
            if found.len() >= count {
                break;
            }
            pick.collect(&self.buckets[i], &mut keys, &mut found, &make);
        }
        found
    }

    /// All peers, bucket by bucket, oldest first within a bucket.
    pub fn peers(&self) -> impl Iterator<Item = Peer> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.peer(&self.v6)))
    }

    /// Buckets with entries that saw no activity for `interval`.
    pub fn stale_buckets(&self, now: Instant, interval: Duration) -> Vec<usize> {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                !b.entries.is_empty() && now.saturating_duration_since(b.last_active) >= interval
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// A random id that falls in bucket `i`.
    pub fn random_id_in_bucket(&self, i: usize, rng: &mut impl RngCore) -> NodeId {
        let mut d = [0u8; 20];
        rng.fill_bytes(&mut d);
        let last = i + 1 >= self.buckets.len();
        // Clear the first i bits; set bit i unless this is the last bucket, which also
        // covers everything closer.
        for bit in 0..i.min(ID_BITS) {
            d[bit / 8] &= !(0x80 >> (bit % 8));
        }
        if !last && i < ID_BITS {
            d[i / 8] |= 0x80 >> (i % 8);
        }
        self.own.xor(&Distance(d))
    }

    /// Checks the table's invariants; used by tests, the simulator and fuzzers.
    pub fn check(&self) -> Result<(), String> {
        let mut count = 0;
        let last = self.buckets.len() - 1;
        for (i, b) in self.buckets.iter().enumerate() {
            if b.entries.len() > self.k {
                return Err(format!(
                    "bucket {i} holds {} > k = {}",
                    b.entries.len(),
                    self.k
                ));
            }
            if b.replacements.len() > self.replacement_cap {
                return Err(format!(
                    "bucket {i} has {} replacements",
                    b.replacements.len()
                ));
            }
            for e in b.entries.iter().chain(&b.replacements) {
                let lz = self.own.distance(&e.id).leading_zeros();
                if lz.min(last) != i {
                    return Err(format!(
                        "peer {:?} in bucket {i}, belongs in {}",
                        e.id,
                        lz.min(last)
                    ));
                }
                if e.id == self.own {
                    return Err("own id in the table".into());
                }
                if e.is_v6() && !self.v6.holds(e) {
                    return Err(format!("peer {:?} has no IPv6 address", e.id));
                }
            }
            for list in [&b.entries, &b.replacements] {
                for (j, e) in list.iter().enumerate() {
                    if list[..j].iter().any(|x| x.id == e.id) {
                        return Err(format!("duplicate {:?} in bucket {i}", e.id));
                    }
                }
            }
            count += b.entries.len();
        }
        if count != self.len {
            return Err(format!("len {} but {} entries", self.len, count));
        }
        let mut per_ip: BTreeMap<[u8; 8], usize> = BTreeMap::new();
        for e in self.buckets.iter().flat_map(|b| &b.entries) {
            if let Some(key) = self.limits.entry_key(e, &self.v6) {
                *per_ip.entry(key).or_insert(0) += 1;
            }
        }
        if per_ip.values().any(|&n| n > self.limits.per_table) {
            return Err("an IP holds more entries than max_peers_per_ip".into());
        }
        let bins = self.count_ip_bins();
        let short = (0..IP_BINS).find(|&i| {
            self.ip_bins[i] < bins[i] || (self.ip_bins[i] > bins[i] && self.ip_bins[i] < u8::MAX)
        });
        if let Some(i) = short {
            return Err(format!(
                "IP counter {i} is {} for {} entries",
                self.ip_bins[i], bins[i]
            ));
        }
        Ok(())
    }
}

/// What [`Table::closest`] picks: the `count` entries closest to `target`, but `exclude`
/// (and, with `verified_only`, those that have not answered us from their address).
struct Pick<'a> {
    target: &'a NodeId,
    exclude: Option<&'a NodeId>,
    verified_only: bool,
    count: usize,
}

impl Pick<'_> {
    /// Appends the entries of `bucket` to `found`, closest first, as many as fit in
    /// `count`, each made by `make`: one group of [`Table::closest`]. `keys` is scratch
    /// space.
    ///
    /// A bucket holds at most k (≤ 256) entries, so each is sorted by one `u64`: the top
    /// 56 bits of its distance to the target, then its index in the bucket. Sorting those
    /// was a fifth of the instructions a `find_node` reply took when the sort moved
    /// (distance, entry) pairs of 32 bytes. Should two entries share the 56 bits (ids are
    /// free: a stranger can pick them), the run is sorted again by whole distances. Ids in
    /// a table are unique, so are their distances, and the order is exactly a full sort's.
    fn collect<T>(
        &self,
        bucket: &Bucket,
        keys: &mut Vec<u64>,
        found: &mut Vec<T>,
        make: &impl Fn(&Entry) -> T,
    ) {
        let want = self.count.saturating_sub(found.len());
        if want == 0 {
            return;
        }
        keys.clear();
        // `Config` caps k at 256, so the index fits the low byte; a table built with a
        // larger k (no `Config` allows one) sorts by whole distances, never by a wrong index.
        let packed = bucket.entries.len() <= 256;
        for (i, e) in bucket.entries.iter().enumerate() {
            if Some(&e.id) != self.exclude && (e.verified() || !self.verified_only) {
                let (high, _) = e.id.distance(self.target).words();
                keys.push(if packed {
                    ((high >> 64) as u64 & !0xff) | i as u64
                } else {
                    i as u64
                });
            }
        }
        let index = if packed { 0xff } else { u64::MAX };
        let entry = |key: &u64| &bucket.entries[(key & index) as usize];
        keys.sort_unstable();
        if !packed || keys.windows(2).any(|w| w[0] >> 8 == w[1] >> 8) {
            keys.sort_unstable_by_key(|key| entry(key).id.distance(self.target));
        }
        found.extend(keys.iter().take(want).map(|key| make(entry(key))));
    }
}

#[cfg(test)]
// Tests need one real instant as a base; the code under test never reads the clock.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::net::SocketAddr;

    /// The per-IP key as first written, on `SocketAddr`: the packed version must agree.
    fn key_by_socket_addr(exempt_loopback: bool, addr: &SocketAddr) -> Option<[u8; 8]> {
        use std::net::IpAddr;
        if exempt_loopback && addr.ip().is_loopback() {
            return None;
        }
        Some(match addr.ip() {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                [4, o[0], o[1], o[2], o[3], 0, 0, 0]
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => {
                    let o = v4.octets();
                    [4, o[0], o[1], o[2], o[3], 0, 0, 0]
                }
                None => v6.octets()[..8].try_into().unwrap_or([6; 8]),
            },
        })
    }

    proptest::proptest! {
        #[test]
        fn packed_ip_keys_match_socket_address_keys(
            v4 in proptest::prelude::any::<[u8; 4]>(),
            v6 in proptest::prelude::any::<[u8; 16]>(),
            port in proptest::prelude::any::<u16>(),
            exempt in proptest::prelude::any::<bool>(),
        ) {
            use std::net::SocketAddrV6;
            let limits = IpLimits { exempt_loopback: exempt, ..IpLimits::NONE };
            let mut loop4 = v4;
            loop4[0] = 127;
            let addrs = [
                SocketAddr::from((Ipv4Addr::from(v4), port)),
                SocketAddr::from((Ipv4Addr::from(loop4), port)),
                SocketAddr::from((Ipv6Addr::from(v6), port)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
                SocketAddr::V6(SocketAddrV6::new(Ipv4Addr::from(v4).to_ipv6_mapped(), port, 0, 0)),
                SocketAddr::V6(SocketAddrV6::new(Ipv4Addr::from(loop4).to_ipv6_mapped(), port, 0, 0)),
            ];
            for a in addrs {
                proptest::prop_assert_eq!(limits.key(&a), key_by_socket_addr(exempt, &a), "{}", a);
            }
        }
    }

    fn peer(rng: &mut ChaCha8Rng, port: u16) -> Peer {
        Peer {
            id: NodeId::random(rng),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    #[test]
    fn fills_splits_and_stays_within_k() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let own = NodeId::random(&mut rng);
        let mut t = Table::new(own, 4, 2, 2, now);
        let mut added = 0;
        for p in 0..500 {
            if t.on_heard(now, peer(&mut rng, 1000 + p), true) == Heard::Added {
                added += 1;
            }
            t.check().unwrap();
        }
        assert_eq!(t.len(), added);
        assert!(t.bucket_count() > 3, "the own bucket should have split");
        // Far buckets hold at most k; the table is much smaller than what it heard.
        assert!(t.len() < 100);
    }

    /// A table whose buckets hold more than 256 entries (a k no `Config` allows) still
    /// gives the true closest, not entries read at a wrapped index.
    #[test]
    fn closest_is_exact_with_buckets_past_256() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let own = NodeId::random(&mut rng);
        let mut t = Table::new(own, 400, 0, 3, now);
        for p in 0..900u16 {
            t.on_heard(now, peer(&mut rng, 1000 + p), true);
        }
        let mut all: Vec<Peer> = t.peers().collect();
        for _ in 0..20 {
            let target = NodeId::random(&mut rng);
            all.sort_by_key(|p| p.id.distance(&target));
            let got = t.closest(&target, 30, None);
            assert_eq!(got, all[..30].to_vec());
        }
    }

    /// Ids a stranger picked so that their distances to a target share the 56 bits
    /// `collect` sorts by first: the order is still the full distance's.
    #[test]
    fn closest_orders_ids_that_share_the_sort_prefix() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let own = NodeId::random(&mut rng);
        let target = NodeId::random(&mut rng);
        let mut t = Table::new(own, 20, 8, 3, now);
        let mut crafted = NodeId::random(&mut rng);
        crafted.0[0] = !own.0[0];
        for p in 0..40u16 {
            let mut id = NodeId::random(&mut rng);
            // The same first 7 bytes as `crafted` (so distances to the target share
            // 56 bits), for half of them.
            if p % 2 == 0 {
                id.0[..7].copy_from_slice(&crafted.0[..7]);
            }
            let addr = SocketAddr::from(([10, 0, (p / 200) as u8, (p % 200) as u8 + 1], 4000));
            t.on_heard(now, Peer { id, addr }, true);
        }
        let mut all: Vec<Peer> = t.peers().collect();
        all.sort_by_key(|p| p.id.distance(&target));
        for count in [1, 5, 20, 40] {
            let got = t.closest(&target, count, None);
            assert_eq!(got, all[..count.min(all.len())].to_vec(), "count {count}");
        }
        let same_prefix = all.iter().filter(|p| p.id.0[..7] == crafted.0[..7]).count();
        assert!(
            same_prefix >= 10,
            "only {same_prefix} crafted ids in the table"
        );
    }

    #[test]
    fn closest_is_sorted_by_xor_distance() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let own = NodeId::random(&mut rng);
        let mut t = Table::new(own, 20, 20, 3, now);
        for p in 0..300 {
            t.on_heard(now, peer(&mut rng, 1000 + p), true);
        }
        assert!(t.bucket_count() > 4);
        let mut all: Vec<Peer> = t.peers().collect();
        // Random targets, our own id, and targets in each bucket's range; counts from 0
        // to beyond the table; with and without an exclusion.
        let mut targets: Vec<NodeId> = (0..200).map(|_| NodeId::random(&mut rng)).collect();
        targets.push(own);
        targets.extend((0..t.bucket_count()).map(|i| t.random_id_in_bucket(i, &mut rng)));
        for (n, target) in targets.iter().enumerate() {
            all.sort_by_key(|p| p.id.distance(target));
            let exclude = (n % 3 == 0).then(|| all[n % all.len()].id);
            let want: Vec<Peer> = all
                .iter()
                .filter(|p| Some(p.id) != exclude)
                .copied()
                .collect();
            for count in [0, 1, 3, 20, 57, all.len() + 5] {
                let got = t.closest(target, count, exclude.as_ref());
                assert_eq!(got, want[..count.min(want.len())].to_vec(), "count {count}");
            }
        }
    }

    #[test]
    fn a_full_bucket_pings_its_oldest_only_once_it_is_stale() {
        let t0 = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let own = NodeId::random(&mut rng);
        let mut t = Table::new(own, 1, 4, 2, t0);
        t.set_ping_oldest_after(Duration::from_secs(900));
        let mut far = || loop {
            let p = peer(&mut rng, 3000);
            if own.distance(&p.id).leading_zeros() == 0 {
                return p;
            }
        };
        // Grow the table until bucket 0 (first bit differs) stands alone and is full.
        let first = far();
        assert_eq!(t.on_heard(t0, first, true), Heard::Added);
        let second = far();
        let heard = t.on_heard(t0 + Duration::from_secs(60), second, true);
        assert_eq!(heard, Heard::Waiting, "the oldest spoke a minute ago");
        let third = far();
        let heard = t.on_heard(t0 + Duration::from_secs(901), third, true);
        assert_eq!(heard, Heard::PingOldest(first), "silent for 15 minutes");
        t.check().unwrap();
    }

    #[test]
    fn eviction_needs_consecutive_failures_and_promotes_replacement() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let own = NodeId::random(&mut rng);
        let mut t = Table::new(own, 1, 1, 2, now);
        // Force a far bucket: ids whose first bit differs from own.
        let mut far = || loop {
            let p = peer(&mut rng, 2000);
            if own.distance(&p.id).leading_zeros() == 0 {
                return p;
            }
        };
        let a = far();
        let b = far();
        // Only a peer that answered us from its address gets several chances.
        assert_eq!(t.on_heard(now, a, true), Heard::Added);
        // The table splits until a's bucket is no longer the last one.
        let c = far();
        let r = t.on_heard(now, c, true);
        assert!(matches!(r, Heard::PingOldest(p) if p == a), "{r:?}");
        assert_eq!(t.on_heard(now, b, true), Heard::Waiting);
        // A failure at another address (a ping to whoever claimed a's id) is not a's.
        let elsewhere = SocketAddr::from(([127, 0, 0, 1], 9999));
        assert_eq!(t.on_failure(&a.id, &elsewhere), Failed::Kept);
        assert_eq!(t.on_failure(&a.id, &elsewhere), Failed::Kept);
        assert_eq!(t.on_failure(&a.id, &a.addr), Failed::Kept);
        assert!(t.contains(&a.id));
        // b was the freshest replacement, and the table says so.
        let replaced = Failed::Evicted {
            replacement: Some(b),
        };
        assert_eq!(t.on_failure(&a.id, &a.addr), replaced);
        assert!(!t.contains(&a.id));
        assert!(t.contains(&b.id));
        t.check().unwrap();
    }

    #[test]
    fn unverified_peer_goes_on_first_failure_and_ip_caps_hold() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let own = NodeId::random(&mut rng);
        for (per_bucket, per_table, expect) in [(10, 3, 3), (2, 100, 2)] {
            let mut t = Table::new(own, 20, 20, 3, now);
            t.set_ip_limits(IpLimits {
                per_bucket,
                per_table,
                exempt_loopback: false,
                v6_prefix_bits: 48,
            });
            let mut accepted = 0;
            for p in 0..200 {
                let mut peer = peer(&mut rng, 1000 + p);
                peer.addr = SocketAddr::from(([10, 9, 9, 9], 1000 + p));
                // Unproven (as restored from a snapshot): gone at its first failure.
                match t.on_heard(now, peer, false) {
                    Heard::Added => accepted += 1,
                    Heard::IpLimited => {}
                    other => panic!("{other:?}"),
                }
                t.check().unwrap();
            }
            assert_eq!(accepted, expect, "caps {per_bucket}/{per_table}");
            // Never verified: the first failure evicts it.
            let victim = t.peers().next().unwrap();
            assert!(matches!(
                t.on_failure(&victim.id, &victim.addr),
                Failed::Evicted { .. }
            ));
            t.check().unwrap();
        }
        // Loopback is exempt when configured so.
        let mut t = Table::new(own, 20, 20, 3, now);
        t.set_ip_limits(IpLimits {
            per_bucket: 1,
            per_table: 1,
            exempt_loopback: true,
            v6_prefix_bits: 48,
        });
        for p in 0..5 {
            assert_eq!(
                t.on_heard(now, peer(&mut rng, 1000 + p), true),
                Heard::Added
            );
        }
    }

    #[test]
    fn ipv6_entries_keep_their_addresses_through_churn() {
        use std::net::{Ipv4Addr, SocketAddrV6};
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let own = NodeId::random(&mut rng);
        let mut t = Table::new(own, 2, 2, 1, now);
        let mut known: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
        let mut compacted = false;
        for p in 0..4000u32 {
            let [a, b, c, d] = p.to_be_bytes();
            let addr = if p % 3 == 0 {
                SocketAddr::from((Ipv4Addr::new(10, b, c, d), 4000))
            } else {
                let mut ip = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d];
                ip[5] = (p % 7) as u8;
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), 5000, 0, p % 5))
            };
            let peer = Peer {
                id: NodeId::random(&mut rng),
                addr,
            };
            known.insert(peer.id, addr);
            let before = t.v6.len();
            t.on_heard(now, peer, true);
            compacted |= t.v6.len() < before;
            if p % 3 == 1 {
                // Evict someone: a replacement with an IPv6 address may move up.
                let victim = t.peers().nth(p as usize % t.len().max(1));
                if let Some(victim) = victim {
                    t.on_failure(&victim.id, &victim.addr);
                }
            }
            t.check().unwrap();
            for q in t.peers() {
                assert_eq!(known[&q.id], q.addr);
            }
            let room = t.bucket_count() * (2 + 2);
            assert!(
                t.v6.len() <= 2 * room + V6_MIN_LIMIT + 1,
                "{} slots",
                t.v6.len()
            );
        }
        assert!(compacted, "the IPv6 slots were never compacted");
    }

    #[test]
    fn random_id_lands_in_its_bucket() {
        let now = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let own = NodeId::random(&mut rng);
        let mut t = Table::new(own, 2, 0, 1, now);
        for p in 0..200 {
            t.on_heard(now, peer(&mut rng, 1000 + p), true);
        }
        for i in 0..t.bucket_count() {
            for _ in 0..10 {
                let id = t.random_id_in_bucket(i, &mut rng);
                assert_eq!(t.index(&id), i);
            }
        }
    }
}
