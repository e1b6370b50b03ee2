//! Storing a value on the k closest nodes.
//!
//! A user's put always sends `set` to every one of the k closest, so an updated value
//! replaces the old one everywhere (the reference skips nodes whose `check_store` says they
//! hold the key, so updates never land there). Republishing an unchanged value asks
//! `check_store` first and sends `set` only where it is missing, which is what
//! `check_store` is good for.

use std::time::Instant;

use super::{Ask, Env, Lookup, Outcome, Patience, Poll, Progress, Query};
use crate::wire::Body;
use crate::{NodeId, Peer, PutOk, QueryError, QueryId, QueryResult, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Check,
    CheckInFlight(u64),
    Set,
    SetInFlight(u64),
    Acked,
    Failed,
}

/// A put or a republish.
pub(crate) struct Put {
    key: String,
    value: Value,
    check_first: bool,
    lookup: Lookup,
    /// Set once the lookup has finished: the closest peers and where each one is.
    targets: Option<Vec<(Peer, Step)>>,
}

impl Put {
    pub fn new(core: &Env<'_>, id: QueryId, key: String, value: Value, check_first: bool) -> Put {
        let target = NodeId::for_key(&key);
        Put {
            key,
            value,
            check_first,
            // Patient at the end: the replicas go to the k closest that answer, and a slow
            // one must not lose its place to a farther one for being slow.
            lookup: Lookup::new(core, target, Ask::FindNode, Query::owner(id, 0))
                .with_final_burst()
                .with_patience(Patience::FreeSlots),
            targets: None,
        }
    }

    pub fn lookup(&self) -> Option<&Lookup> {
        Some(&self.lookup)
    }

    /// A request of the lookup (tag 0) stalled.
    pub fn on_stall(&mut self, tag: u32, txn: u64) {
        if self.targets.is_none() && tag == 0 {
            self.lookup.on_stall(txn);
        }
    }

    pub fn on_outcome(
        &mut self,
        core: &mut Env<'_>,
        tag: u32,
        outcome: Outcome<'_>,
        responses: &mut u32,
        timeouts: &mut u32,
    ) {
        match (&mut self.targets, tag) {
            (None, 0) => super::lookup_outcome(&mut self.lookup, core, &outcome),
            (Some(targets), 1) => {
                let txn = outcome.txn();
                let Some((_, step)) = targets
                    .iter_mut()
                    .find(|(_, s)| *s == Step::CheckInFlight(txn) || *s == Step::SetInFlight(txn))
                else {
                    return;
                };
                *step = match outcome {
                    Outcome::Response { body, .. } => {
                        *responses += 1;
                        match body {
                            // It already holds the (unchanged, republished) value.
                            Body::CheckStoreRes { has_key: true } => Step::Acked,
                            Body::CheckStoreRes { has_key: false } => Step::Set,
                            _ => Step::Acked,
                        }
                    }
                    Outcome::Failure { .. } => {
                        *timeouts += 1;
                        Step::Failed
                    }
                    Outcome::Stalled { .. } => return,
                };
            }
            _ => {}
        }
    }

    pub fn poll(
        &mut self,
        core: &mut Env<'_>,
        now: Instant,
        id: QueryId,
        requests: &mut u32,
    ) -> Poll {
        if self.targets.is_none() {
            let l = &mut self.lookup;
            match l.poll(core, now) {
                Progress::Finished => {
                    if l.is_empty() {
                        return Poll::Done(QueryResult::Put(Err(QueryError::NoPeers)));
                    }
                    let first = if self.check_first {
                        Step::Check
                    } else {
                        Step::Set
                    };
                    // We hold the record too: when we are one of the k closest, the replica
                    // set is us and k - 1 others. Handing it to the (k+1)-th closest as
                    // well would give that node a fresh expiry at every restore, and the
                    // record would outlive its publisher forever.
                    let k = core.config.k;
                    let mut peers = l.closest_succeeded(k);
                    let target = l.target();
                    let own = core.id.distance(target);
                    if peers.len() == k && peers.last().is_some_and(|p| own < p.id.distance(target))
                    {
                        peers.pop();
                    }
                    let targets = peers.into_iter().map(|p| (p, first)).collect();
                    self.targets = Some(targets);
                }
                p => {
                    return Poll::Pending {
                        starved: p == Progress::Starved,
                    }
                }
            }
        }
        let Some(targets) = &mut self.targets else {
            return Poll::Pending { starved: false };
        };
        let mut done = true;
        for (peer, step) in targets.iter_mut() {
            let body = match step {
                Step::Check => Body::CheckStore {
                    key: self.key.clone(),
                    size: self.value.wire_size() as u64,
                },
                Step::Set => Body::Set {
                    key: self.key.clone(),
                    value: self.value.clone(),
                },
                Step::CheckInFlight(_) | Step::SetInFlight(_) => {
                    done = false;
                    continue;
                }
                Step::Acked | Step::Failed => continue,
            };
            let is_check = *step == Step::Check;
            match core.send_request(now, peer.addr, Some(peer.id), body, Query::owner(id, 1)) {
                Some(txn) => {
                    *requests += 1;
                    *step = if is_check {
                        Step::CheckInFlight(txn)
                    } else {
                        Step::SetInFlight(txn)
                    };
                    done = false;
                }
                None => return Poll::Pending { starved: true },
            }
        }
        if !done {
            return Poll::Pending { starved: false };
        }
        let replicas = targets.iter().filter(|(_, s)| *s == Step::Acked).count();
        Poll::Done(QueryResult::Put(if replicas == 0 {
            Err(QueryError::NotStored)
        } else {
            Ok(PutOk {
                replicas,
                attempted: targets.len(),
            })
        }))
    }
}
