//! The socket's batched system calls (`recvmmsg`/`sendmmsg` on Linux) against the
//! one-datagram ones: the same behaviour, with IPv4 and IPv6 nodes sharing a thread,
//! values too large for a small buffer, and a send that fails in the middle of a batch.

use std::net::UdpSocket;
use std::time::Duration;

use kad_tokio::{KademliaServer, Value};

async fn node(addr: &str, batch_io: bool) -> KademliaServer {
    KademliaServer::builder()
        .batch_io(batch_io)
        .query_timeout(Duration::from_millis(500))
        .listen(addr)
        .await
        .expect("listen")
}

/// A value of about 30 KB: a datagram far larger than a typical one.
fn large_value(tag: u8) -> Value {
    (0..30_000u32)
        .map(|i| (i as u8) ^ tag)
        .collect::<Vec<u8>>()
        .into()
}

/// Four nodes, batched and not, put and get a large value through each other; all of them
/// on one thread, so that they share the thread's system-call headers.
async fn mixed_network(host: &str) {
    let nodes = [
        node(host, true).await,
        node(host, false).await,
        node(host, true).await,
        node(host, false).await,
    ];
    let first = nodes[0].local_addr().to_string();
    for n in &nodes[1..] {
        n.bootstrap(&[first.as_str()]).await.expect("bootstrap");
    }
    for (i, n) in nodes.iter().enumerate() {
        let key = format!("large-{host}-{i}");
        n.set(&key, large_value(i as u8)).await.expect("set");
        let other = &nodes[(i + 1) % nodes.len()];
        let got = other.get(&key).await.expect("get");
        assert_eq!(got, Some(large_value(i as u8)), "{key}");
    }
    for n in &nodes {
        let st = n.stats().await.unwrap();
        assert_eq!(st.send_errors, 0);
        assert_eq!(st.recv_errors, 0);
        n.stop().await;
    }
}

#[tokio::test]
async fn batched_and_unbatched_nodes_agree_over_ipv4_and_ipv6() {
    mixed_network("127.0.0.1:0").await;
    if UdpSocket::bind("[::1]:0").is_ok() {
        mixed_network("[::1]:0").await;
        // And IPv4 again after IPv6 on the same thread.
        mixed_network("127.0.0.1:0").await;
    } else {
        eprintln!("IPv6 part skipped: this machine has no IPv6 loopback ([::1])");
    }
}

/// The broadcast address refuses a datagram (no `SO_BROADCAST`) in the middle of the
/// bootstrap's pings: that one is counted and dropped, the ones on either side go.
#[tokio::test]
async fn a_send_that_fails_loses_only_its_own_datagram() {
    for batch_io in [true, false] {
        let (a, b, c) = (
            node("127.0.0.1:0", batch_io).await,
            node("127.0.0.1:0", true).await,
            node("127.0.0.1:0", true).await,
        );
        let answered = a
            .bootstrap(&[
                b.local_addr().to_string(),
                "255.255.255.255:9".to_string(),
                c.local_addr().to_string(),
            ])
            .await
            .expect("bootstrap");
        assert_eq!(answered, 2, "batch_io {batch_io}");
        let st = a.stats().await.unwrap();
        assert!(st.send_errors >= 1, "batch_io {batch_io}: {st:?}");
        let peers: Vec<_> = a.peers().await.unwrap().iter().map(|p| p.id).collect();
        assert!(peers.contains(&b.node_id()) && peers.contains(&c.node_id()));
        for n in [a, b, c] {
            n.stop().await;
        }
    }
}
