//! `kad-sim`: a whole kad network in one process, in virtual time.
//!
//! ```text
//! kad-sim [--nodes N] [--seed S] [--codec json|bencode] [--concurrency C]
//!         [--loss P] [--duplicate P] [--jitter DUR] [--lossy-setup true|false]
//!         [--rtt-median DUR]
//!         [--republish true|false] [--unverified-reply-factor X] [--request-retries R]
//!         [--replacement-cache N] [--bootstrap-fill N]
//!         [--check true|false] [--threads T]
//!   lookups (default):  [--lookups L] [--dead F]
//!   churn:              --churn F [--churn-every DUR] [--duration DUR] [--keys K] [--keys-per-round M]
//!   partition:          --partition DUR [--keys K] [--keys-per-round M]
//!   attack:             --attack eclipse|store|liars|overwrite|all [--attackers F] [--signed] [--lookups L]
//! ```
//!
//! Every mode builds N nodes (default 2000) and joins them through the protocol (every
//! node bootstraps to one node that joined before it; 100 joins at a time, N/1000 above
//! 100,000 nodes: `join_batch`), then:
//!
//! - **lookups** (the default) puts min(L, 500) keys from random nodes, kills a fraction F
//!   of the nodes (any of them, publishers included), then runs L `get`s of those keys
//!   from random live nodes that do not hold the key themselves, C at a time.
//! - **churn** (`--churn F`) puts K keys (default 500), then every `--churn-every`
//!   (default 2h), for `--duration` (default 48h; rounds = duration / churn-every, rounded
//!   down), a fraction F of the live nodes leaves for good and as many new nodes, with
//!   fresh ids and addresses, join by bootstrapping to random live nodes (C at a time; a
//!   joiner that fails five attempts gives up). Right after the joins, every key that must
//!   still exist is got once from a random live node; then M more keys are put (default
//!   K/10); at the round's end every key that must still exist is got again. A key must
//!   still exist while its publisher lives (it republishes daily) and, after that, until
//!   `key_expiry` after the publisher's last republish (10 minutes of margin either way).
//! - **partition** (`--partition DUR`) puts K keys, splits the live nodes into two halves
//!   (alternate nodes) that cannot reach each other for DUR; at the start of each
//!   10-minute slice of the split each half puts M keys (default K/10) from its own nodes.
//!   At the end of the split each half gets every key it can reach; then the partition
//!   heals, the network runs one bucket-refresh interval (1 h), and every key is got once
//!   from a random node of each half. It also counts the nodes that have no peer of the
//!   other half in their table.
//! - **attack** (`--attack eclipse|store|liars|overwrite|all`, honest keys signed records with `--signed`) turns a fraction F of the nodes
//!   (`--attackers`, default 0.1) into one attacker after the join and runs the attack
//!   simulation of issue 14 (`kad_tests::scenario::attack`): min(L, 500) keys put by honest
//!   nodes, L honest gets; every node's `max_records` is 512, so that a junk flood can fill
//!   a store at this scale. Its summary line ends with `attack_success_frac=F` (gets that
//!   found the honest value) and `poisoned_entries=N` (attacker entries in honest tables
//!   at addresses that never answered that node with that id).
//!
//! The link is 20 ms plus a uniform jitter (default 30 ms, `--jitter`; jitter reorders),
//! losing a fraction P of datagrams (`--loss`) and delivering a fraction twice
//! (`--duplicate`), from the start; with `--lossy-setup false`, loss and duplication
//! start only after the setup (the bootstrap, and in the lookups mode the puts), so that
//! they hit a network that formed on a clean link. With `--rtt-median DUR` every pair of
//! nodes has its own round trip instead, fixed for the run and the same both ways, drawn
//! from a lognormal distribution with that median (`kad_tests::RttModel`: the 99th
//! percentile 4 x the median, at most 11 x), half of it each way, plus `--jitter` (default
//! 0 with `--rtt-median`). `--republish false` sets both
//! republish intervals (the publisher's daily one and the replicas' hourly restore) to
//! 100 years.
//!
//! The joins run a window of virtual time at a time (everything due before the network's
//! shortest one-way delay, node by node: `kad_tests::SimNet::set_threads`), their nodes
//! shared among `--threads` threads (default: the machine's cores, at most 8); the outcome,
//! trace hash included, is the same for any number. The rest runs on one thread.
//!
//! Each mode prints a table, then one summary line (`nodes=... success=...
//! get_p50_ms=... success_frac=...`; latencies in virtual time). Everything but the wall-clock figures and
//! `peak_rss_mb` follows from the seed. `--check true` runs every node's invariant checks
//! after each step (as the scenario tests do); off by default, as they cost a quarter of
//! the run. DUR is a number with a unit: `500ms`, `90s`, `30m`, `2h`, `1.5d`. Bad flags
//! print the usage and exit with code 2.

mod args;
mod attack;
mod scenarios;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kad_core::{Config, Node, NodeId, QueryResult, Value, MAX_DURATION};
use kad_tests::{BootstrapReport, Link, RttModel, SimNet, Summary};

use args::{Args, Mode};

/// mimalloc: with the joins on several threads, glibc's allocator spent a tenth of the run
/// in lock handoffs (a node's memory, allocated on one thread, freed on another). On Linux
/// it also asks for transparent huge pages by itself (its `allow_thp` option, on by
/// default; `MIMALLOC_ALLOW_THP=0` keeps 4 KB pages): a simulation's nodes are hundreds of
/// megabytes touched at random, one node per datagram, and with 4 KB pages much of the
/// time went to TLB misses (glibc's huge pages made the 10,000-node lookup phase 1.1 to
/// 1.2 times faster; kad-sim re-ran itself to ask for them, which mimalloc makes needless).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    keep_freed_memory();
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    if let Some((kind, fraction)) = args.attack {
        attack::run(&args, &config, kind, fraction);
        return ExitCode::SUCCESS;
    }
    match args.mode {
        Mode::Lookups => run(&args, &config),
        Mode::Churn { .. } | Mode::Partition { .. } => scenarios::run(&args, &config),
    }
    ExitCode::SUCCESS
}

/// mimalloc's option for how long an emptied page stays before it goes back to the system
/// (milliseconds; -1: never). See [`keep_freed_memory`].
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Runs this same command again, in place of this process (`exec`: same pid, same exit
/// code, the same peak memory for `time -v`), with mimalloc told never to return freed
/// memory to the system (`MIMALLOC_PURGE_DELAY=-1`; its default gives it back 10 ms after
/// a page empties). The joins free and allocate in bursts all over a heap of gigabytes:
/// each given-back page came back as a page fault, and broke up the huge page around it.
/// At 100,000 nodes that was 380,000 page faults against 850, and the run took 1.1 to 1.2
/// times as long (BENCHMARKS.md), for 1 to 2 % less peak memory (11 % at 10,000 nodes,
/// where the heap is small). The allocator reads its
/// options before `main` runs, hence the second start. Nothing happens when the variable
/// is set already (`MIMALLOC_PURGE_DELAY=10` gives the default back), or off Unix.
fn keep_freed_memory() {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os(PURGE_DELAY).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(PURGE_DELAY, "-1")
            .exec();
        eprintln!("kad-sim: could not run again with {PURGE_DELAY}=-1 ({err}); going on as is");
    }
}

/// Joins in flight at once: 100, and a thousandth of the nodes beyond 100,000. The
/// nodes' hourly bucket refresh is scheduled from their creation, all at time zero; at
/// 100 at a time, a million nodes took 20,000 s of virtual time to join, and from the
/// first hour on every joined node refreshed its stale buckets at the same instant, a
/// storm of lookups that grew each hour (17 GB and rising when stopped). A thousand at a
/// time, they join within the first hour, as 100,000 do at 100.
pub fn join_batch(nodes: usize) -> usize {
    (nodes / 1000).max(100)
}

/// The nodes' settings.
fn config(args: &Args) -> Result<Config, kad_core::ConfigError> {
    let mut config = Config::builder().codec(args.codec);
    if let Some(f) = args.reply_factor {
        config = config.unverified_reply_factor(f);
    }
    if let Some(n) = args.replacement_cache {
        config = config.replacement_cache_size(n);
    }
    if let Some(n) = args.bootstrap_fill {
        config = config.bootstrap_fill(n);
    }
    if let Some(r) = args.retries {
        config = config.request_retries(r);
    }
    if let Some(n) = args.get_parallelism {
        config = config.get_parallelism(n);
    }
    if let Some(n) = args.get_quorum {
        config = config.get_quorum(n);
    }
    if args.attack.is_some() {
        // The simulation's 10.x addresses stand for the internet's public ones: the per-IP
        // and per-subnet limits apply to them as they would to strangers online (by
        // default they exempt private ranges, for LANs and containers).
        config = config
            .max_records(attack::MAX_RECORDS)
            .ip_limits_exempt_loopback(false);
    }
    if !args.republish {
        config = config
            .original_publisher_republish_interval(MAX_DURATION)
            .non_publisher_restore_interval(MAX_DURATION);
    }
    config.build()
}

/// The link during the setup: [`link`], without loss and duplication unless
/// `--lossy-setup` (the default) says otherwise.
fn setup_link(args: &Args) -> Link {
    let link = link(args);
    if args.lossy_setup {
        return link;
    }
    Link {
        loss: 0.0,
        duplicate: 0.0,
        ..link
    }
}

/// The link every datagram goes through (after the setup).
fn link(args: &Args) -> Link {
    let mut link = Link::default()
        .with_loss(args.loss)
        .with_duplicate(args.duplicate);
    if args.rtt_median.is_some() {
        // The per-pair round trips replace the fixed latency and its default jitter.
        link.jitter = std::time::Duration::ZERO;
    }
    if let Some(j) = args.jitter {
        link.jitter = j;
    }
    link
}

/// The per-pair round trips of `--rtt-median`, if given.
fn rtt_model(args: &Args) -> Option<RttModel> {
    args.rtt_median.map(RttModel::lognormal)
}

/// The median round trip between two nodes: the model's, or for the fixed link twice
/// the latency plus the median of two uniform jitters (one jitter).
fn rtt_median_ms(net: &SimNet) -> f64 {
    match net.rtt_model() {
        Some(m) => m.median.as_secs_f64() * 1000.0,
        None => {
            let l = net.link();
            (2 * l.latency + l.jitter).as_secs_f64() * 1000.0
        }
    }
}

/// The lookups mode.
fn run(args: &Args, config: &Config) {
    let wall = Instant::now();
    let mut net = SimNet::with_nodes(args.seed, setup_link(args), args.nodes, config);
    net.set_rtt_model(rtt_model(args));
    net.set_check_invariants(args.check);
    net.set_threads(args.threads);
    net.on_join_progress(join_progress(args.nodes));

    // Join through the protocol.
    let boot = net.bootstrap_all(join_batch(args.nodes));
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
        // The k closest, in linear time: a full sort per key took minutes at a million.
        let k = k.min(ids.len());
        if k < ids.len() {
            ids.select_nth_unstable_by_key(k, |(_, id)| id.distance(&target));
        }
        ids[..k]
            .iter()
            .filter(|(i, _)| net.node(*i).get_local(net.now(), key).is_some())
            .count() as u64
    }));
    let setup_wall = wall.elapsed();

    net.set_link(link(args));

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
    let cpu_before = cpu_secs();
    perf_control("enable");
    let gets = net.run_batch(jobs, args.concurrency);
    perf_control("disable");
    let lookup_secs = lookup_wall.elapsed().as_secs_f64().max(1e-9);
    let lookup_cpu = cpu_before.zip(cpu_secs()).map(|(a, b)| (b - a).max(0.01));
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
    let ns = net.stats();

    println!(
        "kad-sim: {} nodes, codec {}, seed {}, {} threads for the joins{}",
        args.nodes,
        args.codec,
        args.seed,
        args.threads,
        if std::env::var_os(PURGE_DELAY).is_some_and(|v| v == "-1") {
            ", freed memory kept"
        } else {
            ""
        }
    );
    row(
        "setup wall time",
        format!("{:.2} s", setup_wall.as_secs_f64()),
    );
    print_bootstrap(&boot, boot_wall, boot_virtual, args.nodes);
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
    if args.link_flags() {
        row("link", link_summary(&net, args));
    }
    row("rtt median", format!("{:.0} ms", rtt_median_ms(&net)));
    row(
        "gets",
        format!(
            "{success}/{} found the right value, {not_found} found nothing",
            args.lookups
        ),
    );
    let stats: Vec<_> = gets.iter().map(|f| f.stats).collect();
    let (rounds, rpcs, latency) = scenarios::get_stats(&stats);
    let ms = scenarios::ms;

    print_tables(&net);
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
            "{:.2} s wall, {} cpu, {} datagrams delivered ({:.1} a get), {} timer firings",
            lookup_secs,
            lookup_cpu.map_or("unknown".to_string(), |c| format!("{c:.2} s")),
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
        "nodes={} lookups={} success={} rounds_mean={:.2} rounds_p90={} rpcs_mean={:.2} lookups_per_s={:.0} lookups_per_cpu_s={} peak_rss_mb={} get_p50_ms={:.0} get_p99_ms={:.0} get_max_ms={:.0} rtt_median_ms={:.0} success_frac={}",
        args.nodes,
        args.lookups,
        success,
        rounds.mean(),
        rounds.percentile(90),
        rpcs.mean(),
        args.lookups as f64 / lookup_secs,
        lookup_cpu.map_or("unknown".to_string(), |c| format!("{:.0}", args.lookups as f64 / c)),
        rss.map_or("unknown".to_string(), |mb| format!("{mb:.0}")),
        ms(latency.percentile(50)),
        ms(latency.percentile(99)),
        ms(latency.max()),
        rtt_median_ms(&net),
        frac(success, args.lookups)
    );
}

/// The `bootstrap` rows: who joined, in how long, and at what cost in RPCs.
pub(crate) fn print_bootstrap(
    boot: &BootstrapReport,
    wall: Duration,
    virtual_time: Duration,
    nodes: usize,
) {
    row(
        "bootstrap",
        format!(
            "{} joined, {} failed, {} attempts, {:.1} s wall, {} virtual",
            boot.joined,
            boot.failed,
            boot.attempts,
            wall.as_secs_f64(),
            fmt_duration(virtual_time)
        ),
    );
    row(
        "bootstrap rpcs per node",
        format!(
            "{:.1} ({} timeouts in all)",
            boot.requests as f64 / (nodes - 1) as f64,
            boot.timeouts
        ),
    );
}

/// The rows on live nodes' routing tables: their sizes, and how many entries are dead.
pub(crate) fn print_tables(net: &SimNet) {
    let tables = Summary::new(net.live().iter().map(|&i| net.node(i).table_len() as u64));
    row(
        "table size (live nodes)",
        format!(
            "mean {:.1}  min {}  max {}",
            tables.mean(),
            tables.min(),
            tables.max()
        ),
    );
    let (dead, total) = net.dead_table_entries();
    row(
        "dead peers in live tables",
        format!(
            "{dead} of {total} ({:.1}%)",
            100.0 * dead as f64 / total.max(1) as f64
        ),
    );
}

/// A progress line on stderr for every tenth of the joiners, on networks of 10,000 nodes
/// and more (a million take the better part of an hour to join).
pub fn join_progress(nodes: usize) -> Option<kad_tests::JoinProgressFn> {
    if nodes < 10_000 {
        return None;
    }
    let wall = Instant::now();
    let mut next = 1;
    Some(Box::new(move |done, all, virt| {
        if done * 10 < next * all && done < all {
            return;
        }
        next = done * 10 / all.max(1) + 1;
        eprintln!(
            "kad-sim: joined {done}/{all} ({}%), wall {:.0} s, virtual {:.0} s, peak {:.0} MB",
            done * 100 / all.max(1),
            wall.elapsed().as_secs_f64(),
            virt.as_secs_f64(),
            peak_rss_mb().unwrap_or(0.0)
        );
    }))
}

/// The process's peak resident set (`VmHWM` in /proc/self/status), in MB; Linux only.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Profiles the lookup phase alone: with `KAD_SIM_PERF_CTL` naming the control FIFO of
/// `perf record -D -1 --control fifo:<ctl>`, recording starts and stops around it.
fn perf_control(cmd: &str) {
    use std::io::Write;
    if let Some(path) = std::env::var_os("KAD_SIM_PERF_CTL") {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = writeln!(f, "{cmd}");
        }
    }
}

/// CPU time this process has used (user plus system), from /proc/self/stat; Linux only.
/// On a shared machine the lookup rate per CPU second is steadier than per wall second:
/// other processes take turns on the cores, not instructions from this one. Counted in
/// the kernel's clock ticks, 100 a second on Linux, so good to 10 ms.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name in parentheses may hold spaces: count fields after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// `found / total` with four decimals, rounded down (so that 99.995% never shows as 1).
fn frac(found: usize, total: usize) -> String {
    if total == 0 {
        return "1.0000".into();
    }
    let f = (found as u128 * 10_000) / total as u128;
    format!("{}.{:04}", f / 10_000, f % 10_000)
}

/// The link's settings and what it did to datagrams so far.
fn link_summary(net: &SimNet, args: &Args) -> String {
    let link = net.link();
    let latency = match net.rtt_model() {
        Some(m) => format!(
            "per-pair round trips, lognormal, median {} ms, sigma {},",
            m.median.as_millis(),
            m.sigma
        ),
        None => format!("{} ms", link.latency.as_millis()),
    };
    let ns = net.stats();
    let after = if args.lossy_setup {
        ""
    } else {
        " after the setup"
    };
    format!(
        "{latency} + up to {} ms jitter, loss {}, duplicate {}{after}: {} lost, {} duplicated, {} reordered",
        link.jitter.as_millis(),
        link.loss,
        link.duplicate,
        ns.lost,
        ns.duplicated,
        ns.reordered
    )
}

/// One row of the table.
fn row(name: &str, value: String) {
    println!("{name:<28} {value}");
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 3600.0 {
        format!("{:.2} h", s / 3600.0)
    } else {
        format!("{s:.1} s")
    }
}
