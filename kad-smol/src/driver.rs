//! The task that owns the [`Node`] and the socket, and drives one with the other.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use kad_core::{Event, Node, NodeId, Peer, QueryId, QueryResult, QueryStats, Value};
use smol::channel::{Receiver, Sender, TryRecvError};
use smol::future::FutureExt;
use smol::{Async, Timer};

use crate::batch::{Inbox, Outbox};
use crate::state::{self, StateFile};
use crate::{Error, Stats};

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
    /// Transmits taken from the node and not yet sent; one that hit `WouldBlock` is sent
    /// first once the socket is writable.
    outbox: Outbox,
    stats: Stats,
    inbox: Inbox,
    state: Option<Saver>,
}

/// The state file's schedule, and the write in progress.
struct Saver {
    file: StateFile,
    /// When to write next.
    next: Instant,
    /// The result of the write running on the blocking pool, if one is.
    writing: Option<Receiver<io::Result<()>>>,
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
        state: Option<StateFile>,
        batch_io: bool,
    ) -> Driver {
        let now = Instant::now();
        let state = state.map(|file| Saver {
            next: after(now, file.interval),
            file,
            writing: None,
        });
        let inbox = Inbox::new(batch_io, node.local_addr());
        Driver {
            node,
            socket,
            commands,
            stop,
            replies: HashMap::new(),
            outbox: Outbox::new(batch_io),
            stats: Stats::default(),
            inbox,
            state,
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
            if self.state.as_ref().is_some_and(|s| s.next <= now) {
                self.save_state(now);
            }

            let mut busy = false;
            // Commands, a bounded batch.
            for _ in 0..COMMANDS_PER_PASS {
                match self.commands.try_recv() {
                    Ok(cmd) => self.on_command(cmd),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return self.shutdown().await,
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
                return self.shutdown().await;
            }
            if busy {
                // More may be waiting: let other tasks run, then come straight back.
                smol::future::yield_now().await;
                continue;
            }

            let now = Instant::now();
            let mut deadline = self.node.poll_timeout().unwrap_or_else(|| now + IDLE_WAIT);
            if let Some(s) = &self.state {
                deadline = deadline.min(s.next);
            }
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
                Wake::Stop => return self.shutdown().await,
            }
            last_timeout = None;
        }
    }

    /// Drops every pending reply (callers see [`Error::Stopped`]), refuses queued
    /// commands and writes the state file a last time; the socket closes when `self` is
    /// dropped.
    async fn shutdown(mut self) {
        self.commands.close();
        while self.commands.try_recv().is_ok() {}
        self.replies.clear();
        if let Some(mut saver) = self.state.take() {
            // One writer at a time: `<path>.tmp` is shared.
            if let Some(writing) = saver.writing.take() {
                let result = writing
                    .recv()
                    .await
                    .unwrap_or_else(|_| Err(blocking_panicked()));
                count_save(&mut self.stats, &saver.file.path, result);
            }
            let snapshot = self.node.snapshot(Instant::now());
            let path = saver.file.path.clone();
            let result = smol::unblock(move || state::save(&path, &snapshot)).await;
            count_save(&mut self.stats, &saver.file.path, result);
        }
        tracing::debug!(addr = %self.node.local_addr(), "kad node stopped");
    }

    /// Starts writing the node's state on smol's blocking pool. Only the snapshot (a copy
    /// of the records; values are reference-counted) is taken here; encoding and the disk
    /// are the blocking task's. If the last write is still running (a slow disk), this
    /// turn is skipped: the next one writes newer state anyway.
    fn save_state(&mut self, now: Instant) {
        self.collect_save();
        let Some(saver) = &mut self.state else {
            return;
        };
        saver.next = after(now, saver.file.interval);
        if saver.writing.is_some() {
            tracing::debug!("the last state write is still running; skipping this one");
            return;
        }
        let snapshot = self.node.snapshot(now);
        let path = saver.file.path.clone();
        let (tx, rx) = smol::channel::bounded(1);
        // Detached: the write finishes even if the driver is gone, and its result comes
        // back through `rx`.
        smol::unblock(move || {
            let _ = tx.try_send(state::save(&path, &snapshot));
        })
        .detach();
        saver.writing = Some(rx);
    }

    /// Counts the last state write if it has finished.
    fn collect_save(&mut self) {
        let Some(saver) = &mut self.state else {
            return;
        };
        let Some(writing) = &mut saver.writing else {
            return;
        };
        let result = match writing.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Closed) => Err(blocking_panicked()),
        };
        saver.writing = None;
        count_save(&mut self.stats, &saver.file.path, result);
    }

    /// Reads datagrams until the socket would block or the pass's cap is reached; gives
    /// the first `max_dispatch_tasks` to the core, and of the rest only those from
    /// addresses the core has verified; drops the others. Returns whether the cap was
    /// reached (more may be waiting).
    fn receive(&mut self) -> bool {
        let dispatch = self.node.config().max_dispatch_tasks();
        let limit = dispatch.saturating_mul(READS_PER_DISPATCH);
        let mut read = 0;
        while read < limit {
            let want = (limit - read).min(self.inbox.slots());
            let got = match recv(&self.socket, &mut self.inbox, want) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors and the like: count them and read on.
                    read += 1;
                    self.stats.recv_errors += 1;
                    tracing::trace!(error = %e, "recv error");
                    continue;
                }
            };
            // One receive time for a batch: its datagrams were all waiting at that call.
            let now = Instant::now();
            for i in 0..got {
                read += 1;
                let Some((from, bytes)) = self.inbox.datagram(i) else {
                    self.stats.recv_errors += 1;
                    continue;
                };
                // Past the pass's dispatch budget only proven peers get through: a
                // flood from strangers must not crowd out the peers we know.
                if read <= dispatch
                    || self.node.is_verified_addr(now, from)
                    || self.node.awaits_reply_from(from)
                {
                    self.node.handle_datagram(now, from, bytes);
                } else {
                    self.stats.datagrams_dropped += 1;
                }
            }
            if got < want {
                // The kernel's queue ran dry within the call; the next wait on
                // `readable` sees anything that came since.
                return false;
            }
        }
        self.stats.capped_passes += 1;
        true
    }

    /// Sends queued datagrams, a batch per system call; returns true when the socket's
    /// buffer is full (the datagrams not sent are kept for later). A datagram that fails
    /// for good is counted and dropped; the ones behind it are still sent.
    fn flush(&mut self) -> bool {
        loop {
            self.outbox.fill(&mut self.node);
            let Some(first) = self.outbox.front() else {
                return false;
            };
            match send(self.socket.get_ref(), &self.outbox) {
                Ok(sent) if sent > 0 => self.outbox.done(sent),
                Ok(_) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.send_blocked += 1;
                    return true;
                }
                Err(e) => {
                    self.stats.send_errors += 1;
                    tracing::debug!(dst = %first.dst, error = %e, "send failed");
                    self.outbox.done(1);
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
                self.collect_save();
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

/// One read from the non-blocking `socket` into `inbox`: up to `max` datagrams with
/// `recvmmsg` when batching, else one with `recv_from`. Returns how many were read.
fn recv(socket: &Async<UdpSocket>, inbox: &mut Inbox, max: usize) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if inbox.slots() > 1 {
        use std::os::fd::AsRawFd;
        return inbox.recv_mmsg(socket.get_ref().as_raw_fd(), max);
    }
    let _ = max;
    inbox.recv_one(|buf| socket.get_ref().recv_from(buf))
}

/// One send of the front of `outbox` on the non-blocking `socket`: a batch with
/// `sendmmsg` when batching, else its first datagram with `send_to`. Returns how many
/// datagrams went.
fn send(socket: &UdpSocket, outbox: &Outbox) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if outbox.batched() {
        use std::os::fd::AsRawFd;
        return crate::batch::send_mmsg(socket.as_raw_fd(), outbox.datagrams());
    }
    let Some(t) = outbox.front() else {
        return Ok(0);
    };
    socket.send_to(&t.payload, t.dst).map(|_| 1)
}

/// `now + d`, or an hour from now if that is past what `Instant` can hold.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now + IDLE_WAIT)
}

fn blocking_panicked() -> io::Error {
    io::Error::other("the state write task panicked")
}

fn count_save(stats: &mut Stats, path: &Path, result: io::Result<()>) {
    match result {
        Ok(()) => stats.state_saves += 1,
        Err(e) => {
            stats.state_save_errors += 1;
            tracing::warn!(path = %path.display(), error = %e, "cannot write the state file");
        }
    }
}
