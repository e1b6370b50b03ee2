//! The layer an adapter drives: a [`Node`] plus every decision the I/O loop around it
//! makes, sans-IO.
//!
//! An adapter (kad-tokio, kad-smol) owns a socket, a clock, a command channel and a way
//! to write bytes to a file; [`Server`] decides everything else, so that both adapters
//! behave alike and a simulation can reach it:
//!
//! - **commands and their replies**: [`Server::handle_command`] takes a [`Command`] and a
//!   token of the caller's choosing (typically its reply channel); the token comes back
//!   with the [`Reply`] from [`Server::poll_reply`], once the query has finished;
//! - **admission and the per-pass work budget** (quinn's `work_limiter` idea): each pass
//!   reads at most [`Server::datagrams_wanted`] datagrams; past `max_dispatch_tasks` in a
//!   pass only senders the node has verified or awaits get through, the rest are dropped
//!   and counted, so a flood from strangers cannot crowd out known peers;
//! - **the state-save schedule**: [`Server::poll_save`] hands out a [`Snapshot`] when one
//!   is due (and no write is in flight); the adapter writes its bytes and reports back
//!   with [`Server::save_finished`];
//! - **the transmits held after `WouldBlock`**: [`Server::transmit_blocked`] keeps what
//!   the socket refused, first in line for [`Server::poll_transmit`];
//! - **the I/O counters** ([`ServerStats`]).
//!
//! ## The adapter's loop
//!
//! ```text
//! loop {
//!     let now = clock();
//!     server.begin_pass(now);                      // timers, and a fresh budget
//!     if let Some(snapshot) = server.poll_save(now) { spawn_write(snapshot) }
//!     // on write completion: server.save_finished(ok)
//!     for (cmd, reply_tx) in commands.try_recv().take(COMMANDS_PER_PASS) {
//!         server.handle_command(clock(), reply_tx, cmd);
//!     }
//!     while server.datagrams_wanted() > 0 {       // read, within the budget
//!         match socket.try_recv() {
//!             Ok((from, bytes)) => server.handle_datagram(clock(), from, &bytes),
//!             Err(WouldBlock) => break,
//!             Err(_) => server.recv_error(),
//!         }
//!     }
//!     while let Some(t) = server.poll_transmit() { // send, holding what would block
//!         match socket.try_send(&t) {
//!             Ok(_) => {}
//!             Err(WouldBlock) => { server.transmit_blocked([t]); break }
//!             Err(_) => server.transmit_failed(),
//!         }
//!     }
//!     while let Some((reply_tx, reply)) = server.poll_reply() { reply_tx.send(reply) }
//!     if the pass was capped or took commands { yield; continue }
//!     wait for: a command, readability, writability if server.is_send_blocked(),
//!               or server.poll_timeout(clock())
//! }
//! ```

mod adapter;
mod cancel;
mod command;
mod error;
mod events;
#[cfg(feature = "tracing")]
mod spans;
mod stats;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::{Event, Node, QueryId, Snapshot, Transmit};

pub use adapter::{usable_addrs, NodeInfo, Settings, StoreSlot};
pub use command::{Command, CommandError, Reply};
pub use error::{Error, StateError};
pub use events::{Notice, Subscription, MAX_SUBSCRIBERS};
pub use stats::ServerStats;

/// Commands an adapter takes from its channel per pass: enough to batch, few enough to
/// keep the socket served.
pub const COMMANDS_PER_PASS: usize = 64;

/// A pass reads at most this many times `max_dispatch_tasks` datagrams: those past
/// `max_dispatch_tasks` from unverified senders are dropped (and counted), which keeps the
/// kernel's buffer from filling with a flood while legitimate datagrams wait behind it.
pub const READS_PER_DISPATCH: usize = 4;

/// Past a pass's dispatch budget, one verified (or awaited) address gets at most this many
/// datagrams through per pass. Its address proves nothing about a datagram (a source can
/// be forged), so a flood spoofing one known peer's address takes this share of the pass,
/// not all of it.
pub const PAST_BUDGET_PER_ADDRESS: u16 = 8;

/// How often an adapter's state file is written when its builder's `state_interval` is not
/// set: every 60 seconds (and when the node stops).
pub const DEFAULT_STATE_INTERVAL: Duration = Duration::from_secs(60);

/// Events an adapter's `events()` stream holds before it loses the oldest.
pub const EVENT_QUEUE: usize = 1024;

/// How far ahead [`Server::poll_timeout`] looks when nothing is scheduled.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// How long to wait when a deadline just handled is still due (the core waits for
/// capacity): the loop must not spin on it.
const DUE_AGAIN_WAIT: Duration = Duration::from_millis(1);

/// A [`Node`] with the decisions of the I/O loop around it; `T` is the caller's token
/// that comes back with each [`Reply`].
pub struct Server<T> {
    node: Node,
    /// Callers of running queries, by query.
    waiting: BTreeMap<QueryId, T>,
    /// Replies ready to go back.
    replies: VecDeque<(T, Reply)>,
    /// Transmits the socket refused (`WouldBlock`), sent before any new one.
    held: VecDeque<Transmit>,
    stats: ServerStats,
    save: Option<SaveSchedule>,
    /// Datagrams read (or failed to read) in this pass.
    read: usize,
    /// Datagrams let through past the budget this pass, per source address.
    past_budget: BTreeMap<SocketAddr, u16>,
    /// Whether this pass's budget ran out (and was counted).
    capped: bool,
    /// Whether `begin_pass` handled a timeout.
    timed_out: bool,
    /// Tells a token whose caller gave up ([`Server::cancel_abandoned_when`]).
    abandoned: Option<fn(&T) -> bool>,
    /// Who watches the node's events ([`Server::subscribe`]).
    subscribers: Vec<Subscription>,
    /// Rounds and durations of finished user queries.
    #[cfg(feature = "metrics")]
    query_histograms: crate::metrics::QueryHistograms,
    /// The `kad.query` span of each user query running.
    #[cfg(feature = "tracing")]
    spans: BTreeMap<QueryId, tracing::Span>,
}

/// When the next snapshot is due, and whether a write is in flight.
#[derive(Debug)]
struct SaveSchedule {
    interval: Duration,
    next: Instant,
    writing: bool,
}

impl<T> Server<T> {
    /// A server around `node`, saving no state until [`save_every`](Self::save_every).
    pub fn new(node: Node) -> Server<T> {
        Server {
            node,
            waiting: BTreeMap::new(),
            replies: VecDeque::new(),
            held: VecDeque::new(),
            stats: ServerStats::default(),
            save: None,
            read: 0,
            capped: false,
            past_budget: BTreeMap::new(),
            timed_out: false,
            abandoned: None,
            subscribers: Vec::new(),
            #[cfg(feature = "metrics")]
            query_histograms: Default::default(),
            #[cfg(feature = "tracing")]
            spans: BTreeMap::new(),
        }
    }

    /// The node inside.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Asks for a snapshot every `interval` (at least 1 ms) from `now` on, through
    /// [`poll_save`](Self::poll_save).
    pub fn save_every(&mut self, now: Instant, interval: Duration) {
        let interval = interval.max(Duration::from_millis(1));
        self.save = Some(SaveSchedule {
            interval,
            next: after(now, interval),
            writing: false,
        });
    }

    /// Starts a pass of the adapter's loop: handles the node's timeout if it is due and
    /// gives the pass a fresh datagram budget. Call it first in every pass, with a fresh
    /// `now`.
    pub fn begin_pass(&mut self, now: Instant) {
        self.read = 0;
        self.capped = false;
        self.past_budget = BTreeMap::new();
        self.timed_out = self.node.poll_timeout().is_some_and(|t| t <= now);
        if self.timed_out {
            self.node.handle_timeout(now);
        }
        self.cancel_abandoned(now);
    }

    /// A snapshot to write, when one is due and the last write has finished (a write
    /// still running when the next is due skips that turn: the one after writes newer
    /// state anyway). The adapter writes [`Snapshot::to_bytes`] and then calls
    /// [`save_finished`](Self::save_finished).
    pub fn poll_save(&mut self, now: Instant) -> Option<Snapshot> {
        let save = self.save.as_mut()?;
        if save.next > now {
            return None;
        }
        save.next = after(now, save.interval);
        if save.writing {
            return None;
        }
        save.writing = true;
        Some(self.node.snapshot(now))
    }

    /// Whether a snapshot handed out by [`poll_save`](Self::poll_save) is still being
    /// written.
    pub fn is_saving(&self) -> bool {
        self.save.as_ref().is_some_and(|s| s.writing)
    }

    /// The write of the last snapshot ended, well (`ok`) or not; counted in
    /// [`ServerStats::state_saves`] or [`ServerStats::state_save_errors`].
    pub fn save_finished(&mut self, ok: bool) {
        if let Some(save) = &mut self.save {
            save.writing = false;
        }
        if ok {
            self.stats.state_saves += 1;
        } else {
            self.stats.state_save_errors += 1;
        }
        self.publish(&Event::StateSaved { ok });
    }

    /// The node's state now, for a last write when the adapter stops.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        self.node.snapshot(now)
    }

    /// Runs `cmd` for the caller holding `token`; the token comes back with the reply
    /// from [`poll_reply`](Self::poll_reply): at once for `Stats`, `Peers`, `GetLocal`
    /// and a refused command, when the query finishes otherwise.
    pub fn handle_command(&mut self, now: Instant, token: T, cmd: Command) {
        if self.node.active_queries() >= self.node.config().max_active_queries {
            // A caller who gave up since the pass began may hold the slot this one needs.
            self.cancel_abandoned(now);
        }
        self.start_command(now, token, cmd);
    }

    /// [`handle_command`](Self::handle_command); returns the query it started, if any.
    fn start_command(&mut self, now: Instant, token: T, cmd: Command) -> Option<QueryId> {
        #[cfg(feature = "tracing")]
        let kind = spans::kind(&cmd);
        let node = &mut self.node;
        let started = match cmd {
            Command::Bootstrap(addrs) => Ok(node.bootstrap(now, &addrs)),
            Command::Put(key, value) => node.put(now, &key, value).map_err(refused),
            Command::Get(key) => node.get(now, &key).map_err(refused),
            Command::FindNode(target) => Ok(node.find_node(now, target)),
            Command::FindValue(key) => node.find_value(now, &key).map_err(refused),
            Command::Ping(addr) => Ok(node.ping(now, addr)),
            Command::Stats => Err(Reply::Stats(Box::new(self.stats()))),
            Command::Peers => Err(Reply::Peers(node.peers())),
            Command::GetLocal(key) => Err(Reply::Local(node.get_local(now, &key))),
            Command::Subscribe(capacity) => Err(Reply::Subscribed(self.subscribe(capacity))),
            #[cfg(feature = "metrics")]
            Command::Metrics => Err(Reply::Metrics(self.metrics().to_text())),
        };
        match started {
            Ok(id) => {
                #[cfg(feature = "tracing")]
                self.open_span(id, kind);
                self.waiting.insert(id, token);
                Some(id)
            }
            Err(reply) => {
                self.replies.push_back((token, reply));
                None
            }
        }
    }

    /// How many more datagrams this pass may read; 0 once the budget
    /// (`max_dispatch_tasks` x [`READS_PER_DISPATCH`]) is spent, which counts the pass in
    /// [`ServerStats::capped_passes`] (once). A capped pass should yield and come back.
    pub fn datagrams_wanted(&mut self) -> usize {
        let limit = self
            .node
            .config()
            .max_dispatch_tasks()
            .saturating_mul(READS_PER_DISPATCH);
        let left = limit.saturating_sub(self.read);
        if left == 0 && !self.capped {
            self.capped = true;
            self.stats.capped_passes += 1;
        }
        left
    }

    /// Whether this pass's datagram budget ran out.
    pub fn is_capped(&self) -> bool {
        self.capped
    }

    /// A datagram read from the socket at `now`. The first `max_dispatch_tasks` of a pass
    /// go to the node; past that only those from addresses the node has verified or
    /// awaits a reply from, at most [`PAST_BUDGET_PER_ADDRESS`] per address, and the
    /// others are dropped and counted.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.read += 1;
        if self.read <= self.node.config().max_dispatch_tasks() {
            return self.node.handle_datagram(now, from, bytes);
        }
        let share = self.past_budget.get(&from).copied().unwrap_or(0);
        if share < PAST_BUDGET_PER_ADDRESS
            && (self.node.awaits_reply_from(from) || self.node.is_verified_addr(now, from))
        {
            self.past_budget.insert(from, share + 1);
            self.node.handle_datagram(now, from, bytes);
        } else {
            self.stats.datagrams_dropped += 1;
        }
    }

    /// A read from the socket failed (other than "nothing to read"), or gave a datagram
    /// without a source: counted, and it uses up one datagram of the pass's budget.
    pub fn recv_error(&mut self) {
        self.read += 1;
        self.stats.recv_errors += 1;
    }

    /// The next datagram to send: one held back by
    /// [`transmit_blocked`](Self::transmit_blocked) first, then the node's.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.held.pop_front().or_else(|| self.node.poll_transmit())
    }

    /// A sent datagram's buffer, for the node to write into again (see [`Node::recycle`]).
    pub fn recycle(&mut self, payload: Vec<u8>) {
        self.node.recycle(payload);
    }

    /// The socket's buffer was full: `unsent` (in the order they were taken from
    /// [`poll_transmit`](Self::poll_transmit)) go first once it is writable again. Counted
    /// once in [`ServerStats::send_blocked`].
    pub fn transmit_blocked(&mut self, unsent: impl IntoIterator<Item = Transmit>) {
        let unsent: Vec<Transmit> = unsent.into_iter().collect();
        for t in unsent.into_iter().rev() {
            self.held.push_front(t);
        }
        self.stats.send_blocked += 1;
    }

    /// Whether transmits are held: the adapter should wait for the socket to be writable.
    pub fn is_send_blocked(&self) -> bool {
        !self.held.is_empty()
    }

    /// A datagram could not be sent and is dropped (no route, wrong family, ...).
    pub fn transmit_failed(&mut self) {
        self.stats.send_errors += 1;
    }

    /// The next reply and its caller's token. Call it after every pass, until `None`.
    pub fn poll_reply(&mut self) -> Option<(T, Reply)> {
        loop {
            if let Some(reply) = self.replies.pop_front() {
                return Some(reply);
            }
            let event = self.node.poll_event()?;
            self.publish(&event);
            // The watch events are the subscribers' only.
            let Event::QueryFinished { id, result, stats } = event else {
                continue;
            };
            self.stats.queries += 1;
            self.stats.query_requests += u64::from(stats.requests);
            #[cfg(feature = "metrics")]
            self.query_histograms.observe(&result, &stats);
            #[cfg(feature = "tracing")]
            self.close_span(id, &stats);
            if let Some(token) = self.waiting.remove(&id) {
                return Some((token, Reply::Query(Ok((result, stats)))));
            }
        }
    }

    /// When the adapter should run its next pass if no command or datagram comes first:
    /// the node's deadline or the next save, whichever is sooner; never in the past right
    /// after a pass that handled a timeout (the core then waits for capacity, and the
    /// loop must not spin).
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        let mut deadline = self
            .node
            .poll_timeout()
            .unwrap_or_else(|| after(now, IDLE_WAIT));
        if let Some(save) = &self.save {
            deadline = deadline.min(save.next);
        }
        if deadline <= now && self.timed_out {
            deadline = after(now, DUE_AGAIN_WAIT);
        }
        deadline
    }

    /// The counters: the server's and the node's.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            core: self.node.stats(),
            peers: self.node.table_len(),
            records: self.node.record_count(),
            active_queries: self.node.active_queries(),
            ..self.stats
        }
    }

    /// Everything the `kad_` metrics report, now ([`crate::metrics`]);
    /// [`Command::Metrics`] replies with its text.
    #[cfg(feature = "metrics")]
    pub fn metrics(&self) -> crate::metrics::Scrape {
        crate::metrics::Scrape::of(self)
    }

    /// Rounds and durations of the user queries finished so far.
    #[cfg(feature = "metrics")]
    pub(crate) fn query_histograms(&self) -> &crate::metrics::QueryHistograms {
        &self.query_histograms
    }

    /// Stops: every caller still waiting loses its token (dropping a reply channel tells
    /// its caller the server stopped), and nothing is held any more.
    pub fn stop(&mut self) {
        self.waiting.clear();
        #[cfg(feature = "tracing")]
        self.spans.clear();
        self.replies.clear();
        self.close_subscribers();
    }
}

impl<T> std::fmt::Debug for Server<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("node_id", &self.node.id())
            .field("waiting", &self.waiting.len())
            .field("held", &self.held.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// The reply to a command refused before it started.
fn refused(e: impl Into<CommandError>) -> Reply {
    Reply::Query(Err(e.into()))
}

/// `now + d`, or an hour from now if that is past what `Instant` can hold.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(IDLE_WAIT))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests;
