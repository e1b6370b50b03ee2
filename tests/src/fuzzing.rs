//! The `sim` fuzz harness body (feature `fuzzing`): a small network under a fuzzed
//! schedule of faults.
//!
//! The same function runs under cargo-fuzz (`fuzz/fuzz_targets/sim.rs`, nightly) and in a
//! plain stable `cargo test` that replays the committed corpus (`tests/fuzz_corpus.rs`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use kad_core::fuzzing::arbitrary::{Result as ArbResult, Unstructured};
use kad_core::fuzzing::{damage, forged_reply, forged_request};
use kad_core::{Codec, Config, NodeId, QueryId, QueryResult, Value};

use crate::{Link, SimNet};

/// Every key the simulation puts starts with this; forged traffic never uses it.
const KEY_PREFIX: &str = "put/";
/// Most schedule entries one input runs.
const MAX_OPS: usize = 48;
/// Most puts one input makes (each successful one is checked from every node).
const MAX_PUTS: usize = 4;
/// Virtual time the healed network runs before the checks: more than one republish
/// interval, so every record is back on the nodes closest to its key.
const SETTLE: Duration = Duration::from_secs(400);

/// A network of 12 to 20 nodes joins, then lives through a fuzzed schedule: loss,
/// duplication and latency changes, partitions, dead nodes, garbage, forged requests and
/// forged replies to datagrams in flight, puts, gets and the passing of time. Then the
/// network heals (partitions gone, every node alive, a clean link), every node re-joins
/// through node 0 (a deployment's bootstrap node: a partition can split the overlay for
/// good, and that is how a real network merges again), and the network runs for
/// [`SETTLE`] so that republishing moves records to their closest nodes.
///
/// Checked: every step keeps every node's invariants (SimNet checks them), every query
/// finishes, a value read at any time is the value put under that key, and after the heal
/// every put that reported success is gettable from every node.
pub fn sim(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(mut s) = Sim::new(&mut u) else {
        return;
    };
    for _ in 0..MAX_OPS {
        if u.is_empty() || s.op(&mut u).is_err() {
            break;
        }
    }
    s.heal_and_check();
}

/// A put the simulation made: who, which query, what.
struct PutRecord {
    node: usize,
    query: QueryId,
    key: String,
    value: Value,
}

struct Sim {
    net: SimNet,
    codec: Codec,
    ids: Vec<NodeId>,
    puts: Vec<PutRecord>,
    /// Gets still running: (node, query, key).
    gets: Vec<(usize, QueryId, String)>,
}

impl Sim {
    fn new(u: &mut Unstructured<'_>) -> ArbResult<Sim> {
        // Few seeds: a new seed changes every node id and delay, which the fuzzer would
        // see as endless "new coverage"; the schedule is what it should explore.
        let seed = u64::from(u.arbitrary::<u8>()?);
        let n = u.int_in_range(12usize..=20)?;
        let codec = if u.arbitrary()? {
            Codec::Bencode
        } else {
            Codec::Json
        };
        let k = u.int_in_range(3usize..=8)?;
        let secs = Duration::from_secs;
        let config = Config::builder()
            .codec(codec)
            .k(k)
            .alpha(u.int_in_range(1..=k.min(3))?)
            .failures_before_eviction(u.int_in_range(1..=3)?)
            .replacement_cache_size(u.int_in_range(0..=4)?)
            .query_timeout(Duration::from_millis(u.int_in_range(200..=2000)?))
            .bucket_refresh_interval(secs(120))
            .key_expiry(secs(1200))
            .non_publisher_restore_interval(secs(200))
            .original_publisher_republish_interval(secs(300))
            .min_cache_ttl(secs(60))
            .build()
            .map_err(|_| kad_core::fuzzing::arbitrary::Error::IncorrectFormat)?;
        let mut net = SimNet::with_nodes(seed, Link::default(), n, &config);
        // A network that cannot even join is not what this harness is about.
        net.set_query_cap(Duration::from_secs(3600));
        let report = net.bootstrap_all(4);
        assert_eq!(report.joined, n, "a lossless network failed to join");
        let ids = net.nodes().map(|node| node.id()).collect();
        Ok(Sim {
            net,
            codec,
            ids,
            puts: Vec::new(),
            gets: Vec::new(),
        })
    }

    fn node(&self, u: &mut Unstructured<'_>) -> ArbResult<usize> {
        u.choose_index(self.net.len())
    }

    /// A live node, if there is one.
    fn live_node(&self, u: &mut Unstructured<'_>) -> ArbResult<Option<usize>> {
        let live = self.net.live();
        if live.is_empty() {
            return Ok(None);
        }
        Ok(Some(*u.choose(&live)?))
    }

    /// One entry of the schedule.
    fn op(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        match u.int_in_range(0u8..=12)? {
            0 => {
                let link = Link {
                    latency: Duration::from_millis(u.int_in_range(1..=300)?),
                    jitter: Duration::from_millis(u.int_in_range(0..=300)?),
                    loss: f64::from(u.int_in_range(0u8..=12)?) * 0.05,
                    duplicate: f64::from(u.int_in_range(0u8..=4)?) * 0.05,
                };
                self.net.set_link(link);
            }
            1 => {
                // Each node joins one of up to three sides (side 0: the rest).
                let mut groups = vec![Vec::new(); 2];
                for i in 0..self.net.len() {
                    match u.int_in_range(0u8..=2)? {
                        0 => {}
                        g => groups[usize::from(g) - 1].push(i),
                    }
                }
                self.net.partition(&groups);
            }
            2 => self.net.heal(),
            3 => {
                let i = self.node(u)?;
                self.net.set_dead(i, true);
            }
            4 => {
                let i = self.node(u)?;
                self.net.set_dead(i, false);
            }
            5 | 6 => self.put(u)?,
            7 => self.get(u)?,
            8 => self.garbage(u)?,
            9 => self.forge_reply(u)?,
            _ => {
                let ms = u.int_in_range(0u64..=400)?;
                self.net.run_for(Duration::from_millis(ms * ms));
            }
        }
        self.collect();
        Ok(())
    }

    fn put(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        if self.puts.len() >= MAX_PUTS {
            return Ok(());
        }
        let Some(i) = self.live_node(u)? else {
            return Ok(());
        };
        let key = format!("{KEY_PREFIX}{}", self.puts.len());
        let len = u.int_in_range(0usize..=64)?;
        let value = if u.arbitrary()? {
            Value::Bytes(u.bytes(len)?.to_vec().into())
        } else {
            Value::Text(format!("v{}-{}", self.puts.len(), "x".repeat(len)))
        };
        let v = value.clone();
        let query = self.net.start(i, |n, now| {
            n.put(now, &key, v).expect("a small put is always accepted")
        });
        self.puts.push(PutRecord {
            node: i,
            query,
            key,
            value,
        });
        Ok(())
    }

    fn get(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        let Some(i) = self.live_node(u)? else {
            return Ok(());
        };
        let key = format!("{KEY_PREFIX}{}", u.int_in_range(0..=MAX_PUTS)?);
        let query = self
            .net
            .start(i, |n, now| n.get(now, &key).expect("a valid key"));
        self.gets.push((i, query, key));
        Ok(())
    }

    /// Bytes to a node from a node's address or a stranger's: random, a damaged message,
    /// or a well-formed forged request.
    fn garbage(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        let dst = self.net.addr(self.node(u)?);
        let src = if u.arbitrary()? {
            self.net.addr(self.node(u)?)
        } else {
            SocketAddr::from((Ipv4Addr::new(192, 0, 2, u.arbitrary()?), 6881))
        };
        let payload = match u.int_in_range(0u8..=2)? {
            0 => {
                let len = u.int_in_range(0usize..=300)?;
                u.bytes(len)?.to_vec()
            }
            1 => {
                let mut p = forged_request(u, self.codec, &self.ids, KEY_PREFIX)?;
                damage(u, &mut p)?;
                p
            }
            _ => forged_request(u, self.codec, &self.ids, KEY_PREFIX)?,
        };
        let delay = Duration::from_millis(u.int_in_range(0..=100)?);
        self.net.inject(delay, src, dst, payload);
        Ok(())
    }

    /// A forged reply to a request in flight, from the request's destination (an on-path
    /// attacker that can spoof addresses but, here, never hands out values).
    fn forge_reply(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        let in_flight: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = self
            .net
            .in_flight()
            .take(64)
            .map(|(_, src, dst, p)| (src, dst, p.to_vec()))
            .collect();
        if in_flight.is_empty() {
            return Ok(());
        }
        let (src, dst, request) = &in_flight[u.choose_index(in_flight.len())?];
        let addrs: Vec<SocketAddr> = (0..self.net.len()).map(|i| self.net.addr(i)).collect();
        if let Some(reply) = forged_reply(u, self.codec, request, &self.ids, &addrs)? {
            self.net.inject(Duration::ZERO, *dst, *src, reply);
        }
        Ok(())
    }

    /// Takes the finished gets and checks what they read.
    fn collect(&mut self) {
        let mut still = Vec::new();
        for (i, q, key) in std::mem::take(&mut self.gets) {
            match self.net.take_finished(i, q) {
                Some(f) => self.check_read(i, &key, &f.result),
                None => still.push((i, q, key)),
            }
        }
        self.gets = still;
    }

    /// A value read for one of our keys must be the value put under it.
    fn check_read(&self, node: usize, key: &str, result: &QueryResult) {
        let QueryResult::Get(Ok(Some(value))) = result else {
            return;
        };
        let put = self.puts.iter().find(|p| p.key == key);
        assert_eq!(
            put.map(|p| &p.value),
            Some(value),
            "node {node} read {key:?} as a value nobody put under it"
        );
    }

    fn heal_and_check(mut self) {
        let net = &mut self.net;
        net.heal();
        for i in 0..net.len() {
            net.set_dead(i, false);
        }
        net.set_link(Link::default());
        // Every query finishes (SimNet panics on one that runs past its cap).
        let mut ok = Vec::new();
        for p in &self.puts {
            let f = net.wait(p.node, p.query);
            if let QueryResult::Put(Ok(_)) = f.result {
                ok.push((p.key.clone(), p.value.clone()));
            }
        }
        for (i, q, key) in std::mem::take(&mut self.gets) {
            let f = self.net.wait(i, q);
            self.check_read(i, &key, &f.result);
        }
        let net = &mut self.net;
        let contact = net.addr(0);
        for i in 1..net.len() {
            net.start(i, |n, now| n.bootstrap(now, &[contact]));
        }
        net.run_for(SETTLE);
        for (key, value) in &ok {
            for i in 0..net.len() {
                let (got, _) = net.run_query(i, |n, now| n.get(now, key).expect("a valid key"));
                assert_eq!(
                    got,
                    QueryResult::Get(Ok(Some(value.clone()))),
                    "node {i} cannot get {key:?}, put successfully before the heal (seed {})",
                    net.seed()
                );
            }
        }
    }
}
