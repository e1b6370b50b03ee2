//! The state file (`Builder::state_file`) on smol: a round trip through `stop()` and
//! `listen`, periodic writes, a final write when the last handle is dropped, and the
//! clear errors for a corrupt, truncated or foreign file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kad_smol::{
    Error, KademliaServer, NodeId, RecordKind, Snapshot, SnapshotError, StateError, Value,
};

/// An empty directory for one test under cargo's scratch directory.
fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kad-smol-state-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_snapshot(path: &Path) -> Snapshot {
    Snapshot::from_bytes(&std::fs::read(path).unwrap()).unwrap()
}

fn kind_of(s: &Snapshot, key: &str) -> Option<RecordKind> {
    s.records.iter().find(|r| r.key == key).map(|r| r.kind)
}

/// A node stopped and listened again from its file on the same address has its id, its
/// peers and its records back, published ones still published.
#[test]
fn stop_and_listen_restores_id_peers_and_records() {
    smol::block_on(async {
        let dir = test_dir("round-trip");
        let path = dir.join("node.state");
        let other = KademliaServer::listen("127.0.0.1:0").await.unwrap();
        let node = KademliaServer::builder()
            .state_file(&path)
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        let (id, addr) = (node.node_id(), node.local_addr());
        node.bootstrap(&[other.local_addr().to_string()])
            .await
            .unwrap();
        node.set("mine", "published here").await.unwrap();
        other.set("theirs", vec![0u8, 1, 2]).await.unwrap();
        node.stop().await;

        let file = read_snapshot(&path);
        assert_eq!(file.id, id);
        assert_eq!(kind_of(&file, "mine"), Some(RecordKind::Published));
        assert_eq!(kind_of(&file, "theirs"), Some(RecordKind::Replica));
        other.stop().await;

        let back = KademliaServer::builder()
            .state_file(&path)
            .listen(addr)
            .await
            .unwrap();
        assert_eq!(back.node_id(), id);
        assert_eq!(back.local_addr(), addr);
        assert_eq!(
            back.get_local("mine").await.unwrap(),
            Some(Value::from("published here"))
        );
        assert_eq!(
            back.get_local("theirs").await.unwrap(),
            Some(Value::from(vec![0u8, 1, 2]))
        );
        let peers = back.peers().await.unwrap();
        assert_eq!(peers.len(), 1, "{peers:?}");
        back.stop().await;
        // Still the publisher of its own record after a second round.
        assert_eq!(
            kind_of(&read_snapshot(&path), "mine"),
            Some(RecordKind::Published)
        );
        println!(
            "restored node {id} on {addr}: 2 records, {} peer",
            peers.len()
        );
    })
}

/// A fresh node writes its file at once, then every interval, without being stopped.
#[test]
fn state_is_written_at_start_and_every_interval() {
    smol::block_on(async {
        let dir = test_dir("interval");
        let path = dir.join("node.state");
        let node = KademliaServer::builder()
            .state_file(&path)
            .state_interval(Duration::from_millis(50))
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        assert_eq!(read_snapshot(&path).id, node.node_id());
        let other = KademliaServer::listen("127.0.0.1:0").await.unwrap();
        other
            .bootstrap(&[node.local_addr().to_string()])
            .await
            .unwrap();
        other.set("k", "v").await.unwrap();
        smol::Timer::after(Duration::from_millis(300)).await;
        let file = read_snapshot(&path);
        assert_eq!(kind_of(&file, "k"), Some(RecordKind::Replica));
        assert_eq!(file.peers.len(), 1);
        let stats = node.stats().await.unwrap();
        assert!(stats.state_saves >= 2, "{stats:?}");
        assert_eq!(stats.state_save_errors, 0);
        println!(
            "{} periodic writes in 300 ms at a 50 ms interval",
            stats.state_saves
        );
        node.stop().await;
        other.stop().await;
        // Between writes (and after the last) only the file itself and its lock are left.
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["node.state", "node.state.lock"]);
    })
}

/// `listen` on a bad file fails with `Error::State` naming the file and the reason, and
/// leaves the file as it was: a node never silently starts afresh over its old state.
#[test]
fn corrupt_or_truncated_state_file_is_a_clear_error() {
    smol::block_on(async {
        let dir = test_dir("corrupt");
        let good = dir.join("good.state");
        let node = KademliaServer::builder()
            .state_file(&good)
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        node.stop().await;
        let bytes = std::fs::read(&good).unwrap();

        let mut flipped = bytes.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 0x20;
        let cases: [(&str, Vec<u8>, SnapshotError); 4] = [
            (
                "truncated",
                bytes[..bytes.len() - 7].to_vec(),
                SnapshotError::Checksum,
            ),
            ("corrupt", flipped, SnapshotError::Checksum),
            ("empty", Vec::new(), SnapshotError::BadMagic),
            ("foreign", b"{\"id\": 1}".to_vec(), SnapshotError::BadMagic),
        ];
        for (name, contents, reason) in cases {
            let path = dir.join(format!("{name}.state"));
            std::fs::write(&path, &contents).unwrap();
            let err = KademliaServer::builder()
                .state_file(&path)
                .listen("127.0.0.1:0")
                .await
                .expect_err(name);
            let message = err.to_string();
            match err {
                Error::State {
                    path: p,
                    source: StateError::Invalid(r),
                } => {
                    assert_eq!(p, path);
                    assert_eq!(r, reason, "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
            assert!(message.contains(&*path.to_string_lossy()), "{message}");
            assert_eq!(std::fs::read(&path).unwrap(), contents, "{name} untouched");
            println!("{name}: {message}");
        }
    })
}

/// Another node's file, and a path that cannot be written, are refused too.
#[test]
fn foreign_id_and_unwritable_path_are_errors() {
    smol::block_on(async {
        let dir = test_dir("foreign");
        let path = dir.join("node.state");
        let node = KademliaServer::builder()
            .state_file(&path)
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        let id = node.node_id();
        node.stop().await;
        let given = NodeId::for_key("someone else");
        let err = KademliaServer::builder()
            .state_file(&path)
            .node_id(given)
            .listen("127.0.0.1:0")
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::State { source: StateError::WrongNodeId { file, given: g }, .. }
                    if *file == id && *g == given
            ),
            "{err:?}"
        );
        println!("{err}");
        // The same id is fine.
        let same = KademliaServer::builder()
            .state_file(&path)
            .node_id(id)
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        same.stop().await;

        let nowhere = dir.join("no such directory").join("node.state");
        let err = KademliaServer::builder()
            .state_file(&nowhere)
            .listen("127.0.0.1:0")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::State { path, source: StateError::Write(_) } if *path == nowhere),
            "{err:?}"
        );
        println!("{err}");
    })
}

/// Dropping every handle without `stop()` ends the node as `stop()` does: with a last
/// write of its state.
#[test]
fn dropping_every_handle_writes_the_state() {
    smol::block_on(async {
        let dir = test_dir("drop");
        let path = dir.join("node.state");
        let node = KademliaServer::builder()
            .state_file(&path)
            .listen("127.0.0.1:0")
            .await
            .unwrap();
        let other = KademliaServer::listen("127.0.0.1:0").await.unwrap();
        other
            .bootstrap(&[node.local_addr().to_string()])
            .await
            .unwrap();
        other.set("k", "v").await.unwrap();
        drop(node);
        // Well before the 60 s interval: only the final write can have stored "k".
        let deadline = Instant::now() + Duration::from_secs(5);
        while kind_of(&read_snapshot(&path), "k").is_none() {
            assert!(Instant::now() < deadline, "no final write");
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        other.stop().await;
    })
}

/// A state file in use is locked: a second node on it is refused until the first stops.
#[test]
fn a_second_node_cannot_use_a_state_file_in_use() {
    smol::block_on(async {
        let dir = test_dir("locked");
        let path = dir.join("node.state");
        let start = || {
            KademliaServer::builder()
                .state_file(&path)
                .listen("127.0.0.1:0")
        };
        let first = start().await.unwrap();
        let err = start().await.expect_err("a second node on a file in use");
        assert!(
            matches!(
                &err,
                Error::State {
                    source: StateError::Locked { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        first.stop().await;
        start().await.unwrap().stop().await;
    })
}
