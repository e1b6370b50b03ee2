//! The redb record store of `examples/redb_store` (issue 16): a node restarted on the same
//! database keeps its records without a state file.

// The store converts between `Instant`s and the wall clock; the test builds records with
// real instants.
#![allow(clippy::disallowed_methods)]

#[path = "../examples/redb_store/store.rs"]
mod store;

use std::time::{Duration, Instant};

use kad_tokio::{Error, KademliaServer, Record, RecordKind, RecordStore, Value};
use store::RedbStore;

fn open(path: &std::path::Path) -> RedbStore {
    RedbStore::open(path, 1000, 1 << 20, 100).unwrap()
}

/// Node `a` receives a record from `b` and publishes one; a node on `a`'s store after `a`
/// stopped holds both (`with_store` false: the same run on the default in-memory store,
/// where they are lost).
async fn restart(with_store: bool) -> (Option<Value>, Option<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.redb");
    let builder = |store: bool| {
        let b = KademliaServer::builder().query_timeout(Duration::from_secs(2));
        match store {
            true => b.record_store(open(&path)),
            false => b,
        }
    };
    let a = builder(with_store).listen("127.0.0.1:0").await.unwrap();
    let b = KademliaServer::listen("127.0.0.1:0").await.unwrap();
    b.bootstrap(&[a.local_addr().to_string()]).await.unwrap();
    b.set("from b", "replica").await.unwrap();
    a.set("from a", vec![7u8; 3]).await.unwrap();
    assert_eq!(a.get_local("from b").await.unwrap(), Some("replica".into()));
    let id = a.node_id();
    a.stop().await;
    b.stop().await;
    let again = builder(with_store)
        .node_id(id)
        .listen("127.0.0.1:0")
        .await
        .unwrap();
    let held = (
        again.get_local("from b").await.unwrap(),
        again.get_local("from a").await.unwrap(),
    );
    again.stop().await;
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_on_its_redb_store_keeps_its_records() {
    let held = restart(true).await;
    assert_eq!(held, (Some("replica".into()), Some(vec![7u8; 3].into())));
    // Without the store the same restart loses them: the records came from the file.
    assert_eq!(restart(false).await, (None, None));
}

#[test]
fn records_keep_their_kind_source_and_times_and_expired_ones_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.redb");
    let now = Instant::now();
    let hour = Duration::from_secs(3600);
    let kept = Record {
        value: Value::from("v"),
        kind: RecordKind::Published,
        expires: now + 24 * hour,
        republish_at: Some(now + hour),
        source: Some([1, 2, 3, 4, 0, 0, 0, 0]),
    };
    let mut s = open(&path);
    s.put("kept", kept.clone()).unwrap();
    let stale = Record {
        expires: now,
        ..kept.clone()
    };
    s.put("stale", stale).unwrap();
    s.put("removed", kept.clone()).unwrap();
    assert!(s.remove("removed").is_some());
    drop(s);

    let s = open(&path);
    assert_eq!(s.len(), 1, "the stale and the removed record are gone");
    let back = s.get(Instant::now(), "kept").unwrap();
    assert_eq!(
        (&back.value, back.kind, back.source),
        (&kept.value, kept.kind, kept.source)
    );
    // Times go through the wall clock at millisecond precision.
    let off = |a: Instant, b: Instant| a.max(b) - a.min(b);
    assert!(off(back.expires, kept.expires) < Duration::from_secs(1));
    assert!(off(back.republish_at.unwrap(), kept.republish_at.unwrap()) < Duration::from_secs(1));
    s.check().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn one_store_serves_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let builder = KademliaServer::builder().record_store(open(&dir.path().join("r.redb")));
    let first = builder.clone().listen("127.0.0.1:0").await.unwrap();
    let second = builder.listen("127.0.0.1:0").await;
    assert!(matches!(second, Err(Error::RecordStoreTaken)), "{second:?}");
    first.stop().await;
}
