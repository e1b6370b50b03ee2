//! What a node tells its driver: datagrams to send, events, and the results of queries
//! (their errors are in `error.rs`, their counters in `stats.rs`).

use std::fmt;
use std::net::SocketAddr;

use crate::{NodeId, QueryError, QueryStats, Value};

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
    /// The sender's IP proved more node ids than one host runs
    /// ([`crate::Config::max_ids_per_ip`]).
    Crowded,
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
