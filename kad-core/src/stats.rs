//! Counters: what a node did and dropped ([`Stats`]), and the work of one query
//! ([`QueryStats`]).

use std::time::{Duration, Instant};

use crate::wire::RequestKind;

/// Work done by one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryStats {
    /// The lookup's hop count: a peer from our own table is 1 hop, a peer first named by an
    /// h-hop peer is h+1; this is the largest hop count among queried peers that answered.
    pub rounds: u32,
    /// Requests sent.
    pub requests: u32,
    /// Responses received.
    pub responses: u32,
    /// Requests that timed out.
    pub timeouts: u32,
    /// When the command was given.
    pub started: Instant,
    /// When it finished.
    pub finished: Instant,
}

impl QueryStats {
    /// How long the query ran.
    pub fn duration(&self) -> Duration {
        self.finished.saturating_duration_since(self.started)
    }
}

/// Counters of what a node did and dropped. Every dropped datagram is counted somewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams given to `handle_datagram`.
    pub datagrams_received: u64,
    /// Datagrams handed out by `poll_transmit`.
    pub datagrams_sent: u64,
    /// Datagrams that did not decode (bad syntax, missing or invalid fields).
    pub malformed: u64,
    /// Datagrams of an unknown `type`.
    pub unknown_type: u64,
    /// Requests answered.
    pub requests_answered: u64,
    /// Requests refused (store full, oversize value): dropped without an answer.
    pub requests_refused: u64,
    /// Responses that matched a request we sent.
    pub responses_accepted: u64,
    /// Responses matching no request in flight (late, duplicated, or forged).
    pub responses_unmatched: u64,
    /// Responses from an address other than the one the request went to.
    pub responses_wrong_source: u64,
    /// Responses of the wrong kind for their request.
    pub responses_wrong_kind: u64,
    /// Requests that timed out.
    pub request_timeouts: u64,
    /// Copies of unanswered requests sent again (see `Config::request_retries`).
    pub requests_retransmitted: u64,
    /// Requests not sent because `max_pending_requests` were in flight.
    pub requests_deferred: u64,
    /// Datagrams dropped because `max_queued_transmits` were queued.
    pub transmits_dropped: u64,
    /// Peers removed from the routing table after failing too often.
    pub peers_evicted: u64,
    /// Records removed at expiry.
    pub records_expired: u64,
    /// Peers refused by the per-IP caps.
    pub peers_ip_limited: u64,
    /// Replies to unverified senders shortened to the amplification budget.
    pub replies_shortened: u64,
    /// Replies held until their unverified sender answered a ping.
    pub replies_held: u64,
    /// Held replies dropped because the sender never answered (or too many were held).
    pub replies_held_dropped: u64,
    /// Replies to proven addresses shortened or dropped: their reply allowance was spent.
    pub replies_over_allowance: u64,
    /// Verification pings given up to make room for newer ones.
    pub verifications_dropped: u64,
    /// `set`/`set_cached` from unproven senders dropped (no room to hold them until they
    /// answered a verification ping).
    pub stores_unproven_dropped: u64,
    /// `set`s that changed a value we held, applied once their sender answered our
    /// `find_value` of the key with the same value.
    pub updates_confirmed: u64,
    /// `set`s that would have changed a value we held, dropped: their sender's address did
    /// not answer our `find_value` with that value (a forged source, or no room to ask).
    pub updates_unconfirmed: u64,
    /// `set_cached` copies kept: most of the closest peers we asked hold the same value.
    pub cached_confirmed: u64,
    /// `set_cached` copies not kept: the closest peers we asked did not hold that value
    /// (or there was nobody to ask, or no room to ask).
    pub cached_unconfirmed: u64,
    /// Incoming `set`/`set_cached` refused by the [`crate::Validator`]: dropped without an
    /// answer.
    pub records_rejected: u64,
    /// Values a lookup received that the [`crate::Validator`] refused (the lookup went on).
    pub values_rejected: u64,
    /// Queries ended by [`crate::Node::cancel`] (their late answers are ignored).
    pub queries_cancelled: u64,
    /// Queries ended by their deadline ([`crate::Node::set_deadline`]).
    pub queries_past_deadline: u64,
    /// Watch events ([`crate::Node::watch`]) dropped because too many were waiting to be
    /// polled.
    pub events_dropped: u64,
    /// Requests received (decoded), by kind; answered or not.
    pub requests_received: RequestCounts,
    /// Requests sent (first copies; retransmissions are in `requests_retransmitted`), by
    /// kind.
    pub requests_sent: RequestCounts,
    /// Verification pings answered from the address they went to: the sender is proven.
    pub verifications_passed: u64,
    /// Verification pings unanswered (or answered from elsewhere): what waited on them is
    /// dropped.
    pub verifications_failed: u64,
    /// IPs found crowded: they proved more distinct ids than `Config::max_ids_per_ip`
    /// (their entries left the routing table).
    pub ips_crowded: u64,
    /// Answers to our lookups from crowded IPs, counted as no answer.
    pub answers_from_crowded: u64,
}

/// Requests by kind: one counter per request type of the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestCounts {
    /// `ping`.
    pub ping: u64,
    /// `find_node`.
    pub find_node: u64,
    /// `find_value`.
    pub find_value: u64,
    /// `set` (store a replica).
    pub set: u64,
    /// `set_cached` (store a cached copy).
    pub set_cached: u64,
    /// `check_store`.
    pub check_store: u64,
}

impl RequestCounts {
    /// Each kind with its wire name, in a fixed order.
    pub fn by_name(&self) -> [(&'static str, u64); 6] {
        [
            ("ping", self.ping),
            ("find_node", self.find_node),
            ("find_value", self.find_value),
            ("set", self.set),
            ("set_cached", self.set_cached),
            ("check_store", self.check_store),
        ]
    }

    /// Counts one request of `kind`.
    pub(crate) fn count(&mut self, kind: RequestKind) {
        let n = match kind {
            RequestKind::Ping => &mut self.ping,
            RequestKind::FindNode => &mut self.find_node,
            RequestKind::FindValue => &mut self.find_value,
            RequestKind::Set => &mut self.set,
            RequestKind::SetCached => &mut self.set_cached,
            RequestKind::CheckStore => &mut self.check_store,
        };
        *n += 1;
    }
}
