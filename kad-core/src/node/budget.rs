//! No reflection: a reply is at most a multiple of its request, beyond which a proven
//! address draws on its allowance; a peer list is shortened to fit, a value is not sent.

use super::*;

impl Core {
    /// Has the sender at `peer.addr` proven that address: it answered a request of ours
    /// from it (as a table entry or replacement with that id, or lately as anyone)?
    pub(super) fn addr_proven(&self, peer: &Peer, now: Instant) -> bool {
        self.table.is_verified(&peer.id, &peer.addr) || self.verified.contains(&peer.addr, now)
    }

    /// Answers a request. Whatever the sender, a reply is at most `unverified_reply_factor`
    /// times its request, plus, for an address that proved itself by answering one of our
    /// requests from it, what is left of its `reply_allowance`. A larger reply to an
    /// unproven sender waits (as its request, `held`) until the sender answers a
    /// verification ping; a larger reply to a proven one is shortened (a peer list) or not
    /// sent (a value). So a forged source address cannot turn us into an amplifier aimed at
    /// a third party, even one that is a DHT node and answers our pings, while an honest
    /// newcomer pays one extra round trip, once an hour, and gets complete answers.
    pub(super) fn reply(&mut self, now: Instant, ctx: Ctx, txn: TxnId, body: Body) {
        let Ctx {
            peer,
            len,
            proven,
            request,
        } = ctx;
        let budget = len.saturating_mul(self.config.unverified_reply_factor);
        let payload = self.encode(txn, body.clone());
        if payload.len() <= budget {
            return self.push(peer.addr, payload);
        }
        if proven {
            if self.spend_allowance(now, &peer, payload.len()) {
                return self.push(peer.addr, payload);
            }
            self.stats.replies_over_allowance += 1;
        } else if let Some(request) = request {
            if self.hold(now, peer, request, len) {
                return;
            }
        }
        // No room to hold it, or no allowance left: a peer list goes out shortened, a
        // value not at all.
        match body {
            Body::FindNodeRes { peers } => {
                let payload = self.shorten(txn, peers, budget, |peers| Body::FindNodeRes { peers });
                self.push(peer.addr, payload);
            }
            Body::FindValueRes(FindValueRes::Peers(peers)) => {
                let payload = self.shorten(txn, peers, budget, |p| {
                    Body::FindValueRes(FindValueRes::Peers(p))
                });
                self.push(peer.addr, payload);
            }
            Body::FindValueRes(FindValueRes::Value(_)) => self.stats.replies_held_dropped += 1,
            // Pong, set_res, set_cached_res, check_store_res are never larger than their
            // requests by much.
            _ => self.push(peer.addr, payload),
        }
    }

    /// Takes `bytes` from a proven address's reply allowance.
    pub(super) fn spend_allowance(&mut self, now: Instant, peer: &Peer, bytes: usize) -> bool {
        let allowance = self.allowance();
        if !self.verified.contains(&peer.addr, now) {
            // A table entry carries its proof; its allowance starts when first needed.
            self.verified.insert(peer.addr, peer.id, now, allowance);
        }
        self.verified
            .spend(&peer.addr, now, bytes, allowance, ALLOWANCE_WINDOW)
    }

    /// `Config::reply_allowance` as the verified cache counts it.
    pub(super) fn allowance(&self) -> u32 {
        u32::try_from(self.config.reply_allowance).unwrap_or(u32::MAX)
    }

    /// Encodes a peer-list reply with as many peers as fit `budget` bytes.
    pub(super) fn shorten(
        &mut self,
        txn: TxnId,
        mut peers: Vec<WirePeer>,
        budget: usize,
        make: impl Fn(Vec<WirePeer>) -> Body,
    ) -> Vec<u8> {
        self.stats.replies_shortened += 1;
        let full = self.encode(txn, make(peers.clone())).len();
        let base = self.encode(txn, make(Vec::new())).len();
        let per_peer = (full - base).div_ceil(peers.len().max(1)).max(1);
        peers.truncate(budget.saturating_sub(base) / per_peer);
        loop {
            let payload = self.encode(txn, make(peers.clone()));
            if payload.len() <= budget || peers.pop().is_none() {
                return payload;
            }
        }
    }
}
