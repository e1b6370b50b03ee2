//! A few nodes on a lossless in-memory network: the shortest path from a change in the core
//! to a failing test. The full simulator (latency, loss, churn, thousands of nodes) lives
//! in the `kad-tests` package.

// A test needs one real instant as a base; the node only sees offsets from it.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kad_core::{Codec, Config, Event, Node, NodeId, QueryId, QueryResult, Value};

struct Net {
    nodes: Vec<Node>,
    wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    now: Instant,
    events: Vec<(usize, Event)>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 4000))
}

impl Net {
    fn new(n: usize, codec: Codec) -> Net {
        let now = Instant::now();
        let config = Config::builder().codec(codec).build().unwrap();
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
        }
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            self.wire.push_back((addr(i), t.dst, t.payload));
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
                if let Some(j) = (0..self.nodes.len()).find(|&j| addr(j) == to) {
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
}

fn network_roundtrip(codec: Codec) {
    let mut net = Net::new(40, codec);
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
}

#[test]
fn forty_nodes_json() {
    network_roundtrip(Codec::Json);
}

#[test]
fn forty_nodes_bencode() {
    network_roundtrip(Codec::Bencode);
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
