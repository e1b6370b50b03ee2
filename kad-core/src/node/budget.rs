//! No reflection: a reply is at most a multiple of its request, beyond which a proven
//! address draws on its allowance; a peer list is shortened to fit, a value is not sent.

use super::*;

impl Core {
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
        let (payload, body) = self.encode(txn, body);
        if payload.len() <= budget {
            return self.push(peer.addr, payload);
        }
        // Looked up only now if it was left open: most replies fit their budget.
        let proven = proven.unwrap_or_else(|| self.verified.contains(&peer.addr, now));
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
            Body::FindNodeRes { .. } | Body::FindValueRes(FindValueRes::Peers(_)) => {
                let payload = self.shorten(txn, body, budget, payload.len());
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

    /// Encodes a peer-list reply (`body`, whose encoding with all its peers is `full`
    /// bytes long) with as many peers as fit `budget` bytes: as many as the average entry
    /// says, then one fewer until it fits. The peer list is moved, never copied, and the
    /// full reply, already encoded once, is not encoded again.
    pub(super) fn shorten(
        &mut self,
        txn: TxnId,
        mut body: Body,
        budget: usize,
        full: usize,
    ) -> Vec<u8> {
        self.stats.replies_shortened += 1;
        let mut peers = peers_of(&mut body).map(std::mem::take).unwrap_or_default();
        let (empty, mut body) = self.encode(txn, body);
        let base = empty.len();
        let per_peer = (full - base).div_ceil(peers.len().max(1)).max(1);
        peers.truncate(budget.saturating_sub(base) / per_peer);
        if let Some(list) = peers_of(&mut body) {
            *list = peers;
        }
        loop {
            let (payload, next) = self.encode(txn, body);
            body = next;
            if payload.len() <= budget || peers_of(&mut body).and_then(Vec::pop).is_none() {
                return payload;
            }
        }
    }
}

/// The peer list of a `find_node_res` or a `find_value_res` without the value.
fn peers_of(body: &mut Body) -> Option<&mut Vec<WirePeer>> {
    match body {
        Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers)) => Some(peers),
        _ => None,
    }
}
