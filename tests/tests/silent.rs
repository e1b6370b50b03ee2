//! A quarter of the nodes go silent: gets still succeed, and live nodes evict the dead
//! peers from their routing tables once those fail `failures_before_eviction` times.

use std::time::Duration;

use kad_core::{Codec, Config, Node, QueryResult, Value};
use kad_tests::{Link, SimNet, Summary};

const NODES: usize = 400;
const KEYS: usize = 40;
const GETS: usize = 400;

fn silent_quarter(codec: Codec, seed: u64) {
    let config = Config::builder().codec(codec).build().unwrap();
    let mut net = SimNet::with_nodes(seed, Link::default(), NODES, &config);
    let boot = net.bootstrap_all(100);
    assert_eq!(boot.joined, NODES);

    let keys: Vec<(String, Value)> = (0..KEYS)
        .map(|i| (format!("key {i}"), Value::from(format!("value {i}"))))
        .collect();
    let jobs: Vec<_> = keys
        .iter()
        .map(|(k, v)| {
            let (k, v) = (k.clone(), v.clone());
            (net.pick(NODES), move |n: &mut Node, now| {
                n.put(now, &k, v).unwrap()
            })
        })
        .collect();
    for f in net.run_batch(jobs, 20) {
        assert!(
            matches!(f.result, QueryResult::Put(Ok(_))),
            "{:?}",
            f.result
        );
    }

    // A quarter of the nodes, publishers included, stop answering.
    let mut alive: Vec<usize> = (0..NODES).collect();
    for _ in 0..NODES / 4 {
        let j = net.pick(alive.len());
        let victim = alive.swap_remove(j);
        net.set_dead(victim, true);
    }
    let (dead_before, total_before) = net.dead_table_entries();
    let share_before = dead_before as f64 / total_before as f64;
    assert!(
        share_before > 0.2,
        "{dead_before} of {total_before} entries dead"
    );

    let mut jobs = Vec::new();
    let mut want = Vec::new();
    for _ in 0..GETS {
        let (k, v) = keys[net.pick(KEYS)].clone();
        let g = alive[net.pick(alive.len())];
        want.push(v);
        jobs.push((g, move |n: &mut Node, now| n.get(now, &k).unwrap()));
    }
    let results = net.run_batch(jobs, 40);
    let ok = results
        .iter()
        .zip(&want)
        .filter(|(f, v)| f.result == QueryResult::Get(Ok(Some((*v).clone()))))
        .count();
    let timeouts = Summary::new(results.iter().map(|f| u64::from(f.stats.timeouts)));
    let rounds = Summary::new(results.iter().map(|f| u64::from(f.stats.rounds)));
    let evicted: u64 = net.nodes().map(|n| n.stats().peers_evicted).sum();
    println!(
        "{codec}: {ok}/{GETS} gets ok; timeouts mean {:.2} max {}; rounds mean {:.2} max {}; \
         {evicted} evictions",
        timeouts.mean(),
        timeouts.max(),
        rounds.mean(),
        rounds.max()
    );
    assert!(ok * 100 >= GETS * 99, "only {ok} of {GETS} gets succeeded");

    // Gets touch few peers; the hourly refresh of stale buckets reaches the rest. Each
    // dead entry must fail `failures_before_eviction` times in a row at each node.
    let mut shares = vec![share_before];
    for _ in 0..4 {
        net.run_for(Duration::from_secs(3600));
        let (d, t) = net.dead_table_entries();
        shares.push(d as f64 / t as f64);
    }
    println!("{codec}: dead share of live tables, hour by hour: {shares:.3?}");
    assert!(
        shares[4] < share_before * 0.5,
        "dead share of live tables {share_before:.3} -> {:.3} after 4 h",
        shares[4]
    );
}

/// The failure limit, exactly: in a network small enough that no bucket is full (so no
/// ping-the-oldest adds failures of its own), a lookup of a dead peer's id asks that peer
/// once. A peer that has answered us survives `failures_before_eviction - 1` such failures
/// and goes at the next.
fn failure_limit(codec: Codec, seed: u64) {
    const SMALL: usize = 12;
    let config = Config::builder().codec(codec).build().unwrap();
    let limit = config.failures_before_eviction();
    assert!(limit >= 2, "the test needs a limit above 1");
    let mut net = SimNet::with_nodes(seed, Link::default(), SMALL, &config);
    net.bootstrap_all(4);
    let (l, d) = (1, SMALL - 1);
    let dead = net.node(d).id();
    // d answers one of l's requests: l has verified it.
    let d_addr = net.addr(d);
    let (r, _) = net.run_query(l, |n, now| n.ping(now, d_addr));
    assert!(matches!(r, QueryResult::Ping(Ok(_))));
    assert!(net.node(l).peers().iter().any(|p| p.id == dead));
    net.set_dead(d, true);
    let evicted_before = net.node(l).stats().peers_evicted;
    for failure in 1..=limit {
        let timeouts_before = net.node(l).stats().request_timeouts;
        let (_, stats) = net.run_query(l, |n, now| n.find_node(now, dead));
        assert_eq!(stats.timeouts, 1, "the lookup asked the dead peer once");
        assert_eq!(net.node(l).stats().request_timeouts, timeouts_before + 1);
        let present = net.node(l).peers().iter().any(|p| p.id == dead);
        assert_eq!(present, failure < limit, "after {failure} failure(s)");
    }
    assert_eq!(net.node(l).stats().peers_evicted, evicted_before + 1);
}

#[test]
fn failure_limit_json() {
    failure_limit(Codec::Json, kad_tests::seed(0xdead_0003));
}

#[test]
fn failure_limit_bencode() {
    failure_limit(Codec::Bencode, kad_tests::seed(0xdead_0004));
}

#[test]
fn silent_quarter_json() {
    silent_quarter(Codec::Json, kad_tests::seed(0xdead_0001));
}

#[test]
fn silent_quarter_bencode() {
    silent_quarter(Codec::Bencode, kad_tests::seed(0xdead_0002));
}
