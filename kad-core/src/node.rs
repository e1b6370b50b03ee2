//! The node: glues routing table, requests in flight, store and queries together.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::idle::{free_if_drained, free_if_empty};
use crate::query::{
    majority_width, Ask, Bootstrap, Collect, Kind, Lookup, Outcome, Patience, Poll, Purpose, Put,
    Query,
};
use crate::record_store::RecordStore;
use crate::routing::{Failed, Heard, IpLimits, Table};
use crate::rpc::{Owner, Pending, Rpc};
use crate::snapshot::{self, RecordKind, Snapshot, SnapshotRecord};
use crate::store::{self, Record, Store};
use crate::validate::{Origin, Validator, Verdict};
use crate::verified::Verified;
use crate::wire::{
    Body, DecodeError, FindValueRes, Message, RequestKind, Sender, TxnId, WirePeer, BYTES_MARKER,
    PEER_BYTES, PEER_BYTES_V6, REPLY_ENVELOPE_BYTES,
};
use crate::{
    Config, Event, KeyError, NodeId, Peer, PutError, QueryError, QueryId, QueryResult, QueryStats,
    RefuseReason, Stats, Transmit, Value,
};

mod cancel;
mod watch;

/// The dynamic cache TTL of the reference:
/// `max(min_cache_ttl, floor(key_expiry / (bit_length(own XOR target) + 1)))`, in whole
/// seconds.
///
/// ```
/// use std::time::Duration;
/// use kad_core::{cache_ttl, NodeId};
/// let own = NodeId::default();
/// let mut t = [0u8; 20];
/// t[19] = 1; // distance 1
/// let ttl = cache_ttl(&own, &NodeId(t), Duration::from_secs(86410), Duration::from_secs(600));
/// assert_eq!(ttl, Duration::from_secs(43205));
/// ```
pub fn cache_ttl(
    own: &NodeId,
    target: &NodeId,
    key_expiry: Duration,
    min_ttl: Duration,
) -> Duration {
    let bits = own.distance(target).bit_length() as u128 + 1;
    let secs = key_expiry.as_nanos() / bits / 1_000_000_000;
    Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX)).max(min_ttl)
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

/// `now + d` without ever panicking (durations are capped by [`Config::validate`]).
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// The state shared by every query: what a query may touch while it runs.
pub(crate) struct Core {
    /// Shared, never changed: a simulation of many nodes with one config holds it once.
    pub config: Arc<Config>,
    pub id: NodeId,
    pub local_addr: SocketAddr,
    sender: Sender,
    pub rng: ChaCha12Rng,
    pub table: Table,
    pub rpc: Rpc,
    pub store: Box<dyn RecordStore>,
    /// Which values we store, serve and return.
    pub validator: Box<dyn Validator>,
    transmits: VecDeque<Transmit>,
    /// What [`Node::poll_event`] gives: finished queries, and watch events when on.
    events: VecDeque<Event>,
    /// Whether watch events are queued ([`Node::watch`]).
    watching: bool,
    pub stats: Stats,
    /// Requests from unproven senders waiting for them to answer a verification ping (a
    /// store, or a request whose reply is larger than the request allows), oldest first.
    held: BTreeMap<u64, Held>,
    next_hold: u64,
    /// Addresses with a verification ping in flight: the order it was sent in, its
    /// transaction.
    verifying: BTreeMap<SocketAddr, (u64, u64)>,
    /// `set`s that would change a value we hold, waiting for their sender to confirm it
    /// holds the new value (see [`Core::confirm`]), oldest first: the `find_value` sent, the set.
    confirming: BTreeMap<u64, (u64, Confirm)>,
    /// Cached copies offered by `set_cached`, waiting for our closest peers to the key to
    /// say whether they hold the same value (see [`Core::check_cached`]), oldest first.
    cache_checks: BTreeMap<u64, CacheCheck>,
    /// Addresses that answered our requests lately (beside the routing table's entries).
    verified: Verified,
    /// How per-IP limits count addresses (the table's caps, store quotas, holds).
    ip_limits: IpLimits,
}

/// A request from an address that has not proven itself, kept until it answers our
/// verification ping.
struct Held {
    addr: SocketAddr,
    msg: Message,
    len: usize,
}

/// A `set` waiting for its sender's confirmation.
struct Confirm {
    peer: Peer,
    txn: TxnId,
    key: String,
    value: Value,
    len: usize,
}

/// A cached copy waiting for the peers asked about it.
struct CacheCheck {
    key: String,
    value: Value,
    /// Who offered it (its IP's quota pays for it).
    from: SocketAddr,
    /// The `find_value`s still in flight.
    asked: Vec<u64>,
    /// Peers asked, and those whose answer carried the same value.
    polled: usize,
    agree: usize,
}

/// Peers asked whether they hold a value offered by `set_cached`.
const CACHE_CHECK_PEERS: usize = 3;

/// Held requests and verification pings one IP (one IPv6 prefix) may have at once, so one
/// host cannot take every slot; a flood of forged sources still can, and then the oldest
/// slot goes first: an honest sender's ping comes back within a round trip.
const UNPROVEN_PER_IP: usize = 8;

/// The window in which a proven address's reply allowance refills (see
/// `Config::reply_allowance`).
pub(crate) const ALLOWANCE_WINDOW: Duration = Duration::from_secs(60);

impl Core {
    fn can_send(&self) -> bool {
        !self.rpc.is_full() && self.transmits.len() < self.config.max_queued_transmits
    }

    /// Sends a request and remembers it; `None` when the request table or the transmit
    /// queue is full (the caller retries once capacity frees up).
    pub fn send_request(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: Option<NodeId>,
        body: Body,
        owner: Owner,
    ) -> Option<u64> {
        let kind = body.request_kind()?;
        if !self.can_send() {
            self.stats.requests_deferred += 1;
            return None;
        }
        let txn = loop {
            let t = self.rng.next_u64();
            if !self.rpc.contains(t) {
                break t;
            }
        };
        // A verification ping is not repeated: a forged source draws one ping, no more.
        let copies = match owner {
            Owner::Verify => 0,
            _ => self.config.request_retries as u8,
        };
        // The request is kept, not its bytes: most are answered before a copy is due, and
        // a lookup's body clones without allocating.
        let resend = (copies > 0).then(|| body.clone());
        let payload = self.encode_request(txn, body);
        if payload.len() > self.config.max_datagram_bytes {
            // It can never go out: no request in flight, so no timeout counted against a
            // peer that never saw it.
            self.stats.transmits_dropped += 1;
            return None;
        }
        self.push(addr, payload);
        self.stats.requests_sent.count(kind);
        self.rpc.insert(
            txn,
            Pending {
                addr,
                expected,
                kind,
                deadline: later(now, self.config.query_timeout),
                owner,
                sent: now,
                stall: None,
                resent: false,
            },
        );
        if let Some(body) = resend {
            self.rpc.resend(txn, now, copies, body);
        }
        Some(txn)
    }

    /// A request's datagram: lookup requests padded (see `Config::pad_requests`). The same
    /// transaction and body always give the same bytes, so a retransmission is the original.
    fn encode_request(&self, txn: u64, body: Body) -> Vec<u8> {
        let min_len = if self.config.pad_requests
            && matches!(
                body.request_kind(),
                Some(RequestKind::FindNode | RequestKind::FindValue)
            ) {
            self.padded_request_len()
        } else {
            0
        };
        self.encode_padded(TxnId::from_u64(txn), body, min_len)
    }

    /// Sends the retransmissions due at `now`.
    fn resend_due(&mut self, now: Instant) {
        while let Some((addr, txn, body)) = self.rpc.pop_resend(now) {
            self.stats.requests_retransmitted += 1;
            let payload = self.encode_request(txn, body);
            self.push(addr, payload);
        }
    }

    fn encode(&self, txn: TxnId, body: Body) -> Vec<u8> {
        self.encode_padded(txn, body, 0)
    }

    /// Encodes a message at least `min_len` bytes long (see [`Codec::encode_padded`]).
    fn encode_padded(&self, txn: TxnId, body: Body, min_len: usize) -> Vec<u8> {
        let msg = Message {
            txn,
            sender: self.sender.clone(),
            body,
            client: self.config.client_mode,
        };
        let mut payload = Vec::with_capacity(256);
        self.config.codec.encode_padded(&msg, min_len, &mut payload);
        payload
    }

    /// How long a padded lookup request is: a k-peer answer, estimated generously, divided
    /// by the responder's reply factor (assumed equal to ours), so that the answer fits the
    /// budget of a responder that has not verified us yet and comes in one round trip.
    fn padded_request_len(&self) -> usize {
        let per_peer = if self.local_addr.is_ipv6() {
            PEER_BYTES_V6
        } else {
            PEER_BYTES
        };
        let reply = REPLY_ENVELOPE_BYTES + self.config.k * per_peer;
        reply.div_ceil(self.config.unverified_reply_factor.max(1))
    }

    fn push(&mut self, dst: SocketAddr, payload: Vec<u8>) {
        if self.transmits.len() >= self.config.max_queued_transmits
            || payload.len() > self.config.max_datagram_bytes
        {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.transmits.push_back(Transmit { dst, payload });
    }

    /// Has the sender at `peer.addr` proven that address: it answered a request of ours
    /// from it (as a table entry or replacement with that id, or lately as anyone)?
    fn addr_proven(&self, peer: &Peer, now: Instant) -> bool {
        self.table.is_verified(&peer.id, &peer.addr) || self.verified.contains(&peer.addr, now)
    }

    /// Answers a request. Whatever the sender, a reply is at most `unverified_reply_factor`
    /// times its request, plus, for an address that proved itself by answering one of our
    /// requests from it, what is left of its `reply_allowance`. A larger reply to an
    /// unproven sender waits (as its request, `held`) until the sender answers a
    /// verification ping; a larger reply to a proven one is shortened (a peer list) or not
    /// sent (a value). So a forged source address cannot turn us into an amplifier aimed at
    /// a third party, even one that is a DHT node and answers our pings, while an honest
    /// newcomer pays one extra round trip, once an hour, and gets complete answers.
    fn reply(&mut self, now: Instant, ctx: Ctx, txn: TxnId, body: Body) {
        let Ctx {
            peer,
            len,
            proven,
            request,
        } = ctx;
        let budget = len.saturating_mul(self.config.unverified_reply_factor);
        let payload = self.encode(txn, body.clone());
        if payload.len() <= budget {
            return self.push(peer.addr, payload);
        }
        if proven {
            if self.spend_allowance(now, &peer, payload.len()) {
                return self.push(peer.addr, payload);
            }
            self.stats.replies_over_allowance += 1;
        } else if let Some(request) = request {
            if self.hold(now, peer, request, len) {
                return;
            }
        }
        // No room to hold it, or no allowance left: a peer list goes out shortened, a
        // value not at all.
        match body {
            Body::FindNodeRes { peers } => {
                let payload = self.shorten(txn, peers, budget, |peers| Body::FindNodeRes { peers });
                self.push(peer.addr, payload);
            }
            Body::FindValueRes(FindValueRes::Peers(peers)) => {
                let payload = self.shorten(txn, peers, budget, |p| {
                    Body::FindValueRes(FindValueRes::Peers(p))
                });
                self.push(peer.addr, payload);
            }
            Body::FindValueRes(FindValueRes::Value(_)) => self.stats.replies_held_dropped += 1,
            // Pong, set_res, set_cached_res, check_store_res are never larger than their
            // requests by much.
            _ => self.push(peer.addr, payload),
        }
    }

    /// Takes `bytes` from a proven address's reply allowance.
    fn spend_allowance(&mut self, now: Instant, peer: &Peer, bytes: usize) -> bool {
        let allowance = self.allowance();
        if !self.verified.contains(&peer.addr, now) {
            // A table entry carries its proof; its allowance starts when first needed.
            self.verified.insert(peer.addr, peer.id, now, allowance);
        }
        self.verified
            .spend(&peer.addr, now, bytes, allowance, ALLOWANCE_WINDOW)
    }

    /// The keys a lookup's diversity caps count `addr` under: its IP (an IPv6 prefix),
    /// and its /24 (the same prefix for IPv6). `None` when exempt: with
    /// `ip_limits_exempt_loopback` (the default), every address that is not globally
    /// routable (loopback, private, shared, link-local, unique-local) is, so a LAN or
    /// container network of many nodes in one /24 looks its peers up as before, while a
    /// host on the internet cannot fill a lookup with its ids.
    pub fn diversity_keys(&self, addr: &SocketAddr) -> Option<([u8; 8], [u8; 8])> {
        if self.ip_limits.exempt_loopback && !is_global(addr) {
            return None;
        }
        let ip = self.ip_limits.key(addr)?;
        let mut net = ip;
        if net[0] == 4 {
            net[0] = 24;
            net[4] = 0;
        }
        Some((ip, net))
    }

    /// The per-IP key of `addr` for the limits on unproven senders (`None`: exempt).
    pub(crate) fn ip_key(&self, addr: &SocketAddr) -> Option<[u8; 8]> {
        self.ip_limits.key(addr)
    }

    /// Makes sure a verification ping to `peer` is in flight; false when none could be
    /// sent (its IP has too many in flight, or the request table is full). When
    /// `max_held_replies` pings are in flight, the oldest is given up.
    fn verify(&mut self, now: Instant, peer: Peer) -> bool {
        if self.verifying.contains_key(&peer.addr) {
            return true;
        }
        if let Some(key) = self.ip_key(&peer.addr) {
            let same_ip = self
                .verifying
                .keys()
                .filter(|a| self.ip_key(a) == Some(key))
                .count();
            if same_ip >= UNPROVEN_PER_IP {
                return false;
            }
        }
        if self.verifying.len() >= self.config.max_held_replies {
            let oldest = self
                .verifying
                .iter()
                .min_by_key(|(_, (order, _))| *order)
                .map(|(a, (_, txn))| (*a, *txn));
            if let Some((addr, txn)) = oldest {
                self.rpc.remove(txn);
                self.stats.verifications_dropped += 1;
                // Counted as dropped, not as failed (`release` counts what it removes).
                self.verifying.remove(&addr);
                self.release(now, addr, false);
            }
        }
        let Some(txn) = self.send_request(now, peer.addr, Some(peer.id), Body::Ping, Owner::Verify)
        else {
            return false;
        };
        let order = self.next_hold;
        self.next_hold += 1;
        self.verifying.insert(peer.addr, (order, txn));
        true
    }

    /// Keeps an unproven sender's request until it answers a verification ping (one ping
    /// per address, however many requests wait for it); false when there is no room. At
    /// most [`UNPROVEN_PER_IP`] per IP; when `max_held_replies` are held, the oldest goes.
    fn hold(&mut self, now: Instant, peer: Peer, msg: Message, len: usize) -> bool {
        if let Some(key) = self.ip_key(&peer.addr) {
            let same_ip = self
                .held
                .values()
                .filter(|h| self.ip_key(&h.addr) == Some(key))
                .count();
            if same_ip >= UNPROVEN_PER_IP {
                return false;
            }
        }
        if !self.verify(now, peer) {
            return false;
        }
        if self.held.len() >= self.config.max_held_replies {
            self.held.pop_first();
            self.stats.replies_held_dropped += 1;
        }
        let addr = peer.addr;
        self.held.insert(self.next_hold, Held { addr, msg, len });
        self.next_hold += 1;
        self.stats.replies_held += 1;
        true
    }

    /// A store from an address that has not proven itself waits for it to (or is dropped,
    /// and counted, when there is no room to hold it).
    fn hold_store(&mut self, now: Instant, peer: Peer, request: Option<Message>, len: usize) {
        let Some(request) = request else {
            return self.stats.stores_unproven_dropped += 1;
        };
        let key = match &request.body {
            Body::Set { key, .. } | Body::SetCached { key, .. } => key.clone(),
            _ => String::new(),
        };
        if !self.hold(now, peer, request, len) {
            self.stats.stores_unproven_dropped += 1;
            self.refused(peer.addr, &key, RefuseReason::Unproven);
        }
    }

    /// Stores `value` as our replica of `key` (a stranger's `set` of a key we published
    /// makes it a replica: we stop republishing it as ours; the last writer republishes its
    /// own value). False, counted, when the store refuses it.
    fn store_replica(&mut self, now: Instant, from: SocketAddr, key: String, value: Value) -> bool {
        let record = Record {
            value,
            kind: store::Kind::Replica,
            expires: later(now, self.config.key_expiry),
            republish_at: Some(later(now, self.config.non_publisher_restore_interval)),
            source: self.ip_key(&from),
        };
        if self.store.put(&key, record).is_err() {
            self.stats.requests_refused += 1;
            return false;
        }
        true
    }

    /// A `set` from a proven address would change the value we hold for its key. The
    /// address proved it can answer, not that it sent this: a `set` forged with the source
    /// of the key's publisher (a proven peer) would otherwise overwrite the key everywhere.
    /// So we ask the sender's address for the key (`find_value`), and apply the `set`, and
    /// answer it, only if the answer is the value it carries: the writer holds what it
    /// writes (a kad or reference node keeps its own published value). One round trip per
    /// replica per update; at most [`UNPROVEN_PER_IP`] waiting per IP and
    /// `max_held_replies` in all (the oldest dropped).
    fn confirm(&mut self, now: Instant, c: Confirm) {
        let ip = self.ip_key(&c.peer.addr);
        let same_ip = ip.map_or(0, |key| {
            self.confirming
                .values()
                .filter(|(_, w)| self.ip_key(&w.peer.addr) == Some(key))
                .count()
        });
        if same_ip >= UNPROVEN_PER_IP {
            self.stats.updates_unconfirmed += 1;
            return;
        }
        if self.confirming.len() >= self.config.max_held_replies {
            if let Some((_, (txn, _))) = self.confirming.pop_first() {
                self.rpc.remove(txn);
                self.stats.updates_unconfirmed += 1;
            }
        }
        let body = Body::FindValue { key: c.key.clone() };
        let Some(txn) = self.send_request(now, c.peer.addr, None, body, Owner::Confirm) else {
            self.stats.updates_unconfirmed += 1;
            return;
        };
        let order = self.next_hold;
        self.next_hold += 1;
        self.confirming.insert(order, (txn, c));
    }

    /// The answer to a confirming `find_value` (`None`: it timed out).
    fn confirmed(&mut self, now: Instant, txn: u64, answer: Option<&Body>) {
        let Some(order) = self
            .confirming
            .iter()
            .find(|(_, (t, _))| *t == txn)
            .map(|(o, _)| *o)
        else {
            return;
        };
        let Some((_, c)) = self.confirming.remove(&order) else {
            return;
        };
        free_if_empty(&mut self.confirming);
        let holds =
            matches!(answer, Some(Body::FindValueRes(FindValueRes::Value(v))) if *v == c.value);
        if !holds {
            self.stats.updates_unconfirmed += 1;
            return;
        }
        let Confirm {
            peer,
            txn,
            key,
            value,
            len,
        } = c;
        if !self.store_replica(now, peer.addr, key.clone(), value) {
            return self.refused(peer.addr, &key, RefuseReason::StoreFull);
        }
        self.stored(peer.addr, &key, false, true);
        self.stats.updates_confirmed += 1;
        self.stats.requests_answered += 1;
        let ctx = Ctx {
            peer,
            len,
            proven: true,
            request: None,
        };
        self.reply(now, ctx, txn, Body::SetRes);
    }

    /// Do we hold `key` as a replica or as its publisher (which no cached copy replaces)?
    fn holds_better(&self, now: Instant, key: &str) -> bool {
        matches!(self.store.get(now, key), Some(r) if r.kind != store::Kind::Cached)
    }

    /// A proven peer offers a cached copy of `key`. Anybody's proven port can send
    /// `set_cached`, and a forged copy on the nodes around a key would be served to every
    /// lookup passing by, so we ask our [`CACHE_CHECK_PEERS`] closest proven peers to the
    /// key (the replicas, as a copy is offered to nodes near it) and keep the copy only
    /// if most of them hold the same value. Three small requests per offer; at most
    /// [`UNPROVEN_PER_IP`] checks per offering IP and `max_held_replies` in all (the
    /// oldest given up).
    fn check_cached(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: &NodeId,
        key: String,
        value: Value,
    ) {
        let ip = self.ip_key(&from);
        let same_ip = ip.map_or(0, |k| {
            self.cache_checks
                .values()
                .filter(|c| self.ip_key(&c.from) == Some(k))
                .count()
        });
        if same_ip >= UNPROVEN_PER_IP || self.cache_checks.values().any(|c| c.key == key) {
            self.stats.cached_unconfirmed += 1;
            return;
        }
        if self.cache_checks.len() >= self.config.max_held_replies {
            if let Some((_, old)) = self.cache_checks.pop_first() {
                for txn in old.asked {
                    self.rpc.remove(txn);
                }
                self.stats.cached_unconfirmed += 1;
            }
        }
        let peers =
            self.table
                .closest_verified(&NodeId::for_key(&key), CACHE_CHECK_PEERS, Some(sender));
        let mut asked = Vec::new();
        for p in peers.into_iter().filter(|p| p.addr != from) {
            let body = Body::FindValue { key: key.clone() };
            if let Some(txn) = self.send_request(now, p.addr, Some(p.id), body, Owner::CacheCheck) {
                asked.push(txn);
            }
        }
        if asked.is_empty() {
            self.stats.cached_unconfirmed += 1;
            return;
        }
        let order = self.next_hold;
        self.next_hold += 1;
        let polled = asked.len();
        self.cache_checks.insert(
            order,
            CacheCheck {
                key,
                value,
                from,
                asked,
                polled,
                agree: 0,
            },
        );
    }

    /// An answer to a cache check's `find_value` (`None`: it timed out).
    fn cache_checked(&mut self, now: Instant, txn: u64, answer: Option<&Body>) {
        let Some(order) = self
            .cache_checks
            .iter()
            .find(|(_, c)| c.asked.contains(&txn))
            .map(|(o, _)| *o)
        else {
            return;
        };
        let Some(c) = self.cache_checks.get_mut(&order) else {
            return;
        };
        c.asked.retain(|t| *t != txn);
        if matches!(answer, Some(Body::FindValueRes(FindValueRes::Value(v))) if *v == c.value) {
            c.agree += 1;
        }
        if !c.asked.is_empty() {
            return;
        }
        let Some(c) = self.cache_checks.remove(&order) else {
            return;
        };
        free_if_empty(&mut self.cache_checks);
        if 2 * c.agree <= c.polled || self.holds_better(now, &c.key) {
            self.stats.cached_unconfirmed += 1;
            return;
        }
        // The TTL follows the key's real id, not the sender's claim of it.
        let ttl = cache_ttl(
            &self.id,
            &NodeId::for_key(&c.key),
            self.config.key_expiry,
            self.config.min_cache_ttl,
        );
        let record = Record {
            value: c.value,
            kind: store::Kind::Cached,
            expires: later(now, ttl),
            republish_at: None,
            source: self.ip_key(&c.from),
        };
        if self.store.put(&c.key, record).is_err() {
            self.stats.requests_refused += 1;
            return self.refused(c.from, &c.key, RefuseReason::StoreFull);
        }
        self.stored(c.from, &c.key, true, false);
        self.stats.cached_confirmed += 1;
    }

    /// `Config::reply_allowance` as the verified cache counts it.
    fn allowance(&self) -> u32 {
        u32::try_from(self.config.reply_allowance).unwrap_or(u32::MAX)
    }

    /// Encodes a peer-list reply with as many peers as fit `budget` bytes.
    fn shorten(
        &mut self,
        txn: TxnId,
        mut peers: Vec<WirePeer>,
        budget: usize,
        make: impl Fn(Vec<WirePeer>) -> Body,
    ) -> Vec<u8> {
        self.stats.replies_shortened += 1;
        let full = self.encode(txn, make(peers.clone())).len();
        let base = self.encode(txn, make(Vec::new())).len();
        let per_peer = (full - base).div_ceil(peers.len().max(1)).max(1);
        peers.truncate(budget.saturating_sub(base) / per_peer);
        loop {
            let payload = self.encode(txn, make(peers.clone()));
            if payload.len() <= budget || peers.pop().is_none() {
                return payload;
            }
        }
    }

    /// `addr` answered a request of ours (`answered`), or its verification ping timed out
    /// or was given up: serve, or drop, every request held for it, in the order they came.
    fn release(&mut self, now: Instant, addr: SocketAddr, answered: bool) {
        if self.verifying.remove(&addr).is_some() {
            if answered {
                self.stats.verifications_passed += 1;
            } else {
                self.stats.verifications_failed += 1;
            }
        }
        let holds: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.addr == addr)
            .map(|(h, _)| *h)
            .collect();
        for hold in holds {
            if let Some(h) = self.held.remove(&hold) {
                if answered {
                    self.on_request(now, h.addr, h.msg, h.len, true);
                } else {
                    self.stats.replies_held_dropped += 1;
                }
            }
        }
        free_if_empty(&mut self.held);
        free_if_empty(&mut self.verifying);
    }

    /// A peer answered a request of ours from the address it went to: it owns that
    /// address and that id. Offer it to the routing table; check the oldest entry of a
    /// full bucket, or the old address of an id heard from a new one.
    fn proven(&mut self, now: Instant, peer: Peer) {
        match self.table.on_heard(now, peer, true) {
            Heard::PingOldest(old) | Heard::Moved(old)
                if self
                    .send_request(now, old.addr, Some(old.id), Body::Ping, Owner::TablePing)
                    .is_none() =>
            {
                self.table.clear_ping(&old.id);
            }
            Heard::IpLimited => self.stats.peers_ip_limited += 1,
            Heard::Added => self.note(|| Event::PeerAdded { peer }),
            _ => {}
        }
    }

    /// A request came from `peer`: a claim, which changes nothing in the routing table by
    /// itself. A sender that proved this id at this address lately joins the table; any
    /// other that the table would take is asked to prove it (one ping, which its answer
    /// turns into a table entry).
    fn claimed(&mut self, now: Instant, peer: Peer) {
        if peer.id == self.id || self.table.is_verified(&peer.id, &peer.addr) {
            return;
        }
        if self.verified.id_of(&peer.addr, now) == Some(peer.id) {
            return self.proven(now, peer);
        }
        if self.table.wants(&peer.id, now) {
            self.verify(now, peer);
        }
    }

    /// A request to `id` at `addr` failed: only the entry at that address pays.
    fn failed(&mut self, id: &NodeId, addr: &SocketAddr) {
        let Failed::Evicted { replacement } = self.table.on_failure(id, addr) else {
            return;
        };
        self.stats.peers_evicted += 1;
        let old = Peer {
            id: *id,
            addr: *addr,
        };
        self.note(|| Event::PeerEvicted { peer: old });
        if let Some(new) = replacement {
            self.note(|| Event::PeerReplaced { old, new });
        }
    }

    /// Serves a request. `proven`: its sender's address is known to be its own (the
    /// request waited for a verification ping that it answered).
    fn on_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: Message,
        request_len: usize,
        proven: bool,
    ) {
        let peer = Peer {
            id: msg.sender.id,
            addr: from,
        };
        let proven = proven || self.addr_proven(&peer, now);
        // A client never joins the table, whatever it proves.
        if !msg.client {
            self.claimed(now, peer);
        }
        // What an unproven sender's reply may wait on: its request.
        let request = (!proven && msg.body.may_need_proof()).then(|| msg.clone());
        let Message {
            txn, sender, body, ..
        } = msg;
        if self.config.client_mode && matches!(body, Body::Set { .. } | Body::SetCached { .. }) {
            // A client keeps nothing for others; no answer, as for any refused store.
            self.stats.requests_refused += 1;
            if let Body::Set { key, .. } | Body::SetCached { key, .. } = &body {
                self.refused(from, key, RefuseReason::ClientMode);
            }
            return;
        }
        let reply = match body {
            Body::Ping => Body::Pong,
            Body::FindNode { target } => Body::FindNodeRes {
                peers: self.closest_wire(&target, Some(&sender.id)),
            },
            Body::Set { key, value } => {
                // The cheap limits first, then the validator (a signature check).
                if !self.accept_record(&key, &value) {
                    return self.refused(from, &key, RefuseReason::TooLarge);
                }
                if !self.admit(now, &key, &value, Origin::Set) {
                    return self.refused(from, &key, RefuseReason::Rejected);
                }
                if !proven {
                    return self.hold_store(now, peer, request, request_len);
                }
                let changes = self
                    .store
                    .get(now, &key)
                    .is_some_and(|r| r.kind != store::Kind::Cached && r.value != value);
                if changes {
                    return self.confirm(
                        now,
                        Confirm {
                            peer,
                            txn,
                            key,
                            value,
                            len: request_len,
                        },
                    );
                }
                let held = self.held_before(now, &key);
                if !self.store_replica(now, from, key.clone(), value) {
                    return self.refused(from, &key, RefuseReason::StoreFull);
                }
                self.stored(from, &key, false, held);
                Body::SetRes
            }
            Body::SetCached { key, value, .. } => {
                // The cheap limits first, then the validator (a signature check).
                if !self.accept_record(&key, &value) {
                    return self.refused(from, &key, RefuseReason::TooLarge);
                }
                if !self.admit(now, &key, &value, Origin::SetCached) {
                    return self.refused(from, &key, RefuseReason::Rejected);
                }
                if !proven {
                    return self.hold_store(now, peer, request, request_len);
                }
                // A cached copy never replaces a replica or our own record, and is
                // kept only once our closest peers to the key confirm it.
                if !self.holds_better(now, &key) {
                    self.check_cached(now, from, &sender.id, key, value);
                }
                Body::SetCachedRes
            }
            Body::CheckStore { key, .. } => {
                let has_key = self.store.get(now, &key).is_some();
                // A proven peer is restoring this key: our own restore can wait an
                // interval, so k holders do not all re-replicate the same record every
                // hour. A stranger's claim postpones nothing.
                if has_key && proven {
                    self.postpone_restore(now, &key);
                }
                Body::CheckStoreRes { has_key }
            }
            Body::FindValue { key } => match self.store.get(now, &key) {
                Some(r) if self.serves(now, &key, r) => {
                    Body::FindValueRes(FindValueRes::Value(r.value.clone()))
                }
                _ => Body::FindValueRes(FindValueRes::Peers(
                    self.closest_wire(&NodeId::for_key(&key), Some(&sender.id)),
                )),
            },
            _ => return,
        };
        self.stats.requests_answered += 1;
        let ctx = Ctx {
            peer,
            len: request_len,
            proven,
            request,
        };
        self.reply(now, ctx, txn, reply);
    }

    /// Does `record` answer a `find_value` (or our own `get`)? Replicas and cached copies
    /// do. Our own published record does only while we are among the k closest nodes we
    /// know for the key: otherwise another node's later `set` of the key went to the
    /// replicas and not to us, and our copy would shadow the update for every lookup that
    /// passes us (the replicas hold the current value; we keep ours only to republish).
    /// Right after we (re)published it, it does anyway: the replicas that held another
    /// value ask us for it to confirm our `set` (see `Core::confirm`), and it is the
    /// newest value there is.
    fn serves(&self, now: Instant, key: &str, record: &Record) -> bool {
        if record.kind != store::Kind::Published {
            return true;
        }
        let age = self
            .config
            .key_expiry
            .saturating_sub(record.expires.saturating_duration_since(now));
        if age <= self.config.query_timeout.saturating_mul(2) {
            return true;
        }
        // Only peers that proved their address count: a flood of newcomers (unverified,
        // and gone at their first failure) must not silence our record.
        let target = NodeId::for_key(key);
        let own = self.id.distance(&target);
        let closer = self
            .table
            .closest(&target, 3 * self.config.k, None)
            .into_iter()
            .take_while(|p| p.id.distance(&target) < own)
            .filter(|p| self.table.is_verified(&p.id, &p.addr))
            .count();
        closer < self.config.k
    }

    fn postpone_restore(&mut self, now: Instant, key: &str) {
        let Some(r) = self.store.get(now, key) else {
            return;
        };
        if r.kind != store::Kind::Replica {
            return;
        }
        let mut r = r.clone();
        r.republish_at = Some(later(now, self.config.non_publisher_restore_interval));
        // Replacing a record with itself cannot exceed the limits.
        let _ = self.store.put(key, r);
    }

    /// Does the validator let `value` be stored under `key`: valid, and allowed to replace
    /// the value we hold? Counts a refusal.
    pub(crate) fn admit(&mut self, now: Instant, key: &str, value: &Value, origin: Origin) -> bool {
        let ok = self.validator.validate(key, value, origin) == Verdict::Accept
            && match self.store.get(now, key) {
                Some(held) => {
                    held.value == *value || self.validator.replaces(key, &held.value, value, origin)
                }
                None => true,
            };
        if !ok {
            self.stats.records_rejected += 1;
        }
        ok
    }

    /// Is an incoming record within our limits? Counts a refusal if not.
    fn accept_record(&mut self, key: &str, value: &Value) -> bool {
        if key.len() > self.config.max_key_bytes || value.byte_len() > self.config.max_value_bytes {
            self.stats.requests_refused += 1;
            return false;
        }
        true
    }

    /// The peers we tell others about: proven entries only.
    fn closest_wire(&self, target: &NodeId, exclude: Option<&NodeId>) -> Vec<WirePeer> {
        self.table
            .closest_verified(target, self.config.k, exclude)
            .into_iter()
            .map(|p| WirePeer {
                id: p.id,
                addr: p.addr,
            })
            .collect()
    }

    fn check_key(&self, key: &str) -> Result<(), KeyError> {
        if key.len() > self.config.max_key_bytes {
            return Err(KeyError::TooLong {
                len: key.len(),
                max: self.config.max_key_bytes,
            });
        }
        if key.as_bytes().starts_with(BYTES_MARKER) {
            return Err(KeyError::Reserved);
        }
        Ok(())
    }
}

/// What a reply needs to know of its request.
struct Ctx {
    /// Its sender (claimed id, real source address).
    peer: Peer,
    /// Its size in bytes.
    len: usize,
    /// Its source address has proven itself.
    proven: bool,
    /// The request itself, kept for an unproven sender whose reply may have to wait.
    request: Option<Message>,
}

/// A Kademlia node as a sans-IO state machine. See the [crate docs](crate) for the drive
/// loop.
pub struct Node {
    core: Core,
    queries: BTreeMap<QueryId, Query>,
    next_query: u64,
    /// Queries with news to act on.
    dirty: BTreeSet<QueryId>,
    /// Queries waiting for room in the request table or transmit queue.
    starved: BTreeSet<QueryId>,
    next_refresh: Instant,
    republishing: usize,
    last_now: Instant,
    /// User queries' deadlines ([`Node::set_deadline`]), soonest first.
    deadlines: BTreeSet<(Instant, QueryId)>,
}

impl Node {
    /// A new node with id `id`. All its randomness (transaction ids, refresh targets) comes
    /// from a ChaCha RNG seeded with `seed`: the same seed and inputs give the same outputs.
    ///
    /// `config` is a [`Config`] or an `Arc<Config>`: nodes built from clones of one `Arc`
    /// share their settings instead of holding a copy each (272 bytes a node).
    pub fn new(config: impl Into<Arc<Config>>, id: NodeId, seed: [u8; 32], now: Instant) -> Node {
        let config: Arc<Config> = config.into();
        let store = Store::new(
            config.max_records,
            config.max_store_bytes,
            config.store_percent_per_ip,
        );
        Node::with_store(config, id, seed, now, store)
    }

    /// [`Node::new`] with another [`RecordStore`] than the default in-memory one. The
    /// store's records count as held at once (a restarted node serves them); their limits
    /// are the store's own.
    pub fn with_store(
        config: impl Into<Arc<Config>>,
        id: NodeId,
        seed: [u8; 32],
        now: Instant,
        store: impl RecordStore + 'static,
    ) -> Node {
        let config: Arc<Config> = config.into();
        let local_addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let mut core = Core {
            table: Table::new(
                id,
                config.k,
                config.replacement_cache_size,
                config.failures_before_eviction,
                now,
            ),
            rpc: Rpc::new(config.max_pending_requests),
            store: Box::new(store),
            validator: default_validator(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            watching: false,
            stats: Stats::default(),
            held: BTreeMap::new(),
            verifying: BTreeMap::new(),
            confirming: BTreeMap::new(),
            cache_checks: BTreeMap::new(),
            verified: Verified::new(config.max_verified_addresses),
            ip_limits: IpLimits {
                per_bucket: config.max_peers_per_ip_per_bucket,
                per_table: config.max_peers_per_ip,
                exempt_loopback: config.ip_limits_exempt_loopback,
                v6_prefix_bits: u8::try_from(config.ipv6_prefix_len).unwrap_or(64),
            },
            next_hold: 0,
            rng: ChaCha12Rng::from_seed(seed),
            sender: Sender {
                id,
                ip: local_addr.ip().into(),
                port: 0,
            },
            local_addr,
            id,
            config,
        };
        core.table
            .set_ping_oldest_after(core.config.ping_oldest_after);
        core.table.set_ip_limits(core.ip_limits);
        Node {
            next_refresh: later(now, core.config.bucket_refresh_interval),
            core,
            queries: BTreeMap::new(),
            next_query: 1,
            dirty: BTreeSet::new(),
            starved: BTreeSet::new(),
            republishing: 0,
            last_now: now,
            deadlines: BTreeSet::new(),
        }
    }

    /// Sets the address written in every message's `sender` field. Call it once the socket
    /// is bound: peers of the reference record our port from it.
    pub fn set_local_addr(&mut self, addr: SocketAddr) {
        self.core.local_addr = addr;
        self.core.sender = Sender {
            id: self.core.id,
            ip: addr.ip().into(),
            port: addr.port(),
        };
    }

    /// Installs the [`Validator`] that decides which values this node stores, serves and
    /// returns (by default [`crate::AcceptAll`], or, with the `signed` feature,
    /// `SignedRecords` in front of it: wrap yours in `SignedRecords::new` to keep
    /// signed records checked). Values already stored are not re-checked.
    pub fn set_validator(&mut self, validator: impl Validator + 'static) {
        self.core.validator = Box::new(validator);
    }

    /// The address given to [`Node::set_local_addr`].
    pub fn local_addr(&self) -> SocketAddr {
        self.core.local_addr
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.core.id
    }

    /// The node's settings.
    pub fn config(&self) -> &Config {
        &self.core.config
    }

    /// Counters of what the node did and dropped.
    pub fn stats(&self) -> Stats {
        self.core.stats
    }

    /// Number of peers in the routing table.
    pub fn table_len(&self) -> usize {
        self.core.table.len()
    }

    /// Every peer in the routing table.
    pub fn peers(&self) -> Vec<Peer> {
        self.core.table.peers().collect()
    }

    /// Up to `count` peers of the routing table closest to `target`, closest first.
    pub fn closest_peers(&self, target: &NodeId, count: usize) -> Vec<Peer> {
        self.core.table.closest(target, count, None)
    }

    /// Number of records in the local store (expired ones may linger until the next
    /// `handle_timeout`).
    pub fn record_count(&self) -> usize {
        self.core.store.len()
    }

    /// Bytes the local store holds by its own measure (see [`RecordStore::bytes`]).
    pub fn store_bytes(&self) -> Option<usize> {
        self.core.store.bytes()
    }

    /// The round trips measured so far ([`crate::metrics`]).
    #[cfg(feature = "metrics")]
    pub(crate) fn rtt_histogram(&self) -> &prometheus_client::metrics::histogram::Histogram {
        self.core.rpc.rtt_histogram()
    }

    /// The local unexpired value of `key`, without asking the network.
    pub fn get_local(&self, now: Instant, key: &str) -> Option<Value> {
        self.core.store.get(now, key).map(|r| r.value.clone())
    }

    /// Has `addr` proven it owns its address: it is a routing-table entry that answered a
    /// request of ours from it, or a stranger that answered our verification ping within
    /// the last hour (before we sent it a large reply)? Adapters use it to triage under
    /// overload: when more datagrams arrive than they hand to the node, those from proven
    /// addresses go first, so a flood from strangers (or forged sources) cannot crowd out
    /// known peers.
    pub fn is_verified_addr(&self, now: Instant, addr: SocketAddr) -> bool {
        self.core.verified.contains(&addr, now) || self.core.table.has_verified_addr(&addr)
    }

    /// Is a request of ours to `addr` waiting for its answer? Adapters triaging under
    /// overload let such datagrams through with those of verified addresses: dropping an
    /// awaited answer costs a lookup a whole `query_timeout`.
    pub fn awaits_reply_from(&self, addr: SocketAddr) -> bool {
        self.core.rpc.awaits(&addr)
    }

    /// Requests in flight, waiting for an answer (at most `max_pending_requests`).
    pub fn requests_in_flight(&self) -> usize {
        self.core.rpc.len()
    }

    /// Requests of unproven senders held until they answer a verification ping (at most
    /// `max_held_replies`).
    pub fn held_requests(&self) -> usize {
        self.core.held.len()
    }

    /// Number of queries running (user and maintenance).
    pub fn active_queries(&self) -> usize {
        self.queries.len()
    }

    // ---- input ----

    /// Input: one datagram received from `from`. Garbage is dropped and counted in
    /// [`Node::stats`]; it never panics and never returns an error.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.last_now = now;
        self.core.stats.datagrams_received += 1;
        let msg = match self.core.config.codec.decode(bytes) {
            Ok(m) => m,
            Err(DecodeError::UnknownType) => {
                self.core.stats.unknown_type += 1;
                return;
            }
            Err(_) => {
                self.core.stats.malformed += 1;
                return;
            }
        };
        if msg.body.is_request() {
            if let Some(kind) = msg.body.request_kind() {
                self.core.stats.requests_received.count(kind);
            }
            self.core.on_request(now, from, msg, bytes.len(), false);
        } else {
            self.on_response(now, from, msg);
        }
        self.run(now);
    }

    fn on_response(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        let core = &mut self.core;
        let Some((txn, pending)) = msg
            .txn
            .to_u64()
            .and_then(|t| core.rpc.get(t).map(|p| (t, *p)))
        else {
            core.stats.responses_unmatched += 1;
            return;
        };
        if core.config.verify_response_source && pending.addr != from {
            core.stats.responses_wrong_source += 1;
            return;
        }
        if !msg.body.answers(pending.kind) {
            core.stats.responses_wrong_kind += 1;
            return;
        }
        core.rpc.answered(txn, now);
        core.stats.responses_accepted += 1;
        let sender = msg.sender.id;
        if let Some(expected) = pending.expected {
            if expected != sender {
                // Another node answers at that address now: the one we knew there is gone
                // (and one that merely claimed it is not who it said).
                core.failed(&expected, &pending.addr);
            }
        }
        let peer = Peer {
            id: sender,
            addr: from,
        };
        // It answered a request of ours from the address the request went to: it owns the
        // address, and any request held for it can be served. (With source verification
        // switched off a response from elsewhere proves nothing about either address, and
        // changes nothing in the table.)
        if pending.addr == from {
            if !msg.client {
                core.proven(now, peer);
            }
            // The table's entries and replacements carry their proof. The cache remembers
            // the others we had to verify (they asked us for something large, or to
            // store), not every address that ever answered a lookup of ours: that was most
            // of a long-running node's memory, and such an address, should it ask for a
            // large reply later, pays one round trip.
            let wanted = core.verifying.contains_key(&from);
            if wanted && !core.table.is_verified(&peer.id, &peer.addr) {
                let allowance = core.allowance();
                core.verified.insert(from, sender, now, allowance);
                core.note(|| Event::NodeVerified { peer });
            }
            core.release(now, from, true);
        }
        match pending.owner {
            Owner::Query { id, tag } => {
                if let Some(q) = self.queries.get_mut(&id) {
                    let body = &msg.body;
                    q.on_outcome(
                        core,
                        now,
                        tag,
                        Outcome::Response {
                            txn,
                            from,
                            sender,
                            body,
                        },
                    );
                    self.dirty.insert(id);
                }
            }
            // A pong from elsewhere (source verification off) verifies nothing.
            Owner::Verify if pending.addr != from => core.release(now, pending.addr, false),
            Owner::Verify => {}
            Owner::Confirm if pending.addr != from => core.confirmed(now, txn, None),
            Owner::Confirm => core.confirmed(now, txn, Some(&msg.body)),
            Owner::CacheCheck => core.cache_checked(now, txn, Some(&msg.body)),
            Owner::TablePing | Owner::Detached => {}
        }
    }

    /// Input: time has passed. Call it when [`Node::poll_timeout`]'s deadline is reached;
    /// early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        while let Some((txn, p)) = self.core.rpc.pop_expired(now) {
            self.core.stats.request_timeouts += 1;
            if let Some(id) = p.expected {
                self.core.failed(&id, &p.addr);
            }
            match p.owner {
                Owner::Query { id, tag } => {
                    if let Some(q) = self.queries.get_mut(&id) {
                        q.on_outcome(&mut self.core, now, tag, Outcome::Failure { txn });
                        self.dirty.insert(id);
                    }
                }
                Owner::Verify => self.core.release(now, p.addr, false),
                Owner::Confirm => self.core.confirmed(now, txn, None),
                Owner::CacheCheck => self.core.cache_checked(now, txn, None),
                Owner::TablePing | Owner::Detached => {}
            }
        }
        // Requests a lookup stops waiting on (they stay in flight).
        while let Some((txn, owner)) = self.core.rpc.pop_stalled(now) {
            if let Owner::Query { id, tag } = owner {
                if let Some(q) = self.queries.get_mut(&id) {
                    q.on_outcome(&mut self.core, now, tag, Outcome::Stalled { txn });
                    self.dirty.insert(id);
                }
            }
        }
        self.expire_deadlines(now);
        // After the expiries: a copy of a request that has run out of time is not sent.
        self.core.resend_due(now);
        let expired = self.core.store.expire(now);
        self.core.stats.records_expired += expired;
        if expired > 0 {
            self.core.note(|| Event::RecordsExpired { count: expired });
        }
        if now >= self.next_refresh {
            self.next_refresh = later(now, self.core.config.bucket_refresh_interval);
            let interval = self.core.config.bucket_refresh_interval;
            for i in self.core.table.stale_buckets(now, interval) {
                if self.queries.len() >= self.core.config.max_active_queries {
                    break;
                }
                let target = self.core.table.random_id_in_bucket(i, &mut self.core.rng);
                self.start_lookup(now, Purpose::Refresh, target);
            }
        }
        self.run(now);
    }

    // ---- commands ----

    fn next_id(&mut self) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        id
    }

    /// Registers a query, or finishes it at once with `TooManyQueries`.
    fn start(&mut self, now: Instant, purpose: Purpose, id: QueryId, kind: Kind) -> QueryId {
        let q = Query::new(id, purpose, now, kind);
        if self.queries.len() >= self.core.config.max_active_queries {
            let result = cancel::failed(&q.kind, QueryError::TooManyQueries);
            self.finish(q, result, now);
            return id;
        }
        if purpose == Purpose::User {
            self.core.note(|| Event::QueryStarted { id });
        }
        self.queries.insert(id, q);
        self.dirty.insert(id);
        id
    }

    fn start_lookup(&mut self, now: Instant, purpose: Purpose, target: NodeId) -> QueryId {
        let id = self.next_id();
        let mut lookup = Lookup::new(&self.core, target, Ask::FindNode, Query::owner(id, 0));
        if purpose == Purpose::User {
            // Exact: it ends once each of the k closest has answered or failed.
            lookup = lookup.with_final_burst().with_patience(Patience::FreeSlots);
        }
        self.start(now, purpose, id, Kind::FindNode(lookup))
    }

    /// Command: ping `addr`. Finishes with [`QueryResult::Ping`].
    pub fn ping(&mut self, now: Instant, addr: SocketAddr) -> QueryId {
        self.last_now = now;
        let id = self.next_id();
        let kind = Kind::Ping {
            addr,
            txn: None,
            result: None,
        };
        let id = self.start(now, Purpose::User, id, kind);
        self.run(now);
        id
    }

    /// Command: join a network. Pings every address, then looks up our own id and a random
    /// id in every bucket's range, as the reference does. Finishes with
    /// [`QueryResult::Bootstrap`]; it fails when no address answered.
    pub fn bootstrap(&mut self, now: Instant, addrs: &[SocketAddr]) -> QueryId {
        self.last_now = now;
        let id = self.next_id();
        let mut list: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if !list.contains(a) && list.len() < self.core.config.max_pending_requests {
                list.push(*a);
            }
        }
        let id = self.start(
            now,
            Purpose::User,
            id,
            Kind::Bootstrap(Bootstrap::new(list)),
        );
        self.run(now);
        id
    }

    /// Command: find the k live peers closest to `target`. Finishes with
    /// [`QueryResult::FindNode`].
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> QueryId {
        self.last_now = now;
        let id = self.start_lookup(now, Purpose::User, target);
        self.run(now);
        id
    }

    /// Command: look `key` up on the network (the local store is not consulted). Finishes
    /// with [`QueryResult::FindValue`].
    pub fn find_value(&mut self, now: Instant, key: &str) -> Result<QueryId, KeyError> {
        self.value_query(now, key)
    }

    /// Command: the value of `key`, as the k closest nodes that answer hold it. The lookup
    /// does not stop at the first value: it ends early only once a quarter of k IPs (at
    /// least 3) returned one value and nobody offered another; otherwise it asks the k
    /// closest and returns the value held by the most of them, one vote an IP (our own replica, or our published record while we
    /// are among the k closest we know, one more; ties go to the value of the closest
    /// holder). A liar, a host with many ids or a forged copy cached on the way is outvoted
    /// by the replicas. For a key whose validator collects (signed records) the validator's
    /// preferred valid value wins instead. [`Node::find_value`] is the reference's
    /// first-answer lookup. Finishes with [`QueryResult::Get`] (`Ok(None)` when nobody
    /// holds it).
    pub fn get(&mut self, now: Instant, key: &str) -> Result<QueryId, KeyError> {
        // A cached copy, which any proven peer may have put here, does not answer our own
        // get: the lookup asks the replicas.
        let local = self
            .core
            .store
            .get(now, key)
            .filter(|r| r.kind != store::Kind::Cached && self.core.serves(now, key, r))
            .map(|r| r.value.clone());
        let collect = if self.core.validator.collects(key) {
            Collect::new(local)
        } else {
            Collect::majority(local, NodeId::for_key(key))
        };
        self.collect_query(now, key, collect)
    }

    /// A get that asks the k closest for their values and returns the one the validator
    /// prefers; our own copy (`local`) competes with theirs.
    fn collect_query(
        &mut self,
        now: Instant,
        key: &str,
        collect: Collect,
    ) -> Result<QueryId, KeyError> {
        self.core.check_key(key)?;
        self.last_now = now;
        let id = self.next_id();
        let target = NodeId::for_key(key);
        let lookup = Lookup::new(
            &self.core,
            target,
            Ask::FindValue(key.to_owned()),
            Query::owner(id, 0),
        )
        .with_final_burst();
        // A majority get waits on no silent peer while others can be asked.
        let lookup = if collect.is_majority() {
            lookup
                .with_patience(Patience::SkipStalled)
                .with_width(majority_width(self.core.config.k))
        } else {
            lookup
        };
        let kind = Kind::FindValue {
            lookup,
            get: true,
            key: key.to_owned(),
            found: None,
            collect: Some(collect),
        };
        let id = self.start(now, Purpose::User, id, kind);
        self.run(now);
        Ok(id)
    }

    /// The reference's lookup: it ends at the first value (see [`Node::find_value`]).
    fn value_query(&mut self, now: Instant, key: &str) -> Result<QueryId, KeyError> {
        self.core.check_key(key)?;
        self.last_now = now;
        let id = self.next_id();
        let target = NodeId::for_key(key);
        let lookup = Lookup::new(
            &self.core,
            target,
            Ask::FindValue(key.to_owned()),
            Query::owner(id, 0),
        )
        .with_patience(Patience::SkipStalled);
        let kind = Kind::FindValue {
            lookup,
            get: false,
            key: key.to_owned(),
            found: None,
            collect: None,
        };
        let id = self.start(now, Purpose::User, id, kind);
        self.run(now);
        Ok(id)
    }

    /// Command: store `value` under `key` on the k closest nodes, and locally as its
    /// original publisher (republished every `original_publisher_republish_interval`).
    /// Arguments that can never work are refused at once; otherwise the outcome arrives as
    /// [`QueryResult::Put`], `Ok` once at least one remote node acknowledged.
    pub fn put(
        &mut self,
        now: Instant,
        key: &str,
        value: impl Into<Value>,
    ) -> Result<QueryId, PutError> {
        let value = value.into();
        self.core.check_key(key)?;
        let max = self.core.config.max_value_bytes;
        if value.byte_len() > max {
            return Err(PutError::ValueTooLarge {
                len: value.byte_len(),
                max,
            });
        }
        // The largest message that carries the value is set_cached: it must fit a datagram.
        let probe = Message {
            txn: TxnId::from_u64(u64::MAX),
            sender: self.core.sender.clone(),
            body: Body::SetCached {
                key: key.to_owned(),
                value: value.clone(),
                target: NodeId::for_key(key),
            },
            client: self.core.config.client_mode,
        };
        let mut buf = Vec::new();
        self.core.config.codec.encode(&probe, &mut buf);
        // Our bind address may be replaced by a longer IPv6 literal in a peer's eyes.
        let len = buf.len() + 64;
        if len > self.core.config.max_datagram_bytes {
            return Err(PutError::DatagramTooLarge {
                len,
                max: self.core.config.max_datagram_bytes,
            });
        }
        if !self.core.admit(now, key, &value, Origin::Put) {
            return Err(PutError::Rejected);
        }
        self.last_now = now;
        let record = Record {
            value: value.clone(),
            kind: store::Kind::Published,
            expires: later(now, self.core.config.key_expiry),
            republish_at: Some(later(
                now,
                self.core.config.original_publisher_republish_interval,
            )),
            source: None,
        };
        self.core
            .store
            .put(key, record)
            .map_err(|_| PutError::StoreFull)?;
        let id = self.next_id();
        let put = Put::new(&self.core, id, key.to_owned(), value, false);
        let id = self.start(now, Purpose::User, id, Kind::Put(put));
        self.run(now);
        Ok(id)
    }

    // ---- output ----

    /// Output: the next datagram to send. Call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.core.transmits.pop_front()?;
        self.core.stats.datagrams_sent += 1;
        free_if_drained(&mut self.core.transmits);
        Some(t)
    }

    /// Output: the next event. Call until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.core.events.pop_front()?;
        free_if_drained(&mut self.core.events);
        Some(e)
    }

    /// Output: when to call [`Node::handle_timeout`] next. It is the last `now` given when
    /// work is waiting for it; `None` never happens in practice (refresh is periodic).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.starved.is_empty() && self.core.can_send() {
            return Some(self.last_now);
        }
        let mut next = Some(self.next_refresh);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.core.rpc.next_deadline());
        consider(self.next_query_deadline());
        consider(self.core.store.next_expiry());
        if self.republish_capacity() {
            consider(self.core.store.next_republish());
        }
        next
    }

    fn republish_capacity(&self) -> bool {
        self.republishing < self.core.config.max_concurrent_republish
            && self.queries.len() < self.core.config.max_active_queries
    }

    // ---- internals ----

    /// Lets every query with news act, starts due republishes, until nothing changes.
    fn run(&mut self, now: Instant) {
        loop {
            if self.core.can_send() && !self.starved.is_empty() {
                self.dirty.append(&mut self.starved);
            }
            while let Some(id) = self.dirty.pop_first() {
                let Some(q) = self.queries.get_mut(&id) else {
                    continue;
                };
                match q.poll(&mut self.core, now) {
                    Poll::Pending { starved } => {
                        if starved {
                            self.starved.insert(id);
                        }
                    }
                    Poll::Done(result) => {
                        if let Some(q) = self.queries.remove(&id) {
                            free_if_empty(&mut self.queries);
                            self.finish(q, result, now);
                        }
                    }
                }
            }
            if !self.start_due_republish(now) {
                break;
            }
        }
        free_if_empty(&mut self.dirty);
        free_if_empty(&mut self.starved);
    }

    fn start_due_republish(&mut self, now: Instant) -> bool {
        let mut started = false;
        while self.republish_capacity() {
            let publisher = self.core.config.original_publisher_republish_interval;
            let restore = self.core.config.non_publisher_restore_interval;
            let Some((key, record)) =
                self.core
                    .store
                    .take_due_republish(now, &|kind: store::Kind| match kind {
                        store::Kind::Published => later(now, publisher),
                        _ => later(now, restore),
                    })
            else {
                break;
            };
            if record.kind == store::Kind::Published {
                // A publisher's republish renews its own copy too, as the reference's set().
                self.core
                    .store
                    .renew(&key, later(now, self.core.config.key_expiry));
            }
            let id = self.next_id();
            // The publisher's daily republish is a full `set`, as in the reference: it
            // renews every replica's expiry. (A `check_store` first would find them all
            // still holding the record, ten seconds before it expires everywhere.)
            // Others restore only where the record is missing.
            let check_first = record.kind != store::Kind::Published;
            let put = Put::new(&self.core, id, key, record.value, check_first);
            self.start(now, Purpose::Republish, id, Kind::Put(put));
            self.republishing += 1;
            started = true;
        }
        started
    }

    fn finish(&mut self, q: Query, result: QueryResult, now: Instant) {
        self.starved.remove(&q.id);
        self.forget_deadline(q.id);
        match q.purpose {
            Purpose::User => self.core.events.push_back(Event::QueryFinished {
                id: q.id,
                result,
                stats: q.stats(now),
            }),
            Purpose::Republish => self.republishing = self.republishing.saturating_sub(1),
            Purpose::Refresh => {}
        }
    }

    /// Checks every internal invariant (bucket sizes, every request in flight has a
    /// deadline, bounded queues and store, query bookkeeping). For tests, simulations and
    /// fuzzers: a failure is a bug in kad-core.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.core.table.check()?;
        self.core.rpc.check()?;
        self.core.store.check()?;
        if self.core.held.len() > self.core.config.max_held_replies {
            return Err("too many held replies".into());
        }
        self.core.verified.check()?;
        for h in self.core.held.values() {
            if !self.core.verifying.contains_key(&h.addr) {
                return Err("a held request with no verification ping in flight".into());
            }
        }
        if self.core.verifying.len() > self.core.config.max_held_replies {
            return Err("too many verification pings in flight".into());
        }
        if self.core.transmits.len() > self.core.config.max_queued_transmits {
            return Err("transmit queue above its limit".into());
        }
        if self.queries.len() > self.core.config.max_active_queries {
            return Err("more queries than max_active_queries".into());
        }
        for q in self.queries.values() {
            q.check()?;
        }
        for (id, q) in &self.queries {
            // Every query ends: it waits on a request (which has a deadline), on capacity,
            // or is about to be polled.
            if !self.starved.contains(id)
                && !self.dirty.contains(id)
                && !self.core.rpc.has_owner(*id)
            {
                return Err(format!("query {id} waits for nothing"));
            }
            let _ = q;
        }
        Ok(())
    }

    /// The node's persistent state at `now`: id, routing table, unexpired records with their
    /// remaining lifetimes. Write it with [`Snapshot::to_bytes`].
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let records = self
            .core
            .store
            .iter()
            .filter(|(_, r)| now < r.expires)
            .map(|(key, r)| SnapshotRecord {
                key: key.clone(),
                value: r.value.clone(),
                kind: match r.kind {
                    store::Kind::Published => RecordKind::Published,
                    store::Kind::Replica => RecordKind::Replica,
                    store::Kind::Cached => RecordKind::Cached,
                },
                expires_in: r.expires.saturating_duration_since(now),
                republish_in: r.republish_at.map(|t| t.saturating_duration_since(now)),
            })
            .collect();
        Snapshot {
            id: self.core.id,
            peers: self.core.table.peers().collect(),
            records,
        }
    }

    /// A node brought back from a snapshot: same id, its peers back in the routing table
    /// (they must answer again before they count as verified), its records with the
    /// lifetimes they had left. Records beyond this config's limits are left out; the
    /// number left out is returned.
    pub fn restore(
        config: impl Into<Arc<Config>>,
        snapshot: &Snapshot,
        seed: [u8; 32],
        now: Instant,
    ) -> (Node, usize) {
        let config: Arc<Config> = config.into();
        let store = Store::new(
            config.max_records,
            config.max_store_bytes,
            config.store_percent_per_ip,
        );
        Node::restore_with_store(config, snapshot, seed, now, store)
    }

    /// [`Node::restore`] onto another [`RecordStore`] (see [`Node::with_store`]): a record
    /// the store already holds stays as the store has it (a store that keeps its records,
    /// on disk, is at least as recent as the snapshot).
    pub fn restore_with_store(
        config: impl Into<Arc<Config>>,
        snapshot: &Snapshot,
        seed: [u8; 32],
        now: Instant,
        store: impl RecordStore + 'static,
    ) -> (Node, usize) {
        let mut node = Node::with_store(config, snapshot.id, seed, now, store);
        for p in &snapshot.peers {
            node.core.table.on_heard(now, *p, false);
        }
        let mut left_out = 0;
        for r in &snapshot.records {
            let record = Record {
                value: r.value.clone(),
                kind: match r.kind {
                    RecordKind::Published => store::Kind::Published,
                    RecordKind::Replica => store::Kind::Replica,
                    RecordKind::Cached => store::Kind::Cached,
                },
                expires: snapshot::at(now, r.expires_in),
                republish_at: r.republish_in.map(|d| snapshot::at(now, d)),
                source: None,
            };
            if node.core.store.get(now, &r.key).is_some() {
                continue;
            }
            let fits = node.core.check_key(&r.key).is_ok()
                && r.value.byte_len() <= node.core.config.max_value_bytes;
            if !fits || node.core.store.put(&r.key, record).is_err() {
                left_out += 1;
            }
        }
        (node, left_out)
    }

    /// Every query's id and stats so far, for diagnostics.
    pub fn query_stats(&self, now: Instant) -> Vec<(QueryId, QueryStats)> {
        self.queries
            .values()
            .map(|q| (q.id, q.stats(now)))
            .collect()
    }
}

/// The validator a new node starts with: signed records checked when the feature is on.
fn default_validator() -> Box<dyn Validator> {
    #[cfg(feature = "signed")]
    return Box::new(crate::SignedRecords::new(crate::AcceptAll));
    #[cfg(not(feature = "signed"))]
    return Box::new(crate::AcceptAll);
}
