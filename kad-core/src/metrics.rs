//! Prometheus metrics (feature `metrics`): what a node and its server count, as
//! `kad_`-prefixed series in the Prometheus text exposition format, through the
//! `prometheus-client` crate.
//!
//! Sans-IO like the rest of the crate: this module fills a registry and encodes text; an
//! adapter serves it (`KademliaServer::metrics()` in kad-tokio and kad-smol, and
//! `kad node --metrics ADDR` over HTTP). The counters and gauges are those of
//! [`Stats`](crate::Stats) and [`ServerStats`], read when scraped, so the node pays nothing
//! for them between scrapes. The histograms are observed where their samples pass: round
//! trips in the request table (each answer that gives a round-trip sample: not an answer to
//! a retransmitted request, Karn's rule), and the rounds and duration of each user query in
//! the [`Server`] when its [`Event::QueryFinished`](crate::Event::QueryFinished) goes by.
//!
//! | series | type | what |
//! |---|---|---|
//! | `kad_routing_table_peers` | gauge | peers in the routing table |
//! | `kad_records`, `kad_store_bytes` | gauge | records stored and their bytes (as `max_store_bytes` counts) |
//! | `kad_queries_active` | gauge | queries in flight, the user's and the node's own |
//! | `kad_requests_in_flight`, `kad_requests_held` | gauge | our requests awaiting answers; unproven senders' requests awaiting their verification |
//! | `kad_datagrams_{received,sent}_total` | counter | datagrams in and out |
//! | `kad_datagrams_dropped_total{reason}` | counter | `malformed`, `unknown_type`, `over_budget`, `send_queue_full`, `send_error` |
//! | `kad_requests_{received,sent}_total{kind}` | counter | by wire request kind (`ping`, `find_node`, ...) |
//! | `kad_requests_{answered,refused,retransmitted,deferred}_total`, `kad_request_timeouts_total` | counter | |
//! | `kad_responses_total{outcome}` | counter | `accepted`, `unmatched`, `wrong_source`, `wrong_kind` |
//! | `kad_verifications_total{outcome}` | counter | verification pings `passed`, `failed`, `dropped` |
//! | `kad_update_checks_total{outcome}`, `kad_cache_checks_total{outcome}` | counter | `confirmed`, `unconfirmed` |
//! | `kad_replies_held_total`, `kad_replies_held_dropped_total`, `kad_replies_shortened_total{reason}` | counter | |
//! | `kad_queries_finished_total`, `kad_query_requests_total`, ... | counter | the rest of [`ServerStats`] |
//! | `kad_rtt_seconds` | histogram | round trips |
//! | `kad_query_rounds{kind}`, `kad_query_duration_seconds{kind}` | histogram | user queries by kind (`get`, `put`, ...) |

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::server::{Server, ServerStats};
use crate::{QueryResult, QueryStats};

/// The `Content-Type` of [`Scrape::to_text`]: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The prefix of every series name.
pub const PREFIX: &str = "kad";

/// The kinds of user query, as the `kind` label names them.
const QUERY_KINDS: [&str; 6] = ["ping", "bootstrap", "find_node", "find_value", "get", "put"];

/// Histograms of finished user queries by kind: their rounds (the largest hop count of a
/// peer that answered) and their duration.
#[derive(Debug, Clone)]
pub struct QueryHistograms {
    rounds: [Histogram; 6],
    duration: [Histogram; 6],
}

impl Default for QueryHistograms {
    fn default() -> Self {
        QueryHistograms {
            // 1 to 20 hops; a lookup in a million nodes takes about five.
            rounds: std::array::from_fn(|_| {
                Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0])
            }),
            // 1 ms to 16 s.
            duration: std::array::from_fn(|_| Histogram::new(exponential_buckets(0.001, 2.0, 15))),
        }
    }
}

impl QueryHistograms {
    /// Counts one finished query: `result` tells its kind.
    pub fn observe(&self, result: &QueryResult, stats: &QueryStats) {
        let kind = match result {
            QueryResult::Ping(_) => 0,
            QueryResult::Bootstrap(_) => 1,
            QueryResult::FindNode(_) => 2,
            QueryResult::FindValue(_) => 3,
            QueryResult::Get(_) => 4,
            QueryResult::Put(_) => 5,
        };
        self.rounds[kind].observe(f64::from(stats.rounds));
        self.duration[kind].observe(stats.duration().as_secs_f64());
    }
}

/// A histogram of round trips in seconds: 100 µs (loopback) to 3.3 s.
pub(crate) fn rtt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Everything a scrape reports, taken from a [`Server`] at one moment. It is a
/// `prometheus_client` [`Collector`], so it can go into an application's own registry;
/// [`to_text`](Self::to_text) encodes it alone.
#[derive(Debug, Clone)]
pub struct Scrape {
    stats: ServerStats,
    store_bytes: Option<usize>,
    requests_in_flight: usize,
    held_requests: usize,
    rtt: Histogram,
    queries: QueryHistograms,
}

impl Scrape {
    /// The counters of `server` now, with its histograms.
    pub fn of<T>(server: &Server<T>) -> Scrape {
        Scrape {
            stats: server.stats(),
            store_bytes: server.node().store_bytes(),
            requests_in_flight: server.node().requests_in_flight(),
            held_requests: server.node().held_requests(),
            rtt: server.node().rtt_histogram().clone(),
            queries: server.query_histograms().clone(),
        }
    }

    /// The text exposition format ([`CONTENT_TYPE`]), every series named `kad_...`.
    pub fn to_text(&self) -> String {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(self.clone()));
        let mut text = String::new();
        // Writing to a String cannot fail, and every name here is valid.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = &self.stats;
        let c = &s.core;
        gauge(
            &mut e,
            "routing_table_peers",
            "Peers in the routing table.",
            s.peers,
        )?;
        gauge(
            &mut e,
            "records",
            "Records in the local store (expired ones until the next sweep).",
            s.records,
        )?;
        if let Some(bytes) = self.store_bytes {
            gauge(
                &mut e,
                "store_bytes",
                "Bytes of the local store, as max_store_bytes counts them.",
                bytes,
            )?;
        }
        gauge(
            &mut e,
            "queries_active",
            "Queries in flight, the user's and the node's own.",
            s.active_queries,
        )?;
        gauge(
            &mut e,
            "requests_in_flight",
            "Requests sent and waiting for an answer.",
            self.requests_in_flight,
        )?;
        gauge(
            &mut e,
            "requests_held",
            "Requests of unproven senders held until they answer a verification ping.",
            self.held_requests,
        )?;

        counter(
            &mut e,
            "datagrams_received",
            "Datagrams handed to the node.",
            c.datagrams_received,
        )?;
        counter(
            &mut e,
            "datagrams_sent",
            "Datagrams the node handed out to send.",
            c.datagrams_sent,
        )?;
        counters(
            &mut e,
            "datagrams_dropped",
            "Datagrams dropped, by reason.",
            "reason",
            &[
                ("malformed", c.malformed),
                ("unknown_type", c.unknown_type),
                ("over_budget", s.datagrams_dropped),
                ("send_queue_full", c.transmits_dropped),
                ("send_error", s.send_errors),
            ],
        )?;
        counter(&mut e, "recv_errors", "Socket read errors.", s.recv_errors)?;
        counter(
            &mut e,
            "send_blocked",
            "Sends that found the socket's buffer full.",
            s.send_blocked,
        )?;
        counter(
            &mut e,
            "passes_capped",
            "Driver passes that stopped at the datagram budget.",
            s.capped_passes,
        )?;

        counters(
            &mut e,
            "requests_received",
            "Requests received, by kind.",
            "kind",
            &c.requests_received.by_name(),
        )?;
        counters(
            &mut e,
            "requests_sent",
            "Requests sent (first copies), by kind.",
            "kind",
            &c.requests_sent.by_name(),
        )?;
        counter(
            &mut e,
            "requests_answered",
            "Requests answered.",
            c.requests_answered,
        )?;
        counter(
            &mut e,
            "requests_refused",
            "Requests refused without an answer.",
            c.requests_refused,
        )?;
        counter(
            &mut e,
            "requests_retransmitted",
            "Copies of unanswered requests sent again.",
            c.requests_retransmitted,
        )?;
        counter(
            &mut e,
            "requests_deferred",
            "Requests not sent because max_pending_requests were in flight.",
            c.requests_deferred,
        )?;
        counter(
            &mut e,
            "request_timeouts",
            "Requests that timed out.",
            c.request_timeouts,
        )?;
        counters(
            &mut e,
            "responses",
            "Responses received, by outcome.",
            "outcome",
            &[
                ("accepted", c.responses_accepted),
                ("unmatched", c.responses_unmatched),
                ("wrong_source", c.responses_wrong_source),
                ("wrong_kind", c.responses_wrong_kind),
            ],
        )?;

        counters(
            &mut e,
            "verifications",
            "Verification pings to unproven senders, by outcome.",
            "outcome",
            &[
                ("passed", c.verifications_passed),
                ("failed", c.verifications_failed),
                ("dropped", c.verifications_dropped),
            ],
        )?;
        counters(
            &mut e,
            "update_checks",
            "Sets that would change a value, checked with their sender.",
            "outcome",
            &[
                ("confirmed", c.updates_confirmed),
                ("unconfirmed", c.updates_unconfirmed),
            ],
        )?;
        counters(
            &mut e,
            "cache_checks",
            "Cached copies checked with the closest peers.",
            "outcome",
            &[
                ("confirmed", c.cached_confirmed),
                ("unconfirmed", c.cached_unconfirmed),
            ],
        )?;
        counter(
            &mut e,
            "ips_crowded",
            "IPs that proved more node ids than max_ids_per_ip.",
            c.ips_crowded,
        )?;
        counter(
            &mut e,
            "answers_from_crowded",
            "Answers to lookups from crowded IPs, counted as no answer.",
            c.answers_from_crowded,
        )?;
        counter(
            &mut e,
            "stores_unproven_dropped",
            "Stores from unproven senders dropped for want of room.",
            c.stores_unproven_dropped,
        )?;
        counter(
            &mut e,
            "replies_held",
            "Replies held until their unverified sender answered a ping.",
            c.replies_held,
        )?;
        counter(
            &mut e,
            "replies_held_dropped",
            "Held replies dropped.",
            c.replies_held_dropped,
        )?;
        counters(
            &mut e,
            "replies_shortened",
            "Replies shortened or dropped, by budget.",
            "reason",
            &[
                ("unverified", c.replies_shortened),
                ("allowance", c.replies_over_allowance),
            ],
        )?;

        counter(
            &mut e,
            "peers_evicted",
            "Peers removed from the routing table after failing.",
            c.peers_evicted,
        )?;
        counter(
            &mut e,
            "peers_ip_limited",
            "Peers refused by the per-IP caps.",
            c.peers_ip_limited,
        )?;
        counter(
            &mut e,
            "records_expired",
            "Records removed at expiry.",
            c.records_expired,
        )?;
        counter(
            &mut e,
            "records_rejected",
            "Incoming records the validator refused.",
            c.records_rejected,
        )?;
        counter(
            &mut e,
            "values_rejected",
            "Values a lookup received that the validator refused.",
            c.values_rejected,
        )?;

        counter(
            &mut e,
            "queries_finished",
            "User commands that finished.",
            s.queries,
        )?;
        counter(
            &mut e,
            "query_requests",
            "Requests sent for user commands.",
            s.query_requests,
        )?;
        counter(
            &mut e,
            "queries_cancelled",
            "Queries cancelled.",
            c.queries_cancelled,
        )?;
        counter(
            &mut e,
            "queries_past_deadline",
            "Queries ended by their deadline.",
            c.queries_past_deadline,
        )?;
        counter(
            &mut e,
            "events_dropped",
            "Watch events dropped.",
            c.events_dropped,
        )?;
        counters(
            &mut e,
            "state_saves",
            "State file writes, by outcome.",
            "outcome",
            &[("ok", s.state_saves), ("error", s.state_save_errors)],
        )?;

        let m = e.encode_descriptor(
            "rtt_seconds",
            "Round trips of answered requests.",
            None,
            MetricType::Histogram,
        )?;
        self.rtt.encode(m)?;
        histograms(
            &mut e,
            "query_rounds",
            "Rounds (hops) of user queries, by kind.",
            &self.queries.rounds,
        )?;
        histograms(
            &mut e,
            "query_duration_seconds",
            "Duration of user queries, by kind.",
            &self.queries.duration,
        )
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: usize) -> fmt::Result {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One counter family with one label.
fn counters(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for &(value_label, value) in values {
        ConstCounter::new(value).encode(m.encode_family(&[(label, value_label)])?)?;
    }
    Ok(())
}

/// One histogram a query kind.
fn histograms(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    by_kind: &[Histogram; 6],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (kind, h) in QUERY_KINDS.iter().zip(by_kind) {
        h.encode(m.encode_family(&[("kind", *kind)])?)?;
    }
    Ok(())
}
