//! Lookups do not wait on the dead (issue 18): a request unanswered past the node's
//! retransmission timeout (smoothed round trip plus four deviations) stops holding its
//! alpha slot, and a user's get or find_node ends without it. With a quarter of the nodes
//! silently dead, no get waits out `query_timeout`; the dead are still timed out and
//! evicted by then, as before.

use std::time::Duration;

use kad_core::{Config, Node, QueryResult, Value};
use kad_tests::{Link, SimNet, Summary};

const NODES: usize = 400;
const KEYS: usize = 40;
const GETS: usize = 400;

#[test]
fn gets_among_the_dead_take_round_trips_not_timeouts() {
    let seed = kad_tests::seed(18);
    let config = Config::default();
    let timeout = Duration::from_secs(2);
    // A 40 ms round trip, no jitter: a get that waits on a dead peer shows as 2 s.
    let mut net = SimNet::with_nodes(seed, Link::fixed(Duration::from_millis(20)), NODES, &config);
    let boot = net.bootstrap_all(50);
    assert_eq!(boot.failed, 0, "{boot:?}");
    let keys: Vec<(String, Value)> = (0..KEYS)
        .map(|i| (format!("key {i}"), Value::from(format!("value {i}"))))
        .collect();
    let jobs: Vec<_> = keys
        .iter()
        .map(|(k, v)| {
            let (k, v) = (k.clone(), v.clone());
            let i = net.pick(NODES);
            (i, move |n: &mut Node, now| n.put(now, &k, v).unwrap())
        })
        .collect();
    for f in net.run_batch(jobs, 10) {
        assert!(matches!(f.result, QueryResult::Put(Ok(_))), "{f:?}");
    }
    // A quarter dies silently, after the puts.
    let mut alive: Vec<usize> = (0..NODES).collect();
    for _ in 0..NODES / 4 {
        let j = net.pick(alive.len());
        let victim = alive.swap_remove(j);
        net.set_dead(victim, true);
    }
    let jobs: Vec<_> = (0..GETS)
        .map(|_| {
            let key = keys[net.pick(KEYS)].0.clone();
            let i = alive[net.pick(alive.len())];
            (i, move |n: &mut Node, now| n.get(now, &key).unwrap())
        })
        .collect();
    let gets = net.run_batch(jobs, 20);
    let found = gets
        .iter()
        .filter(|f| matches!(f.result, QueryResult::Get(Ok(Some(_)))))
        .count();
    assert_eq!(found, GETS);
    let ms = Summary::new(gets.iter().map(|f| f.stats.duration().as_millis() as u64));
    println!(
        "get latency: p50 {} ms, p99 {} ms, max {} ms",
        ms.percentile(50),
        ms.percentile(99),
        ms.max()
    );
    // Waiting on one dead peer costs `timeout`; not waiting, a few round trips of 40 ms
    // plus a few retransmission timeouts.
    assert!(
        ms.max() < timeout.as_millis() as u64 / 2,
        "a get waited on the dead: max {} ms",
        ms.max()
    );
    assert!(ms.percentile(50) <= 160, "p50 {} ms", ms.percentile(50));
    // The dead that gets met are still timed out (after the gets ended) and evicted: run
    // past the timeout, then no live node that asked a dead peer keeps it as a live entry
    // it has not heard from. Counted: the dead entries drop.
    let (dead_before, _) = net.dead_table_entries();
    net.run_for(timeout * 2);
    let (dead_after, _) = net.dead_table_entries();
    assert!(
        dead_after < dead_before,
        "the stalled requests' timeouts evicted nobody ({dead_before} -> {dead_after})"
    );
}
