//! The attack simulation of issue 14 at small scale: a tenth of the nodes are one attacker
//! using every trick of the issue at once ([`kad_tests::scenario::attack`]). The issue's
//! targets: honest gets find the honest value at least 99% of the time, and no attacker
//! entry sits in an honest routing table at an address that never proved itself.
//!
//! The attacker's own nodes prove their addresses the honest way. Two defences beyond
//! address proof hold against them: a get returns the value most of the k closest hold
//! (one vote an IP), not the first it hears; and a replica applies a `set` that changes
//! its value only once the sender's address, asked for the key, answers with that value
//! (a `set` forged with the publisher's address fails). What no rule can stop for a plain
//! key is a proven address writing its own value (an update, by the reference's rules):
//! `overwrite` runs that trick apart, against signed keys.

use kad_core::Config;
use kad_tests::scenario::{attack, AttackKind, AttackOutcome, AttackPlan};
use kad_tests::{Link, SimNet};

const NODES: usize = 300;

fn run(seed: u64, kind: AttackKind, signed: bool) -> (AttackOutcome, u64) {
    run_with(NODES, seed, kind, signed)
}

fn run_with(nodes: usize, seed: u64, kind: AttackKind, signed: bool) -> (AttackOutcome, u64) {
    // A store small enough for the junk flood to fill at this scale (as kad-sim does).
    // The simulation's private 10.x addresses stand for public ones: the per-IP and
    // per-subnet limits apply to them as they would online.
    let config = Config::builder()
        .max_records(128)
        .ip_limits_exempt_loopback(false)
        .build()
        .unwrap();
    let mut net = SimNet::with_nodes(seed, Link::default(), nodes, &config);
    let boot = net.bootstrap_all(50);
    assert_eq!(boot.joined, nodes, "{boot:?}");
    let plan = AttackPlan {
        kind,
        attackers: 0.1,
        keys: 40,
        gets: 150,
        window: 20,
        slices: 5,
        sybil_ips: AttackPlan::SYBIL_IPS,
        signed,
    };
    let o = attack(&mut net, &plan);
    println!(
        "{kind}: {} attacker nodes, {} ids, {} datagrams injected; puts {}/{}; gets {}/{} \
         found the honest value, {} nothing, {} another; honest tables: {} entries, {} the \
         attacker's, {} poisoned; {} forged records held; trace {:016x}",
        o.attacker_nodes,
        o.identities,
        o.log.injected(),
        o.puts.1,
        o.puts.0,
        o.found,
        o.gets,
        o.not_found,
        o.wrong,
        o.honest_table_entries,
        o.attacker_entries,
        o.poisoned_entries,
        o.forged_records,
        net.trace_hash()
    );
    (o, net.trace_hash())
}

fn attack_all() -> AttackOutcome {
    let (o, _) = run(kad_tests::seed(0xa7_0001), AttackKind::All, false);
    // The attacker really attacked: it sent each kind of traffic and was asked things.
    let l = o.log;
    assert!(o.attacker_nodes == NODES / 10);
    assert!(l.announces > 0 && l.evict_claims > 0 && l.spoofed_entries > 0);
    assert!(l.overwrites > 0 && l.cached > 0 && l.check_stores > 0 && l.junk > 0);
    assert!(l.answered > 0, "nobody ever asked the attacker anything");
    assert_eq!(o.gets, 150);
    o
}

/// No attacker entry sits in an honest table at an address that never proved itself
/// (a5f1351: 3158 such entries in this run).
#[test]
fn every_attack_at_once_poisons_no_table() {
    let o = attack_all();
    assert_eq!(
        o.poisoned_entries, 0,
        "poisoned entries in honest tables (issue 14's target: none)"
    );
}

/// Honest gets find the honest value at least 99 % of the time (a5f1351: 0.0; b1542e1,
/// whose gets took the first value they heard and whose replicas took any proven
/// address's `set`: 0.153; e61d51b, whose nodes took every proven id of an attacker IP
/// for a node of its own: 0.44). Each attacker IP answers for many ids (its node, 4
/// flood ports, Sybils next to the keys); an honest node that sees one IP prove more
/// than `max_ids_per_ip` of them stops counting that IP at all.
#[test]
fn every_attack_at_once_is_defeated() {
    let o = attack_all();
    assert!(
        o.success_frac() >= 0.99,
        "attack_success_frac={:.4} (issue 14's target: at least 0.99)",
        o.success_frac()
    );
}

/// The attacker's own ports `set` its value on every honest key. For plain keys that is
/// an update by the reference's rule (the last writer wins); signed keys refuse it, and
/// every get finds the owner's record.
/// Liars (a tenth of the nodes, one IP each) answer every `find_value` with a forged
/// value. A get asks several peers at once from its first round (`get_parallelism`), so
/// in a network too large for full tables it meets liars far from the key before the
/// replicas: only voters among the k closest candidates it knows may settle it early.
/// Before (ten at once, every holder a voter): 1,000 nodes, seeds 2 and 4 gave 1 and 3
/// wrong values of 150 gets each.
#[test]
fn liars_met_on_the_way_do_not_settle_gets() {
    let wrong: Vec<usize> = [2, 4]
        .into_iter()
        .map(|seed| run_with(1000, seed, AttackKind::Liars, false).0.wrong)
        .collect();
    assert_eq!(wrong, [0, 0], "wrong values per seed");
}

#[test]
fn overwrites_of_signed_keys_fail() {
    let (o, _) = run(kad_tests::seed(0xa7_0003), AttackKind::Overwrite, true);
    assert!(o.log.overwrites > 0);
    assert!(
        o.success_frac() >= 0.99,
        "attack_success_frac={:.4} with signed keys",
        o.success_frac()
    );
    assert_eq!(o.forged_records, 0);
}

#[test]
fn the_attack_replays() {
    let (a, ha) = run(0xa7_0002, AttackKind::Liars, false);
    let (b, hb) = run(0xa7_0002, AttackKind::Liars, false);
    assert_eq!(ha, hb, "same seed, different trace");
    assert_eq!(
        (a.found, a.wrong, a.poisoned_entries),
        (b.found, b.wrong, b.poisoned_entries)
    );
}
