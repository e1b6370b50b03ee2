//! Serving requests: the answer to each request kind.

use super::*;

impl Core {
    /// Serves a request. `proven`: its sender's address is known to be its own (the
    /// request waited for a verification ping that it answered). The body is taken out of
    /// `msg` (a reference: moving the message in copied it).
    pub(super) fn on_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &mut Message,
        request_len: usize,
        proven: bool,
    ) {
        let peer = Peer {
            id: msg.sender.id,
            addr: from,
        };
        // Looked up once, before the claim can change the table, for both.
        let in_table = self.table.is_verified(&peer.id, &peer.addr);
        // A ping's answer needs no proof (a pong fits its budget); the verified cache is
        // asked only if it does not.
        let proof = if proven || in_table {
            Some(true)
        } else if matches!(msg.body, Body::Ping) {
            None
        } else {
            Some(self.verified.contains(&peer.addr, now))
        };
        let proven = proof == Some(true);
        // A client never joins the table, whatever it proves.
        if !msg.client && !in_table {
            self.claimed(now, peer);
        }
        // What an unproven sender's reply may wait on: its request.
        let request = (!proven && msg.body.may_need_proof()).then(|| msg.clone());
        let txn = msg.txn;
        let sender_id = msg.sender.id;
        let body = std::mem::replace(&mut msg.body, Body::Ping);
        if self.config.client_mode && matches!(body, Body::Set { .. } | Body::SetCached { .. }) {
            // A client keeps nothing for others; no answer, as for any refused store.
            self.stats.requests_refused += 1;
            if let Body::Set { key, .. } | Body::SetCached { key, .. } = &body {
                self.refused(from, key, RefuseReason::ClientMode);
            }
            return;
        }
        let reply = match body {
            Body::Ping => Body::Pong,
            Body::FindNode { target } => Body::FindNodeRes {
                peers: self.closest_wire(&target, Some(&sender_id)),
            },
            Body::Set { key, value } => {
                // The cheap limits first, then the validator (a signature check).
                if !self.accept_record(&key, &value) {
                    return self.refused(from, &key, RefuseReason::TooLarge);
                }
                if !self.admit(now, &key, &value, Origin::Set) {
                    return self.refused(from, &key, RefuseReason::Rejected);
                }
                if !proven {
                    return self.hold_store(now, peer, request, request_len);
                }
                if self.crowded(&from) {
                    self.stats.requests_refused += 1;
                    return self.refused(from, &key, RefuseReason::Crowded);
                }
                let changes = self
                    .store
                    .get(now, &key)
                    .is_some_and(|r| r.kind != store::Kind::Cached && r.value != value);
                if changes {
                    return self.confirm(
                        now,
                        Confirm {
                            peer,
                            txn,
                            key,
                            value,
                            len: request_len,
                        },
                    );
                }
                let held = self.held_before(now, &key);
                if !self.store_replica(now, from, key.clone(), value) {
                    return self.refused(from, &key, RefuseReason::StoreFull);
                }
                self.stored(from, &key, false, held);
                Body::SetRes
            }
            Body::SetCached { key, value, .. } => {
                // The cheap limits first, then the validator (a signature check).
                if !self.accept_record(&key, &value) {
                    return self.refused(from, &key, RefuseReason::TooLarge);
                }
                if !self.admit(now, &key, &value, Origin::SetCached) {
                    return self.refused(from, &key, RefuseReason::Rejected);
                }
                if !proven {
                    return self.hold_store(now, peer, request, request_len);
                }
                if self.crowded(&from) {
                    self.stats.requests_refused += 1;
                    return self.refused(from, &key, RefuseReason::Crowded);
                }
                // A cached copy never replaces a replica or our own record, and is
                // kept only once our closest peers to the key confirm it.
                if !self.holds_better(now, &key) {
                    self.check_cached(now, from, &sender_id, key, value);
                }
                Body::SetCachedRes
            }
            Body::CheckStore { key, .. } => {
                let has_key = self.store.get(now, &key).is_some();
                // A proven peer is restoring this key: our own restore can wait an
                // interval, so k holders do not all re-replicate the same record every
                // hour. A stranger's claim postpones nothing.
                if has_key && proven {
                    self.postpone_restore(now, &key);
                }
                Body::CheckStoreRes { has_key }
            }
            Body::FindValue { key } => match self.store.get(now, &key) {
                Some(r) if self.serves(now, &key, r) => {
                    Body::FindValueRes(FindValueRes::Value(r.value.clone()))
                }
                _ => Body::FindValueRes(FindValueRes::Peers(
                    self.closest_wire(&NodeId::for_key(&key), Some(&sender_id)),
                )),
            },
            _ => return,
        };
        self.stats.requests_answered += 1;
        let ctx = Ctx {
            peer,
            len: request_len,
            proven: proof,
            request,
        };
        self.reply(now, ctx, txn, reply);
    }

    /// The peers we tell others about: proven entries only.
    pub(super) fn closest_wire(&self, target: &NodeId, exclude: Option<&NodeId>) -> Vec<WirePeer> {
        self.table
            .closest_verified_as(target, self.config.k, exclude, |p| WirePeer {
                id: p.id,
                addr: p.addr,
            })
    }

    pub(super) fn check_key(&self, key: &str) -> Result<(), KeyError> {
        if key.len() > self.config.max_key_bytes {
            return Err(KeyError::TooLong {
                len: key.len(),
                max: self.config.max_key_bytes,
            });
        }
        if key.as_bytes().starts_with(BYTES_MARKER) {
            return Err(KeyError::Reserved);
        }
        Ok(())
    }
}
