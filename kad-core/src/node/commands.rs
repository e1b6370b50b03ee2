//! Commands: the queries a user starts (`ping`, `bootstrap`, `find_node`, `find_value`,
//! `get`, `put`).

use super::*;

impl Node {
    pub(super) fn next_id(&mut self) -> QueryId {
        let id = QueryId(self.next_query);
        self.next_query += 1;
        id
    }

    /// Registers a query, or finishes it at once with `TooManyQueries`.
    pub(super) fn start(
        &mut self,
        now: Instant,
        purpose: Purpose,
        id: QueryId,
        kind: Kind,
    ) -> QueryId {
        let q = Query::new(id, purpose, now, kind);
        if self.queries.len() >= self.core.config.max_active_queries {
            let result = cancel::failed(&q.kind, QueryError::TooManyQueries);
            self.finish(q, result, now);
            return id;
        }
        if purpose == Purpose::User {
            self.core.note(|| Event::QueryStarted { id });
        }
        self.queries.insert(id, q);
        self.dirty.insert(id);
        id
    }

    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        purpose: Purpose,
        target: NodeId,
    ) -> QueryId {
        let id = self.next_id();
        let mut lookup = self
            .core
            .with_env(|env| Lookup::new(env, target, Ask::FindNode, Query::owner(id, 0)));
        if purpose == Purpose::User {
            // Exact: it ends once each of the k closest has answered or failed.
            lookup = lookup.with_final_burst().with_patience(Patience::FreeSlots);
        }
        self.start(now, purpose, id, Kind::FindNode(lookup))
    }

    /// Command: ping `addr`. Finishes with [`QueryResult::Ping`].
    pub fn ping(&mut self, now: Instant, addr: SocketAddr) -> QueryId {
        self.last_now = now;
        let id = self.next_id();
        let kind = Kind::Ping {
            addr,
            txn: None,
            result: None,
        };
        let id = self.start(now, Purpose::User, id, kind);
        self.run(now);
        id
    }

    /// Command: join a network. Pings every address, then looks up our own id and a random
    /// id in every bucket's range, as the reference does. Finishes with
    /// [`QueryResult::Bootstrap`]; it fails when no address answered.
    pub fn bootstrap(&mut self, now: Instant, addrs: &[SocketAddr]) -> QueryId {
        self.last_now = now;
        let id = self.next_id();
        let mut list: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if !list.contains(a) && list.len() < self.core.config.max_pending_requests {
                list.push(*a);
            }
        }
        let id = self.start(
            now,
            Purpose::User,
            id,
            Kind::Bootstrap(Bootstrap::new(list)),
        );
        self.run(now);
        id
    }

    /// Command: find the k live peers closest to `target`. Finishes with
    /// [`QueryResult::FindNode`].
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> QueryId {
        self.last_now = now;
        let id = self.start_lookup(now, Purpose::User, target);
        self.run(now);
        id
    }

    /// Command: look `key` up on the network (the local store is not consulted). Finishes
    /// with [`QueryResult::FindValue`].
    pub fn find_value(&mut self, now: Instant, key: &str) -> Result<QueryId, KeyError> {
        self.value_query(now, key)
    }

    /// Command: the value of `key`, as the k closest nodes that answer hold it. The lookup
    /// does not stop at the first value: it ends early only once a quarter of k IPs (at
    /// least 3; [`Config::get_quorum`] sets another number) returned one value and nobody
    /// offered another; otherwise it asks the k
    /// closest and returns the value held by the most of them, one vote an IP (our own replica, or our published record while we
    /// are among the k closest we know, one more; ties go to the value of the closest
    /// holder). A liar, a host with many ids or a forged copy cached on the way is outvoted
    /// by the replicas. For a key whose validator collects (signed records) the validator's
    /// preferred valid value wins instead. [`Node::find_value`] is the reference's
    /// first-answer lookup. Finishes with [`QueryResult::Get`] (`Ok(None)` when nobody
    /// holds it).
    pub fn get(&mut self, now: Instant, key: &str) -> Result<QueryId, KeyError> {
        // A cached copy, which any proven peer may have put here, does not answer our own
        // get: the lookup asks the replicas.
        let local = self
            .core
            .store
            .get(now, key)
            .filter(|r| r.kind != store::Kind::Cached && self.core.serves(now, key, r))
            .map(|r| r.value.clone());
        let collect = if self.core.validator.collects(key) {
            Collect::new(local)
        } else {
            Collect::majority(local, NodeId::for_key(key))
        };
        self.collect_query(now, key, collect)
    }

    /// A new query id and its `find_value` lookup of `key`, from the closest peers we
    /// know.
    fn value_lookup(&mut self, now: Instant, key: &str) -> Result<(QueryId, Lookup), KeyError> {
        self.core.check_key(key)?;
        self.last_now = now;
        let id = self.next_id();
        let lookup = self.core.with_env(|env| {
            Lookup::new(
                env,
                NodeId::for_key(key),
                Ask::FindValue(key.to_owned()),
                Query::owner(id, 0),
            )
        });
        Ok((id, lookup))
    }

    /// A get that asks the k closest for their values and returns the one the validator
    /// prefers; our own copy (`local`) competes with theirs.
    pub(super) fn collect_query(
        &mut self,
        now: Instant,
        key: &str,
        collect: Collect,
    ) -> Result<QueryId, KeyError> {
        let (id, lookup) = self.value_lookup(now, key)?;
        // A majority get waits on no silent peer while others can be asked.
        let lookup = if collect.is_majority() {
            lookup
                .with_patience(Patience::SkipStalled)
                .with_width(self.core.config.get_parallelism)
        } else {
            lookup
        };
        let kind = Kind::FindValue {
            lookup,
            get: true,
            key: key.to_owned(),
            found: None,
            collect: Some(collect),
        };
        let id = self.start(now, Purpose::User, id, kind);
        self.run(now);
        Ok(id)
    }

    /// The reference's lookup: it ends at the first value (see [`Node::find_value`]).
    pub(super) fn value_query(&mut self, now: Instant, key: &str) -> Result<QueryId, KeyError> {
        let (id, lookup) = self.value_lookup(now, key)?;
        let lookup = lookup.with_patience(Patience::SkipStalled);
        let kind = Kind::FindValue {
            lookup,
            get: false,
            key: key.to_owned(),
            found: None,
            collect: None,
        };
        let id = self.start(now, Purpose::User, id, kind);
        self.run(now);
        Ok(id)
    }

    /// Command: store `value` under `key` on the k closest nodes, and locally as its
    /// original publisher (republished every `original_publisher_republish_interval`).
    /// Arguments that can never work are refused at once; otherwise the outcome arrives as
    /// [`QueryResult::Put`], `Ok` once at least one remote node acknowledged.
    pub fn put(
        &mut self,
        now: Instant,
        key: &str,
        value: impl Into<Value>,
    ) -> Result<QueryId, PutError> {
        let value = value.into();
        self.core.check_key(key)?;
        let max = self.core.config.max_value_bytes;
        if value.byte_len() > max {
            return Err(PutError::ValueTooLarge {
                len: value.byte_len(),
                max,
            });
        }
        // The largest message that carries the value is set_cached: it must fit a datagram.
        let probe = Message {
            txn: TxnId::from_u64(u64::MAX),
            sender: self.core.sender.sender().clone(),
            body: Body::SetCached {
                key: key.to_owned(),
                value: value.clone(),
                target: NodeId::for_key(key),
            },
            client: self.core.config.client_mode,
        };
        let mut buf = Vec::new();
        self.core.config.codec.encode(&probe, &mut buf);
        // Our bind address may be replaced by a longer IPv6 literal in a peer's eyes.
        let len = buf.len() + 64;
        if len > self.core.config.max_datagram_bytes {
            return Err(PutError::DatagramTooLarge {
                len,
                max: self.core.config.max_datagram_bytes,
            });
        }
        if !self.core.admit(now, key, &value, Origin::Put) {
            return Err(PutError::Rejected);
        }
        self.last_now = now;
        let record = Record {
            value: value.clone(),
            kind: store::Kind::Published,
            expires: later(now, self.core.config.key_expiry),
            republish_at: Some(later(
                now,
                self.core.config.original_publisher_republish_interval,
            )),
            source: None,
        };
        self.core
            .store
            .put(key, record)
            .map_err(|_| PutError::StoreFull)?;
        let id = self.next_id();
        let put = self
            .core
            .with_env(|env| Put::new(env, id, key.to_owned(), value, false));
        let id = self.start(now, Purpose::User, id, Kind::Put(put));
        self.run(now);
        Ok(id)
    }
}
