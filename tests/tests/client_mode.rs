//! Client mode (issue 16, item 4): a node that queries the network and never enters a kad
//! node's routing table; it keeps nothing for others.

use std::time::Duration;

use kad_core::{Codec, Config, Node, QueryResult, Value};
use kad_tests::forge::{self, W};
use kad_tests::{Link, SimNet};

const NODES: usize = 40;
const KEYS: usize = 20;
const GETS: usize = 100;

#[test]
fn a_client_is_in_no_table_after_a_hundred_gets() {
    let mut net = SimNet::with_nodes(
        kad_tests::seed(164),
        Link::fixed(Duration::from_millis(10)),
        NODES,
        &Config::default(),
    );
    let boot = net.bootstrap_all(10);
    assert_eq!(boot.failed, 0, "{boot:?}");
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
    for f in net.run_batch(jobs, 10) {
        assert!(matches!(f.result, QueryResult::Put(Ok(_))), "{f:?}");
    }
    let client = net.add_node(Config::builder().client_mode(true).build().unwrap());
    let addrs = vec![net.addr(0), net.addr(1)];
    let (result, _) = net.run_query(client, |n, now| n.bootstrap(now, &addrs));
    assert!(
        matches!(result, QueryResult::Bootstrap(Ok(_))),
        "{result:?}"
    );
    let jobs: Vec<_> = (0..GETS)
        .map(|i| {
            let key = keys[i % KEYS].0.clone();
            (client, move |n: &mut Node, now| n.get(now, &key).unwrap())
        })
        .collect();
    let found = net
        .run_batch(jobs, 5)
        .iter()
        .filter(|f| matches!(f.result, QueryResult::Get(Ok(Some(_)))))
        .count();
    assert_eq!(found, GETS, "the client's gets work");
    // The client's own put reaches the network too.
    let (result, _) = net.run_query(client, |n, now| n.put(now, "from the client", "c").unwrap());
    assert!(matches!(result, QueryResult::Put(Ok(_))), "{result:?}");
    net.run_for(Duration::from_secs(60));
    let id = net.node(client).id();
    let knowing: Vec<usize> = (0..NODES)
        .filter(|&i| net.node(i).peers().iter().any(|p| p.id == id))
        .collect();
    assert!(
        knowing.is_empty(),
        "nodes with the client in their table: {knowing:?}"
    );
    assert!(
        net.node(client).table_len() > 0,
        "the client knows the network"
    );
    // It stores nothing for others, even from a peer that proves its address.
    let (from, sender) = (net.addr(0), net.node(0).id());
    let fields = vec![("key", W::S("pushed".into())), ("value", W::S("v".into()))];
    let set = forge::message(
        Codec::Json,
        "set",
        "0123456789abcdef",
        (&sender, from),
        fields,
    );
    let to = net.addr(client);
    net.inject(Duration::from_millis(1), from, to, set);
    net.run_for(Duration::from_secs(5));
    let now = net.now();
    assert_eq!(
        net.node(client).get_local(now, "pushed"),
        None,
        "a client stored a set"
    );
    assert_eq!(net.node(client).record_count(), 1, "only its own put");
}
