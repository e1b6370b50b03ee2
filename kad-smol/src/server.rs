//! The user's handle: [`KademliaServer`] and its [`Builder`].

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kad_core::{
    BootstrapOk, Codec, Config, ConfigBuilder, FindValueOk, Node, NodeId, Peer, PutOk, QueryResult,
    Snapshot, Value, MAX_DURATION,
};
use smol::channel::{bounded, Receiver, Sender};
use smol::net::{resolve, AsyncToSocketAddrs};
use smol::{Async, Task};

use kad_core::server::{Command, Reply, Server, Subscription as Events};

use crate::driver::{Call, Driver};
use crate::state::{self, DEFAULT_STATE_INTERVAL, MIN_STATE_INTERVAL};
use crate::{Error, StateError, Stats};

/// Where [`Builder::listen_default`] binds: loopback only, any free port, as the Python
/// package's `listen()` does by default.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:0";

/// Commands that may wait for the driver at once; senders past that wait their turn.
const COMMAND_QUEUE: usize = 256;
/// How many events a stream from [`KademliaServer::events`] keeps unread at most.
pub const EVENT_QUEUE: usize = 1024;
/// Receive buffer asked of the OS: room for bursts while the driver is busy.
const SOCKET_BUFFER: usize = 1 << 20;

/// A running Kademlia node: a cheap, cloneable handle to the task that owns the node and
/// its UDP socket.
///
/// The API mirrors the Python package's `KademliaServer`: [`bootstrap`](Self::bootstrap),
/// [`set`](Self::set), [`get`](Self::get), [`find_node`](Self::find_node),
/// [`find_value`](Self::find_value), [`stop`](Self::stop). Every call is a message to the
/// node's task and a reply; calls from many tasks run concurrently.
#[derive(Clone)]
pub struct KademliaServer {
    commands: Sender<Call>,
    shared: Arc<Shared>,
}

struct Shared {
    id: NodeId,
    local_addr: SocketAddr,
    query_timeout: Duration,
    /// Closed to stop the driver.
    stop: Sender<()>,
    /// The driver's task, taken by the first `stop()`; the others wait on `done`.
    /// Detached when the last handle goes.
    task: Mutex<Option<Task<()>>>,
    /// Closed when the driver has returned.
    done: Receiver<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone. Dropping the task would cancel the driver mid-turn;
        // detached, it sees its channels close and shuts down as `stop()` does, writing
        // the state file a last time.
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            task.detach();
        }
    }
}

impl fmt::Debug for KademliaServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KademliaServer")
            .field("id", &self.shared.id)
            .field("local_addr", &self.shared.local_addr)
            .finish()
    }
}

impl KademliaServer {
    /// A builder with the Python package's defaults (JSON, k 20, alpha 3, 2 s timeout...).
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A node with the default settings listening on `addr`: shorthand for
    /// `KademliaServer::builder().listen(addr)`.
    pub async fn listen<A>(addr: A) -> Result<KademliaServer, Error>
    where
        A: AsyncToSocketAddrs + fmt::Debug,
    {
        Builder::default().listen(addr).await
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.id
    }

    /// The address the socket is bound to (with the port the OS chose).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Joins a network: pings every address (`"host:port"`, names are resolved), then
    /// looks up our own id and a random id in every bucket's range. Returns how many
    /// addresses answered; fails with [`Error::BootstrapFailed`] when none did within the
    /// query timeout.
    pub async fn bootstrap<S: AsRef<str>>(&self, addrs: &[S]) -> Result<usize, Error> {
        if addrs.is_empty() {
            return Err(Error::NoBootstrapAddress);
        }
        let mut resolved = Vec::new();
        for a in addrs {
            for addr in self.resolve(a.as_ref()).await? {
                if !resolved.contains(&addr) {
                    resolved.push(addr);
                }
            }
        }
        let result = self.query(Command::Bootstrap(resolved.clone())).await;
        match result {
            Ok(QueryResult::Bootstrap(Ok(BootstrapOk { answered, .. }))) => Ok(answered),
            Ok(QueryResult::Bootstrap(Err(_))) => Err(Error::BootstrapFailed {
                addrs: resolved,
                timeout: self.shared.query_timeout,
            }),
            Ok(_) => Err(Error::Unexpected("bootstrap")),
            Err(e) => Err(e),
        }
    }

    /// Stores `value` under `key` on the k nodes closest to the key (every one of them is
    /// sent the value, so an update replaces older copies) and locally as its original
    /// publisher. `Ok` once at least one remote node acknowledged.
    pub async fn set(&self, key: &str, value: impl Into<Value>) -> Result<PutOk, Error> {
        match self
            .query(Command::Put(key.to_owned(), value.into()))
            .await?
        {
            QueryResult::Put(r) => Ok(r?),
            _ => Err(Error::Unexpected("set")),
        }
    }

    /// The value stored under `key`: our own copy if we hold one, else the first found
    /// on the network; `None` when no node holds it. The type (text or bytes) is the one
    /// it was stored with.
    pub async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        match self.query(Command::Get(key.to_owned())).await? {
            QueryResult::Get(r) => Ok(r?),
            _ => Err(Error::Unexpected("get")),
        }
    }

    /// Looks `key` up on the network (not in our own store): the value if a node holds
    /// it, and the closest peers that answered, closest first.
    pub async fn find_value(&self, key: &str) -> Result<(Option<Value>, Vec<Peer>), Error> {
        match self.query(Command::FindValue(key.to_owned())).await? {
            QueryResult::FindValue(r) => {
                let FindValueOk { value, peers } = r?;
                Ok((value, peers))
            }
            _ => Err(Error::Unexpected("find_value")),
        }
    }

    /// The k live peers closest to `target`, closest first.
    pub async fn find_node(&self, target: NodeId) -> Result<Vec<Peer>, Error> {
        match self.query(Command::FindNode(target)).await? {
            QueryResult::FindNode(r) => Ok(r?),
            _ => Err(Error::Unexpected("find_node")),
        }
    }

    /// Pings `addr` (`"host:port"`); returns the peer that answered.
    pub async fn ping(&self, addr: &str) -> Result<Peer, Error> {
        let Some(addr) = self.resolve(addr).await?.into_iter().next() else {
            return Err(Error::NoUsableAddress {
                addr: addr.to_owned(),
                local: self.shared.local_addr,
            });
        };
        match self.query(Command::Ping(addr)).await? {
            QueryResult::Ping(r) => Ok(r?),
            _ => Err(Error::Unexpected("ping")),
        }
    }

    /// Our own unexpired copy of `key`, without asking the network.
    pub async fn get_local(&self, key: &str) -> Result<Option<Value>, Error> {
        match self.call(Command::GetLocal(key.to_owned())).await? {
            Reply::Local(value) => Ok(value),
            _ => Err(Error::Unexpected("get_local")),
        }
    }

    /// Every peer in the routing table.
    pub async fn peers(&self) -> Result<Vec<Peer>, Error> {
        match self.call(Command::Peers).await? {
            Reply::Peers(peers) => Ok(peers),
            _ => Err(Error::Unexpected("peers")),
        }
    }

    /// The node's and the driver's counters.
    pub async fn stats(&self) -> Result<Stats, Error> {
        match self.call(Command::Stats).await? {
            Reply::Stats(stats) => Ok(stats),
            _ => Err(Error::Unexpected("stats")),
        }
    }

    /// The node's events as a stream: [`Notice`](crate::Notice)s of what it does (queries, routing
    /// table, records, state saves) in the order it did them, from this call until the
    /// node stops. A stream that is not read fast enough drops its oldest events past
    /// [`EVENT_QUEUE`] and reports the count in a [`Notice::Missed`](crate::Notice::Missed); the node never waits.
    pub async fn events(&self) -> Result<Events, Error> {
        let reply = self.call(Command::Subscribe(EVENT_QUEUE)).await?;
        let Reply::Subscribed(events) = reply else {
            return Err(Error::Unexpected("events"));
        };
        Ok(events)
    }

    /// Shuts the node down: calls still waiting fail with [`Error::Stopped`], the state
    /// file (if [`Builder::state_file`] was set) is written a last time, the socket is
    /// closed (its port can be bound again once this returns) and the node's task has
    /// ended. Calling it again, from any clone, is harmless.
    pub async fn stop(&self) {
        self.shared.stop.close();
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match task {
            Some(task) => task.await,
            None => {
                // Err means the driver is gone: exactly what we wait for.
                while self.shared.done.recv().await.is_ok() {}
            }
        }
    }

    /// Sends `cmd` to the node's task and waits for its reply.
    async fn call(&self, cmd: Command) -> Result<Reply, Error> {
        let (tx, rx) = bounded(1);
        self.commands
            .send((cmd, tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.recv().await.map_err(|_| Error::Stopped)
    }

    async fn query(&self, cmd: Command) -> Result<QueryResult, Error> {
        match self.call(cmd).await? {
            Reply::Query(result) => Ok(result?.0),
            _ => Err(Error::Unexpected("query")),
        }
    }

    /// Resolves `addr`, keeping the addresses of our socket's family.
    async fn resolve(&self, addr: &str) -> Result<Vec<SocketAddr>, Error> {
        let local = self.shared.local_addr;
        let all = resolve(addr).await.map_err(|source| Error::Resolve {
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
}

/// Settings for a new [`KademliaServer`]: every tunable of the Python constructor (with
/// its default) and kad's own limits, then [`listen`](Builder::listen).
///
/// ```
/// # async fn demo() -> Result<(), kad_smol::Error> {
/// use std::time::Duration;
/// use kad_smol::{Codec, KademliaServer};
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
pub struct Builder {
    config: ConfigBuilder,
    id: Option<NodeId>,
    seed: Option<[u8; 32]>,
    state_file: Option<PathBuf>,
    state_interval: Option<Duration>,
    /// `Some(false)`: one system call per datagram.
    batch_io: Option<bool>,
}

macro_rules! setters {
    ($($(#[$m:meta])* $name:ident: $ty:ty),* $(,)?) => {
        impl Builder {
            $($(#[$m])* pub fn $name(mut self, v: $ty) -> Self {
                self.config = self.config.$name(v);
                self
            })*
        }
    };
}

setters! {
    /// Wire format, `Json` (default) or `Bencode`; Python's `serialization`. Every node
    /// of a network must use the same.
    codec: Codec,
    /// Accept a response only from the address its request went to (default true).
    verify_response_source: bool,
    /// Bucket size and replication factor (default 20).
    k: usize,
    /// Requests in flight per lookup (default 3).
    alpha: usize,
    /// How long to wait for each response (default 2 s).
    query_timeout: Duration,
    /// Period of the stale-bucket refresh and expiry sweep (default 3600 s).
    bucket_refresh_interval: Duration,
    /// How long a stored value lives; Python's `key_expiry_seconds` (default 86410 s).
    #[doc(alias = "key_expiry_seconds")]
    key_expiry: Duration,
    /// How often records held for others are re-replicated (default 3600 s).
    non_publisher_restore_interval: Duration,
    /// How often records we published are republished (default 86400 s).
    original_publisher_republish_interval: Duration,
    /// Shortest life of a cached copy; Python's `min_cache_ttl_seconds` (default 600 s).
    #[doc(alias = "min_cache_ttl_seconds")]
    min_cache_ttl: Duration,
    /// Datagrams handed from the socket to the node per pass of the driver (default 64);
    /// datagrams read past it in the same pass are dropped and counted in
    /// [`Stats::datagrams_dropped`], as the Python package drops them when its dispatch
    /// queue is full.
    max_dispatch_tasks: usize,
    /// Consecutive failures after which a peer leaves the routing table (default 3).
    failures_before_eviction: u32,
    /// Replacement-cache entries per bucket (default 8).
    replacement_cache_size: usize,
    /// Most records stored (default 100,000).
    max_records: usize,
    /// Most bytes of keys and values stored (default 256 MiB).
    max_store_bytes: usize,
    /// Longest key in bytes (default 1024).
    max_key_bytes: usize,
    /// Largest value in bytes (default 64,083; see `kad_core::Config::max_value_bytes`).
    max_value_bytes: usize,
    /// Largest datagram sent (default 65,507).
    max_datagram_bytes: usize,
    /// Most requests in flight (default 4096).
    max_pending_requests: usize,
    /// Most datagrams waiting to be sent (default 4096).
    max_queued_transmits: usize,
    /// Most queries running at once (default 1024).
    max_active_queries: usize,
    /// Most republish operations running at once (default 16).
    max_concurrent_republish: usize,
    /// Most routing-table entries one IP may hold in a bucket (default 2).
    max_peers_per_ip_per_bucket: usize,
    /// Most routing-table entries one IP may hold in the whole table (default 10).
    max_peers_per_ip: usize,
    /// Loopback addresses are exempt from the per-IP caps (default true).
    ip_limits_exempt_loopback: bool,
    /// A reply to an unverified sender is at most this many times its request (default 4).
    unverified_reply_factor: usize,
    /// Most large replies waiting for their senders' verification (default 256).
    max_held_replies: usize,
    /// Most addresses remembered as verified (default 8192).
    max_verified_addresses: usize,
    /// Pad lookup requests so a full answer fits the responder's budget (default true).
    pad_requests: bool,
    /// Age after which a full bucket pings its oldest entry for a newcomer (default 15 min).
    ping_oldest_after: Duration,
    /// Extra copies of an unanswered request within its timeout (default 2).
    request_retries: usize,
    /// Reply bytes a proven address may get beyond the factor, per minute (default 64 KiB).
    reply_allowance: usize,
    /// Percent of the store one source IP may fill (default 1).
    store_percent_per_ip: usize,
    /// Leading bits of an IPv6 address that count as one IP (default 48).
    ipv6_prefix_len: usize,
    /// Most lookup candidates per IP (default 2).
    max_lookup_peers_per_ip: usize,
    /// Most lookup candidates per /24 or IPv6 prefix (default 5).
    max_lookup_peers_per_subnet: usize,
    /// A client: queries, never enters a routing table, stores nothing for others
    /// (default false).
    client_mode: bool,
}

impl Builder {
    /// Starts over from `config` (settings made after this call apply on top of it).
    pub fn config(mut self, config: Config) -> Self {
        self.config = ConfigBuilder::from(config);
        self
    }

    /// Uses this node id instead of a random one.
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.id = Some(id);
        self
    }

    /// Seeds the node's random choices (transaction ids, refresh targets) instead of
    /// drawing the seed from the operating system. For reproducible tests only.
    pub fn seed(mut self, seed: [u8; 32]) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Keeps the node's state in the file at `path`, so that a restarted node loses
    /// nothing: its id, its routing table, and its records, each with the lifetime it had
    /// left and whether this node is its original publisher (and so republishes it).
    ///
    /// [`listen`](Self::listen) restores the node from the file when there is one (the
    /// node gets the file's id; the time it was down does not count against its records)
    /// and fails with [`Error::State`] when the file cannot be read or is truncated or
    /// corrupted, rather than start a node that lost everything. With no file, the node
    /// starts fresh and writes the file at once, so a path that cannot be written is
    /// reported by `listen` too.
    ///
    /// The node then writes the file every [`state_interval`](Self::state_interval) and
    /// when it is [stopped](KademliaServer::stop) (or its last handle is dropped). A write
    /// never leaves a partial file, so a node killed at any moment restarts from its last
    /// write: it goes to a temporary file in the same directory, is synced to disk, and
    /// replaces the file by a rename. The node holds an exclusive lock on `<path>.lock`
    /// while it runs: a second node given the same file fails with
    /// [`StateError::Locked`] instead of sharing it. Writes run on smol's blocking thread pool
    /// (`smol::unblock`); the node's task only copies the state. A write that fails is
    /// logged, counted in [`Stats::state_save_errors`] and tried again at the next
    /// interval.
    ///
    /// ```
    /// # async fn demo() -> Result<(), kad_smol::Error> {
    /// use std::time::Duration;
    /// use kad_smol::KademliaServer;
    /// let server = KademliaServer::builder()
    ///     .state_file("/var/lib/kad/state")
    ///     .state_interval(Duration::from_secs(30))
    ///     .listen("0.0.0.0:4000")
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// How often the state file of [`state_file`](Self::state_file) is written (default
    /// [`DEFAULT_STATE_INTERVAL`], 60 s; at least 1 ms). What changed since the last write
    /// is lost if the process is killed.
    pub fn state_interval(mut self, every: Duration) -> Self {
        self.state_interval = Some(every);
        self
    }

    /// Whether the node's socket moves up to 32 datagrams per system call (`recvmmsg` and
    /// `sendmmsg`) or one (`recv_from`, `send_to`). Default true; batching exists on Linux
    /// only, and elsewhere a node always uses one call per datagram. The node behaves the
    /// same either way (each datagram reaches the core with its source and the time it was
    /// read, and a send that fails drops only its own datagram); batching spends less CPU
    /// per datagram under load. Turning it off is for comparisons and as a way out should a
    /// kernel misbehave.
    pub fn batch_io(mut self, on: bool) -> Self {
        self.batch_io = Some(on);
        self
    }

    /// The settings this builder would use, validated.
    pub fn build_config(&self) -> Result<Config, Error> {
        Ok(self.config.clone().build()?)
    }

    /// Binds a UDP socket on `addr` (`"127.0.0.1:0"`, `"[::1]:4000"`, a `SocketAddr`...;
    /// IPv4 or IPv6) and starts the node's task. The node runs on
    /// smol's global executor (`smol::spawn`), whatever executor awaits this. With a
    /// [`state_file`](Self::state_file), restores the node from it first.
    pub async fn listen<A>(self, addr: A) -> Result<KademliaServer, Error>
    where
        A: AsyncToSocketAddrs + fmt::Debug,
    {
        let config = self.build_config()?;
        let state = self.state_file.clone();
        let lock = match &state {
            Some(path) => Some(state::lock(path).map_err(|source| Error::State {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let restored = match &state {
            Some(path) => self.load_state(path).await?,
            None => None,
        };
        let name = format!("{addr:?}").trim_matches('"').to_owned();
        let socket = bind(&name, addr).await?;
        let local_addr = socket
            .get_ref()
            .local_addr()
            .map_err(|source| Error::Bind {
                addr: name.clone(),
                source,
            })?;
        let seed = match self.seed {
            Some(s) => s,
            None => os_random::<32>()?,
        };
        let query_timeout = config.query_timeout();
        let mut node = match &restored {
            Some(snapshot) => {
                let (node, left_out) = Node::restore(config, snapshot, seed, Instant::now());
                if left_out > 0 {
                    tracing::warn!(
                        left_out,
                        "records in the state file beyond this node's limits were left out"
                    );
                }
                node
            }
            None => {
                let id = match self.id {
                    Some(id) => id,
                    None => NodeId(os_random::<20>()?),
                };
                Node::new(config, id, seed, Instant::now())
            }
        };
        node.set_local_addr(local_addr);
        let id = node.id();
        if let (Some(file), None) = (&state, &restored) {
            // A fresh node: its id is on disk before anything else happens, and a path
            // that cannot be written is reported now rather than logged later.
            let path = file.clone();
            let snapshot = node.snapshot(Instant::now());
            smol::unblock(move || state::save(&path, &snapshot))
                .await
                .map_err(|e| Error::State {
                    path: file.clone(),
                    source: StateError::Write(e),
                })?;
        }
        let mut server = Server::new(node);
        if state.is_some() {
            let every = self.state_interval.unwrap_or(DEFAULT_STATE_INTERVAL);
            server.save_every(
                Instant::now(),
                every.clamp(MIN_STATE_INTERVAL, MAX_DURATION),
            );
        }
        let (commands, command_rx) = bounded(COMMAND_QUEUE);
        let (stop, stop_rx) = bounded(1);
        let (done_tx, done) = bounded::<()>(1);
        let batch_io = self.batch_io.unwrap_or(true);
        let driver = Driver::new(
            server,
            socket,
            command_rx,
            stop_rx,
            state.zip(lock),
            batch_io,
        );
        let task = smol::spawn(async move {
            driver.run().await;
            drop(done_tx);
        });
        tracing::debug!(%local_addr, node_id = %id, "kad node listening");
        Ok(KademliaServer {
            commands,
            shared: Arc::new(Shared {
                id,
                local_addr,
                query_timeout,
                stop,
                task: Mutex::new(Some(task)),
                done,
            }),
        })
    }

    /// [`listen`](Self::listen) on [`DEFAULT_LISTEN_ADDR`] (`127.0.0.1:0`).
    pub async fn listen_default(self) -> Result<KademliaServer, Error> {
        self.listen(DEFAULT_LISTEN_ADDR).await
    }

    /// The snapshot in the state file, if there is one, checked against the id given to
    /// the builder.
    async fn load_state(&self, path: &std::path::Path) -> Result<Option<Snapshot>, Error> {
        let err = |source| Error::State {
            path: path.to_owned(),
            source,
        };
        let owned = path.to_owned();
        let Some(snapshot) = smol::unblock(move || state::load(&owned))
            .await
            .map_err(err)?
        else {
            tracing::debug!(path = %path.display(), "no state file: a fresh node");
            return Ok(None);
        };
        if let Some(given) = self.id.filter(|id| *id != snapshot.id) {
            return Err(err(StateError::WrongNodeId {
                file: snapshot.id,
                given,
            }));
        }
        tracing::debug!(
            path = %path.display(),
            node_id = %snapshot.id,
            peers = snapshot.peers.len(),
            records = snapshot.records.len(),
            "restoring from the state file"
        );
        Ok(Some(snapshot))
    }
}

/// Binds the first address `addr` resolves to, with a generous receive buffer.
async fn bind<A: AsyncToSocketAddrs>(
    name: &str,
    addr: A,
) -> Result<Async<std::net::UdpSocket>, Error> {
    let err = |source| Error::Bind {
        addr: name.to_owned(),
        source,
    };
    let mut last = None;
    for a in resolve(addr).await.map_err(err)? {
        match bind_one(a) {
            Ok(s) => return Async::new(s).map_err(err),
            Err(e) => last = Some(e),
        }
    }
    Err(err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })))
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` serves IPv6 only: peers are recorded at their source address, and an
        // IPv4-mapped source would not match the IPv4 address we were given.
        socket.set_only_v6(true)?;
    }
    // Best effort: the OS may cap it.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn os_random<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| Error::Random(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let b = KademliaServer::builder().config(config.clone());
        assert_eq!(b.build_config().unwrap(), config);
        // Later settings apply on top; invalid ones are refused at build time.
        assert_eq!(b.clone().k(9).build_config().unwrap().k(), 9);
        assert!(matches!(
            b.alpha(9).build_config(),
            Err(Error::Config(kad_core::ConfigError::AlphaAboveK { .. }))
        ));
    }
}
