//! `kad node`: a long-running node that joins (retrying until the network is up), logs
//! its status every minute, and serves until SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kad_tokio::{Builder, Codec, Error, KademliaServer};

use crate::config_file::ConfigFile;
use crate::{fail, parse_secs};

/// First wait before bootstrapping again; it doubles after each failure up to the cap.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two bootstrap attempts.
const RETRY_CAP: Duration = Duration::from_secs(60);

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Address to bind (IPv4 or IPv6; port 0 picks a free one).
    #[arg(long, value_name = "IP:PORT", default_value = kad_tokio::DEFAULT_LISTEN_ADDR)]
    listen: String,
    /// A node of the network to join through (repeatable). Until one answers, the node
    /// tries again, waiting 1 s, then 2, 4... up to 60 s between attempts.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
    /// Keep the node's state (id, routing table, records with their remaining lifetimes)
    /// in FILE: restored at start if FILE exists (a corrupt or truncated FILE is an error,
    /// exit 2), written every --state-interval and at SIGINT/SIGTERM. Each write replaces
    /// FILE atomically (via a temporary file), so even a killed node restarts from its
    /// last write. FILE.lock is held while the node runs: a second node on FILE exits 2.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Seconds between writes of the --state file.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = kad_tokio::DEFAULT_STATE_INTERVAL.as_secs_f64(),
        requires = "state"
    )]
    state_interval: f64,
    /// Every setting of the node (all of `kad_core::Config`) from a TOML file: a flat
    /// table named after the settings, durations in seconds, e.g. `k = 16` and
    /// `query_timeout = 0.5`. Flags given on the command line win over the file.
    /// `--print-config` prints every setting in this format.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the settings the node would run with (defaults, --config file and flags) as
    /// a TOML --config file, and exit.
    #[arg(long)]
    print_config: bool,
    /// Seconds between the status lines logged at info (peers, records, queries, drops).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_secs)]
    status_interval: Duration,
    /// Serve the node's metrics (`kad_` series, Prometheus text format) over HTTP at
    /// `http://IP:PORT/metrics`, e.g. `--metrics 127.0.0.1:9464` (port 0 picks a free one;
    /// the address is logged).
    #[arg(long, value_name = "IP:PORT")]
    metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    tuning: Tuning,
}

/// The Python constructor's tunables (every setting is reachable with --config). Durations
/// are in seconds, as in Python.
#[derive(Args, Debug)]
struct Tuning {
    /// Wire format: json (default) or bencode; all nodes of a network must agree.
    #[arg(long, value_name = "json|bencode")]
    codec: Option<Codec>,
    /// Accept responses only from the address the request went to (default true).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    verify_response_source: Option<bool>,
    /// Bucket size and replication factor (default 20).
    #[arg(long)]
    k: Option<usize>,
    /// Requests in flight per lookup (default 3).
    #[arg(long)]
    alpha: Option<usize>,
    /// Seconds to wait for each response (default 2).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    query_timeout: Option<Duration>,
    /// Seconds between stale-bucket refreshes (default 3600).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    bucket_refresh_interval: Option<Duration>,
    /// Seconds a stored value lives (default 86410).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    key_expiry_seconds: Option<Duration>,
    /// Seconds between re-replications of values held for others (default 3600).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    non_publisher_restore_interval: Option<Duration>,
    /// Seconds between republishes of our own values (default 86400).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    original_publisher_republish_interval: Option<Duration>,
    /// Shortest life of a cached copy, in seconds (default 600).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    min_cache_ttl_seconds: Option<Duration>,
    /// Datagrams handed to the node per pass; more in one pass are dropped and counted
    /// (default 64).
    #[arg(long)]
    max_dispatch_tasks: Option<usize>,
}

impl Tuning {
    /// `b` with the flags that were given on top.
    fn apply(&self, b: Builder) -> Builder {
        fn set<T>(b: Builder, flag: Option<T>, setter: fn(Builder, T) -> Builder) -> Builder {
            match flag {
                Some(v) => setter(b, v),
                None => b,
            }
        }
        let Tuning {
            codec,
            verify_response_source,
            k,
            alpha,
            query_timeout,
            bucket_refresh_interval,
            key_expiry_seconds,
            non_publisher_restore_interval,
            original_publisher_republish_interval,
            min_cache_ttl_seconds,
            max_dispatch_tasks,
        } = *self;
        let b = set(b, codec, Builder::codec);
        let b = set(b, verify_response_source, Builder::verify_response_source);
        let b = set(b, k, Builder::k);
        let b = set(b, alpha, Builder::alpha);
        let b = set(b, query_timeout, Builder::query_timeout);
        let b = set(b, bucket_refresh_interval, Builder::bucket_refresh_interval);
        let b = set(b, key_expiry_seconds, Builder::key_expiry);
        let b = set(
            b,
            non_publisher_restore_interval,
            Builder::non_publisher_restore_interval,
        );
        let b = set(
            b,
            original_publisher_republish_interval,
            Builder::original_publisher_republish_interval,
        );
        let b = set(b, min_cache_ttl_seconds, Builder::min_cache_ttl);
        set(b, max_dispatch_tasks, Builder::max_dispatch_tasks)
    }
}

pub async fn node(args: NodeArgs) -> ExitCode {
    let mut builder = KademliaServer::builder();
    if let Some(path) = &args.config {
        builder = match ConfigFile::load(path).and_then(|file| file.apply(builder)) {
            Ok(b) => b,
            Err(e) => return fail(2, &e),
        };
    }
    let mut builder = args.tuning.apply(builder);
    let config = match builder.build_config() {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    if args.print_config {
        print!("{}", ConfigFile::print(&config));
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.state {
        let interval = match crate::seconds("state-interval", args.state_interval) {
            Ok(d) => d,
            Err(e) => return fail(2, &e),
        };
        tracing::info!(path = %path.display(), ?interval, "state file");
        builder = builder.state_file(path).state_interval(interval);
    }
    // Bound before the node starts, so a busy port fails fast (exit 2).
    let metrics = match args.metrics {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(e) => return fail(2, &format!("--metrics {addr}: {e}")),
        },
        None => None,
    };
    let server = match builder.listen(args.listen.as_str()).await {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    tracing::info!(addr = %server.local_addr(), id = %server.node_id(), "listening");
    let metrics = metrics.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("metrics at http://{addr}/metrics");
        }
        tokio::spawn(crate::metrics::serve(listener, server.clone()))
    });
    let status = tokio::spawn(log_status(server.clone(), args.status_interval));
    if !args.bootstrap.is_empty() {
        let joined = tokio::select! {
            r = join(&server, &args.bootstrap) => r,
            _ = wait_for_signal() => {
                tracing::info!("shutting down before the network answered");
                status.abort();
                metrics.iter().for_each(|m| m.abort());
                server.stop().await;
                return ExitCode::SUCCESS;
            }
        };
        if let Err(e) = joined {
            status.abort();
            metrics.iter().for_each(|m| m.abort());
            server.stop().await;
            return fail(2, &e);
        }
    }
    println!("READY {} {}", server.local_addr(), server.node_id());
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    tracing::info!("shutting down");
    status.abort();
    metrics.iter().for_each(|m| m.abort());
    server.stop().await;
    ExitCode::SUCCESS
}

/// Bootstraps through `addrs`, again and again with a growing wait while nobody answers
/// (or the names do not resolve yet): the network may not be up yet. Errors that waiting
/// cannot fix (an address of the wrong family, a stopped node) end it.
async fn join(server: &KademliaServer, addrs: &[String]) -> Result<(), Error> {
    let mut wait = RETRY_FIRST;
    loop {
        match server.bootstrap(addrs).await {
            Ok(n) => {
                tracing::info!(answered = n, "bootstrapped");
                return Ok(());
            }
            Err(e @ (Error::BootstrapFailed { .. } | Error::Resolve { .. } | Error::Query(_))) => {
                tracing::warn!("{e}; retrying in {} s", wait.as_secs_f64());
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_CAP);
    }
}

/// Logs one status line every `every` until aborted.
async fn log_status(server: KademliaServer, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is now: nothing to tell yet
    loop {
        tick.tick().await;
        let Ok(s) = server.stats().await else {
            return;
        };
        let c = &s.core;
        tracing::info!(
            peers = s.peers,
            records = s.records,
            queries = s.active_queries,
            queries_done = s.queries,
            dropped = s.datagrams_dropped + c.transmits_dropped,
            malformed = c.malformed + c.unknown_type,
            refused = c.requests_refused + c.records_rejected + c.stores_unproven_dropped,
            timeouts = c.request_timeouts,
            "status"
        );
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
