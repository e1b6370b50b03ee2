//! The `kad` command as scripts use it: `node`, `put`, `get`, `swarm`, exit codes and
//! output. Needs the `cli` feature: `cargo test -p kad-tokio --features cli`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KAD: &str = env!("CARGO_BIN_EXE_kad");

/// A `kad node` process, killed (SIGTERM, then SIGKILL) when dropped.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    id: String,
}

impl NodeProcess {
    fn start(args: &[&str]) -> NodeProcess {
        let mut child = Command::new(KAD)
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kad node");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // READY <ip>:<port> <node_id>
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{line:?}");
        assert_eq!(parts[0], "READY");
        let addr: SocketAddr = parts[1].parse().expect("address");
        assert_eq!(parts[2].len(), 40);
        assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()));
        NodeProcess {
            child,
            addr,
            id: parts[2].to_owned(),
        }
    }

    /// SIGTERM; the node must exit 0 promptly.
    fn terminate(mut self) {
        signal(&self.child, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "kad node exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "kad node ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "kill {sig} failed");
}

fn kad(args: &[&str]) -> Output {
    Command::new(KAD).args(args).output().expect("run kad")
}

fn network(codec: &str) -> (NodeProcess, NodeProcess) {
    let a = NodeProcess::start(&["--codec", codec]);
    let boot = a.addr.to_string();
    let b = NodeProcess::start(&["--codec", codec, "--bootstrap", &boot, "--k", "20"]);
    (a, b)
}

fn put_get_round_trip(codec: &str) {
    let (a, b) = network(codec);
    let (via_a, via_b) = (a.addr.to_string(), b.addr.to_string());

    let out = kad(&[
        "put",
        "--codec",
        codec,
        "--bootstrap",
        &via_a,
        "greeting",
        "héllo 🚀",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kad(&["get", "--codec", codec, "--bootstrap", &via_b, "greeting"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, "héllo 🚀\n".as_bytes());

    // Bytes: given and printed as hex, or printed raw.
    let out = kad(&[
        "put",
        "--codec",
        codec,
        "--bootstrap",
        &via_b,
        "--hex",
        "blob",
        "00ff10",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kad(&[
        "get",
        "--codec",
        codec,
        "--bootstrap",
        &via_a,
        "--hex",
        "blob",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "00ff10\n");
    let out = kad(&["get", "--codec", codec, "--bootstrap", &via_a, "blob"]);
    assert_eq!(out.stdout, vec![0x00, 0xff, 0x10]);

    // Not found: exit 1 and says so.
    let out = kad(&["get", "--codec", codec, "--bootstrap", &via_a, "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    assert!(out.stdout.is_empty());

    // Both nodes know each other's id.
    assert_ne!(a.id, b.id);
    a.terminate();
    b.terminate();
}

#[test]
fn node_put_get_json() {
    put_get_round_trip("json");
}

#[test]
fn node_put_get_bencode() {
    put_get_round_trip("bencode");
}

#[test]
fn errors_have_their_exit_codes() {
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = dead.to_string();
    // Nobody answers: any other error is exit 2, with the reason.
    let out = kad(&["get", "--bootstrap", &dead, "k"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrap failed"));
    let out = kad(&["put", "--bootstrap", &dead, "k", "v"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrap failed"));
    let out = kad(&["put", "--bootstrap", &dead, "--hex", "k", "zz"]);
    assert_ne!(out.status.code(), Some(0));
    // One node is enough to acknowledge a value.
    let lone = NodeProcess::start(&[]);
    let out = kad(&["put", "--bootstrap", &lone.addr.to_string(), "k", "v"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lone.terminate();
    // Bad flags are usage errors.
    assert_ne!(kad(&["node", "--codec", "xml"]).status.code(), Some(0));
    assert_ne!(
        kad(&["put", "k", "v"]).status.code(),
        Some(0),
        "--bootstrap is required"
    );
}

#[test]
fn swarm_prints_its_table_and_finds_every_key() {
    let out = kad(&[
        "swarm", "--nodes", "30", "--keys", "20", "--codec", "bencode",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("put") && table.contains("get") && table.contains("p99"));
    assert!(table.contains("20/20"), "{table}");
    assert!(table.contains("all 20 keys found"), "{table}");
    // Progress went to stderr, not into the table.
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrapped"));
}
