//! `kad`: run a Kademlia node, put and get values (plain or signed), or run a local swarm.
//!
//! ```text
//! kad node [--listen IP:PORT] [--bootstrap HOST:PORT]... [--state FILE [--state-interval SECS]]
//!          [--config FILE] [--print-config] [--metrics IP:PORT] [--codec json|bencode]
//!          [tuning flags]
//! kad keygen --out FILE
//! kad put [--codec C] --bootstrap HOST:PORT [--hex] [--json] [--query-timeout SECS] KEY VALUE
//! kad put --sign FILE [--salt S] --seq N [--cas M] --bootstrap HOST:PORT [--hex] [--json] VALUE
//! kad get [--codec C] --bootstrap HOST:PORT [--hex] [--json] [--query-timeout SECS] KEY
//! kad get --public-key HEX [--salt S] --bootstrap HOST:PORT [--hex] [--json]
//! kad swarm [--nodes N] [--keys M] [--codec C] [--json]
//! ```
//!
//! Logs go to stderr (`RUST_LOG` filters them); stdout carries only results.

mod client;
mod config_file;
mod keys;
mod metrics;
mod node;
mod swarm;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

const EXIT_STATUS: &str = "\
EXIT STATUS:
  0  success (put: at least one node stored the value; get: the value was found)
  1  put: no node stored the value; get: not found (or no valid signed record);
     swarm: some key was not found
  2  anything else: bad arguments or input, no bootstrap node answered, a socket,
     state, key or config file error";

#[derive(Parser, Debug)]
#[command(
    name = "kad",
    version,
    about = "A Kademlia DHT node, wire-compatible with kademlia-dynamic 1.1.1",
    after_help = EXIT_STATUS
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
    #[command(after_help = "\
EXIT STATUS:
  0  stopped by SIGINT or SIGTERM (also while still trying to bootstrap)
  2  bad arguments or --config file, cannot listen, state file error")]
    Node(node::NodeArgs),
    /// Make an ed25519 key pair for signed records: writes the secret to FILE (one line of
    /// 64 hex characters, the 32-byte ed25519 seed; mode 0600) and prints the public key
    /// (64 hex characters) for `kad get --public-key`.
    #[command(after_help = "\
EXIT STATUS:
  0  the key file was written
  2  FILE exists or cannot be written")]
    Keygen(keys::KeygenArgs),
    /// Store a value and print what happened (`stored on 20 of 20 closest nodes`). With
    /// --sign, a signed record: prints its key (`sig1:<public key hex>[:<salt hex>]`) on
    /// its first line.
    #[command(
        override_usage = "kad put [OPTIONS] --bootstrap <HOST:PORT> <KEY> <VALUE>\n       \
            kad put --sign <FILE> [--salt <S>] --seq <N> [--cas <M>] [OPTIONS] \
            --bootstrap <HOST:PORT> <VALUE>",
        after_help = "\
EXIT STATUS:
  0  at least one remote node acknowledged the value
  1  no node stored it (with --sign: every node holds a newer version, or --cas failed)
  2  bad arguments, value or key file, or no bootstrap node answered"
    )]
    Put(client::PutArgs),
    /// Print a value (text as UTF-8, bytes raw, or hex with --hex) on stdout and its type
    /// (text or bytes) on stderr. With --public-key, the newest valid signed record.
    #[command(
        override_usage = "kad get [OPTIONS] --bootstrap <HOST:PORT> <KEY>\n       \
            kad get --public-key <HEX> [--salt <S>] [OPTIONS] --bootstrap <HOST:PORT>",
        after_help = "\
EXIT STATUS:
  0  found: the value is on stdout
  1  not found (with --public-key: no valid signed record)
  2  bad arguments, or no bootstrap node answered"
    )]
    Get(client::GetArgs),
    /// Start N nodes on 127.0.0.1 in this process, put M keys from random nodes, get each
    /// from another, and print a table; exits 0 only when every key was found.
    #[command(after_help = "\
EXIT STATUS:
  0  every key was found
  1  some key was not found
  2  the nodes could not be started")]
    Swarm(swarm::SwarmArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `node` tells what it does; the others print results (and swarm its own progress).
    let verbose = matches!(cli.command, Command::Node(_));
    init_logs(if verbose { "info" } else { "warn" });
    match cli.command {
        Command::Node(args) => node::node(args).await,
        Command::Keygen(args) => keys::keygen(args),
        Command::Put(args) => client::put(args).await,
        Command::Get(args) => client::get(args).await,
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

/// A clap value parser for durations given in seconds (`2`, `0.5`).
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s} is not a duration"))
}

fn fail(code: u8, reason: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("kad: {reason}");
    ExitCode::from(code)
}
