//! Queries end early when asked (issue 16, item 2): `Node::cancel` frees the query's
//! `max_active_queries` slot at once and its late answers are ignored; `Node::set_deadline`
//! ends a query with `DeadlinePassed`.

use std::time::Duration;

use kad_core::{Config, QueryError, QueryResult};
use kad_tests::{Link, SimNet};

const NODES: usize = 30;

/// A bootstrapped network of `NODES` nodes, and one more (the last) that runs one query
/// at a time.
fn network(seed: u64) -> (SimNet, usize) {
    let mut net = SimNet::with_nodes(
        kad_tests::seed(seed),
        Link::fixed(Duration::from_millis(50)),
        NODES,
        &Config::default(),
    );
    let boot = net.bootstrap_all(10);
    assert_eq!(boot.failed, 0, "{boot:?}");
    let one = Config::builder().max_active_queries(1).build().unwrap();
    let i = net.add_node(one);
    let addrs = vec![net.addr(0), net.addr(1)];
    let (result, _) = net.run_query(i, |n, now| n.bootstrap(now, &addrs));
    assert!(
        matches!(result, QueryResult::Bootstrap(Ok(_))),
        "{result:?}"
    );
    (net, i)
}

#[test]
fn a_cancelled_query_frees_its_slot_and_its_late_answers_are_ignored() {
    let (mut net, i) = network(16);
    let first = net.start(i, |n, now| n.get(now, "no such key").unwrap());
    // The slot is taken: a second query is refused at once.
    let refused = net.start(i, |n, now| n.get(now, "other key").unwrap());
    let f = net.take_finished(i, refused).expect("refused at once");
    assert_eq!(f.result, QueryResult::Get(Err(QueryError::TooManyQueries)));
    let accepted = net.node(i).stats().responses_accepted;
    assert!(net.with_node(i, |n, now| n.cancel(now, first)));
    // The slot is free at once: the next query starts and runs to its end.
    let (result, _) = net.run_query(i, |n, now| n.get(now, "other key").unwrap());
    assert_eq!(
        result,
        QueryResult::Get(Ok(None)),
        "the slot is still taken"
    );
    // The cancelled query's requests were answered (late), and changed nothing: no event.
    net.run_for(Duration::from_secs(10));
    assert!(net.node(i).stats().responses_accepted > accepted);
    assert_eq!(
        net.take_finished(i, first),
        None,
        "a cancelled query reported"
    );
    assert_eq!(net.node(i).stats().queries_cancelled, 1);
    assert_eq!(net.node(i).active_queries(), 0);
    assert!(
        !net.with_node(i, |n, now| n.cancel(now, first)),
        "cancelled twice"
    );
    net.node(i).check_invariants().unwrap();
}

#[test]
fn a_query_past_its_deadline_ends_with_deadline_passed() {
    let (mut net, i) = network(17);
    // Every other node dies silently: a get would wait out its requests' timeouts.
    for j in 0..NODES {
        net.set_dead(j, true);
    }
    let started = net.now();
    let id = net.start(i, |n, now| n.get(now, "no such key").unwrap());
    let deadline = started + Duration::from_millis(300);
    assert!(net.with_node(i, |n, _| n.set_deadline(id, deadline)));
    let f = net.wait(i, id);
    assert_eq!(f.result, QueryResult::Get(Err(QueryError::DeadlinePassed)));
    assert_eq!(
        f.stats.finished, deadline,
        "virtual time: it ends at its deadline"
    );
    assert_eq!(net.node(i).stats().queries_past_deadline, 1);
    assert_eq!(net.node(i).active_queries(), 0);
    net.run_for(Duration::from_secs(10));
    net.node(i).check_invariants().unwrap();
}
