//! The `kad_` metrics (feature `metrics`) of servers on a lossless in-memory network: every
//! series is prefixed, and the values equal the servers' `stats()`.

// A test needs one real instant as a base; the servers only see offsets from it.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kad_core::server::{Command, Reply, Server};
use kad_core::{Config, Node, NodeId, QueryResult};

/// Each datagram takes this long to arrive: the round trips the histogram sees.
const LATENCY: Duration = Duration::from_millis(5);

struct Net {
    servers: Vec<Server<u32>>,
    now: Instant,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 4000))
}

impl Net {
    fn new(n: usize) -> Net {
        let now = Instant::now();
        let servers = (0..n)
            .map(|i| {
                let id = NodeId::for_key(&format!("node {i}"));
                let mut node = Node::new(Config::default(), id, [i as u8; 32], now);
                node.set_local_addr(addr(i));
                Server::new(node)
            })
            .collect();
        Net { servers, now }
    }

    /// Runs `cmd` on server `i` and delivers datagrams (one `LATENCY` apart) until its
    /// reply comes.
    fn run(&mut self, i: usize, cmd: Command) -> Reply {
        self.servers[i].handle_command(self.now, 7, cmd);
        for _ in 0..10_000 {
            if let Some((token, reply)) = self.servers[i].poll_reply() {
                assert_eq!(token, 7);
                return reply;
            }
            self.now += LATENCY;
            let now = self.now;
            for s in &mut self.servers {
                s.begin_pass(now);
            }
            let mut wire = Vec::new();
            for (from, s) in self.servers.iter_mut().enumerate() {
                while let Some(t) = s.poll_transmit() {
                    wire.push((addr(from), t));
                }
                while s.poll_reply().is_some() {}
            }
            for (from, t) in wire {
                let to = usize::from(
                    t.dst
                        .ip()
                        .to_string()
                        .rsplit('.')
                        .next()
                        .unwrap()
                        .parse::<u8>()
                        .unwrap(),
                ) - 1;
                self.servers[to].handle_datagram(now, from, &t.payload);
            }
        }
        panic!("no reply from server {i}");
    }

    /// Scrapes server `i`: its series by name (with labels), and the text.
    fn scrape(&mut self, i: usize) -> (BTreeMap<String, f64>, String) {
        let Reply::Metrics(text) = self.run(i, Command::Metrics) else {
            panic!("not a metrics reply");
        };
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap();
                (name.to_owned(), value.parse().unwrap())
            })
            .collect();
        (series, text)
    }
}

#[test]
fn metrics_are_kad_series_equal_to_stats() {
    let mut net = Net::new(4);
    for i in 1..4 {
        let reply = net.run(i, Command::Bootstrap(vec![addr(0)]));
        assert!(matches!(
            reply,
            Reply::Query(Ok((QueryResult::Bootstrap(Ok(_)), _)))
        ));
    }
    let reply = net.run(1, Command::Put("greeting".into(), "hello".into()));
    assert!(matches!(
        reply,
        Reply::Query(Ok((QueryResult::Put(Ok(_)), _)))
    ));
    let reply = net.run(2, Command::Get("greeting".into()));
    assert!(matches!(
        reply,
        Reply::Query(Ok((QueryResult::Get(Ok(Some(_))), _)))
    ));

    for i in 0..4 {
        let (series, text) = net.scrape(i);
        let stats = net.servers[i].stats();
        let c = stats.core;
        assert!(series.len() > 50, "{text}");
        for name in series.keys() {
            assert!(name.starts_with("kad_"), "{name}");
        }
        let get = |name: &str| -> f64 {
            *series
                .get(name)
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        let expect = [
            ("kad_routing_table_peers", stats.peers as u64),
            ("kad_records", stats.records as u64),
            ("kad_queries_active", stats.active_queries as u64),
            ("kad_requests_in_flight", 0),
            ("kad_requests_held", 0),
            ("kad_datagrams_received_total", c.datagrams_received),
            ("kad_datagrams_sent_total", c.datagrams_sent),
            (
                r#"kad_datagrams_dropped_total{reason="malformed"}"#,
                c.malformed,
            ),
            (
                r#"kad_requests_received_total{kind="ping"}"#,
                c.requests_received.ping,
            ),
            (
                r#"kad_requests_received_total{kind="find_node"}"#,
                c.requests_received.find_node,
            ),
            (
                r#"kad_requests_received_total{kind="set"}"#,
                c.requests_received.set,
            ),
            (
                r#"kad_requests_sent_total{kind="ping"}"#,
                c.requests_sent.ping,
            ),
            (
                r#"kad_requests_sent_total{kind="find_node"}"#,
                c.requests_sent.find_node,
            ),
            (
                r#"kad_requests_sent_total{kind="find_value"}"#,
                c.requests_sent.find_value,
            ),
            (
                r#"kad_requests_sent_total{kind="set"}"#,
                c.requests_sent.set,
            ),
            ("kad_requests_answered_total", c.requests_answered),
            ("kad_request_timeouts_total", c.request_timeouts),
            (
                r#"kad_responses_total{outcome="accepted"}"#,
                c.responses_accepted,
            ),
            (
                r#"kad_verifications_total{outcome="passed"}"#,
                c.verifications_passed,
            ),
            ("kad_replies_held_total", c.replies_held),
            ("kad_queries_finished_total", stats.queries),
            ("kad_query_requests_total", stats.query_requests),
            // No request went out twice, so every answer gave a round trip.
            ("kad_rtt_seconds_count", c.responses_accepted),
        ];
        for (name, value) in expect {
            assert_eq!(get(name), value as f64, "{name} of server {i}\n{text}");
        }
        assert_eq!(c.requests_retransmitted, 0);
        // The traffic was real: a test of zeros would prove nothing.
        assert!(c.datagrams_received > 0 && c.responses_accepted > 0);
        assert!(stats.peers > 0);
        let rtt_sum = get("kad_rtt_seconds_sum");
        assert!(rtt_sum >= c.responses_accepted as f64 * 0.005, "{rtt_sum}");
        assert_eq!(
            get(r#"kad_query_rounds_count{kind="bootstrap"}"#),
            if i == 0 { 0.0 } else { 1.0 }
        );
    }

    // The new counters count what happened: on a lossless network with no retransmission,
    // each kind of request was received as often as it was sent, and every verification
    // ping was answered.
    let all: Vec<_> = net.servers.iter().map(|s| s.stats().core).collect();
    let kinds = |f: fn(&kad_core::Stats) -> kad_core::RequestCounts| -> Vec<(&str, u64)> {
        let mut sum = [0u64; 6];
        for c in &all {
            for (k, (_, n)) in f(c).by_name().iter().enumerate() {
                sum[k] += n;
            }
        }
        let names = kad_core::RequestCounts::default().by_name().map(|(n, _)| n);
        names.into_iter().zip(sum).collect()
    };
    let sent = kinds(|c| c.requests_sent);
    assert_eq!(sent, kinds(|c| c.requests_received));
    for kind in ["ping", "find_node", "find_value", "set"] {
        assert!(
            sent.iter().any(|&(k, n)| k == kind && n > 0),
            "{kind}: {sent:?}"
        );
    }
    assert!(all.iter().map(|c| c.verifications_passed).sum::<u64>() > 0);
    assert_eq!(all.iter().map(|c| c.verifications_failed).sum::<u64>(), 0);

    // The gauges are read at the scrape: a get just started has its requests in flight.
    let now = net.now;
    net.servers[3].handle_command(now, 8, Command::Get("greeting".into()));
    let in_flight = net.servers[3].node().requests_in_flight();
    assert!(in_flight > 0);
    let text = net.servers[3].metrics().to_text();
    assert!(
        text.contains(&format!("\nkad_requests_in_flight {in_flight}\n")),
        "{text}"
    );
    assert!(text.contains("\nkad_queries_active 1\n"), "{text}");

    // The writer's and the reader's queries, in their histograms.
    let (series, _) = net.scrape(1);
    assert_eq!(
        series[r#"kad_query_duration_seconds_count{kind="put"}"#],
        1.0
    );
    assert!(series["kad_store_bytes"] > 0.0);
    let (series, _) = net.scrape(2);
    assert_eq!(series[r#"kad_query_rounds_count{kind="get"}"#], 1.0);
    assert!(series[r#"kad_query_duration_seconds_sum{kind="get"}"#] >= 0.01);
    // Somebody stored the value for server 1.
    let stored: f64 = (0..4)
        .filter(|&i| i != 1)
        .map(|i| net.scrape(i).0[r#"kad_requests_received_total{kind="set"}"#])
        .sum();
    assert!(stored >= 1.0);
}
