//! What a node tells its driver: datagrams to send, finished queries, and errors.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire::RequestKind;
use crate::{NodeId, Value};

/// Identifies one command (query) given to a [`crate::Node`]. Sequential, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId(pub u64);

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "q{}", self.0)
    }
}

/// A peer: its id and the address it talks to us from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    /// The peer's node id.
    pub id: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// One datagram for the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Where to send it.
    pub dst: SocketAddr,
    /// The encoded message.
    pub payload: Vec<u8>,
}

/// Something that happened inside the node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A command finished. Every command given to the node ends with exactly one of these.
    QueryFinished {
        /// The id the command returned.
        id: QueryId,
        /// What came of it.
        result: QueryResult,
        /// How much work it took.
        stats: QueryStats,
    },
    /// A user command started a query (only while [`crate::Node::watch`] is on, as every
    /// event below).
    QueryStarted {
        /// The id the command returned.
        id: QueryId,
    },
    /// A peer joined the routing table: it answered a request of ours from its address.
    PeerAdded {
        /// The new entry.
        peer: Peer,
    },
    /// A peer left the routing table after failing too often; the freshest replacement
    /// that talked to us, if any, takes its place (and [`Event::PeerReplaced`] follows).
    PeerEvicted {
        /// The entry that left.
        peer: Peer,
    },
    /// Right after [`Event::PeerEvicted`] of `old`: `new`, a proven peer that waited in the
    /// bucket's replacement cache, took its place in the routing table. (libp2p-kad says
    /// this with `RoutingUpdated { old_peer, .. }`.) A watcher that mirrors the table
    /// removes `old` on the eviction and adds `new` here; no [`Event::PeerAdded`] is sent
    /// for it.
    PeerReplaced {
        /// The entry that was evicted.
        old: Peer,
        /// The replacement now in the table.
        new: Peer,
    },
    /// A stranger answered our verification ping from its address: its address is proven,
    /// and requests held for it are served.
    NodeVerified {
        /// Who answered, and where.
        peer: Peer,
    },
    /// A peer's `set` or `set_cached` stored a record we did not hold.
    RecordStored {
        /// The key.
        key: String,
        /// Who sent it.
        from: SocketAddr,
        /// A cached copy (`set_cached`), not a replica (`set`).
        cached: bool,
    },
    /// A peer's `set` or `set_cached` renewed a record we already held.
    RecordRefreshed {
        /// The key.
        key: String,
        /// Who sent it.
        from: SocketAddr,
    },
    /// Records reached their expiry and were removed.
    RecordsExpired {
        /// How many.
        count: u64,
    },
    /// A peer's `set` or `set_cached` was refused: no `set_res` went back.
    RecordRefused {
        /// The key.
        key: String,
        /// Who sent it.
        from: SocketAddr,
        /// Why.
        reason: RefuseReason,
    },
    /// The server wrote (or failed to write) a state snapshot ([`crate::server::Server`]
    /// only; a bare node never saves).
    StateSaved {
        /// Whether the write succeeded.
        ok: bool,
    },
}

/// Why a store request was refused ([`Event::RecordRefused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// Its key or value is over the configured limit.
    TooLarge,
    /// The [`crate::Validator`] refused the value (or to let it replace the one held).
    Rejected,
    /// The store is full, or the sender's IP has used its share of it.
    StoreFull,
    /// Its sender had not proven its address and there was no room to hold the request
    /// until it did.
    Unproven,
    /// This node is a client ([`crate::Config::client_mode`]): it stores nothing for
    /// others.
    ClientMode,
}

/// The outcome of a command, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryResult {
    /// Outcome of [`crate::Node::ping`]: the peer that answered.
    Ping(Result<Peer, QueryError>),
    /// Outcome of [`crate::Node::bootstrap`].
    Bootstrap(Result<BootstrapOk, QueryError>),
    /// Outcome of [`crate::Node::find_node`]: up to k closest live peers, closest first.
    FindNode(Result<Vec<Peer>, QueryError>),
    /// Outcome of [`crate::Node::find_value`].
    FindValue(Result<FindValueOk, QueryError>),
    /// Outcome of [`crate::Node::get`]: `Ok(None)` when no node holds the key.
    Get(Result<Option<Value>, QueryError>),
    /// Outcome of [`crate::Node::put`].
    Put(Result<PutOk, QueryError>),
}

/// A successful bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapOk {
    /// How many of the given addresses answered the ping.
    pub answered: usize,
    /// Peers in the routing table afterwards.
    pub table_size: usize,
}

/// A finished `find_value`: the value if some node held it, and the closest peers seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindValueOk {
    /// The value, if found.
    pub value: Option<Value>,
    /// The closest peers that answered, closest first.
    pub peers: Vec<Peer>,
}

/// A successful put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutOk {
    /// How many remote nodes acknowledged the value.
    pub replicas: usize,
    /// How many of the closest nodes it was sent to.
    pub attempted: usize,
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The routing table is empty: bootstrap first.
    #[error("no known peers: bootstrap first")]
    NoPeers,
    /// Every peer asked failed to answer in time.
    #[error("no peer answered")]
    NoResponse,
    /// The value reached no remote node (it is still stored locally).
    #[error("no remote node stored the value")]
    NotStored,
    /// Too many queries are running ([`crate::Config::max_active_queries`]).
    #[error("too many queries running")]
    TooManyQueries,
    /// The query's deadline ([`crate::Node::set_deadline`]) passed before it finished.
    #[error("the query's deadline passed")]
    DeadlinePassed,
}

/// Work done by one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryStats {
    /// The lookup's hop count: a peer from our own table is 1 hop, a peer first named by an
    /// h-hop peer is h+1; this is the largest hop count among queried peers that answered.
    pub rounds: u32,
    /// Requests sent.
    pub requests: u32,
    /// Responses received.
    pub responses: u32,
    /// Requests that timed out.
    pub timeouts: u32,
    /// When the command was given.
    pub started: Instant,
    /// When it finished.
    pub finished: Instant,
}

impl QueryStats {
    /// How long the query ran.
    pub fn duration(&self) -> Duration {
        self.finished.saturating_duration_since(self.started)
    }
}

/// A key that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Longer than [`crate::Config::max_key_bytes`].
    #[error("key is {len} bytes, the limit is {max}")]
    TooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Starts with the bencode bytes marker `\0bytes\0`, which would decode as bytes.
    #[error("key starts with the reserved marker \\0bytes\\0")]
    Reserved,
}

/// Why a put was refused before it started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The value is larger than [`crate::Config::max_value_bytes`].
    #[error("value is {len} bytes, the limit is {max}")]
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Key and value encode to more than one datagram in this node's wire format.
    #[error("key and value encode to {len} bytes, more than the {max}-byte datagram limit")]
    DatagramTooLarge {
        /// The encoded size of the largest message carrying them.
        len: usize,
        /// [`crate::Config::max_datagram_bytes`].
        max: usize,
    },
    /// The local store is full of records that may not be evicted.
    #[error("the local store is full")]
    StoreFull,
    /// The node's [`crate::Validator`] refused the value (for a signed key: an older
    /// sequence than the one held, or a compare-and-swap that does not match it).
    #[error("the validator refused the value")]
    Rejected,
    /// The salt of a signed record is longer than 64 bytes.
    #[error("salt is {len} bytes, the limit is {max}")]
    SaltTooLong {
        /// The salt's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Counters of what a node did and dropped. Every dropped datagram is counted somewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams given to `handle_datagram`.
    pub datagrams_received: u64,
    /// Datagrams handed out by `poll_transmit`.
    pub datagrams_sent: u64,
    /// Datagrams that did not decode (bad syntax, missing or invalid fields).
    pub malformed: u64,
    /// Datagrams of an unknown `type`.
    pub unknown_type: u64,
    /// Requests answered.
    pub requests_answered: u64,
    /// Requests refused (store full, oversize value): dropped without an answer.
    pub requests_refused: u64,
    /// Responses that matched a request we sent.
    pub responses_accepted: u64,
    /// Responses matching no request in flight (late, duplicated, or forged).
    pub responses_unmatched: u64,
    /// Responses from an address other than the one the request went to.
    pub responses_wrong_source: u64,
    /// Responses of the wrong kind for their request.
    pub responses_wrong_kind: u64,
    /// Requests that timed out.
    pub request_timeouts: u64,
    /// Copies of unanswered requests sent again (see `Config::request_retries`).
    pub requests_retransmitted: u64,
    /// Requests not sent because `max_pending_requests` were in flight.
    pub requests_deferred: u64,
    /// Datagrams dropped because `max_queued_transmits` were queued.
    pub transmits_dropped: u64,
    /// Peers removed from the routing table after failing too often.
    pub peers_evicted: u64,
    /// Records removed at expiry.
    pub records_expired: u64,
    /// Peers refused by the per-IP caps.
    pub peers_ip_limited: u64,
    /// Replies to unverified senders shortened to the amplification budget.
    pub replies_shortened: u64,
    /// Replies held until their unverified sender answered a ping.
    pub replies_held: u64,
    /// Held replies dropped because the sender never answered (or too many were held).
    pub replies_held_dropped: u64,
    /// Replies to proven addresses shortened or dropped: their reply allowance was spent.
    pub replies_over_allowance: u64,
    /// Verification pings given up to make room for newer ones.
    pub verifications_dropped: u64,
    /// `set`/`set_cached` from unproven senders dropped (no room to hold them until they
    /// answered a verification ping).
    pub stores_unproven_dropped: u64,
    /// `set`s that changed a value we held, applied once their sender answered our
    /// `find_value` of the key with the same value.
    pub updates_confirmed: u64,
    /// `set`s that would have changed a value we held, dropped: their sender's address did
    /// not answer our `find_value` with that value (a forged source, or no room to ask).
    pub updates_unconfirmed: u64,
    /// `set_cached` copies kept: most of the closest peers we asked hold the same value.
    pub cached_confirmed: u64,
    /// `set_cached` copies not kept: the closest peers we asked did not hold that value
    /// (or there was nobody to ask, or no room to ask).
    pub cached_unconfirmed: u64,
    /// Incoming `set`/`set_cached` refused by the [`crate::Validator`]: dropped without an
    /// answer.
    pub records_rejected: u64,
    /// Values a lookup received that the [`crate::Validator`] refused (the lookup went on).
    pub values_rejected: u64,
    /// Queries ended by [`crate::Node::cancel`] (their late answers are ignored).
    pub queries_cancelled: u64,
    /// Queries ended by their deadline ([`crate::Node::set_deadline`]).
    pub queries_past_deadline: u64,
    /// Watch events ([`crate::Node::watch`]) dropped because too many were waiting to be
    /// polled.
    pub events_dropped: u64,
    /// Requests received (decoded), by kind; answered or not.
    pub requests_received: RequestCounts,
    /// Requests sent (first copies; retransmissions are in `requests_retransmitted`), by
    /// kind.
    pub requests_sent: RequestCounts,
    /// Verification pings answered from the address they went to: the sender is proven.
    pub verifications_passed: u64,
    /// Verification pings unanswered (or answered from elsewhere): what waited on them is
    /// dropped.
    pub verifications_failed: u64,
}

/// Requests by kind: one counter per request type of the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestCounts {
    /// `ping`.
    pub ping: u64,
    /// `find_node`.
    pub find_node: u64,
    /// `find_value`.
    pub find_value: u64,
    /// `set` (store a replica).
    pub set: u64,
    /// `set_cached` (store a cached copy).
    pub set_cached: u64,
    /// `check_store`.
    pub check_store: u64,
}

impl RequestCounts {
    /// Each kind with its wire name, in a fixed order.
    pub fn by_name(&self) -> [(&'static str, u64); 6] {
        [
            ("ping", self.ping),
            ("find_node", self.find_node),
            ("find_value", self.find_value),
            ("set", self.set),
            ("set_cached", self.set_cached),
            ("check_store", self.check_store),
        ]
    }

    /// Counts one request of `kind`.
    pub(crate) fn count(&mut self, kind: RequestKind) {
        let n = match kind {
            RequestKind::Ping => &mut self.ping,
            RequestKind::FindNode => &mut self.find_node,
            RequestKind::FindValue => &mut self.find_value,
            RequestKind::Set => &mut self.set,
            RequestKind::SetCached => &mut self.set_cached,
            RequestKind::CheckStore => &mut self.check_store,
        };
        *n += 1;
    }
}
