//! Signed records: only the key's owner writes it, the highest sequence wins, and readers
//! get the newest version even when some replicas serve an old one or junk.

use kad_core::{
    signed_key, AcceptAll, Config, Keypair, Node, NodeId, Origin, PutError, QueryResult,
    SignedRecord, SignedRecords, Validator, Value, Verdict,
};
use kad_tests::{Link, SimNet};

fn keypair() -> Keypair {
    Keypair::from_secret([42; 32])
}

fn sign(seq: u64, cas: Option<u64>, payload: &str) -> Value {
    SignedRecord::sign(&keypair(), b"salt", seq, cas, Value::from(payload)).unwrap()
}

fn key() -> String {
    signed_key(&keypair().public_key(), b"salt")
}

/// The seq-2 record with one payload byte changed: its signature no longer matches.
fn forged() -> Value {
    let mut bytes: Vec<u8> = sign(2, None, "two").into();
    let n = bytes.len();
    bytes[n - 65] ^= 1;
    Value::from(bytes)
}

/// The payload of a get's value, if it is a valid signed record.
fn payload(r: &QueryResult) -> Option<Value> {
    match r {
        QueryResult::Get(Ok(Some(v))) => SignedRecord::open(v).ok().map(|r| r.value),
        _ => None,
    }
}

#[test]
fn a_node_refuses_forged_replayed_cas_mismatched_and_unsigned_values() {
    #[allow(clippy::disallowed_methods)] // a base instant; the node never reads the clock
    let now = std::time::Instant::now();
    let mut n = Node::new(Config::default(), NodeId::for_key("n"), [1; 32], now);
    let kp = keypair();
    n.put_signed(now, &kp, b"salt", "two", 2, None).unwrap();
    let refused = [
        ("forged", forged()),
        ("replayed older", sign(1, None, "one")),
        ("same seq, other bytes", sign(2, None, "deux")),
        ("cas mismatch", sign(3, Some(1), "three")),
        ("unsigned", Value::from("junk")),
    ];
    for (what, v) in refused {
        assert_eq!(n.put(now, &key(), v), Err(PutError::Rejected), "{what}");
    }
    assert_eq!(
        n.put_signed(now, &kp, b"salt", "one", 1, None),
        Err(PutError::Rejected)
    );
    assert_eq!(n.get_local(now, &key()), Some(sign(2, None, "two")));
    n.put_signed(now, &kp, b"salt", "three", 3, Some(2))
        .unwrap();
    assert_eq!(n.get_local(now, &key()), Some(sign(3, Some(2), "three")));
}

/// The same refusals over the network: a node that accepts anything pushes each bad value
/// with `set`; no kad replica stores it or answers, and they all keep the seq-2 record.
#[test]
fn replicas_refuse_bad_sets_from_the_network() {
    let mut net = SimNet::with_nodes(0x516, Link::default(), 60, &Config::default());
    assert_eq!(net.bootstrap_all(30).joined, 60);
    let (owner, pusher) = (0, 1);
    let (r, _) = net.run_query(owner, |n, now| {
        n.put_signed(now, &keypair(), b"salt", "two", 2, None)
            .unwrap()
    });
    assert!(matches!(r, QueryResult::Put(Ok(_))), "{r:?}");
    net.with_node(pusher, |n, _| n.set_validator(AcceptAll));
    let before: u64 = net.nodes().map(|n| n.stats().records_rejected).sum();
    let bad = [
        ("forged", forged()),
        ("replayed older", sign(1, None, "one")),
        ("cas mismatch", sign(3, Some(1), "three")),
        ("unsigned", Value::from("junk")),
    ];
    for (what, v) in &bad {
        let (r, _) = net.run_query(pusher, |n, now| n.put(now, &key(), v.clone()).unwrap());
        assert!(matches!(r, QueryResult::Put(Err(_))), "{what}: {r:?}");
    }
    let holders: Vec<usize> = net.holders(&key());
    assert!(holders.len() >= 10, "{holders:?}");
    for h in holders.into_iter().filter(|&h| h != pusher) {
        let now = net.now();
        assert_eq!(
            net.node(h).get_local(now, &key()),
            Some(sign(2, None, "two"))
        );
    }
    let after: u64 = net.nodes().map(|n| n.stats().records_rejected).sum();
    assert!(after - before >= 4 * 10, "{before} -> {after}");
}

/// An attacker's store that keeps serving the old valid version: it takes seq 1 and
/// nothing else.
struct Stale;

impl Validator for Stale {
    fn validate(&mut self, _key: &str, value: &Value, _origin: Origin) -> Verdict {
        match SignedRecord::open(value) {
            Ok(r) if r.seq == 1 => Verdict::Accept,
            _ => Verdict::Reject,
        }
    }
}

/// An attacker's store that serves junk: it takes anything but a newer valid version.
struct Junk;

impl Validator for Junk {
    fn validate(&mut self, _key: &str, value: &Value, _origin: Origin) -> Verdict {
        match SignedRecord::open(value) {
            Ok(r) if r.seq >= 2 => Verdict::Reject,
            _ => Verdict::Accept,
        }
    }
}

/// 500 nodes, one in five an attacker: half keep serving seq 1, half serve junk. The owner
/// writes seq 1, then seq 2; every honest reader's `get_signed` returns seq 2, and an
/// honest replica that missed seq 2 is brought up to date by the readers.
#[test]
fn readers_get_the_newest_version_when_a_fifth_of_the_replicas_lie() {
    const NODES: usize = 500;
    let mut net = SimNet::with_nodes(0x5167, Link::default(), NODES, &Config::default());
    assert_eq!(net.bootstrap_all(50).joined, NODES);
    let attacker = |i: usize| i % 5 == 4;
    let junk = |i: usize| i % 10 == 9;
    for i in (0..NODES).filter(|&i| attacker(i)) {
        if junk(i) {
            net.with_node(i, |n, _| n.set_validator(Junk));
        } else {
            net.with_node(i, |n, _| n.set_validator(Stale));
        }
    }
    let target = NodeId::for_key(&key());
    let mut closest: Vec<usize> = (0..NODES).collect();
    closest.sort_by_key(|&i| net.node(i).id().distance(&target));
    closest.truncate(20);
    let liars = closest.iter().filter(|&&i| attacker(i)).count();
    let junkers = closest.iter().filter(|&&i| junk(i)).count();
    assert!(
        liars - junkers >= 1 && junkers >= 1,
        "{liars} attackers among the 20 closest, {junkers} of them junk"
    );
    // One honest replica misses seq 2 (it refuses it while the owner writes).
    let behind = *closest.iter().find(|&&i| !attacker(i) && i != 0).unwrap();

    let owner = 0;
    let (r, _) = net.run_query(owner, |n, now| {
        n.put_signed(now, &keypair(), b"salt", "one", 1, None)
            .unwrap()
    });
    assert!(matches!(r, QueryResult::Put(Ok(_))), "{r:?}");
    for i in (0..NODES).filter(|&i| junk(i)) {
        let _ = net.run_query(i, |n, now| n.put(now, &key(), "junk").unwrap());
    }
    net.with_node(behind, |n, _| n.set_validator(Stale));
    let (r, _) = net.run_query(owner, |n, now| {
        n.put_signed(now, &keypair(), b"salt", "two", 2, None)
            .unwrap()
    });
    assert!(matches!(r, QueryResult::Put(Ok(_))), "{r:?}");
    net.with_node(behind, |n, _| {
        n.set_validator(SignedRecords::new(AcceptAll))
    });
    let now = net.now();
    assert_eq!(
        net.node(behind).get_local(now, &key()),
        Some(sign(1, None, "one"))
    );

    let readers: Vec<usize> = (1..NODES)
        .filter(|&i| !attacker(i) && i != behind)
        .collect();
    let jobs: Vec<_> = readers
        .iter()
        .map(|&r| {
            (r, |n: &mut Node, now| {
                n.get_signed(now, &keypair().public_key(), b"salt").unwrap()
            })
        })
        .collect();
    let results = net.run_batch(jobs, 25);
    let wrong: Vec<_> = results
        .iter()
        .filter(|f| payload(&f.result) != Some(Value::from("two")))
        .map(|f| (f.node, f.result.clone()))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} readers: {wrong:?}",
        wrong.len(),
        readers.len()
    );
    // The readers pushed seq 2 to the honest replica that held seq 1.
    let now = net.now();
    assert_eq!(
        net.node(behind).get_local(now, &key()),
        Some(sign(2, None, "two"))
    );

    // Without collecting (the first value a lookup meets wins), readers are misled.
    let jobs: Vec<_> = readers
        .iter()
        .map(|&r| (r, |n: &mut Node, now| n.find_value(now, &key()).unwrap()))
        .collect();
    let misled = net
        .run_batch(jobs, 25)
        .iter()
        .filter(|f| match &f.result {
            QueryResult::FindValue(Ok(ok)) => ok.value != Some(sign(2, None, "two")),
            _ => true,
        })
        .count();
    println!(
        "{liars} attackers among the 20 closest ({junkers} junk); \
         {misled} of {} first-value lookups misled",
        readers.len()
    );
    assert!(
        misled > 0,
        "the attackers misled no first-value lookup: the test has no teeth"
    );
}

/// Signing is deterministic (RFC 8032) and nothing in the validator reads a clock: the
/// same seed gives the same network, byte for byte.
#[test]
fn signed_scenario_replays_exactly() {
    let run = || {
        let mut net = SimNet::with_nodes(0x5e0, Link::default(), 40, &Config::default());
        net.bootstrap_all(20);
        for seq in 1..=3 {
            let _ = net.run_query(seq as usize, |n, now| {
                n.put_signed(now, &keypair(), b"salt", "v", seq, None)
                    .unwrap()
            });
        }
        let (r, _) = net.run_query(30, |n, now| {
            n.get_signed(now, &keypair().public_key(), b"salt").unwrap()
        });
        (net.trace_hash(), r)
    };
    let (a, ra) = run();
    let (b, rb) = run();
    assert_eq!(a, b, "trace hashes differ");
    assert_eq!(ra, rb);
    assert_eq!(
        payload(&ra).and_then(|_| match &ra {
            QueryResult::Get(Ok(Some(v))) => SignedRecord::open(v).ok().map(|r| r.seq),
            _ => None,
        }),
        Some(3)
    );
}
