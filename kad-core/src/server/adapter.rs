//! What both adapters' handle and builder say the same way, written once.
//!
//! The handle's async methods differ between runtimes only in the channel under
//! `call` and the resolver under `resolve`; the builder's setters not at all. A generic
//! handle would put a runtime trait (and its `Send` bounds on every future) into the
//! public API of both adapters, so this is text instead: two `macro_rules!` that each
//! adapter expands on its own types, with the docs written here once. They read no clock,
//! touch no socket and hold no runtime: the expansion calls the adapter's own `call`,
//! `resolve`, `local_addr` and `query_timeout`.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use crate::{ConfigBuilder, Node, NodeId, RecordStore, Snapshot, MAX_DURATION};

use super::{Error, Server};

/// What an adapter's builder holds, runtime aside: the node's settings and where its state
/// lives. Its setters are the adapter builder's (see [`builder_methods!`](crate::builder_methods)).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Settings {
    /// The node's configuration.
    pub config: ConfigBuilder,
    /// The node's id, instead of a random one.
    pub id: Option<NodeId>,
    /// The seed of the node's random choices, instead of the operating system's.
    pub seed: Option<[u8; 32]>,
    /// The state file.
    pub state_file: Option<PathBuf>,
    /// How often the state file is written.
    pub state_interval: Option<Duration>,
    /// `Some(false)`: one datagram per read.
    pub batch_io: Option<bool>,
    /// Where the node keeps its records, instead of a new in-memory store.
    pub record_store: Option<StoreSlot>,
}

/// A [`RecordStore`] given to a builder: the builder's clones share it, and the first node
/// built from any of them takes it (a store holds one node's records).
#[derive(Clone)]
pub struct StoreSlot(Arc<Mutex<Option<Box<dyn RecordStore>>>>);

impl StoreSlot {
    /// A slot holding `store`.
    pub fn new(store: impl RecordStore + 'static) -> StoreSlot {
        StoreSlot(Arc::new(Mutex::new(Some(Box::new(store)))))
    }

    /// The store, unless a node took it already.
    pub fn take(&self) -> Option<Box<dyn RecordStore>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl fmt::Debug for StoreSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.0.lock().is_ok_and(|s| s.is_some());
        f.debug_struct("StoreSlot").field("held", &held).finish()
    }
}

impl Settings {
    /// How often the state file is written, if there is one: the interval set (default
    /// [`DEFAULT_STATE_INTERVAL`](super::DEFAULT_STATE_INTERVAL)), at most
    /// [`MAX_DURATION`].
    pub fn save_interval(&self) -> Option<Duration> {
        self.state_file.as_ref()?;
        Some(
            self.state_interval
                .unwrap_or(super::DEFAULT_STATE_INTERVAL)
                .min(MAX_DURATION),
        )
    }

    /// Whether reads are batched (default true).
    pub fn batched(&self) -> bool {
        self.batch_io.unwrap_or(true)
    }

    /// The server of a node listening on `local_addr`: restored from `restored` (with how
    /// many of its records were beyond this node's limits and left out), or new with the
    /// id given, else `random_id`; its records in the [`record_store`](Self::record_store)
    /// if one was given (else in memory); asking for a snapshot every
    /// [`save_interval`](Self::save_interval) when there is a state file. Fails with
    /// [`Error::RecordStoreTaken`] when another node took the record store.
    pub fn server<T>(
        &self,
        config: crate::Config,
        restored: Option<&Snapshot>,
        seed: [u8; 32],
        random_id: [u8; 20],
        local_addr: SocketAddr,
        now: Instant,
    ) -> Result<(Server<T>, usize), Error> {
        let store = match &self.record_store {
            Some(slot) => Some(slot.take().ok_or(Error::RecordStoreTaken)?),
            None => None,
        };
        let id = self.id.unwrap_or(NodeId(random_id));
        let (mut node, left_out) = match (restored, store) {
            (Some(snapshot), Some(store)) => {
                Node::restore_with_store(config, snapshot, seed, now, store)
            }
            (Some(snapshot), None) => Node::restore(config, snapshot, seed, now),
            (None, Some(store)) => (Node::with_store(config, id, seed, now, store), 0),
            (None, None) => (Node::new(config, id, seed, now), 0),
        };
        node.set_local_addr(local_addr);
        let mut server = Server::new(node);
        if let Some(every) = self.save_interval() {
            server.save_every(now, every);
        }
        Ok((server, left_out))
    }
}

/// What a handle knows of its node without asking it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// The address its socket is bound to.
    pub local_addr: SocketAddr,
    /// How long its queries wait for each response.
    pub query_timeout: Duration,
}

/// The addresses `addr` resolved to (`resolved`, the resolver's answer) that a socket
/// bound to `local` can reach: those of its family; [`Error::Resolve`] when the resolver
/// failed, [`Error::NoUsableAddress`] when none is usable.
pub fn usable_addrs<I: IntoIterator<Item = SocketAddr>>(
    addr: &str,
    local: SocketAddr,
    resolved: std::io::Result<I>,
) -> Result<Vec<SocketAddr>, Error> {
    let all = resolved.map_err(|source| Error::Resolve {
        addr: addr.to_owned(),
        source,
    })?;
    let usable: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| a.is_ipv4() == local.is_ipv4())
        .collect();
    if usable.is_empty() {
        return Err(Error::NoUsableAddress {
            addr: addr.to_owned(),
            local,
        });
    }
    Ok(usable)
}

/// The public methods of an adapter's handle (`KademliaServer`) that know no runtime:
/// `builder`, `node_id`, `local_addr`, and the async `listen` (`$addrs`: the runtime's
/// `ToSocketAddrs`), `bootstrap`, `set`, `get`, `find_value`, `find_node`, `ping`,
/// `get_local`, `peers`, `stats` (and `metrics` with the adapter's `metrics` feature); and
/// its `Debug`. The type must have a `shared` field with a `node` field of type
/// [`NodeInfo`], and
/// `async fn call(&self, Command) -> Result<Reply, Error>` and `async fn resolve(&self,
/// &str) -> Result<Vec<SocketAddr>, Error>`.
#[doc(hidden)]
#[macro_export]
macro_rules! handle_methods {
    ($handle:ty, $builder:ty, $addrs:path) => {
        impl ::std::fmt::Debug for $handle {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("KademliaServer")
                    .field("id", &self.shared.node.id)
                    .field("local_addr", &self.shared.node.local_addr)
                    .finish()
            }
        }

        impl $handle {
            /// A node with the default settings listening on `addr`: shorthand for
            /// `KademliaServer::builder().listen(addr)`.
            pub async fn listen<A>(addr: A) -> Result<$handle, $crate::server::Error>
            where
                A: $addrs + ::std::fmt::Debug,
            {
                <$builder>::default().listen(addr).await
            }

            /// A builder with the Python package's defaults (JSON, k 20, alpha 3, 2 s
            /// timeout...).
            pub fn builder() -> $builder {
                <$builder>::default()
            }

            /// This node's id.
            pub fn node_id(&self) -> $crate::NodeId {
                self.shared.node.id
            }

            /// The address the socket is bound to (with the port the OS chose).
            pub fn local_addr(&self) -> ::std::net::SocketAddr {
                self.shared.node.local_addr
            }

            fn query_timeout(&self) -> ::std::time::Duration {
                self.shared.node.query_timeout
            }

            /// Joins a network: pings every address (`"host:port"`, names are resolved), then
            /// looks up our own id and a random id in every bucket's range. Returns how many
            /// addresses answered; fails with [`Error::BootstrapFailed`] when none did within the
            /// query timeout.
            pub async fn bootstrap<S: AsRef<str>>(
                &self,
                addrs: &[S],
            ) -> Result<usize, $crate::server::Error> {
                if addrs.is_empty() {
                    return Err($crate::server::Error::NoBootstrapAddress);
                }
                let mut resolved = Vec::new();
                for a in addrs {
                    for addr in self.resolve(a.as_ref()).await? {
                        if !resolved.contains(&addr) {
                            resolved.push(addr);
                        }
                    }
                }
                let result = self
                    .query($crate::server::Command::Bootstrap(resolved.clone()))
                    .await;
                match result {
                    Ok($crate::QueryResult::Bootstrap(Ok($crate::BootstrapOk {
                        answered,
                        ..
                    }))) => Ok(answered),
                    Ok($crate::QueryResult::Bootstrap(Err(_))) => {
                        Err($crate::server::Error::BootstrapFailed {
                            addrs: resolved,
                            timeout: self.query_timeout(),
                        })
                    }
                    Ok(_) => Err($crate::server::Error::Unexpected("bootstrap")),
                    Err(e) => Err(e),
                }
            }

            /// Stores `value` under `key` on the k nodes closest to the key (every one of them is
            /// sent the value, so an update replaces older copies) and locally as its original
            /// publisher. `Ok` once at least one remote node acknowledged.
            pub async fn set(
                &self,
                key: &str,
                value: impl Into<$crate::Value>,
            ) -> Result<$crate::PutOk, $crate::server::Error> {
                match self
                    .query($crate::server::Command::Put(key.to_owned(), value.into()))
                    .await?
                {
                    $crate::QueryResult::Put(r) => Ok(r?),
                    _ => Err($crate::server::Error::Unexpected("set")),
                }
            }

            /// The value stored under `key`, as most of the k closest nodes that answer hold it
            /// (one vote an IP, our own copy one more; see `kad_core::Node::get`); `None` when
            /// no node holds it. The type (text or bytes) is the one it was stored with.
            pub async fn get(
                &self,
                key: &str,
            ) -> Result<Option<$crate::Value>, $crate::server::Error> {
                match self
                    .query($crate::server::Command::Get(key.to_owned()))
                    .await?
                {
                    $crate::QueryResult::Get(r) => Ok(r?),
                    _ => Err($crate::server::Error::Unexpected("get")),
                }
            }

            /// Signs `value` with `keypair` for `salt` at sequence `seq` and stores it as
            /// [`set`](Self::set) does, under `kad_core::signed_key(&keypair.public_key(), salt)`:
            /// a key only this key pair can write, where kad nodes keep the highest sequence.
            /// With `cas`, a node holding a sequence other than `cas` refuses it. Fails with
            /// `Error::Put` for a salt over 64 bytes, or when this node holds a newer version.
            #[cfg(feature = "signed")]
            pub async fn put_signed(
                &self,
                keypair: &$crate::Keypair,
                salt: &[u8],
                value: impl Into<$crate::Value>,
                seq: u64,
                cas: Option<u64>,
            ) -> Result<$crate::PutOk, $crate::server::Error> {
                let cmd =
                    $crate::server::Command::put_signed(keypair, salt, value.into(), seq, cas)?;
                match self.query(cmd).await? {
                    $crate::QueryResult::Put(r) => Ok(r?),
                    _ => Err($crate::server::Error::Unexpected("put_signed")),
                }
            }

            /// The newest valid record `public_key` signed for `salt`: the highest sequence
            /// among the k closest nodes' copies, its signature checked; `None` when no node
            /// holds a valid one.
            #[cfg(feature = "signed")]
            pub async fn get_signed(
                &self,
                public_key: &$crate::PublicKey,
                salt: &[u8],
            ) -> Result<Option<$crate::SignedRecord>, $crate::server::Error> {
                let key = $crate::signed_key(public_key, salt);
                let value = self.get(&key).await?;
                let record = value.and_then(|v| $crate::SignedRecord::open(&v).ok());
                Ok(record.filter(|r| r.key() == key))
            }

            /// Looks `key` up on the network (not in our own store): the value if a node holds
            /// it, and the closest peers that answered, closest first.
            pub async fn find_value(
                &self,
                key: &str,
            ) -> Result<(Option<$crate::Value>, Vec<$crate::Peer>), $crate::server::Error> {
                match self
                    .query($crate::server::Command::FindValue(key.to_owned()))
                    .await?
                {
                    $crate::QueryResult::FindValue(r) => {
                        let $crate::FindValueOk { value, peers } = r?;
                        Ok((value, peers))
                    }
                    _ => Err($crate::server::Error::Unexpected("find_value")),
                }
            }

            /// The k live peers closest to `target`, closest first.
            pub async fn find_node(
                &self,
                target: $crate::NodeId,
            ) -> Result<Vec<$crate::Peer>, $crate::server::Error> {
                match self
                    .query($crate::server::Command::FindNode(target))
                    .await?
                {
                    $crate::QueryResult::FindNode(r) => Ok(r?),
                    _ => Err($crate::server::Error::Unexpected("find_node")),
                }
            }

            /// Pings `addr` (`"host:port"`); returns the peer that answered.
            pub async fn ping(&self, addr: &str) -> Result<$crate::Peer, $crate::server::Error> {
                let Some(addr) = self.resolve(addr).await?.into_iter().next() else {
                    return Err($crate::server::Error::NoUsableAddress {
                        addr: addr.to_owned(),
                        local: self.local_addr(),
                    });
                };
                match self.query($crate::server::Command::Ping(addr)).await? {
                    $crate::QueryResult::Ping(r) => Ok(r?),
                    _ => Err($crate::server::Error::Unexpected("ping")),
                }
            }

            /// Our own unexpired copy of `key`, without asking the network.
            pub async fn get_local(
                &self,
                key: &str,
            ) -> Result<Option<$crate::Value>, $crate::server::Error> {
                match self
                    .call($crate::server::Command::GetLocal(key.to_owned()))
                    .await?
                {
                    $crate::server::Reply::Local(value) => Ok(value),
                    _ => Err($crate::server::Error::Unexpected("get_local")),
                }
            }

            /// Every peer in the routing table.
            pub async fn peers(&self) -> Result<Vec<$crate::Peer>, $crate::server::Error> {
                match self.call($crate::server::Command::Peers).await? {
                    $crate::server::Reply::Peers(peers) => Ok(peers),
                    _ => Err($crate::server::Error::Unexpected("peers")),
                }
            }

            /// The node's and the driver's counters.
            pub async fn stats(
                &self,
            ) -> Result<$crate::server::ServerStats, $crate::server::Error> {
                match self.call($crate::server::Command::Stats).await? {
                    $crate::server::Reply::Stats(stats) => Ok(*stats),
                    _ => Err($crate::server::Error::Unexpected("stats")),
                }
            }

            /// The node's metrics, `kad_`-prefixed series in the Prometheus text exposition
            /// format (`kad_core::metrics::CONTENT_TYPE`): the counters of
            /// [`stats`](Self::stats) and histograms of round trips and of each query kind's
            /// rounds and duration (the list is in `kad_core::metrics`).
            #[cfg(feature = "metrics")]
            pub async fn metrics(&self) -> Result<String, $crate::server::Error> {
                match self.call($crate::server::Command::Metrics).await? {
                    $crate::server::Reply::Metrics(text) => Ok(text),
                    _ => Err($crate::server::Error::Unexpected("metrics")),
                }
            }

            /// A stream of what the node does (`Notice`s of `kad_core::Event`s: queries
            /// started and finished with their stats, peers added, evicted and replaced,
            /// addresses verified, records stored, refreshed, refused and expired, state saved), in
            /// order, from now on, until the node stops. Each stream has a queue of
            /// `EVENT_QUEUE` events; one that falls behind loses the oldest and gets
            /// `Notice::Missed`, and never slows the node.
            pub async fn events(
                &self,
            ) -> Result<$crate::server::Subscription, $crate::server::Error> {
                match self
                    .call($crate::server::Command::Subscribe(
                        $crate::server::EVENT_QUEUE,
                    ))
                    .await?
                {
                    $crate::server::Reply::Subscribed(events) => Ok(events),
                    _ => Err($crate::server::Error::Unexpected("events")),
                }
            }

            async fn query(
                &self,
                cmd: $crate::server::Command,
            ) -> Result<$crate::QueryResult, $crate::server::Error> {
                match self.call(cmd).await? {
                    $crate::server::Reply::Query(result) => Ok(result?.0),
                    _ => Err($crate::server::Error::Unexpected("query")),
                }
            }
        }
    };
}

/// The public re-exports an adapter crate makes from kad-core, written once for both:
/// the counters, errors and events of the server layer, the node's types, record stores,
/// and (with the adapter's `signed` and `metrics` features) signed records and metrics.
/// Called at an adapter's crate root, where `Builder` and `KademliaServer` name its own
/// types (the doc links point at them).
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_reexports {
    () => {
        /// Counters of one [`KademliaServer`]: the core's and the I/O layer's.
        pub use $crate::server::ServerStats as Stats;
        pub use $crate::server::DEFAULT_STATE_INTERVAL;
        pub use $crate::server::EVENT_QUEUE;
        pub use $crate::server::{Error, Notice, StateError, Subscription as Events};
        pub use $crate::{Event, RefuseReason};

        pub use $crate::{
            BootstrapOk, Codec, Config, ConfigError, KeyError, Node, NodeId, Peer, PutError, PutOk,
            QueryError, RecordKind, Snapshot, SnapshotError, SnapshotRecord, Value,
        };

        /// Record stores ([`Builder::record_store`]): the trait, the default in-memory
        /// store, and what they hold.
        pub use $crate::{MemoryStore, Record, RecordSource, RecordStore, StoreFull};

        /// Signed mutable records (feature `signed`): see [`KademliaServer::put_signed`].
        #[cfg(feature = "signed")]
        pub use $crate::{
            signed_key, Keypair, PublicKey, SignedError, SignedRecord, MAX_SALT_BYTES,
        };

        /// Prometheus metrics (feature `metrics`): see [`KademliaServer::metrics`].
        #[cfg(feature = "metrics")]
        pub use $crate::metrics;
    };
}

/// The setters of an adapter's `Builder`, over its `$settings` field of type
/// [`Settings`]: every [`Config`](crate::Config) field, and `config`, `node_id`, `seed`,
/// `state_file`, `record_store`, `state_interval`, `batch_io`, `build_config`; `$krate` names the adapter
/// crate in the doc examples.
#[doc(hidden)]
#[macro_export]
macro_rules! builder_methods {
    ($builder:ident, $settings:ident, $krate:ident) => {
        /// Settings for a new `KademliaServer`: every tunable of the Python constructor
        /// (with its default) and kad's own limits, then [`listen`]($builder::listen).
        ///
        /// ```
        #[doc = concat!("# async fn demo() -> Result<(), ", stringify!($krate), "::Error> {")]
        /// use std::time::Duration;
        #[doc = concat!("use ", stringify!($krate), "::{Codec, KademliaServer};")]
        /// let server = KademliaServer::builder()
        ///     .codec(Codec::Bencode)
        ///     .k(16)
        ///     .query_timeout(Duration::from_millis(500))
        ///     .listen("127.0.0.1:0")
        ///     .await?;
        /// # server.stop().await;
        /// # Ok(())
        /// # }
        /// ```
        #[derive(Clone, Debug, Default)]
        pub struct $builder {
            $settings: $crate::server::Settings,
        }

        $crate::config_settings!(@call [$crate::builder_methods] { @config $builder, $settings, });
        impl $builder {
            /// Starts over from `config` (settings made after this call apply on top of it).
            pub fn config(mut self, config: $crate::Config) -> Self {
                self.$settings.config = $crate::ConfigBuilder::from(config);
                self
            }

            /// Uses this node id instead of a random one.
            pub fn node_id(mut self, id: $crate::NodeId) -> Self {
                self.$settings.id = Some(id);
                self
            }

            /// Seeds the node's random choices (transaction ids, refresh targets) instead of
            /// drawing the seed from the operating system. For reproducible tests only.
            pub fn seed(mut self, seed: [u8; 32]) -> Self {
                self.$settings.seed = Some(seed);
                self
            }

            /// Keeps the node's state in the file at `path`, so that a restarted node loses
            /// nothing: its id, its routing table, and its records, each with the lifetime it had
            /// left and whether this node is its original publisher (and so republishes it).
            ///
            /// [`listen`](Self::listen) restores the node from the file when there is one (the
            /// node gets the file's id; the time it was down does not count against its records)
            /// and fails with `Error::State` when the file cannot be read or is truncated or
            /// corrupted, rather than start a node that lost everything. With no file, the node
            /// starts fresh and writes the file at once, so a path that cannot be written is
            /// reported by `listen` too.
            ///
            /// The node then writes the file every [`state_interval`](Self::state_interval) and
            /// when it is stopped (or its last handle is dropped). A write never leaves a
            /// partial file, so a node killed at any moment restarts from its last write: it
            /// goes to a temporary file in the same directory, is synced to disk, and replaces
            /// the file by a rename. The node holds an exclusive lock on `<path>.lock` while it
            /// runs: a second node given the same file fails with `StateError::Locked` instead
            /// of sharing it. Writes run on the runtime's blocking pool (tokio's
            /// `spawn_blocking`, `smol::unblock`); the node's task only copies the state. A
            /// write that fails is logged, counted in `Stats::state_save_errors` and tried
            /// again at the next interval.
            ///
            /// ```
            #[doc = concat!("# async fn demo() -> Result<(), ", stringify!($krate), "::Error> {")]
            /// use std::time::Duration;
            #[doc = concat!("use ", stringify!($krate), "::KademliaServer;")]
            /// let server = KademliaServer::builder()
            ///     .state_file("/var/lib/kad/state")
            ///     .state_interval(Duration::from_secs(30))
            ///     .listen("0.0.0.0:4000")
            ///     .await?;
            /// # Ok(())
            /// # }
            /// ```
            pub fn state_file(mut self, path: impl Into<::std::path::PathBuf>) -> Self {
                self.$settings.state_file = Some(path.into());
                self
            }

            /// Keeps the node's records in `store` instead of a new in-memory
            /// `kad_core::MemoryStore` (which this builder's `max_records`,
            /// `max_store_bytes` and `store_percent_per_ip` size; another store keeps its
            /// own limits). Records the store already holds count as held at once: a node
            /// built on a store that keeps its records on disk serves them after a restart,
            /// with no state file (`examples/redb_store` in kad-tokio is one, over redb).
            /// With a [`state_file`](Self::state_file) too, the node's id and peers come
            /// from the file, and of the file's records only those the store lacks are
            /// added.
            ///
            /// The store's methods run on the node's task, between datagrams: a store that
            /// blocks (a disk write) holds up the node while it does. The builder's clones
            /// share the store; the first `listen` takes it, and another fails with
            /// `Error::RecordStoreTaken`.
            pub fn record_store(mut self, store: impl $crate::RecordStore + 'static) -> Self {
                self.$settings.record_store = Some($crate::server::StoreSlot::new(store));
                self
            }

            /// How often the state file of [`state_file`](Self::state_file) is written (default
            /// [`DEFAULT_STATE_INTERVAL`], 60 s; at least 1 ms). What changed since the last write
            /// is lost if the process is killed.
            pub fn state_interval(mut self, every: ::std::time::Duration) -> Self {
                self.$settings.state_interval = Some(every);
                self
            }

            /// Whether the node's socket reads up to `quinn_udp::BATCH_SIZE` datagrams (32 on
            /// Linux) per system call (`recvmmsg`, through quinn-udp) or one. Default true; where
            /// quinn-udp cannot batch, a read is one datagram either way. Sends likewise: up to 32
            /// datagrams, to as many destinations, per `sendmmsg` (Linux), or one. The node
            /// behaves the same either way (each datagram reaches the core with its source and the
            /// time it was read); batching spends less CPU per datagram under load. Turning it off
            /// is for comparisons and as a way out should a kernel misbehave.
            pub fn batch_io(mut self, on: bool) -> Self {
                self.$settings.batch_io = Some(on);
                self
            }

            /// The settings this builder would use, validated.
            pub fn build_config(&self) -> Result<$crate::Config, $crate::server::Error> {
                Ok(self.$settings.config.clone().build()?)
            }
        }
    };
    (@config $builder:ident, $settings:ident, $($(#[$m:meta])* $name:ident: $ty:ty $(as $alias:literal)?),* $(,)?) => {
        impl $builder {
            $($(#[$m])* $(#[doc(alias = $alias)])? pub fn $name(mut self, v: $ty) -> Self {
                self.$settings.config = self.$settings.config.$name(v);
                self
            })*
        }
    };
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::server::Error;
    use crate::{Codec, Config, ConfigError};

    /// An adapter's builder, as kad-tokio and kad-smol expand it (most setters unused here).
    #[allow(dead_code)]
    mod expanded {
        crate::builder_methods!(Builder, settings, kad_tokio);
    }
    use expanded::Builder;

    #[test]
    fn config_round_trips_through_the_builder() {
        let config = Config::builder()
            .codec(Codec::Bencode)
            .k(8)
            .alpha(2)
            .max_dispatch_tasks(7)
            .query_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let b = Builder::default().config(config.clone());
        assert_eq!(b.build_config().unwrap(), config);
        // Later settings apply on top; invalid ones are refused at build time.
        assert_eq!(b.clone().k(9).build_config().unwrap().k(), 9);
        assert!(matches!(
            b.alpha(9).build_config(),
            Err(Error::Config(ConfigError::AlphaAboveK { .. }))
        ));
    }
}
