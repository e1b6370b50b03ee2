//! A partition that heals: the live nodes split into two halves that cannot reach each
//! other, each half keeps putting keys, then the partition heals and, after a while (one
//! bucket-refresh interval is the promise), every key must be gettable from both halves.

use std::time::Duration;

use super::{get_each, put_keys, Sweep, Tracked};
use crate::SimNet;

/// What a partition run does.
#[derive(Clone, Debug)]
pub struct PartitionPlan {
    /// How long the two halves cannot reach each other.
    pub split: Duration,
    /// How long the network runs after healing before the final gets.
    pub heal: Duration,
    /// Keys put before the split.
    pub keys: usize,
    /// Keys each half puts at the start of each slice of the split.
    pub keys_per_slice: usize,
    /// The length of one slice of the split.
    pub slice: Duration,
    /// Queries in flight at once (puts and gets).
    pub window: usize,
}

/// What came of a partition run. Index 0 is one half, index 1 the other.
#[derive(Clone, Debug, Default)]
pub struct PartitionOutcome {
    /// The two halves (node indices, ascending).
    pub halves: [Vec<usize>; 2],
    /// Keys put before the split.
    pub before: usize,
    /// Keys put inside each half during the split.
    pub during: [usize; 2],
    /// Puts that failed, in all.
    pub puts_failed: usize,
    /// At the end of the split, each half got every key it can reach: those put before the
    /// split and its own.
    pub split_gets: [Sweep; 2],
    /// After healing: nodes of each half with no peer of the other half in their table.
    pub lonely: [usize; 2],
    /// After healing: each half's routing-table entries that point into the other half,
    /// and all its entries.
    pub cross: [(usize, usize); 2],
    /// After healing: every key, each got once from a random node of each half.
    pub healed_gets: [Sweep; 2],
}

impl PartitionOutcome {
    /// Every get after healing, both halves together.
    pub fn healed(&self) -> Sweep {
        let mut all = self.healed_gets[0].clone();
        all.absorb(&self.healed_gets[1]);
        all
    }
}

/// Runs `plan` on `net`, a network that has joined.
pub fn partition(net: &mut SimNet, plan: &PartitionPlan) -> PartitionOutcome {
    let window = plan.window.max(1);
    let live = net.live();
    let (before, failed) = put_keys(net, "before", plan.keys, &live, window);
    let mut out = PartitionOutcome {
        before: before.len(),
        puts_failed: failed,
        ..PartitionOutcome::default()
    };
    // Alternate nodes: ids are random, so each half spans the whole id space.
    let a = live.iter().copied().step_by(2).collect();
    let b = live.iter().copied().skip(1).step_by(2).collect();
    out.halves = [a, b];
    net.partition(&out.halves);

    let split_end = net
        .now()
        .checked_add(plan.split)
        .expect("split end overflows");
    let mut own: [Vec<Tracked>; 2] = [Vec::new(), Vec::new()];
    let mut slice = 0;
    while net.now() < split_end {
        let slice_end = net
            .now()
            .checked_add(plan.slice.max(Duration::from_millis(1)))
            .expect("slice end overflows")
            .min(split_end);
        for (h, own) in own.iter_mut().enumerate() {
            let prefix = format!("half{h}-{slice}");
            let (keys, failed) =
                put_keys(net, &prefix, plan.keys_per_slice, &out.halves[h], window);
            own.extend(keys);
            out.puts_failed += failed;
        }
        net.run_until_time(slice_end);
        slice += 1;
    }
    for (h, own) in own.iter().enumerate() {
        out.during[h] = own.len();
        let reachable = before.iter().chain(own);
        out.split_gets[h] = get_each(net, reachable, &out.halves[h], window);
    }

    net.heal();
    net.run_for(plan.heal);
    let mut half_of = vec![None; net.len()];
    for (h, members) in out.halves.iter().enumerate() {
        for &i in members {
            half_of[i] = Some(h);
        }
    }
    for (h, members) in out.halves.iter().enumerate() {
        for &i in members {
            let peers = net.node(i).peers();
            let across = peers
                .iter()
                .filter(|p| {
                    net.index_of(p.addr)
                        .is_some_and(|j| half_of[j] == Some(1 - h))
                })
                .count();
            out.cross[h].0 += across;
            out.cross[h].1 += peers.len();
            if across == 0 {
                out.lonely[h] += 1;
            }
        }
    }
    let all: Vec<&Tracked> = before.iter().chain(&own[0]).chain(&own[1]).collect();
    for h in 0..2 {
        out.healed_gets[h] = get_each(net, all.iter().copied(), &out.halves[h], window);
    }
    out
}
