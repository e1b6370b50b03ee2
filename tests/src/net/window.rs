//! Windowed stepping: every event of a stretch of virtual time at once, node by node, on
//! as many threads as [`SimNet::set_threads`] allows, with the same outcome on any number.
//!
//! No datagram arrives sooner than the network's shortest one-way delay `L` after it is
//! sent ([`SimNet::min_delay`]). So from the earliest pending event at `T`, nothing that
//! happens in `[T, T + L)` can reach another node before `T + L`: within that window each
//! node's deliveries are already queued, and each node can run through them and its own
//! timers alone, its state touched by no one else. The nodes of a window are the work
//! items, shared among threads; what they send, deliver and finish is then merged in one
//! order that depends on the events alone, (time, node, the node's own order), never on
//! which thread ran what. Sequence numbers, the link's random draws and the trace hash
//! follow that merged order.
//!
//! The order differs from [`SimNet::step`]'s (one event at a time, the globally earliest
//! first) only in ties it breaks differently and in where a run may stop: a windowed run
//! ends at a window's end, never in its middle. (And a datagram dropped on the way, to or
//! from a dead node or across a partition, does not move the clock, as it does in `step`.) It is used where the whole network runs
//! until a set of commands finishes: the joins of [`SimNet::join`].

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use kad_core::QueryId;
use rayon::prelude::*;

use super::{Datagram, Drained, Finished, SimNet, Slot, SPIN_LIMIT};

/// What one node's events in a window produced, in the node's own order.
pub(super) enum Out {
    /// It was given a datagram, whose [`crate::TraceHash::datagram_word`] this is (fed to
    /// the trace at the merge).
    Delivered(u64),
    /// It sent a datagram or finished a command.
    Node(Drained),
}

/// A window's buffers, kept from one window to the next.
#[derive(Default)]
pub(super) struct Scratch {
    /// The queue keys of the datagrams due in the window.
    due: Vec<u128>,
    /// The window's datagrams, in delivery order, with their queue keys.
    inbox: Vec<(u128, Datagram)>,
    /// (node << 32 | index into `inbox`), sorted: each node's datagrams together, each
    /// node's in delivery order.
    by_node: Vec<u64>,
    /// (node, deadline) of the timers due in the window.
    timers: Vec<(usize, Instant)>,
    /// Merge keys: (time << 64 | job << 32 | output).
    keys: Vec<u128>,
    /// Output and key buffers for the jobs, empty.
    outs: Vec<(Outputs, Vec<u128>)>,
}

impl Scratch {
    fn clear(&mut self) {
        self.due.clear();
        self.inbox.clear();
        self.by_node.clear();
        self.timers.clear();
        self.keys.clear();
    }
}

/// What a job produced, in the order it happened (`None` once merged).
type Outputs = Vec<Option<Out>>;

/// What a job leaves for the merge.
struct Done {
    i: usize,
    addr: std::net::SocketAddr,
    last: Instant,
    deadline: Option<Instant>,
    out: Outputs,
    /// The job's key buffer, empty, to be kept for the next window.
    keys: Vec<u128>,
}

/// One node's share of a window.
struct Job<'a> {
    i: usize,
    /// Its position among the window's jobs (in node order).
    x: usize,
    /// Merge keys of its outputs, in order: (nanoseconds since the epoch << 64 | `x` << 32
    /// | index in `out`).
    keys: Vec<u128>,
    slot: &'a mut Slot,
    /// Its deliveries, a range of the window's `by_node` (in delivery order).
    inbox: Range<usize>,
    /// Its timer, if due in the window.
    timer: Option<Instant>,
    /// What it produced, in order (`None` once merged).
    out: Outputs,
    /// Its latest event's time.
    last: Instant,
    /// Its [`kad_core::Node::poll_timeout`] after that event (worked out here, on the
    /// job's thread, where the node's memory is at hand).
    deadline: Option<Instant>,
    delivered: u64,
    reordered: u64,
    timer_fires: u64,
}

/// What every job of a window reads.
struct Shared<'a> {
    inbox: &'a [(u128, Datagram)],
    /// (node << 32 | index into `inbox`): see [`Scratch::by_node`].
    by_node: &'a [u64],
    start: Instant,
    end: Instant,
    epoch: Instant,
    check: bool,
    seed: u64,
}

impl Job<'_> {
    fn push(&mut self, ns: u64, o: Out) {
        record(&mut self.keys, &mut self.out, ns, self.x, o);
    }

    /// Runs the node through its deliveries and its due timers, earliest first
    /// (deliveries first on a tie), as [`SimNet::step`] would.
    fn run(&mut self, w: &Shared<'_>) {
        let mut now = w.start;
        let mut next = self.inbox.start;
        let mut spin = (now, 0u32);
        loop {
            let k = |next: usize| w.by_node[next] as u32 as usize;
            let d = (next < self.inbox.end).then(|| at(w.epoch, w.inbox[k(next)].0));
            match (d, self.timer) {
                (None, None) => break,
                (Some(d), t) if t.is_none_or(|t| d <= t) => {
                    let k = k(next);
                    let (key, dgram) = &w.inbox[k];
                    now = now.max(d);
                    spin.1 = 0;
                    self.delivered += 1;
                    let seq = super::queue_seq(*key);
                    if seq < self.slot.last_seq {
                        self.reordered += 1;
                    } else {
                        self.slot.last_seq = seq;
                    }
                    let digest = crate::TraceHash::digest(&dgram.payload);
                    let ns = super::nanos_since(w.epoch, now);
                    let since = Duration::from_nanos(ns);
                    let len = dgram.payload.len();
                    let word =
                        crate::TraceHash::datagram_word(since, dgram.src, dgram.dst, len, digest);
                    self.push(ns, Out::Delivered(word));
                    self.slot
                        .node
                        .handle_datagram(now, dgram.src, &dgram.payload);
                    next += 1;
                }
                (_, Some(t)) => {
                    now = now.max(t);
                    self.timer_fires += 1;
                    spin = if spin.0 == now {
                        (now, spin.1 + 1)
                    } else {
                        (now, 1)
                    };
                    if spin.1 > SPIN_LIMIT {
                        panic!(
                            "node {} asks for handle_timeout at the same instant forever \
                             (seed {seed}; replay with KAD_SIM_SEED={seed})",
                            self.i,
                            seed = w.seed
                        );
                    }
                    self.slot.node.handle_timeout(now);
                }
                (Some(_), None) => unreachable!("covered above"),
            }
            let node = &mut self.slot.node;
            let ns = super::nanos_since(w.epoch, now);
            let (out, keys, x) = (&mut self.out, &mut self.keys, self.x);
            let checked = super::drain(node, self.i, w.check, |o| {
                record(keys, out, ns, x, Out::Node(o));
            });
            if let Err(e) = checked {
                panic!(
                    "{e} (seed {seed}; replay with KAD_SIM_SEED={seed})",
                    seed = w.seed
                );
            }
            self.deadline = node.poll_timeout();
            self.timer = self.deadline.filter(|&t| t < w.end);
        }
        self.last = now;
    }
}

/// Adds output `o` of job `x`, made at `ns`, with its merge key: (time, job, output),
/// each job's outputs in the order it made them.
fn record(keys: &mut Vec<u128>, out: &mut Outputs, ns: u64, x: usize, o: Out) {
    keys.push(u128::from(ns) << 64 | (x as u128) << 32 | out.len() as u128);
    out.push(Some(o));
}

/// The delivery time of a queue key.
fn at(epoch: Instant, key: u128) -> Instant {
    epoch + Duration::from_nanos((key >> 64) as u64)
}

impl SimNet {
    /// The shortest delay a datagram sent now can have: the link's latency, or half the
    /// shortest round trip of the per-pair model (jitter only adds).
    pub(super) fn min_delay(&self) -> Duration {
        match &self.rtt {
            // A microsecond under the bound: the model's float arithmetic must not land
            // a hair below it.
            Some(m) => (m.min_rtt() / 2).saturating_sub(Duration::from_micros(1)),
            None => self.link.latency,
        }
    }

    /// Runs the network until every command in `waiting` has finished, a window at a
    /// time (one event at a time where a window cannot be used: no minimum delay, or
    /// interceptors, which see datagrams in global order). Returns the outcomes by
    /// position in `waiting`.
    pub(super) fn run_windows(&mut self, waiting: &[(usize, QueryId)]) -> Vec<Finished> {
        let pool = self.pool.take();
        let out = match &pool {
            Some(pool) => pool.install(|| self.run_windows_here(waiting)),
            None => self.run_windows_here(waiting),
        };
        self.pool = pool;
        out
    }

    fn run_windows_here(&mut self, waiting: &[(usize, QueryId)]) -> Vec<Finished> {
        let started = self.now;
        let mut out: Vec<Option<Finished>> = (0..waiting.len()).map(|_| None).collect();
        let mut left = waiting.len();
        let position: HashMap<(usize, QueryId), usize> = waiting
            .iter()
            .enumerate()
            .map(|(j, &key)| (key, j))
            .collect();
        let mut recent = std::mem::take(&mut self.recent);
        recent.extend(waiting.iter().copied());
        loop {
            for key in recent.drain(..) {
                if let Some(&j) = position.get(&key) {
                    if out[j].is_none() {
                        if let Some(f) = self.finished.remove(&key) {
                            out[j] = Some(f);
                            left -= 1;
                        }
                    }
                }
            }
            if left == 0 {
                break;
            }
            if self.now.saturating_duration_since(started) > self.query_cap {
                let (i, id) = waiting[out.iter().position(Option::is_none).unwrap_or(0)];
                self.fail(&format!(
                    "query {id} of node {i} still running after {:?}",
                    self.query_cap
                ));
            }
            let stepped = if self.min_delay().is_zero() || !self.interceptors.is_empty() {
                self.step()
            } else {
                self.step_window()
            };
            if !stepped {
                self.fail("windows: nothing left to run");
            }
            std::mem::swap(&mut recent, &mut self.recent);
        }
        self.recent = recent;
        out.into_iter()
            .map(|f| f.expect("every command finished"))
            .collect()
    }

    /// Handles every event of the window that starts at the earliest pending one; returns
    /// false when nothing at all is pending.
    fn step_window(&mut self) -> bool {
        let Some(first) = self.next_time() else {
            return false;
        };
        let start = first.max(self.now);
        let end = start + self.min_delay();
        let mut s = std::mem::take(&mut self.scratch);

        // Everything due before `end`: datagrams (dropped ones counted and gone) and timers.
        let end_ns = super::nanos_since(self.epoch, end);
        // Heap pops while few are due; once an eighth of the queue is, one pass over the
        // rest and a rebuild, instead of a pop (a dozen levels of a scattered walk) for
        // each of a big window's thousands of datagrams.
        let is_due = |key: u128| ((key >> 64) as u64) < end_ns;
        let limit = self.queue.len() / 8 + 16;
        while let Some(&std::cmp::Reverse(key)) = self.queue.peek() {
            if !is_due(key) {
                break;
            }
            if s.due.len() >= limit {
                let mut rest = std::mem::take(&mut self.queue).into_vec();
                rest.retain(|&std::cmp::Reverse(key)| {
                    if is_due(key) {
                        s.due.push(key);
                    }
                    !is_due(key)
                });
                self.queue = rest.into();
                s.due.sort_unstable();
                break;
            }
            self.queue.pop();
            s.due.push(key);
        }
        for x in 0..s.due.len() {
            let key = s.due[x];
            let d = self.unpark(key);
            match self.admit(&d) {
                Some(Some(dst)) => {
                    s.by_node.push((dst as u64) << 32 | s.inbox.len() as u64);
                    s.inbox.push((key, d));
                }
                // Nobody at the address, and no interceptor: a window never runs with any.
                Some(None) => self.stats.undeliverable += 1,
                None => {}
            }
        }
        while let Some((t, i)) = self.next_deadline() {
            if t >= end {
                break;
            }
            self.take_deadline();
            s.timers.push((i, t));
        }
        // By node, each node's datagrams in delivery order (popped in that order).
        s.by_node.sort_unstable();
        s.timers.sort_unstable_by_key(|&(i, _)| i);

        // One job a node, in node order, each holding its own slot.
        let mut jobs: Vec<Job<'_>> = Vec::new();
        {
            let mut rest: &mut [Slot] = &mut self.nodes;
            let mut base = 0;
            let (mut d, mut t) = (0, 0);
            let dst = |d: usize| s.by_node.get(d).map(|&k| (k >> 32) as usize);
            while d < s.by_node.len() || t < s.timers.len() {
                let i = match (dst(d), s.timers.get(t)) {
                    (Some(a), Some(&(b, _))) => a.min(b),
                    (Some(a), None) => a,
                    (None, Some(&(b, _))) => b,
                    (None, None) => unreachable!("loop condition"),
                };
                let from = d;
                while dst(d) == Some(i) {
                    d += 1;
                }
                let timer = match s.timers.get(t) {
                    Some(&(j, tt)) if j == i => {
                        t += 1;
                        Some(tt)
                    }
                    _ => None,
                };
                let (slot, tail) = std::mem::take(&mut rest)[i - base..]
                    .split_first_mut()
                    .expect("a job's node exists");
                rest = tail;
                base = i + 1;
                let (out, keys) = s.outs.pop().unwrap_or_default();
                jobs.push(Job {
                    i,
                    x: jobs.len(),
                    keys,
                    slot,
                    inbox: from..d,
                    timer,
                    out,
                    last: start,
                    deadline: None,
                    delivered: 0,
                    reordered: 0,
                    timer_fires: 0,
                });
            }
        }
        let shared = Shared {
            inbox: &s.inbox,
            by_node: &s.by_node,
            start,
            end,
            epoch: self.epoch,
            check: self.check_invariants,
            seed: self.seed,
        };
        if self.threads > 1 {
            jobs.par_iter_mut().for_each(|j| j.run(&shared));
        } else {
            jobs.iter_mut().for_each(|j| j.run(&shared));
        }

        // Merge: (time, node, the node's order), whatever ran where. Jobs are in node
        // order, so a job's position stands for its node in the sort key.
        let mut done: Vec<Done> = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            self.stats.delivered += job.delivered;
            self.stats.reordered += job.reordered;
            self.stats.timer_fires += job.timer_fires;
            self.stats.steps += job.timer_fires;
            s.keys.extend_from_slice(&job.keys);
            job.keys.clear();
            done.push(Done {
                i: job.i,
                addr: job.slot.addr,
                last: job.last,
                deadline: job.deadline,
                out: job.out,
                keys: job.keys,
            });
        }
        s.keys.sort_unstable();
        self.floor = end;
        for &key in &s.keys {
            let (x, n) = ((key >> 32) as u32 as usize, key as u32 as usize);
            let Done { i, addr, out, .. } = &mut done[x];
            let (i, src) = (*i, *addr);
            let o = out[n].take().expect("each output merged once");
            // Sends are timed from the clock.
            self.now = self.now.max(at(self.epoch, key));
            match o {
                Out::Delivered(word) => self.trace.feed(word),
                Out::Node(Drained::Sent(dst, payload)) => self.send(src, dst, payload),
                Out::Node(Drained::Finished(f)) => {
                    let key = (i, f.id);
                    self.finished.insert(key, *f);
                    self.recent.push(key);
                }
            }
        }
        self.floor = self.epoch;
        for Done {
            i,
            last,
            deadline,
            mut out,
            keys,
            ..
        } in done
        {
            self.now = self.now.max(last);
            self.set_deadline(i, deadline);
            out.clear();
            s.outs.push((out, keys));
        }
        self.spin.2 = 0;
        s.clear();
        self.scratch = s;
        true
    }
}
