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
//! With the `cli` feature the crate also builds the `kad` command: `kad node`, `kad put`,
//! `kad get` and `kad swarm` (see its `--help`).

#[doc(hidden)]
pub mod bench;
mod driver;
mod server;

/// Counters of one [`KademliaServer`]: the core's and the I/O layer's.
pub use kad_core::server::ServerStats as Stats;
pub use kad_core::server::DEFAULT_STATE_INTERVAL;
pub use kad_core::server::EVENT_QUEUE;
pub use kad_core::server::{Error, Notice, StateError, Subscription as Events};
pub use kad_core::{Event, RefuseReason};
pub use server::{Builder, KademliaServer, DEFAULT_LISTEN_ADDR};

pub use kad_core::{
    BootstrapOk, Codec, Config, ConfigError, KeyError, Node, NodeId, Peer, PutError, PutOk,
    QueryError, RecordKind, Snapshot, SnapshotError, SnapshotRecord, Value,
};

/// Signed mutable records (feature `signed`): see [`KademliaServer::put_signed`].
#[cfg(feature = "signed")]
pub use kad_core::{signed_key, Keypair, PublicKey, SignedError, SignedRecord, MAX_SALT_BYTES};

/// Prometheus metrics (feature `metrics`): see [`KademliaServer::metrics`].
#[cfg(feature = "metrics")]
pub use kad_core::metrics;
