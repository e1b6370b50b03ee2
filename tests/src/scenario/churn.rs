//! Continuous churn: every round a fraction of the nodes leaves for good and as many new
//! ones, with fresh ids and addresses, join through bootstrap. Keys are put throughout;
//! after each churn and at the end of each round, every key that must still exist is got
//! once from a random live node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kad_core::Config;

use super::{get_each, put_keys, Sweep, Tracked};
use crate::{BootstrapReport, SimNet};

/// What a churn run does.
#[derive(Clone, Debug)]
pub struct ChurnPlan {
    /// Fraction of the live nodes that leave at the start of each round, in `(0, 1)`.
    pub fraction: f64,
    /// Virtual time from one churn to the next.
    pub every: Duration,
    /// Number of rounds.
    pub rounds: usize,
    /// Keys put before the first round.
    pub keys: usize,
    /// Keys put in each round, right after the joins.
    pub keys_per_round: usize,
    /// Queries in flight at once (puts and gets); bootstraps per batch.
    pub window: usize,
}

/// What happened in one round.
#[derive(Clone, Debug)]
pub struct ChurnRound {
    /// 1 for the first round.
    pub round: usize,
    /// Virtual time since the network was built, at the round's start.
    pub started: Duration,
    /// Nodes that left.
    pub left: usize,
    /// The new nodes' joins. Those that failed every attempt gave up and left too.
    pub joins: BootstrapReport,
    /// Keys put this round.
    pub put: usize,
    /// Puts that failed this round.
    pub put_failed: usize,
    /// Every key that must exist, got right after the joins.
    pub after_churn: Sweep,
    /// Every key that must exist, got at the end of the round.
    pub end: Sweep,
    /// Live nodes at the end of the round.
    pub live: usize,
    /// Routing-table entries of live nodes that point at departed nodes, and all their
    /// entries, at the end of the round.
    pub dead_entries: (usize, usize),
}

/// What came of a churn run.
#[derive(Clone, Debug, Default)]
pub struct ChurnOutcome {
    /// Every key put successfully, the ones put before the first round first.
    pub keys: Vec<Tracked>,
    /// Keys put before the first round.
    pub initial_keys: usize,
    /// Puts that failed, in all.
    pub puts_failed: usize,
    /// Each round.
    pub rounds: Vec<ChurnRound>,
}

impl ChurnOutcome {
    /// Every get of the run together.
    pub fn gets(&self) -> Sweep {
        let mut all = Sweep::default();
        for r in &self.rounds {
            all.absorb(&r.after_churn);
            all.absorb(&r.end);
        }
        all
    }

    /// The lowest success fraction of any one sweep (1 with no rounds).
    pub fn min_fraction(&self) -> f64 {
        self.rounds
            .iter()
            .flat_map(|r| [r.after_churn.fraction(), r.end.fraction()])
            .fold(1.0, f64::min)
    }
}

/// A key within this much of its expiry is not counted either way; and a publisher's
/// republish counts only once it has surely run, this long after it was due.
const MARGIN: Duration = Duration::from_secs(600);

/// Runs `plan` on `net`, a network that has joined, whose new nodes get `config`. Calls
/// `on_round` at the end of each round.
pub fn churn(
    net: &mut SimNet,
    config: &Config,
    plan: &ChurnPlan,
    mut on_round: impl FnMut(&SimNet, &ChurnRound),
) -> ChurnOutcome {
    let window = plan.window.max(1);
    let life = Life {
        republish: config.original_publisher_republish_interval(),
        expiry: config.key_expiry(),
    };
    // When each departed node left.
    let mut left_at: BTreeMap<usize, Instant> = BTreeMap::new();
    let live = net.live();
    let (keys, failed) = put_keys(net, "k0", plan.keys, &live, window);
    let mut out = ChurnOutcome {
        initial_keys: keys.len(),
        keys,
        puts_failed: failed,
        rounds: Vec::new(),
    };
    for round in 1..=plan.rounds {
        let started = net.now();
        let started_at = net.elapsed();
        let mut live = net.live();
        let leaving = ((plan.fraction * live.len() as f64).round() as usize)
            .min(live.len().saturating_sub(1));
        for _ in 0..leaving {
            let j = net.pick(live.len());
            let gone = live.swap_remove(j);
            net.remove(gone);
            left_at.insert(gone, started);
        }
        live.sort_unstable();
        let joiners: Vec<usize> = (0..leaving).map(|_| net.add_node(config.clone())).collect();
        let joins = net.join(&joiners, live, window);
        for &i in &joins.stragglers {
            net.remove(i);
            left_at.insert(i, net.now());
        }

        let members = net.live();
        let now = net.now();
        let due = out
            .keys
            .iter()
            .filter(|t| life.must_exist(t, &left_at, now));
        let after_churn = get_each(net, due, &members, window);
        let (new, put_failed) = put_keys(
            net,
            &format!("k{round}"),
            plan.keys_per_round,
            &members,
            window,
        );
        let put = new.len();
        out.keys.extend(new);
        out.puts_failed += put_failed;

        let end_at = started
            .checked_add(plan.every)
            .expect("round end overflows");
        net.run_until_time(end_at);
        let now = net.now();
        let due = out
            .keys
            .iter()
            .filter(|t| life.must_exist(t, &left_at, now));
        let end = get_each(net, due, &members, window);

        let r = ChurnRound {
            round,
            started: started_at,
            left: leaving,
            joins,
            put,
            put_failed,
            after_churn,
            end,
            live: members.len(),
            dead_entries: net.dead_table_entries(),
        };
        on_round(net, &r);
        out.rounds.push(r);
    }
    out
}

/// How long a key lives.
struct Life {
    /// The publisher's republish interval: each republish renews every replica.
    republish: Duration,
    /// A replica's life after the last renewal.
    expiry: Duration,
}

impl Life {
    /// Must `t` still be gettable at `now`? Its publisher renews it every `republish` while
    /// it lives; the replicas keep it `expiry` past the last renewal. (Replicas' hourly
    /// restores may keep it longer, but nothing promises that.)
    fn must_exist(&self, t: &Tracked, left_at: &BTreeMap<usize, Instant>, now: Instant) -> bool {
        let end = left_at.get(&t.publisher).copied().unwrap_or(now).min(now);
        let lived = end.saturating_duration_since(t.at);
        let renewals = lived
            .checked_sub(MARGIN)
            .map_or(0, |d| d.as_nanos() / self.republish.as_nanos().max(1));
        let renewals = u32::try_from(renewals).unwrap_or(u32::MAX);
        let last =
            t.at.checked_add(self.republish.saturating_mul(renewals))
                .unwrap_or(now);
        last.checked_add(self.expiry)
            .is_none_or(|expires| now + MARGIN < expires)
    }
}
