//! The state file (`Builder::state_file`) on smol, smoke tests: a round trip through
//! `stop()` and `listen`, and a final write when the last handle is dropped. The file's
//! behaviour (periodic writes, locking, the errors for a corrupt, truncated, foreign or
//! unwritable file) is tested once for both adapters in kad-core (`io::state_file`,
//! `io::host`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kad_smol::{KademliaServer, RecordKind, Snapshot, Value};

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
