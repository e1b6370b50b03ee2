//! The validation hook: a node's `Validator` keeps the values it refuses out of its store
//! and out of what its lookups return.

use kad_core::{AcceptAll, Config, Node, Origin, QueryResult, Validator, Value, Verdict};
use kad_tests::{Link, SimNet};

const NODES: usize = 200;

/// Refuses every value of odd length.
struct EvenOnly;

impl Validator for EvenOnly {
    fn validate(&mut self, _key: &str, value: &Value, _origin: Origin) -> Verdict {
        if value.byte_len() % 2 == 0 {
            Verdict::Accept
        } else {
            Verdict::Reject
        }
    }
}

/// One node without the rule (an old or hostile node) puts odd- and even-length values
/// into a 200-node network where every other node refuses odd lengths: the odd ones are
/// held by nobody but the writer and no get returns them; the even ones spread as usual.
#[test]
fn a_validator_that_rejects_odd_lengths_keeps_them_out_of_a_200_node_network() {
    let config = Config::default();
    let mut net = SimNet::with_nodes(0x0dd, Link::default(), NODES, &config);
    assert_eq!(net.bootstrap_all(50).joined, NODES);
    let writer = 0;
    net.with_node(writer, |n, _| n.set_validator(AcceptAll));
    for i in 1..NODES {
        net.with_node(i, |n, _| n.set_validator(EvenOnly));
    }
    let keys: Vec<(String, Value)> = (0..20)
        .map(|i| (format!("key {i}"), Value::from("x".repeat(10 + i))))
        .collect();
    for (key, value) in &keys {
        let _ = net.run_query(writer, |n, now| n.put(now, key, value.clone()).unwrap());
    }
    let readers: Vec<usize> = (1..NODES).step_by(7).collect();
    let mut odd_refused = 0;
    for (key, value) in &keys {
        let holders = net.holders(key);
        let odd = value.byte_len() % 2 == 1;
        if odd {
            assert_eq!(holders, vec![writer], "{key}: odd value held by others");
        } else {
            assert!(holders.len() >= 10, "{key}: even value on {holders:?}");
        }
        let jobs: Vec<_> = readers
            .iter()
            .map(|&r| {
                let key = key.clone();
                (r, move |n: &mut Node, now| n.get(now, &key).unwrap())
            })
            .collect();
        for f in net.run_batch(jobs, 25) {
            if odd {
                assert_eq!(
                    f.result,
                    QueryResult::Get(Ok(None)),
                    "{key} read by {}",
                    f.node
                );
                odd_refused += 1;
            } else {
                assert_eq!(f.result, QueryResult::Get(Ok(Some(value.clone()))));
            }
        }
    }
    assert!(odd_refused > 0);
    let rejected: u64 = net.nodes().map(|n| n.stats().records_rejected).sum();
    assert!(rejected > 0, "no set was refused");
}
