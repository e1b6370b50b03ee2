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
        if proven == Some(true) && self.allowance_spent(now, &peer, &body, budget) {
            // Known before encoding the whole list: it goes out shortened.
            self.stats.replies_over_allowance += 1;
            let payload = self.shorten(txn, body, budget);
            return self.push(peer.addr, payload);
        }
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
                let payload = self.shorten(txn, body, budget);
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

    /// Would `body`, a peer list, overflow both its `budget` and what is left of the
    /// allowance of `peer`, an address proven lately? Answered from a lower bound of its
    /// length ([`MIN_PEER_LEN`] an entry), before it is encoded: a source that asks faster
    /// than its allowance refills gets every reply shortened, and encoding each one whole
    /// first, only to throw it away, doubled the work of serving it. False when it is not
    /// certain; the caller then encodes the reply and checks the real length.
    fn allowance_spent(&mut self, now: Instant, peer: &Peer, body: &Body, budget: usize) -> bool {
        let Some(n) = peer_count(body) else {
            return false;
        };
        let least = n.saturating_mul(MIN_PEER_LEN);
        if budget >= least {
            return false;
        }
        let allowance = self.allowance();
        // Not in the cache (a table entry): its allowance starts when first spent, whole.
        self.verified
            .tokens(&peer.addr, now, allowance, ALLOWANCE_WINDOW)
            .is_some_and(|left| (left as usize) < least)
    }

    /// Encodes a peer-list reply (`body`) with as many of its peers, in order, as fit
    /// `budget` bytes: the envelope is encoded once without them, each entry's length is
    /// known exactly ([`Codec::peer_len`]), and the reply is encoded once more with the
    /// peers that fit. The peer list is moved, never copied.
    pub(super) fn shorten(&mut self, txn: TxnId, mut body: Body, budget: usize) -> Vec<u8> {
        self.stats.replies_shortened += 1;
        let mut peers = peers_of(&mut body).map(std::mem::take).unwrap_or_default();
        let (empty, mut body) = self.encode(txn, body);
        let codec = self.config.codec;
        let mut len = empty.len();
        let fit = peers
            .iter()
            .enumerate()
            .take_while(|(i, p)| {
                len += codec.peer_len(p, *i == 0);
                len <= budget
            })
            .count();
        if fit == 0 {
            return empty;
        }
        peers.truncate(fit);
        if let Some(list) = peers_of(&mut body) {
            *list = peers;
        }
        loop {
            let (payload, next) = self.encode(txn, body);
            body = next;
            // The lengths are exact (a test holds them to the encoders); should one ever
            // be off, the reply still never exceeds its budget.
            if payload.len() <= budget || peers_of(&mut body).and_then(Vec::pop).is_none() {
                return payload;
            }
        }
    }
}

/// The number of peers of a `find_node_res` or a `find_value_res` without the value.
fn peer_count(body: &Body) -> Option<usize> {
    match body {
        Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers)) => {
            Some(peers.len())
        }
        _ => None,
    }
}

/// The peer list of a `find_node_res` or a `find_value_res` without the value.
fn peers_of(body: &mut Body) -> Option<&mut Vec<WirePeer>> {
    match body {
        Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers)) => Some(peers),
        _ => None,
    }
}
