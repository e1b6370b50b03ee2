//! # kad-tokio: a Kademlia DHT node over UDP, on tokio
//!
//! The API of the Python package `kademlia-dynamic`'s `KademliaServer`, in async Rust,
//! and wire-compatible with it (JSON or bencode): kad nodes and Python nodes share one
//! network. The protocol itself is [`kad_core`], a sans-IO state machine; this crate only
//! drives it over a socket.
//!
//! ## Quick start
//!
//! ```
//! use kad_tokio::{KademliaServer, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kad_tokio::Error> {
//! // Two nodes on the loopback interface (the default bind address is 127.0.0.1).
//! let first = KademliaServer::builder().listen_default().await?;
//! let second = KademliaServer::builder().listen("127.0.0.1:0").await?;
//!
//! // Join the network through any node: "host:port", names are resolved.
//! let answered = second.bootstrap(&[first.local_addr().to_string()]).await?;
//! assert_eq!(answered, 1);
//!
//! // Values are text or bytes, and come back as the type they were stored with.
//! second.set("greeting", "hello").await?;
//! second.set("blob", vec![0u8, 1, 2]).await?;
//! assert_eq!(first.get("greeting").await?, Some(Value::from("hello")));
//! assert_eq!(first.get("blob").await?, Some(Value::from(vec![0u8, 1, 2])));
//! assert_eq!(first.get("missing").await?, None);
//!
//! // Graceful shutdown: pending calls fail with `Error::Stopped`, the port is released.
//! first.stop().await;
//! second.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## How it runs
//!
//! [`Builder::listen`] binds the socket and spawns one task that owns the [`Node`] and the
//! socket; every [`KademliaServer`] clone sends that task commands over a bounded channel
//! and awaits a oneshot reply, so there is no lock around the node. Each turn the task
//! reads the clock afresh, calls `handle_timeout` when the node's deadline has passed,
//! takes a batch of commands, drains the socket (handing at most `max_dispatch_tasks`
//! datagrams to the node per pass and dropping, and counting, what a flood sends past
//! that), sends what the node queued (a datagram that finds the socket's buffer full is
//! kept and sent once it is writable), and completes the callers whose queries finished.
//! A pass that hit a cap yields and comes straight back, so a flood cannot starve
//! commands or timers.
//!
//! ## Keeping state across restarts
//!
//! With [`Builder::state_file`], a node keeps its id, routing table and records (with
//! the lifetime each had left, and which ones it published) in a file: `listen` restores
//! them, and the node's task writes the file every [`Builder::state_interval`] and on
//! [`KademliaServer::stop`], atomically (a temporary file, synced, then renamed), on
//! tokio's blocking pool. A killed node comes back with what it held at its last write; a
//! truncated or corrupted file is an [`Error::State`], never a silent fresh start.
//!
//! ## Watching the node: events
//!
//! [`KademliaServer::events`] hands out a stream ([`Events`], a `futures_core::Stream` of
//! [`Notice`]s) of what the node does, in order, from the moment of the call: queries
//! started and finished (with their stats), peers added, evicted and replaced in the
//! routing table, addresses verified, records stored, refreshed, refused (with a
//! [`RefuseReason`]) and expired, state saved. Each stream has its own queue of
//! [`EVENT_QUEUE`] events: one that falls behind loses the oldest and gets
//! [`Notice::Missed`], and never slows the node. The stream ends when the node stops.
//!
//! ```no_run
//! use kad_tokio::{Event, KademliaServer, Notice};
//!
//! # async fn demo(node: KademliaServer) -> Result<(), kad_tokio::Error> {
//! let events = node.events().await?;
//! while let Some(notice) = std::future::poll_fn(|cx| events.poll_next(cx)).await {
//!     if let Notice::Event(Event::RecordStored { key, from, .. }) = notice {
//!         println!("{from} stored {key}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Cancelling a call
//!
//! Dropping a call's future cancels its query in the node: the query stops sending
//! requests and frees its slot among `max_active_queries`. So a deadline is a timeout
//! around the call, `tokio::time::timeout(d, node.get(key))`, and a `select!` that takes
//! another branch cancels the calls it drops. A query that the network ends first (every
//! peer asked answered or timed out after `query_timeout`) returns as usual.
//!
//! ## Where records live: record stores and validators
//!
//! A node keeps its records in a [`RecordStore`]: by default a new [`MemoryStore`], sized
//! by the builder's `max_records`, `max_store_bytes` and `store_percent_per_ip`.
//! [`Builder::record_store`] gives the node another one, and records that store already
//! holds are served at once. `examples/redb_store` keeps them on disk in a redb
//! database, written through on every change: a node restarted on the same file keeps its
//! records without a state file (`cargo run -p kad-tokio --example redb_store`). The store
//! runs on the node's task, so a slow store slows the node. Which values a node accepts is
//! a [`kad_core::Validator`]'s call; the adapters use the default one (every value, and
//! signed records checked with the `signed` feature); another validator is set on a bare
//! [`Node`] with [`Node::set_validator`].
//!
//! ## Client mode
//!
//! [`Builder::client_mode`] makes a node that queries the network (`get`, `set`,
//! `find_node`...) without joining it: its messages say so, no kad node adds it to its
//! routing table, and it stores nothing for others. A short-lived process (the `kad put`
//! and `kad get` commands are clients) does not leave dead entries in every table it
//! touched.
//!
//! ## Counters
//!
//! [`KademliaServer::stats`] returns the node's and the I/O layer's counters ([`Stats`]).
//!
//! ## Metrics
//!
//! With the `metrics` feature, `KademliaServer::metrics()` returns the node's metrics in
//! the Prometheus text exposition format (`metrics::CONTENT_TYPE`): `kad_`-prefixed
//! gauges (routing-table peers, records and store bytes, queries in flight), counters
//! (datagrams, requests received and sent by kind, responses by outcome, timeouts,
//! verification outcomes, held and shortened replies, drops by reason; the same numbers
//! as [`KademliaServer::stats`]) and histograms (round trips, and each query kind's
//! rounds and duration); the full list is in `kad_core::metrics`. kad-core builds them with
//! `prometheus-client`; serving them is the application's (`kad node --metrics
//! 127.0.0.1:9464` serves `GET /metrics`). Each user query also runs in a `tracing` span
//! `kad.query` with its `id` and `kind`, closed with a debug event carrying its rounds,
//! requests, timeouts and duration (`RUST_LOG=kad_core=debug`).
//!
//! ```
//! # #[cfg(feature = "metrics")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kad_tokio::Error> {
//! let node = kad_tokio::KademliaServer::builder().listen_default().await?;
//! let text = node.metrics().await?;
//! assert!(text.contains("kad_routing_table_peers 0"));
//! # node.stop().await;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "metrics"))]
//! # fn main() {}
//! ```
//!
//! ## The `kad` command
//!
//! With the `cli` feature the crate also builds the `kad` command: `kad node` (a node,
//! with `--state` and `--config FILE`), `kad put` and `kad get` (one-shot clients, `--json`
//! for scripts; exit status 0 found or stored, 1 not, 2 anything else), `kad keygen` and
//! signed puts, and `kad swarm` (a network of nodes in one process, with a table of success
//! and latency). See its `--help` and the README.
//!
//! ## Examples
//!
//! `examples/two_nodes.rs` (a put and a get in 30 lines), `examples/redb_store` (records
//! on disk), `examples/flood.rs` (a junk flood against one node, a bench); kad-smol's
//! `examples/kv_service.rs` watches events. CI runs the first two and kv_service.

#[doc(hidden)]
pub mod bench;
mod driver;
mod server;

pub use server::{Builder, KademliaServer, DEFAULT_LISTEN_ADDR};

kad_core::adapter_reexports!();
