//! kad-smol's query handles and event stream (issue 16): a dropped `get` frees its slot,
//! and `events()` shows what the node does, in order.

use std::time::Duration;

use kad_smol::{Error, Event, KademliaServer, Notice, Peer, QueryError};
use smol::stream::StreamExt;
use smol::Timer;

async fn node(max_active_queries: usize) -> KademliaServer {
    KademliaServer::builder()
        .max_active_queries(max_active_queries)
        .query_timeout(Duration::from_secs(8))
        .listen("127.0.0.1:0")
        .await
        .expect("listen")
}

#[test]
fn a_dropped_get_frees_its_slot() {
    smol::block_on(async {
        let a = node(1).await;
        let (b, c) = (node(16).await, node(16).await);
        a.bootstrap(&[b.local_addr().to_string()]).await.unwrap();
        // B goes away: a get through it waits for its requests' timeouts.
        b.stop().await;
        let sent = a.stats().await.unwrap().core.datagrams_sent;
        let get = smol::spawn({
            let a = a.clone();
            async move { a.get("nobody has it").await }
        });
        while a.stats().await.unwrap().core.datagrams_sent == sent {
            Timer::after(Duration::from_millis(5)).await;
        }
        // Dropping the task drops the get's future.
        let _ = get.cancel().await;
        match a.ping(&c.local_addr().to_string()).await {
            Ok(peer) => assert_eq!(peer.id, c.node_id()),
            Err(Error::Query(QueryError::TooManyQueries)) => {
                panic!("the dropped get kept its slot")
            }
            Err(e) => panic!("ping: {e}"),
        }
        assert_eq!(a.stats().await.unwrap().core.queries_cancelled, 1);
        a.stop().await;
        c.stop().await;
    });
}

#[test]
fn events_show_a_bootstrap_in_order() {
    smol::block_on(async {
        let (a, b) = (node(16).await, node(16).await);
        let mut events = a.events().await.unwrap();
        a.bootstrap(&[b.local_addr().to_string()]).await.unwrap();
        let mut seen = Vec::new();
        while let Some(Notice::Event(e)) = events.next().await {
            let finished = matches!(e, Event::QueryFinished { .. });
            seen.push(e);
            if finished {
                break;
            }
        }
        assert!(
            matches!(seen.first(), Some(Event::QueryStarted { .. })),
            "{seen:?}"
        );
        let peer = Peer {
            id: b.node_id(),
            addr: b.local_addr(),
        };
        assert!(seen.contains(&Event::PeerAdded { peer }), "{seen:?}");
        a.stop().await;
        // The stream ends once the node has stopped.
        while events.next().await.is_some() {}
        b.stop().await;
    });
}
