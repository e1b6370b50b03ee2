//! # kad-smol: a Kademlia DHT node over UDP, on smol
//!
//! The API of the Python package `kademlia-dynamic`'s `KademliaServer`, in async Rust,
//! and wire-compatible with it (JSON or bencode): kad nodes and Python nodes share one
//! network. The protocol itself is [`kad_core`], a sans-IO state machine; this crate only
//! drives it over a socket.
//!
//! ## Quick start
//!
//! ```
//! use kad_smol::{KademliaServer, Value};
//!
//! # fn main() -> Result<(), kad_smol::Error> {
//! smol::block_on(async {
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
//! })
//! # }
//! ```
//!
//! ## How it runs
//!
//! [`Builder::listen`] binds the socket and spawns (with `smol::spawn`) one task that owns the [`Node`] and the
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
//! smol's blocking thread pool. A killed node comes back with what it held at its last
//! write; a truncated or corrupted file is an [`Error::State`], never a silent fresh
//! start.
//!
//! ## Watching the node: events
//!
//! [`KademliaServer::events`] hands out a stream ([`Events`], a `futures_core::Stream` of
//! [`Notice`]s; `smol::stream::StreamExt::next` reads it) of what the node does, in order:
//! queries started and finished, peers added, evicted and replaced in the routing table,
//! addresses verified, records stored, refreshed, refused and expired, state saved. Each
//! stream has its own queue of [`EVENT_QUEUE`] events; one that falls behind loses the
//! oldest and gets [`Notice::Missed`], and never slows the node. `examples/kv_service.rs`
//! is a small service built on it: `cargo run -p kad-smol --example kv_service`.
//!
//! ## Cancelling a call
//!
//! Dropping a call's future cancels its query in the node and frees its slot among
//! `max_active_queries`: a deadline is a race against a timer,
//! `node.get(key).or(async { smol::Timer::after(d).await; Err(..) })`.
//!
//! ## Where records live
//!
//! A node keeps its records in a [`RecordStore`], by default a new [`MemoryStore`];
//! [`Builder::record_store`] gives it another one, whose records are served at once (a
//! store on disk keeps them across restarts without a state file: kad-tokio's
//! `examples/redb_store` is one, and works the same here). The store runs on the node's
//! task. Which values a node accepts is a [`kad_core::Validator`]'s call; the adapters use
//! the default one (signed records checked with the `signed` feature).
//!
//! ## Client mode and counters
//!
//! [`Builder::client_mode`] makes a node that queries and writes without joining the
//! network: no kad node adds it to its routing table, and it stores nothing for others.
//! [`KademliaServer::stats`] returns the node's and the I/O layer's counters ([`Stats`]);
//! with the `metrics` feature, `KademliaServer::metrics()` returns the same numbers, and
//! round-trip and query histograms, in the Prometheus text format (see kad-tokio's
//! crate docs, "Metrics").

mod driver;
mod server;

pub use server::{Builder, KademliaServer, DEFAULT_LISTEN_ADDR};

kad_core::adapter_reexports!();
