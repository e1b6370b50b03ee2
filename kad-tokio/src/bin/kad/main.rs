//! `kad`: run a Kademlia node, put and get values, or run a local swarm.
//!
//! ```text
//! kad node [--listen IP:PORT] [--bootstrap HOST:PORT]... [--state FILE [--state-interval SECS]]
//!          [--codec json|bencode] [tuning flags]
//! kad put [--codec C] --bootstrap HOST:PORT [--hex] KEY VALUE
//! kad get [--codec C] --bootstrap HOST:PORT [--hex] KEY
//! kad swarm [--nodes N] [--keys M] [--codec C]
//! ```
//!
//! Logs go to stderr (`RUST_LOG` filters them); stdout carries only results.

mod swarm;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kad_tokio::{Builder, Codec, Error, KademliaServer, QueryError, Value};

#[derive(Parser, Debug)]
#[command(
    name = "kad",
    version,
    about = "A Kademlia DHT node, wire-compatible with kademlia-dynamic 1.1.1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node: prints `READY <ip>:<port> <node_id>` once it listens and has
    /// bootstrapped, then serves until SIGINT or SIGTERM. With --state it keeps its id,
    /// peers and records in a file and comes back with them after a restart or a crash.
    Node(NodeArgs),
    /// Store a value; exits 0 once at least one remote node acknowledged it.
    Put(PutArgs),
    /// Print a value (text as UTF-8, bytes raw, or hex with --hex); exits 1 if not found.
    Get(GetArgs),
    /// Start N nodes on 127.0.0.1 in this process, put M keys from random nodes, get each
    /// from another, and print a table; exits 0 only when every key was found.
    Swarm(swarm::SwarmArgs),
}

#[derive(Args, Debug)]
struct NodeArgs {
    /// Address to bind (IPv4 or IPv6; port 0 picks a free one).
    #[arg(long, value_name = "IP:PORT", default_value = kad_tokio::DEFAULT_LISTEN_ADDR)]
    listen: String,
    /// A node of the network to join through (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Vec<String>,
    /// Keep the node's state (id, routing table, records with their remaining lifetimes)
    /// in FILE: restored at start if FILE exists (a corrupt or truncated FILE is an error,
    /// exit 2), written every --state-interval and at SIGINT/SIGTERM. Each write replaces
    /// FILE atomically (via a temporary file), so even a killed node restarts from its
    /// last write. FILE.lock is held while the node runs: a second node on FILE exits 2.
    #[arg(long, value_name = "FILE")]
    state: Option<std::path::PathBuf>,
    /// Seconds between writes of the --state file.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = kad_tokio::DEFAULT_STATE_INTERVAL.as_secs_f64(),
        requires = "state"
    )]
    state_interval: f64,
    #[command(flatten)]
    tuning: Tuning,
}

/// The Python constructor's tunables. Durations are in seconds, as in Python.
#[derive(Args, Debug)]
struct Tuning {
    /// Wire format: json or bencode (all nodes of a network must agree).
    #[arg(long, value_name = "json|bencode", default_value = "json")]
    codec: Codec,
    /// Accept responses only from the address the request went to.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    verify_response_source: bool,
    /// Bucket size and replication factor.
    #[arg(long, default_value_t = 20)]
    k: usize,
    /// Requests in flight per lookup.
    #[arg(long, default_value_t = 3)]
    alpha: usize,
    /// Seconds to wait for each response.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    query_timeout: f64,
    /// Seconds between stale-bucket refreshes.
    #[arg(long, value_name = "SECS", default_value_t = 3600.0)]
    bucket_refresh_interval: f64,
    /// Seconds a stored value lives.
    #[arg(long, value_name = "SECS", default_value_t = 86410.0)]
    key_expiry_seconds: f64,
    /// Seconds between re-replications of values held for others.
    #[arg(long, value_name = "SECS", default_value_t = 3600.0)]
    non_publisher_restore_interval: f64,
    /// Seconds between republishes of our own values.
    #[arg(long, value_name = "SECS", default_value_t = 86400.0)]
    original_publisher_republish_interval: f64,
    /// Shortest life of a cached copy, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    min_cache_ttl_seconds: f64,
    /// Datagrams handed to the node per pass; more in one pass are dropped and counted.
    #[arg(long, default_value_t = 64)]
    max_dispatch_tasks: usize,
}

#[derive(Args, Debug)]
struct ClientArgs {
    /// Wire format of the network: json or bencode.
    #[arg(long, value_name = "json|bencode", default_value = "json")]
    codec: Codec,
    /// A node of the network (repeatable).
    #[arg(long, value_name = "HOST:PORT", required = true)]
    bootstrap: Vec<String>,
    /// Values are given (put) or printed (get) as hex.
    #[arg(long)]
    hex: bool,
}

#[derive(Args, Debug)]
struct PutArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The key (text).
    key: String,
    /// The value: text, or bytes given as hex with --hex.
    value: String,
}

#[derive(Args, Debug)]
struct GetArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The key (text).
    key: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `node` tells what it does; the others print results (and swarm its own progress).
    let verbose = matches!(cli.command, Command::Node(_));
    init_logs(if verbose { "info" } else { "warn" });
    match cli.command {
        Command::Node(args) => node(args).await,
        Command::Put(args) => put(args).await,
        Command::Get(args) => get(args).await,
        Command::Swarm(args) => swarm::run(args).await,
    }
}

fn init_logs(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn seconds(name: &str, secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|_| format!("--{name}: {secs} is not a duration"))
}

impl Tuning {
    fn builder(&self) -> Result<Builder, String> {
        Ok(KademliaServer::builder()
            .codec(self.codec)
            .verify_response_source(self.verify_response_source)
            .k(self.k)
            .alpha(self.alpha)
            .query_timeout(seconds("query-timeout", self.query_timeout)?)
            .bucket_refresh_interval(seconds(
                "bucket-refresh-interval",
                self.bucket_refresh_interval,
            )?)
            .key_expiry(seconds("key-expiry-seconds", self.key_expiry_seconds)?)
            .non_publisher_restore_interval(seconds(
                "non-publisher-restore-interval",
                self.non_publisher_restore_interval,
            )?)
            .original_publisher_republish_interval(seconds(
                "original-publisher-republish-interval",
                self.original_publisher_republish_interval,
            )?)
            .min_cache_ttl(seconds(
                "min-cache-ttl-seconds",
                self.min_cache_ttl_seconds,
            )?)
            .max_dispatch_tasks(self.max_dispatch_tasks))
    }
}

async fn node(args: NodeArgs) -> ExitCode {
    let mut builder = match args.tuning.builder() {
        Ok(b) => b,
        Err(e) => return fail(2, &e),
    };
    if let Some(path) = &args.state {
        let interval = match seconds("state-interval", args.state_interval) {
            Ok(d) => d,
            Err(e) => return fail(2, &e),
        };
        tracing::info!(path = %path.display(), ?interval, "state file");
        builder = builder.state_file(path).state_interval(interval);
    }
    let server = match builder.listen(args.listen.as_str()).await {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    tracing::info!(addr = %server.local_addr(), id = %server.node_id(), "listening");
    if !args.bootstrap.is_empty() {
        match server.bootstrap(&args.bootstrap).await {
            Ok(n) => tracing::info!(answered = n, "bootstrapped"),
            Err(e) => {
                server.stop().await;
                return fail(2, &e);
            }
        }
    }
    println!("READY {} {}", server.local_addr(), server.node_id());
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.stop().await;
    ExitCode::SUCCESS
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

/// A short-lived node for `put` and `get`: bound on loopback when the network is there,
/// else on every interface, in the bootstrap address's family.
///
/// It only pings the bootstrap nodes instead of running the full bootstrap (a lookup of
/// its own id and of every bucket): the put or get lookup that follows finds what it
/// needs, and a one-shot client need not fill a routing table it is about to drop.
async fn client(args: &ClientArgs) -> Result<KademliaServer, Error> {
    let first = &args.bootstrap[0];
    let addr: SocketAddr = tokio::net::lookup_host(first.as_str())
        .await
        .map_err(|source| Error::Resolve {
            addr: first.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| Error::Resolve {
            addr: first.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })?;
    let bind = match (addr.is_ipv4(), addr.ip().is_loopback()) {
        (true, true) => "127.0.0.1:0",
        (true, false) => "0.0.0.0:0",
        (false, true) => "[::1]:0",
        (false, false) => "[::]:0",
    };
    // A one-shot client: it must not leave a dead entry in every table it touched.
    let server = KademliaServer::builder()
        .codec(args.codec)
        .client_mode(true)
        .listen(bind)
        .await?;
    let pings: Vec<_> = args
        .bootstrap
        .iter()
        .map(|a| {
            let (server, a) = (server.clone(), a.clone());
            tokio::spawn(async move { server.ping(&a).await })
        })
        .collect();
    let mut answered = 0;
    let mut last = None;
    for p in pings {
        match p.await {
            Ok(Ok(_)) => answered += 1,
            Ok(Err(e)) => last = Some(e),
            Err(_) => {}
        }
    }
    if answered > 0 {
        return Ok(server);
    }
    server.stop().await;
    Err(match last {
        // Nobody answered: say so the way `bootstrap` does.
        Some(Error::Query(QueryError::NoResponse)) | None => {
            let mut addrs = Vec::new();
            for a in &args.bootstrap {
                if let Ok(found) = tokio::net::lookup_host(a.as_str()).await {
                    addrs.extend(found.filter(|x| x.is_ipv4() == addr.is_ipv4()));
                }
            }
            Error::BootstrapFailed {
                addrs,
                timeout: kad_tokio::Config::default().query_timeout(),
            }
        }
        Some(e) => e,
    })
}

async fn put(args: PutArgs) -> ExitCode {
    let value: Value = if args.client.hex {
        match decode_hex(&args.value) {
            Some(b) => b.into(),
            None => return fail(2, &"VALUE is not valid hex"),
        }
    } else {
        args.value.into()
    };
    let server = match client(&args.client).await {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    let result = server.set(&args.key, value).await;
    server.stop().await;
    match result {
        Ok(ok) => {
            tracing::info!(replicas = ok.replicas, attempted = ok.attempted, "stored");
            ExitCode::SUCCESS
        }
        Err(e @ Error::Query(QueryError::NotStored)) => fail(1, &e),
        Err(e) => fail(2, &e),
    }
}

async fn get(args: GetArgs) -> ExitCode {
    let server = match client(&args.client).await {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    let result = server.get(&args.key).await;
    server.stop().await;
    let value = match result {
        Ok(Some(v)) => v,
        Ok(None) => return fail(1, &"not found"),
        Err(e) => return fail(2, &e),
    };
    let mut out = std::io::stdout().lock();
    let written = if args.client.hex {
        writeln!(out, "{}", encode_hex(value.as_bytes()))
    } else {
        match &value {
            Value::Text(s) => writeln!(out, "{s}"),
            Value::Bytes(b) => out.write_all(b),
        }
    };
    match written.and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(2, &e),
    }
}

fn fail(code: u8, reason: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("kad: {reason}");
    ExitCode::from(code)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
