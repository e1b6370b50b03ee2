//! `KademliaServer::events()` (issue 16, item 1): what the node does, in order.

use std::time::Duration;

use kad_tokio::{Event, Events, KademliaServer, Notice, Peer};

async fn next(events: &Events) -> Option<Notice> {
    std::future::poll_fn(|cx| events.poll_next(cx)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_shows_as_started_peer_added_finished() {
    let listen = || {
        KademliaServer::builder()
            .query_timeout(Duration::from_secs(2))
            .listen("127.0.0.1:0")
    };
    let (a, b) = (listen().await.unwrap(), listen().await.unwrap());
    let events = a.events().await.unwrap();
    a.bootstrap(&[b.local_addr().to_string()]).await.unwrap();
    let b_peer = Peer {
        id: b.node_id(),
        addr: b.local_addr(),
    };
    let mut seen = Vec::new();
    loop {
        let Some(Notice::Event(e)) = next(&events).await else {
            panic!("the stream ended or missed events: {seen:?}");
        };
        let finished = matches!(e, Event::QueryFinished { .. });
        seen.push(e);
        if finished {
            break;
        }
    }
    assert!(matches!(seen[0], Event::QueryStarted { .. }), "{seen:?}");
    assert!(
        seen.contains(&Event::PeerAdded { peer: b_peer }),
        "{seen:?}"
    );
    // The stream ends when the node stops.
    a.stop().await;
    while let Some(n) = next(&events).await {
        assert!(matches!(n, Notice::Event(_)), "{n:?}");
    }
    b.stop().await;
}
