//! Sending requests: the node's side of a query's [`Outbox`] (queries hand out what they
//! want sent; here it gets a transaction id, bytes, a place in the request table), padding,
//! copies of an unanswered request, the transmit queue.

use super::*;
use crate::query::{Env, Outbox, Request};

/// The parts of the node that put our requests on the wire; what a query's
/// [`Request`]s go through (the node's [`Outbox`]).
pub(super) struct Wire<'a> {
    config: &'a Config,
    sender: &'a OwnSender,
    local_addr: SocketAddr,
    rpc: &'a mut Rpc,
    transmits: &'a mut VecDeque<Transmit>,
}

impl Outbox for Wire<'_> {
    fn send(
        &mut self,
        now: Instant,
        req: Request,
        rng: &mut ChaCha12Rng,
        stats: &mut Stats,
    ) -> Option<u64> {
        let Request {
            addr,
            expected,
            body,
            owner,
            watch_stall,
        } = req;
        let kind = body.request_kind()?;
        if !can_send(self.rpc, self.transmits, self.config) {
            stats.requests_deferred += 1;
            return None;
        }
        let txn = loop {
            let t = rng.next_u64();
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
        let payload = self.pen().encode_request(txn, body);
        if payload.len() > self.config.max_datagram_bytes {
            // It can never go out: no request in flight, so no timeout counted against a
            // peer that never saw it.
            stats.transmits_dropped += 1;
            return None;
        }
        push(self.transmits, stats, self.config, addr, payload);
        stats.requests_sent.count(kind);
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
        if watch_stall {
            if let Some(at) = now.checked_add(self.rpc.stall_after(self.config.query_timeout)) {
                self.rpc.watch_stall(txn, at);
            }
        }
        Some(txn)
    }
}

impl Wire<'_> {
    fn pen(&self) -> Pen<'_> {
        Pen {
            config: self.config,
            sender: self.sender,
            local_addr: self.local_addr,
        }
    }
}

/// How our datagrams are written: the codec, our `sender` field, padding.
pub(super) struct Pen<'a> {
    config: &'a Config,
    sender: &'a OwnSender,
    local_addr: SocketAddr,
}

impl Pen<'_> {
    /// A request's datagram: lookup requests padded (see `Config::pad_requests`). The same
    /// transaction and body always give the same bytes, so a retransmission is the original.
    fn encode_request(&self, txn: u64, body: Body) -> Vec<u8> {
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

    /// Encodes a message at least `min_len` bytes long (see [`Codec::encode_padded`]).
    fn encode_padded(&self, txn: TxnId, body: Body, min_len: usize) -> Vec<u8> {
        self.encode_keeping(Vec::new(), txn, body, min_len).0
    }

    /// [`Pen::encode_padded`], and the body back: a reply that may have to be shortened
    /// is encoded without a copy of its peer list. It is written into `payload` (emptied
    /// first: a recycled buffer, or a new one).
    fn encode_keeping(
        &self,
        mut payload: Vec<u8>,
        txn: TxnId,
        body: Body,
        min_len: usize,
    ) -> (Vec<u8>, Body) {
        // Room for the whole datagram at once: a peer list grown from a small buffer cost
        // a `realloc` and a copy of what was written before it.
        payload.clear();
        payload.reserve(room_for(&body).max(min_len));
        let msg = Message {
            txn,
            sender: self.sender.sender().clone(),
            body,
            client: self.config.client_mode,
        };
        self.config
            .codec
            .encode_padded_as(self.sender, &msg, min_len, &mut payload);
        (payload, msg.body)
    }

    /// How long a padded lookup request is: a k-peer answer, estimated generously, divided
    /// by the responder's reply factor (assumed equal to ours), so that the answer fits the
    /// budget of a responder that has not verified us yet and comes in one round trip.
    fn padded_request_len(&self) -> usize {
        let per_peer = if self.local_addr.is_ipv6() {
            PEER_BYTES_V6
        } else {
            PEER_BYTES
        };
        let reply = REPLY_ENVELOPE_BYTES + self.config.k * per_peer;
        reply.div_ceil(self.config.unverified_reply_factor.max(1))
    }
}

/// Bytes to reserve for a message with `body`: its envelope, and room for its peer list
/// or value (a JSON bytes value grows by a third in base64), generously.
fn room_for(body: &Body) -> usize {
    256 + match body {
        Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers)) => {
            peers.len() * PEER_BYTES
        }
        Body::Set { key, value } | Body::SetCached { key, value, .. } => {
            key.len() + value.byte_len() * 4 / 3
        }
        Body::FindValueRes(FindValueRes::Value(value)) => value.byte_len() * 4 / 3,
        Body::CheckStore { key, .. } | Body::FindValue { key } => key.len(),
        _ => 0,
    }
}

/// Room for one more request: the request table and the transmit queue are not full.
fn can_send(rpc: &Rpc, transmits: &VecDeque<Transmit>, config: &Config) -> bool {
    !rpc.is_full() && transmits.len() < config.max_queued_transmits
}

/// Queues a datagram, or drops (and counts) it when the queue is full or it is too large.
fn push(
    transmits: &mut VecDeque<Transmit>,
    stats: &mut Stats,
    config: &Config,
    dst: SocketAddr,
    payload: Vec<u8>,
) {
    if transmits.len() >= config.max_queued_transmits || payload.len() > config.max_datagram_bytes {
        stats.transmits_dropped += 1;
        return;
    }
    transmits.push_back(Transmit { dst, payload });
}

impl Core {
    pub(super) fn can_send(&self) -> bool {
        can_send(&self.rpc, &self.transmits, &self.config)
    }

    /// Lends a query what it may see of the node (see [`Env`]): its requests go out
    /// through the node's [`Wire`].
    pub(super) fn with_env<R>(&mut self, f: impl FnOnce(&mut Env<'_>) -> R) -> R {
        let Core {
            config,
            id,
            local_addr,
            sender,
            rng,
            table,
            rpc,
            store,
            validator,
            transmits,
            stats,
            ip_limits,
            crowds,
            ..
        } = self;
        let config: &Config = config;
        let mut wire = Wire {
            config,
            sender,
            local_addr: *local_addr,
            rpc,
            transmits,
        };
        let mut env = Env {
            config,
            id: *id,
            local_addr: *local_addr,
            table,
            store: &mut **store,
            validator: &mut **validator,
            rng,
            stats,
            ip_limits: *ip_limits,
            crowds,
            out: &mut wire,
        };
        f(&mut env)
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
        self.with_env(|env| env.send_request(now, addr, expected, body, owner))
    }

    fn pen(&self) -> Pen<'_> {
        Pen {
            config: &self.config,
            sender: &self.sender,
            local_addr: self.local_addr,
        }
    }

    /// Sends the retransmissions due at `now`.
    pub(super) fn resend_due(&mut self, now: Instant) {
        while let Some((addr, txn, body)) = self.rpc.pop_resend(now) {
            self.stats.requests_retransmitted += 1;
            let payload = self.pen().encode_request(txn, body);
            self.push(addr, payload);
        }
    }

    /// Encodes a message of ours with `body`, and gives the body back.
    /// A reply's datagram, in a recycled buffer if there is one (see [`Node::recycle`]).
    pub(super) fn encode(&mut self, txn: TxnId, body: Body) -> (Vec<u8>, Body) {
        let buf = self.spare.pop().unwrap_or_default();
        self.pen().encode_keeping(buf, txn, body, 0)
    }

    pub(super) fn push(&mut self, dst: SocketAddr, payload: Vec<u8>) {
        push(
            &mut self.transmits,
            &mut self.stats,
            &self.config,
            dst,
            payload,
        );
    }
}
