//! `SimNet`: many [`Node`]s, one virtual clock, one seeded queue of datagrams.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kad_core::{Config, Event, Node, NodeId, QueryId, QueryResult, QueryStats};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::{Link, RttModel, TraceHash};

mod window;

/// A finished user query, as its [`Event::QueryFinished`] reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The node that ran it.
    pub node: usize,
    /// Its id on that node.
    pub id: QueryId,
    /// What came of it.
    pub result: QueryResult,
    /// The work it took.
    pub stats: QueryStats,
}

/// Counters of what the network did with datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Steps taken (deliveries plus timer firings).
    pub steps: u64,
    /// Datagrams handed to the network by nodes (and by [`SimNet::inject`]).
    pub sent: u64,
    /// Datagrams given to a node's `handle_datagram`.
    pub delivered: u64,
    /// Datagrams dropped by the link's loss probability.
    pub lost: u64,
    /// Extra copies made by the link's duplication probability.
    pub duplicated: u64,
    /// Datagrams dropped because their source or destination is dead.
    pub dropped_dead: u64,
    /// Datagrams dropped because source and destination are in different partitions.
    pub dropped_partition: u64,
    /// Datagrams to an address where no node lives.
    pub undeliverable: u64,
    /// `handle_timeout` calls.
    pub timer_fires: u64,
    /// Datagrams delivered to a node after another one that was sent to it later
    /// (the link's jitter reorders).
    pub reordered: u64,
    /// Datagrams taken by an interceptor ([`SimNet::intercept`]) instead of a node.
    pub intercepted: u64,
}

/// What an interceptor ([`SimNet::intercept`]) does with a datagram it is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intercept {
    /// Deliver it as usual: to the node at its destination, if there is one.
    Pass,
    /// Take it: no node sees it. These datagrams (source, destination, payload) are sent
    /// in its place, through the link like any node's.
    Answer(Vec<(SocketAddr, SocketAddr, Vec<u8>)>),
}

/// A scripted participant at one IP: shown each datagram for that IP (time, source,
/// destination, payload) that passed the dead-node and partition checks.
type Interceptor = Box<dyn FnMut(Instant, SocketAddr, SocketAddr, &[u8]) -> Intercept + Send>;

/// Outcome of [`SimNet::bootstrap_all`].
#[derive(Clone, Debug, Default)]
pub struct BootstrapReport {
    /// Nodes that joined (in [`SimNet::bootstrap_all`], node 0, the first, joins by
    /// definition; in [`SimNet::join`], the joiners that made it).
    pub joined: usize,
    /// Nodes whose every bootstrap attempt failed.
    pub failed: usize,
    /// Those nodes, in the order they were given.
    pub stragglers: Vec<usize>,
    /// Bootstrap commands issued, retries included.
    pub attempts: usize,
    /// Requests sent by all bootstrap commands.
    pub requests: u64,
    /// Requests of bootstrap commands that timed out.
    pub timeouts: u64,
    /// Virtual time the whole bootstrap took.
    pub duration: Duration,
}

struct Slot {
    node: Node,
    addr: SocketAddr,
    /// Taken out for good ([`SimNet::remove`]): dead, and `node` is a blank stand-in.
    removed: bool,
    /// The send sequence number of the last datagram delivered here.
    last_seq: u64,
    /// The deadline this node has in `SimNet::deadlines`, if any (the entry there that
    /// matches it is live; any other entry for this node is stale).
    deadline: Option<Instant>,
}

/// Whether nodes can be reached, apart from their [`Slot`]s: every delivery checks it for
/// the source too, on the thread that merges a window. A bit a node (a million nodes in
/// 125 KB, which stays in cache) and group numbers only while partitioned.
#[derive(Default)]
struct Reach {
    /// Bit `i % 64` of word `i / 64`: node `i` is dead.
    dead: Vec<u64>,
    /// Nodes reach each other only within the same group; empty unless partitioned.
    groups: Vec<u32>,
}

impl Reach {
    /// Makes room for node `i` (alive, in group 0).
    fn add(&mut self, i: usize) {
        if self.dead.len() <= i / 64 {
            self.dead.resize(i / 64 + 1, 0);
        }
        if !self.groups.is_empty() {
            self.groups.resize(i + 1, 0);
        }
    }

    fn dead(&self, i: usize) -> bool {
        self.dead[i / 64] >> (i % 64) & 1 == 1
    }

    fn set_dead(&mut self, i: usize, dead: bool) {
        let bit = 1 << (i % 64);
        if dead {
            self.dead[i / 64] |= bit;
        } else {
            self.dead[i / 64] &= !bit;
        }
    }

    /// Are nodes `a` and `b` on the same side of every partition?
    fn together(&self, a: usize, b: usize) -> bool {
        self.groups.is_empty() || self.groups[a] == self.groups[b]
    }
}

struct Datagram {
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// A deterministic network of kad nodes in virtual time.
///
/// Everything that varies comes from one `u64` seed: node ids and node seeds, every delay,
/// loss and duplication, and the choices of [`SimNet::pick`] and [`SimNet::chance`]. The
/// only real clock read is one `Instant::now()` at construction, used as the epoch; after
/// that, time is `epoch + offset` and moves only in [`SimNet::step`] and in the windows
/// of [`SimNet::join`].
///
/// After every step the node that was touched is checked with [`Node::check_invariants`];
/// a violation panics with the seed. A `SimNet` dropped during a panic prints its seed and
/// the `KAD_SIM_SEED` line that replays it.
pub struct SimNet {
    seed: u64,
    epoch: Instant,
    now: Instant,
    link: Link,
    /// Per-pair round trips in place of the link's fixed latency, if set.
    rtt: Option<RttModel>,
    /// Network decisions (delay, loss, duplication).
    net_rng: ChaCha12Rng,
    /// Node ids and node seeds.
    node_rng: ChaCha12Rng,
    /// Scenario choices ([`SimNet::pick`], bootstrap contacts).
    user_rng: ChaCha12Rng,
    nodes: Vec<Slot>,
    /// What [`SimNet::deliver`] checks of source and destination, by node index.
    reach: Reach,
    /// Datagrams in flight, earliest first, each as one number (see [`queue_key`]): its
    /// delivery time, its send sequence number (ties go in send order) and its slot in
    /// `parked`. A heap of 16-byte keys, the datagrams parked beside it: a map of whole
    /// datagrams moved a hundred bytes for each one at every insert and removal, and a
    /// heap of thousands of keys is walked down at every delivery.
    queue: BinaryHeap<Reverse<u128>>,
    /// The datagrams of `queue`, by slot; `None` in a free slot.
    parked: Vec<Option<Datagram>>,
    /// Free slots of `parked`.
    free: Vec<u32>,
    next_seq: u64,
    /// Node deadlines, earliest first, as (nanoseconds since the epoch, node): a heap that
    /// is only pushed to, each entry live while it matches its node's `Slot::deadline`
    /// and skipped once it does not. A node's deadline moves at nearly every event, and
    /// a million-entry ordered set took two tree walks (one removal, one insert) each
    /// time, on the one thread that merges windows. The top is always live
    /// ([`SimNet::clean_deadlines`]).
    deadlines: BinaryHeap<Reverse<(u64, u32)>>,
    finished: HashMap<(usize, QueryId), Finished>,
    recent: Vec<(usize, QueryId)>,
    trace: TraceHash,
    stats: NetStats,
    check_invariants: bool,
    query_cap: Duration,
    /// (time, node, count) of consecutive timer firings of one node at one instant.
    spin: (Instant, usize, u32),
    /// Scripted participants, by the IP they answer for.
    interceptors: BTreeMap<IpAddr, Interceptor>,
    /// Threads a window's nodes are shared among ([`SimNet::set_threads`]).
    threads: usize,
    /// The pool of those threads, when more than one.
    pool: Option<rayon::ThreadPool>,
    /// No datagram may be queued for before this: a window's end while its outcome is
    /// merged (`window.rs`), the epoch otherwise.
    floor: Instant,
    /// Buffers of `window.rs`, kept between windows.
    scratch: window::Scratch,
    /// Told of each joining batch's end ([`SimNet::on_join_progress`]).
    join_progress: Option<JoinProgressFn>,
    /// [`SimNet::after_touch`]'s buffer, kept between events.
    drained: Vec<Drained>,
}

/// What [`SimNet::on_join_progress`] calls: joiners done (joined or given up on) so far,
/// joiners in all, and the virtual time since the join began.
pub type JoinProgressFn = Box<dyn FnMut(usize, usize, Duration) + Send>;

/// A node firing its timer this many times at one instant, with nothing else happening in
/// between, is stuck.
const SPIN_LIMIT: u32 = 100_000;

impl SimNet {
    /// An empty network whose every random choice follows `seed`.
    #[allow(clippy::disallowed_methods)]
    pub fn new(seed: u64, link: Link) -> SimNet {
        // The one real clock read: an epoch for virtual time.
        let epoch = Instant::now();
        let stream =
            |n: u64| ChaCha12Rng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        SimNet {
            seed,
            epoch,
            now: epoch,
            link,
            rtt: None,
            net_rng: stream(1),
            node_rng: stream(2),
            user_rng: stream(3),
            nodes: Vec::new(),
            reach: Reach::default(),
            queue: BinaryHeap::new(),
            parked: Vec::new(),
            free: Vec::new(),
            next_seq: 0,
            deadlines: BinaryHeap::new(),
            finished: HashMap::new(),
            recent: Vec::new(),
            trace: TraceHash::default(),
            stats: NetStats::default(),
            check_invariants: true,
            query_cap: Duration::from_secs(3600),
            spin: (epoch, usize::MAX, 0),
            interceptors: BTreeMap::new(),
            threads: 1,
            pool: None,
            floor: epoch,
            scratch: window::Scratch::default(),
            join_progress: None,
            drained: Vec::new(),
        }
    }

    /// A network of `n` nodes sharing `config`, not yet connected.
    pub fn with_nodes(seed: u64, link: Link, n: usize, config: &Config) -> SimNet {
        let mut net = SimNet::new(seed, link);
        // Exactly n slots: a doubled Vec of 100,000 nodes would carry 50 MB of spare room.
        net.nodes.reserve_exact(n);
        // One config for all: each node holds a pointer to it, not a copy.
        let config = Arc::new(config.clone());
        for _ in 0..n {
            net.add_node(Arc::clone(&config));
        }
        net
    }

    /// The address of node `i`: `10.a.b.c`, a port that varies a little. Consecutive nodes
    /// are in different /24s (`a` counts fastest), as strangers on the internet are, so
    /// that per-subnet limits see a realistic network. Virtual: no socket is ever opened.
    pub fn addr_of(i: usize) -> SocketAddr {
        let n = u32::try_from(i + 1).expect("too many nodes");
        assert!(n < 1 << 24, "too many nodes");
        let [_, c, b, a] = n.to_be_bytes();
        let ip = Ipv4Addr::new(10, a, b, c.wrapping_add(1));
        SocketAddr::from((ip, 4000 + (i % 61) as u16))
    }

    /// Adds a node with a random id; returns its index.
    pub fn add_node(&mut self, config: impl Into<Arc<Config>>) -> usize {
        let mut id = [0u8; 20];
        self.node_rng.fill_bytes(&mut id);
        self.add_node_with_id(config, NodeId(id))
    }

    /// Adds a node with the given id; returns its index.
    pub fn add_node_with_id(&mut self, config: impl Into<Arc<Config>>, id: NodeId) -> usize {
        let i = self.nodes.len();
        let mut seed = [0u8; 32];
        self.node_rng.fill_bytes(&mut seed);
        let addr = Self::addr_of(i);
        let mut node = Node::new(config, id, seed, self.now);
        node.set_local_addr(addr);
        self.nodes.push(Slot {
            node,
            addr,
            removed: false,
            last_seq: 0,
            deadline: None,
        });
        self.reach.add(i);
        self.after_touch(i);
        i
    }

    // ---- inspection ----

    /// The seed this network was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the network was built.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.epoch)
    }

    /// Number of nodes, dead or alive.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the network has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`, to inspect. Use [`SimNet::with_node`] to act on it.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i].node
    }

    /// Every node, in index order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().map(|s| &s.node)
    }

    /// The address of node `i`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].addr
    }

    /// The node at `addr`, if any: [`SimNet::addr_of`] undone, with no map to look in
    /// (a hashed map of a million addresses missed the cache twice a datagram).
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        let SocketAddr::V4(v4) = addr else {
            return None;
        };
        let [ten, a, b, c] = v4.ip().octets();
        if ten != 10 {
            return None;
        }
        let n = u32::from_be_bytes([0, c.wrapping_sub(1), b, a]);
        let i = usize::try_from(n.checked_sub(1)?).ok()?;
        (i < self.nodes.len() && addr.port() == 4000 + (i % 61) as u16).then_some(i)
    }

    /// Is node `i` dead?
    pub fn is_dead(&self, i: usize) -> bool {
        self.reach.dead(i)
    }

    /// Indices of the live nodes.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.reach.dead(i))
            .collect()
    }

    /// Live nodes that hold an unexpired value for `key` in their own store.
    pub fn holders(&self, key: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                !self.reach.dead(i) && self.nodes[i].node.get_local(self.now, key).is_some()
            })
            .collect()
    }

    /// Routing-table entries of live nodes that point at dead nodes, and all entries of
    /// live nodes: (dead, total).
    pub fn dead_table_entries(&self) -> (usize, usize) {
        let mut dead = 0;
        let mut total = 0;
        let live = (0..self.nodes.len()).filter(|&i| !self.reach.dead(i));
        for s in live.map(|i| &self.nodes[i]) {
            for p in s.node.peers() {
                total += 1;
                if self.index_of(p.addr).is_some_and(|j| self.reach.dead(j)) {
                    dead += 1;
                }
            }
        }
        (dead, total)
    }

    /// What the network did with datagrams so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// The hash of every datagram delivered so far, in order, with its time, source and
    /// destination. Two runs with the same seed and script have the same trace hash.
    pub fn trace_hash(&self) -> u64 {
        self.trace.value()
    }

    /// Datagrams in flight: (delivery time, source, destination, payload), earliest first.
    pub fn in_flight(&self) -> impl Iterator<Item = (Instant, SocketAddr, SocketAddr, &[u8])> {
        let mut keys: Vec<u128> = self.queue.iter().map(|k| k.0).collect();
        keys.sort_unstable();
        keys.into_iter().filter_map(|key| {
            let (t, slot) = self.unkey(key);
            let d = self.parked[slot].as_ref()?;
            Some((t, d.src, d.dst, d.payload.as_slice()))
        })
    }

    // ---- settings ----

    /// The link every datagram goes through.
    pub fn link(&self) -> Link {
        self.link
    }

    /// Changes the link for datagrams sent from now on.
    pub fn set_link(&mut self, link: Link) {
        self.link = link;
    }

    /// Gives every pair of addresses its own round trip from `model` (half of it each way,
    /// plus the link's jitter), in place of the link's fixed latency; `None` goes back to
    /// the link's latency. Applies to datagrams sent from now on.
    pub fn set_rtt_model(&mut self, model: Option<RttModel>) {
        self.rtt = model;
    }

    /// The per-pair round-trip model, if set.
    pub fn rtt_model(&self) -> Option<RttModel> {
        self.rtt
    }

    /// Turns the per-step invariant check on or off (on by default).
    pub fn set_check_invariants(&mut self, on: bool) {
        self.check_invariants = on;
    }

    /// Shares the work of [`SimNet::join`] among `n` threads (1 by default). Outcomes,
    /// trace hash included, are the same whatever `n` is.
    pub fn set_threads(&mut self, n: usize) {
        self.threads = n.max(1);
        self.pool = (self.threads > 1).then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.threads)
                // The main thread's 8 MiB, not rayon's 2: the whole run of a join, node
                // handlers included, happens on these threads.
                .stack_size(8 << 20)
                .build()
                .expect("a thread pool")
        });
    }

    /// The longest virtual time a query may run in [`SimNet::wait`] and friends before the
    /// simulation declares it hung (default one hour).
    pub fn set_query_cap(&mut self, cap: Duration) {
        self.query_cap = cap;
    }

    /// Kills (`true`) or revives (`false`) node `i`. A dead node is frozen: it gets no
    /// datagram and no timer, and datagrams to and from it are dropped, including those
    /// already in flight. A revived node resumes where it stopped (its overdue timers fire
    /// at once).
    pub fn set_dead(&mut self, i: usize, dead: bool) {
        assert!(
            dead || !self.nodes[i].removed,
            "node {i} was removed: it cannot come back"
        );
        self.reach.set_dead(i, dead);
        self.refresh_deadline(i);
    }

    /// Takes node `i` out for good, as a node that leaves and never returns: it is dead
    /// from now on, and its state (table, store, queries) is dropped, so that long churn
    /// runs do not keep every departed node in memory. A blank node with the same id and
    /// address stays in its place: indices never shift and addresses are never reused.
    pub fn remove(&mut self, i: usize) {
        let id = self.nodes[i].node.id();
        let mut blank = Node::new(Config::default(), id, [0; 32], self.now);
        blank.set_local_addr(self.nodes[i].addr);
        self.nodes[i].node = blank;
        self.nodes[i].removed = true;
        self.set_dead(i, true);
    }

    /// Was node `i` taken out with [`SimNet::remove`]?
    pub fn is_removed(&self, i: usize) -> bool {
        self.nodes[i].removed
    }

    /// Splits the network: the nodes of `groups[g]` can reach only each other; nodes in no
    /// group form one more group. Replaces any earlier partition.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.heal();
        self.reach.groups = vec![0; self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                self.reach.groups[i] = g as u32 + 1;
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.reach.groups = Vec::new();
    }

    // ---- scenario randomness ----

    /// A random index below `n`, from the scenario's own random stream.
    pub fn pick(&mut self, n: usize) -> usize {
        assert!(n > 0, "pick from nothing");
        (self.user_rng.next_u64() % n as u64) as usize
    }

    /// True with probability `p`, from the scenario's own random stream.
    pub fn chance(&mut self, p: f64) -> bool {
        unit(&mut self.user_rng) < p
    }

    /// Fills `buf` from the scenario's own random stream.
    pub fn random_bytes(&mut self, buf: &mut [u8]) {
        self.user_rng.fill_bytes(buf);
    }

    // ---- acting on nodes ----

    /// Runs `f` on node `i` at the current time, then collects what it sent and reported.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i].node, now);
        self.after_touch(i);
        r
    }

    /// Gives node `i` a command (`|node, now| node.get(now, key).unwrap()`); returns its id.
    pub fn start(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> QueryId) -> QueryId {
        assert!(
            !self.reach.dead(i),
            "node {i} is dead: it cannot run a command"
        );
        self.with_node(i, f)
    }

    /// Puts a datagram on the wire by hand: from `src` (any address, even one where no
    /// node lives) to `dst`, delivered after `delay`. It is subject to partitions and dead
    /// nodes but not to the link's loss or duplication.
    pub fn inject(&mut self, delay: Duration, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
        self.stats.sent += 1;
        let at = self.now.checked_add(delay).expect("delay overflows");
        self.enqueue(at, Datagram { src, dst, payload });
    }

    /// Puts a scripted participant (an attacker, a liar) at `ip`: every datagram to any
    /// port of `ip` is shown to `f` before delivery, and `f` either passes it on to the node
    /// there (if any) or takes it and answers with datagrams of its own. With a node at the
    /// address, `f` sees only what that node would have received (dead nodes and partitions
    /// still drop datagrams); with none, it sees everything sent there. `f` must be
    /// deterministic for runs to replay. Replaces any earlier interceptor of `ip`.
    pub fn intercept(
        &mut self,
        ip: IpAddr,
        f: impl FnMut(Instant, SocketAddr, SocketAddr, &[u8]) -> Intercept + Send + 'static,
    ) {
        self.interceptors.insert(ip, Box::new(f));
    }

    /// Removes the interceptor of `ip`, if any.
    pub fn stop_intercept(&mut self, ip: IpAddr) {
        self.interceptors.remove(&ip);
    }

    // ---- running ----

    /// When the next step would happen: the earliest delivery or node deadline.
    pub fn next_time(&self) -> Option<Instant> {
        let d = self.queue.peek().map(|k| self.unkey(k.0).0);
        let t = self.next_deadline().map(|(t, _)| t);
        match (d, t) {
            (Some(d), Some(t)) => Some(d.min(t)),
            (d, t) => d.or(t),
        }
    }

    /// Moves the clock to the earliest pending delivery or node deadline and handles it
    /// (deliveries first on a tie). Returns false when nothing at all is pending.
    pub fn step(&mut self) -> bool {
        let next_dgram = self.queue.peek().map(|k| self.unkey(k.0).0);
        let next_timer = self.next_deadline();
        match (next_dgram, next_timer) {
            (None, None) => false,
            (Some(d), t) if t.is_none_or(|(t, _)| d <= t) => {
                self.deliver();
                true
            }
            (_, Some((t, i))) => {
                self.fire(t, i);
                true
            }
            (Some(_), None) => unreachable!("covered above"),
        }
    }

    /// Steps while the next step is due at or before `t`, then sets the clock to `t`.
    pub fn run_until_time(&mut self, t: Instant) {
        while self.next_time().is_some_and(|n| n <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now.checked_add(d).expect("duration overflows");
        self.run_until_time(t);
    }

    /// Steps until `done(self)` holds or `limit` of virtual time passes. Returns whether
    /// `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&SimNet) -> bool) -> bool {
        let end = self.now.checked_add(limit).expect("limit overflows");
        loop {
            if done(self) {
                return true;
            }
            if self.next_time().is_none_or(|n| n > end) {
                self.now = self.now.max(end);
                return done(self);
            }
            self.step();
        }
    }

    /// Removes and returns the outcome of query `id` of node `i`, if it has finished.
    pub fn take_finished(&mut self, i: usize, id: QueryId) -> Option<Finished> {
        self.finished.remove(&(i, id))
    }

    /// Runs the network until query `id` of node `i` finishes; panics (with the seed) if it
    /// runs longer than the query cap.
    pub fn wait(&mut self, i: usize, id: QueryId) -> Finished {
        let started = self.now;
        loop {
            if let Some(f) = self.finished.remove(&(i, id)) {
                self.recent.clear();
                return f;
            }
            if self.now.saturating_duration_since(started) > self.query_cap {
                self.fail(&format!(
                    "query {id} of node {i} still running after {:?}",
                    self.query_cap
                ));
            }
            if !self.step() {
                self.fail(&format!("query {id} of node {i}: nothing left to run"));
            }
        }
    }

    /// Gives node `i` a command and waits for its outcome.
    pub fn run_query(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Node, Instant) -> QueryId,
    ) -> (QueryResult, QueryStats) {
        let id = self.start(i, f);
        let f = self.wait(i, id);
        (f.result, f.stats)
    }

    /// Runs commands with at most `window` of them in flight at once, starting each as an
    /// earlier one finishes; returns their outcomes in the order of `jobs`.
    pub fn run_batch<F>(&mut self, jobs: Vec<(usize, F)>, window: usize) -> Vec<Finished>
    where
        F: FnOnce(&mut Node, Instant) -> QueryId,
    {
        let total = jobs.len();
        let mut out: Vec<Option<Finished>> = (0..total).map(|_| None).collect();
        let mut waiting: HashMap<(usize, QueryId), usize> = HashMap::new();
        let mut started: BTreeSet<(Instant, usize)> = BTreeSet::new();
        let mut start_of: Vec<Instant> = vec![self.now; total];
        let mut jobs = jobs.into_iter().enumerate();
        let mut done = 0;
        let window = window.max(1);
        self.recent.clear();
        loop {
            while waiting.len() < window {
                let Some((j, (i, f))) = jobs.next() else {
                    break;
                };
                let id = self.start(i, f);
                waiting.insert((i, id), j);
                started.insert((self.now, j));
                start_of[j] = self.now;
            }
            // Collect what finished (a command may finish inside `start`).
            for key in std::mem::take(&mut self.recent) {
                if let Some(j) = waiting.remove(&key) {
                    out[j] = self.finished.remove(&key);
                    started.remove(&(start_of[j], j));
                    done += 1;
                }
            }
            if done == total {
                break;
            }
            if waiting.len() < window && jobs.len() > 0 {
                continue;
            }
            if let Some(&(t0, j)) = started.first() {
                if self.now.saturating_duration_since(t0) > self.query_cap {
                    let (i, id) = waiting
                        .iter()
                        .find(|(_, &jj)| jj == j)
                        .map(|(k, _)| *k)
                        .unwrap_or((usize::MAX, QueryId(0)));
                    self.fail(&format!(
                        "query {id} of node {i} still running after {:?}",
                        self.query_cap
                    ));
                }
            }
            if !self.step() {
                self.fail("batch: nothing left to run");
            }
        }
        out.into_iter()
            .map(|f| f.expect("every job finished"))
            .collect()
    }

    /// Calls `f` after each batch of [`SimNet::join`] (and so of
    /// [`SimNet::bootstrap_all`]) with the joiners done so far, the joiners in all and the
    /// virtual time since the join began: for a progress line on long runs. `None` removes it.
    pub fn on_join_progress(&mut self, f: Option<JoinProgressFn>) {
        self.join_progress = f;
    }

    /// Joins every live node to the network through the protocol: node 0 (or the first
    /// live node) is the first member; the others bootstrap, in batches of at most
    /// `max_batch` at a time, to one random node that has already joined. A failed
    /// bootstrap is retried with another contact, up to 4 more times.
    pub fn bootstrap_all(&mut self, max_batch: usize) -> BootstrapReport {
        let live = self.live();
        let Some((&first, rest)) = live.split_first() else {
            return BootstrapReport::default();
        };
        let mut report = self.join(rest, vec![first], max_batch);
        // The first member joins by definition.
        report.joined += 1;
        report
    }

    /// Joins `joiners` to the network through the protocol: each bootstraps to one random
    /// node of `members` or of the joiners that joined before it, in batches of at most
    /// `max_batch` (and at most as many as there are such contacts) at a time. A failed
    /// bootstrap is retried with another contact, up to 4 more times. `joined` in the
    /// report counts the joiners that made it. Each batch runs a window of virtual time at
    /// a time (`window.rs`), on [`SimNet::set_threads`] threads.
    pub fn join(
        &mut self,
        joiners: &[usize],
        members: Vec<usize>,
        max_batch: usize,
    ) -> BootstrapReport {
        let t0 = self.now;
        let mut report = BootstrapReport::default();
        let mut joined = members;
        let members = joined.len();
        if joined.is_empty() {
            report.failed = joiners.len();
            report.stragglers = joiners.to_vec();
            return report;
        }
        let mut todo: Vec<usize> = joiners.to_vec();
        todo.reverse();
        while !todo.is_empty() {
            let size = joined.len().min(max_batch.max(1)).min(todo.len());
            let mut batch: Vec<usize> = (0..size).filter_map(|_| todo.pop()).collect();
            for attempt in 0..5 {
                if batch.is_empty() {
                    break;
                }
                let jobs: Vec<_> = batch
                    .iter()
                    .map(|&i| {
                        let contact = joined[self.pick(joined.len())];
                        let contact = self.addr(contact);
                        (i, move |n: &mut Node, now| n.bootstrap(now, &[contact]))
                    })
                    .collect();
                report.attempts += jobs.len();
                let ids: Vec<(usize, QueryId)> = jobs
                    .into_iter()
                    .map(|(i, f)| (i, self.start(i, f)))
                    .collect();
                let results = self.run_windows(&ids);
                let mut retry = Vec::new();
                for (f, &i) in results.iter().zip(&batch) {
                    report.requests += u64::from(f.stats.requests);
                    report.timeouts += u64::from(f.stats.timeouts);
                    match f.result {
                        QueryResult::Bootstrap(Ok(_)) => joined.push(i),
                        _ if attempt < 4 => retry.push(i),
                        _ => {
                            report.failed += 1;
                            report.stragglers.push(i);
                        }
                    }
                }
                batch = retry;
            }
            if let Some(f) = self.join_progress.as_mut() {
                let done = joiners.len() - todo.len();
                f(done, joiners.len(), self.now.saturating_duration_since(t0));
            }
        }
        report.joined = joined.len() - members;
        report.duration = self.now.saturating_duration_since(t0);
        report
    }

    // ---- internals ----

    fn deliver(&mut self) {
        let Some((key, d)) = self.pop_datagram() else {
            return;
        };
        let (at, _) = self.unkey(key);
        self.now = self.now.max(at);
        let Some(dst) = self.admit(&d) else {
            return;
        };
        if self.intercepted(&d) {
            return;
        }
        let Some(dst) = dst else {
            self.stats.undeliverable += 1;
            return;
        };
        self.stats.delivered += 1;
        let seq = queue_seq(key);
        if seq < self.nodes[dst].last_seq {
            self.stats.reordered += 1;
        } else {
            self.nodes[dst].last_seq = seq;
        }
        let since = self.now.saturating_duration_since(self.epoch);
        self.trace.datagram(since, d.src, d.dst, &d.payload);
        let now = self.now;
        self.nodes[dst].node.handle_datagram(now, d.src, &d.payload);
        self.spin.2 = 0;
        self.after_touch(dst);
    }

    /// Takes the earliest datagram off the queue, with its queue key (a step).
    fn pop_datagram(&mut self) -> Option<(u128, Datagram)> {
        let Reverse(key) = self.queue.pop()?;
        Some((key, self.unpark(key)))
    }

    /// The datagram of a queue key taken off the queue, its slot freed (a step).
    fn unpark(&mut self, key: u128) -> Datagram {
        let slot = (key as u32 & SLOT_MASK) as usize;
        let d = self.parked[slot]
            .take()
            .expect("a queued datagram is parked");
        self.free.push(slot as u32);
        self.stats.steps += 1;
        d
    }

    /// Where a datagram leaving the queue goes: `Some(Some(node))`; `Some(None)` when no
    /// node is at its address but an interceptor is at its IP; `None` when it is lost
    /// (nobody there, a dead end, a partition), counted as such.
    fn admit(&mut self, d: &Datagram) -> Option<Option<usize>> {
        let dst = self.index_of(d.dst);
        if dst.is_none() && !self.interceptors.contains_key(&d.dst.ip()) {
            self.stats.undeliverable += 1;
            return None;
        }
        if dst.is_some_and(|j| self.reach.dead(j)) {
            self.stats.dropped_dead += 1;
            return None;
        }
        if let Some(src) = self.index_of(d.src) {
            if self.reach.dead(src) {
                self.stats.dropped_dead += 1;
                return None;
            }
            if dst.is_some_and(|j| !self.reach.together(src, j)) {
                self.stats.dropped_partition += 1;
                return None;
            }
        }
        Some(dst)
    }

    /// Shows `d` to the interceptor of its destination IP; true if that took it.
    fn intercepted(&mut self, d: &Datagram) -> bool {
        let now = self.now;
        let Some(f) = self.interceptors.get_mut(&d.dst.ip()) else {
            return false;
        };
        let Intercept::Answer(out) = f(now, d.src, d.dst, &d.payload) else {
            return false;
        };
        self.stats.intercepted += 1;
        let since = now.saturating_duration_since(self.epoch);
        self.trace.datagram(since, d.src, d.dst, &d.payload);
        for (src, dst, payload) in out {
            self.send(src, dst, payload);
        }
        true
    }

    fn fire(&mut self, t: Instant, i: usize) {
        self.take_deadline();
        self.stats.steps += 1;
        self.stats.timer_fires += 1;
        self.now = self.now.max(t);
        if self.spin.0 == self.now && self.spin.1 == i {
            self.spin.2 += 1;
            if self.spin.2 > SPIN_LIMIT {
                self.fail(&format!(
                    "node {i} asks for handle_timeout at the same instant forever"
                ));
            }
        } else {
            self.spin = (self.now, i, 1);
        }
        let now = self.now;
        self.nodes[i].node.handle_timeout(now);
        self.after_touch(i);
    }

    /// Collects what node `i` sent and reported, checks it, and re-files its deadline.
    fn after_touch(&mut self, i: usize) {
        let mut out = std::mem::take(&mut self.drained);
        let checked = drain(&mut self.nodes[i].node, i, self.check_invariants, |o| {
            out.push(o);
        });
        let src = self.nodes[i].addr;
        for o in out.drain(..) {
            match o {
                Drained::Sent(dst, payload) => self.send(src, dst, payload),
                Drained::Finished(f) => {
                    let key = (i, f.id);
                    self.finished.insert(key, *f);
                    self.recent.push(key);
                }
            }
        }
        self.drained = out;
        if let Err(e) = checked {
            self.fail(&e);
        }
        self.refresh_deadline(i);
    }

    fn refresh_deadline(&mut self, i: usize) {
        let new = self.nodes[i].node.poll_timeout();
        self.set_deadline(i, new);
    }

    /// Files `new`, node `i`'s [`Node::poll_timeout`] just after its latest event, as its
    /// deadline (none if it is dead).
    fn set_deadline(&mut self, i: usize, new: Option<Instant>) {
        let new = new.filter(|_| !self.reach.dead(i));
        let slot = &mut self.nodes[i];
        if new == slot.deadline {
            return;
        }
        slot.deadline = new;
        if let Some(t) = new {
            let key = (nanos_since(self.epoch, t), i as u32);
            self.deadlines.push(Reverse(key));
        }
        if self.deadlines.len() > 2 * self.nodes.len() + 4096 {
            let epoch = self.epoch;
            let live = self.nodes.iter().enumerate().filter_map(|(i, s)| {
                s.deadline
                    .map(|t| Reverse((nanos_since(epoch, t), i as u32)))
            });
            self.deadlines = live.collect::<Vec<_>>().into();
        }
        // Only node i's entries can have gone stale: the top needs a look only if it is
        // one of them (no other node's slot is read, which at a million nodes is a miss).
        if self.deadlines.peek().is_some_and(|k| k.0 .1 as usize == i) {
            self.clean_deadlines();
        }
    }

    /// The earliest node deadline: (time, node). The top is live, so its time is its
    /// node's deadline, worked out from the key without reading the node's slot.
    fn next_deadline(&self) -> Option<(Instant, usize)> {
        let &Reverse((ns, i)) = self.deadlines.peek()?;
        let i = i as usize;
        let t = match self.epoch.checked_add(Duration::from_nanos(ns)) {
            Some(t) if ns < u64::MAX => t,
            _ => self.nodes[i].deadline.expect("the top deadline is live"),
        };
        Some((t, i))
    }

    /// Removes the earliest node deadline (about to fire): its node has none until it is
    /// asked again.
    fn take_deadline(&mut self) {
        if let Some(Reverse((_, i))) = self.deadlines.pop() {
            self.nodes[i as usize].deadline = None;
        }
        self.clean_deadlines();
    }

    /// Drops stale entries from the top of `deadlines`, reading the slot of each node on
    /// top. (`refresh_deadline` rebuilds the heap from the nodes when it holds more than
    /// twice as many entries as there are nodes, plus 4096.)
    fn clean_deadlines(&mut self) {
        while let Some(&Reverse((t, i))) = self.deadlines.peek() {
            let live = self.nodes[i as usize]
                .deadline
                .is_some_and(|d| nanos_since(self.epoch, d) == t);
            if live {
                break;
            }
            self.deadlines.pop();
        }
    }

    fn send(&mut self, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
        self.stats.sent += 1;
        let link = self.link;
        if link.loss > 0.0 && unit(&mut self.net_rng) < link.loss {
            self.stats.lost += 1;
            return;
        }
        if link.duplicate > 0.0 && unit(&mut self.net_rng) < link.duplicate {
            self.stats.duplicated += 1;
            let at = self.delivery_time(src, dst);
            self.enqueue(
                at,
                Datagram {
                    src,
                    dst,
                    payload: payload.clone(),
                },
            );
        }
        let at = self.delivery_time(src, dst);
        self.enqueue(at, Datagram { src, dst, payload });
    }

    fn delivery_time(&mut self, src: SocketAddr, dst: SocketAddr) -> Instant {
        let jitter = if self.link.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.link.jitter.mul_f64(unit(&mut self.net_rng))
        };
        let latency = match &self.rtt {
            Some(m) => m.rtt(self.seed, src, dst) / 2,
            None => self.link.latency,
        };
        self.now + latency + jitter
    }

    fn enqueue(&mut self, at: Instant, d: Datagram) {
        assert!(
            at >= self.floor,
            "a datagram due inside the window that sent it"
        );
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.parked[slot as usize] = Some(d);
                slot
            }
            None => {
                self.parked.push(Some(d));
                u32::try_from(self.parked.len() - 1).expect("too many datagrams in flight")
            }
        };
        let since = at.saturating_duration_since(self.epoch);
        self.queue.push(Reverse(queue_key(since, seq, slot)));
    }

    /// The delivery time and the slot in `parked` of a [`queue_key`].
    fn unkey(&self, key: u128) -> (Instant, usize) {
        let at = self.epoch + Duration::from_nanos((key >> 64) as u64);
        (at, (key as u32 & SLOT_MASK) as usize)
    }

    /// Panics with the seed and the time.
    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what} (at t={:?}, seed {seed}; replay with KAD_SIM_SEED={seed})",
            self.elapsed(),
            seed = self.seed
        );
    }
}

impl Drop for SimNet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kad simulation failed: seed {seed}; replay with KAD_SIM_SEED={seed}",
                seed = self.seed
            );
        }
    }
}

/// What a node hands out after an event, as [`drain`] reports it.
pub(super) enum Drained {
    /// A datagram it sent.
    Sent(SocketAddr, Vec<u8>),
    /// One of its commands finished (boxed: it is large, and the window's merge sorts these).
    Finished(Box<Finished>),
}

/// Takes from node `i` everything it sent and every command that finished, in that order,
/// into `out` (other events are dropped), then checks its invariants if `check` says so;
/// `Err` names the broken one.
pub(super) fn drain(
    node: &mut Node,
    i: usize,
    check: bool,
    mut out: impl FnMut(Drained),
) -> Result<(), String> {
    while let Some(t) = node.poll_transmit() {
        out(Drained::Sent(t.dst, t.payload));
    }
    while let Some(e) = node.poll_event() {
        if let Event::QueryFinished { id, result, stats } = e {
            out(Drained::Finished(Box::new(Finished {
                node: i,
                id,
                result,
                stats,
            })));
        }
    }
    if check {
        node.check_invariants()
            .map_err(|e| format!("node {i}: invariant broken: {e}"))?;
    }
    Ok(())
}

/// Bits of a [`queue_key`] that hold the slot in `SimNet::parked`: 16 million datagrams
/// in flight at once.
const SLOT_BITS: u32 = 24;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// A datagram in flight as one number that orders as (delivery time, sequence number):
/// nanoseconds of virtual time in the top 64 bits (584 years), the send sequence number
/// in the next 40 (a million million datagrams), the slot in the low 24.
fn queue_key(since: Duration, seq: u64, slot: u32) -> u128 {
    let nanos = u64::try_from(since.as_nanos()).expect("virtual time beyond 584 years");
    assert!(seq < 1 << 40, "more than 2^40 datagrams sent");
    assert!(slot <= SLOT_MASK, "more than 2^24 datagrams in flight");
    (u128::from(nanos) << 64) | (u128::from(seq) << SLOT_BITS) | u128::from(slot)
}

/// The send sequence number of a [`queue_key`].
fn queue_seq(key: u128) -> u64 {
    (key as u64) >> SLOT_BITS
}

/// `t` as nanoseconds since `epoch` (0 before it; saturating 584 years after it).
fn nanos_since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// A uniform float in `[0, 1)`.
fn unit(rng: &mut ChaCha12Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
