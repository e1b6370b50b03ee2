//! The churn and partition modes: set up as the lookups mode does, run the scenario from
//! `kad_tests::scenario`, print what came of it.

use std::time::Instant;

use kad_core::{Config, QueryStats};
use kad_tests::scenario::{self, ChurnPlan, ChurnRound, PartitionPlan, Sweep};
use kad_tests::{SimNet, Summary};

use crate::args::{Args, Mode};
use crate::{
    fmt_duration, frac, link, link_summary, peak_rss_mb, print_bootstrap, print_tables, row,
    rtt_model, setup_link,
};

/// The 10-minute slices a partition's halves put keys in.
const SLICE: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs the churn or partition mode.
pub fn run(args: &Args, config: &Config) {
    let wall = Instant::now();
    let mut net = SimNet::with_nodes(args.seed, setup_link(args), args.nodes, config);
    net.set_rtt_model(rtt_model(args));
    net.set_check_invariants(args.check);
    net.set_threads(args.threads);
    net.on_join_progress(crate::join_progress(args.nodes));
    let title = match args.mode {
        Mode::Churn {
            fraction,
            every,
            rounds,
        } => format!(
            "churn {fraction} every {} for {rounds} rounds",
            fmt_duration(every)
        ),
        Mode::Partition { split } => format!("partition for {}", fmt_duration(split)),
        Mode::Lookups => unreachable!("the lookups mode runs in main"),
    };
    println!(
        "kad-sim: {} nodes, codec {}, seed {}, {title}, republish {}",
        args.nodes,
        args.codec,
        args.seed,
        if args.republish { "on" } else { "off" }
    );
    let boot = net.bootstrap_all(crate::join_batch(args.nodes));
    print_bootstrap(&boot, wall.elapsed(), net.elapsed(), args.nodes);
    net.set_link(link(args));
    let (label, gets, extra) = match args.mode {
        Mode::Churn {
            fraction,
            every,
            rounds,
        } => {
            let plan = ChurnPlan {
                fraction,
                every,
                rounds,
                keys: args.keys,
                keys_per_round: args.keys_per_round,
                window: args.concurrency,
            };
            let (gets, extra) = churn(&mut net, config, &plan);
            ("gets", gets, extra)
        }
        Mode::Partition { split } => {
            let plan = PartitionPlan {
                split,
                heal: config.bucket_refresh_interval(),
                keys: args.keys,
                keys_per_slice: args.keys_per_round,
                slice: SLICE,
                window: args.concurrency,
            };
            let (gets, extra) = partition(&mut net, &plan);
            ("gets after healing", gets, extra)
        }
        Mode::Lookups => unreachable!("the lookups mode runs in main"),
    };

    row(
        label,
        format!(
            "{}/{} found the right value, {} found nothing, {} failed or wrong ({})",
            gets.found,
            gets.gets,
            gets.not_found,
            gets.wrong,
            frac(gets.found, gets.gets)
        ),
    );
    let stats = get_stats(&gets.stats);
    print_tables(&net);
    let live = net.live();
    let ns = net.stats();
    row(
        "datagrams",
        format!(
            "{} sent, {} delivered, {} to dead nodes, {} across the partition",
            ns.sent, ns.delivered, ns.dropped_dead, ns.dropped_partition
        ),
    );
    row("link", link_summary(&net, args));
    row("virtual time", fmt_duration(net.elapsed()));
    row("trace hash", format!("{:016x}", net.trace_hash()));
    row(
        "wall time",
        format!("{:.1} s in all", wall.elapsed().as_secs_f64()),
    );
    let rss = peak_rss_mb();
    if let Some(mb) = rss {
        row(
            "peak memory",
            format!(
                "{mb:.0} MB for {} nodes ever built, {} live",
                net.len(),
                live.len()
            ),
        );
    }
    println!(
        "nodes={} lookups={} success={} rounds_mean={:.2} rounds_p90={} rpcs_mean={:.2} peak_rss_mb={} success_frac={}{extra}",
        args.nodes,
        gets.gets,
        gets.found,
        stats.0.mean(),
        stats.0.percentile(90),
        stats.1.mean(),
        rss.map_or("unknown".to_string(), |mb| format!("{mb:.0}")),
        frac(gets.found, gets.gets),
    );
}

/// Runs the churn scenario, printing a row a round; returns every get and the summary
/// line's extra fields.
fn churn(net: &mut SimNet, config: &Config, plan: &ChurnPlan) -> (Sweep, String) {
    let mut round_wall = Instant::now();
    let out = scenario::churn(net, config, plan, |net, r: &ChurnRound| {
        let (dead, total) = r.dead_entries;
        row(
            &format!("round {} at {}", r.round, fmt_duration(r.started)),
            format!(
                "{} left, {} joined ({} failed); gets after churn {}/{}, at round end {}/{}; \
                 {} keys put; dead peers in tables {:.1}%; {:.1} s wall",
                r.left,
                r.joins.joined,
                r.joins.failed,
                r.after_churn.found,
                r.after_churn.gets,
                r.end.found,
                r.end.gets,
                r.put,
                100.0 * dead as f64 / total.max(1) as f64,
                round_wall.elapsed().as_secs_f64()
            ),
        );
        for sweep in [&r.after_churn, &r.end] {
            print_missed(net, sweep);
        }
        round_wall = Instant::now();
    });
    row(
        "keys",
        format!(
            "{} put before the first round, {} in all, {} puts failed",
            out.initial_keys,
            out.keys.len(),
            out.puts_failed
        ),
    );
    let gets = out.gets();
    let worst = out
        .rounds
        .iter()
        .flat_map(|r| [&r.after_churn, &r.end])
        .min_by(|a, b| a.fraction().total_cmp(&b.fraction()));
    let extra = format!(
        " min_round_frac={} churn_rounds={} keys={}",
        worst.map_or("1.0000".into(), |s| frac(s.found, s.gets)),
        out.rounds.len(),
        out.keys.len()
    );
    (gets, extra)
}

/// Runs the partition scenario and prints its rows; returns the gets after healing and
/// the summary line's extra fields.
fn partition(net: &mut SimNet, plan: &PartitionPlan) -> (Sweep, String) {
    let wall = Instant::now();
    let out = scenario::partition(net, plan);
    row("keys before the split", format!("{} put", out.before));
    row(
        "split",
        format!(
            "{} into halves of {} and {} nodes; keys put inside them: {} and {} ({} puts failed)",
            fmt_duration(plan.split),
            out.halves[0].len(),
            out.halves[1].len(),
            out.during[0],
            out.during[1],
            out.puts_failed
        ),
    );
    for h in 0..2 {
        let s = &out.split_gets[h];
        row(
            &format!("gets inside half {h}, split"),
            format!(
                "{}/{} of the keys it can reach ({})",
                s.found,
                s.gets,
                frac(s.found, s.gets)
            ),
        );
    }
    row(
        "healed, then ran",
        format!("{} (one bucket-refresh interval)", fmt_duration(plan.heal)),
    );
    for h in 0..2 {
        let (across, total) = out.cross[h];
        row(
            &format!("routing from half {h}"),
            format!(
                "{} nodes know nobody in half {}; {:.1}% of table entries point there",
                out.lonely[h],
                1 - h,
                100.0 * across as f64 / total.max(1) as f64
            ),
        );
    }
    for h in 0..2 {
        let s = &out.healed_gets[h];
        row(
            &format!("gets from half {h}, healed"),
            format!(
                "{}/{} found the right value ({})",
                s.found,
                s.gets,
                frac(s.found, s.gets)
            ),
        );
        print_missed(net, s);
    }
    row(
        "scenario wall time",
        format!("{:.1} s", wall.elapsed().as_secs_f64()),
    );
    let extra = format!(
        " half0_frac={} half1_frac={} lonely={}",
        frac(out.healed_gets[0].found, out.healed_gets[0].gets),
        frac(out.healed_gets[1].found, out.healed_gets[1].gets),
        out.lonely[0] + out.lonely[1]
    );
    (out.healed(), extra)
}

/// Prints the first few keys a sweep missed, with how many live nodes hold each.
fn print_missed(net: &SimNet, sweep: &Sweep) {
    if sweep.missed.is_empty() {
        return;
    }
    let shown: Vec<String> = sweep
        .missed
        .iter()
        .take(5)
        .map(|k| format!("{k} ({} live holders)", net.holders(k).len()))
        .collect();
    row(
        "  missed",
        format!(
            "{} ({} not found, {} failed or wrong): {}",
            sweep.missed.len(),
            sweep.not_found,
            sweep.wrong,
            shown.join(", ")
        ),
    );
}

/// Prints rounds, requests, timeouts and latency of `stats`; returns the rounds and
/// requests summaries, and the latency summary in microseconds of virtual time.
pub(crate) fn get_stats(stats: &[QueryStats]) -> (Summary, Summary, Summary) {
    let rounds = Summary::new(stats.iter().map(|s| u64::from(s.rounds)));
    let rpcs = Summary::new(stats.iter().map(|s| u64::from(s.requests)));
    let timeouts = Summary::new(stats.iter().map(|s| u64::from(s.timeouts)));
    let latency = Summary::new(stats.iter().map(|s| s.duration().as_micros() as u64));
    for (name, s) in [("rounds", &rounds), ("rpcs per get", &rpcs)] {
        row(
            name,
            format!(
                "mean {:.2}  p50 {}  p90 {}  max {}",
                s.mean(),
                s.percentile(50),
                s.percentile(90),
                s.max()
            ),
        );
    }
    row(
        "timeouts per get",
        format!("mean {:.2}  max {}", timeouts.mean(), timeouts.max()),
    );
    row(
        "get latency (virtual)",
        format!(
            "mean {:.0} ms  p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
            latency.mean() / 1000.0,
            ms(latency.percentile(50)),
            ms(latency.percentile(90)),
            ms(latency.percentile(99)),
            ms(latency.max())
        ),
    );
    (rounds, rpcs, latency)
}

/// Microseconds as milliseconds.
pub(crate) fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
