//! Ending a user's query early: [`Node::cancel`] and [`Node::set_deadline`].

use std::time::Instant;

use crate::idle::free_if_empty;
use crate::query::{Kind, Purpose};
use crate::{QueryError, QueryId, QueryResult};

use super::Node;

impl Node {
    /// Command: ends the user query `id` now. No [`crate::Event::QueryFinished`] follows
    /// (the caller asked for the end, it knows): its requests still in flight stay in
    /// flight until answered or timed out, their answers teach the routing table as any
    /// answer does, but the query never hears of them; its `max_active_queries` slot is
    /// free at once. Counted in [`crate::Stats::queries_cancelled`]. Returns false (and
    /// does nothing) when `id` is not a running user query: finished, cancelled, or one
    /// of the node's own maintenance queries.
    pub fn cancel(&mut self, now: Instant, id: QueryId) -> bool {
        if !self.is_user_query(id) {
            return false;
        }
        self.last_now = now;
        self.queries.remove(&id);
        free_if_empty(&mut self.queries);
        self.dirty.remove(&id);
        self.starved.remove(&id);
        free_if_empty(&mut self.dirty);
        free_if_empty(&mut self.starved);
        self.forget_deadline(id);
        self.core.rpc.detach(id);
        self.core.stats.queries_cancelled += 1;
        // The freed slot may let a due republish start.
        self.run(now);
        true
    }

    /// Command: the user query `id` ends at `at` if it has not finished by then, with
    /// [`QueryError::DeadlinePassed`] as its result (counted in
    /// [`crate::Stats::queries_past_deadline`]), as if cancelled otherwise: its late
    /// answers are ignored. [`Node::poll_timeout`] includes the deadline. A later call
    /// replaces the deadline; returns false when `id` is not a running user query.
    pub fn set_deadline(&mut self, id: QueryId, at: Instant) -> bool {
        if !self.is_user_query(id) {
            return false;
        }
        self.forget_deadline(id);
        self.deadlines.insert((at, id));
        true
    }

    fn is_user_query(&self, id: QueryId) -> bool {
        self.queries
            .get(&id)
            .is_some_and(|q| q.purpose == Purpose::User)
    }

    /// Drops the deadline of `id`, if it has one (a finished or cancelled query).
    pub(super) fn forget_deadline(&mut self, id: QueryId) {
        if self.deadlines.is_empty() {
            return;
        }
        self.deadlines.retain(|(_, q)| *q != id);
        free_if_empty(&mut self.deadlines);
    }

    /// The earliest query deadline.
    pub(super) fn next_query_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Ends every query whose deadline is at or before `now`.
    pub(super) fn expire_deadlines(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(q) = self.queries.remove(&id) else {
                continue;
            };
            free_if_empty(&mut self.queries);
            self.dirty.remove(&id);
            free_if_empty(&mut self.dirty);
            self.core.rpc.detach(id);
            self.core.stats.queries_past_deadline += 1;
            let result = failed(&q.kind, QueryError::DeadlinePassed);
            self.finish(q, result, now);
        }
        free_if_empty(&mut self.deadlines);
    }
}

/// The result of a query of this kind that failed with `e`.
pub(super) fn failed(kind: &Kind, e: QueryError) -> QueryResult {
    match kind {
        Kind::Ping { .. } => QueryResult::Ping(Err(e)),
        Kind::Bootstrap(_) => QueryResult::Bootstrap(Err(e)),
        Kind::FindNode(_) => QueryResult::FindNode(Err(e)),
        Kind::FindValue { get: true, .. } => QueryResult::Get(Err(e)),
        Kind::FindValue { .. } => QueryResult::FindValue(Err(e)),
        Kind::Put(_) => QueryResult::Put(Err(e)),
    }
}
