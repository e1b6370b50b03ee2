//! No data lost on restart: a `kad node --state FILE` process killed with SIGKILL (no
//! stop, no signal handler) comes back from its file on the same port with the same id
//! and every record it held. Needs the `cli` feature:
//! `cargo test -p kad-tokio --features cli --test persistence`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kad_tokio::{KademliaServer, RecordKind, Snapshot, Value};

const KAD: &str = env!("CARGO_BIN_EXE_kad");
/// The state interval given to the node: short, so the test waits little.
const INTERVAL: &str = "0.2";

/// A `kad node` process; killed when dropped.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    id: String,
}

impl NodeProcess {
    /// Starts `kad node ARGS` with its log in `log`, and waits for its READY line.
    fn start(args: &[&str], log: &Path) -> NodeProcess {
        let mut child = Command::new(KAD)
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(File::create(log).unwrap())
            .spawn()
            .expect("run kad node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // READY <ip>:<port> <node_id>
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(
            parts.len() == 3 && parts[0] == "READY",
            "{line:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        NodeProcess {
            addr: parts[1].parse().expect("address"),
            id: parts[2].to_owned(),
            child,
        }
    }

    /// SIGKILL: the process gets no chance to write anything more.
    fn kill(mut self) {
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn test_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kad-persistence-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn record(i: usize) -> (String, Value) {
    let key = format!("key {i}");
    // Text and bytes: both must come back as the type they were stored with.
    let value = if i % 2 == 0 {
        Value::from(format!("välue {i}"))
    } else {
        Value::from(vec![0u8, 0xff, i as u8])
    };
    (key, value)
}

const RECORDS: usize = 20;

#[test]
fn killed_node_restarts_from_its_state_file_with_every_record() {
    let dir = test_dir("killed");
    let state = dir.join("node.state");
    let state_arg = state.to_str().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let first = NodeProcess::start(
        &["--state", state_arg, "--state-interval", INTERVAL],
        &dir.join("first.log"),
    );
    assert!(state.exists(), "a fresh node writes its file at once");

    // Another node puts the records: the killed node holds them as replicas.
    runtime.block_on(async {
        let writer = KademliaServer::listen("127.0.0.1:0").await.unwrap();
        writer
            .bootstrap(&[first.addr.to_string()])
            .await
            .expect("bootstrap through the node");
        for i in 0..RECORDS {
            let (key, value) = record(i);
            let ok = writer.set(&key, value).await.expect("set");
            assert_eq!(ok.replicas, 1, "{key}: stored on the node");
        }
        // Past one state interval (a few, for a loaded machine).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // The writer goes: from now on the node is the only holder.
        writer.stop().await;
    });
    let (addr, id) = (first.addr, first.id.clone());
    first.kill();

    // What the killed process left behind: a whole file, with every record.
    let file = Snapshot::from_bytes(&std::fs::read(&state).unwrap()).expect("a valid file");
    assert_eq!(file.id.to_string(), id);
    assert_eq!(file.records.len(), RECORDS);
    assert!(file.records.iter().all(|r| r.kind == RecordKind::Replica));

    let port = addr.to_string();
    let second = NodeProcess::start(
        &[
            "--listen",
            &port,
            "--state",
            state_arg,
            "--state-interval",
            INTERVAL,
        ],
        &dir.join("second.log"),
    );
    assert_eq!(second.addr, addr, "same port");
    assert_eq!(second.id, id, "same node id");

    // A new node that knows only the restarted one finds every record on the network.
    let found = runtime.block_on(async {
        let reader = KademliaServer::listen("127.0.0.1:0").await.unwrap();
        reader.ping(&second.addr.to_string()).await.expect("ping");
        let mut found = 0;
        for i in 0..RECORDS {
            let (key, value) = record(i);
            let (got, _) = reader.find_value(&key).await.expect("find_value");
            assert_eq!(got, Some(value), "{key}");
            found += 1;
        }
        reader.stop().await;
        found
    });
    println!(
        "node {id} killed on {addr} and restarted from {} bytes of state: same id, {found}/{RECORDS} records found",
        std::fs::read(&state).unwrap().len()
    );
}

/// A damaged file stops `kad node` with exit code 2 and a message naming the file.
#[test]
fn damaged_state_file_is_refused_by_kad_node() {
    let dir = test_dir("damaged");
    let state = dir.join("node.state");
    let state_arg = state.to_str().unwrap();
    let node = NodeProcess::start(&["--state", state_arg], &dir.join("node.log"));
    node.kill();
    let bytes = std::fs::read(&state).unwrap();
    for (name, contents) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("garbage", b"not a state file".to_vec()),
    ] {
        std::fs::write(&state, &contents).unwrap();
        let out = Command::new(KAD)
            .args(["node", "--state", state_arg])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}: no READY");
        assert!(
            stderr.contains("state file") && stderr.contains(state_arg),
            "{name}: {stderr}"
        );
        assert_eq!(std::fs::read(&state).unwrap(), contents, "{name} untouched");
        println!("{name}: {}", stderr.lines().last().unwrap_or_default());
    }
}

/// Two `kad node` processes never share a state file: the second is refused with exit code
/// 2 and a message saying the file is in use; once the first is killed (the operating
/// system drops its lock), the file can be used again.
#[test]
fn second_kad_node_on_a_state_file_in_use_is_refused() {
    let dir = test_dir("locked");
    let state = dir.join("node.state");
    let state_arg = state.to_str().unwrap();
    let first = NodeProcess::start(&["--state", state_arg], &dir.join("first.log"));
    let out = Command::new(KAD)
        .args(["node", "--state", state_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut second = out;
    // A second node that did start would print READY and run on: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let Some(status) = status else {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second kad node started on a state file in use");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(state_arg) && stderr.contains("another node is using it"),
        "{stderr}"
    );
    println!("{}", stderr.lines().last().unwrap_or_default());
    let id = first.id.clone();
    first.kill();
    let again = NodeProcess::start(&["--state", state_arg], &dir.join("again.log"));
    assert_eq!(again.id, id, "the file's node, restarted");
}
