//! Records others ask us to keep: stores waiting for their sender's proof, cached copies
//! checked with the peers closest to their key, quotas, and which records we serve.

use super::*;

impl Core {
    /// A store from an address that has not proven itself waits for it to (or is dropped,
    /// and counted, when there is no room to hold it).
    pub(super) fn hold_store(
        &mut self,
        now: Instant,
        peer: Peer,
        request: Option<Message>,
        len: usize,
    ) {
        let Some(request) = request else {
            return self.stats.stores_unproven_dropped += 1;
        };
        let key = match &request.body {
            Body::Set { key, .. } | Body::SetCached { key, .. } => key.clone(),
            _ => String::new(),
        };
        if !self.hold(now, peer, request, len) {
            self.stats.stores_unproven_dropped += 1;
            self.refused(peer.addr, &key, RefuseReason::Unproven);
        }
    }

    /// Stores `value` as our replica of `key` (a stranger's `set` of a key we published
    /// makes it a replica: we stop republishing it as ours; the last writer republishes its
    /// own value). False, counted, when the store refuses it.
    pub(super) fn store_replica(
        &mut self,
        now: Instant,
        from: SocketAddr,
        key: String,
        value: Value,
    ) -> bool {
        let record = Record {
            value,
            kind: store::Kind::Replica,
            expires: later(now, self.config.key_expiry),
            republish_at: Some(later(now, self.config.non_publisher_restore_interval)),
            source: self.ip_key(&from),
        };
        if self.store.put(&key, record).is_err() {
            self.stats.requests_refused += 1;
            return false;
        }
        true
    }

    /// A `set` from a proven address would change the value we hold for its key. The
    /// address proved it can answer, not that it sent this: a `set` forged with the source
    /// of the key's publisher (a proven peer) would otherwise overwrite the key everywhere.
    /// So we ask the sender's address for the key (`find_value`), and apply the `set`, and
    /// answer it, only if the answer is the value it carries: the writer holds what it
    /// writes (a kad or reference node keeps its own published value). One round trip per
    /// replica per update; at most [`UNPROVEN_PER_IP`] waiting per IP and
    /// `max_held_replies` in all (the oldest dropped).
    pub(super) fn confirm(&mut self, now: Instant, c: Confirm) {
        let ip = self.ip_key(&c.peer.addr);
        let same_ip = ip.map_or(0, |key| {
            self.confirming
                .values()
                .filter(|(_, w)| self.ip_key(&w.peer.addr) == Some(key))
                .count()
        });
        if same_ip >= UNPROVEN_PER_IP {
            self.stats.updates_unconfirmed += 1;
            return;
        }
        if self.confirming.len() >= self.config.max_held_replies {
            if let Some((_, (txn, _))) = self.confirming.pop_first() {
                self.rpc.remove(txn);
                self.stats.updates_unconfirmed += 1;
            }
        }
        let body = Body::FindValue { key: c.key.clone() };
        let Some(txn) = self.send_request(now, c.peer.addr, None, body, Owner::Confirm) else {
            self.stats.updates_unconfirmed += 1;
            return;
        };
        let order = self.next_hold;
        self.next_hold += 1;
        self.confirming.insert(order, (txn, c));
    }

    /// The answer to a confirming `find_value` (`None`: it timed out).
    pub(super) fn confirmed(&mut self, now: Instant, txn: u64, answer: Option<&Body>) {
        let Some(order) = self
            .confirming
            .iter()
            .find(|(_, (t, _))| *t == txn)
            .map(|(o, _)| *o)
        else {
            return;
        };
        let Some((_, c)) = self.confirming.remove(&order) else {
            return;
        };
        free_if_empty(&mut self.confirming);
        let holds =
            matches!(answer, Some(Body::FindValueRes(FindValueRes::Value(v))) if *v == c.value);
        if !holds {
            self.stats.updates_unconfirmed += 1;
            return;
        }
        let Confirm {
            peer,
            txn,
            key,
            value,
            len,
        } = c;
        if !self.store_replica(now, peer.addr, key.clone(), value) {
            return self.refused(peer.addr, &key, RefuseReason::StoreFull);
        }
        self.stored(peer.addr, &key, false, true);
        self.stats.updates_confirmed += 1;
        self.stats.requests_answered += 1;
        let ctx = Ctx {
            peer,
            len,
            proven: Some(true),
            request: None,
        };
        self.reply(now, ctx, txn, Body::SetRes);
    }

    /// Do we hold `key` as a replica or as its publisher (which no cached copy replaces)?
    pub(super) fn holds_better(&self, now: Instant, key: &str) -> bool {
        matches!(self.store.get(now, key), Some(r) if r.kind != store::Kind::Cached)
    }

    /// A proven peer offers a cached copy of `key`. Anybody's proven port can send
    /// `set_cached`, and a forged copy on the nodes around a key would be served to every
    /// lookup passing by, so we ask our [`CACHE_CHECK_PEERS`] closest proven peers to the
    /// key (the replicas, as a copy is offered to nodes near it) and keep the copy only
    /// if most of them hold the same value. Three small requests per offer; at most
    /// [`UNPROVEN_PER_IP`] checks per offering IP and `max_held_replies` in all (the
    /// oldest given up).
    pub(super) fn check_cached(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: &NodeId,
        key: String,
        value: Value,
    ) {
        let ip = self.ip_key(&from);
        let same_ip = ip.map_or(0, |k| {
            self.cache_checks
                .values()
                .filter(|c| self.ip_key(&c.from) == Some(k))
                .count()
        });
        if same_ip >= UNPROVEN_PER_IP || self.cache_checks.values().any(|c| c.key == key) {
            self.stats.cached_unconfirmed += 1;
            return;
        }
        if self.cache_checks.len() >= self.config.max_held_replies {
            if let Some((_, old)) = self.cache_checks.pop_first() {
                for txn in old.asked {
                    self.rpc.remove(txn);
                }
                self.stats.cached_unconfirmed += 1;
            }
        }
        let peers =
            self.table
                .closest_verified(&NodeId::for_key(&key), CACHE_CHECK_PEERS, Some(sender));
        let mut asked = Vec::new();
        for p in peers.into_iter().filter(|p| p.addr != from) {
            let body = Body::FindValue { key: key.clone() };
            if let Some(txn) = self.send_request(now, p.addr, Some(p.id), body, Owner::CacheCheck) {
                asked.push(txn);
            }
        }
        if asked.is_empty() {
            self.stats.cached_unconfirmed += 1;
            return;
        }
        let order = self.next_hold;
        self.next_hold += 1;
        let polled = asked.len();
        self.cache_checks.insert(
            order,
            CacheCheck {
                key,
                value,
                from,
                asked,
                polled,
                agree: 0,
                dissent: 0,
            },
        );
    }

    /// An answer to a cache check's `find_value` (`None`: it timed out).
    pub(super) fn cache_checked(&mut self, now: Instant, txn: u64, answer: Option<&Body>) {
        let Some(order) = self
            .cache_checks
            .iter()
            .find(|(_, c)| c.asked.contains(&txn))
            .map(|(o, _)| *o)
        else {
            return;
        };
        let Some(c) = self.cache_checks.get_mut(&order) else {
            return;
        };
        c.asked.retain(|t| *t != txn);
        match answer {
            Some(Body::FindValueRes(FindValueRes::Value(v))) if *v == c.value => c.agree += 1,
            Some(Body::FindValueRes(FindValueRes::Value(_))) => c.dissent += 1,
            _ => {}
        }
        if !c.asked.is_empty() {
            return;
        }
        let Some(c) = self.cache_checks.remove(&order) else {
            return;
        };
        free_if_empty(&mut self.cache_checks);
        // Most must hold it and none another: a copy two liars next to the key vouch for
        // while a replica holds another value is not kept.
        if 2 * c.agree <= c.polled || c.dissent > 0 || self.holds_better(now, &c.key) {
            self.stats.cached_unconfirmed += 1;
            return;
        }
        // The TTL follows the key's real id, not the sender's claim of it.
        let ttl = cache_ttl(
            &self.id,
            &NodeId::for_key(&c.key),
            self.config.key_expiry,
            self.config.min_cache_ttl,
        );
        let record = Record {
            value: c.value,
            kind: store::Kind::Cached,
            expires: later(now, ttl),
            republish_at: None,
            source: self.ip_key(&c.from),
        };
        if self.store.put(&c.key, record).is_err() {
            self.stats.requests_refused += 1;
            return self.refused(c.from, &c.key, RefuseReason::StoreFull);
        }
        self.stored(c.from, &c.key, true, false);
        self.stats.cached_confirmed += 1;
    }

    /// Does `record` answer a `find_value` (or our own `get`)? Replicas and cached copies
    /// do. Our own published record does only while we are among the k closest nodes we
    /// know for the key: otherwise another node's later `set` of the key went to the
    /// replicas and not to us, and our copy would shadow the update for every lookup that
    /// passes us (the replicas hold the current value; we keep ours only to republish).
    /// Right after we (re)published it, it does anyway: the replicas that held another
    /// value ask us for it to confirm our `set` (see `Core::confirm`), and it is the
    /// newest value there is.
    pub(super) fn serves(&self, now: Instant, key: &str, record: &Record) -> bool {
        if record.kind != store::Kind::Published {
            return true;
        }
        let age = self
            .config
            .key_expiry
            .saturating_sub(record.expires.saturating_duration_since(now));
        if age <= self.config.query_timeout.saturating_mul(2) {
            return true;
        }
        // Only peers that proved their address count: a flood of newcomers (unverified,
        // and gone at their first failure) must not silence our record.
        let target = NodeId::for_key(key);
        let own = self.id.distance(&target);
        let closer = self
            .table
            .closest(&target, 3 * self.config.k, None)
            .into_iter()
            .take_while(|p| p.id.distance(&target) < own)
            .filter(|p| self.table.is_verified(&p.id, &p.addr))
            .count();
        closer < self.config.k
    }

    pub(super) fn postpone_restore(&mut self, now: Instant, key: &str) {
        let Some(r) = self.store.get(now, key) else {
            return;
        };
        if r.kind != store::Kind::Replica {
            return;
        }
        let mut r = r.clone();
        r.republish_at = Some(later(now, self.config.non_publisher_restore_interval));
        // Replacing a record with itself cannot exceed the limits.
        let _ = self.store.put(key, r);
    }

    /// Does the validator let `value` be stored under `key`: valid, and allowed to replace
    /// the value we hold? Counts a refusal.
    pub(crate) fn admit(&mut self, now: Instant, key: &str, value: &Value, origin: Origin) -> bool {
        let ok = self.validator.validate(key, value, origin) == Verdict::Accept
            && match self.store.get(now, key) {
                Some(held) => {
                    held.value == *value || self.validator.replaces(key, &held.value, value, origin)
                }
                None => true,
            };
        if !ok {
            self.stats.records_rejected += 1;
        }
        ok
    }

    /// Is an incoming record within our limits? Counts a refusal if not.
    pub(super) fn accept_record(&mut self, key: &str, value: &Value) -> bool {
        if key.len() > self.config.max_key_bytes || value.byte_len() > self.config.max_value_bytes {
            self.stats.requests_refused += 1;
            return false;
        }
        true
    }
}
