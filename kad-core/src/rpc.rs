//! Requests in flight: transaction id -> where it went, what it asked, when it gives up,
//! and when it goes out again if no answer came; and the node's round-trip estimate, from
//! which a lookup learns when an unanswered request has *stalled* (see [`Rpc::rto`]).

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
    /// A `find_value` asking the sender of a `set` that would change a value we hold
    /// whether it holds that value itself (see `Core::confirm`).
    Confirm,
    /// A `find_value` asking one of our closest peers to a key whether it holds the value
    /// a `set_cached` offered us (see `Core::check_cached`).
    CacheCheck,
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
    /// When it was sent (first copy).
    pub sent: Instant,
    /// When its owner is told it has stalled, if it asked to be ([`Rpc::watch_stall`]).
    pub stall: Option<Instant>,
    /// A copy went out again: an answer cannot tell which copy it answers, so it gives no
    /// round-trip sample (Karn's rule).
    pub resent: bool,
}

/// The shortest retransmission timeout [`Rpc::rto`] gives: below it, the scheduling noise
/// of a busy host (or a peer's garbage collector) would count as loss.
pub(crate) const MIN_RTO: Duration = Duration::from_millis(20);
/// The timeout before the first round-trip sample, TCP's initial RTO (RFC 6298).
pub(crate) const INITIAL_RTO: Duration = Duration::from_secs(1);

/// The node's smoothed round trip and its mean deviation, in microseconds (RFC 6298's
/// SRTT and RTTVAR). One for the whole node, not one per peer: 8 bytes, whatever the
/// table holds, and a node's peers are spread over the same Internet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RttEstimate {
    srtt_us: u32,
    rttvar_us: u32,
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
    /// Requests whose owner wants to hear when they stall, by stall time.
    stalls: BTreeSet<(Instant, u64)>,
    /// Round trips measured so far (`None` before the first answer).
    rtt: Option<RttEstimate>,
    /// Every round-trip sample, for the `kad_rtt_seconds` metric.
    #[cfg(feature = "metrics")]
    rtt_histogram: prometheus_client::metrics::histogram::Histogram,
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
            stalls: BTreeSet::new(),
            rtt: None,
            #[cfg(feature = "metrics")]
            rtt_histogram: crate::metrics::rtt_histogram(),
            max,
        }
    }

    /// When a request has stalled: the smoothed round trip plus two mean deviations (RFC
    /// 6298's estimator; TCP's retransmission timeout adds four), at least [`MIN_RTO`], at
    /// most `max` (the `query_timeout`); [`INITIAL_RTO`] (at most `max`) before the first
    /// answer. A request unanswered for this long has probably gone to a dead or slow
    /// peer: a user's lookup stops waiting on it (it stays in flight until `max`, and a
    /// late answer still counts). Two deviations rather than four: a stall costs one more
    /// request, not a retransmission, and where round trips differ from peer to peer a
    /// slow peer should not hold a lookup's slot for four deviations (see BENCHMARKS.md,
    /// issue 18).
    pub fn stall_after(&self, max: Duration) -> Duration {
        let rto = match self.rtt {
            None => INITIAL_RTO,
            Some(e) => Duration::from_micros(u64::from(e.srtt_us) + 2 * u64::from(e.rttvar_us))
                .max(MIN_RTO),
        };
        rto.min(max)
    }

    /// The smoothed round trip, if any answer came yet.
    #[cfg(test)]
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt
            .map(|e| Duration::from_micros(u64::from(e.srtt_us)))
    }

    /// Every round-trip sample so far.
    #[cfg(feature = "metrics")]
    pub fn rtt_histogram(&self) -> &prometheus_client::metrics::histogram::Histogram {
        &self.rtt_histogram
    }

    /// Feeds one round-trip sample into the estimate (RFC 6298, gains 1/8 and 1/4).
    fn sample(&mut self, rtt: Duration) {
        #[cfg(feature = "metrics")]
        self.rtt_histogram.observe(rtt.as_secs_f64());
        let r = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
        self.rtt = Some(match self.rtt {
            None => RttEstimate {
                srtt_us: r,
                rttvar_us: r / 2,
            },
            Some(e) => {
                let dev = e.srtt_us.abs_diff(r);
                RttEstimate {
                    rttvar_us: ((3 * u64::from(e.rttvar_us) + u64::from(dev)) / 4) as u32,
                    srtt_us: ((7 * u64::from(e.srtt_us) + u64::from(r)) / 8) as u32,
                }
            }
        });
    }

    /// Asks to be told (by [`Rpc::pop_stalled`]) when request `txn` is still unanswered at
    /// `at`; nothing if `at` is not before its deadline.
    pub fn watch_stall(&mut self, txn: u64, at: Instant) {
        let Some(p) = self.pending.get_mut(&txn) else {
            return;
        };
        if at >= p.deadline {
            return;
        }
        if let Some(old) = p.stall.replace(at) {
            self.stalls.remove(&(old, txn));
        }
        self.stalls.insert((at, txn));
    }

    /// Removes one stall notice due at or before `now`: the request (still in flight) and
    /// who owns it.
    pub fn pop_stalled(&mut self, now: Instant) -> Option<(u64, Owner)> {
        let &(at, txn) = self.stalls.first()?;
        if at > now {
            return None;
        }
        self.stalls.pop_first();
        let p = self.pending.get_mut(&txn)?;
        p.stall = None;
        Some((txn, p.owner))
    }

    /// Removes request `txn`, answered at `now`, and learns its round trip (unless a copy
    /// went out again).
    pub fn answered(&mut self, txn: u64, now: Instant) -> Option<Pending> {
        let p = self.remove(txn)?;
        if !p.resent {
            self.sample(now.saturating_duration_since(p.sent));
        }
        Some(p)
    }

    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
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
        let p = self.pending.get_mut(&txn)?;
        p.resent = true;
        let addr = p.addr;
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
        if let Some(at) = p.stall {
            self.stalls.remove(&(at, txn));
        }
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
            free_if_empty(&mut self.stalls);
        }
    }

    /// The earliest deadline, retransmission or stall.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.deadlines.first(),
            self.resend_at.first(),
            self.stalls.first(),
        ]
        .into_iter()
        .flatten()
        .map(|(t, _)| *t)
        .min()
    }

    /// Removes and returns one request whose deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(u64, Pending)> {
        let &(deadline, txn) = self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.deadlines.pop_first();
        let p = self.pending.remove(&txn)?;
        if let Some(at) = p.stall {
            self.stalls.remove(&(at, txn));
        }
        self.forget_resend(txn);
        self.forget_addr(p.addr);
        self.free_if_idle();
        Some((txn, p))
    }

    /// Query `id` has ended early (cancelled, or past its deadline): its requests stay in
    /// flight, owned by nobody (their answers still teach the routing table), and are not
    /// sent again nor watched for stalls.
    pub fn detach(&mut self, id: QueryId) {
        let mine: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.owner, Owner::Query { id: q, .. } if q == id))
            .map(|(txn, _)| *txn)
            .collect();
        for txn in mine {
            self.forget_resend(txn);
            if let Some(p) = self.pending.get_mut(&txn) {
                p.owner = Owner::Detached;
                if let Some(at) = p.stall.take() {
                    self.stalls.remove(&(at, txn));
                }
            }
        }
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
        let watched = self.pending.values().filter(|p| p.stall.is_some()).count();
        if watched != self.stalls.len() {
            return Err("stall notices out of step".into());
        }
        for (txn, p) in &self.pending {
            if let Some(at) = p.stall {
                if !self.stalls.contains(&(at, *txn)) || at >= p.deadline {
                    return Err(format!("stall notice of {txn:x} mistimed"));
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pending(now: Instant, timeout: Duration) -> Pending {
        Pending {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 4000)),
            expected: None,
            kind: RequestKind::Ping,
            deadline: now + timeout,
            owner: Owner::Detached,
            sent: now,
            stall: None,
            resent: false,
        }
    }

    #[test]
    fn rto_follows_the_measured_round_trips_within_its_bounds() {
        let max = Duration::from_secs(2);
        #[allow(clippy::disallowed_methods)] // an epoch for the test's own clock
        let t0 = Instant::now();
        let mut rpc = Rpc::new(16);
        assert_eq!(rpc.stall_after(max), INITIAL_RTO);
        assert_eq!(
            rpc.stall_after(Duration::from_millis(300)),
            Duration::from_millis(300)
        );
        // Twenty answers after 80 ms each: SRTT 80 ms, the deviation decays towards 0.
        for txn in 0..20 {
            let now = t0 + Duration::from_secs(txn);
            rpc.insert(txn, pending(now, max));
            rpc.answered(txn, now + Duration::from_millis(80));
        }
        assert_eq!(rpc.srtt(), Some(Duration::from_millis(80)));
        let rto = rpc.stall_after(max);
        assert!(
            rto > Duration::from_millis(80) && rto < Duration::from_millis(90),
            "{rto:?}"
        );
        // A retransmitted request's answer is no sample (Karn).
        let now = t0 + Duration::from_secs(100);
        rpc.insert(99, pending(now, max));
        rpc.resend(99, now, 1, Body::Ping);
        assert!(rpc.pop_resend(now + Duration::from_secs(1)).is_some());
        rpc.answered(99, now + Duration::from_millis(1900));
        assert_eq!(rpc.srtt(), Some(Duration::from_millis(80)));
        // Tiny round trips: the floor.
        let mut fast = Rpc::new(4);
        fast.insert(1, pending(t0, max));
        fast.answered(1, t0 + Duration::from_micros(50));
        assert_eq!(fast.stall_after(max), MIN_RTO);
    }

    #[test]
    fn a_stall_notice_fires_once_and_leaves_with_its_request() {
        let max = Duration::from_secs(2);
        #[allow(clippy::disallowed_methods)] // an epoch for the test's own clock
        let t0 = Instant::now();
        let mut rpc = Rpc::new(16);
        rpc.insert(1, pending(t0, max));
        rpc.insert(2, pending(t0, max));
        rpc.watch_stall(1, t0 + Duration::from_millis(300));
        rpc.watch_stall(2, t0 + Duration::from_millis(400));
        // Past the deadline: no notice.
        rpc.insert(3, pending(t0, max));
        rpc.watch_stall(3, t0 + max);
        rpc.check().unwrap();
        assert_eq!(rpc.next_deadline(), Some(t0 + Duration::from_millis(300)));
        assert_eq!(rpc.pop_stalled(t0 + Duration::from_millis(299)), None);
        let (txn, _) = rpc.pop_stalled(t0 + Duration::from_millis(300)).unwrap();
        assert_eq!(txn, 1);
        assert!(rpc.contains(1), "a stalled request stays in flight");
        assert_eq!(rpc.pop_stalled(t0 + Duration::from_millis(300)), None);
        // Answered before its notice: the notice goes with it.
        rpc.answered(2, t0 + Duration::from_millis(350));
        assert_eq!(rpc.pop_stalled(t0 + max), None);
        rpc.check().unwrap();
        assert_eq!(rpc.next_deadline(), Some(t0 + max));
    }
}
