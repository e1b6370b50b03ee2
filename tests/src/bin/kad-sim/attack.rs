//! The attack mode: set up as the lookups mode does, run the attack of
//! `kad_tests::scenario::attack`, print what came of it.

use std::time::Instant;

use kad_core::Config;
use kad_tests::scenario::{self, AttackKind, AttackPlan};
use kad_tests::SimNet;

use crate::args::Args;
use crate::{fmt_duration, frac, link, peak_rss_mb, print_bootstrap, row, setup_link};

/// Every node's `max_records` in the attack mode: small enough that the junk flood can
/// fill the stores it aims at in a simulation of thousands of nodes (honest records are
/// about `keys * k / nodes` a node, a handful).
pub const MAX_RECORDS: usize = 512;

/// Runs the attack mode.
pub fn run(args: &Args, config: &Config, kind: AttackKind, attackers: f64) {
    let wall = Instant::now();
    let mut net = SimNet::with_nodes(args.seed, setup_link(args), args.nodes, config);
    net.set_check_invariants(args.check);
    net.set_threads(args.threads);
    net.on_join_progress(crate::join_progress(args.nodes));
    println!(
        "kad-sim: {} nodes, codec {}, seed {}, attack {kind} by {attackers} of the nodes, \
         each key's Sybils on {} IPs{}",
        args.nodes,
        args.codec,
        args.seed,
        args.sybil_ips,
        if args.signed { ", signed keys" } else { "" }
    );
    let boot = net.bootstrap_all(crate::join_batch(args.nodes));
    print_bootstrap(&boot, wall.elapsed(), net.elapsed(), args.nodes);
    net.set_link(link(args));
    let plan = AttackPlan {
        kind,
        attackers,
        keys: args.lookups.clamp(1, 500),
        gets: args.lookups,
        window: args.concurrency,
        slices: 10,
        sybil_ips: args.sybil_ips,
        signed: args.signed,
    };
    let o = scenario::attack(&mut net, &plan);
    let l = o.log;
    row(
        "attacker",
        format!(
            "{} nodes, {} ids; {} honest nodes",
            o.attacker_nodes, o.identities, o.honest_nodes
        ),
    );
    row(
        "attacker sent",
        format!(
            "{} datagrams: {} sybil announces, {} eviction claims, {} spoofed entries, {} \
             refresh claims, {} forged sets, {} forged set_cached, {} check_stores, {} junk sets",
            l.injected(),
            l.announces,
            l.evict_claims,
            l.spoofed_entries,
            l.refresh_claims,
            l.overwrites,
            l.cached,
            l.check_stores,
            l.junk
        ),
    );
    row(
        "attacker answered",
        format!(
            "{} requests: {} peer lists, {} forged values, {} stores swallowed; {} datagrams to \
             silent nodes dropped",
            l.answered, l.peer_lies, l.value_lies, l.stores_swallowed, l.silent_drops
        ),
    );
    row(
        "puts",
        format!(
            "{}/{} ok; honest replicas a key: {:.1} on average, {} at least",
            o.puts.1, o.puts.0, o.replicas.1, o.replicas.0
        ),
    );
    row(
        "gets",
        format!(
            "{}/{} found the honest value, {} found nothing, {} another value",
            o.found, o.gets, o.not_found, o.wrong
        ),
    );
    row(
        "honest tables (worst slice)",
        format!(
            "{} entries, {} the attacker's, {} of them poisoned, {} unverified by the node",
            o.honest_table_entries, o.attacker_entries, o.poisoned_entries, o.unverified_by_node
        ),
    );
    row(
        "forged records",
        format!("{} held by honest nodes at the end", o.forged_records),
    );
    let ns = net.stats();
    row(
        "datagrams",
        format!(
            "{} sent, {} delivered, {} intercepted, {} undeliverable",
            ns.sent, ns.delivered, ns.intercepted, ns.undeliverable
        ),
    );
    row("virtual time", fmt_duration(net.elapsed()));
    row(
        "wall time",
        format!("{:.1} s", wall.elapsed().as_secs_f64()),
    );
    row("trace hash", format!("{:016x}", net.trace_hash()));
    println!(
        "nodes={} lookups={} attack={kind} attackers={attackers} found={} not_found={} wrong={} \
         attacker_entries={} peak_rss_mb={} attack_success_frac={} poisoned_entries={}",
        args.nodes,
        o.gets,
        o.found,
        o.not_found,
        o.wrong,
        o.attacker_entries,
        peak_rss_mb().map_or("unknown".to_string(), |mb| format!("{mb:.0}")),
        frac(o.found, o.gets),
        o.poisoned_entries
    );
}
