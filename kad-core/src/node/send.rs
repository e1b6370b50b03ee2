//! Sending requests: transaction ids, padding, copies of an unanswered request, the
//! transmit queue.

use super::*;

impl Core {
    pub(super) fn can_send(&self) -> bool {
        !self.rpc.is_full() && self.transmits.len() < self.config.max_queued_transmits
    }

    /// Sends a request and remembers it; `None` when the request table or the transmit
    /// queue is full (the caller retries once capacity frees up).
    pub fn send_request(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: Option<NodeId>,
        body: Body,
        owner: Owner,
    ) -> Option<u64> {
        let kind = body.request_kind()?;
        if !self.can_send() {
            self.stats.requests_deferred += 1;
            return None;
        }
        let txn = loop {
            let t = self.rng.next_u64();
            if !self.rpc.contains(t) {
                break t;
            }
        };
        // A verification ping is not repeated: a forged source draws one ping, no more.
        let copies = match owner {
            Owner::Verify => 0,
            _ => self.config.request_retries as u8,
        };
        // The request is kept, not its bytes: most are answered before a copy is due, and
        // a lookup's body clones without allocating.
        let resend = (copies > 0).then(|| body.clone());
        let payload = self.encode_request(txn, body);
        if payload.len() > self.config.max_datagram_bytes {
            // It can never go out: no request in flight, so no timeout counted against a
            // peer that never saw it.
            self.stats.transmits_dropped += 1;
            return None;
        }
        self.push(addr, payload);
        self.stats.requests_sent.count(kind);
        self.rpc.insert(
            txn,
            Pending {
                addr,
                expected,
                kind,
                deadline: later(now, self.config.query_timeout),
                owner,
                sent: now,
                stall: None,
                resent: false,
            },
        );
        if let Some(body) = resend {
            self.rpc.resend(txn, now, copies, body);
        }
        Some(txn)
    }

    /// A request's datagram: lookup requests padded (see `Config::pad_requests`). The same
    /// transaction and body always give the same bytes, so a retransmission is the original.
    pub(super) fn encode_request(&self, txn: u64, body: Body) -> Vec<u8> {
        let min_len = if self.config.pad_requests
            && matches!(
                body.request_kind(),
                Some(RequestKind::FindNode | RequestKind::FindValue)
            ) {
            self.padded_request_len()
        } else {
            0
        };
        self.encode_padded(TxnId::from_u64(txn), body, min_len)
    }

    /// Sends the retransmissions due at `now`.
    pub(super) fn resend_due(&mut self, now: Instant) {
        while let Some((addr, txn, body)) = self.rpc.pop_resend(now) {
            self.stats.requests_retransmitted += 1;
            let payload = self.encode_request(txn, body);
            self.push(addr, payload);
        }
    }

    pub(super) fn encode(&self, txn: TxnId, body: Body) -> Vec<u8> {
        self.encode_padded(txn, body, 0)
    }

    /// Encodes a message at least `min_len` bytes long (see [`Codec::encode_padded`]).
    pub(super) fn encode_padded(&self, txn: TxnId, body: Body, min_len: usize) -> Vec<u8> {
        let msg = Message {
            txn,
            sender: self.sender.clone(),
            body,
            client: self.config.client_mode,
        };
        let mut payload = Vec::with_capacity(256);
        self.config.codec.encode_padded(&msg, min_len, &mut payload);
        payload
    }

    /// How long a padded lookup request is: a k-peer answer, estimated generously, divided
    /// by the responder's reply factor (assumed equal to ours), so that the answer fits the
    /// budget of a responder that has not verified us yet and comes in one round trip.
    pub(super) fn padded_request_len(&self) -> usize {
        let per_peer = if self.local_addr.is_ipv6() {
            PEER_BYTES_V6
        } else {
            PEER_BYTES
        };
        let reply = REPLY_ENVELOPE_BYTES + self.config.k * per_peer;
        reply.div_ceil(self.config.unverified_reply_factor.max(1))
    }

    pub(super) fn push(&mut self, dst: SocketAddr, payload: Vec<u8>) {
        if self.transmits.len() >= self.config.max_queued_transmits
            || payload.len() > self.config.max_datagram_bytes
        {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.transmits.push_back(Transmit { dst, payload });
    }
}
