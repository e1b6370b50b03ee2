//! The defences of issue 14 (a node believes only what a stranger can prove), one test per
//! item of the issue, each through the public API and the wire, each written so that it
//! fails against the code before the defences (a5f1351) and passes after:
//!
//! 1. a request claiming a known peer's id from attacker-owned addresses evicts nothing;
//! 2. such claims do not keep a dead entry alive;
//! 3. forged requests from a proven address are not amplified towards it;
//! 4. a spoofed stranger is neither put in the table nor served to others;
//! 5. one IP's junk `set`s fill its quota, not the store;
//! 6. spoofed requests that hold replies do not starve an honest newcomer's `get`;
//! 7. the smaller ones: a remote `set` does not make our published key someone else's, a
//!    cached copy does not answer our own `get`, a spoofed `check_store` does not postpone
//!    our restore, one liar host gets at most 2 of its ids into a lookup's result, and
//!    an IPv6 /48 counts as one IP against `max_peers_per_ip`.
//!
//! The attackers write their datagrams themselves (module `forge`) and inject them with
//! [`SimNet::inject`]; the addresses they own are scripted with [`SimNet::intercept`].
//! Every test uses default limits (or setters that exist before the defences too), so the
//! same file compiles against the old code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kad_core::{Codec, Config, NodeId, Peer, QueryResult, RecordKind, Value};
use kad_tests::{wire, Intercept, Link, SimNet};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use kad_tests::forge::{self, id_at_level, txn_hex, txn_of, W};

/// The wire format of every node and every forged datagram here.
const CODEC: Codec = Codec::Json;

/// The scenario's own random stream `stream` (ids, transaction ids of forged datagrams).
fn local_rng(seed: u64, stream: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed ^ stream.wrapping_mul(0x2545_f491_4f6c_dd1d))
}

/// Answers a ping at `to` with a pong claiming `id` (the attacker owns its addresses).
fn pong(id: &NodeId, to: SocketAddr, from: SocketAddr, ping: &[u8]) -> Intercept {
    let reply = forge::message(CODEC, "pong", &txn_of(ping), (id, to), vec![]);
    Intercept::Answer(vec![(to, from, reply)])
}

/// Does `payload` name `id` (as the 40 hex digits every format writes ids in)?
fn names(payload: &[u8], id: &NodeId) -> bool {
    let hex = forge::hex(id);
    payload.windows(hex.len()).any(|w| w == hex.as_bytes())
}

/// An address owned by an attacker that never answers anything.
fn sink(net: &mut SimNet, ip: IpAddr) {
    net.intercept(ip, |_, _, _, _| Intercept::Answer(vec![]));
}

/// A network of `n` default nodes (or `config`), all joined; the seed can be replayed
/// with `KAD_SIM_SEED`.
fn joined(n: usize, config: &Config, seed: u64) -> SimNet {
    let mut net = SimNet::with_nodes(kad_tests::seed(seed), Link::default(), n, config);
    let boot = net.bootstrap_all(8);
    assert_eq!(boot.joined, n, "seed {:#x}: {boot:?}", net.seed());
    net
}

/// A forged request of type `kind` from `src` claiming `id`, with `fields`.
fn request(
    rng: &mut ChaCha12Rng,
    kind: &str,
    id: &NodeId,
    src: SocketAddr,
    fields: Vec<(&'static str, W)>,
) -> Vec<u8> {
    forge::message(CODEC, kind, &txn_hex(rng.next_u64()), (id, src), fields)
}

fn in_table(net: &SimNet, node: usize, id: &NodeId) -> bool {
    net.node(node).peers().iter().any(|p| p.id == *id)
}

/// A scripted host that asks a node for its `find_node` answer and keeps it; it answers
/// pings, so it can prove its address like any honest newcomer.
struct Probe {
    addr: SocketAddr,
    id: NodeId,
    answers: Arc<Mutex<Vec<Vec<u8>>>>,
    rng: ChaCha12Rng,
}

impl Probe {
    fn new(net: &mut SimNet, addr: SocketAddr, seed: u64) -> Probe {
        let mut rng = local_rng(seed, 77);
        let id = NodeId::random(&mut rng);
        let answers = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&answers);
        net.intercept(addr.ip(), move |_, from, to, payload| {
            match wire::message_type(payload) {
                Some("ping") => return pong(&id, to, from, payload),
                Some("find_node_res") => log.lock().unwrap().push(payload.to_vec()),
                _ => {}
            }
            Intercept::Answer(vec![])
        });
        Probe {
            addr,
            id,
            answers,
            rng,
        }
    }

    /// The `find_node_res` datagram `node` sends the probe for `target`.
    fn find_node(&mut self, net: &mut SimNet, node: SocketAddr, target: &NodeId) -> Vec<u8> {
        self.answers.lock().unwrap().clear();
        let fields = vec![("target", W::S(forge::hex(target)))];
        let msg = request(&mut self.rng, "find_node", &self.id, self.addr, fields);
        net.inject(Duration::ZERO, self.addr, node, msg);
        let answers = Arc::clone(&self.answers);
        let got = net.run_until(Duration::from_secs(10), |_| {
            !answers.lock().unwrap().is_empty()
        });
        assert!(got, "no find_node answer from {node} to the probe");
        let answer = self.answers.lock().unwrap().pop();
        answer.unwrap_or_default()
    }
}

// ---- 1. eviction by claim ----

/// Ten requests claim an honest peer X's id from ten ports the attacker owns and never
/// answers from (find_node, and find_value of a missing key: both draw a large reply, so
/// a verification ping). Before the defences each unanswered ping counted against X, and
/// X, alive the whole time, was evicted; now it counts against the attacker's address.
#[test]
fn claims_of_a_peers_id_from_other_addresses_do_not_evict_it() {
    let seed = 0x14_01;
    let mut net = joined(14, &Config::default(), seed);
    let node = 0;
    let n_addr = net.addr(node);
    let x = net.node(node).peers()[0];
    let attacker = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66));
    sink(&mut net, attacker);
    let mut rng = local_rng(seed, 1);
    for i in 0..10u16 {
        let src = SocketAddr::new(attacker, 6000 + i);
        let (kind, field) = if i % 2 == 0 {
            (
                "find_node",
                ("target", W::S(forge::hex(&NodeId::random(&mut rng)))),
            )
        } else {
            ("find_value", ("key", W::S(format!("missing {i}"))))
        };
        let msg = request(&mut rng, kind, &x.id, src, vec![field]);
        net.inject(Duration::from_millis(100 * u64::from(i)), src, n_addr, msg);
    }
    net.run_for(Duration::from_secs(30));
    let table = net.node(node).peers();
    assert!(
        table.contains(&x),
        "X {x:?} was evicted from node {node}'s table by 10 claims of its id from \
         {attacker} ({} peers left, stats {:?})",
        table.len(),
        net.node(node).stats()
    );
    let mut probe = Probe::new(&mut net, "198.18.0.1:5000".parse().unwrap(), seed);
    let answer = probe.find_node(&mut net, n_addr, &x.id);
    assert!(
        names(&answer, &x.id),
        "X is missing from node {node}'s find_node answer: {}",
        String::from_utf8_lossy(&answer)
    );
}

// ---- 2. refresh by claim ----

/// X dies. Every minute, the node looks X up (so its requests to X fail), and, when
/// `claims`, just before, a ping claiming X's id comes from an attacker's address. Returns
/// whether X is still in the node's table after 8 minutes.
fn dead_peer_kept(seed: u64, claims: bool) -> bool {
    let mut net = joined(14, &Config::default(), seed);
    let node = 0;
    let n_addr = net.addr(node);
    let x = net.node(node).peers()[0];
    let xi = net.index_of(x.addr).expect("X is a node");
    net.set_dead(xi, true);
    let attacker = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 77));
    sink(&mut net, attacker);
    let src = SocketAddr::new(attacker, 6100);
    let mut rng = local_rng(seed, 2);
    let t0 = net.now();
    for minute in 1..=8u32 {
        if claims {
            let msg = request(&mut rng, "ping", &x.id, src, vec![]);
            net.inject(Duration::ZERO, src, n_addr, msg);
        }
        net.run_for(Duration::from_secs(1));
        let q = net.start(node, |n, now| n.find_node(now, x.id));
        net.wait(node, q);
        net.run_until_time(t0 + Duration::from_secs(60) * minute);
    }
    in_table(&net, node, &x.id)
}

#[test]
fn claims_of_a_dead_peers_id_do_not_keep_it() {
    let seed = 0x14_02;
    assert!(
        !dead_peer_kept(seed, false),
        "control: a dead peer that nobody claims is evicted by the node's failed lookups"
    );
    assert!(
        !dead_peer_kept(seed, true),
        "a ping a minute claiming the dead peer's id from another address kept it in the table"
    );
}

// ---- 3. reflection through a proven address ----

/// R holds a 32 KiB value; V, an honest node, asked R once (a ping) and is proven at R.
/// Then 1,000 `find_value`s forged from V's address reach R. What R sends V stays within
/// `unverified_reply_factor` (4) times the forged bytes plus the reply allowance (64 KiB);
/// before the defences a proven address got every value: about 200 times the bytes.
#[test]
fn forged_requests_from_a_proven_address_are_not_amplified() {
    let seed = 0x14_03;
    let mut net = joined(10, &Config::default(), seed);
    let (r, v) = (1, 2);
    let (r_addr, v_addr, v_id) = (net.addr(r), net.addr(v), net.node(v).id());
    let key = "a large value";
    let value = "v".repeat(32 * 1024);
    let q = net.start(r, |n, now| n.put(now, key, value.as_str()).unwrap());
    let put = net.wait(r, q);
    assert!(matches!(put.result, QueryResult::Put(Ok(_))), "{put:?}");
    let q = net.start(v, |n, now| n.ping(now, r_addr));
    let ping = net.wait(v, q);
    assert!(matches!(ping.result, QueryResult::Ping(Ok(_))), "{ping:?}");
    net.run_for(Duration::from_secs(5));

    let to_v = Arc::new(Mutex::new(0usize));
    let count = Arc::clone(&to_v);
    net.intercept(v_addr.ip(), move |_, from, _, payload| {
        if from == r_addr {
            *count.lock().unwrap() += payload.len();
        }
        Intercept::Pass
    });
    let mut rng = local_rng(seed, 3);
    let mut spoofed = 0;
    for i in 0..1000u64 {
        let msg = request(
            &mut rng,
            "find_value",
            &v_id,
            v_addr,
            vec![("key", W::S(key.into()))],
        );
        spoofed += msg.len();
        net.inject(Duration::from_millis(i), v_addr, r_addr, msg);
    }
    net.run_for(Duration::from_secs(30));
    let got = *to_v.lock().unwrap();
    let bound = 4 * spoofed + 64 * 1024;
    assert!(
        got <= bound,
        "R sent V {got} bytes for {spoofed} forged bytes ({:.0}x; bound {bound})",
        got as f64 / spoofed as f64
    );
}

/// V is proven at R; then 2,000 `find_node`s forged from V's address reach R, a
/// millisecond apart, each asking for more peers than four times its bytes can carry.
/// Once V's allowance is spent, every reply is shortened to fit four times its request,
/// and filled to within one entry of it (R knows the reply is shortened before it encodes
/// it, and cuts the list by exact entry lengths).
#[test]
fn shortened_replies_fill_their_budget_and_never_pass_it() {
    let seed = 0x14_05;
    let mut net = joined(24, &Config::default(), seed);
    let (r, v) = (1, 2);
    let (r_addr, v_addr, v_id) = (net.addr(r), net.addr(v), net.node(v).id());
    let q = net.start(v, |n, now| n.ping(now, r_addr));
    let ping = net.wait(v, q);
    assert!(matches!(ping.result, QueryResult::Ping(Ok(_))), "{ping:?}");
    net.run_for(Duration::from_secs(5));

    let sizes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sizes);
    net.intercept(v_addr.ip(), move |_, from, _, payload| {
        if from == r_addr && payload.windows(13).any(|w| w == b"find_node_res") {
            seen.lock().unwrap().push(payload.len());
        }
        Intercept::Pass
    });
    let mut rng = local_rng(seed, 5);
    let mut len = 0;
    for i in 0..2000u64 {
        let target = NodeId::random(&mut rng);
        let fields = vec![("target", W::S(forge::hex(&target)))];
        let msg = request(&mut rng, "find_node", &v_id, v_addr, fields);
        assert!(
            len == 0 || len == msg.len(),
            "the forged requests differ in length"
        );
        len = msg.len();
        net.inject(Duration::from_millis(i), v_addr, r_addr, msg);
    }
    net.run_for(Duration::from_secs(10));
    let budget = 4 * len;
    let sizes = sizes.lock().unwrap();
    let shortened: Vec<usize> = sizes.iter().copied().filter(|&n| n <= budget).collect();
    assert!(
        shortened.len() >= 1500,
        "{} of {} replies fit {budget} bytes: the allowance (64 KiB) should cover a few dozen",
        shortened.len(),
        sizes.len()
    );
    // An IPv4 entry takes at most 91 bytes (`PEER_BYTES`' note).
    let short = shortened.iter().filter(|&&n| n + 91 <= budget).count();
    assert_eq!(
        short, 0,
        "{short} shortened replies left room for another entry (budget {budget})"
    );
    let total: usize = sizes.iter().sum();
    assert!(
        total <= 2000 * budget + 64 * 1024,
        "R sent V {total} bytes for 2000 forged requests of {len}"
    );
}

// ---- 4. unverified entries served to others ----

/// A request forged from a fresh address, where nothing answers, claiming a fresh id: the
/// id never enters the node's table nor its `find_node` answers. Before the defences it
/// was in both until its verification ping timed out.
#[test]
fn a_spoofed_stranger_is_neither_tabled_nor_served() {
    let seed = 0x14_04;
    let mut net = joined(10, &Config::default(), seed);
    let node = 0;
    let n_addr = net.addr(node);
    let src: SocketAddr = "198.51.100.23:7000".parse().unwrap();
    sink(&mut net, src.ip());
    let mut rng = local_rng(seed, 4);
    let f = NodeId::random(&mut rng);
    let fields = vec![("target", W::S(forge::hex(&f)))];
    let msg = request(&mut rng, "find_node", &f, src, fields);
    net.inject(Duration::ZERO, src, n_addr, msg);
    net.run_for(Duration::from_millis(200));
    assert!(
        !in_table(&net, node, &f),
        "the spoofed id is in the node's table"
    );
    let mut probe = Probe::new(&mut net, "198.18.0.4:5000".parse().unwrap(), seed);
    let answer = probe.find_node(&mut net, n_addr, &f);
    assert!(
        !names(&answer, &f),
        "the spoofed id is served in the node's find_node answer: {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(names(&answer, &net.node(1).id()) || names(&answer, &net.node(2).id()));
    net.run_for(Duration::from_secs(60));
    assert!(!in_table(&net, node, &f), "the spoofed id entered later");
}

// ---- 5. store exhaustion ----

/// From one real IP that answers pings (an honest node's own address), 3,000 junk `set`s
/// reach a node whose store holds at most 2,000 records; then an honest node puts a new
/// key. Before the defences the junk filled the store and the honest key was refused;
/// now one IP holds at most 1 % of it.
#[test]
fn junk_sets_from_one_ip_do_not_lock_out_new_keys() {
    let seed = 0x14_05;
    let config = Config::builder().max_records(2000).build().unwrap();
    let mut net = joined(10, &config, seed);
    let (node, flooder, honest) = (0, 3, 5);
    let (n_addr, a_addr, a_id) = (net.addr(node), net.addr(flooder), net.node(flooder).id());
    let mut rng = local_rng(seed, 5);
    for i in 0..3000u64 {
        let fields = vec![
            ("key", W::S(format!("junk {i}"))),
            ("value", W::S(format!("x{i}"))),
        ];
        let msg = request(&mut rng, "set", &a_id, a_addr, fields);
        net.inject(Duration::from_millis(i), a_addr, n_addr, msg);
    }
    net.run_for(Duration::from_secs(10));
    let junk = net.node(node).record_count();
    let q = net.start(honest, |n, now| {
        n.put(now, "honest key", "honest value").unwrap()
    });
    let put = net.wait(honest, q);
    assert!(matches!(put.result, QueryResult::Put(Ok(_))), "{put:?}");
    assert_eq!(
        net.node(node).get_local(net.now(), "honest key"),
        Some(Value::from("honest value")),
        "the honest key was not stored after {junk} junk records from {a_addr}"
    );
}

// ---- 6. held-reply exhaustion ----

/// For 16 s, a holder C of a 32 KiB value gets bursts of 400 `find_value`s every 2 s, each forged
/// from a fresh address where nothing answers, claiming an id in one of C's 9 farthest
/// buckets (each holds a reply and draws a ping). 6 s in, an honest newcomer whose id
/// falls in C's farthest bucket pings C (its only contact: a node that knows one address)
/// and gets the value through C. Before the defences the held replies were full, the
/// forged senders filled C's buckets (so the newcomer was never verified), and the value
/// was dropped: the get found nothing.
#[test]
fn spoofed_holds_do_not_starve_an_honest_get() {
    let seed = 0x14_06;
    let config = Config::default();
    let mut net = joined(10, &config, seed);
    let key = "large";
    let value = "w".repeat(32 * 1024);
    let q = net.start(1, |n, now| n.put(now, key, value.as_str()).unwrap());
    let put = net.wait(1, q);
    assert!(matches!(put.result, QueryResult::Put(Ok(_))), "{put:?}");
    let c = net.holders(key)[0];
    let (c_addr, c_id) = (net.addr(c), net.node(c).id());
    let mut rng = local_rng(seed, 6);
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    for fresh in 0..8 * 400u32 {
        // Bursts of 400 every 2 s (and 5 ms: just after the last burst's pings timed out).
        let delay = Duration::from_millis(u64::from(fresh / 400) * 2005);
        let src = SocketAddr::from((Ipv4Addr::from(base + fresh), 9000));
        let id = id_at_level(&c_id, (fresh % 9) as usize, &mut rng);
        let msg = request(
            &mut rng,
            "find_value",
            &id,
            src,
            vec![("key", W::S(key.into()))],
        );
        net.inject(delay, src, c_addr, msg);
    }
    net.run_for(Duration::from_secs(6));
    let newcomer = net.add_node_with_id(config, id_at_level(&c_id, 0, &mut rng));
    let q = net.start(newcomer, |n, now| n.ping(now, c_addr));
    let ping = net.wait(newcomer, q);
    assert!(matches!(ping.result, QueryResult::Ping(Ok(_))), "{ping:?}");
    let q = net.start(newcomer, |n, now| n.get(now, key).unwrap());
    let got = net.wait(newcomer, q);
    let found = match &got.result {
        QueryResult::Get(Ok(Some(v))) => *v == Value::from(value.as_str()),
        _ => false,
    };
    let short = format!("{:?}", got.result);
    assert!(
        found,
        "the newcomer's get under the flood: {:.80} (C's stats {:?})",
        short,
        net.node(c).stats()
    );
}

// ---- 7. the smaller ones ----

/// Another node's `set` of a key we published (its own put of the key) leaves it a
/// replica: we do not republish its value as ours. Before: it stayed `Published`.
#[test]
fn a_remote_set_of_our_key_is_not_ours() {
    let seed = 0x14_71;
    let mut net = joined(10, &Config::default(), seed);
    let (node, other) = (0, 3);
    let q = net.start(node, |n, now| n.put(now, "mine", "ours").unwrap());
    net.wait(node, q);
    let q = net.start(other, |n, now| n.put(now, "mine", "theirs").unwrap());
    net.wait(other, q);
    net.run_for(Duration::from_secs(5));
    let snap = net.node(node).snapshot(net.now());
    let rec = snap.records.iter().find(|r| r.key == "mine").expect("held");
    assert_eq!(
        rec.value,
        Value::from("theirs"),
        "the remote set was not stored"
    );
    assert_ne!(
        rec.kind,
        RecordKind::Published,
        "another node's value of our key is republished as ours"
    );
}

/// A `set` forged with the publisher's address (a proven peer of every replica) changes
/// no replica's value: each asks that address for the key, and the publisher answers
/// with its own value. Before: every replica took the forged value.
#[test]
fn a_set_forged_from_the_publishers_address_changes_nothing() {
    let seed = 0x14_74;
    let mut net = joined(40, &Config::default(), seed);
    let (publisher, key) = (5, "k74");
    let q = net.start(publisher, |n, now| n.put(now, key, "honest").unwrap());
    net.wait(publisher, q);
    let holders = net.holders(key);
    assert!(holders.len() > 10, "{holders:?}");
    let (p_id, p_addr) = (net.node(publisher).id(), net.addr(publisher));
    let mut rng = local_rng(seed, 74);
    for &h in &holders {
        let fields = vec![("key", W::S(key.into())), ("value", W::S("forged".into()))];
        let msg = request(&mut rng, "set", &p_id, p_addr, fields);
        net.inject(Duration::ZERO, p_addr, net.addr(h), msg);
    }
    net.run_for(Duration::from_secs(10));
    let forged: Vec<usize> = holders
        .iter()
        .copied()
        .filter(|&h| net.node(h).get_local(net.now(), key) != Some(Value::from("honest")))
        .collect();
    assert_eq!(
        forged,
        Vec::<usize>::new(),
        "replicas that took the forged set"
    );
    let refused: u64 = holders
        .iter()
        .map(|&h| net.node(h).stats().updates_unconfirmed)
        .sum();
    assert!(refused > 0, "no replica asked the publisher");
}

/// Three liars among the k closest (they answer `find_value` with their own value)
/// are outvoted: every get returns the replicas' value. Before: a get took the first
/// value it heard, often a liar's.
#[test]
fn liars_among_the_replicas_are_outvoted() {
    let seed = 0x14_75;
    let mut net = joined(60, &Config::default(), seed);
    let key = "k75";
    let q = net.start(0, |n, now| n.put(now, key, "honest").unwrap());
    net.wait(0, q);
    let target = NodeId::for_key(key);
    let mut holders = net.holders(key);
    holders.sort_by_key(|&h| net.node(h).id().distance(&target));
    for &liar in holders.iter().filter(|&&h| h != 0).take(3) {
        let (id, addr) = (net.node(liar).id(), net.addr(liar));
        net.intercept(addr.ip(), move |_, from, to, payload| {
            if wire::message_type(payload) != Some("find_value") || wire::is_response(payload) {
                return Intercept::Pass;
            }
            let fields = vec![("value", W::S("forged".into()))];
            let reply = forge::message(
                CODEC,
                "find_value_res",
                &txn_of(payload),
                (&id, addr),
                fields,
            );
            Intercept::Answer(vec![(to, from, reply)])
        });
    }
    let getters: Vec<usize> = (0..60).filter(|i| !holders.contains(i)).take(12).collect();
    for &g in &getters {
        let q = net.start(g, |n, now| n.get(now, key).unwrap());
        let got = net.wait(g, q);
        assert_eq!(
            got.result,
            QueryResult::Get(Ok(Some(Value::from("honest")))),
            "getter {g}"
        );
    }
}

/// Node 1 puts `key` ("honest") in a 30-node network; then a proven peer of a node that
/// does not hold it sends that node a `set_cached` of `value`. Returns the network and
/// the node.
fn offer_cached(seed: u64, key: &str, value: &str) -> (SimNet, usize) {
    let mut net = joined(30, &Config::default(), seed);
    let q = net.start(1, |n, now| n.put(now, key, "honest").unwrap());
    net.wait(1, q);
    let holders = net.holders(key);
    let node = (0..30)
        .find(|i| !holders.contains(i))
        .expect("a node that does not hold the key");
    let other = net.node(node).peers()[0];
    let mut rng = local_rng(seed, 72);
    let fields = vec![
        ("key", W::S(key.into())),
        ("value", W::S(value.into())),
        ("target_id", W::S(forge::hex(&NodeId::for_key(key)))),
    ];
    let msg = request(&mut rng, "set_cached", &other.id, other.addr, fields);
    net.inject(Duration::ZERO, other.addr, net.addr(node), msg);
    net.run_for(Duration::from_secs(5));
    (net, node)
}

/// A proven peer's `set_cached` of junk for a key another node published is not kept
/// (the node's closest peers to the key, asked, hold another value), and our own `get`
/// returns the published value. Before (b1542e1): the junk was kept and served to every
/// lookup passing by; before that, our own get returned it.
#[test]
fn a_forged_cached_copy_is_neither_kept_nor_returned() {
    let key = "k72";
    let (mut net, node) = offer_cached(0x14_72, key, "junk");
    assert_eq!(
        net.node(node).get_local(net.now(), key),
        None,
        "the forged cached copy was kept"
    );
    assert!(net.node(node).stats().cached_unconfirmed > 0);
    let q = net.start(node, |n, now| n.get(now, key).unwrap());
    let got = net.wait(node, q);
    assert_eq!(
        got.result,
        QueryResult::Get(Ok(Some(Value::from("honest"))))
    );
}

/// A `set_cached` of the value the replicas hold is kept: the check costs an honest
/// cache placement nothing but three small requests.
#[test]
fn an_honest_cached_copy_is_kept() {
    let key = "k76";
    let (net, node) = offer_cached(0x14_76, key, "honest");
    assert_eq!(
        net.node(node).get_local(net.now(), key),
        Some(Value::from("honest"))
    );
    assert_eq!(net.node(node).stats().cached_confirmed, 1);
}

/// Two liars (one id each, on their own IPs, ids next to the key) join a node's table, so
/// that of its three closest proven peers to the key two hold a forged value and one the
/// published one; then a proven peer offers the forged value with `set_cached`. Two of
/// three agree, but one holds another value: the copy is not kept. Before: a majority of
/// the three was enough, and the forged copy was kept (and served).
#[test]
fn a_cached_copy_with_a_dissenting_holder_is_not_kept() {
    let seed = 0x14_78;
    let key = "k78";
    let mut net = joined(30, &Config::default(), seed);
    let q = net.start(1, |n, now| n.put(now, key, "honest").unwrap());
    net.wait(1, q);
    let holders = net.holders(key);
    let node = (0..30)
        .find(|i| !holders.contains(i))
        .expect("a node that does not hold the key");
    let n_addr = net.addr(node);
    let target = NodeId::for_key(key);
    let mut rng = local_rng(seed, 78);
    for i in 0..2u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 20 + i));
        let (id, addr) = (
            id_at_level(&target, 100 + usize::from(i), &mut rng),
            SocketAddr::new(ip, 6000),
        );
        net.intercept(ip, move |_, from, to, payload| {
            let reply = match wire::message_type(payload) {
                Some("ping") => return pong(&id, to, from, payload),
                Some("find_value") => forge::message(
                    CODEC,
                    "find_value_res",
                    &txn_of(payload),
                    (&id, to),
                    vec![("value", W::S("junk".into()))],
                ),
                _ => return Intercept::Answer(vec![]),
            };
            Intercept::Answer(vec![(to, from, reply)])
        });
        let msg = request(&mut rng, "ping", &id, addr, vec![]);
        net.inject(Duration::ZERO, addr, n_addr, msg);
    }
    net.run_for(Duration::from_secs(5));
    let closest = net.node(node).closest_peers(&target, 3);
    let liars = closest
        .iter()
        .filter(|p| matches!(p.addr.ip(), IpAddr::V4(ip) if ip.octets()[..3] == [203, 0, 113]))
        .count();
    assert_eq!(liars, 2, "the liars are not among the closest: {closest:?}");
    assert!(
        closest
            .iter()
            .any(|p| net.index_of(p.addr).is_some_and(|i| holders.contains(&i))),
        "no honest holder among the three closest: the test shows nothing"
    );
    let other = net
        .node(node)
        .peers()
        .into_iter()
        .find(|p| net.index_of(p.addr).is_some())
        .expect("an honest peer");
    let fields = vec![
        ("key", W::S(key.into())),
        ("value", W::S("junk".into())),
        ("target_id", W::S(forge::hex(&target))),
    ];
    let msg = request(&mut rng, "set_cached", &other.id, other.addr, fields);
    net.inject(Duration::ZERO, other.addr, n_addr, msg);
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        net.node(node).get_local(net.now(), key),
        None,
        "the forged copy two liars vouched for was kept"
    );
}

/// A `check_store` forged from an address that never answers does not postpone our
/// restore of the key (the snapshot's `republish_in` does not grow). Before: reset to an
/// hour.
#[test]
fn a_spoofed_check_store_does_not_postpone_our_restore() {
    let seed = 0x14_73;
    let mut net = joined(10, &Config::default(), seed);
    let node = 0;
    let key = "k73";
    let q = net.start(1, |n, now| n.put(now, key, "value").unwrap());
    net.wait(1, q);
    assert!(net.holders(key).contains(&node));
    net.run_for(Duration::from_secs(600));
    let republish_in = |net: &SimNet| {
        let snap = net.node(node).snapshot(net.now());
        let rec = snap.records.iter().find(|r| r.key == key).expect("held");
        assert_eq!(rec.kind, RecordKind::Replica);
        rec.republish_in.expect("a replica is restored")
    };
    let before = republish_in(&net);
    let src: SocketAddr = "198.51.100.40:7100".parse().unwrap();
    sink(&mut net, src.ip());
    let mut rng = local_rng(seed, 73);
    let id = NodeId::random(&mut rng);
    let fields = vec![("key", W::S(key.into())), ("size", W::I(5))];
    let msg = request(&mut rng, "check_store", &id, src, fields);
    net.inject(Duration::ZERO, src, net.addr(node), msg);
    net.run_for(Duration::from_secs(1));
    let after = republish_in(&net);
    assert!(
        after <= before,
        "restore postponed by a spoofed check_store: {before:?} -> {after:?}"
    );
}

/// A host at `ip` with `n` ids next to `target`, one a port from 5000 up: each answers a
/// ping with a pong, a `set` with `set_res`, and a lookup with the host's other ids (all
/// closer to `target` than any honest node).
fn many_ids_host(
    net: &mut SimNet,
    ip: IpAddr,
    n: u16,
    target: &NodeId,
    rng: &mut ChaCha12Rng,
) -> Vec<(NodeId, SocketAddr)> {
    let ids: Vec<(NodeId, SocketAddr)> = (0..n)
        .map(|i| {
            let id = id_at_level(target, 90 + usize::from(i), rng);
            (id, SocketAddr::new(ip, 5000 + i))
        })
        .collect();
    let script = ids.clone();
    net.intercept(ip, move |_, from, to, payload| {
        let Some(&(id, _)) = script.iter().find(|(_, a)| *a == to) else {
            return Intercept::Answer(vec![]);
        };
        let peers = || {
            let all = script[1..].iter().map(|(id, a)| forge::peer(id, *a));
            vec![("peers", W::L(all.collect()))]
        };
        let (kind, fields) = match wire::message_type(payload) {
            Some("ping") => return pong(&id, to, from, payload),
            Some("set") => ("set_res", vec![]),
            Some("find_node") => ("find_node_res", peers()),
            Some("find_value") => ("find_value_res", peers()),
            _ => return Intercept::Answer(vec![]),
        };
        let reply = forge::message(CODEC, kind, &txn_of(payload), (&id, to), fields);
        Intercept::Answer(vec![(to, from, reply)])
    });
    ids
}

/// One host (one IP, 21 ports, an id at each) is in the node's table; asked for a target,
/// it answers with 20 of its ids, all closer to the target than any honest node. The
/// lookup's result holds at most 2 of its ids. Before: the liar filled it.
#[test]
fn one_liar_host_gets_at_most_two_ids_into_a_lookup() {
    let seed = 0x14_74;
    let mut net = joined(20, &Config::default(), seed);
    let node = 0;
    let n_addr = net.addr(node);
    let mut rng = local_rng(seed, 74);
    let target = NodeId::random(&mut rng);
    let liar = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let ids = many_ids_host(&mut net, liar, 21, &target, &mut rng);
    let (first, first_addr) = ids[0];
    let msg = request(&mut rng, "ping", &first, first_addr, vec![]);
    net.inject(Duration::ZERO, first_addr, n_addr, msg);
    net.run_for(Duration::from_secs(5));
    assert!(
        in_table(&net, node, &first),
        "the liar's first id did not get into the table: the lookup may never reach it"
    );
    let q = net.start(node, |n, now| n.find_node(now, target));
    let done = net.wait(node, q);
    let QueryResult::FindNode(Ok(peers)) = done.result else {
        panic!("{:?}", done.result);
    };
    let from_liar = peers.iter().filter(|p| p.addr.ip() == liar).count();
    assert!(!peers.is_empty());
    assert!(
        from_liar <= 2,
        "{from_liar} of the lookup's {} peers are the liar's ids",
        peers.len()
    );
}

/// 20 hosts in one IPv6 /48, each in its own /64 with its own id, each proving its
/// address: at most `max_peers_per_ip` (10) enter the table. The per-bucket cap is set to
/// k, so that the table-wide cap is the one that binds (with the default per-bucket cap of
/// 2, the /48 gets 2 entries in a small network's one deep bucket), and the limit on ids per
/// IP is off (by default the /48 would be crowded at its third id and have none: see
/// `a_host_proving_many_ids_loses_its_standing`). Before: the caps keyed on the /64 and
/// more than 10 entered.
#[test]
fn an_ipv6_48_counts_as_one_ip_in_the_table() {
    let seed = 0x14_75;
    let config = Config::builder()
        .max_ids_per_ip(0)
        .max_peers_per_ip_per_bucket(20)
        .build()
        .unwrap();
    let mut net = joined(10, &config, seed);
    let node = 0;
    let n_addr = net.addr(node);
    let n_id = net.node(node).id();
    let mut rng = local_rng(seed, 75);
    let hosts: Vec<(NodeId, SocketAddr)> = (0..20u16)
        .map(|i| {
            let ip = Ipv6Addr::new(0x2001, 0xdb8, 1, i, 0, 0, 0, 1);
            (
                id_at_level(&n_id, usize::from(i), &mut rng),
                SocketAddr::new(ip.into(), 7000),
            )
        })
        .collect();
    for &(id, addr) in &hosts {
        net.intercept(addr.ip(), move |_, from, to, payload| {
            if wire::message_type(payload) == Some("ping") {
                return pong(&id, to, from, payload);
            }
            Intercept::Answer(vec![])
        });
        let msg = request(&mut rng, "ping", &id, addr, vec![]);
        net.inject(Duration::ZERO, addr, n_addr, msg);
    }
    net.run_for(Duration::from_secs(10));
    let in_48: Vec<Peer> = net
        .node(node)
        .peers()
        .into_iter()
        .filter(
            |p| matches!(p.addr.ip(), IpAddr::V6(ip) if ip.segments()[..3] == [0x2001, 0xdb8, 1]),
        )
        .collect();
    assert!(
        in_48.len() >= 2,
        "{} hosts of the /48 got in: the test shows nothing",
        in_48.len()
    );
    assert!(
        in_48.len() <= config.max_peers_per_ip(),
        "{} entries from one /48 (cap {})",
        in_48.len(),
        config.max_peers_per_ip()
    );
}

/// One host (one IP) proves three ids to a node, each answering the node's verification
/// ping from its own port: a host runs one node, or two behind a NAT, and this one is
/// placing ids where it likes. The node drops the IP's entries, takes none of its ids in
/// later, asks and counts none of them in its lookups, and refuses its stores. Before:
/// the IP held two entries (the per-bucket cap), two of its ids sat in every lookup's
/// result close to them, and its `set` was stored.
#[test]
fn a_host_proving_many_ids_loses_its_standing() {
    let seed = 0x14_76;
    let mut net = joined(20, &Config::default(), seed);
    let node = 0;
    let n_addr = net.addr(node);
    let mut rng = local_rng(seed, 76);
    let target = NodeId::random(&mut rng);
    let host = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    let ids = many_ids_host(&mut net, host, 8, &target, &mut rng);
    let from_host = |net: &SimNet| {
        net.node(node)
            .peers()
            .iter()
            .filter(|p| p.addr.ip() == host)
            .count()
    };
    // Two ids: a NAT with two nodes, welcome.
    for &(id, addr) in &ids[..2] {
        let msg = request(&mut rng, "ping", &id, addr, vec![]);
        net.inject(Duration::ZERO, addr, n_addr, msg);
    }
    net.run_for(Duration::from_secs(5));
    assert_eq!(from_host(&net), 2, "the first two ids are two honest nodes");
    assert_eq!(net.node(node).stats().ips_crowded, 0);
    // The third proves the IP is one host with many ids.
    let (id, addr) = ids[2];
    let msg = request(&mut rng, "ping", &id, addr, vec![]);
    net.inject(Duration::ZERO, addr, n_addr, msg);
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        from_host(&net),
        0,
        "entries of an IP that proved 3 ids ({} IPs crowded)",
        net.node(node).stats().ips_crowded
    );
    for &(id, addr) in &ids[3..] {
        let msg = request(&mut rng, "ping", &id, addr, vec![]);
        net.inject(Duration::ZERO, addr, n_addr, msg);
    }
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        from_host(&net),
        0,
        "a crowded IP's ids joined the table again"
    );
    // Lookups neither ask it nor count it, even when an honest peer names its ids.
    let q = net.start(node, |n, now| n.find_node(now, target));
    let QueryResult::FindNode(Ok(peers)) = net.wait(node, q).result else {
        panic!("find_node failed");
    };
    assert!(!peers.is_empty());
    assert!(
        peers.iter().all(|p| p.addr.ip() != host),
        "the crowded host's ids in a lookup's result: {peers:?}"
    );
    // Its stores are refused.
    let (id, addr) = ids[0];
    let fields = vec![("key", W::S("crowded".into())), ("value", W::S("x".into()))];
    let msg = request(&mut rng, "set", &id, addr, fields);
    net.inject(Duration::ZERO, addr, n_addr, msg);
    net.run_for(Duration::from_secs(5));
    let now = net.now();
    assert_eq!(net.node(node).get_local(now, "crowded"), None);
}

/// A peer in the table answers a lookup flagged as a client's (`ro`), as a Sybil would to
/// keep its ids out of the count of ids per IP (clients are not counted: one-shot tools
/// make a new id each run). The lookup takes no answer from a client: the peer is not in
/// its result, and the peers it names are never asked. Before: it was, and they were.
#[test]
fn a_lookup_takes_no_answer_flagged_as_a_clients() {
    let seed = 0x14_77;
    let mut net = joined(20, &Config::default(), seed);
    let node = 0;
    let n_addr = net.addr(node);
    let mut rng = local_rng(seed, 77);
    let target = NodeId::random(&mut rng);
    let host = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11));
    let (id, addr) = (
        id_at_level(&target, 100, &mut rng),
        SocketAddr::new(host, 6000),
    );
    let fake = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 12)), 6000);
    let fake_id = id_at_level(&target, 120, &mut rng);
    let asked_fake = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&asked_fake);
    net.intercept(fake.ip(), move |_, _, _, _| {
        *flag.lock().unwrap() = true;
        Intercept::Answer(vec![])
    });
    net.intercept(host, move |_, from, to, payload| {
        let reply = match wire::message_type(payload) {
            Some("ping") => return pong(&id, to, from, payload),
            Some("find_node") => forge::message(
                CODEC,
                "find_node_res",
                &txn_of(payload),
                (&id, to),
                vec![
                    ("peers", W::L(vec![forge::peer(&fake_id, fake)])),
                    ("ro", W::I(1)),
                ],
            ),
            _ => return Intercept::Answer(vec![]),
        };
        Intercept::Answer(vec![(to, from, reply)])
    });
    let msg = request(&mut rng, "ping", &id, addr, vec![]);
    net.inject(Duration::ZERO, addr, n_addr, msg);
    net.run_for(Duration::from_secs(5));
    assert!(
        in_table(&net, node, &id),
        "the peer did not get into the table"
    );
    let q = net.start(node, |n, now| n.find_node(now, target));
    let QueryResult::FindNode(Ok(peers)) = net.wait(node, q).result else {
        panic!("find_node failed");
    };
    assert!(
        peers.iter().all(|p| p.id != id && p.id != fake_id),
        "a client's answer counted: {peers:?}"
    );
    assert!(
        !*asked_fake.lock().unwrap(),
        "the peer a client named was asked"
    );
}
