//! The node: glues routing table, requests in flight, store and queries together.
//!
//! This file holds the node's state, its constructor, accessors and outputs; each idea
//! has a file of its own: `input` (datagrams and timeouts), `serve` (answering
//! requests), `budget` (reply sizes and allowances), `verify` (proof of an address,
//! held requests), `records` (stores from others, cached copies), `send` (our
//! requests, and the outbox queries hand theirs to), `commands` (the user's queries), `maintenance` (queries acting,
//! republish), `persist` (snapshot and restore), `cancel` and `watch`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::crowd::Crowds;
use crate::idle::{free_if_drained, free_if_empty};
use crate::query::{
    Ask, Bootstrap, Collect, Kind, Lookup, Outcome, Patience, Poll, Purpose, Put, Query,
};
use crate::record_store::RecordStore;
use crate::routing::{Failed, Heard, IpLimits, Table};
use crate::rpc::{Owner, Pending, Rpc};
use crate::snapshot::{self, RecordKind, Snapshot, SnapshotRecord};
use crate::store::{self, Record, Store};
use crate::validate::{Origin, Validator, Verdict};
use crate::verified::Verified;
use crate::wire::{
    Body, DecodeError, FindValueRes, Message, OwnSender, RequestKind, Sender, TxnId, WirePeer,
    BYTES_MARKER, MIN_PEER_LEN, PEER_BYTES, PEER_BYTES_V6, REPLY_ENVELOPE_BYTES,
};
use crate::{
    Config, Event, KeyError, NodeId, Peer, PutError, QueryError, QueryId, QueryResult, QueryStats,
    RefuseReason, Stats, Transmit, Value,
};

mod budget;
mod cancel;
mod commands;
mod input;
mod maintenance;
mod persist;
mod records;
mod send;
mod serve;
mod verify;
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

/// The secret key of a node's id fingerprints ([`Crowds`]), from its seed without drawing
/// from its random stream (which would change every simulation's trace).
fn crowd_key(seed: &[u8; 32]) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    Sha1::new()
        .chain_update(b"kad crowd key")
        .chain_update(seed)
        .finalize()
        .into()
}

/// `now + d` without ever panicking (durations are capped by [`Config::validate`]).
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// How often a node looks for stale buckets: a quarter of `bucket_refresh_interval` (a
/// bucket untouched for the interval is refreshed at most a quarter later), and at least
/// a millisecond.
pub(crate) fn refresh_check_period(interval: Duration) -> Duration {
    (interval / 4).max(Duration::from_millis(1))
}

/// The first look for stale buckets: a random point of the first period, drawn from the
/// node's seeded rng. Nodes started together (a fleet deployed at once, a simulation, a
/// restart after an outage) would otherwise refresh in lockstep, every one of them at the
/// same instant each period.
pub(crate) fn first_refresh_check(
    now: Instant,
    interval: Duration,
    rng: &mut impl RngCore,
) -> Instant {
    let period = refresh_check_period(interval);
    let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    // Uniform in [1, period] nanoseconds (the modulo bias is below 2^-40 for an hour).
    let offset = 1 + rng.next_u64() % nanos;
    later(now, Duration::from_nanos(offset))
}

/// The node's state below its queries. A query never holds it: `Core::with_env` lends it
/// the parts it reads ([`crate::query::Env`]) and takes the requests it hands out.
pub(crate) struct Core {
    /// Shared, never changed: a simulation of many nodes with one config holds it once.
    pub config: Arc<Config>,
    pub id: NodeId,
    pub local_addr: SocketAddr,
    /// Our `sender` field, encoded once.
    sender: OwnSender,
    pub rng: ChaCha12Rng,
    pub table: Table,
    pub rpc: Rpc,
    pub store: Box<dyn RecordStore>,
    /// Which values we store, serve and return.
    pub validator: Box<dyn Validator>,
    transmits: VecDeque<Transmit>,
    /// Buffers of sent datagrams given back ([`Node::recycle`]), written into again.
    spare: Vec<Vec<u8>>,
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
    /// IPs that proved more ids than a host runs (see [`crate::crowd`]).
    crowds: Crowds,
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
    /// Peers asked, those whose answer carried the same value, and those whose answer
    /// carried another.
    polled: usize,
    agree: usize,
    dissent: usize,
}

/// Peers asked whether they hold a value offered by `set_cached`.
const CACHE_CHECK_PEERS: usize = 3;

/// Held requests and verification pings one IP (one IPv6 prefix) may have at once, so one
/// host cannot take every slot; a flood of forged sources still can, and then the oldest
/// slot goes first: an honest sender's ping comes back within a round trip.
const UNPROVEN_PER_IP: usize = 8;

/// The window in which a proven address's reply allowance refills (see
/// `Config::reply_allowance`).
/// Sent datagrams' buffers kept for later replies ([`Node::recycle`]): a burst's worth.
const SPARE_BUFFERS: usize = 64;
/// The largest buffer kept: a 20-peer reply fits.
const SPARE_CAPACITY: usize = 4096;

pub(crate) const ALLOWANCE_WINDOW: Duration = Duration::from_secs(60);

/// What a reply needs to know of its request.
struct Ctx {
    /// Its sender (claimed id, real source address).
    peer: Peer,
    /// Its size in bytes.
    len: usize,
    /// Its source address has proven itself; `None`: not known yet, because only the
    /// verified cache could tell, and it is asked only if the reply needs it.
    proven: Option<bool>,
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
        let store = default_store(&config);
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
            spare: Vec::new(),
            events: VecDeque::new(),
            watching: false,
            stats: Stats::default(),
            held: BTreeMap::new(),
            verifying: BTreeMap::new(),
            confirming: BTreeMap::new(),
            cache_checks: BTreeMap::new(),
            verified: Verified::new(config.max_verified_addresses),
            crowds: Crowds::new(
                config.max_verified_addresses,
                config.max_ids_per_ip,
                crowd_key(&seed),
            ),
            ip_limits: IpLimits {
                per_bucket: config.max_peers_per_ip_per_bucket,
                per_table: config.max_peers_per_ip,
                exempt_loopback: config.ip_limits_exempt_loopback,
                v6_prefix_bits: u8::try_from(config.ipv6_prefix_len).unwrap_or(64),
            },
            next_hold: 0,
            rng: ChaCha12Rng::from_seed(seed),
            sender: OwnSender::new(
                config.codec,
                Sender {
                    id,
                    ip: local_addr.ip().into(),
                    port: 0,
                },
            ),
            local_addr,
            id,
            config,
        };
        core.table
            .set_ping_oldest_after(core.config.ping_oldest_after);
        core.table.set_ip_limits(core.ip_limits);
        let next_refresh =
            first_refresh_check(now, core.config.bucket_refresh_interval, &mut core.rng);
        Node {
            next_refresh,
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
        self.core.sender = OwnSender::new(
            self.core.config.codec,
            Sender {
                id: self.core.id,
                ip: addr.ip().into(),
                port: addr.port(),
            },
        );
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

    /// Output: the next datagram to send. Call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.core.transmits.pop_front()?;
        self.core.stats.datagrams_sent += 1;
        // A node whose adapter gives its buffers back (`recycle`: its list of them has
        // room) sends on and keeps the queue's buffer; one in a simulation of a million
        // idles, and its empty queue's buffer is freed.
        if self.core.spare.capacity() == 0 {
            free_if_drained(&mut self.core.transmits);
        }
        Some(t)
    }

    /// Input (optional): the payload of a [`Transmit`] once it is sent, for the node to
    /// write a later reply into instead of allocating one. At most 64 buffers of up to
    /// 4 KiB are kept; any other is dropped. An adapter that never calls this loses only
    /// the allocations.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        if self.core.spare.len() < SPARE_BUFFERS && payload.capacity() <= SPARE_CAPACITY {
            self.core.spare.push(payload);
        }
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
        self.core.crowds.check()?;
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

/// The in-memory store a node gets when it is given none, sized by `config`.
pub(super) fn default_store(config: &Config) -> Store {
    Store::new(
        config.max_records,
        config.max_store_bytes,
        config.store_percent_per_ip,
    )
}
