//! Dropping a call's future cancels its query in the node (issue 16, item 2): on a node
//! that runs one query at a time, a `get` stuck on a dead peer and then dropped leaves
//! room for the next call.

use std::time::Duration;

use kad_tokio::{Error, KademliaServer, QueryError};

async fn node(max_active_queries: usize) -> KademliaServer {
    KademliaServer::builder()
        .max_active_queries(max_active_queries)
        .query_timeout(Duration::from_secs(8))
        .listen("127.0.0.1:0")
        .await
        .expect("listen")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_get_frees_its_slot() {
    let a = node(1).await;
    let (b, c) = (node(16).await, node(16).await);
    a.bootstrap(&[b.local_addr().to_string()]).await.unwrap();
    // B goes away: a get through it waits for its requests' timeouts.
    b.stop().await;
    let sent = a.stats().await.unwrap().core.datagrams_sent;
    let get = tokio::spawn({
        let a = a.clone();
        async move { a.get("nobody has it").await }
    });
    // Until the get has sent its first request, it holds the one slot.
    while a.stats().await.unwrap().core.datagrams_sent == sent {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    get.abort();
    assert!(get.await.unwrap_err().is_cancelled());
    // The next call finds the slot free (without the cancel: TooManyQueries at once).
    let peer = match a.ping(&c.local_addr().to_string()).await {
        Ok(peer) => peer,
        Err(Error::Query(QueryError::TooManyQueries)) => panic!("the dropped get kept its slot"),
        Err(e) => panic!("ping: {e}"),
    };
    assert_eq!(peer.id, c.node_id());
    assert_eq!(a.stats().await.unwrap().core.queries_cancelled, 1);
    a.stop().await;
    c.stop().await;
}
