//! The iterative closest-peers lookup, with its own candidate list.
//!
//! Peers named in responses become *candidates* of this lookup only; they enter the routing
//! table only if they answer us (the reference adds them straight away, which lets anyone
//! fill the table with junk).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use super::{Env, Request};
use crate::id::Distance;
use crate::rpc::Owner;
use crate::wire::{Body, WirePeer};
use crate::{NodeId, Peer};

/// A lookup keeps at most this many candidates per unit of k; farther ones are dropped.
const CANDIDATES_PER_K: usize = 3;
/// Most failed candidates a lookup remembers (so it never asks them again).
const MAX_FAILED: usize = 1024;
/// Most requests one lookup sends, per unit of k. An honest lookup sends a few dozen (a get
/// at 100,000 simulated nodes: 27 on average, 46 at most); liars who answer at once, each
/// naming ever closer fakes, could otherwise keep one going for ever. Past it, the lookup
/// asks nobody new and ends with the answers it has.
const MAX_REQUESTS_PER_K: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotContacted,
    InFlight(u64),
    /// In flight past the node's retransmission timeout: no longer holds an alpha slot.
    Stalled(u64),
    Succeeded,
}

/// How long a lookup waits on a request that is not answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Patience {
    /// Until its deadline (`query_timeout`), holding its alpha slot: background lookups
    /// (bucket refresh, bootstrap), which step through every candidate so that dead
    /// entries are met, timed out and evicted.
    #[default]
    Exhaustive,
    /// Past the retransmission timeout ([`crate::rpc::Rpc::rto`]) it stops holding an alpha
    /// slot, so the lookup moves on; but the lookup still ends only once each of the k
    /// closest has answered or failed (a put's lookup: the replicas go to the true k
    /// closest, slow or not; a user's `find_node`, whose answer is the k closest).
    FreeSlots,
    /// As `FreeSlots`, and the lookup ends without the stalled ones: done when the k
    /// closest that have not failed or stalled have answered. A late answer still counts
    /// while the lookup runs (a user's `get` and `find_value`, which end at the first
    /// holder anyway). A request to a peer that closer candidates pushed out of the k
    /// closest stops holding its slot too, so the lookup asks the closer ones at once;
    /// to bound what a liar naming ever closer fakes can make it send, at most k are in
    /// flight in all (stalled requests aside).
    SkipStalled,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    peer: Peer,
    state: State,
    /// 1 for a peer from our own table, h+1 for a peer first named by an h-hop peer.
    hops: u32,
}

/// A lookup's candidates, closest to the target first: a sorted `Vec` rather than a
/// `BTreeMap`, because the list is short (at most `CANDIDATES_PER_K` × k) and every
/// response walks its head. A walk over a slice is a few cache lines; over a B-tree it
/// chased a pointer per node, 7 % of a simulation's time.
#[derive(Clone, Debug, Default)]
struct Candidates(Vec<(Distance, Candidate)>);

impl Candidates {
    fn find(&self, d: &Distance) -> Result<usize, usize> {
        self.0.binary_search_by(|(x, _)| x.cmp(d))
    }

    /// Adds `c` at distance `d` unless a candidate is already there.
    fn insert_new(&mut self, d: Distance, c: Candidate) {
        if let Err(pos) = self.find(&d) {
            self.0.insert(pos, (d, c));
        }
    }

    fn get_mut(&mut self, d: &Distance) -> Option<&mut Candidate> {
        let pos = self.find(d).ok()?;
        Some(&mut self.0[pos].1)
    }

    fn remove(&mut self, d: &Distance) {
        if let Ok(pos) = self.find(d) {
            self.0.remove(pos);
        }
    }

    fn first_key(&self) -> Option<Distance> {
        self.0.first().map(|(d, _)| *d)
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = &(Distance, Candidate)> {
        self.0.iter()
    }

    fn values(&self) -> impl Iterator<Item = &Candidate> {
        self.0.iter().map(|(_, c)| c)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Candidate> {
        self.0.iter_mut().map(|(_, c)| c)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a lookup asks each peer.
#[derive(Clone, Debug)]
pub(crate) enum Ask {
    FindNode,
    FindValue(String),
}

/// Progress of a lookup after [`Lookup::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Waiting for responses.
    Waiting,
    /// Wanted to send but the request table or transmit queue is full.
    Starved,
    /// The k closest non-failed candidates have all answered (or none is left).
    Finished,
}

/// One iterative lookup.
#[derive(Clone, Debug)]
pub(crate) struct Lookup {
    target: NodeId,
    ask: Ask,
    candidates: Candidates,
    /// Candidates that failed (timed out, or someone else answered at their address): out
    /// of the list, so they never crowd out live ones, and never offered again.
    failed: BTreeSet<Distance>,
    in_flight: usize,
    /// A response named nobody closer than the closest candidate already known: from now
    /// on a lookup with `burst` asks all of the k closest it has not asked yet at once
    /// (the paper's final step) instead of alpha at a time.
    converged: bool,
    /// Whether this lookup ends with the burst (see [`Lookup::with_final_burst`]).
    burst: bool,
    /// Requests it may have in flight at least (see [`Lookup::with_width`]); alpha if less.
    width: usize,
    /// How long it waits on an unanswered request.
    patience: Patience,
    owner: Owner,
    /// Requests sent, responses received, timeouts.
    pub requests: u32,
    /// Requests this lookup sent itself (`requests` may also carry another's, folded in
    /// for the stats): what [`MAX_REQUESTS_PER_K`] bounds.
    sent: u32,
    pub responses: u32,
    pub timeouts: u32,
}

impl Lookup {
    pub fn new(core: &Env<'_>, target: NodeId, ask: Ask, owner: Owner) -> Lookup {
        let mut l = Lookup {
            target,
            ask,
            candidates: Candidates::default(),
            failed: BTreeSet::new(),
            in_flight: 0,
            converged: false,
            burst: false,
            width: 0,
            patience: Patience::Exhaustive,
            owner,
            requests: 0,
            sent: 0,
            responses: 0,
            timeouts: 0,
        };
        for peer in core.table.closest(&target, core.config.k, None) {
            l.candidates.insert_new(
                peer.id.distance(&target),
                Candidate {
                    peer,
                    state: State::NotContacted,
                    hops: 1,
                },
            );
        }
        l
    }

    /// Ends the lookup the paper's way: once a response brings nobody closer, ask every
    /// one of the k closest not yet asked at once. A user's `find_node` and `put` then take
    /// about three round trips instead of k / alpha. Background lookups (bucket refresh,
    /// bootstrap) keep alpha at a time: they are in no hurry, and stepping through the
    /// candidates meets (and evicts) more dead peers. `find_value` never bursts: it ends at
    /// the first holder, and the rest of a burst would be wasted.
    pub fn with_final_burst(mut self) -> Lookup {
        self.burst = matches!(self.ask, Ask::FindNode);
        self
    }

    /// Lets `width` requests be in flight (alpha if that is more): a majority get asks
    /// more at once than it wants voters (`Config::get_parallelism`).
    pub fn with_width(mut self, width: usize) -> Lookup {
        self.width = self.width.max(width);
        self
    }

    /// Sets how long the lookup waits on a request that is not answered (see
    /// [`Patience`]); background lookups keep the default, [`Patience::Exhaustive`].
    pub fn with_patience(mut self, patience: Patience) -> Lookup {
        self.patience = patience;
        self
    }

    pub fn target(&self) -> &NodeId {
        &self.target
    }

    /// Sends requests to the closest candidates not yet asked, among the k closest
    /// non-failed ones, while fewer than alpha (or the lookup's width) hold a slot. With
    /// [`Patience::SkipStalled`] only requests to the k closest non-stalled candidates hold
    /// one, and at most k (or alpha, if more) are in flight in all.
    pub fn poll(&mut self, core: &mut Env<'_>, now: Instant) -> Progress {
        let k = core.config.k;
        let alpha = if self.burst && self.converged {
            k
        } else {
            core.config.alpha.max(self.width)
        };
        let mut all_done = true;
        let mut starved = false;
        let skip_stalled = self.patience == Patience::SkipStalled;
        // Past the retransmission timeout a request stops holding its alpha slot.
        let watch_stall = self.patience != Patience::Exhaustive;
        // Failed candidates left the list: the first k are the k closest non-failed ones
        // (not counting stalled ones when the lookup skips them).
        let mut counted = 0;
        let (mut answered, mut stalled) = (false, false);
        // A get's slots are held only by requests to the k closest it knows now: a request
        // to a peer that closer answers have pushed out of them (the first round's, most
        // of the time) brings little, so it does not stop the lookup asking the closer
        // ones at once. Its answer still counts if it comes.
        let mut held = if skip_stalled {
            self.candidates
                .values()
                .filter(|c| !matches!(c.state, State::Stalled(_)))
                .take(k)
                .filter(|c| matches!(c.state, State::InFlight(_)))
                .count()
        } else {
            self.in_flight
        };
        // A liar answering at once with ever closer fakes would otherwise free every slot
        // each time it answers: k in flight in all at most (an honest get stays below).
        let cap = alpha.max(k);
        let budget = k.saturating_mul(MAX_REQUESTS_PER_K);
        for cand in self.candidates.values_mut() {
            if counted == k {
                break;
            }
            if skip_stalled && matches!(cand.state, State::Stalled(_)) {
                stalled = true;
                continue;
            }
            counted += 1;
            match cand.state {
                State::Succeeded => answered = true,
                State::InFlight(_) | State::Stalled(_) => all_done = false,
                // Out of requests: an untried candidate is no longer waited for.
                State::NotContacted if self.sent as usize >= budget => {}
                State::NotContacted => {
                    all_done = false;
                    if held < alpha && self.in_flight < cap && !starved {
                        let req =
                            request(&self.ask, self.target, self.owner, watch_stall, &cand.peer);
                        match core.send(now, req) {
                            Some(txn) => {
                                cand.state = State::InFlight(txn);
                                self.in_flight += 1;
                                held += 1;
                                self.requests += 1;
                                self.sent += 1;
                            }
                            None => starved = true,
                        }
                    }
                }
            }
        }
        // Skipping the stalled ones ends a lookup only once somebody answered: when every
        // peer left has stalled, their late answers (or timeouts) are all there is to wait
        // for.
        if all_done && skip_stalled && stalled && !answered {
            all_done = false;
        }
        if all_done {
            Progress::Finished
        } else if starved {
            Progress::Starved
        } else {
            Progress::Waiting
        }
    }

    /// Polls a lookup that only fills a bucket of our table (bootstrap's bucket refresh):
    /// each answer from a peer we do not know yet is one more entry, an answer from one
    /// already there only names others. So it asks the closest candidates not in the
    /// table, at most `room` at a time (the entries the bucket still lacks) and alpha at
    /// most, and asks a known peer only when nothing else is left to ask and nothing is
    /// in flight, one at a time. Finished when nothing is in flight and nobody among the
    /// k closest is left to ask; the caller also ends it once the bucket has its fill.
    pub fn poll_fill(&mut self, core: &mut Env<'_>, now: Instant, room: usize) -> Progress {
        let k = core.config.k;
        let limit = core.config.alpha.max(1).min(room.max(1));
        if self.out_of_requests(k) {
            // Out of requests: it ends once those in flight land.
            return if self.in_flight == 0 {
                Progress::Finished
            } else {
                Progress::Waiting
            };
        }
        if self.in_flight >= limit {
            // Nothing may be sent: skip the walk (and its table lookups), which could only
            // find the same.
            return Progress::Waiting;
        }
        let mut unknown = Vec::new();
        let mut known = None;
        let mut waiting = false;
        for (d, cand) in self.candidates.iter().take(k) {
            match cand.state {
                State::NotContacted if core.table.contains(&cand.peer.id) => {
                    known = known.or(Some(*d));
                }
                State::NotContacted => unknown.push(*d),
                State::InFlight(_) | State::Stalled(_) => waiting = true,
                State::Succeeded => {}
            }
        }
        let mut picks = unknown;
        if picks.is_empty() && self.in_flight == 0 {
            picks.extend(known);
        }
        let mut starved = false;
        for d in picks {
            if self.in_flight >= limit || self.out_of_requests(k) {
                break;
            }
            if !self.send_to(core, now, &d) {
                starved = true;
                break;
            }
        }
        if starved {
            Progress::Starved
        } else if waiting || self.in_flight > 0 {
            Progress::Waiting
        } else {
            Progress::Finished
        }
    }

    /// Has this lookup sent all the requests it may (`MAX_REQUESTS_PER_K` × k)? (`poll`
    /// reads `sent` itself, inside its walk.)
    fn out_of_requests(&self, k: usize) -> bool {
        self.sent as usize >= k.saturating_mul(MAX_REQUESTS_PER_K)
    }

    /// Sends this lookup's request to candidate `d`; false when the request table or the
    /// transmit queue is full.
    fn send_to(&mut self, core: &mut Env<'_>, now: Instant, d: &Distance) -> bool {
        let watch_stall = self.patience != Patience::Exhaustive;
        let Some(cand) = self.candidates.get_mut(d) else {
            return false;
        };
        let req = request(&self.ask, self.target, self.owner, watch_stall, &cand.peer);
        match core.send(now, req) {
            Some(txn) => {
                cand.state = State::InFlight(txn);
                self.in_flight += 1;
                self.requests += 1;
                self.sent += 1;
                true
            }
            None => false,
        }
    }

    /// Takes the candidate that `txn` went to out of flight (stalled or not); returns its
    /// key.
    fn land(&mut self, txn: u64) -> Option<Distance> {
        let (d, c) = self
            .candidates
            .iter()
            .find(|(_, c)| c.state == State::InFlight(txn) || c.state == State::Stalled(txn))?;
        let d = *d;
        if c.state == State::InFlight(txn) {
            self.in_flight -= 1;
        }
        Some(d)
    }

    /// Request `txn` is unanswered past the retransmission timeout: its alpha slot is free
    /// for the next candidate. Returns false if `txn` is not one of this lookup's requests
    /// in flight.
    pub fn on_stall(&mut self, txn: u64) -> bool {
        let Some(c) = self
            .candidates
            .values_mut()
            .find(|c| c.state == State::InFlight(txn))
        else {
            return false;
        };
        c.state = State::Stalled(txn);
        self.in_flight -= 1;
        true
    }

    /// Whether a request past its stall is still waiting for its answer or its timeout.
    pub fn has_stalled(&self) -> bool {
        self.candidates
            .values()
            .any(|c| matches!(c.state, State::Stalled(_)))
    }

    /// Records the answer of candidate `d`: succeeded if the responder is who we asked for.
    fn settle(&mut self, d: Distance, responder: NodeId) -> Option<Candidate> {
        let cand = self.candidates.get_mut(&d)?;
        if cand.peer.id != responder {
            // Someone else answers at that address: the candidate as named does not exist.
            self.fail(d);
            self.timeouts += 1;
            return None;
        }
        cand.state = State::Succeeded;
        self.responses += 1;
        Some(*cand)
    }

    /// A response to `txn` from a peer whose id is `responder`, naming `peers`.
    /// Returns false if `txn` is not one of this lookup's requests.
    pub fn on_response(
        &mut self,
        core: &Env<'_>,
        txn: u64,
        responder: NodeId,
        peers: &[WirePeer],
    ) -> bool {
        let Some(d) = self.land(txn) else {
            return false;
        };
        let Some(cand) = self.settle(d, responder) else {
            return true;
        };
        // At most k peers from one reply, the closest to the target: a liar naming
        // hundreds of fakes gets no more room than an honest peer.
        let k = core.config.k;
        let closest = self.candidates.first_key();
        if peers.len() > k {
            let mut named: Vec<(Distance, &WirePeer)> = peers
                .iter()
                .map(|p| (p.id.distance(&self.target), p))
                .collect();
            named.sort_unstable_by_key(|(d, _)| *d);
            named.truncate(k);
            for (_, p) in named {
                self.offer(core, p.id, p.addr, cand.hops + 1);
            }
        } else {
            for p in peers {
                self.offer(core, p.id, p.addr, cand.hops + 1);
            }
        }
        if self.candidates.first_key() == closest {
            self.converged = true;
        }
        self.trim(k, k * CANDIDATES_PER_K);
        true
    }

    /// Moves candidate `d` to the failed set (bounded like the candidate list).
    fn fail(&mut self, d: Distance) {
        self.candidates.remove(&d);
        self.failed.insert(d);
        if self.failed.len() > MAX_FAILED {
            self.failed.pop_last();
        }
    }

    fn offer(&mut self, core: &Env<'_>, id: NodeId, addr: SocketAddr, hops: u32) {
        let d = id.distance(&self.target);
        if id == core.id || !usable(&addr) || addr == core.local_addr || self.failed.contains(&d) {
            return;
        }
        if !self.diverse(core, d, &addr) {
            return;
        }
        self.candidates.insert_new(
            d,
            Candidate {
                peer: Peer { id, addr },
                state: State::NotContacted,
                hops,
            },
        );
    }

    /// Room for a candidate at distance `d` and `addr` under the per-IP and per-subnet
    /// caps (`Config::max_lookup_peers_per_ip`, `max_lookup_peers_per_subnet`), so that
    /// one host or one network with many ids cannot fill the k closest. When its IP or
    /// subnet is at its cap, a closer newcomer takes the place of the farthest untried
    /// candidate there; otherwise it is refused. A crowded IP (see [`crate::crowd`]) has
    /// no room at all.
    fn diverse(&mut self, core: &Env<'_>, d: Distance, addr: &SocketAddr) -> bool {
        let Some((ip, net)) = core.diversity_keys(addr) else {
            return true;
        };
        if core.crowds.is_crowded(&ip) {
            return false;
        }
        let caps = [
            (ip, core.config.max_lookup_peers_per_ip, true),
            (net, core.config.max_lookup_peers_per_subnet, false),
        ];
        for (key, cap, is_ip) in caps {
            let same = |c: &Candidate| {
                core.diversity_keys(&c.peer.addr).is_some_and(|(i, n)| {
                    if is_ip {
                        i == key
                    } else {
                        n == key
                    }
                })
            };
            let mut count = 0;
            let mut farthest_untried = None;
            for (cd, c) in self.candidates.iter() {
                if same(c) {
                    count += 1;
                    if c.state == State::NotContacted {
                        farthest_untried = Some(*cd);
                    }
                }
            }
            if count < cap {
                continue;
            }
            match farthest_untried {
                Some(far) if d < far => self.candidates.remove(&far),
                _ => return false,
            }
        }
        true
    }

    /// Keeps the candidate list at most `max` long by dropping the farthest candidate that
    /// is not needed: one not yet contacted, or one that answered beyond the `k` closest
    /// that answered. Never a request in flight.
    ///
    /// Farthest first, whatever its state: a peer just named close to the target must
    /// outlive the far peers that answered early. (Dropping every untried candidate before
    /// any answered one threw away the closest peers a late response named once the list
    /// filled with answered far ones, and at 100,000 nodes some puts missed most of the
    /// true k closest.)
    fn trim(&mut self, k: usize, max: usize) {
        let mut excess = self.candidates.len().saturating_sub(max);
        if excess == 0 {
            return;
        }
        // Answered candidates at or before the one looked at: one that answered is surplus
        // when at least k closer ones answered too.
        let mut answered = self
            .candidates
            .values()
            .filter(|c| c.state == State::Succeeded)
            .count();
        let list = &mut self.candidates.0;
        let mut i = list.len();
        while excess > 0 && i > 0 {
            i -= 1;
            let surplus = match list[i].1.state {
                State::NotContacted => true,
                State::Succeeded => {
                    answered -= 1;
                    answered >= k
                }
                State::InFlight(_) | State::Stalled(_) => false,
            };
            if surplus {
                list.remove(i);
                excess -= 1;
            }
        }
    }

    /// A request failed (timed out).
    pub fn on_failure(&mut self, txn: u64) -> bool {
        let Some(d) = self.land(txn) else {
            return false;
        };
        self.fail(d);
        self.timeouts += 1;
        true
    }

    /// A `find_value_res` carrying the value answered `txn`. Returns the holder's hop count,
    /// or `None` if `txn` is not ours or the responder is not who we asked.
    pub fn on_value(&mut self, txn: u64, responder: NodeId) -> Option<u32> {
        let d = self.land(txn)?;
        self.settle(d, responder).map(|c| c.hops)
    }

    /// The largest hop count among candidates that answered.
    pub fn rounds(&self) -> u32 {
        self.candidates
            .values()
            .filter(|c| c.state == State::Succeeded)
            .map(|c| c.hops)
            .max()
            .unwrap_or(0)
    }

    /// Up to `count` closest candidates that answered, closest first.
    pub fn closest_succeeded(&self, count: usize) -> Vec<Peer> {
        self.candidates
            .values()
            .filter(|c| c.state == State::Succeeded)
            .take(count)
            .map(|c| c.peer)
            .collect()
    }

    /// Whether a peer at distance `d` from the target is among the `k` closest
    /// candidates the lookup knows now (failed ones left the list).
    pub fn within_closest(&self, d: &Distance, k: usize) -> bool {
        self.candidates.find(d).unwrap_or_else(|at| at) < k
    }

    /// True when the lookup started with no candidate at all.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    pub fn check(&self) -> Result<(), String> {
        let flying = self
            .candidates
            .values()
            .filter(|c| matches!(c.state, State::InFlight(_)))
            .count();
        if flying != self.in_flight {
            return Err(format!(
                "lookup counts {} in flight, has {flying}",
                self.in_flight
            ));
        }
        Ok(())
    }
}

/// The request a lookup sends `peer`: `find_node` or `find_value` for `target`.
fn request(ask: &Ask, target: NodeId, owner: Owner, watch_stall: bool, peer: &Peer) -> Request {
    let body = match ask {
        Ask::FindNode => Body::FindNode { target },
        Ask::FindValue(key) => Body::FindValue { key: key.clone() },
    };
    Request {
        addr: peer.addr,
        expected: Some(peer.id),
        body,
        owner,
        watch_stall,
    }
}

/// Addresses a lookup may contact: not unspecified, not multicast or broadcast, port not 0.
pub(crate) fn usable(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && ip != std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn lookup_with(states: &[(u8, State)]) -> Lookup {
        let mut l = Lookup {
            target: NodeId([0; 20]),
            ask: Ask::FindNode,
            candidates: Candidates::default(),
            failed: BTreeSet::new(),
            in_flight: 0,
            converged: false,
            burst: false,
            width: 0,
            patience: Patience::Exhaustive,
            owner: Owner::Verify,
            requests: 0,
            sent: 0,
            responses: 0,
            timeouts: 0,
        };
        for &(at, state) in states {
            let mut id = [0; 20];
            id[0] = at;
            let peer = Peer {
                id: NodeId(id),
                addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, at), 4000)),
            };
            let d = peer.id.distance(&l.target);
            l.candidates.insert_new(
                d,
                Candidate {
                    peer,
                    state,
                    hops: 1,
                },
            );
        }
        l
    }

    fn kept(l: &Lookup) -> Vec<u8> {
        l.candidates.values().map(|c| c.peer.id.0[0]).collect()
    }

    #[test]
    fn trim_keeps_a_close_untried_peer_and_drops_far_answered_ones() {
        // Ten far peers answered; a late response named a much closer one.
        let mut states: Vec<(u8, State)> = (100..110).map(|d| (d, State::Succeeded)).collect();
        states.push((1, State::NotContacted));
        let mut l = lookup_with(&states);
        l.trim(3, 6);
        assert_eq!(kept(&l), vec![1, 100, 101, 102, 103, 104]);
    }

    #[test]
    fn trim_keeps_the_k_closest_answered_and_requests_in_flight() {
        let mut l = lookup_with(&[
            (10, State::Succeeded),
            (20, State::Succeeded),
            (30, State::NotContacted),
            (40, State::InFlight(7)),
            (50, State::NotContacted),
            (60, State::InFlight(8)),
        ]);
        l.trim(2, 3);
        // 50 and 30 (untried) go first, farthest first; 10 and 20 are the 2 closest
        // answered; 40 and 60 are in flight: the list stays above max.
        assert_eq!(kept(&l), vec![10, 20, 40, 60]);
    }

    /// An outbox that records where requests went and numbers them.
    #[derive(Default)]
    struct Sent(Vec<SocketAddr>);

    impl super::super::env::Outbox for Sent {
        fn send(
            &mut self,
            _now: Instant,
            req: Request,
            _rng: &mut rand_chacha::ChaCha12Rng,
            _stats: &mut crate::Stats,
        ) -> Option<u64> {
            self.0.push(req.addr);
            Some(self.0.len() as u64)
        }
    }

    #[test]
    fn a_fill_lookup_asks_strangers_first_and_no_more_than_the_bucket_lacks() {
        let (now, config, own, mut table) = setup();
        // Candidates 1 to 4 are in our table already; 5 to 9 are strangers named to us.
        let states: Vec<(u8, State)> = (1..10).map(|d| (d, State::NotContacted)).collect();
        let mut l = lookup_with(&states);
        for c in l.candidates.values().filter(|c| c.peer.id.0[0] <= 4) {
            table.on_heard(now, c.peer, true);
        }
        let addr = |d: u8| SocketAddr::from((Ipv4Addr::new(10, 0, 0, d), 4000));
        let mut parts = Parts::new(&config, own, &table);
        let mut env = parts.env();
        // The bucket lacks two entries: two requests, to the closest strangers.
        assert_eq!(l.poll_fill(&mut env, now, 2), Progress::Waiting);
        assert_eq!(l.requests as usize, 2);
        // Both answer (naming nobody); it lacks one more: one request, to the next stranger.
        // The peer request `txn` went to answers it, naming nobody.
        let answer = |l: &mut Lookup, env: &Env<'_>, txn: u64| {
            let id = l
                .candidates
                .values()
                .find(|c| c.state == State::InFlight(txn))
                .map(|c| c.peer.id)
                .unwrap();
            assert!(l.on_response(env, txn, id, &[]));
        };
        for txn in 1..=2 {
            answer(&mut l, &env, txn);
        }
        assert_eq!(l.poll_fill(&mut env, now, 1), Progress::Waiting);
        assert_eq!(l.requests as usize, 3);
        answer(&mut l, &env, 3);
        // The rest: strangers 8 and 9 (alpha at a time), then the known ones one by one.
        assert_eq!(l.poll_fill(&mut env, now, 20), Progress::Waiting);
        assert_eq!(l.requests as usize, 5);
        for txn in 4..=5 {
            answer(&mut l, &env, txn);
        }
        // No stranger left: one known peer at a time, the closest first.
        assert_eq!(l.poll_fill(&mut env, now, 20), Progress::Waiting);
        assert_eq!(l.poll_fill(&mut env, now, 20), Progress::Waiting);
        assert_eq!(l.requests, 6);
        assert_eq!(
            parts.sent.0,
            vec![addr(5), addr(6), addr(7), addr(8), addr(9), addr(1)]
        );
        l.check().unwrap();
    }

    /// A base instant, the default config, our id and an empty table.
    #[allow(clippy::disallowed_methods)] // one real instant as a base
    fn setup() -> (Instant, crate::Config, NodeId, crate::routing::Table) {
        let now = Instant::now();
        let config = crate::Config::default();
        let own = NodeId([0xff; 20]);
        let table = crate::routing::Table::new(own, config.k, 8, 5, now);
        (now, config, own, table)
    }

    /// What an [`Env`] borrows, owned by a test.
    struct Parts<'a> {
        config: &'a crate::Config,
        own: NodeId,
        table: &'a crate::routing::Table,
        store: crate::store::Store,
        validator: crate::validate::AcceptAll,
        rng: rand_chacha::ChaCha12Rng,
        stats: crate::Stats,
        crowds: crate::crowd::Crowds,
        sent: Sent,
    }

    impl<'a> Parts<'a> {
        fn new(config: &'a crate::Config, own: NodeId, table: &'a crate::routing::Table) -> Self {
            use rand_core::SeedableRng;
            Parts {
                config,
                own,
                table,
                store: crate::store::Store::new(100, 1 << 20, 100),
                validator: crate::validate::AcceptAll,
                rng: rand_chacha::ChaCha12Rng::seed_from_u64(1),
                stats: crate::Stats::default(),
                crowds: crate::crowd::Crowds::new(16, 2, [0; 20]),
                sent: Sent::default(),
            }
        }

        fn env(&mut self) -> Env<'_> {
            Env {
                config: self.config,
                id: self.own,
                local_addr: SocketAddr::from((Ipv4Addr::new(10, 0, 0, 200), 4000)),
                table: self.table,
                store: &mut self.store,
                validator: &mut self.validator,
                rng: &mut self.rng,
                stats: &mut self.stats,
                ip_limits: crate::routing::IpLimits::NONE,
                crowds: &self.crowds,
                out: &mut self.sent,
            }
        }
    }

    /// A get's requests to peers that closer candidates pushed out of the k closest do
    /// not hold its slots: it asks the closer ones at once, up to k requests in flight in
    /// all. Lookups that wait on every request (a bucket refresh) or on the k
    /// closest (a put, a user's `find_node`) still count them all.
    #[test]
    fn requests_pushed_out_of_the_k_closest_free_a_gets_slots() {
        let (now, config, own, table) = setup();
        let k = config.k as u8;
        let addr = |d: u8| SocketAddr::from((Ipv4Addr::new(10, 0, 0, d), 4000));
        // The closest candidate's request stalled; then `near` candidates not asked yet,
        // then `far` requests in flight. Returns who the lookup asks.
        let run = |patience: Patience, near: u8, far: u8| {
            let mut states: Vec<(u8, State)> = vec![(1, State::Stalled(99))];
            states.extend((2..=near + 1).map(|d| (d, State::NotContacted)));
            states.extend((0..far).map(|i| (200 + i, State::InFlight(100 + u64::from(i)))));
            let mut l = lookup_with(&states).with_patience(patience);
            l.in_flight = usize::from(far);
            let mut parts = Parts::new(&config, own, &table);
            assert_eq!(l.poll(&mut parts.env(), now), Progress::Waiting);
            l.check().unwrap();
            parts.sent.0
        };
        let first = |n: u8| (2..2 + n).map(addr).collect::<Vec<_>>();
        // Three far requests (alpha), k closer peers named since: the far ones hold no
        // slot, so three more go out, to the closest.
        assert_eq!(run(Patience::SkipStalled, k, 3), first(3));
        // k - 2 far ones: only two more, since k may be in flight in all.
        assert_eq!(run(Patience::SkipStalled, k, k - 2), first(2));
        assert_eq!(run(Patience::SkipStalled, k, k), first(0));
        // While the far ones are among the k closest, they hold their slots; the stalled
        // one is not among them: with k - 1 closer, one far request still holds a slot.
        assert_eq!(run(Patience::SkipStalled, 3, 3), first(0));
        assert_eq!(run(Patience::SkipStalled, k - 1, 3), first(2));
        for patience in [Patience::Exhaustive, Patience::FreeSlots] {
            assert_eq!(run(patience, k, 3), first(0), "{patience:?}");
        }
    }

    /// Liars who answer at once, each naming k fakes closer than anyone before (and so
    /// asked next), cannot keep a lookup going: past `MAX_REQUESTS_PER_K` × k requests it
    /// asks nobody new and ends.
    #[test]
    fn a_chain_of_ever_closer_liars_ends_the_lookup() {
        let (now, config, own, table) = setup();
        let k = config.k;
        // The n-th fake: closer to the target (all zeros) as n grows, in a /24 of its own.
        let fake = |n: u64| {
            let mut id = [0u8; 20];
            id[12..].copy_from_slice(&(u64::MAX - n).to_be_bytes());
            let [_, _, _, _, _, a, b, c] = n.to_be_bytes();
            WirePeer {
                id: NodeId(id),
                addr: SocketAddr::from((Ipv4Addr::new(11 + a, b, c, 1), 4000)),
            }
        };
        for (patience, width) in [(Patience::SkipStalled, 6), (Patience::Exhaustive, 0)] {
            let mut l = lookup_with(&[(1, State::NotContacted)])
                .with_patience(patience)
                .with_width(width);
            let mut parts = Parts::new(&config, own, &table);
            let mut named = 0u64;
            let mut rounds = 0;
            while l.poll(&mut parts.env(), now) != Progress::Finished {
                rounds += 1;
                assert!(
                    rounds < 10_000,
                    "{patience:?}: still asking after {rounds} rounds"
                );
                let flying: Vec<(u64, NodeId)> = l
                    .candidates
                    .values()
                    .filter_map(|c| match c.state {
                        State::InFlight(txn) => Some((txn, c.peer.id)),
                        _ => None,
                    })
                    .collect();
                for (txn, id) in flying {
                    let peers: Vec<WirePeer> = (named..named + k as u64).map(fake).collect();
                    named += k as u64;
                    assert!(l.on_response(&parts.env(), txn, id, &peers));
                }
                l.check().unwrap();
            }
            assert_eq!(l.requests as usize, k * MAX_REQUESTS_PER_K, "{patience:?}");
        }
    }
}
