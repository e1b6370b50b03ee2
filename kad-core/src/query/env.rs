//! What a query sees of its node, and the seam through which it hands out the requests it
//! wants sent.
//!
//! A query never holds the node. While it runs (one `poll`, one outcome) it is lent an
//! [`Env`]: borrowed views of the parts it reads (config, routing table, store, validator),
//! the counters it bumps, and an [`Outbox`] the node implements. What the query wants sent
//! it hands out as a [`Request`]; the node puts it on the wire (transaction id, encoding,
//! request table, retransmissions) and gives back the transaction id, or `None` when there
//! is no room, in which case the query keeps the request for a later poll.

use std::net::SocketAddr;
use std::time::Instant;

use rand_chacha::ChaCha12Rng;

use crate::crowd::Crowds;
use crate::record_store::RecordStore;
use crate::routing::{IpLimits, Table};
use crate::rpc::Owner;
use crate::validate::Validator;
use crate::wire::Body;
use crate::{Config, NodeId, Stats};

/// A request a query hands out to be sent.
pub(crate) struct Request {
    /// Where it goes.
    pub addr: SocketAddr,
    /// Who should answer, when known (a different responder fails the request).
    pub expected: Option<NodeId>,
    /// The request itself.
    pub body: Body,
    /// Who gets its outcome.
    pub owner: Owner,
    /// Report it stalled once unanswered past the node's retransmission timeout
    /// ([`crate::query::Outcome::Stalled`]).
    pub watch_stall: bool,
}

/// Where a query's requests go: the node implements it.
pub(crate) trait Outbox {
    /// Sends `req` and remembers it in flight; gives its transaction id, or `None` when
    /// the request table or the transmit queue is full (or the request can never fit a
    /// datagram). Transaction ids are drawn from `rng`; what happened is counted in
    /// `stats`.
    fn send(
        &mut self,
        now: Instant,
        req: Request,
        rng: &mut ChaCha12Rng,
        stats: &mut Stats,
    ) -> Option<u64>;
}

/// What a query may read and touch of its node while it runs.
pub(crate) struct Env<'a> {
    /// The node's settings.
    pub config: &'a Config,
    /// Our own id.
    pub id: NodeId,
    /// The address written in our messages (never a lookup candidate).
    pub local_addr: SocketAddr,
    /// The routing table, read only: lookups start from it.
    pub table: &'a Table,
    /// Our records (a collecting get keeps the value it prefers).
    pub store: &'a mut dyn RecordStore,
    /// Which values we store, serve and return.
    pub validator: &'a mut dyn Validator,
    /// The node's RNG (random refresh targets; transaction ids through the outbox).
    pub rng: &'a mut ChaCha12Rng,
    /// The node's counters.
    pub stats: &'a mut Stats,
    /// How addresses are counted per IP (votes, lookup diversity).
    pub ip_limits: IpLimits,
    /// IPs that proved more ids than one host runs: lookups skip them.
    pub crowds: &'a Crowds,
    /// Where requests go.
    pub out: &'a mut dyn Outbox,
}

impl Env<'_> {
    /// Hands out a request (see [`Outbox::send`]).
    pub fn send_request(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        expected: Option<NodeId>,
        body: Body,
        owner: Owner,
    ) -> Option<u64> {
        self.send(
            now,
            Request {
                addr,
                expected,
                body,
                owner,
                watch_stall: false,
            },
        )
    }

    /// Hands out `req` (see [`Outbox::send`]).
    pub fn send(&mut self, now: Instant, req: Request) -> Option<u64> {
        self.out.send(now, req, self.rng, self.stats)
    }

    /// The per-IP key of `addr` (`None`: exempt).
    pub fn ip_key(&self, addr: &SocketAddr) -> Option<[u8; 8]> {
        self.ip_limits.key(addr)
    }

    /// The keys a lookup's diversity caps count `addr` under (see
    /// [`IpLimits::diversity_keys`]).
    pub fn diversity_keys(&self, addr: &SocketAddr) -> Option<([u8; 8], [u8; 8])> {
        self.ip_limits.diversity_keys(addr)
    }
}
