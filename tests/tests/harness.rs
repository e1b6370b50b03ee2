//! The simulator itself: delays, loss, duplication, partitions and dead nodes do what they
//! say, and time only moves in steps.

use std::time::Duration;

use kad_core::{Config, QueryError, QueryResult};
use kad_tests::{Link, SimNet};

fn pair(seed: u64, link: Link) -> SimNet {
    SimNet::with_nodes(seed, link, 2, &Config::default())
}

#[test]
fn ping_takes_one_round_trip_of_virtual_time() {
    let mut net = pair(kad_tests::seed(1), Link::fixed(Duration::from_millis(10)));
    let t0 = net.now();
    let to = net.addr(1);
    let (r, stats) = net.run_query(0, |n, now| n.ping(now, to));
    assert!(matches!(r, QueryResult::Ping(Ok(p)) if p.id == net.node(1).id()));
    assert_eq!(stats.duration(), Duration::from_millis(20));
    assert_eq!(net.now() - t0, Duration::from_millis(20));
    // The pong made node 1 a peer of node 0. Node 0's ping was only a claim to node 1: node 1
    // takes node 0 in once node 0 has answered its verification ping, a round trip later.
    assert_eq!(net.node(0).table_len(), 1);
    assert_eq!(net.node(1).table_len(), 0);
    net.run_for(Duration::from_millis(20));
    assert_eq!(net.node(1).table_len(), 1);
}

#[test]
fn jitter_stays_within_its_bound() {
    let link = Link {
        latency: Duration::from_millis(10),
        jitter: Duration::from_millis(40),
        ..Link::default()
    };
    let mut net = pair(kad_tests::seed(2), link);
    for _ in 0..50 {
        let to = net.addr(1);
        let (_, stats) = net.run_query(0, |n, now| n.ping(now, to));
        let rtt = stats.duration();
        assert!(
            rtt >= Duration::from_millis(20) && rtt < Duration::from_millis(100),
            "{rtt:?}"
        );
    }
}

/// Datagrams one unanswered ping puts on the wire: the request and its retransmissions.
fn ping_copies() -> u64 {
    1 + Config::default().request_retries() as u64
}

fn ping_fails(net: &mut SimNet) {
    let to = net.addr(1);
    let (r, stats) = net.run_query(0, |n, now| n.ping(now, to));
    assert_eq!(r, QueryResult::Ping(Err(QueryError::NoResponse)));
    assert_eq!(stats.duration(), Config::default().query_timeout());
}

#[test]
fn total_loss_drops_everything() {
    let mut net = pair(kad_tests::seed(3), Link::default().with_loss(1.0));
    ping_fails(&mut net);
    assert_eq!(net.stats().lost, ping_copies());
    assert_eq!(net.stats().delivered, 0);
}

#[test]
fn dead_nodes_and_partitions_drop_datagrams() {
    let mut net = pair(kad_tests::seed(4), Link::default());
    net.set_dead(1, true);
    ping_fails(&mut net);
    assert_eq!(net.stats().dropped_dead, ping_copies());
    net.set_dead(1, false);
    net.partition(&[vec![0]]);
    ping_fails(&mut net);
    assert_eq!(net.stats().dropped_partition, ping_copies());
    net.heal();
    let to = net.addr(1);
    let (r, _) = net.run_query(0, |n, now| n.ping(now, to));
    assert!(matches!(r, QueryResult::Ping(Ok(_))));
}

#[test]
fn duplicates_arrive_and_are_recognised() {
    let mut net = pair(kad_tests::seed(5), Link::default().with_duplicate(1.0));
    let to = net.addr(1);
    let (r, _) = net.run_query(0, |n, now| n.ping(now, to));
    assert!(matches!(r, QueryResult::Ping(Ok(_))));
    net.run_for(Duration::from_secs(1));
    // Two pings reached node 1; it answered both, twice each: four pongs, one accepted.
    assert_eq!(net.node(1).stats().requests_answered, 2);
    assert_eq!(net.node(0).stats().responses_accepted, 1);
    assert_eq!(net.node(0).stats().responses_unmatched, 3);
}

#[test]
fn idle_network_jumps_straight_to_the_next_deadline() {
    let mut net = SimNet::with_nodes(kad_tests::seed(6), Link::default(), 20, &Config::default());
    net.bootstrap_all(4);
    let before = net.stats().steps;
    net.run_for(Duration::from_secs(10 * 3600));
    // Ten hours of hourly refreshes on 20 nodes: a few thousand steps, not millions.
    let steps = net.stats().steps - before;
    assert!(steps < 200_000, "{steps} steps");
    assert!(net.elapsed() >= Duration::from_secs(10 * 3600));
}

#[test]
fn injected_datagrams_are_delivered_on_time() {
    let mut net = pair(kad_tests::seed(7), Link::default());
    let from = "192.0.2.1:9".parse().unwrap();
    let to = net.addr(0);
    net.inject(
        Duration::from_millis(5),
        from,
        to,
        b"not a message".to_vec(),
    );
    net.run_for(Duration::from_millis(4));
    assert_eq!(net.node(0).stats().malformed, 0);
    net.run_for(Duration::from_millis(1));
    assert_eq!(net.node(0).stats().malformed, 1);
}

#[test]
fn jitter_reorders_and_a_fixed_link_does_not() {
    for (jitter, reorders) in [(Duration::ZERO, false), (Duration::from_millis(30), true)] {
        let link = Link {
            jitter,
            ..Link::fixed(Duration::from_millis(20))
        };
        let mut net = pair(kad_tests::seed(8), link);
        for _ in 0..20 {
            let to = net.addr(1);
            net.start(0, |n, now| n.ping(now, to));
        }
        while net.step() && net.stats().delivered < 40 {}
        assert_eq!(net.stats().reordered > 0, reorders, "jitter {jitter:?}");
    }
}

#[test]
fn removed_nodes_are_gone_and_newcomers_join() {
    let config = Config::default();
    let mut net = SimNet::with_nodes(kad_tests::seed(9), Link::default(), 30, &config);
    assert_eq!(net.bootstrap_all(10).joined, 30);
    for i in 0..10 {
        net.remove(i);
    }
    assert!((0..10).all(|i| net.is_dead(i) && net.is_removed(i)));
    assert!((0..10).all(|i| net.node(i).table_len() == 0));
    let joiners: Vec<usize> = (0..10).map(|_| net.add_node(config.clone())).collect();
    let report = net.join(&joiners, (10..30).collect(), 4);
    assert_eq!((report.joined, report.failed), (10, 0));
    assert!(report.stragglers.is_empty());
    assert!(joiners.iter().all(|&i| net.node(i).table_len() > 0));
    // A newcomer's address is new: nothing reuses a removed node's.
    assert!(joiners
        .iter()
        .all(|&i| (0..10).all(|j| net.addr(i) != net.addr(j))));
}

#[test]
#[should_panic(expected = "cannot come back")]
fn a_removed_node_cannot_be_revived() {
    let mut net = pair(kad_tests::seed(10), Link::default());
    net.remove(1);
    net.set_dead(1, false);
}

#[test]
fn every_node_is_found_at_its_address_and_no_other_address_names_one() {
    let net = SimNet::with_nodes(1, Link::default(), 300, &Config::default());
    for i in 0..net.len() {
        let addr = net.addr(i);
        assert_eq!(addr, SimNet::addr_of(i));
        assert_eq!(net.index_of(addr), Some(i), "node {i} at {addr}");
        let mut other_port = addr;
        other_port.set_port(addr.port() + 1);
        assert_eq!(net.index_of(other_port), None, "{other_port}");
    }
    for addr in [
        SimNet::addr_of(net.len()),
        SimNet::addr_of(100_000),
        "10.0.0.0:4000".parse().unwrap(),
        "11.1.0.1:4000".parse().unwrap(),
        "[::1]:4000".parse().unwrap(),
    ] {
        assert_eq!(net.index_of(addr), None, "{addr}");
    }
}

/// The join's progress hook hears of every batch: joiners done so far, rising to all of
/// them, with the virtual time since the join began.
#[test]
fn join_progress_reports_every_batch() {
    use std::sync::{Arc, Mutex};
    let mut net = SimNet::with_nodes(kad_tests::seed(7), Link::default(), 120, &Config::default());
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    net.on_join_progress(Some(Box::new(move |done, all, virt| {
        sink.lock().unwrap().push((done, all, virt));
    })));
    let report = net.bootstrap_all(25);
    assert_eq!(report.joined, 120);
    let heard = heard.lock().unwrap();
    // 119 joiners: batches of 1, 2, 4, ..., then 25 at a time.
    assert!(heard.len() >= 5, "{heard:?}");
    assert!(heard.iter().all(|&(_, all, _)| all == 119), "{heard:?}");
    assert!(
        heard
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].2 <= w[1].2),
        "not rising: {heard:?}"
    );
    assert_eq!(heard.last().map(|h| h.0), Some(119));
    assert_eq!(heard.last().map(|h| h.2), Some(report.duration));
}
