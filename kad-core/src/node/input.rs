//! Input: datagrams (requests and the responses to ours) and timeouts.

use super::*;

impl Node {
    /// Input: one datagram received from `from`. Garbage is dropped and counted in
    /// [`Node::stats`]; it never panics and never returns an error.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.last_now = now;
        self.core.stats.datagrams_received += 1;
        // Bound by reference: moving the message out of the result copied it.
        let mut decoded = self.core.config.codec.decode(bytes);
        let msg = match &mut decoded {
            Ok(m) => m,
            Err(DecodeError::UnknownType) => {
                self.core.stats.unknown_type += 1;
                return;
            }
            Err(_) => {
                self.core.stats.malformed += 1;
                return;
            }
        };
        if msg.body.is_request() {
            if let Some(kind) = msg.body.request_kind() {
                self.core.stats.requests_received.count(kind);
            }
            self.core.on_request(now, from, msg, bytes.len(), false);
        } else {
            self.on_response(now, from, msg);
        }
        self.run(now);
    }

    pub(super) fn on_response(&mut self, now: Instant, from: SocketAddr, msg: &Message) {
        let core = &mut self.core;
        let Some((txn, pending)) = msg
            .txn
            .to_u64()
            .and_then(|t| core.rpc.get(t).map(|p| (t, *p)))
        else {
            core.stats.responses_unmatched += 1;
            return;
        };
        if core.config.verify_response_source && pending.addr != from {
            core.stats.responses_wrong_source += 1;
            return;
        }
        if !msg.body.answers(pending.kind) {
            core.stats.responses_wrong_kind += 1;
            return;
        }
        core.rpc.answered(txn, now);
        core.stats.responses_accepted += 1;
        let sender = msg.sender.id;
        if let Some(expected) = pending.expected {
            if expected != sender {
                // Another node answers at that address now: the one we knew there is gone
                // (and one that merely claimed it is not who it said).
                core.failed(&expected, &pending.addr);
            }
        }
        let peer = Peer {
            id: sender,
            addr: from,
        };
        // It answered a request of ours from the address the request went to: it owns the
        // address, and any request held for it can be served. (With source verification
        // switched off a response from elsewhere proves nothing about either address, and
        // changes nothing in the table.)
        if pending.addr == from {
            if !msg.client {
                core.count_id(now, peer);
                core.proven(now, peer);
            }
            // The table's entries and replacements carry their proof. The cache remembers
            // the others we had to verify (they asked us for something large, or to
            // store), not every address that ever answered a lookup of ours: that was most
            // of a long-running node's memory, and such an address, should it ask for a
            // large reply later, pays one round trip.
            let wanted = core.verifying.contains_key(&from);
            if wanted && !core.table.is_verified(&peer.id, &peer.addr) {
                let allowance = core.allowance();
                core.verified.insert(from, sender, now, allowance);
                core.note(|| Event::NodeVerified { peer });
            }
            core.release(now, from, true);
        }
        match pending.owner {
            Owner::Query { id, tag } => {
                // An answer from a crowded IP (see `crate::crowd`), or from a client (it
                // is in nobody's table; the flag would keep a Sybil out of the count),
                // counts as no answer.
                let crowded = !msg.client && core.crowded(&from);
                if crowded {
                    core.stats.answers_from_crowded += 1;
                }
                if let Some(q) = self.queries.get_mut(&id) {
                    let outcome = if msg.client || crowded {
                        Outcome::Failure { txn }
                    } else {
                        Outcome::Response {
                            txn,
                            from,
                            sender,
                            body: &msg.body,
                        }
                    };
                    core.with_env(|env| q.on_outcome(env, now, tag, outcome));
                    self.dirty.insert(id);
                }
            }
            // A pong from elsewhere (source verification off) verifies nothing.
            Owner::Verify if pending.addr != from => core.release(now, pending.addr, false),
            Owner::Verify => {}
            Owner::Confirm if pending.addr != from => core.confirmed(now, txn, None),
            Owner::Confirm => core.confirmed(now, txn, Some(&msg.body)),
            Owner::CacheCheck => core.cache_checked(now, txn, Some(&msg.body)),
            Owner::TablePing | Owner::Detached => {}
        }
    }

    /// Input: time has passed. Call it when [`Node::poll_timeout`]'s deadline is reached;
    /// early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.core.crowds.advance(now);
        while let Some((txn, p)) = self.core.rpc.pop_expired(now) {
            self.core.stats.request_timeouts += 1;
            if let Some(id) = p.expected {
                self.core.failed(&id, &p.addr);
            }
            match p.owner {
                Owner::Query { id, tag } => {
                    if let Some(q) = self.queries.get_mut(&id) {
                        let outcome = Outcome::Failure { txn };
                        self.core
                            .with_env(|env| q.on_outcome(env, now, tag, outcome));
                        self.dirty.insert(id);
                    }
                }
                Owner::Verify => self.core.release(now, p.addr, false),
                Owner::Confirm => self.core.confirmed(now, txn, None),
                Owner::CacheCheck => self.core.cache_checked(now, txn, None),
                Owner::TablePing | Owner::Detached => {}
            }
        }
        // Requests a lookup stops waiting on (they stay in flight).
        while let Some((txn, owner)) = self.core.rpc.pop_stalled(now) {
            if let Owner::Query { id, tag } = owner {
                if let Some(q) = self.queries.get_mut(&id) {
                    let outcome = Outcome::Stalled { txn };
                    self.core
                        .with_env(|env| q.on_outcome(env, now, tag, outcome));
                    self.dirty.insert(id);
                }
            }
        }
        self.expire_deadlines(now);
        // After the expiries: a copy of a request that has run out of time is not sent.
        self.core.resend_due(now);
        let expired = self.core.store.expire(now);
        self.core.stats.records_expired += expired;
        if expired > 0 {
            self.core.note(|| Event::RecordsExpired { count: expired });
        }
        if now >= self.next_refresh {
            let interval = self.core.config.bucket_refresh_interval;
            self.next_refresh = later(now, super::refresh_check_period(interval));
            for i in self.core.table.stale_buckets(now, interval) {
                if self.queries.len() >= self.core.config.max_active_queries {
                    break;
                }
                let target = self.core.table.random_id_in_bucket(i, &mut self.core.rng);
                self.start_lookup(now, Purpose::Refresh, target);
            }
        }
        self.run(now);
    }
}
