//! `kad swarm`: a whole network on 127.0.0.1 in one process, put and get across it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use kad_tokio::{Codec, KademliaServer, Value};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;

/// Bootstraps in flight at once.
const CONCURRENCY: usize = 16;

#[derive(Args, Debug)]
pub struct SwarmArgs {
    /// Nodes to start.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Keys to put and then get.
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Wire format: json or bencode.
    #[arg(long, value_name = "json|bencode", default_value = "json")]
    codec: Codec,
    /// Puts (then gets) in flight at once. All nodes share this process, so with more
    /// than one an operation's time includes waiting for the others' work; 1 measures
    /// the latency of one operation alone.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Print the results as one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// Outcome of one put or get.
struct Op {
    ok: bool,
    took: Duration,
}

pub async fn run(args: SwarmArgs) -> ExitCode {
    match swarm(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kad swarm: {e}");
            ExitCode::from(2)
        }
    }
}

async fn swarm(args: SwarmArgs) -> Result<bool, kad_tokio::Error> {
    let n = args.nodes.max(2);
    let m = args.keys;
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    eprintln!(
        "swarm: starting {n} nodes on 127.0.0.1 ({} codec)",
        args.codec
    );

    let started = Instant::now();
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(
            KademliaServer::builder()
                .codec(args.codec)
                .listen("127.0.0.1:0")
                .await?,
        );
    }

    // Join one wave at a time, each node through the first node and a random one that
    // is already in: like nodes arriving over time rather than all in the same instant.
    let mut progress = Progress::new("bootstrapped", n - 1);
    let mut joined = 1;
    while joined < n {
        let wave = (joined..n).take(CONCURRENCY.min(joined.max(1) * 2));
        let mut tasks = Vec::new();
        for i in wave {
            let node = nodes[i].clone();
            let via = vec![
                nodes[0].local_addr().to_string(),
                nodes[below(&mut rng, joined)].local_addr().to_string(),
            ];
            tasks.push(tokio::spawn(async move { node.bootstrap(&via).await }));
        }
        for t in tasks {
            match t.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("swarm: a node failed to bootstrap: {e}"),
                Err(e) => eprintln!("swarm: bootstrap task failed: {e}"),
            }
            joined += 1;
            progress.tick(joined - 1);
        }
    }
    let boot_time = started.elapsed();
    let mut table_sizes = 0usize;
    for node in &nodes {
        table_sizes += node.peers().await?.len();
    }
    eprintln!(
        "swarm: {n} nodes joined in {:.2} s (mean routing table {:.1} peers)",
        boot_time.as_secs_f64(),
        table_sizes as f64 / n as f64
    );

    // Puts: each key from a random node.
    let keys: Vec<(String, Value, usize)> = (0..m)
        .map(|i| {
            let value = Value::from(format!("value {i} · {:016x}", rng.next_u64()));
            (format!("swarm-key-{i}"), value, below(&mut rng, n))
        })
        .collect();
    let before = requests(&nodes).await?;
    let concurrency = usize::from(args.concurrency);
    let puts = run_ops(
        "put",
        concurrency,
        keys.iter().map(|(k, v, from)| {
            let node = nodes[*from].clone();
            let (k, v) = (k.clone(), v.clone());
            async move {
                match node.set(&k, v).await {
                    Ok(_) => true,
                    Err(e) => {
                        eprintln!("swarm: put {k} failed: {e}");
                        false
                    }
                }
            }
        }),
    )
    .await;
    let put_msgs = (requests(&nodes).await? - before) as f64 / m.max(1) as f64;

    // Gets: each key from another random node.
    let before = requests(&nodes).await?;
    let gets = run_ops(
        "get",
        concurrency,
        keys.iter().map(|(k, v, from)| {
            let other = (from + 1 + below(&mut rng, n - 1)) % n;
            let node = nodes[other].clone();
            let (k, v) = (k.clone(), v.clone());
            async move {
                match node.get(&k).await {
                    Ok(Some(got)) if got == v => true,
                    Ok(Some(got)) => {
                        eprintln!("swarm: get {k}: wrong value {got:?}");
                        false
                    }
                    Ok(None) => {
                        eprintln!("swarm: get {k}: not found");
                        false
                    }
                    Err(e) => {
                        eprintln!("swarm: get {k} failed: {e}");
                        false
                    }
                }
            }
        }),
    )
    .await;
    let get_msgs = (requests(&nodes).await? - before) as f64 / m.max(1) as f64;

    let mut dropped = 0;
    let mut timeouts = 0;
    for node in &nodes {
        let s = node.stats().await?;
        dropped += s.datagrams_dropped;
        timeouts += s.core.request_timeouts;
    }
    let stops: Vec<_> = nodes
        .iter()
        .map(|node| {
            let node = node.clone();
            tokio::spawn(async move { node.stop().await })
        })
        .collect();
    for s in stops {
        let _ = s.await;
    }

    let found = gets.iter().filter(|o| o.ok).count();
    if args.json {
        let op = |ops: &[Op], msgs: f64| {
            let mut took: Vec<Duration> = ops.iter().map(|o| o.took).collect();
            took.sort();
            serde_json::json!({
                "ok": ops.iter().filter(|o| o.ok).count(),
                "total": ops.len(),
                "p50_ms": ms(percentile(&took, 50)),
                "p99_ms": ms(percentile(&took, 99)),
                "msgs_per_lookup": msgs,
            })
        };
        let out = serde_json::json!({
            "runtime": "tokio",
            "nodes": n,
            "keys": m,
            "codec": args.codec.to_string(),
            "join_secs": boot_time.as_secs_f64(),
            "put": op(&puts, put_msgs),
            "get": op(&gets, get_msgs),
            "request_timeouts": timeouts,
            "datagrams_dropped": dropped,
            "all_found": found == m,
        });
        println!("{out}");
        return Ok(found == m);
    }
    println!(
        "kad swarm (tokio): {n} nodes, {m} keys, {} codec; joined in {:.2} s",
        args.codec,
        boot_time.as_secs_f64()
    );
    println!();
    println!(
        "{:<4} {:>9} {:>9} {:>9} {:>12}",
        "op", "success", "p50 ms", "p99 ms", "msgs/lookup"
    );
    for (name, ops, msgs) in [("put", &puts, put_msgs), ("get", &gets, get_msgs)] {
        let ok = ops.iter().filter(|o| o.ok).count();
        let mut took: Vec<Duration> = ops.iter().map(|o| o.took).collect();
        took.sort();
        println!(
            "{:<4} {:>9} {:>9.2} {:>9.2} {:>12.1}",
            name,
            format!("{ok}/{}", ops.len()),
            ms(percentile(&took, 50)),
            ms(percentile(&took, 99)),
            msgs
        );
    }
    println!();
    println!(
        "msgs/lookup = requests sent per operation; \
         {timeouts} request timeouts, {dropped} datagrams dropped"
    );
    if found == m {
        println!("all {m} keys found");
    } else {
        println!("FAILED: {} of {m} keys not found", m - found);
    }
    Ok(found == m)
}

/// Runs `ops` with at most `concurrency` in flight, timing each.
async fn run_ops<F>(what: &'static str, concurrency: usize, ops: impl Iterator<Item = F>) -> Vec<Op>
where
    F: std::future::Future<Output = bool> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let mut progress = Progress::new(what, ops.size_hint().0);
    for op in ops {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        progress.tick(done.load(Ordering::Relaxed));
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let ok = op.await;
            let took = started.elapsed();
            drop(permit);
            done.fetch_add(1, Ordering::Relaxed);
            Op { ok, took }
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or(Op {
            ok: false,
            took: Duration::ZERO,
        }));
        progress.tick(done.load(Ordering::Relaxed));
    }
    out
}

/// Requests sent so far by the user commands of every node.
async fn requests(nodes: &[KademliaServer]) -> Result<u64, kad_tokio::Error> {
    let mut total = 0;
    for node in nodes {
        total += node.stats().await?.query_requests;
    }
    Ok(total)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Progress on stderr, at most every 10% or 2 seconds.
struct Progress {
    what: &'static str,
    total: usize,
    started: Instant,
    last: Instant,
    last_done: usize,
}

impl Progress {
    fn new(what: &'static str, total: usize) -> Progress {
        let now = Instant::now();
        Progress {
            what,
            total,
            started: now,
            last: now,
            last_done: 0,
        }
    }

    fn tick(&mut self, done: usize) {
        let step = (self.total / 10).max(1);
        let due = done == self.total
            || done >= self.last_done + step
            || self.last.elapsed() >= Duration::from_secs(2);
        if !due || done == self.last_done {
            return;
        }
        self.last = Instant::now();
        self.last_done = done;
        eprintln!(
            "swarm: {} {done}/{} ({:.1} s)",
            self.what,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    // Only picks which nodes put and get: any seed will do if the OS has none.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// A number in `0..n` (0 when `n` is 0), for picking nodes.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}
