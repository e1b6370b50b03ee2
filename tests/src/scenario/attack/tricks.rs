//! The attacker's tricks as waves of datagrams it writes and injects: the eclipse around
//! every key, refresh by claim of its silent nodes, and the store attack.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use kad_core::NodeId;

use super::{forged_value, Ctx, CLAIMS_PER_ENTRY, SPOOFS_PER_VICTIM};
use crate::forge::W;
use crate::SimNet;

/// One wave of the eclipse around every key: Sybil announcements and evictions by claim
/// (`full`), and spoofed fresh entries (always).
pub(super) fn eclipse_wave(net: &mut SimNet, ctx: &mut Ctx, full: bool) {
    if ctx.attacker.is_empty() {
        return;
    }
    let k = ctx.k;
    for ki in 0..ctx.keys.len() {
        let target = NodeId::for_key(&ctx.keys[ki].0);
        let victims = ctx.closest_honest(&target, k);
        for &v in &victims {
            let dst = net.addr(v);
            if full {
                // The Sybils introduce themselves (owned addresses: they answer the
                // verification ping), filling free room and the replacement cache.
                for j in 0..ctx.sybils[ki].len() {
                    let (id, src) = ctx.sybils[ki][j];
                    let delay = Duration::from_millis((j as u64 * 250) % 5000);
                    let fields = vec![("target", W::S(id.to_string()))];
                    ctx.send(net, delay, "find_node", &id, src, dst, fields);
                    ctx.log(|l| l.announces += 1);
                }
                // Evict the victim's honest entries near the key by claim: a burst of
                // small requests with a large answer, each from its own fresh port.
                let entries = net.node(v).closest_peers(&target, k / 2);
                for p in entries {
                    if ctx.truth.get(&p.addr) != Some(&p.id) {
                        continue;
                    }
                    for _ in 0..CLAIMS_PER_ENTRY {
                        let src = ctx.claim_port(net);
                        let fields = vec![("target", W::S(target.to_string()))];
                        ctx.send(
                            net,
                            Duration::from_secs(6),
                            "find_node",
                            &p.id,
                            src,
                            dst,
                            fields,
                        );
                        ctx.log(|l| l.evict_claims += 1);
                    }
                }
            }
            // Spoofed strangers close to the key: unproven entries, served until their
            // verification ping times out.
            for _ in 0..SPOOFS_PER_VICTIM {
                let (id, src) = {
                    let mut b = ctx.brain.lock().expect("brain");
                    (b.id_near(&target, 24), b.unowned())
                };
                let fields = vec![("target", W::S(target.to_string()))];
                ctx.send(net, Duration::ZERO, "find_node", &id, src, dst, fields);
                ctx.log(|l| l.spoofed_entries += 1);
            }
        }
    }
}

/// Spoofed pings from each silent attacker node's address, claiming its id, to every
/// honest node that still holds it: they refresh a dead entry.
pub(super) fn refresh_claims(net: &mut SimNet, ctx: &Ctx) {
    let silent: HashMap<SocketAddr, NodeId> = {
        let b = ctx.brain.lock().expect("brain");
        b.silent
            .iter()
            .filter_map(|a| b.base.get(a).map(|id| (*a, *id)))
            .collect()
    };
    if silent.is_empty() {
        return;
    }
    for &h in &ctx.honest {
        let dst = net.addr(h);
        let held: Vec<(NodeId, SocketAddr)> = net
            .node(h)
            .peers()
            .into_iter()
            .filter(|p| silent.get(&p.addr) == Some(&p.id))
            .map(|p| (p.id, p.addr))
            .collect();
        for (id, src) in held {
            ctx.send(net, Duration::ZERO, "ping", &id, src, dst, vec![]);
            ctx.log(|l| l.refresh_claims += 1);
        }
    }
}

/// The store attack: forged `set`s, `set_cached`s and `check_store`s on the keys already
/// put (`early`), junk floods at the nodes closest to the keys still to come (`late`).
pub(super) fn store_wave(
    net: &mut SimNet,
    ctx: &mut Ctx,
    early: std::ops::Range<usize>,
    late: std::ops::Range<usize>,
    holders: &[BTreeSet<usize>],
    publishers: &[usize],
) {
    if ctx.attacker.is_empty() {
        return;
    }
    let k = ctx.k;
    let (store, overwrite) = (ctx.tricks.store, ctx.tricks.overwrite);
    let mut f = 0;
    for ki in early {
        let (key, _) = ctx.keys[ki].clone();
        let forged = forged_value(&key);
        let target = NodeId::for_key(&key);
        let publisher = publishers[ki];
        let (p_id, p_addr) = (net.node(publisher).id(), net.addr(publisher));
        let size = forged.chars().count() as u64;
        let mut targets: Vec<usize> = holders[ki].iter().copied().collect();
        if !targets.contains(&publisher) {
            targets.push(publisher);
        }
        for &h in &targets {
            let dst = net.addr(h);
            let set = || vec![("key", W::S(key.clone())), ("value", W::S(forged.clone()))];
            if overwrite {
                // Its own value, from its own port: an update by the rules of plain keys.
                let (fid, faddr) = ctx.flood[f % ctx.flood.len()];
                f += 1;
                ctx.send(net, Duration::ZERO, "set", &fid, faddr, dst, set());
                ctx.log(|l| l.overwrites += 1);
            }
            if !store {
                continue;
            }
            if h != publisher {
                ctx.send(net, Duration::ZERO, "set", &p_id, p_addr, dst, set());
                let fields = vec![("key", W::S(key.clone())), ("size", W::I(size))];
                ctx.send(
                    net,
                    Duration::ZERO,
                    "check_store",
                    &p_id,
                    p_addr,
                    dst,
                    fields,
                );
                ctx.log(|l| {
                    l.overwrites += 1;
                    l.check_stores += 1;
                });
            }
            let (sid, saddr) = {
                let mut b = ctx.brain.lock().expect("brain");
                let mut id = [0u8; 20];
                rand_chacha::rand_core::RngCore::fill_bytes(&mut b.rng, &mut id);
                (NodeId(id), b.unowned())
            };
            ctx.send(net, Duration::ZERO, "set", &sid, saddr, dst, set());
            ctx.log(|l| l.overwrites += 1);
        }
        if !store {
            continue;
        }
        // Cached copies of the forged value just outside the k closest, where lookups
        // pass on their way in.
        let near = ctx.closest_honest(&target, 3 * k);
        for &c in near.iter().skip(k) {
            if holders[ki].contains(&c) {
                continue;
            }
            let (fid, faddr) = ctx.flood[f % ctx.flood.len()];
            f += 1;
            let fields = vec![
                ("key", W::S(key.clone())),
                ("value", W::S(forged.clone())),
                ("target_id", W::S(target.to_string())),
            ];
            ctx.send(
                net,
                Duration::ZERO,
                "set_cached",
                &fid,
                faddr,
                net.addr(c),
                fields,
            );
            ctx.log(|l| l.cached += 1);
        }
    }
    // Junk enough to fill the store of every node a late key will go to.
    let max_records = net.node(0).config().max_records();
    let junk = max_records.saturating_add(16);
    let mut victims = BTreeSet::new();
    for ki in late {
        let target = NodeId::for_key(&ctx.keys[ki].0);
        victims.extend(ctx.closest_honest(&target, k));
    }
    for v in victims {
        let dst = net.addr(v);
        for j in 0..junk {
            let delay = Duration::from_micros((j as u64 * 30_000_000) / junk as u64);
            let fields = vec![
                ("key", W::S(format!("junk {v} {j}"))),
                ("value", W::S("j".into())),
            ];
            let (id, src) = if j % 2 == 0 {
                let mut b = ctx.brain.lock().expect("brain");
                let mut id = [0u8; 20];
                rand_chacha::rand_core::RngCore::fill_bytes(&mut b.rng, &mut id);
                (NodeId(id), b.unowned())
            } else {
                let p = ctx.flood[f % ctx.flood.len()];
                f += 1;
                p
            };
            ctx.send(net, delay, "set", &id, src, dst, fields);
            ctx.log(|l| l.junk += 1);
        }
    }
}
