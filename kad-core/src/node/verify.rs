//! Trust only what was proven: verification pings, requests held until their sender
//! answers one, and what an answer (or its absence) does to the routing table; the per-IP
//! keys every limit counts by.

use super::*;

impl Core {
    /// `peer`, not a client, answered a request of ours from the address it went to:
    /// counts its id at its IP, and when that crowds the IP (see [`crate::crowd`]), its
    /// entries leave the table. (Clients are not counted: one-shot tools make a new id
    /// each run. Lookups take no answer from a client, so the flag hides no Sybil.)
    pub(super) fn count_id(&mut self, now: Instant, peer: Peer) {
        let Some((ip, _)) = self.ip_limits.diversity_keys(&peer.addr) else {
            return;
        };
        if self.crowds.prove(ip, &peer.addr, &peer.id, now) {
            self.stats.ips_crowded += 1;
            for gone in self.table.remove_ip(&ip) {
                self.stats.peers_evicted += 1;
                self.note(|| Event::PeerEvicted { peer: gone });
            }
        }
    }

    /// Has the IP of `addr` proved more ids than one host runs (see [`crate::crowd`])?
    pub(crate) fn crowded(&self, addr: &SocketAddr) -> bool {
        self.ip_limits
            .diversity_keys(addr)
            .is_some_and(|(ip, _)| self.crowds.is_crowded(&ip))
    }

    /// The per-IP key of `addr` for the limits on unproven senders (`None`: exempt).
    pub(crate) fn ip_key(&self, addr: &SocketAddr) -> Option<[u8; 8]> {
        self.ip_limits.key(addr)
    }

    /// Makes sure a verification ping to `peer` is in flight; false when none could be
    /// sent (its IP has too many in flight, or the request table is full). When
    /// `max_held_replies` pings are in flight, the oldest is given up.
    pub(super) fn verify(&mut self, now: Instant, peer: Peer) -> bool {
        if self.verifying.contains_key(&peer.addr) {
            return true;
        }
        if let Some(key) = self.ip_key(&peer.addr) {
            let same_ip = self
                .verifying
                .keys()
                .filter(|a| self.ip_key(a) == Some(key))
                .count();
            if same_ip >= UNPROVEN_PER_IP {
                return false;
            }
        }
        if self.verifying.len() >= self.config.max_held_replies {
            let oldest = self
                .verifying
                .iter()
                .min_by_key(|(_, (order, _))| *order)
                .map(|(a, (_, txn))| (*a, *txn));
            if let Some((addr, txn)) = oldest {
                self.rpc.remove(txn);
                self.stats.verifications_dropped += 1;
                // Counted as dropped, not as failed (`release` counts what it removes).
                self.verifying.remove(&addr);
                self.release(now, addr, false);
            }
        }
        let Some(txn) = self.send_request(now, peer.addr, Some(peer.id), Body::Ping, Owner::Verify)
        else {
            return false;
        };
        let order = self.next_hold;
        self.next_hold += 1;
        self.verifying.insert(peer.addr, (order, txn));
        true
    }

    /// Keeps an unproven sender's request until it answers a verification ping (one ping
    /// per address, however many requests wait for it); false when there is no room. At
    /// most [`UNPROVEN_PER_IP`] per IP; when `max_held_replies` are held, the oldest goes.
    pub(super) fn hold(&mut self, now: Instant, peer: Peer, msg: Message, len: usize) -> bool {
        if let Some(key) = self.ip_key(&peer.addr) {
            let same_ip = self
                .held
                .values()
                .filter(|h| self.ip_key(&h.addr) == Some(key))
                .count();
            if same_ip >= UNPROVEN_PER_IP {
                return false;
            }
        }
        if !self.verify(now, peer) {
            return false;
        }
        if self.held.len() >= self.config.max_held_replies {
            self.held.pop_first();
            self.stats.replies_held_dropped += 1;
        }
        let addr = peer.addr;
        self.held.insert(self.next_hold, Held { addr, msg, len });
        self.next_hold += 1;
        self.stats.replies_held += 1;
        true
    }

    /// `addr` answered a request of ours (`answered`), or its verification ping timed out
    /// or was given up: serve, or drop, every request held for it, in the order they came.
    pub(super) fn release(&mut self, now: Instant, addr: SocketAddr, answered: bool) {
        if self.verifying.remove(&addr).is_some() {
            if answered {
                self.stats.verifications_passed += 1;
            } else {
                self.stats.verifications_failed += 1;
            }
        }
        let holds: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.addr == addr)
            .map(|(h, _)| *h)
            .collect();
        for hold in holds {
            if let Some(mut h) = self.held.remove(&hold) {
                if answered {
                    self.on_request(now, h.addr, &mut h.msg, h.len, true);
                } else {
                    self.stats.replies_held_dropped += 1;
                }
            }
        }
        free_if_empty(&mut self.held);
        free_if_empty(&mut self.verifying);
    }

    /// A peer answered a request of ours from the address it went to: it owns that
    /// address and that id. Offer it to the routing table; check the oldest entry of a
    /// full bucket, or the old address of an id heard from a new one.
    pub(super) fn proven(&mut self, now: Instant, peer: Peer) {
        if self.crowded(&peer.addr) {
            return;
        }
        match self.table.on_heard(now, peer, true) {
            Heard::PingOldest(old) | Heard::Moved(old)
                if self
                    .send_request(now, old.addr, Some(old.id), Body::Ping, Owner::TablePing)
                    .is_none() =>
            {
                self.table.clear_ping(&old.id);
            }
            Heard::IpLimited => self.stats.peers_ip_limited += 1,
            Heard::Added => self.note(|| Event::PeerAdded { peer }),
            _ => {}
        }
    }

    /// A request came from `peer`: a claim, which changes nothing in the routing table by
    /// itself. A sender that proved this id at this address lately joins the table; any
    /// other that the table would take is asked to prove it (one ping, which its answer
    /// turns into a table entry).
    pub(super) fn claimed(&mut self, now: Instant, peer: Peer) {
        if peer.id == self.id
            || self.table.is_verified(&peer.id, &peer.addr)
            || self.crowded(&peer.addr)
        {
            return;
        }
        if self.verified.id_of(&peer.addr, now) == Some(peer.id) {
            return self.proven(now, peer);
        }
        if self.table.wants(&peer.id, now) {
            self.verify(now, peer);
        }
    }

    /// A request to `id` at `addr` failed: only the entry at that address pays.
    pub(super) fn failed(&mut self, id: &NodeId, addr: &SocketAddr) {
        let Failed::Evicted { replacement } = self.table.on_failure(id, addr) else {
            return;
        };
        self.stats.peers_evicted += 1;
        let old = Peer {
            id: *id,
            addr: *addr,
        };
        self.note(|| Event::PeerEvicted { peer: old });
        if let Some(new) = replacement {
            self.note(|| Event::PeerReplaced { old, new });
        }
    }
}
