//! A second `put` of a key with a new value is what every later `get` sees.
//!
//! The reference's `set` skips peers whose `check_store` says they hold the key, so its
//! updates never reach the replicas; ours always sends `set`. Cached copies (`set_cached`,
//! placed by gets) are another matter: they are not replicas, the publisher cannot know
//! where they are, and they live for the dynamic cache TTL. So a get that meets a cached
//! copy of the old value may return it until that copy expires; see
//! `reads_between_the_puts_see_the_update_at_once`, ignored while kad-core has no answer.

use std::time::Duration;

use kad_core::{cache_ttl, Codec, Config, Node, NodeId, QueryResult, Value};
use kad_tests::{Link, SimNet};

const NODES: usize = 200;

fn get_all(net: &mut SimNet, getters: &[usize], key: &str) -> Vec<QueryResult> {
    let jobs: Vec<_> = getters
        .iter()
        .map(|&g| {
            let key = key.to_owned();
            (g, move |n: &mut Node, now| n.get(now, &key).unwrap())
        })
        .collect();
    net.run_batch(jobs, 25)
        .into_iter()
        .map(|f| f.result)
        .collect()
}

/// Nodes (of `getters`) whose get did not return `want`, with what they got.
fn stale(
    net: &mut SimNet,
    getters: &[usize],
    key: &str,
    want: &Value,
) -> Vec<(usize, QueryResult)> {
    let results = get_all(net, getters, key);
    getters
        .iter()
        .zip(results)
        .filter(|(_, r)| *r != QueryResult::Get(Ok(Some(want.clone()))))
        .map(|(i, r)| (*i, r))
        .collect()
}

fn put(net: &mut SimNet, i: usize, key: &str, value: &Value) {
    let (r, _) = net.run_query(i, |n, now| n.put(now, key, value.clone()).unwrap());
    assert!(matches!(r, QueryResult::Put(Ok(_))), "{r:?}");
}

/// The `k` nodes closest to `key`.
fn closest(net: &SimNet, key: &str, k: usize) -> Vec<usize> {
    let target = NodeId::for_key(key);
    let mut all: Vec<usize> = (0..net.len()).collect();
    all.sort_by_key(|&i| net.node(i).id().distance(&target));
    all.truncate(k);
    all
}

/// A network on kad-core's defaults: among them the reply budget for unverified
/// requesters, whose large replies wait for a verification ping (a shortened peer list
/// would make lookups miss some of the k closest nodes, and a put then miss replicas).
fn network(codec: Codec, seed: u64) -> SimNet {
    let config = Config::builder().codec(codec).build().unwrap();
    let mut net = SimNet::with_nodes(seed, Link::default(), NODES, &config);
    let boot = net.bootstrap_all(50);
    assert_eq!(boot.joined, NODES);
    net
}

fn second_put_wins(codec: Codec, seed: u64) {
    let mut net = network(codec, seed);
    let a = net.pick(NODES);
    let mut b = net.pick(NODES);
    while b == a {
        b = net.pick(NODES);
    }
    // "own": the publisher updates its own key; "other": another node overwrites it.
    let (own, v1, v2) = (
        "own",
        Value::from("first"),
        Value::from(&b"second, as bytes"[..]),
    );
    let (other, w1, w2) = ("other", Value::from("from a"), Value::from("from b"));
    put(&mut net, a, own, &v1);
    put(&mut net, a, own, &v2);
    put(&mut net, a, other, &w1);
    put(&mut net, b, other, &w2);

    // Every replica was updated: nobody holds an old value but `a` itself, whose own
    // (published) record of `other` is not a replica and was not asked.
    for (key, old) in [(own, &v1), (other, &w1)] {
        let stale: Vec<usize> = (0..NODES)
            .filter(|&i| net.node(i).get_local(net.now(), key).as_ref() == Some(old))
            .filter(|&i| !(i == a && key == other))
            .collect();
        let rank: Vec<usize> = stale
            .iter()
            .map(|&i| {
                closest(&net, key, NODES)
                    .iter()
                    .position(|&j| j == i)
                    .unwrap()
            })
            .collect();
        assert!(
            stale.is_empty(),
            "{key:?}: nodes {stale:?} (ranks {rank:?} by distance to the key) kept the old value"
        );
    }

    let everyone: Vec<usize> = (0..NODES).collect();
    let s = stale(&mut net, &everyone, own, &v2);
    assert!(
        s.is_empty(),
        "{} nodes missed the update: {:?}",
        s.len(),
        &s[..s.len().min(5)]
    );
    let rest: Vec<usize> = (0..NODES).filter(|&i| i != a).collect();
    let s = stale(&mut net, &rest, other, &w2);
    assert!(
        s.is_empty(),
        "{} nodes missed the update: {:?}",
        s.len(),
        &s[..s.len().min(5)]
    );
}

/// Reads (`find_value`) plant cached copies of the old value; after an update, every get
/// sees the new value once those copies have lived out their cache TTL.
fn update_after_reads(codec: Codec, seed: u64, at_once: bool) {
    let mut net = network(codec, seed);
    let config = net.node(0).config().clone();
    let key = "read a lot";
    let old = Value::from("old value");
    let new = Value::from("new value");
    let publisher = net.pick(NODES);
    put(&mut net, publisher, key, &old);
    let replicas = net.holders(key);
    let everyone: Vec<usize> = (0..NODES).collect();
    assert!(stale(&mut net, &everyone, key, &old).is_empty());
    // Majority gets place no cached copy; the reference's first-answer lookup does.
    let jobs: Vec<_> = everyone
        .iter()
        .map(|&g| (g, move |n: &mut Node, now| n.find_value(now, key).unwrap()))
        .collect();
    net.run_batch(jobs, 25);
    net.run_for(Duration::from_secs(2));
    let cached: Vec<usize> = net
        .holders(key)
        .into_iter()
        .filter(|i| !replicas.contains(i))
        .collect();
    assert!(!cached.is_empty(), "the gets left no cached copy");
    let longest_ttl = cached
        .iter()
        .map(|&i| {
            cache_ttl(
                &net.node(i).id(),
                &NodeId::for_key(key),
                config.key_expiry(),
                config.min_cache_ttl(),
            )
        })
        .max()
        .unwrap();

    put(&mut net, publisher, key, &new);
    if !at_once {
        net.run_for(longest_ttl + Duration::from_secs(1));
    }
    let s = stale(&mut net, &everyone, key, &new);
    assert!(
        s.is_empty(),
        "{} of {NODES} nodes read a stale value ({} cached copies of it, longest TTL {longest_ttl:?}): {:?}",
        s.len(),
        cached.len(),
        &s[..s.len().min(5)]
    );
}

#[test]
fn second_put_wins_json() {
    second_put_wins(Codec::Json, kad_tests::seed(0x0bd_0001));
}

#[test]
fn second_put_wins_bencode() {
    second_put_wins(Codec::Bencode, kad_tests::seed(0x0bd_0002));
}

#[test]
fn update_is_seen_once_cached_copies_expire_json() {
    update_after_reads(Codec::Json, kad_tests::seed(0x0bd_0003), false);
}

#[test]
fn update_is_seen_once_cached_copies_expire_bencode() {
    update_after_reads(Codec::Bencode, kad_tests::seed(0x0bd_0004), false);
}

/// The strong form: no stale read even right after the update. Fails today: a get that
/// meets a cached copy of the old value first returns it (the reference's "first value
/// wins"), and then caches it again on the next node along its path.
#[test]
#[ignore = "cached copies of an old value are served until their TTL ends (known limitation)"]
fn reads_between_the_puts_see_the_update_at_once() {
    update_after_reads(Codec::Json, kad_tests::seed(0x0bd_0005), true);
}

/// More seeds of the same: replica sets stay exact whoever puts (these failed while
/// unverified requesters got shortened peer lists).
#[test]
fn second_put_wins_more_seeds() {
    for seed in 2..6 {
        second_put_wins(Codec::Json, kad_tests::seed(seed));
    }
}
