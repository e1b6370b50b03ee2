//! Maintenance: queries with news act, republishes start, finished queries report.

use super::*;

impl Node {
    pub(super) fn republish_capacity(&self) -> bool {
        self.republishing < self.core.config.max_concurrent_republish
            && self.queries.len() < self.core.config.max_active_queries
    }

    /// Lets every query with news act, starts due republishes, until nothing changes.
    pub(super) fn run(&mut self, now: Instant) {
        // What almost every served request finds: no query has news and no republish is
        // due. (The sets are freed whenever they empty, here or where a query leaves them.)
        if self.dirty.is_empty() && self.starved.is_empty() && !self.republish_due(now) {
            return;
        }
        loop {
            if self.core.can_send() && !self.starved.is_empty() {
                self.dirty.append(&mut self.starved);
            }
            while let Some(id) = self.dirty.pop_first() {
                let Some(q) = self.queries.get_mut(&id) else {
                    continue;
                };
                match self.core.with_env(|env| q.poll(env, now)) {
                    Poll::Pending { starved } => {
                        if starved {
                            self.starved.insert(id);
                        }
                    }
                    Poll::Done(result) => {
                        if let Some(q) = self.queries.remove(&id) {
                            free_if_empty(&mut self.queries);
                            self.finish(q, result, now);
                        }
                    }
                }
            }
            if !self.start_due_republish(now) {
                break;
            }
        }
        free_if_empty(&mut self.dirty);
        free_if_empty(&mut self.starved);
    }

    /// Whether a republish would start at `now` (as [`Node::start_due_republish`] sees it).
    fn republish_due(&self, now: Instant) -> bool {
        self.republish_capacity() && self.core.store.next_republish().is_some_and(|at| at <= now)
    }

    pub(super) fn start_due_republish(&mut self, now: Instant) -> bool {
        let mut started = false;
        while self.republish_capacity() {
            let publisher = self.core.config.original_publisher_republish_interval;
            let restore = self.core.config.non_publisher_restore_interval;
            let Some((key, record)) =
                self.core
                    .store
                    .take_due_republish(now, &|kind: store::Kind| match kind {
                        store::Kind::Published => later(now, publisher),
                        _ => later(now, restore),
                    })
            else {
                break;
            };
            if record.kind == store::Kind::Published {
                // A publisher's republish renews its own copy too, as the reference's set().
                self.core
                    .store
                    .renew(&key, later(now, self.core.config.key_expiry));
            }
            let id = self.next_id();
            // The publisher's daily republish is a full `set`, as in the reference: it
            // renews every replica's expiry. (A `check_store` first would find them all
            // still holding the record, ten seconds before it expires everywhere.)
            // Others restore only where the record is missing.
            let check_first = record.kind != store::Kind::Published;
            let put = self
                .core
                .with_env(|env| Put::new(env, id, key, record.value, check_first));
            self.start(now, Purpose::Republish, id, Kind::Put(put));
            self.republishing += 1;
            started = true;
        }
        started
    }

    pub(super) fn finish(&mut self, q: Query, result: QueryResult, now: Instant) {
        self.starved.remove(&q.id);
        free_if_empty(&mut self.starved);
        self.forget_deadline(q.id);
        match q.purpose {
            Purpose::User => self.core.events.push_back(Event::QueryFinished {
                id: q.id,
                result,
                stats: q.stats(now),
            }),
            Purpose::Republish => self.republishing = self.republishing.saturating_sub(1),
            Purpose::Refresh => {}
        }
    }
}
