//! `KademliaServer::metrics()` (feature `metrics`; issue 16, item 5): `kad_` series whose
//! values are the node's `stats()`, over real sockets.

use std::collections::BTreeMap;

use kad_tokio::{KademliaServer, Stats, Value};

/// The series of a scrape, by name with labels.
fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(name.starts_with("kad_"), "{l}");
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// A scrape and the stats around it, once the node is quiet (the stats before and after
/// the scrape agree: no datagram came in between).
async fn quiet_scrape(node: &KademliaServer) -> (Stats, BTreeMap<String, f64>) {
    for _ in 0..100 {
        let before = node.stats().await.unwrap();
        let text = node.metrics().await.unwrap();
        if node.stats().await.unwrap() == before {
            return (before, series(&text));
        }
        tokio::task::yield_now().await;
    }
    panic!("the node never went quiet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_equal_stats() {
    let a = KademliaServer::builder().listen_default().await.unwrap();
    let b = KademliaServer::builder().listen_default().await.unwrap();
    b.bootstrap(&[a.local_addr().to_string()]).await.unwrap();
    b.set("greeting", "hello").await.unwrap();
    assert_eq!(a.get("greeting").await.unwrap(), Some(Value::from("hello")));

    for node in [&a, &b] {
        let (stats, m) = quiet_scrape(node).await;
        let c = stats.core;
        assert!(c.datagrams_received > 0);
        let expect = [
            ("kad_routing_table_peers", stats.peers as u64),
            ("kad_records", stats.records as u64),
            ("kad_datagrams_received_total", c.datagrams_received),
            ("kad_datagrams_sent_total", c.datagrams_sent),
            ("kad_requests_answered_total", c.requests_answered),
            (
                r#"kad_responses_total{outcome="accepted"}"#,
                c.responses_accepted,
            ),
            (
                r#"kad_requests_sent_total{kind="find_node"}"#,
                c.requests_sent.find_node,
            ),
            (
                r#"kad_requests_received_total{kind="set"}"#,
                c.requests_received.set,
            ),
            ("kad_queries_finished_total", stats.queries),
        ];
        for (name, value) in expect {
            assert_eq!(m[name], value as f64, "{name}");
        }
    }
    let (_, m) = quiet_scrape(&a).await;
    assert_eq!(m[r#"kad_query_rounds_count{kind="get"}"#], 1.0);
    a.stop().await;
    b.stop().await;
}
