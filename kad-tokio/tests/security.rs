//! Issue 14 (a node believes only what a stranger can prove) over real sockets, against
//! `kad node` processes on loopback, with hand-written JSON datagrams as an attacker
//! would send them:
//!
//! - `eviction_by_claim`: 8+ attacker sockets, each on its own port, send requests that
//!   claim a known peer X's id and never answer the node's pings (or answer with another
//!   id); X must still be in the node's `find_node` answer afterwards.
//! - `reflection_through_verified_address` (root only, else it prints `SKIPPED: <reason>`
//!   and passes): a raw socket sends `find_value` requests for a large value with the
//!   source spoofed to a victim V that once asked the node honestly; the bytes arriving at
//!   V must stay within `unverified_reply_factor` (4) times the bytes sent plus the
//!   `reply_allowance` (64 KiB).
//!
//! `cargo test -p kad-tokio --features cli --test security -- --nocapture`. Set
//! `KAD_TEST_BIN=/path/to/kad` to run the same attacks against another build of `kad`
//! (for example the code before the defences). No assertion is about time: waits are
//! generous and only bound how long the test may take.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value as Json;

/// The `kad` binary under test: this build's, or `KAD_TEST_BIN`.
fn kad_bin() -> String {
    std::env::var("KAD_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kad").to_owned())
}

/// A `kad node` process, killed when dropped (also when the test fails).
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    id: String,
}

impl NodeProcess {
    fn start(args: &[&str]) -> NodeProcess {
        let mut child = Command::new(kad_bin())
            .arg("node")
            .args(["--listen", "127.0.0.1:0"])
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
        NodeProcess {
            child,
            addr: parts[1].parse().expect("address"),
            id: parts[2].to_owned(),
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A 40-hex-digit id of our own, distinct per `n` (not random: ids of the kad nodes are,
/// so a collision is as unlikely as any).
fn test_id(n: u64) -> String {
    let mut id = [0u8; 20];
    ChaCha8Rng::seed_from_u64(n).fill_bytes(&mut id);
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON request datagram as the reference writes it: `type`, the body's fields, `id`
/// (the transaction), `sender`; `pad` spaces make it at least that many bytes longer.
fn request(
    kind: &str,
    body: &str,
    txn: &str,
    sender_id: &str,
    from: SocketAddr,
    pad: usize,
) -> Vec<u8> {
    let pad = if pad > 0 {
        format!(", \"pad\": \"{}\"", " ".repeat(pad))
    } else {
        String::new()
    };
    let body = if body.is_empty() {
        String::new()
    } else {
        format!(", {body}")
    };
    format!(
        "{{\"type\": \"{kind}\"{body}, \"id\": \"{txn}\", \"sender\": {{\"node_id\": \"{sender_id}\", \"ip\": \"{}\", \"port\": {}}}{pad}}}",
        from.ip(),
        from.port()
    )
    .into_bytes()
}

/// The `pong` answering a `ping` with transaction `txn`, claiming `sender_id`.
fn pong(txn: &str, sender_id: &str, from: SocketAddr) -> Vec<u8> {
    format!(
        "{{\"type\": \"pong\", \"sender\": {{\"node_id\": \"{sender_id}\", \"ip\": \"{}\", \"port\": {}}}, \"id\": \"{txn}\"}}",
        from.ip(),
        from.port()
    )
    .into_bytes()
}

/// A UDP socket that speaks the wire by hand: an honest peer (it answers pings with its
/// own id) unless told otherwise.
struct Peer {
    sock: UdpSocket,
    id: String,
    addr: SocketAddr,
}

impl Peer {
    fn bind(ip: &str, id: String) -> Peer {
        let sock = UdpSocket::bind((ip, 0)).expect("bind a test socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        Peer { sock, id, addr }
    }

    /// Receives until `deadline`: answers every ping (honestly), returns the response
    /// with transaction `txn`.
    fn await_response(&self, txn: &str, deadline: Instant) -> Option<Json> {
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(msg) = serde_json::from_slice::<Json>(&buf[..n]) else {
                continue;
            };
            let t = msg["id"].as_str().unwrap_or_default().to_owned();
            match msg["type"].as_str() {
                Some("ping") => {
                    let _ = self.sock.send_to(&pong(&t, &self.id, self.addr), from);
                }
                Some(kind) if kind.ends_with("_res") && t == txn => return Some(msg),
                _ => {}
            }
        }
        None
    }

    /// The node's `find_node` answer for `target` (padded, so that it fits the reply
    /// budget of a node that has not verified us): its peers as (node_id, port).
    fn find_node(&self, node: SocketAddr, target: &str, txn: &str) -> Option<Vec<(String, u16)>> {
        let msg = request(
            "find_node",
            &format!("\"target\": \"{target}\""),
            txn,
            &self.id,
            self.addr,
            600,
        );
        for _ in 0..3 {
            self.sock.send_to(&msg, node).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            if let Some(res) = self.await_response(txn, deadline) {
                let peers = res["peers"].as_array().cloned().unwrap_or_default();
                return Some(
                    peers
                        .iter()
                        .map(|p| {
                            (
                                p["node_id"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_ascii_lowercase(),
                                p["port"].as_u64().unwrap_or(0) as u16,
                            )
                        })
                        .collect(),
                );
            }
        }
        None
    }
}

/// Is peer (`id`, `port`) in `node`'s `find_node` answer for `id`, asked by `asker`?
fn answer_has(asker: &Peer, node: SocketAddr, id: &str, port: u16, txn: &str) -> bool {
    let peers = asker
        .find_node(node, id, txn)
        .expect("the node answers find_node");
    peers.iter().any(|(i, p)| i == id && *p == port)
}

const ATTACKERS: usize = 10;
/// The node's request timeout (`kad node --timeout`, default 2 s); a verification ping to
/// an attacker is given up after it.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);

/// Item 1 of issue 14: requests claiming X's id from attacker ports must not cost X its
/// table entry. Before the defences, each ping the node sent to an attacker's port (to
/// verify "X" there) counted as a failure of X when it timed out, and X was dropped.
#[test]
fn eviction_by_claim() {
    let node = NodeProcess::start(&[]);
    let boot = node.addr.to_string();
    let mut x = NodeProcess::start(&["--bootstrap", &boot]);
    // More honest peers, so that a find_node answer outgrows an attacker's request and the
    // node sends a verification ping to the claimed address (as in the issue: 13 peers).
    let _honest: Vec<NodeProcess> = (0..9)
        .map(|_| NodeProcess::start(&["--bootstrap", &boot]))
        .collect();
    let asker = Peer::bind("127.0.0.1", test_id(1));

    // X is in the node's table once the node has verified it (X answered its ping).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 0;
    while !answer_has(
        &asker,
        node.addr,
        &x.id,
        x.addr.port(),
        &format!("before{round:02}"),
    ) {
        assert!(
            Instant::now() < deadline,
            "setup: X never showed up in the node's find_node answer"
        );
        round += 1;
        std::thread::sleep(Duration::from_millis(500));
    }

    // The attack: ATTACKERS sockets, each on its own port, each sends one find_node
    // claiming X's id, then serves the node's pings for a while: the even ones never
    // answer, the odd ones answer with another id.
    let stop = Arc::new(AtomicBool::new(false));
    let pings = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for i in 0..ATTACKERS {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let me = sock.local_addr().unwrap();
        let claim = request(
            "find_node",
            &format!("\"target\": \"{}\"", test_id(100 + i as u64)),
            &format!("attack{i:010}"),
            &x.id,
            me,
            0,
        );
        sock.send_to(&claim, node.addr).unwrap();
        let (stop, pings) = (stop.clone(), pings.clone());
        let other_id = test_id(200 + i as u64);
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(msg) = serde_json::from_slice::<Json>(&buf[..n]) else {
                    continue;
                };
                if msg["type"] == "ping" {
                    pings.fetch_add(1, Ordering::Relaxed);
                    if i % 2 == 1 {
                        let t = msg["id"].as_str().unwrap_or_default();
                        let _ = sock.send_to(&pong(t, &other_id, me), from);
                    }
                }
            }
        }));
    }
    // Every verification ping the attack drew has long timed out (retries included).
    std::thread::sleep(NODE_TIMEOUT * 5);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    println!(
        "{ATTACKERS} attacker ports claimed X's id; they received {} pings from the node",
        pings.load(Ordering::Relaxed)
    );

    assert!(x.alive(), "X ran the whole time");
    let kept = answer_has(&asker, node.addr, &x.id, x.addr.port(), "after0000");
    assert!(
        kept,
        "X ({} at {}), alive the whole time, is gone from the node's find_node answer \
         after {ATTACKERS} ports claimed its id",
        x.id, x.addr
    );
}

/// Requests the attacker sends in the reflection test (the issue sent 1,000).
const SPOOFED: usize = 400;
/// A few spoofed pings first: their pongs at V prove the kernel delivered spoofed datagrams
/// to the node and the node answered them to V, so the byte count below means something.
const SPOOFED_PINGS: usize = 5;
/// The stored value: 32 KiB of text, as in the issue.
const LARGE_VALUE_BYTES: usize = 32 * 1024;
/// `Config::unverified_reply_factor` and `Config::reply_allowance`, the defaults.
const REPLY_FACTOR: u64 = 4;
const REPLY_ALLOWANCE: u64 = 64 * 1024;

/// Item 3 of issue 14: a proven (verified) address must not become a reflection target.
/// V asks the node honestly once (and answers its ping, so it is verified); then a raw
/// socket sends `find_value`s for a 32 KiB value with V's address as their source. Before
/// the defences the reply budget was skipped for a verified address and V received a full
/// value per ~170-byte request.
#[cfg(target_os = "linux")]
#[test]
fn reflection_through_verified_address() {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};

    if !is_root() {
        println!("SKIPPED: needs root for a raw socket to spoof source addresses");
        return;
    }
    // IPPROTO_RAW: we write the IPv4 header ourselves (IP_HDRINCL is implied).
    let raw = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))) {
        Ok(raw) => raw,
        Err(e) => {
            println!("SKIPPED: no raw socket here ({e})");
            return;
        }
    };
    // V on its own loopback address (all of 127/8 is local on Linux), so nothing else
    // there can be mistaken for it.
    let v_ip = "127.0.0.2";
    let victim = Peer::bind(v_ip, test_id(7));
    let v_sock = Socket::from(victim.sock.try_clone().unwrap());
    let _ = v_sock.set_recv_buffer_size(16 << 20);

    let node = NodeProcess::start(&[]);
    let big = "v".repeat(LARGE_VALUE_BYTES);
    let out = Command::new(kad_bin())
        .args(["put", "--bootstrap", &node.addr.to_string(), "big", &big])
        .output()
        .expect("run kad put");
    assert!(
        out.status.success(),
        "setup: kad put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // V asks once, honestly, and answers the node's verification ping: V is now proven.
    let honest = request(
        "find_value",
        "\"key\": \"big\"",
        "honest0000000000",
        &victim.id,
        victim.addr,
        0,
    );
    let mut got = None;
    for _ in 0..3 {
        victim.sock.send_to(&honest, node.addr).unwrap();
        got = victim.await_response("honest0000000000", Instant::now() + Duration::from_secs(5));
        if got.is_some() {
            break;
        }
    }
    let got = got.expect("setup: V's honest find_value was never answered");
    assert_eq!(
        got["value"].as_str().map(str::len),
        Some(LARGE_VALUE_BYTES),
        "setup: V's honest find_value got the value"
    );

    // From here on, count every byte arriving at V (V still answers pings, as a DHT node
    // would).
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let spoofed_pongs = Arc::new(AtomicU64::new(0));
    let counter = {
        let (stop, received, spoofed_pongs) =
            (stop.clone(), received.clone(), spoofed_pongs.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = victim.sock.recv_from(&mut buf) else {
                    continue;
                };
                received.fetch_add(n as u64, Ordering::Relaxed);
                let Ok(msg) = serde_json::from_slice::<Json>(&buf[..n]) else {
                    continue;
                };
                let t = msg["id"].as_str().unwrap_or_default();
                if msg["type"] == "ping" {
                    let _ = victim.sock.send_to(&pong(t, &victim.id, victim.addr), from);
                } else if msg["type"] == "pong" && t.starts_with("spoofping") {
                    spoofed_pongs.fetch_add(1, Ordering::Relaxed);
                }
            }
            received.load(Ordering::Relaxed)
        })
    };

    // The attack: datagrams from V's address and port, through the raw socket.
    let v_addr = victim_addr(v_ip, &v_sock).expect("V's address");
    let dst = match node.addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("the node listens on 127.0.0.1"),
    };
    let to = SockAddr::from(SocketAddrV4::new(*dst.ip(), 0));
    let mut sent = 0u64;
    for i in 0..SPOOFED_PINGS + SPOOFED {
        let payload = if i < SPOOFED_PINGS {
            request(
                "ping",
                "",
                &format!("spoofping{i:07}"),
                &test_id(7),
                SocketAddr::V4(v_addr),
                0,
            )
        } else {
            request(
                "find_value",
                "\"key\": \"big\"",
                &format!("spoofed{i:09}"),
                &test_id(7),
                SocketAddr::V4(v_addr),
                0,
            )
        };
        let packet = ipv4_udp(v_addr, dst, &payload, i as u16);
        let n = raw.send_to(&packet, &to).expect("send a spoofed datagram");
        assert_eq!(n, packet.len());
        sent += payload.len() as u64;
        // Paced, so that the node's socket buffer takes them all: 20 per 50 ms.
        if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Let the replies land (the node answers within milliseconds; this is a bound).
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let received = counter.join().unwrap();
    let pongs = spoofed_pongs.load(Ordering::Relaxed);
    let bound = REPLY_FACTOR * sent + REPLY_ALLOWANCE;
    println!(
        "attacker sent {sent} bytes in {} spoofed datagrams; V received {received} bytes \
         ({:.1}x; bound {bound}); {pongs} of {SPOOFED_PINGS} spoofed pings answered to V",
        SPOOFED_PINGS + SPOOFED,
        received as f64 / sent as f64
    );
    assert!(
        pongs > 0,
        "setup: no spoofed ping was answered to V: spoofed datagrams do not reach the node here"
    );
    assert!(
        received <= bound,
        "V received {received} bytes for {sent} bytes of spoofed requests \
         ({:.0}x; at most {REPLY_FACTOR} x sent + {REPLY_ALLOWANCE} = {bound} allowed)",
        received as f64 / sent as f64
    );
}

#[cfg(target_os = "linux")]
fn victim_addr(ip: &str, sock: &socket2::Socket) -> Option<SocketAddrV4> {
    let port = sock.local_addr().ok()?.as_socket()?.port();
    Some(SocketAddrV4::new(ip.parse::<Ipv4Addr>().ok()?, port))
}

/// An IPv4 packet carrying one UDP datagram from `src` to `dst` (UDP checksum 0: none,
/// which IPv4 allows).
#[cfg(target_os = "linux")]
fn ipv4_udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], ident: u16) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).expect("fits a datagram");
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(usize::from(total));
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]); // DF, TTL 64, UDP, checksum below
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    let mut sum = 0u32;
    for pair in p.chunks(2) {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

#[cfg(target_os = "linux")]
fn is_root() -> bool {
    // "Uid:\treal\teffective\tsaved\tfs"
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
