//! `KademliaServer::metrics()` on smol (feature `metrics`; issue 16, item 5): `kad_`
//! series whose values are the node's `stats()`.

use kad_smol::{KademliaServer, Value};

#[test]
fn metrics_equal_stats() {
    smol::block_on(async {
        let a = KademliaServer::builder().listen_default().await.unwrap();
        let b = KademliaServer::builder().listen_default().await.unwrap();
        b.bootstrap(&[a.local_addr().to_string()]).await.unwrap();
        b.set("greeting", "hello").await.unwrap();
        assert_eq!(a.get("greeting").await.unwrap(), Some(Value::from("hello")));
        // Once the node is quiet (the stats before and after the scrape agree), the scrape
        // shows the same numbers.
        let (stats, text) = loop {
            let before = a.stats().await.unwrap();
            let text = a.metrics().await.unwrap();
            if a.stats().await.unwrap() == before {
                break (before, text);
            }
            smol::future::yield_now().await;
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("kad_"), "{line}");
        }
        let c = stats.core;
        assert!(c.datagrams_received > 0 && stats.peers == 1);
        for (name, value) in [
            ("kad_routing_table_peers", stats.peers as u64),
            ("kad_datagrams_received_total", c.datagrams_received),
            ("kad_requests_answered_total", c.requests_answered),
            ("kad_queries_finished_total", stats.queries),
        ] {
            assert!(
                text.contains(&format!("\n{name} {value}\n")),
                "{name}\n{text}"
            );
        }
        assert!(
            text.contains("\nkad_query_rounds_count{kind=\"get\"} 1\n"),
            "{text}"
        );
        a.stop().await;
        b.stop().await;
    });
}
