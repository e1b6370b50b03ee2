//! Hostile input: a response from the wrong address is ignored, and random bytes change
//! nothing.

use std::time::Duration;

use kad_core::{Codec, Config, QueryResult, QueryStats, Stats, Value};
use kad_tests::{wire, Link, SimNet};

const NODES: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Forge {
    None,
    /// A forged value response with a real transaction id, from another node's address.
    WrongAddress,
    /// The same forgery from the address the request went to (the control: it would have
    /// worked had it come from there).
    RightAddress,
}

struct Outcome {
    result: QueryResult,
    stats: QueryStats,
    getter: Stats,
}

fn forged_response_script(codec: Codec, seed: u64, forge: Forge) -> Outcome {
    let config = Config::builder().codec(codec).build().unwrap();
    let mut net = SimNet::with_nodes(seed, Link::default(), NODES, &config);
    net.bootstrap_all(25);
    let real = Value::from("the real value");
    let p = net.pick(NODES);
    let (r, _) = net.run_query(p, |n, now| n.put(now, "key", real.clone()).unwrap());
    assert!(matches!(r, QueryResult::Put(Ok(_))));
    let p = net.pick(NODES);
    let (r, _) = net.run_query(p, |n, now| n.put(now, "bait", "evil value").unwrap());
    assert!(matches!(r, QueryResult::Put(Ok(_))));

    // Capture a genuine value response to use as the forgery's template.
    let holders = net.holders("bait");
    let x = (0..NODES).find(|i| !holders.contains(i)).unwrap();
    let q = net.start(x, |n, now| n.get(now, "bait").unwrap());
    let mut template = None;
    while template.is_none() {
        assert!(net.step());
        template = net
            .in_flight()
            .find(|(_, _, _, b)| {
                wire::message_type(b) == Some("find_value_res")
                    && wire::field(b, "value") == Some(&b"evil value"[..])
            })
            .map(|(_, _, _, b)| b.to_vec());
    }
    let template = template.unwrap();
    net.wait(x, q);
    net.run_for(Duration::from_secs(5));

    // The victim asks for "key"; catch its first request on the wire.
    let holders = net.holders("key");
    let g = (0..NODES).rev().find(|i| !holders.contains(i)).unwrap();
    let g_addr = net.addr(g);
    // find_value: the first value heard wins (a get would outvote a lone forgery, which
    // is another defence than the one shown here).
    let q = net.start(g, |n, now| n.find_value(now, "key").unwrap());
    let (dst, txn) = net
        .in_flight()
        .find(|(_, src, _, b)| *src == g_addr && wire::message_type(b) == Some("find_value"))
        .map(|(_, _, dst, b)| (dst, wire::txn(b).unwrap().to_vec()))
        .expect("the get's first request");
    let b = net.index_of(dst).unwrap();
    let b_id = net.node(b).id().to_hex_array();
    let forged = wire::with_txn(&template, &txn).unwrap();
    let forged = wire::with_field(&forged, "node_id", &b_id).unwrap();
    let wrong = (0..NODES).find(|&i| i != b && i != g).unwrap();
    match forge {
        Forge::None => {}
        // Delivered before the real answer, which needs a round trip.
        Forge::WrongAddress => net.inject(Duration::ZERO, net.addr(wrong), g_addr, forged),
        Forge::RightAddress => net.inject(Duration::ZERO, dst, g_addr, forged),
    }
    let f = net.wait(g, q);
    let result = match f.result {
        QueryResult::FindValue(r) => QueryResult::Get(r.map(|ok| ok.value)),
        other => other,
    };
    Outcome {
        result,
        stats: f.stats,
        getter: net.node(g).stats(),
    }
}

fn forged_response_is_ignored(codec: Codec, seed: u64) {
    let clean = forged_response_script(codec, seed, Forge::None);
    let forged = forged_response_script(codec, seed, Forge::WrongAddress);
    let control = forged_response_script(codec, seed, Forge::RightAddress);
    assert_eq!(
        clean.result,
        QueryResult::Get(Ok(Some(Value::from("the real value"))))
    );
    // Ignored: counted, and the query went exactly as without it.
    assert_eq!(
        forged.getter.responses_wrong_source,
        clean.getter.responses_wrong_source + 1
    );
    assert_eq!(forged.result, clean.result);
    let work = |s: &QueryStats| (s.rounds, s.requests, s.responses, s.timeouts, s.duration());
    assert_eq!(work(&forged.stats), work(&clean.stats));
    // From the right address the same bytes would have been believed: the address check
    // is what stopped them.
    assert_eq!(
        control.result,
        QueryResult::Get(Ok(Some(Value::from("evil value"))))
    );
}

#[test]
fn forged_response_is_ignored_json() {
    forged_response_is_ignored(Codec::Json, kad_tests::seed(0xbad_0001));
}

#[test]
fn forged_response_is_ignored_bencode() {
    forged_response_is_ignored(Codec::Bencode, kad_tests::seed(0xbad_0002));
}

fn garbage_changes_nothing(codec: Codec, seed: u64) {
    let config = Config::builder().codec(codec).build().unwrap();
    let mut net = SimNet::with_nodes(seed, Link::default(), 60, &config);
    net.bootstrap_all(20);
    let keys: Vec<String> = (0..5).map(|i| format!("key {i}")).collect();
    for key in &keys {
        let p = net.pick(60);
        net.run_query(p, |n, now| n.put(now, key, "value").unwrap());
    }
    // A real message to cut up, then let the network fall quiet.
    let holders = net.holders("key 0");
    let p = (0..60).find(|i| !holders.contains(i)).unwrap();
    let q = net.start(p, |n, now| n.get(now, "key 0").unwrap());
    let sample = net
        .in_flight()
        .next()
        .map(|(_, _, _, b)| b.to_vec())
        .unwrap();
    net.wait(p, q);
    net.run_for(Duration::from_secs(30));

    let victim = net.pick(60);
    let v_addr = net.addr(victim);
    let snapshot = |net: &SimNet| {
        let n = net.node(victim);
        let mut peers = n.peers();
        peers.sort();
        let records: Vec<Option<Value>> = keys.iter().map(|k| n.get_local(net.now(), k)).collect();
        (peers, n.record_count(), records)
    };
    let before = snapshot(&net);
    let stats_before = net.node(victim).stats();
    let sent_before: Vec<u64> = net.nodes().map(|n| n.stats().datagrams_sent).collect();

    let mut count = 0;
    for i in 0..100 {
        let len = if i % 10 == 0 { i / 10 } else { net.pick(1500) };
        let mut bytes = vec![0u8; len];
        net.random_bytes(&mut bytes);
        // From strangers and from a peer it knows.
        let src = if i % 2 == 0 {
            format!("192.0.2.{}:{}", i + 1, 1000 + i).parse().unwrap()
        } else {
            before.0[0].addr
        };
        net.inject(Duration::from_millis(1), src, v_addr, bytes);
        count += 1;
    }
    for cut in [1, sample.len() / 3, sample.len() / 2, sample.len() - 1] {
        let src = before.0[0].addr;
        net.inject(
            Duration::from_millis(1),
            src,
            v_addr,
            sample[..cut].to_vec(),
        );
        count += 1;
    }
    net.run_for(Duration::from_millis(10));

    let stats = net.node(victim).stats();
    let dropped = (stats.malformed - stats_before.malformed)
        + (stats.unknown_type - stats_before.unknown_type);
    assert_eq!(dropped, count, "{stats:?}");
    assert_eq!(
        stats.datagrams_received,
        stats_before.datagrams_received + count
    );
    assert_eq!(stats.requests_answered, stats_before.requests_answered);
    assert_eq!(snapshot(&net), before, "routing table or store changed");
    let sent_after: Vec<u64> = net.nodes().map(|n| n.stats().datagrams_sent).collect();
    assert_eq!(
        sent_after, sent_before,
        "garbage made some node send something"
    );
    assert_eq!(net.in_flight().count(), 0);
}

#[test]
fn garbage_changes_nothing_json() {
    garbage_changes_nothing(Codec::Json, kad_tests::seed(0xbad_0003));
}

#[test]
fn garbage_changes_nothing_bencode() {
    garbage_changes_nothing(Codec::Bencode, kad_tests::seed(0xbad_0004));
}
