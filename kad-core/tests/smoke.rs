//! A few nodes on a lossless in-memory network: the shortest path from a change in the core
//! to a failing test. The full simulator (latency, loss, churn, thousands of nodes) lives
//! in the `kad-tests` package.

// A test needs one real instant as a base; the node only sees offsets from it.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kad_core::{
    Codec, Config, Event, Node, NodeId, QueryId, QueryResult, RecordKind, Snapshot, Value,
};

struct Net {
    nodes: Vec<Node>,
    wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    now: Instant,
    events: Vec<(usize, Event)>,
    /// Nodes that receive nothing (their datagrams are lost).
    dead: Vec<bool>,
    /// Give every sent datagram's buffer back to its node (`Node::recycle`), scribbled over.
    recycle: bool,
    /// FNV-1a over every datagram sent, in order, with its source and destination.
    sent_hash: u64,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 4000))
}

impl Net {
    fn new(n: usize, codec: Codec) -> Net {
        Net::with_config(n, Config::builder().codec(codec).build().unwrap())
    }

    fn with_config(n: usize, config: Config) -> Net {
        let now = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let id = NodeId::for_key(&format!("node {i}"));
                let mut seed = [0u8; 32];
                seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
                let mut node = Node::new(config.clone(), id, seed, now);
                node.set_local_addr(addr(i));
                node
            })
            .collect();
        Net {
            nodes,
            wire: VecDeque::new(),
            now,
            events: Vec::new(),
            dead: vec![false; n],
            recycle: false,
            sent_hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    /// Bootstraps every node but node 0 through node 0, one after the other.
    fn join_all(&mut self) {
        for i in 1..self.nodes.len() {
            let now = self.now;
            let q = self.nodes[i].bootstrap(now, &[addr(0)]);
            self.wait(i, q);
        }
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            let from = addr(i);
            for b in [
                from.to_string().as_bytes(),
                t.dst.to_string().as_bytes(),
                &t.payload,
            ] {
                for &byte in b {
                    self.sent_hash =
                        (self.sent_hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
                }
            }
            if self.recycle {
                let mut spent = t.payload.clone();
                // What the adapter leaves in a sent buffer must never reach a later datagram.
                spent.fill(0xaa);
                spent.resize(spent.capacity(), 0x55);
                self.nodes[i].recycle(spent);
            }
            self.wire.push_back((from, t.dst, t.payload));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((i, e));
        }
        self.nodes[i].check_invariants().unwrap();
    }

    /// Delivers everything (1 ms per hop), then fires timers, until `id` finishes on node `i`.
    fn wait(&mut self, i: usize, id: QueryId) -> QueryResult {
        for _ in 0..1_000_000 {
            if let Some(pos) = self.events.iter().position(|(n, e)| {
                *n == i && matches!(e, Event::QueryFinished { id: q, .. } if *q == id)
            }) {
                let (_, Event::QueryFinished { result, .. }) = self.events.remove(pos) else {
                    unreachable!()
                };
                return result;
            }
            for n in 0..self.nodes.len() {
                self.flush(n);
            }
            if let Some((from, to, bytes)) = self.wire.pop_front() {
                self.now += Duration::from_millis(1);
                let dead = &self.dead;
                if let Some(j) = (0..self.nodes.len()).find(|&j| addr(j) == to && !dead[j]) {
                    self.nodes[j].handle_datagram(self.now, from, &bytes);
                    self.flush(j);
                }
                continue;
            }
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.poll_timeout())
                .min()
                .unwrap();
            self.now = self.now.max(next);
            for n in 0..self.nodes.len() {
                self.nodes[n].handle_timeout(self.now);
                self.flush(n);
            }
        }
        panic!("query {id} never finished");
    }

    /// Delivers everything and fires every timer up to `until` (virtual time).
    fn run_until(&mut self, until: Instant) {
        loop {
            for n in 0..self.nodes.len() {
                self.flush(n);
            }
            if let Some((from, to, bytes)) = self.wire.pop_front() {
                self.now += Duration::from_millis(1);
                let dead = &self.dead;
                if let Some(j) = (0..self.nodes.len()).find(|&j| addr(j) == to && !dead[j]) {
                    self.nodes[j].handle_datagram(self.now, from, &bytes);
                }
                continue;
            }
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.poll_timeout())
                .min()
                .unwrap();
            if next > until {
                self.now = self.now.max(until);
                return;
            }
            self.now = self.now.max(next);
            for n in 0..self.nodes.len() {
                self.nodes[n].handle_timeout(self.now);
            }
        }
    }
}

/// Joins 40 nodes, puts two keys, gets them and a missing one, finds a node; returns the
/// hash of every datagram sent.
fn network_roundtrip(codec: Codec) -> u64 {
    network_roundtrip_recycling(codec, false)
}

fn network_roundtrip_recycling(codec: Codec, recycle: bool) -> u64 {
    let mut net = Net::new(40, codec);
    net.recycle = recycle;
    let now = net.now;
    for i in 1..40 {
        let q = net.nodes[i].bootstrap(now, &[addr(i / 2)]);
        let r = net.wait(i, q);
        assert!(
            matches!(r, QueryResult::Bootstrap(Ok(_))),
            "node {i}: {r:?}"
        );
    }
    for (i, value) in [
        (3usize, Value::from("hello")),
        (17, Value::from(&b"\x00\xffbin"[..])),
    ] {
        let key = format!("key {i}");
        let now = net.now;
        let q = net.nodes[i].put(now, &key, value.clone()).unwrap();
        let r = net.wait(i, q);
        assert!(
            matches!(&r, QueryResult::Put(Ok(ok)) if ok.replicas >= 10),
            "{r:?}"
        );
        for j in [0, 11, 25, 39] {
            let now = net.now;
            let q = net.nodes[j].get(now, &key).unwrap();
            assert_eq!(
                net.wait(j, q),
                QueryResult::Get(Ok(Some(value.clone()))),
                "node {j} {key}"
            );
        }
    }
    let now = net.now;
    let q = net.nodes[5].get(now, "missing").unwrap();
    assert_eq!(net.wait(5, q), QueryResult::Get(Ok(None)));
    let target = net.nodes[30].id();
    let q = net.nodes[8].find_node(now, target);
    match net.wait(8, q) {
        QueryResult::FindNode(Ok(peers)) => assert_eq!(peers[0].id, target),
        other => panic!("{other:?}"),
    }
    net.sent_hash
}

#[test]
fn forty_nodes_json() {
    network_roundtrip(Codec::Json);
}

#[test]
fn forty_nodes_bencode() {
    network_roundtrip(Codec::Bencode);
}

/// Nodes given their sent buffers back (`Node::recycle`, as the adapters do), full of
/// junk, send exactly the bytes they send without: nothing of an old datagram leaks.
#[test]
fn recycled_buffers_change_no_byte() {
    for codec in [Codec::Json, Codec::Bencode] {
        assert_eq!(
            network_roundtrip_recycling(codec, true),
            network_roundtrip_recycling(codec, false),
            "{codec}"
        );
    }
}

/// A bucket entry that fails is evicted and the replacement waiting in the bucket's cache
/// takes its place: the watcher hears both, `PeerEvicted` then `PeerReplaced`.
#[test]
fn an_evicted_entry_is_replaced_by_the_waiting_peer() {
    let config = Config::builder()
        .k(1)
        .alpha(1)
        .replacement_cache_size(1)
        .failures_before_eviction(1)
        .ping_oldest_after(Duration::ZERO)
        .build()
        .unwrap();
    let mut net = Net::with_config(3, config.clone());
    // b and c share a bucket far from a (their first bit differs from a's), which holds one.
    let ids = [[0u8; 20], [0x80; 20], [0xc0; 20]].map(NodeId);
    for (i, id) in ids.into_iter().enumerate() {
        net.nodes[i] = Node::new(config.clone(), id, [i as u8; 32], net.now);
        net.nodes[i].set_local_addr(addr(i));
    }
    net.nodes[0].watch(true);
    let now = net.now;
    let q = net.nodes[0].bootstrap(now, &[addr(1)]);
    assert!(matches!(net.wait(0, q), QueryResult::Bootstrap(Ok(_))));
    let [b, c] = [1, 2].map(|i| kad_core::Peer {
        id: ids[i],
        addr: addr(i),
    });
    assert_eq!(net.nodes[0].peers(), vec![b]);
    // c answers a's ping: the bucket is full, c waits in the cache and a pings b, which
    // is gone.
    net.dead[1] = true;
    let q = net.nodes[0].ping(now, addr(2));
    assert!(matches!(net.wait(0, q), QueryResult::Ping(Ok(p)) if p == c));
    let later = net.now + Duration::from_secs(60);
    net.run_until(later);
    for i in 0..3 {
        net.flush(i);
    }
    assert_eq!(net.nodes[0].peers(), vec![c]);
    let table: Vec<&Event> = net
        .events
        .iter()
        .filter(|(n, e)| {
            *n == 0
                && matches!(
                    e,
                    Event::PeerAdded { .. }
                        | Event::PeerEvicted { .. }
                        | Event::PeerReplaced { .. }
                )
        })
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        table,
        [
            &Event::PeerAdded { peer: b },
            &Event::PeerEvicted { peer: b },
            &Event::PeerReplaced { old: b, new: c },
        ]
    );
}

#[test]
fn lone_node_gets_its_own_value_and_reports_no_peers() {
    let now = Instant::now();
    let mut node = Node::new(Config::default(), NodeId::for_key("solo"), [1; 32], now);
    let put = node.put(now, "k", "v").unwrap();
    let get = node.get(now, "k").unwrap();
    let mut results = Vec::new();
    for _ in 0..10 {
        node.handle_timeout(now);
        while let Some(Event::QueryFinished { id, result, .. }) = node.poll_event() {
            results.push((id, result));
        }
    }
    assert!(results.contains(&(get, QueryResult::Get(Ok(Some(Value::from("v")))))));
    assert!(results.contains(&(put, QueryResult::Put(Err(kad_core::QueryError::NoPeers)))));
}

/// A stranger (an address that never answered us) cannot get more than 4x its request's
/// bytes back, so a forged source address cannot aim us at a victim; a large value waits
/// until the stranger answers a ping from its claimed address.
#[test]
fn no_amplification_towards_unverified_senders() {
    let mut net = Net::new(30, Codec::Json);
    net.join_all();
    let big = "x".repeat(4000);
    let now = net.now;
    let q = net.nodes[0].put(now, "big", big.as_str()).unwrap();
    net.wait(0, q);
    // Drain whatever node 0 still has to say before the stranger speaks.
    net.flush(0);
    net.wire.clear();

    let stranger = SocketAddr::from(([192, 0, 2, 7], 9999));
    let me = NodeId::for_key("stranger");
    let request = |kind: &str, extra: &str, id: &str| {
        format!(
            r#"{{"type": "{kind}", {extra}"id": "{id}", "sender": {{"node_id": "{me}", "ip": "192.0.2.7", "port": 9999}}}}"#
        )
    };
    let find_node = request(
        "find_node",
        &format!(r#""target": "{}", "#, NodeId::for_key("t")),
        "00000000000000aa",
    );
    net.nodes[0].handle_datagram(net.now, stranger, find_node.as_bytes());
    let out: Vec<_> = std::iter::from_fn(|| net.nodes[0].poll_transmit()).collect();
    // A full peer list is far larger than 4x the request: held, not sent, not shortened
    // (a shortened list would hide the k closest nodes from an honest newcomer's lookup).
    assert!(
        out.iter().all(|t| t.payload.len() <= 4 * find_node.len()),
        "nothing large before verification"
    );
    assert!(!out
        .iter()
        .any(|t| String::from_utf8_lossy(&t.payload).contains("find_node_res")));
    assert_eq!(net.nodes[0].stats().replies_shortened, 0);
    assert_eq!(net.nodes[0].stats().replies_held, 1);
    // Node 0 asks the stranger to prove its address, with one small ping.
    let pings: Vec<_> = out
        .iter()
        .filter(|t| t.dst == stranger && String::from_utf8_lossy(&t.payload).contains(r#""ping""#))
        .collect();
    let ping = *pings.first().expect("a verification ping");
    assert!(ping.payload.len() < find_node.len());

    // The value is far larger than 4x the request: held, not sent.
    let find_value = request("find_value", r#""key": "big", "#, "00000000000000bb");
    net.nodes[0].handle_datagram(net.now, stranger, find_value.as_bytes());
    let out: Vec<_> = std::iter::from_fn(|| net.nodes[0].poll_transmit()).collect();
    assert!(
        out.iter().all(|t| t.payload.len() <= 4 * find_value.len()),
        "nothing large before verification"
    );
    // The stranger answers the first ping; every held reply goes out then.
    let v: serde_json_free::Ping = serde_json_free::parse(&ping.payload);
    let pong = format!(
        r#"{{"type": "pong", "id": "{}", "sender": {{"node_id": "{me}", "ip": "192.0.2.7", "port": 9999}}}}"#,
        v.id
    );
    net.nodes[0].handle_datagram(net.now, stranger, pong.as_bytes());
    let out: Vec<_> = std::iter::from_fn(|| net.nodes[0].poll_transmit()).collect();
    // The pong verified the stranger: its next find_value gets the value at once.
    let find_value2 = request("find_value", r#""key": "big", "#, "00000000000000cc");
    net.nodes[0].handle_datagram(net.now, stranger, find_value2.as_bytes());
    let out2: Vec<_> = std::iter::from_fn(|| net.nodes[0].poll_transmit()).collect();
    let has_value = |ts: &[kad_core::Transmit]| {
        ts.iter()
            .any(|t| t.dst == stranger && String::from_utf8_lossy(&t.payload).contains(&big))
    };
    assert!(
        has_value(&out),
        "the held value goes out once the stranger answered"
    );
    let full_list = out
        .iter()
        .find(|t| {
            t.dst == stranger && String::from_utf8_lossy(&t.payload).contains("find_node_res")
        })
        .expect("the held peer list goes out once the stranger answered");
    assert_eq!(
        String::from_utf8_lossy(&full_list.payload)
            .matches("node_id")
            .count(),
        1 + 20,
        "sender plus k peers"
    );
    assert!(has_value(&out2), "a verified sender is answered in full");

    // A forged sender never answers: its held replies are dropped when the ping times out.
    let forged = SocketAddr::from(([198, 51, 100, 9], 4444));
    let forged_find = find_node
        .replace("192.0.2.7", "198.51.100.9")
        .replace("9999", "4444");
    net.nodes[0].handle_datagram(net.now, forged, forged_find.as_bytes());
    let sent: usize = std::iter::from_fn(|| net.nodes[0].poll_transmit())
        .filter(|t| t.dst == forged)
        .map(|t| t.payload.len())
        .sum();
    assert!(
        sent < forged_find.len(),
        "{sent} bytes towards a forged address"
    );
    let dropped = net.nodes[0].stats().replies_held_dropped;
    let later = net.now + std::time::Duration::from_secs(5);
    net.nodes[0].handle_timeout(later);
    assert_eq!(net.nodes[0].stats().replies_held_dropped, dropped + 1);
    assert!(!std::iter::from_fn(|| net.nodes[0].poll_transmit()).any(|t| t.dst == forged));
}

/// Pulls the `id` out of a JSON message without a JSON dependency in the test.
mod serde_json_free {
    pub struct Ping {
        pub id: String,
    }
    pub fn parse(bytes: &[u8]) -> Ping {
        let s = String::from_utf8_lossy(bytes);
        let at = s.find(r#""id":"#).expect("an id field") + 5;
        let rest = s[at..].trim_start().trim_start_matches('"');
        Ping {
            id: rest[..16].to_string(),
        }
    }
}

/// A node killed and brought back from its snapshot keeps its id, peers and records, and
/// the records keep the lifetime they had left.
/// Padded lookup requests buy complete peer lists from strangers in one round trip;
/// without the padding, the same network holds replies for verification pings.
#[test]
fn padded_requests_get_full_peer_lists_without_verification() {
    let held = |pad: bool| {
        let config = Config::builder().pad_requests(pad).build().unwrap();
        let mut net = Net::with_config(40, config);
        net.join_all();
        for i in 0..40 {
            let now = net.now;
            let q = net.nodes[i].find_node(now, NodeId::for_key(&format!("t{i}")));
            net.wait(i, q);
        }
        let stats: Vec<_> = net.nodes.iter().map(|n| n.stats()).collect();
        let held: u64 = stats.iter().map(|s| s.replies_held).sum();
        let shortened: u64 = stats.iter().map(|s| s.replies_shortened).sum();
        (held, shortened)
    };
    let (with_pad, short_with) = held(true);
    let (without, short_without) = held(false);
    println!("replies held: {with_pad} with padding, {without} without");
    assert_eq!((with_pad, short_with), (0, 0));
    assert!(without > 0 && short_without == 0, "held {without}");
}

/// A user's find_node ends the paper's way: once an answer brings nobody closer, every
/// one of the k closest not yet asked is asked at once, not alpha at a time.
#[test]
fn a_user_lookup_ends_with_one_burst_to_the_rest_of_the_k_closest() {
    let mut net = Net::new(80, Codec::Json);
    net.join_all();
    let alpha = Config::default().alpha();
    // Every request node 0 sends because of one datagram it handled.
    let mut bursts = Vec::new();
    let now = net.now;
    let q = net.nodes[0].find_node(now, NodeId::for_key("burst"));
    let is_find_node = |t: &kad_core::Transmit| {
        String::from_utf8_lossy(&t.payload).contains(r#""type":"find_node""#)
    };
    let mut sent: Vec<_> = std::iter::from_fn(|| net.nodes[0].poll_transmit()).collect();
    bursts.push(sent.iter().filter(|t| is_find_node(t)).count());
    for t in sent.drain(..) {
        net.wire.push_back((addr(0), t.dst, t.payload));
    }
    let finished = |net: &Net| {
        net.events
            .iter()
            .any(|(n, e)| *n == 0 && matches!(e, Event::QueryFinished { id, .. } if *id == q))
    };
    while !finished(&net) {
        let Some((from, to, bytes)) = net.wire.pop_front() else {
            panic!("the lookup stalled");
        };
        net.now += Duration::from_millis(1);
        let Some(j) = (0..net.nodes.len()).find(|&j| addr(j) == to) else {
            continue;
        };
        net.nodes[j].handle_datagram(net.now, from, &bytes);
        if j == 0 {
            let sent: Vec<_> = std::iter::from_fn(|| net.nodes[0].poll_transmit()).collect();
            bursts.push(sent.iter().filter(|t| is_find_node(t)).count());
            for t in sent {
                net.wire.push_back((addr(0), t.dst, t.payload));
            }
        }
        for n in 1..net.nodes.len() {
            net.flush(n);
        }
        while let Some(e) = net.nodes[0].poll_event() {
            net.events.push((0, e));
        }
    }
    println!("find_node requests sent per datagram handled: {bursts:?}");
    assert_eq!(bursts[0], alpha, "the lookup starts with alpha requests");
    assert!(
        bursts[1..].iter().any(|&n| n > alpha),
        "no answer released more than alpha requests: {bursts:?}"
    );
}

#[test]
fn snapshot_restores_identity_peers_and_records() {
    let mut net = Net::new(10, Codec::Bencode);
    net.join_all();
    let now = net.now;
    let q = net.nodes[4].put(now, "persist", &b"\x01\x02"[..]).unwrap();
    net.wait(4, q);
    let taken = net.now;
    let bytes = net.nodes[4].snapshot(taken).to_bytes();
    let snap = kad_core::Snapshot::from_bytes(&bytes).unwrap();
    let later = taken + Duration::from_secs(30);
    let (node, left_out) = Node::restore(net.nodes[4].config().clone(), &snap, [9; 32], later);
    assert_eq!(left_out, 0);
    assert_eq!(node.id(), net.nodes[4].id());
    assert_eq!(node.table_len(), net.nodes[4].table_len());
    assert_eq!(
        node.get_local(later, "persist"),
        Some(Value::from(&b"\x01\x02"[..]))
    );
    // Remaining lifetime is kept: it expires key_expiry after the put, not after the restore.
    let expiry = node.config().key_expiry();
    assert!(node
        .get_local(later + expiry - Duration::from_secs(31), "persist")
        .is_some());
    assert!(node.get_local(later + expiry, "persist").is_none());
}

/// A restored publisher is still the publisher: the snapshot keeps the flag and the
/// republish schedule, and the restored node republishes on time, which renews every
/// replica past the expiry the original put gave it. Replicas stay replicas.
#[test]
fn restore_keeps_publisher_flag_and_republish_schedule() {
    let mut net = Net::new(10, Codec::Json);
    net.join_all();
    let put_at = net.now;
    let q = net.nodes[4].put(put_at, "mine", "v").unwrap();
    net.wait(4, q);

    let taken = net.now;
    let snap = net.nodes[4].snapshot(taken);
    let record = |s: &kad_core::Snapshot, key: &str| {
        s.records
            .iter()
            .find(|r| r.key == key)
            .cloned()
            .expect("record in snapshot")
    };
    let mine = record(&snap, "mine");
    assert_eq!(mine.kind, RecordKind::Published);
    let republish_in = mine.republish_in.expect("a publisher republishes");
    // Node 3 holds a replica, with the restore interval as its schedule.
    let replica = record(&net.nodes[3].snapshot(taken), "mine");
    assert_eq!(replica.kind, RecordKind::Replica);
    assert!(replica.republish_in.is_some());

    // Killed, and back 30 s later through the byte format.
    let back = Snapshot::from_bytes(&snap.to_bytes()).unwrap();
    let later = taken + Duration::from_secs(30);
    let config = net.nodes[4].config().clone();
    let (mut node, left_out) = Node::restore(config.clone(), &back, [7; 32], later);
    assert_eq!(left_out, 0);
    node.set_local_addr(addr(4));
    let again = record(&node.snapshot(later), "mine");
    assert_eq!(again.kind, RecordKind::Published);
    assert_eq!(again.value, Value::from("v"));
    // Times are kept as time left: the clock of a process does not survive it, so the
    // time the node was down is not counted.
    assert_eq!(again.republish_in, Some(republish_in));
    assert_eq!(again.expires_in, mine.expires_in);
    net.nodes[4] = node;
    net.now = later;

    // Past the expiry the original put gave every copy: the restored publisher
    // republished on schedule (30 s late, the time it was down), which stored the record
    // again on every replica and renewed its own copy for a full key_expiry.
    let expiry = config.key_expiry();
    net.run_until(put_at + expiry + Duration::from_secs(90));
    let now = net.now;
    let renewed = |s: &kad_core::Snapshot| {
        s.records
            .iter()
            .any(|r| r.key == "mine" && r.expires_in > expiry - Duration::from_secs(200))
    };
    let holders = (0..10)
        .filter(|&j| j != 4 && renewed(&net.nodes[j].snapshot(now)))
        .count();
    assert_eq!(holders, 9, "every replica stored again by the republish");
    let snap = net.nodes[4].snapshot(now);
    assert!(renewed(&snap), "the publisher renewed its own copy");
    assert_eq!(record(&snap, "mine").kind, RecordKind::Published);
}

/// An unanswered request goes out again, byte for byte, at evenly spaced times within
/// its `query_timeout`, and an answer to a copy completes it. With the first datagram
/// lost, a ping still succeeds; with 0 retries the same loss makes it time out.
#[test]
fn a_lost_request_is_sent_again_within_its_timeout() {
    let timeout = Duration::from_millis(900);
    for retries in [0usize, 1, 2] {
        let config = Config::builder()
            .query_timeout(timeout)
            .request_retries(retries)
            .build()
            .unwrap();
        let mut net = Net::with_config(2, config);
        let t0 = net.now;
        let q = net.nodes[0].ping(t0, addr(1));
        let first = net.nodes[0].poll_transmit().expect("the ping");
        assert_eq!(first.dst, addr(1));
        assert!(net.nodes[0].poll_transmit().is_none());
        // Lose `first`; follow the node's timers until it gives up or sends a copy.
        let mut copies = Vec::new();
        while let Some(at) = net.nodes[0].poll_timeout() {
            if at >= t0 + timeout {
                break;
            }
            net.nodes[0].handle_timeout(at);
            while let Some(t) = net.nodes[0].poll_transmit() {
                assert_eq!(t.payload, first.payload, "a copy is the same datagram");
                copies.push(at - t0);
            }
        }
        let expected: Vec<Duration> = (1..=retries as u32)
            .map(|i| timeout * i / (retries as u32 + 1))
            .collect();
        println!("retries {retries}: copies sent at {copies:?}");
        assert_eq!(copies, expected);
        assert_eq!(net.nodes[0].stats().requests_retransmitted, retries as u64);
        net.nodes[0].check_invariants().unwrap();
        // Deliver the last copy (or nothing, with 0 retries) and see the outcome.
        let now = t0 + timeout - Duration::from_millis(1);
        if retries > 0 {
            net.nodes[1].handle_datagram(now, addr(0), &first.payload);
            // Node 1 may ping the stranger back as well as answer it.
            while let Some(t) = net.nodes[1].poll_transmit() {
                net.nodes[0].handle_datagram(now, addr(1), &t.payload);
            }
            assert_eq!(net.nodes[0].stats().responses_accepted, 1);
        }
        net.nodes[0].handle_timeout(t0 + timeout);
        let result = net.wait(0, q);
        let ok = matches!(result, QueryResult::Ping(Ok(_)));
        assert_eq!(ok, retries > 0, "retries {retries}: {result:?}");
        net.nodes[0].check_invariants().unwrap();
        let timeouts = net.nodes[0].stats().request_timeouts;
        assert_eq!(timeouts, u64::from(retries == 0), "retries {retries}");
    }
}

/// Table entries that answered us count as verified addresses for the adapters' overload
/// triage, though the verified-address cache does not hold them; a stranger does not.
#[test]
fn routing_table_peers_that_answered_are_verified_addresses() {
    let mut net = Net::new(30, Codec::Json);
    net.join_all();
    let now = net.now;
    let node = &net.nodes[5];
    let peers = node.peers();
    let verified = peers
        .iter()
        .filter(|p| node.is_verified_addr(now, p.addr))
        .count();
    println!("node 5: {verified} of {} table peers verified", peers.len());
    assert!(node.is_verified_addr(now, addr(0)), "its bootstrap contact");
    assert!(verified * 2 > peers.len(), "{verified} of {}", peers.len());
    let stranger = SocketAddr::from(([192, 0, 2, 7], 9999));
    assert!(!node.is_verified_addr(now, stranger));
}

/// Nodes started together do not refresh together: each looks for stale buckets every
/// quarter of `bucket_refresh_interval` from a phase of its own, so a bucket left alone
/// for the interval is refreshed within a quarter more, at a time no other node shares.
/// (Every node used to look exactly once an interval from its start: a fleet started at
/// once sent all its refresh lookups at one instant, every hour.)
#[test]
fn nodes_started_together_refresh_at_their_own_times() {
    const N: usize = 12;
    let mut net = Net::new(N, Codec::Json);
    net.join_all();
    let joined = net.now;
    let interval = net.nodes[0].config().bucket_refresh_interval();
    let mut firsts = Vec::new();
    for (i, node) in net.nodes.iter_mut().enumerate() {
        // Drain what the join left; then the node's own timers alone, nothing delivered.
        while node.poll_transmit().is_some() {}
        let sent = loop {
            let t = node.poll_timeout().expect("a refresh is always scheduled");
            assert!(
                t <= joined + interval * 2,
                "node {i} sent nothing for two intervals"
            );
            node.handle_timeout(t);
            if node.poll_transmit().is_some() {
                break t;
            }
        };
        assert!(
            sent <= joined + interval + interval / 4,
            "node {i}: first refresh {:?} after the join, more than 1.25 intervals",
            sent - joined
        );
        firsts.push(sent);
    }
    let mut distinct = firsts.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        N,
        "refresh instants shared between nodes: {:?}",
        firsts.iter().map(|t| *t - joined).collect::<Vec<_>>()
    );
}
