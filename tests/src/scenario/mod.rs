//! Failure scenarios at any scale (issue 6), shared by `kad-sim` and the tests: continuous
//! churn ([`churn()`]) and a partition that heals ([`partition()`]).
//!
//! Each takes a network that has already joined ([`SimNet::bootstrap_all`]), runs its
//! script in virtual time and returns what came of it; a callback sees each step as it
//! ends, so a long run can print progress. Everything follows from the network's seed.

pub mod attack;
mod churn;
mod partition;

pub use attack::{attack, AttackKind, AttackLog, AttackOutcome, AttackPlan};
pub use churn::{churn, ChurnOutcome, ChurnPlan, ChurnRound};
pub use partition::{partition, PartitionOutcome, PartitionPlan};

use std::time::Instant;

use kad_core::{Node, QueryResult, QueryStats, Value};

use crate::SimNet;

/// A key a scenario put, and what it takes to know whether it must still exist.
#[derive(Clone, Debug)]
pub struct Tracked {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Value,
    /// The node that put it (its original publisher).
    pub publisher: usize,
    /// When the put finished.
    pub at: Instant,
}

/// The outcome of getting a set of keys once each.
#[derive(Clone, Debug, Default)]
pub struct Sweep {
    /// Gets run.
    pub gets: usize,
    /// Gets that found the right value.
    pub found: usize,
    /// Gets that found no value at all.
    pub not_found: usize,
    /// Gets that found a wrong value or failed.
    pub wrong: usize,
    /// The work each get took, in order.
    pub stats: Vec<QueryStats>,
    /// The keys that were not found (for diagnosis).
    pub missed: Vec<String>,
}

impl Sweep {
    /// Found over run, 1 when nothing was run.
    pub fn fraction(&self) -> f64 {
        if self.gets == 0 {
            return 1.0;
        }
        self.found as f64 / self.gets as f64
    }

    /// Adds `other`'s gets to this one.
    pub fn absorb(&mut self, other: &Sweep) {
        self.gets += other.gets;
        self.found += other.found;
        self.not_found += other.not_found;
        self.wrong += other.wrong;
        self.stats.extend_from_slice(&other.stats);
        self.missed.extend(other.missed.iter().cloned());
    }
}

/// Puts `count` keys named `{prefix}-{i}` from random nodes of `from`, `window` at a time.
/// Returns the keys whose put succeeded and the number that failed.
pub fn put_keys(
    net: &mut SimNet,
    prefix: &str,
    count: usize,
    from: &[usize],
    window: usize,
) -> (Vec<Tracked>, usize) {
    if from.is_empty() || count == 0 {
        return (Vec::new(), count);
    }
    let mut planned = Vec::with_capacity(count);
    let jobs: Vec<_> = (0..count)
        .map(|i| {
            let key = format!("{prefix}-{i}");
            let value = Value::from(format!("value of {key}"));
            let publisher = from[net.pick(from.len())];
            planned.push((key.clone(), value.clone(), publisher));
            (publisher, move |n: &mut Node, now| {
                n.put(now, &key, value).expect("put")
            })
        })
        .collect();
    let results = net.run_batch(jobs, window);
    let mut kept = Vec::with_capacity(count);
    let mut failed = 0;
    for (f, (key, value, publisher)) in results.iter().zip(planned) {
        if matches!(f.result, QueryResult::Put(Ok(_))) {
            kept.push(Tracked {
                key,
                value,
                publisher,
                at: f.stats.finished,
            });
        } else {
            failed += 1;
        }
    }
    (kept, failed)
}

/// Gets each key once from a random node of `from` that does not hold it itself (if one
/// turns up in 100 draws), `window` at a time.
pub fn get_each<'a>(
    net: &mut SimNet,
    keys: impl IntoIterator<Item = &'a Tracked>,
    from: &[usize],
    window: usize,
) -> Sweep {
    let keys: Vec<&Tracked> = keys.into_iter().collect();
    if from.is_empty() || keys.is_empty() {
        return Sweep::default();
    }
    let now = net.now();
    let jobs: Vec<_> = keys
        .iter()
        .map(|t| {
            let mut getter = from[net.pick(from.len())];
            for _ in 0..100 {
                if net.node(getter).get_local(now, &t.key).is_none() {
                    break;
                }
                getter = from[net.pick(from.len())];
            }
            let key = t.key.clone();
            (getter, move |n: &mut Node, now| {
                n.get(now, &key).expect("get")
            })
        })
        .collect();
    let results = net.run_batch(jobs, window);
    let mut sweep = Sweep {
        gets: keys.len(),
        ..Sweep::default()
    };
    for (f, t) in results.iter().zip(&keys) {
        sweep.stats.push(f.stats);
        match &f.result {
            QueryResult::Get(Ok(Some(v))) if *v == t.value => sweep.found += 1,
            QueryResult::Get(Ok(None)) => {
                sweep.not_found += 1;
                sweep.missed.push(t.key.clone());
            }
            _ => {
                sweep.wrong += 1;
                sweep.missed.push(t.key.clone());
            }
        }
    }
    sweep
}
