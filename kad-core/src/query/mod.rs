//! Queries: what a command does between its start and its [`crate::Event::QueryFinished`].

mod env;
pub(crate) mod lookup;
mod put;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

pub(crate) use env::{Env, Outbox, Request};
pub(crate) use lookup::{Ask, Lookup, Patience, Progress};
pub(crate) use put::Put;

use crate::rpc::Owner;
use crate::validate::{Origin, Verdict};
use crate::wire::{Body, FindValueRes, WirePeer};
use crate::{
    BootstrapOk, FindValueOk, NodeId, Peer, QueryError, QueryId, QueryResult, QueryStats, Value,
};

/// Why a query runs: users get an event; maintenance runs silently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    User,
    /// Stale-bucket refresh.
    Refresh,
    /// Republish or restore of a stored record.
    Republish,
}

/// The outcome of one request, delivered to the query that sent it.
pub(crate) enum Outcome<'a> {
    Response {
        txn: u64,
        from: SocketAddr,
        sender: NodeId,
        body: &'a Body,
    },
    Failure {
        txn: u64,
    },
    /// Unanswered past the node's retransmission timeout: probably lost or dead. The
    /// request stays in flight (its answer may still come, or its failure).
    Stalled {
        txn: u64,
    },
}

impl Outcome<'_> {
    fn txn(&self) -> u64 {
        match self {
            Outcome::Response { txn, .. } | Outcome::Failure { txn } | Outcome::Stalled { txn } => {
                *txn
            }
        }
    }
}

/// What [`Query::poll`] says.
pub(crate) enum Poll {
    /// Still running; `starved` when it could not send for lack of capacity.
    Pending {
        starved: bool,
    },
    Done(QueryResult),
}

/// One running query.
pub(crate) struct Query {
    pub id: QueryId,
    pub purpose: Purpose,
    pub started: Instant,
    pub kind: Kind,
    /// Requests, responses, timeouts outside lookups (pings, check_store, set).
    pub requests: u32,
    pub responses: u32,
    pub timeouts: u32,
}

pub(crate) enum Kind {
    Ping {
        addr: SocketAddr,
        txn: Option<u64>,
        result: Option<Result<Peer, QueryError>>,
    },
    Bootstrap(Bootstrap),
    FindNode(Lookup),
    FindValue {
        lookup: Lookup,
        get: bool,
        key: String,
        found: Option<(Value, u32)>,
        /// Set when the validator wants every holder's value (see `Validator::collects`).
        collect: Option<Collect>,
    },
    Put(Put),
}

/// The values a collecting get has received.
pub(crate) struct Collect {
    /// The preferred valid value so far (by the validator's preference); with `majority`,
    /// our own copy.
    best: Option<Value>,
    /// Who sent which value: with `majority` the k closest holders to the key, else the
    /// first k (the ones to update at the end).
    holders: Vec<(Peer, Value)>,
    /// Decide by votes, not by preference: see [`Collect::majority`].
    majority: Option<NodeId>,
}

/// Who a vote comes from: one IP (an IPv6 prefix) one vote; an address exempt from the
/// per-IP limits votes alone; our own copy votes as us.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Voter {
    Me,
    Ip([u8; 8]),
    Addr(SocketAddr),
}

impl Collect {
    /// `local` is our own copy, which competes with the network's.
    pub fn new(local: Option<Value>) -> Collect {
        Collect {
            best: local,
            holders: Vec::new(),
            majority: None,
        }
    }

    /// A plain key's get: the value held by the most voters among the lookup's k
    /// closest nodes that answered (one vote an IP, our own copy one more) wins, ties to
    /// the value of the holder closest to `target`. A liar, or a host with many ids, is
    /// one voice among the replicas, and a forged copy cached away from them has none.
    /// Nobody is sent the winner: a value in the minority may be an update still on its
    /// way.
    pub fn majority(local: Option<Value>, target: NodeId) -> Collect {
        Collect {
            best: local,
            holders: Vec::new(),
            majority: Some(target),
        }
    }

    /// Is this a plain key's majority get?
    pub fn is_majority(&self) -> bool {
        self.majority.is_some()
    }

    fn offer(&mut self, core: &mut Env<'_>, key: &str, holder: Peer, value: &Value) {
        if let Some(target) = self.majority {
            if core.validator.validate(key, value, Origin::Lookup) == Verdict::Reject {
                core.stats.values_rejected += 1;
                return;
            }
            // Keep the k closest holders: only they can be among the k closest that answered.
            let d = holder.id.distance(&target);
            let at = self
                .holders
                .partition_point(|(p, _)| p.id.distance(&target) < d);
            if at < core.config.k && !self.holders.iter().any(|(p, _)| p.id == holder.id) {
                self.holders.insert(at, (holder, value.clone()));
                self.holders.truncate(core.config.k);
            }
            return;
        }
        if self.holders.len() < core.config.k {
            self.holders.push((holder, value.clone()));
        }
        if core.validator.validate(key, value, Origin::Lookup) == Verdict::Reject {
            core.stats.values_rejected += 1;
            return;
        }
        let better = match &self.best {
            None => true,
            Some(best) => {
                best != value && core.validator.replaces(key, best, value, Origin::Lookup)
            }
        };
        if better {
            self.best = Some(value.clone());
        }
    }

    /// The lookup is over (`closest`: the k closest peers that answered it): gives back
    /// the value to return. By preference, it also sends the preferred value to every
    /// holder of another one (and keeps it ourselves if we hold the key).
    fn finish(
        &mut self,
        core: &mut Env<'_>,
        now: Instant,
        key: &str,
        closest: &[Peer],
    ) -> Option<Value> {
        if let Some(target) = self.majority {
            return self.elect(core, target, closest);
        }
        let best = self.best.take()?;
        for (p, v) in std::mem::take(&mut self.holders) {
            if v != best {
                let body = Body::Set {
                    key: key.to_owned(),
                    value: best.clone(),
                };
                core.send_request(now, p.addr, Some(p.id), body, Owner::Detached);
            }
        }
        let stale = core
            .store
            .get(now, key)
            .filter(|r| r.value != best)
            .cloned();
        if let Some(mut r) = stale {
            if core
                .validator
                .replaces(key, &r.value, &best, Origin::Lookup)
            {
                r.value = best.clone();
                // Our copy stays as it was if the newer one does not fit.
                let _ = core.store.put(key, r);
            }
        }
        Some(best)
    }

    /// A majority get may end early: `Config::settle_voters` voters (IPs) among the k closest
    /// candidates the lookup knows now hold one value and nobody, ourselves included, has
    /// offered another. Any disagreement and it asks the k closest and counts. (A holder
    /// met on the way, far from the key, votes only while nobody closer is known: liars
    /// answering the lookup's first, wide round cannot settle it.)
    fn settled(&self, core: &Env<'_>, lookup: &Lookup) -> bool {
        let Some(target) = self.majority else {
            return false;
        };
        let Some((_, first)) = self.holders.first() else {
            return false;
        };
        if self.holders.iter().any(|(_, v)| v != first)
            || self.best.as_ref().is_some_and(|own| own != first)
        {
            return false;
        }
        let mut voters = BTreeSet::new();
        for (p, _) in &self.holders {
            if !lookup.within_closest(&p.id.distance(&target), core.config.k) {
                continue;
            }
            voters.insert(match core.ip_key(&p.addr) {
                Some(ip) => Voter::Ip(ip),
                None => Voter::Addr(p.addr),
            });
        }
        voters.len() + usize::from(self.best.is_some()) >= core.config.settle_voters()
    }

    /// The vote of [`Collect::majority`].
    fn elect(&mut self, core: &Env<'_>, target: NodeId, closest: &[Peer]) -> Option<Value> {
        let holders = std::mem::take(&mut self.holders);
        let among: Vec<&(Peer, Value)> = holders
            .iter()
            .filter(|(p, _)| closest.iter().any(|c| c.id == p.id && c.addr == p.addr))
            .collect();
        // Nobody among the k closest holds it (they all went, or never had it): the
        // farther holders are all there is.
        let voters: Vec<&(Peer, Value)> = if among.is_empty() {
            holders.iter().collect()
        } else {
            among
        };
        // (value, voters, rank of its closest holder); few distinct values, so a Vec.
        let mut tally: Vec<(Value, BTreeSet<Voter>, usize)> = Vec::new();
        let mut ballot = |value: &Value, voter: Voter, rank: usize| match tally
            .iter_mut()
            .find(|(v, _, _)| v == value)
        {
            Some((_, who, r)) => {
                who.insert(voter);
                *r = (*r).min(rank);
            }
            None => tally.push((value.clone(), BTreeSet::from([voter]), rank)),
        };
        if let Some(v) = self.best.take() {
            let own = core.id.distance(&target);
            let rank = voters
                .iter()
                .filter(|(p, _)| p.id.distance(&target) < own)
                .count();
            ballot(&v, Voter::Me, rank);
        }
        for (rank, (p, v)) in voters.iter().enumerate() {
            let voter = match core.ip_key(&p.addr) {
                Some(ip) => Voter::Ip(ip),
                None => Voter::Addr(p.addr),
            };
            ballot(v, voter, rank);
        }
        tally
            .into_iter()
            .min_by_key(|(_, who, rank)| (std::cmp::Reverse(who.len()), *rank))
            .map(|(v, _, _)| v)
    }
}

pub(crate) struct Bootstrap {
    addrs: Vec<SocketAddr>,
    next: usize,
    pings: BTreeSet<u64>,
    answered: usize,
    phase: BootPhase,
}

enum BootPhase {
    Ping,
    SelfLookup(Lookup),
    Refresh(Vec<Lookup>),
}

impl Bootstrap {
    pub fn new(addrs: Vec<SocketAddr>) -> Bootstrap {
        Bootstrap {
            addrs,
            next: 0,
            pings: BTreeSet::new(),
            answered: 0,
            phase: BootPhase::Ping,
        }
    }
}

/// Routes a response or failure into a lookup.
fn lookup_outcome(lookup: &mut Lookup, core: &Env<'_>, outcome: &Outcome<'_>) {
    match outcome {
        Outcome::Response {
            txn, sender, body, ..
        } => {
            let peers: &[WirePeer] = match body {
                Body::FindNodeRes { peers } => peers,
                Body::FindValueRes(FindValueRes::Peers(peers)) => peers,
                _ => &[],
            };
            lookup.on_response(core, *txn, *sender, peers);
        }
        Outcome::Failure { txn } => {
            lookup.on_failure(*txn);
        }
        Outcome::Stalled { txn } => {
            lookup.on_stall(*txn);
        }
    }
}

impl Query {
    pub fn new(id: QueryId, purpose: Purpose, started: Instant, kind: Kind) -> Query {
        Query {
            id,
            purpose,
            started,
            kind,
            requests: 0,
            responses: 0,
            timeouts: 0,
        }
    }

    pub fn owner(id: QueryId, tag: u32) -> Owner {
        Owner::Query { id, tag }
    }

    /// A request this query sent has an outcome.
    pub fn on_outcome(&mut self, core: &mut Env<'_>, now: Instant, tag: u32, outcome: Outcome<'_>) {
        let id = self.id;
        if let Outcome::Stalled { txn } = outcome {
            // Only lookups watch for stalls; they lose nothing but the wait.
            match &mut self.kind {
                Kind::FindNode(l) | Kind::FindValue { lookup: l, .. } => {
                    l.on_stall(txn);
                }
                Kind::Put(p) => p.on_stall(tag, txn),
                Kind::Ping { .. } | Kind::Bootstrap(_) => {}
            }
            return;
        }
        match &mut self.kind {
            Kind::Ping { txn, result, .. } => {
                if *txn != Some(outcome.txn()) {
                    return;
                }
                *result = Some(match outcome {
                    Outcome::Response { from, sender, .. } => {
                        self.responses += 1;
                        Ok(Peer {
                            id: sender,
                            addr: from,
                        })
                    }
                    Outcome::Failure { .. } => {
                        self.timeouts += 1;
                        Err(QueryError::NoResponse)
                    }
                    // Handled above: a ping waits for its answer or its deadline.
                    Outcome::Stalled { .. } => return,
                });
            }
            Kind::Bootstrap(b) => match (&mut b.phase, tag) {
                (BootPhase::Ping, 0) => {
                    if matches!(outcome, Outcome::Stalled { .. }) || !b.pings.remove(&outcome.txn())
                    {
                        return;
                    }
                    match outcome {
                        Outcome::Response { sender, .. } => {
                            self.responses += 1;
                            // Our own address in the list answers as ourselves: not a peer.
                            if sender != core.id {
                                b.answered += 1;
                            }
                        }
                        Outcome::Failure { .. } => self.timeouts += 1,
                        Outcome::Stalled { .. } => {}
                    }
                }
                (BootPhase::SelfLookup(l), 1) => lookup_outcome(l, core, &outcome),
                (BootPhase::Refresh(ls), t) if t >= 2 => {
                    if let Some(l) = ls.get_mut((t - 2) as usize) {
                        lookup_outcome(l, core, &outcome);
                    }
                }
                _ => {}
            },
            Kind::FindNode(l) => lookup_outcome(l, core, &outcome),
            Kind::FindValue {
                lookup,
                key,
                found,
                collect,
                ..
            } => {
                if found.is_some() {
                    return;
                }
                if let Outcome::Response {
                    txn,
                    from,
                    sender,
                    body: Body::FindValueRes(FindValueRes::Value(v)),
                } = &outcome
                {
                    if let Some(c) = collect {
                        // A holder answered: the lookup goes on past it, to the k closest.
                        if lookup.on_response(core, *txn, *sender, &[]) {
                            let holder = Peer {
                                id: *sender,
                                addr: *from,
                            };
                            c.offer(core, key, holder, v);
                        }
                        return;
                    }
                    if core.validator.validate(key, v, Origin::Lookup) == Verdict::Reject {
                        core.stats.values_rejected += 1;
                        lookup_outcome(lookup, core, &outcome);
                        return;
                    }
                    if let Some(hops) = lookup.on_value(*txn, *sender) {
                        *found = Some((v.clone(), hops));
                        // Cache along the path: the closest peer that answered without it.
                        let target = *lookup.target();
                        let holder = *sender;
                        if let Some(p) = lookup
                            .closest_succeeded(usize::MAX)
                            .into_iter()
                            .find(|p| p.id != holder)
                        {
                            let body = Body::SetCached {
                                key: key.clone(),
                                value: v.clone(),
                                target,
                            };
                            core.send_request(now, p.addr, Some(p.id), body, Owner::Detached);
                        }
                    }
                    return;
                }
                lookup_outcome(lookup, core, &outcome);
            }
            Kind::Put(p) => {
                p.on_outcome(core, tag, outcome, &mut self.responses, &mut self.timeouts)
            }
        }
        let _ = id;
    }

    /// Sends what can be sent; says whether the query is done.
    pub fn poll(&mut self, core: &mut Env<'_>, now: Instant) -> Poll {
        let id = self.id;
        match &mut self.kind {
            Kind::Ping { addr, txn, result } => {
                if let Some(r) = result.take() {
                    return Poll::Done(QueryResult::Ping(r));
                }
                if txn.is_none() {
                    match core.send_request(now, *addr, None, Body::Ping, Self::owner(id, 0)) {
                        Some(t) => {
                            *txn = Some(t);
                            self.requests += 1;
                        }
                        None => return Poll::Pending { starved: true },
                    }
                }
                Poll::Pending { starved: false }
            }
            Kind::Bootstrap(b) => poll_bootstrap(b, core, now, id, &mut self.requests),
            Kind::FindNode(l) => match l.poll(core, now) {
                Progress::Finished => {
                    Poll::Done(QueryResult::FindNode(lookup_peers(l, core.config.k)))
                }
                p => Poll::Pending {
                    starved: p == Progress::Starved,
                },
            },
            Kind::FindValue {
                lookup,
                get,
                collect: Some(c),
                key,
                ..
            } => match if c.settled(core, lookup) {
                Progress::Finished
            } else {
                match lookup.poll(core, now) {
                    // Nobody offered a value yet and some peers are only slow, not gone:
                    // their answers (or timeouts) are all that is left to wait for.
                    Progress::Finished if c.holders.is_empty() && lookup.has_stalled() => {
                        Progress::Waiting
                    }
                    p => p,
                }
            } {
                Progress::Finished => {
                    let closest = lookup.closest_succeeded(core.config.k);
                    let best = c.finish(core, now, key, &closest);
                    let r = lookup_peers(lookup, core.config.k);
                    let r = match best {
                        Some(v) => Ok(Some(v)),
                        None => r.map(|_| None),
                    };
                    Poll::Done(if *get {
                        QueryResult::Get(r)
                    } else {
                        QueryResult::FindValue(r.map(|value| FindValueOk {
                            value,
                            peers: lookup.closest_succeeded(core.config.k),
                        }))
                    })
                }
                p => Poll::Pending {
                    starved: p == Progress::Starved,
                },
            },
            Kind::FindValue {
                lookup, get, found, ..
            } => {
                if let Some((v, _)) = found {
                    let v = v.clone();
                    return Poll::Done(if *get {
                        QueryResult::Get(Ok(Some(v)))
                    } else {
                        QueryResult::FindValue(Ok(FindValueOk {
                            value: Some(v),
                            peers: lookup.closest_succeeded(core.config.k),
                        }))
                    });
                }
                match lookup.poll(core, now) {
                    Progress::Finished => {
                        let r = lookup_peers(lookup, core.config.k);
                        Poll::Done(if *get {
                            QueryResult::Get(r.map(|_| None))
                        } else {
                            QueryResult::FindValue(
                                r.map(|peers| FindValueOk { value: None, peers }),
                            )
                        })
                    }
                    p => Poll::Pending {
                        starved: p == Progress::Starved,
                    },
                }
            }
            Kind::Put(p) => p.poll(core, now, id, &mut self.requests),
        }
    }

    /// Work done so far.
    pub fn stats(&self, now: Instant) -> QueryStats {
        let mut s = QueryStats {
            rounds: 0,
            requests: self.requests,
            responses: self.responses,
            timeouts: self.timeouts,
            started: self.started,
            finished: now,
        };
        let mut add = |l: &Lookup| {
            s.rounds = s.rounds.max(l.rounds());
            s.requests += l.requests;
            s.responses += l.responses;
            s.timeouts += l.timeouts;
        };
        match &self.kind {
            Kind::Ping { .. } => {}
            Kind::Bootstrap(b) => match &b.phase {
                BootPhase::Ping => {}
                BootPhase::SelfLookup(l) => add(l),
                BootPhase::Refresh(ls) => ls.iter().for_each(add),
            },
            Kind::FindNode(l) => add(l),
            Kind::FindValue { lookup, found, .. } => {
                add(lookup);
                if let Some((_, hops)) = found {
                    s.rounds = s.rounds.max(*hops);
                }
            }
            Kind::Put(p) => {
                if let Some(l) = p.lookup() {
                    add(l)
                }
            }
        }
        s
    }

    /// Checks the query's internal counts.
    pub fn check(&self) -> Result<(), String> {
        match &self.kind {
            Kind::Bootstrap(b) => match &b.phase {
                BootPhase::SelfLookup(l) => l.check(),
                BootPhase::Refresh(ls) => ls.iter().try_for_each(|l| l.check()),
                BootPhase::Ping => Ok(()),
            },
            Kind::FindNode(l) | Kind::FindValue { lookup: l, .. } => l.check(),
            Kind::Put(p) => p.lookup().map_or(Ok(()), |l| l.check()),
            Kind::Ping { .. } => Ok(()),
        }
    }
}

/// The result of a finished lookup: its closest responders, or why there are none.
fn lookup_peers(l: &Lookup, k: usize) -> Result<Vec<Peer>, QueryError> {
    if l.is_empty() {
        return Err(QueryError::NoPeers);
    }
    let peers = l.closest_succeeded(k);
    if peers.is_empty() {
        return Err(QueryError::NoResponse);
    }
    Ok(peers)
}

fn poll_bootstrap(
    b: &mut Bootstrap,
    core: &mut Env<'_>,
    now: Instant,
    id: QueryId,
    requests: &mut u32,
) -> Poll {
    if let BootPhase::Ping = b.phase {
        while b.next < b.addrs.len() {
            let addr = b.addrs[b.next];
            match core.send_request(now, addr, None, Body::Ping, Query::owner(id, 0)) {
                Some(txn) => {
                    b.pings.insert(txn);
                    *requests += 1;
                    b.next += 1;
                }
                None => return Poll::Pending { starved: true },
            }
        }
        if !b.pings.is_empty() {
            return Poll::Pending { starved: false };
        }
        if b.answered == 0 {
            return Poll::Done(QueryResult::Bootstrap(Err(if b.addrs.is_empty() {
                QueryError::NoPeers
            } else {
                QueryError::NoResponse
            })));
        }
        b.phase = BootPhase::SelfLookup(Lookup::new(
            core,
            core.id,
            Ask::FindNode,
            Query::owner(id, 1),
        ));
    }
    if let BootPhase::SelfLookup(l) = &mut b.phase {
        match l.poll(core, now) {
            Progress::Finished => {
                // Then one lookup of a random id in every bucket's range, as the reference,
                // but for the buckets nearer to us than the k-th closest peer the self
                // lookup found: every node of those is closer to us than that peer, so
                // (the self lookup having found the k closest) we know all of them
                // already, and a lookup there would only ask them again.
                let k = core.config.k;
                let closest = l.closest_succeeded(k);
                let buckets = match closest.last() {
                    Some(far) if closest.len() == k => {
                        let lz = core.id.distance(&far.id).leading_zeros();
                        core.table.bucket_count().min(lz + 1)
                    }
                    _ => core.table.bucket_count(),
                };
                let lookups = (0..buckets)
                    .map(|i| {
                        let target = core.table.random_id_in_bucket(i, &mut core.rng);
                        Lookup::new(core, target, Ask::FindNode, Query::owner(id, 2 + i as u32))
                    })
                    .collect();
                // Keep the self lookup's work in the stats: fold it into the first refresh.
                let mut lookups: Vec<Lookup> = lookups;
                if let Some(first) = lookups.first_mut() {
                    first.requests += l.requests;
                    first.responses += l.responses;
                    first.timeouts += l.timeouts;
                }
                b.phase = BootPhase::Refresh(lookups);
            }
            p => {
                return Poll::Pending {
                    starved: p == Progress::Starved,
                }
            }
        }
    }
    if let BootPhase::Refresh(ls) = &mut b.phase {
        let mut done = true;
        let mut starved = false;
        let fill = core.config.bootstrap_fill.min(core.config.k);
        for l in ls.iter_mut() {
            // A bucket that holds its fill already (the self lookup, an earlier refresh or
            // other nodes' requests filled it) needs no more of its lookup. Its requests in
            // flight still count when answered; the lookup sends no more. The last bucket,
            // which covers our own id, splits instead of filling: its lookup runs to the end.
            let p = match core.table.bucket_len_for(l.target()) {
                None => l.poll(core, now),
                Some(n) if n >= fill => continue,
                Some(n) => l.poll_fill(core, now, fill - n),
            };
            match p {
                Progress::Finished => {}
                Progress::Waiting => done = false,
                Progress::Starved => {
                    done = false;
                    starved = true;
                }
            }
        }
        if done {
            return Poll::Done(QueryResult::Bootstrap(Ok(BootstrapOk {
                answered: b.answered,
                table_size: core.table.len(),
            })));
        }
        return Poll::Pending { starved };
    }
    Poll::Pending { starved: false }
}
