//! Requests in flight: transaction id -> where it went, what it asked, when it gives up,
//! and when it goes out again if no answer came.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::idle::free_if_empty;
use crate::wire::{Body, RequestKind};
use crate::{NodeId, QueryId};

/// Who waits for a request's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A query; `tag` says which part of it (a bootstrap runs several lookups).
    Query { id: QueryId, tag: u32 },
    /// A liveness ping of a bucket's oldest entry.
    TablePing,
    /// Nobody (a `set_cached` after a get): only the routing table learns from it.
    Detached,
    /// A ping that verifies a sender's address before it gets a large reply held for it.
    Verify,
}

/// One request in flight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub addr: SocketAddr,
    /// The id we believe answers at `addr`, if any (bootstrap pings know only an address).
    pub expected: Option<NodeId>,
    pub kind: RequestKind,
    pub deadline: Instant,
    pub owner: Owner,
}

/// A request that goes out again, unchanged (same transaction id), while unanswered.
#[derive(Debug)]
struct Resend {
    /// When it goes out next.
    at: Instant,
    /// Time between copies.
    every: Duration,
    /// Copies still to send after the one at `at`.
    left: u8,
    /// What was asked; encoded again for each copy (same transaction, same bytes).
    body: Body,
}

/// The in-flight table, bounded by `max`.
#[derive(Debug)]
pub(crate) struct Rpc {
    pending: BTreeMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// Retransmissions still due, by transaction id, and their times.
    resends: BTreeMap<u64, Resend>,
    resend_at: BTreeSet<(Instant, u64)>,
    /// Requests in flight per destination.
    by_addr: BTreeMap<SocketAddr, u32>,
    max: usize,
}

impl Rpc {
    pub fn new(max: usize) -> Rpc {
        Rpc {
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            resends: BTreeMap::new(),
            resend_at: BTreeSet::new(),
            by_addr: BTreeMap::new(),
            max,
        }
    }

    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.max
    }

    pub fn contains(&self, txn: u64) -> bool {
        self.pending.contains_key(&txn)
    }

    pub fn insert(&mut self, txn: u64, p: Pending) {
        // Callers pick fresh ids; keep the books straight if one ever is not.
        self.remove(txn);
        self.deadlines.insert((p.deadline, txn));
        *self.by_addr.entry(p.addr).or_insert(0) += 1;
        self.pending.insert(txn, p);
    }

    /// Schedules `copies` more sends of request `txn` (asking `body`), sent at `sent`,
    /// spread evenly over its life: with one copy it goes out again halfway to the
    /// deadline, with two at a third and two thirds, and so on. An answer to any copy
    /// (they share the transaction id) ends the request.
    pub fn resend(&mut self, txn: u64, sent: Instant, copies: u8, body: Body) {
        let Some(p) = self.pending.get(&txn) else {
            return;
        };
        if copies == 0 {
            return;
        }
        let every = p.deadline.saturating_duration_since(sent) / (u32::from(copies) + 1);
        let Some(at) = sent.checked_add(every) else {
            return;
        };
        self.forget_resend(txn);
        self.resend_at.insert((at, txn));
        self.resends.insert(
            txn,
            Resend {
                at,
                every,
                left: copies - 1,
                body,
            },
        );
    }

    fn forget_resend(&mut self, txn: u64) {
        if let Some(r) = self.resends.remove(&txn) {
            self.resend_at.remove(&(r.at, txn));
        }
    }

    /// Removes one retransmission due at or before `now` and returns where it goes, its
    /// transaction and what it asks; the request's next copy, if any, is scheduled.
    pub fn pop_resend(&mut self, now: Instant) -> Option<(SocketAddr, u64, Body)> {
        let &(at, txn) = self.resend_at.first()?;
        if at > now {
            return None;
        }
        self.resend_at.pop_first();
        let addr = self.pending.get(&txn)?.addr;
        let r = self.resends.get_mut(&txn)?;
        if r.left == 0 {
            return self.resends.remove(&txn).map(|r| (addr, txn, r.body));
        }
        r.left -= 1;
        r.at = at.checked_add(r.every).unwrap_or(at);
        self.resend_at.insert((r.at, txn));
        Some((addr, txn, r.body.clone()))
    }

    fn forget_addr(&mut self, addr: SocketAddr) {
        if let Some(n) = self.by_addr.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// Is a request to `addr` in flight?
    pub fn awaits(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    pub fn get(&self, txn: u64) -> Option<&Pending> {
        self.pending.get(&txn)
    }

    pub fn remove(&mut self, txn: u64) -> Option<Pending> {
        let p = self.pending.remove(&txn)?;
        self.deadlines.remove(&(p.deadline, txn));
        self.forget_resend(txn);
        self.forget_addr(p.addr);
        self.free_if_idle();
        Some(p)
    }

    /// With nothing in flight, gives back the maps' last nodes (a few KB a node).
    fn free_if_idle(&mut self) {
        if self.pending.is_empty() {
            free_if_empty(&mut self.pending);
            free_if_empty(&mut self.deadlines);
            free_if_empty(&mut self.resends);
            free_if_empty(&mut self.resend_at);
            free_if_empty(&mut self.by_addr);
        }
    }

    /// The earliest deadline or retransmission.
    pub fn next_deadline(&self) -> Option<Instant> {
        let d = self.deadlines.first().map(|(t, _)| *t);
        let r = self.resend_at.first().map(|(t, _)| *t);
        match (d, r) {
            (Some(d), Some(r)) => Some(d.min(r)),
            (d, r) => d.or(r),
        }
    }

    /// Removes and returns one request whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(u64, Pending)> {
        let &(deadline, txn) = self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.deadlines.pop_first();
        let p = self.pending.remove(&txn)?;
        self.forget_resend(txn);
        self.forget_addr(p.addr);
        self.free_if_idle();
        Some((txn, p))
    }

    /// Does query `id` have a request in flight?
    pub fn has_owner(&self, id: QueryId) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p.owner, Owner::Query { id: q, .. } if q == id))
    }

    pub fn check(&self) -> Result<(), String> {
        if self.pending.len() > self.max {
            return Err(format!(
                "{} requests in flight > max {}",
                self.pending.len(),
                self.max
            ));
        }
        if self.pending.len() != self.deadlines.len() {
            return Err("a pending request has no deadline".into());
        }
        let mut by_addr: BTreeMap<SocketAddr, u32> = BTreeMap::new();
        for (txn, p) in &self.pending {
            if !self.deadlines.contains(&(p.deadline, *txn)) {
                return Err(format!("request {txn:x} has no deadline"));
            }
            *by_addr.entry(p.addr).or_insert(0) += 1;
        }
        if by_addr != self.by_addr {
            return Err("requests per address out of step".into());
        }
        if self.resends.len() != self.resend_at.len() {
            return Err("a retransmission has no time".into());
        }
        for (txn, r) in &self.resends {
            let Some(p) = self.pending.get(txn) else {
                return Err(format!("retransmission of {txn:x}, which is not in flight"));
            };
            if !self.resend_at.contains(&(r.at, *txn)) || r.at > p.deadline {
                return Err(format!("retransmission of {txn:x} mistimed"));
            }
        }
        Ok(())
    }
}
