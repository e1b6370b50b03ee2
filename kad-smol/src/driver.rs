//! The task that owns the [`Node`] and the socket, and drives one with the other.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use kad_core::{Event, Node, NodeId, Peer, QueryId, QueryResult, QueryStats, Transmit, Value};
use smol::channel::{Receiver, Sender, TryRecvError};
use smol::future::FutureExt;
use smol::{Async, Timer};

use crate::{Error, Stats};

/// Largest UDP payload (IPv4); anything the protocol sends fits.
const RECV_BUF: usize = 65_536;
/// Commands taken per pass: enough to batch, few enough to keep the socket served.
const COMMANDS_PER_PASS: usize = 64;
/// A pass reads at most this many times `max_dispatch_tasks` datagrams: those past
/// `max_dispatch_tasks` are dropped (and counted), which keeps the kernel's buffer from
/// filling with a flood while legitimate datagrams wait behind it.
const READS_PER_DISPATCH: usize = 4;
/// When the node has nothing scheduled (it always has, refresh is periodic).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// A network command and the reply slot of its caller.
pub(crate) enum Query {
    Bootstrap(Vec<SocketAddr>),
    Put(String, Value),
    Get(String),
    FindNode(NodeId),
    FindValue(String),
    Ping(SocketAddr),
}

/// What a finished network command hands back.
pub(crate) type Finished = Result<(QueryResult, QueryStats), Error>;

/// The reply slot of one call: a channel of capacity one.
pub(crate) type Reply<T> = Sender<T>;

/// What the handle asks of the driver.
pub(crate) enum Command {
    Query(Query, Reply<Finished>),
    Stats(Reply<Stats>),
    Peers(Reply<Vec<Peer>>),
    GetLocal(String, Reply<Option<Value>>),
}

pub(crate) struct Driver {
    node: Node,
    socket: Async<UdpSocket>,
    commands: Receiver<Command>,
    /// Closed by `stop()` (or when the last handle goes).
    stop: Receiver<()>,
    replies: HashMap<QueryId, Reply<Finished>>,
    /// A datagram that hit `WouldBlock`: sent first once the socket is writable.
    held: Option<Transmit>,
    stats: Stats,
    buf: Vec<u8>,
}

/// Why a pass ended.
enum Wake {
    Ready,
    Command(Command),
    Stop,
}

impl Driver {
    pub(crate) fn new(
        node: Node,
        socket: Async<UdpSocket>,
        commands: Receiver<Command>,
        stop: Receiver<()>,
    ) -> Driver {
        Driver {
            node,
            socket,
            commands,
            stop,
            replies: HashMap::new(),
            held: None,
            stats: Stats::default(),
            buf: vec![0; RECV_BUF],
        }
    }

    /// Runs until [`crate::KademliaServer::stop`] or until every handle is dropped. The
    /// socket is closed when this returns.
    pub(crate) async fn run(mut self) {
        let mut last_timeout: Option<Instant> = None;
        loop {
            // Time: a fresh `now` every turn; never trust that a timer fired on time.
            let now = Instant::now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
                last_timeout = Some(now);
            }

            let mut busy = false;
            // Commands, a bounded batch.
            for _ in 0..COMMANDS_PER_PASS {
                match self.commands.try_recv() {
                    Ok(cmd) => self.on_command(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return self.shutdown(),
                }
                busy = true;
            }
            // The socket, drained up to the per-pass cap.
            if self.receive() {
                busy = true;
            }
            let blocked = self.flush();
            self.dispatch_events();
            if self.stop.is_closed() {
                return self.shutdown();
            }
            if busy {
                // More may be waiting: let other tasks run, then come straight back.
                smol::future::yield_now().await;
                continue;
            }

            let now = Instant::now();
            let mut deadline = self.node.poll_timeout().unwrap_or_else(|| now + IDLE_WAIT);
            // A deadline we just handled that is still "now" means the core waits for
            // capacity: do not spin on it.
            if deadline <= now && last_timeout.is_some() {
                deadline = now + Duration::from_millis(1);
            }
            let wake = {
                let socket = &self.socket;
                let stop = async {
                    // Only ever closed, never sent to.
                    let _ = self.stop.recv().await;
                    Wake::Stop
                };
                let command = async {
                    match self.commands.recv().await {
                        Ok(cmd) => Wake::Command(cmd),
                        Err(_) => Wake::Stop,
                    }
                };
                let writable = async {
                    if blocked {
                        let _ = socket.writable().await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                    Wake::Ready
                };
                let readable = async {
                    let _ = socket.readable().await;
                    Wake::Ready
                };
                let timer = async {
                    Timer::at(deadline).await;
                    Wake::Ready
                };
                stop.or(command).or(writable).or(readable).or(timer).await
            };
            match wake {
                Wake::Ready => {}
                Wake::Command(cmd) => self.on_command(cmd),
                Wake::Stop => return self.shutdown(),
            }
            last_timeout = None;
        }
    }

    /// Drops every pending reply (callers see [`Error::Stopped`]) and refuses queued
    /// commands; the socket closes when `self` is dropped.
    fn shutdown(mut self) {
        self.commands.close();
        while self.commands.try_recv().is_ok() {}
        self.replies.clear();
        tracing::debug!(addr = %self.node.local_addr(), "kad node stopped");
    }

    /// Reads datagrams until the socket would block or the pass's cap is reached; gives
    /// the first `max_dispatch_tasks` to the core and drops the rest. Returns whether the
    /// cap was reached (more may be waiting).
    fn receive(&mut self) -> bool {
        let dispatch = self.node.config().max_dispatch_tasks();
        let limit = dispatch.saturating_mul(READS_PER_DISPATCH);
        let mut read = 0;
        while read < limit {
            match self.socket.get_ref().recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    read += 1;
                    if read <= dispatch {
                        self.node
                            .handle_datagram(Instant::now(), from, &self.buf[..n]);
                    } else {
                        self.stats.datagrams_dropped += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors and the like: count them and read on.
                    read += 1;
                    self.stats.recv_errors += 1;
                    tracing::trace!(error = %e, "recv error");
                }
            }
        }
        self.stats.capped_passes += 1;
        true
    }

    /// Sends queued datagrams; returns true when the socket's buffer is full (the
    /// datagram that hit it is kept for later).
    fn flush(&mut self) -> bool {
        loop {
            let Some(t) = self.held.take().or_else(|| self.node.poll_transmit()) else {
                return false;
            };
            match self.socket.get_ref().send_to(&t.payload, t.dst) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.send_blocked += 1;
                    self.held = Some(t);
                    return true;
                }
                Err(e) => {
                    self.stats.send_errors += 1;
                    tracing::debug!(dst = %t.dst, error = %e, "send failed");
                }
            }
        }
    }

    fn dispatch_events(&mut self) {
        while let Some(event) = self.node.poll_event() {
            #[allow(clippy::single_match)] // `Event` is non-exhaustive.
            match event {
                Event::QueryFinished { id, result, stats } => {
                    self.stats.queries += 1;
                    self.stats.query_requests += u64::from(stats.requests);
                    if let Some(reply) = self.replies.remove(&id) {
                        // The caller may have given up; that is fine.
                        let _ = reply.try_send(Ok((result, stats)));
                    }
                }
                _ => {}
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Query(query, reply) => {
                let id = match query {
                    Query::Bootstrap(addrs) => Ok(self.node.bootstrap(now, &addrs)),
                    Query::Put(key, value) => self.node.put(now, &key, value).map_err(Error::from),
                    Query::Get(key) => self.node.get(now, &key).map_err(Error::from),
                    Query::FindNode(target) => Ok(self.node.find_node(now, target)),
                    Query::FindValue(key) => self.node.find_value(now, &key).map_err(Error::from),
                    Query::Ping(addr) => Ok(self.node.ping(now, addr)),
                };
                match id {
                    Ok(id) => {
                        self.replies.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.try_send(Err(e));
                    }
                }
            }
            Command::Stats(reply) => {
                let mut stats = self.stats;
                stats.core = self.node.stats();
                let _ = reply.try_send(stats);
            }
            Command::Peers(reply) => {
                let _ = reply.try_send(self.node.peers());
            }
            Command::GetLocal(key, reply) => {
                let _ = reply.try_send(self.node.get_local(now, &key));
            }
        }
    }
}
