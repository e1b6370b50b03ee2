//! The same seed gives the same run, datagram for datagram; another seed another run.

use std::time::Duration;

use kad_core::{Codec, Config, Node, QueryResult};
use kad_tests::{Link, NetStats, RttModel, SimNet};

const NODES: usize = 150;

/// A busy script: lossy, duplicating, jittery links; joins, puts, deaths, a partition,
/// gets across it, healing, and an hour of maintenance.
fn run(codec: Codec, seed: u64) -> (u64, Vec<QueryResult>, NetStats) {
    run_on(codec, seed, 1)
}

/// [`run`] with the joins shared among `threads` threads.
fn run_on(codec: Codec, seed: u64, threads: usize) -> (u64, Vec<QueryResult>, NetStats) {
    run_with(codec, seed, threads, None)
}

/// [`run_on`], with per-pair round trips from `rtt` in place of the link's latency.
fn run_with(
    codec: Codec,
    seed: u64,
    threads: usize,
    rtt: Option<RttModel>,
) -> (u64, Vec<QueryResult>, NetStats) {
    let config = Config::builder().codec(codec).build().unwrap();
    let link = Link {
        latency: Duration::from_millis(10),
        jitter: Duration::from_millis(80),
        loss: 0.02,
        duplicate: 0.01,
    };
    let mut net = SimNet::with_nodes(seed, link, NODES, &config);
    net.set_threads(threads);
    net.set_rtt_model(rtt);
    net.bootstrap_all(40);
    let mut results = Vec::new();
    let jobs: Vec<_> = (0..10)
        .map(|i| {
            let p = net.pick(NODES);
            (p, move |n: &mut Node, now| {
                n.put(now, &format!("k{i}"), format!("v{i}")).unwrap()
            })
        })
        .collect();
    results.extend(net.run_batch(jobs, 5).into_iter().map(|f| f.result));
    for _ in 0..10 {
        let i = net.pick(NODES);
        net.set_dead(i, true);
    }
    let island: Vec<usize> = (0..20).map(|_| net.pick(NODES)).collect();
    net.partition(&[island]);
    let live = net.live();
    let jobs: Vec<_> = (0..50)
        .map(|_| {
            let g = live[net.pick(live.len())];
            let key = format!("k{}", net.pick(10));
            (g, move |n: &mut Node, now| n.get(now, &key).unwrap())
        })
        .collect();
    results.extend(net.run_batch(jobs, 10).into_iter().map(|f| f.result));
    net.heal();
    net.run_for(Duration::from_secs(3600));
    (net.trace_hash(), results, net.stats())
}

fn same_seed_same_trace(codec: Codec, seed: u64) {
    let a = run(codec, seed);
    let b = run(codec, seed);
    println!("{codec}: seed {seed}: trace {:016x}, {:?}", a.0, a.2);
    assert!(a.2.delivered > 10_000 && a.2.lost > 0 && a.2.duplicated > 0);
    assert!(a.2.dropped_partition > 0 && a.2.dropped_dead > 0);
    assert_eq!(a.0, b.0, "same seed, different trace");
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
    let c = run(codec, seed.wrapping_add(1));
    assert_ne!(a.0, c.0, "different seeds, same trace");
}

#[test]
fn same_seed_same_trace_json() {
    same_seed_same_trace(Codec::Json, kad_tests::seed(0xd0_0001));
}

#[test]
fn same_seed_same_trace_bencode() {
    same_seed_same_trace(Codec::Bencode, kad_tests::seed(0xd0_0002));
}

/// The joins run a window at a time, each window's nodes shared among threads: the run is
/// the same whatever the number of threads.
#[test]
fn any_number_of_threads_same_trace() {
    let seed = kad_tests::seed(0xd0_0003);
    let one = run_on(Codec::Json, seed, 1);
    for threads in [2, 3] {
        let many = run_on(Codec::Json, seed, threads);
        assert_eq!(one.0, many.0, "{threads} threads: another trace");
        assert_eq!(one.1, many.1, "{threads} threads: other results");
        assert_eq!(one.2, many.2, "{threads} threads: other counts");
    }
}

/// The same with per-pair round trips: windows as long as half the shortest one.
#[test]
fn any_number_of_threads_same_trace_rtt_model() {
    let seed = kad_tests::seed(0xd0_0004);
    let rtt = Some(RttModel::lognormal(Duration::from_millis(80)));
    let one = run_with(Codec::Bencode, seed, 1, rtt);
    for threads in [2, 3] {
        let many = run_with(Codec::Bencode, seed, threads, rtt);
        assert_eq!(one.0, many.0, "{threads} threads: another trace");
        assert_eq!(one.1, many.1, "{threads} threads: other results");
        assert_eq!(one.2, many.2, "{threads} threads: other counts");
    }
}
