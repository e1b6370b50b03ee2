//! # kad-core: a sans-IO Kademlia node
//!
//! `kad-core` is the whole Kademlia protocol of the Python package `kademlia-dynamic`
//! (wire-compatible with it, in JSON or bencode) as a pure state machine: it consumes
//! datagrams and timestamps and produces datagrams, a timer deadline and events. It never
//! reads a clock, touches a socket, spawns a thread or draws OS randomness: a seed and a
//! script of inputs replay a node exactly. `kad-tokio` and `kad-smol` drive it over UDP.
//!
//! ## The drive loop
//!
//! After any input (`handle_datagram`, `handle_timeout`, or a command such as `get`),
//! drain [`Node::poll_transmit`] and [`Node::poll_event`], then sleep until
//! [`Node::poll_timeout`] or the next datagram, whichever comes first, and call
//! [`Node::handle_timeout`] when the deadline has passed. Giving each sent payload back
//! ([`Node::recycle`]) spares the node an allocation for a later reply.
//!
//! An adapter that serves a socket drives a [`server::Server`] instead: the node plus
//! every decision of the I/O loop around it (commands and their replies by caller
//! token, flood admission and the per-pass budget, the state-save schedule, transmits
//! held after `WouldBlock`, the I/O counters). Its module doc shows that loop; kad-tokio
//! and kad-smol are two such adapters.
//!
//! ```
//! use std::net::{SocketAddr, UdpSocket};
//! use std::time::{Duration, Instant};
//! use kad_core::{Config, Event, Node, NodeId, QueryResult};
//!
//! let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
//! let now = Instant::now();
//! let seed = [7u8; 32]; // use real randomness in production
//! let id = NodeId::for_key("example node");
//! let mut node = Node::new(Config::default(), id, seed, now);
//! node.set_local_addr(socket.local_addr().unwrap());
//!
//! // A lone node: get finds the value in its own store.
//! node.put(now, "hello", "world").unwrap();
//! let query = node.get(now, "hello").unwrap();
//!
//! let mut buf = [0u8; 65536];
//! 'drive: loop {
//!     while let Some(t) = node.poll_transmit() {
//!         socket.send_to(&t.payload, t.dst).unwrap();
//!         node.recycle(t.payload); // optional: a later reply is written into it
//!     }
//!     while let Some(event) = node.poll_event() {
//!         if let Event::QueryFinished { id, result: QueryResult::Get(value), .. } = event {
//!             if id == query {
//!                 assert_eq!(value.unwrap(), Some("world".into()));
//!                 break 'drive;
//!             }
//!         }
//!     }
//!     let now = Instant::now();
//!     let wait = node
//!         .poll_timeout()
//!         .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now));
//!     socket.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).unwrap();
//!     match socket.recv_from(&mut buf) {
//!         Ok((n, from)) => node.handle_datagram(Instant::now(), from, &buf[..n]),
//!         Err(_) => node.handle_timeout(Instant::now()),
//!     }
//! }
//! ```
//!
//! ## Cancelling queries, and deadlines
//!
//! [`Node::cancel`] ends a user's query at once: no [`Event::QueryFinished`] follows (the
//! caller asked), its `max_active_queries` slot is free for the next command, and its
//! requests still in flight are left to finish on their own: their answers still teach
//! the routing table, but the query never hears of them. [`Node::set_deadline`] ends a
//! query still running at a given instant with [`QueryError::DeadlinePassed`].
//! [`Stats::queries_cancelled`] and [`Stats::queries_past_deadline`] count both. The
//! server layer cancels the query of a caller who gave up
//! ([`server::Server::cancel_abandoned_when`]: in kad-tokio and kad-smol, dropping the
//! future of `get`, `set`, `find_node`, `find_value`, `bootstrap` or `ping`), so a per-call
//! deadline in an adapter is the runtime's own timeout around the call
//! (`tokio::time::timeout(d, server.get(key))`), and
//! [`server::Server::handle_command_until`] gives one to a command.
//!
//! ## Watching a node: events
//!
//! Besides [`Event::QueryFinished`], a node can tell what it does: [`Node::watch`] turns
//! on the watch events ([`Event::QueryStarted`], [`Event::PeerAdded`],
//! [`Event::PeerEvicted`], [`Event::PeerReplaced`], [`Event::NodeVerified`],
//! [`Event::RecordStored`], [`Event::RecordRefreshed`], [`Event::RecordRefused`] with its
//! [`RefuseReason`], [`Event::RecordsExpired`]), given by [`Node::poll_event`] in the order they happened.
//! They are off by default (a simulation of many nodes pays nothing for them); at most
//! 4096 wait to be polled, more are dropped and counted in [`Stats::events_dropped`].
//! The server layer fans them out ([`server::Server::subscribe`], plus
//! [`Event::StateSaved`]): each subscriber has a bounded queue of its own, one that falls
//! behind loses its oldest events and receives [`server::Notice::Missed`] with their
//! number, and the node never waits for it. With the `stream` feature a
//! [`server::Subscription`] is a `futures_core::Stream`; kad-tokio's and kad-smol's
//! `KademliaServer::events()` hand one out.
//!
//! ## Metrics (feature `metrics`)
//!
//! `kad_core::metrics` turns a [`server::Server`]'s counters ([`Stats`] and
//! [`server::ServerStats`], read when scraped) and its histograms (round trips; each query
//! kind's rounds and duration) into `kad_`-prefixed series in the Prometheus text format,
//! with `prometheus-client`; `server::Command::Metrics` carries them to an adapter's
//! handle. With the `tracing` feature (which `io` turns on) each user query runs in a
//! `kad.query` span carrying its `id` and `kind`.
//!
//! ## Client mode
//!
//! With [`Config::client_mode`] a node queries and stores through the network (`get`,
//! `put`, `find_node`, ...) but never enters a routing table: its messages carry the field
//! `ro` (`"ro":1`, BEP 43's name for read-only nodes), and a kad node never adds a sender
//! that sets it, neither from its requests nor from its answers. A client answers pings
//! and lookups but keeps nothing for others: `set` and `set_cached` go unanswered
//! ([`RefuseReason::ClientMode`]). For one-shot tools, and nodes behind NAT or on
//! batteries, which would leave dead entries behind them. Python nodes
//! (kademlia-dynamic 1.1.1) read only the fields they know, so they ignore `ro` and add a
//! client like any sender; it answers their pings while it runs, so it stays in their
//! tables only while it is alive, and a `set` they send it fails as to a dead node
//! (docs/PROTOCOL.md, "The `ro` field").
//!
//! ## The record store
//!
//! A node keeps its records in a [`RecordStore`]. [`MemoryStore`] is the default (in memory,
//! bounded by `Config::max_records` and `Config::max_store_bytes`, with exact expiry);
//! [`Node::with_store`] builds a node on another one, for instance a store on disk that
//! still holds its records after a restart. The store is given every time it needs, so it
//! stays as deterministic as the node.
//!
//! ## The validation hook
//!
//! A [`Validator`] ([`Node::set_validator`]) sees every value that comes in by `set` or
//! `set_cached`, our own `put`, and every value a lookup is about to return. It may reject
//! a value (no `set_res`; counted in [`Stats::records_rejected`] and
//! [`Stats::values_rejected`]), decide which of two values for a key wins
//! ([`Validator::replaces`]), and make a `get` collect the values of the k closest holders
//! instead of taking the first ([`Validator::collects`]). [`AcceptAll`] is the default: the
//! last writer wins, as in the Python package.
//!
//! ## Signed records (feature `signed`)
//!
//! `Node::put_signed` stores a value signed with an ed25519 key pair under a key made from
//! its public key and a salt; `Node::get_signed` returns the highest valid sequence the k
//! closest nodes hold. A signed record is a bytes value on the wire, so Python nodes carry
//! it unchanged; kad nodes check it through `SignedRecords`, the default validator with the
//! feature. The format is in `docs/PROTOCOL.md` (the user guide: `docs/SIGNED.md`). The feature is off by default: a plain
//! library build does not compile the curve arithmetic it does not use.

mod config;
mod crowd;
mod error;
mod event;
mod id;
mod idle;
#[cfg(feature = "io")]
pub mod io;
#[cfg(feature = "metrics")]
pub mod metrics;
mod node;
mod query;
mod record_store;
mod routing;
mod rpc;
pub mod server;
#[cfg(feature = "signed")]
mod signed;
mod snapshot;
mod stats;
mod store;
mod validate;
mod value;
mod verified;
mod wire;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

#[cfg(feature = "bench")]
pub mod bench;

pub use config::{Config, ConfigBuilder, ConfigError, MAX_DURATION};
pub use error::{KeyError, PutError, QueryError};
pub use event::{
    BootstrapOk, Event, FindValueOk, Peer, PutOk, QueryId, QueryResult, RefuseReason, Transmit,
};
pub use id::{Distance, IdError, NodeId, ID_BITS, ID_BYTES};
pub use node::{cache_ttl, Node};
pub use record_store::RecordStore;
#[cfg(feature = "signed")]
pub use signed::{
    is_signed_key, signed_key, Keypair, PublicKey, SignedError, SignedRecord, SignedRecords,
    MAX_SALT_BYTES,
};
pub use snapshot::{RecordKind, Snapshot, SnapshotError, SnapshotRecord};
pub use stats::{QueryStats, RequestCounts, Stats};
pub use store::{Full as StoreFull, Record, Source as RecordSource, Store as MemoryStore};
pub use validate::{AcceptAll, Origin, Validator, Verdict};
pub use value::Value;
pub use wire::Codec;
