//! Time: records expire on time, republishing keeps a live publisher's record alive for
//! 48 simulated hours (the reference's intervals), and cached copies expire by the dynamic
//! TTL.

use std::time::{Duration, Instant};

use kad_core::{cache_ttl, Codec, Config, NodeId, QueryResult, Value};
use kad_tests::{Link, SimNet};

const HOUR: Duration = Duration::from_secs(3600);
const MARGIN: Duration = Duration::from_secs(60);

/// Index of a node that is not among the `n` closest to `key`.
fn far_from(net: &mut SimNet, key: &str, n: usize) -> usize {
    let target = NodeId::for_key(key);
    let mut all: Vec<usize> = (0..net.len()).collect();
    all.sort_by_key(|&i| net.node(i).id().distance(&target));
    let far = &all[n..];
    far[net.pick(far.len())]
}

/// A get of `key` from a random live node that does not hold it.
fn get(net: &mut SimNet, key: &str) -> (usize, QueryResult) {
    let holders = net.holders(key);
    let candidates: Vec<usize> = net
        .live()
        .into_iter()
        .filter(|i| !holders.contains(i))
        .collect();
    let g = candidates[net.pick(candidates.len())];
    let (r, _) = net.run_query(g, |n, now| n.get(now, key).unwrap());
    (g, r)
}

fn two_days(codec: Codec, seed: u64) {
    const NODES: usize = 100;
    let config = Config::builder().codec(codec).build().unwrap();
    let k = config.k();
    let expiry = config.key_expiry();
    let mut net = SimNet::with_nodes(seed, Link::default(), NODES, &config);
    assert_eq!(net.bootstrap_all(25).joined, NODES);
    let start: Instant = net.now();

    // "orphan": its publisher dies at once, so nothing renews it.
    let orphan = "orphan";
    let p1 = far_from(&mut net, orphan, k + 5);
    let put_at = net.now();
    let (r, _) = net.run_query(p1, |n, now| {
        n.put(now, orphan, "nobody republishes me").unwrap()
    });
    assert!(
        matches!(r, QueryResult::Put(Ok(ref ok)) if ok.replicas == k),
        "{r:?}"
    );
    net.set_dead(p1, true);
    // Its replicas stored it within a second of `put_at`.
    let orphan_due = put_at + expiry;

    // "durable": its publisher stays up for the whole two days.
    let durable = "durable";
    let durable_value = Value::from(&b"republished daily"[..]);
    let p2 = far_from(&mut net, durable, k + 5);
    let (r, _) = net.run_query(p2, |n, now| {
        n.put(now, durable, durable_value.clone()).unwrap()
    });
    assert!(matches!(r, QueryResult::Put(Ok(_))), "{r:?}");

    let mut checkpoints: Vec<Instant> = (1..=48).map(|h| start + h * HOUR).collect();
    checkpoints.extend([orphan_due - MARGIN, orphan_due + MARGIN]);
    checkpoints.sort();
    for t in checkpoints {
        net.run_until_time(t);
        let hours = (t - start).as_secs_f64() / 3600.0;
        let orphans = net.holders(orphan).len();
        let durables = net.holders(durable).len();
        if t < orphan_due {
            assert!(
                orphans >= k / 2,
                "{hours:.2} h: only {orphans} nodes hold {orphan:?}"
            );
        } else {
            assert_eq!(orphans, 0, "{hours:.2} h: {orphan:?} outlived its expiry");
        }
        assert!(
            durables >= k / 2,
            "{hours:.2} h: only {durables} nodes hold {durable:?}, whose publisher is alive"
        );
    }

    // At 48 h the durable record is found from anywhere; the orphan from nowhere.
    let (_, r) = get(&mut net, durable);
    assert_eq!(r, QueryResult::Get(Ok(Some(durable_value))));
    let (_, r) = get(&mut net, orphan);
    assert_eq!(r, QueryResult::Get(Ok(None)));
    let expired: u64 = net.nodes().map(|n| n.stats().records_expired).sum();
    assert!(expired >= k as u64, "{expired} records expired");
}

/// Lookups (`find_value`) leave cached copies on the closest node they asked that lacked the value; each
/// lives exactly `cache_ttl(holder, key)`. In a small network the first node asked is
/// usually a replica and nothing is cached, hence 400 nodes.
fn cached_copies_expire(codec: Codec, seed: u64) {
    const NODES: usize = 400;
    // A cached copy's floor cut from 600 s to 60 s, so that the distance decides.
    let config = Config::builder()
        .codec(codec)
        .min_cache_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut net = SimNet::with_nodes(seed, Link::default(), NODES, &config);
    net.bootstrap_all(100);
    let key = "popular";
    let value = Value::from("read me");
    let p = net.pick(NODES);
    let (r, _) = net.run_query(p, |n, now| n.put(now, key, value.clone()).unwrap());
    assert!(matches!(r, QueryResult::Put(Ok(_))));

    let mut copies: Vec<(usize, Instant, Duration)> = Vec::new();
    for _ in 0..200 {
        if copies.len() == 5 {
            break;
        }
        let before = net.holders(key);
        // find_value, the reference's first-answer lookup, places the copy (a majority
        // get does not); the holder keeps it once its closest peers confirm the value.
        let candidates: Vec<usize> = net
            .live()
            .into_iter()
            .filter(|i| !before.contains(i))
            .collect();
        let g = candidates[net.pick(candidates.len())];
        let (r, _) = net.run_query(g, |n, now| n.find_value(now, key).unwrap());
        let found = match r {
            QueryResult::FindValue(Ok(ok)) => ok.value,
            other => panic!("find_value by {g}: {other:?}"),
        };
        assert_eq!(found, Some(value.clone()), "find_value by {g}");
        // The copy is sent as the get finishes: see whether one lands.
        if !net.run_until(Duration::from_secs(1), |net| {
            net.holders(key).len() > before.len()
        }) {
            continue;
        }
        let c = net
            .holders(key)
            .into_iter()
            .find(|i| !before.contains(i))
            .unwrap();
        let ttl = cache_ttl(
            &net.node(c).id(),
            &NodeId::for_key(key),
            config.key_expiry(),
            config.min_cache_ttl(),
        );
        copies.push((c, net.now(), ttl));
    }
    println!(
        "{codec}: cached copies (node, TTL): {:?}",
        copies.iter().map(|c| (c.0, c.2)).collect::<Vec<_>>()
    );
    assert!(copies.len() >= 3, "only {} cached copies", copies.len());
    assert!(
        copies.iter().any(|c| c.2 > config.min_cache_ttl()),
        "every TTL was the floor"
    );
    let mut deadlines: Vec<(Instant, usize)> =
        copies.iter().map(|&(c, at, ttl)| (at + ttl, c)).collect();
    deadlines.sort();
    for (due, c) in deadlines {
        net.run_until_time(due - Duration::from_millis(1));
        assert_eq!(
            net.node(c).get_local(net.now(), key),
            Some(value.clone()),
            "node {c} lost its copy early"
        );
        net.run_until_time(due);
        assert_eq!(
            net.node(c).get_local(net.now(), key),
            None,
            "node {c}'s copy outlived its TTL"
        );
    }
}

#[test]
fn two_days_json() {
    two_days(Codec::Json, kad_tests::seed(0x48_0001));
}

#[test]
fn two_days_bencode() {
    two_days(Codec::Bencode, kad_tests::seed(0x48_0002));
}

#[test]
fn cached_copies_expire_json() {
    cached_copies_expire(Codec::Json, kad_tests::seed(0x48_0003));
}

#[test]
fn cached_copies_expire_bencode() {
    cached_copies_expire(Codec::Bencode, kad_tests::seed(0x48_0004));
}
