//! `kad-sim`: a whole kad network in one process, in virtual time.
//!
//! ```text
//! kad-sim --nodes N --lookups L [--dead F] [--loss P] [--codec json|bencode] [--seed S]
//!         [--concurrency C] [--unverified-reply-factor X] [--check true|false]
//! ```
//!
//! Builds N nodes, joins them through the protocol (every node bootstraps to one node that
//! joined before it), puts min(L, 500) keys from random nodes, kills a fraction F of the
//! nodes (any of them, publishers included), then runs L `get`s of those keys from random
//! live nodes that do not hold the key themselves, C at a time. Prints a table, then one
//! summary line. Everything but the wall-clock figures and `peak_rss_mb` follows from the
//! seed. `--check true` runs every node's invariant checks after each step (as the
//! scenario tests do); off by default, as they cost a quarter of the run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kad_core::{Codec, Config, Node, NodeId, QueryResult, Value};
use kad_tests::{Link, SimNet, Summary};

struct Args {
    nodes: usize,
    lookups: usize,
    dead: f64,
    loss: f64,
    codec: Codec,
    seed: u64,
    concurrency: usize,
    /// Overrides kad-core's `unverified_reply_factor` (diagnostics).
    reply_factor: Option<usize>,
    /// Invariant checks after every step.
    check: bool,
}

const USAGE: &str = "usage: kad-sim --nodes N --lookups L [--dead F] [--loss P] \
[--codec json|bencode] [--seed S] [--concurrency C] [--unverified-reply-factor X] \
[--check true|false]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nodes: 2000,
        lookups: 2000,
        dead: 0.0,
        loss: 0.0,
        codec: Codec::Json,
        seed: 1,
        concurrency: 50,
        reply_factor: None,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let Some(value) = it.next() else {
            return Err(format!("{flag} needs a value\n{USAGE}"));
        };
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}\n{USAGE}");
        match flag.as_str() {
            "--nodes" => a.nodes = value.parse().map_err(|e| bad(&e))?,
            "--lookups" => a.lookups = value.parse().map_err(|e| bad(&e))?,
            "--dead" => a.dead = value.parse().map_err(|e| bad(&e))?,
            "--loss" => a.loss = value.parse().map_err(|e| bad(&e))?,
            "--codec" => a.codec = value.parse().map_err(|e: String| bad(&e))?,
            "--seed" => a.seed = kad_tests::parse_seed(&value).ok_or_else(|| bad(&"not a u64"))?,
            "--concurrency" => a.concurrency = value.parse().map_err(|e| bad(&e))?,
            "--unverified-reply-factor" => {
                a.reply_factor = Some(value.parse().map_err(|e| bad(&e))?)
            }
            "--check" => a.check = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    if a.nodes < 2 {
        return Err(format!("--nodes must be at least 2\n{USAGE}"));
    }
    if !(0.0..1.0).contains(&a.dead) {
        return Err(format!("--dead must be in [0, 1)\n{USAGE}"));
    }
    if !(0.0..1.0).contains(&a.loss) {
        return Err(format!("--loss must be in [0, 1)\n{USAGE}"));
    }
    if a.concurrency == 0 {
        return Err(format!("--concurrency must be at least 1\n{USAGE}"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    run(&args);
    ExitCode::SUCCESS
}

fn run(args: &Args) {
    let mut config = Config::builder().codec(args.codec);
    if let Some(f) = args.reply_factor {
        config = config.unverified_reply_factor(f);
    }
    let config = config.build().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let link = Link::default().with_loss(args.loss);
    let wall = Instant::now();
    let mut net = SimNet::with_nodes(args.seed, link, args.nodes, &config);
    net.set_check_invariants(args.check);

    // Join through the protocol.
    let boot = net.bootstrap_all(100);
    let boot_wall = wall.elapsed();
    let boot_virtual = net.elapsed();

    // Put the keys.
    let key_count = args.lookups.clamp(1, 500);
    let keys: Vec<(String, Value)> = (0..key_count)
        .map(|i| (format!("key-{i}"), Value::from(format!("value-{i}"))))
        .collect();
    let jobs: Vec<_> = keys
        .iter()
        .map(|(k, v)| {
            let i = net.pick(args.nodes);
            let (k, v) = (k.clone(), v.clone());
            (i, move |n: &mut Node, now| n.put(now, &k, v).expect("put"))
        })
        .collect();
    let puts = net.run_batch(jobs, args.concurrency);
    let replicas = Summary::new(puts.iter().map(|f| match &f.result {
        QueryResult::Put(Ok(ok)) => ok.replicas as u64,
        _ => 0,
    }));
    let puts_ok = puts
        .iter()
        .filter(|f| matches!(f.result, QueryResult::Put(Ok(_))))
        .count();
    // How well the puts found the k closest nodes: of the true k closest to each key,
    // how many hold it.
    let k = config.k();
    let mut ids: Vec<(usize, NodeId)> = (0..args.nodes).map(|i| (i, net.node(i).id())).collect();
    let placed = Summary::new(keys.iter().map(|(key, _)| {
        let target = NodeId::for_key(key);
        ids.sort_by_key(|(_, id)| id.distance(&target));
        ids[..k]
            .iter()
            .filter(|(i, _)| net.node(*i).get_local(net.now(), key).is_some())
            .count() as u64
    }));
    let setup_wall = wall.elapsed();

    // Kill a fraction of the nodes.
    let to_kill = (args.dead * args.nodes as f64).round() as usize;
    let mut alive: Vec<usize> = (0..args.nodes).collect();
    for _ in 0..to_kill.min(args.nodes - 1) {
        let j = net.pick(alive.len());
        let victim = alive.swap_remove(j);
        net.set_dead(victim, true);
    }
    alive.sort_unstable();

    // The lookups: random key, random live node that does not hold it already.
    let jobs: Vec<_> = (0..args.lookups)
        .map(|_| {
            let (key, _) = &keys[net.pick(keys.len())];
            let mut getter = alive[net.pick(alive.len())];
            for _ in 0..100 {
                if net.node(getter).get_local(net.now(), key).is_none() {
                    break;
                }
                getter = alive[net.pick(alive.len())];
            }
            let key = key.clone();
            (getter, key)
        })
        .collect();
    let expected: Vec<Value> = jobs
        .iter()
        .map(|(_, key)| {
            let i: usize = key["key-".len()..].parse().expect("our key");
            keys[i].1.clone()
        })
        .collect();
    let jobs: Vec<_> = jobs
        .into_iter()
        .map(|(i, key)| (i, move |n: &mut Node, now| n.get(now, &key).expect("get")))
        .collect();
    let before = net.stats();
    let lookup_wall = Instant::now();
    let gets = net.run_batch(jobs, args.concurrency);
    let lookup_secs = lookup_wall.elapsed().as_secs_f64().max(1e-9);
    let during = net.stats();

    let success = gets
        .iter()
        .zip(&expected)
        .filter(|(f, v)| matches!(&f.result, QueryResult::Get(Ok(Some(got))) if got == *v))
        .count();
    let not_found = gets
        .iter()
        .filter(|f| matches!(f.result, QueryResult::Get(Ok(None))))
        .count();
    let rounds = Summary::new(gets.iter().map(|f| u64::from(f.stats.rounds)));
    let rpcs = Summary::new(gets.iter().map(|f| u64::from(f.stats.requests)));
    let timeouts = Summary::new(gets.iter().map(|f| u64::from(f.stats.timeouts)));
    let latency = Summary::new(gets.iter().map(|f| f.stats.duration().as_millis() as u64));
    let tables = Summary::new(alive.iter().map(|&i| net.node(i).table_len() as u64));
    let dead_entries: usize = alive
        .iter()
        .map(|&i| {
            net.node(i)
                .peers()
                .iter()
                .filter(|p| net.index_of(p.addr).is_some_and(|j| net.is_dead(j)))
                .count()
        })
        .sum();
    let table_entries: usize = alive.iter().map(|&i| net.node(i).table_len()).sum();
    let ns = net.stats();

    let row = |name: &str, value: String| println!("{name:<28} {value}");
    println!(
        "kad-sim: {} nodes, codec {}, seed {}",
        args.nodes, args.codec, args.seed
    );
    row(
        "setup wall time",
        format!("{:.2} s", setup_wall.as_secs_f64()),
    );
    row(
        "bootstrap",
        format!(
            "{} joined, {} failed, {} attempts, {:.1} s wall, {} virtual",
            boot.joined,
            boot.failed,
            boot.attempts,
            boot_wall.as_secs_f64(),
            fmt_duration(boot_virtual)
        ),
    );
    row(
        "bootstrap rpcs per node",
        format!(
            "{:.1} ({} timeouts in all)",
            boot.requests as f64 / (args.nodes - 1) as f64,
            boot.timeouts
        ),
    );
    row(
        "puts",
        format!(
            "{puts_ok}/{key_count} ok, replicas mean {:.1} min {}",
            replicas.mean(),
            replicas.min()
        ),
    );
    row(
        "replica placement",
        format!(
            "of the {k} closest to a key, mean {:.2} hold it (min {}, {} of {} keys on all {k})",
            placed.mean(),
            placed.min(),
            placed.count() - placed.count_below(k as u64),
            placed.count()
        ),
    );
    row(
        "dead nodes",
        format!(
            "{} of {} (loss {})",
            args.nodes - alive.len(),
            args.nodes,
            args.loss
        ),
    );
    row(
        "gets",
        format!(
            "{success}/{} found the right value, {not_found} found nothing",
            args.lookups
        ),
    );
    row(
        "rounds",
        format!(
            "mean {:.2}  p50 {}  p90 {}  max {}",
            rounds.mean(),
            rounds.percentile(50),
            rounds.percentile(90),
            rounds.max()
        ),
    );
    row(
        "rpcs per get",
        format!(
            "mean {:.2}  p50 {}  p90 {}  max {}",
            rpcs.mean(),
            rpcs.percentile(50),
            rpcs.percentile(90),
            rpcs.max()
        ),
    );
    row(
        "timeouts per get",
        format!("mean {:.2}  max {}", timeouts.mean(), timeouts.max()),
    );
    row(
        "get latency (virtual)",
        format!(
            "mean {:.0} ms  p90 {} ms  max {} ms",
            latency.mean(),
            latency.percentile(90),
            latency.max()
        ),
    );
    row(
        "table size (live nodes)",
        format!(
            "mean {:.1}  min {}  max {}",
            tables.mean(),
            tables.min(),
            tables.max()
        ),
    );
    row(
        "dead peers in live tables",
        format!(
            "{dead_entries} of {table_entries} ({:.1}%)",
            100.0 * dead_entries as f64 / table_entries.max(1) as f64
        ),
    );
    row(
        "datagrams",
        format!(
            "{} sent, {} delivered, {} lost, {} to dead nodes",
            ns.sent, ns.delivered, ns.lost, ns.dropped_dead
        ),
    );
    row("virtual time", fmt_duration(net.elapsed()));
    row("trace hash", format!("{:016x}", net.trace_hash()));
    row(
        "lookup phase",
        format!(
            "{:.2} s wall, {} datagrams delivered ({:.1} a get), {} timer firings",
            lookup_secs,
            during.delivered - before.delivered,
            (during.delivered - before.delivered) as f64 / args.lookups.max(1) as f64,
            during.timer_fires - before.timer_fires
        ),
    );
    let rss = peak_rss_mb();
    if let Some(mb) = rss {
        row(
            "peak memory",
            format!(
                "{mb:.0} MB ({:.1} KB a node, all included)",
                mb * 1024.0 / args.nodes as f64
            ),
        );
    }
    println!(
        "nodes={} lookups={} success={} rounds_mean={:.2} rounds_p90={} rpcs_mean={:.2} lookups_per_s={:.0} peak_rss_mb={}",
        args.nodes,
        args.lookups,
        success,
        rounds.mean(),
        rounds.percentile(90),
        rpcs.mean(),
        args.lookups as f64 / lookup_secs,
        rss.map_or("unknown".to_string(), |mb| format!("{mb:.0}"))
    );
}

/// The process's peak resident set (`VmHWM` in /proc/self/status), in MB; Linux only.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 3600.0 {
        format!("{:.2} h", s / 3600.0)
    } else {
        format!("{s:.1} s")
    }
}
