//! The node's own work per served request, for instruction counts: one node with a
//! populated routing table is fed N `ping` or `find_node` datagrams from R verified
//! addresses (table entries; default 200) at fixed timestamps, in batches of 32 as the
//! adapters read them, its transmits drained after each batch (and with `recycle` their
//! buffers given back, as the adapters do), through the public API only. It prints the
//! replies, their bytes, a hash of them (FNV-1a over every reply, in order: equal hashes,
//! equal bytes) and the wall time of `serve` a request (compare builds alternately, in one
//! sitting). Before `Node::recycle` existed, drop the two lines that call it.
//!
//! With R = 1 the requester's reply allowance runs out after a few dozen `find_node`s, and
//! the rest are answered shortened to the request's budget, as the loopback bench's single
//! generator is.
//!
//! ```text
//! cargo build --release -p kad-core --features bench --example serve_cost
//! valgrind --tool=callgrind --toggle-collect='*serve_cost*serve*' \
//!     target/release/examples/serve_cost json find_node 2000 [R [recycle]]
//! ```
//!
//! Only `serve` (the requests in, the replies out, copied into one buffer) is collected
//! with `--toggle-collect`: its instructions divided by N are the node's per request.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use kad_core::bench::{decode_message, encode_message};
use kad_core::{Codec, Config, Node, NodeId};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Peers offered to the table, each of which proves its address by answering our ping.
const PEERS: usize = 600;
/// Datagrams the node is handed between two drains of its transmits (quinn-udp's batch).
const BATCH: usize = 32;

/// A peer's address: loopback, as in the loopback bench, one port each.
fn peer_addr(i: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, (i >> 8) as u8, (i & 0xff) as u8 + 1)),
        10_000 + i as u16,
    )
}

// A measuring tool reads the clock once, as a base for fixed timestamps.
#[allow(clippy::disallowed_methods)]
fn main() {
    let mut args = std::env::args().skip(1);
    let codec: Codec = args
        .next()
        .unwrap_or_else(|| "json".into())
        .parse()
        .expect("json or bencode");
    let kind = args.next().unwrap_or_else(|| "ping".into());
    assert!(kind == "ping" || kind == "find_node", "ping or find_node");
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let r: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
        .max(1);
    let recycle = args.next().is_some_and(|a| a == "recycle");

    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let t0 = Instant::now();
    let config = Config::builder()
        .codec(codec)
        .build()
        .expect("a valid config");
    let mut node = Node::new(config, NodeId::random(&mut rng), [7; 32], t0);
    node.set_local_addr(SocketAddr::from(([127, 0, 0, 1], 4000)));

    // The table: each peer pings us, we ping it back to verify it, it answers.
    let ids: Vec<NodeId> = (0..PEERS).map(|_| NodeId::random(&mut rng)).collect();
    let mut now = t0;
    for (i, id) in ids.iter().enumerate() {
        now += Duration::from_millis(1);
        let from = peer_addr(i);
        let ping =
            encode_message(codec, "ping", &format!("{i:016x}"), *id, from, *id, 0).expect("a ping");
        node.handle_datagram(now, from, &ping);
        while let Some(t) = node.poll_transmit() {
            let Some(summary) = decode_message(codec, &t.payload) else {
                continue;
            };
            if summary.kind != "ping" {
                continue;
            }
            let Some(j) = (0..PEERS).find(|&j| peer_addr(j) == t.dst) else {
                continue;
            };
            let pong = encode_message(codec, "pong", &summary.txn, ids[j], t.dst, ids[j], 0)
                .expect("a pong");
            node.handle_datagram(now, t.dst, &pong);
        }
    }
    let known = node.table_len();
    let requesters: Vec<(SocketAddr, NodeId)> = node
        .peers()
        .into_iter()
        .take(r)
        .map(|p| (p.addr, p.id))
        .collect();

    // The requests, encoded before the measurement.
    let requests: Vec<(SocketAddr, Vec<u8>)> = (0..n)
        .map(|i| {
            let (from, id) = requesters[i % requesters.len()];
            let target = NodeId::random(&mut rng);
            let txn = format!("{:016x}", 0x5eed_0000_0000u64 + i as u64);
            (
                from,
                encode_message(codec, &kind, &txn, id, from, target, 0).expect("a request"),
            )
        })
        .collect();
    let start = now + Duration::from_secs(1);
    let mut out = Vec::with_capacity(n * if kind == "ping" { 160 } else { 2048 });
    let clock = Instant::now();
    let replies = serve(&mut node, start, &requests, &mut out, recycle);
    let took = clock.elapsed();
    let hash = out.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let stats = node.stats();
    println!(
        "{codec} {kind}: table {known}, requests {n}, replies {replies}, bytes {} ({} a reply), \
         answered {}, hash {hash:016x}, {:.0} ns a request",
        out.len(),
        out.len() / replies.max(1),
        stats.requests_answered,
        took.as_nanos() as f64 / n.max(1) as f64,
    );
}

/// Feeds `requests` to `node` in batches of [`BATCH`], 320 µs apart from `start`, and
/// appends every datagram it sends to `out` (its length first, 4 bytes, then its
/// destination's port); returns how many it sent.
#[inline(never)]
fn serve(
    node: &mut Node,
    start: Instant,
    requests: &[(SocketAddr, Vec<u8>)],
    out: &mut Vec<u8>,
    recycle: bool,
) -> usize {
    let mut sent = 0;
    for (i, batch) in requests.chunks(BATCH).enumerate() {
        let now = start + Duration::from_micros(320 * i as u64);
        for (from, bytes) in batch {
            node.handle_datagram(now, *from, bytes);
        }
        while let Some(t) = node.poll_transmit() {
            out.extend_from_slice(&(t.payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&t.dst.port().to_le_bytes());
            out.extend_from_slice(&t.payload);
            if recycle {
                node.recycle(t.payload);
            }
            sent += 1;
        }
    }
    black_box(sent)
}
