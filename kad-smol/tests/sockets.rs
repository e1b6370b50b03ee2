//! kad-smol on real UDP sockets, smoke tests: a 50-node loopback network, shutdown and
//! the port released, dropped handles, IPv6. The bencode network, dead bootstrap
//! addresses and the flood are tested once, over kad-tokio (`kad-tokio/tests/sockets.rs`):
//! the same kad-core code (`handle_methods!`, `io::host`) runs under both adapters.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use kad_smol::{Codec, Error, KademliaServer, Value};
use smol::future::FutureExt;
use smol::Timer;

/// `fut`'s output, or `None` after `d`.
async fn timeout<T>(d: Duration, fut: impl std::future::Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::after(d).await;
            None
        })
        .await
}

async fn sleep(d: Duration) {
    Timer::after(d).await;
}

/// Starts `n` nodes on 127.0.0.1 and joins each to the network through a node that is
/// already in it, a few at a time.
async fn network(n: usize, codec: Codec) -> Vec<KademliaServer> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let node = KademliaServer::builder()
            .codec(codec)
            .query_timeout(Duration::from_millis(500))
            .listen("127.0.0.1:0")
            .await
            .expect("listen");
        nodes.push(node);
    }
    for batch in (1..n).collect::<Vec<_>>().chunks(8) {
        let mut joins = Vec::new();
        for &i in batch {
            let node = nodes[i].clone();
            // The first node, and one that joined before this batch.
            let addrs = vec![
                nodes[0].local_addr().to_string(),
                nodes[i / 2].local_addr().to_string(),
            ];
            joins.push(smol::spawn(async move { node.bootstrap(&addrs).await }));
        }
        for j in joins {
            let answered = j.await.expect("bootstrap");
            assert!(answered >= 1);
        }
    }
    nodes
}

async fn stop_all(nodes: &[KademliaServer]) {
    for n in nodes {
        n.stop().await;
    }
}

#[test]
fn fifty_nodes_put_and_get_across_the_network() {
    smol::block_on(async {
        let nodes = network(50, Codec::Json).await;
        for n in &nodes {
            assert!(!n.peers().await.unwrap().is_empty(), "a node knows no peer");
        }
        // Put from one node, get from another, text and bytes.
        for i in 0..25usize {
            let key = format!("key-{i}");
            let value: Value = if i % 2 == 0 {
                format!("välue {i} ✓").into()
            } else {
                vec![i as u8, 0, 255, 7].into()
            };
            let from = &nodes[(i * 7) % 50];
            let put = from.set(&key, value.clone()).await.expect("set");
            assert!(put.replicas >= 1);
            let to = &nodes[(i * 7 + 13) % 50];
            assert_eq!(to.get(&key).await.unwrap(), Some(value), "{key}");
        }
        // An update reaches every replica: any node then reads the new value.
        nodes[3].set("shared", "v1").await.unwrap();
        nodes[40].set("shared", "v2").await.unwrap();
        for n in nodes.iter().step_by(5) {
            assert_eq!(n.get("shared").await.unwrap(), Some(Value::from("v2")));
        }
        assert_eq!(nodes[9].get("never-stored").await.unwrap(), None);
        // find_node gives the k closest live peers, closest first.
        let target = nodes[17].node_id();
        let found = nodes[31].find_node(target).await.unwrap();
        assert_eq!(found[0].id, target);
        assert_eq!(found[0].addr, nodes[17].local_addr());
        let stats = nodes[31].stats().await.unwrap();
        assert!(stats.core.responses_accepted > 0 && stats.queries > 0);
        stop_all(&nodes).await;
    })
}

#[test]
fn stop_releases_the_port_and_fails_pending_calls() {
    smol::block_on(async {
        let a = KademliaServer::listen("127.0.0.1:0").await.unwrap();
        let b = KademliaServer::builder()
            .query_timeout(Duration::from_secs(5))
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        b.bootstrap(&[a.local_addr().to_string()]).await.unwrap();
        // `a` goes away silently: b's lookups now wait for its timeout.
        a.stop().await;
        let port = a.local_addr().port();
        let rebound = UdpSocket::bind(("127.0.0.1", port)).expect("the port is free after stop()");
        drop(rebound);
        let again = KademliaServer::listen(format!("127.0.0.1:{port}"))
            .await
            .expect("listen again on the same port");
        assert_eq!(again.local_addr().port(), port);
        again.stop().await;

        let pending = {
            let b = b.clone();
            smol::spawn(async move { b.get("nobody-has-it").await })
        };
        sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        b.stop().await;
        let result = timeout(Duration::from_secs(2), pending)
            .await
            .expect("the pending call ends with stop()");
        assert!(matches!(result, Err(Error::Stopped)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Every later call fails the same way, and stop() is idempotent.
        assert!(matches!(b.get("x").await, Err(Error::Stopped)));
        assert!(matches!(b.stats().await, Err(Error::Stopped)));
        b.clone().stop().await;
    })
}

#[test]
fn dropping_every_handle_ends_the_node() {
    smol::block_on(async {
        let a = KademliaServer::listen("127.0.0.1:0").await.unwrap();
        let port = a.local_addr().port();
        drop(a);
        // The task notices the closed channel and closes the socket.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "port still bound");
            sleep(Duration::from_millis(10)).await;
        }
    })
}

fn ipv6_loopback() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

#[test]
fn ipv6_loopback_network() {
    smol::block_on(async {
        if !ipv6_loopback() {
            eprintln!("skipped: this machine has no IPv6 loopback ([::1])");
            return;
        }
        let a = KademliaServer::listen("[::1]:0").await.unwrap();
        let b = KademliaServer::builder()
            .codec(Codec::Json)
            .listen("[::1]:0")
            .await
            .unwrap();
        let c = KademliaServer::listen("[::1]:0").await.unwrap();
        assert!(a.local_addr().is_ipv6());
        b.bootstrap(&[a.local_addr().to_string()]).await.unwrap();
        c.bootstrap(&[format!("[::1]:{}", b.local_addr().port())])
            .await
            .unwrap();
        c.set("six", "over IPv6").await.unwrap();
        assert_eq!(a.get("six").await.unwrap(), Some(Value::from("over IPv6")));
        let peer = a.ping(&c.local_addr().to_string()).await.unwrap();
        assert_eq!(peer.id, c.node_id());
        // An IPv6 node cannot reach an IPv4 address: a clear error, not a timeout.
        let err = a.bootstrap(&["127.0.0.1:9"]).await.unwrap_err();
        assert!(matches!(err, Error::NoUsableAddress { .. }), "{err}");
        for n in [a, b, c] {
            n.stop().await;
        }
    })
}
