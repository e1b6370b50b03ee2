//! Issue 18's CLI scenario, measured: `--nodes` `kad node` processes on 127.0.0.1, then
//! `--keys` keys each put by a one-shot `kad put` through a random node and got by a
//! `kad get` through another, each process timed from spawn to exit. Prints one line,
//! `cli_scenario nodes=30 keys=30 found=30/30 put_mean_ms=.. get_mean_ms=.. cmd_mean_ms=..
//! cmd_max_ms=.. stored=.. floor_ms=.. join_ms=.. dead=..` (`floor_ms`: a `kad --version`
//! spawn; `--dead N` kills N nodes after they joined, leaving dead entries in the tables),
//! and exits 0 only when every key was found.
//!
//! ```sh
//! cargo build --release -p kad-tokio --features cli --bin kad --example cli_scenario
//! target/release/examples/cli_scenario --nodes 30 --keys 30 --seed 1
//! ```

mod scenario;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Issue 18's CLI scenario: kad nodes, then one-shot kad put / kad get")]
struct Args {
    /// `kad node` processes to start on 127.0.0.1.
    #[arg(long, default_value_t = 30)]
    nodes: usize,
    /// Keys to put, then get.
    #[arg(long, default_value_t = 30)]
    keys: usize,
    /// Nodes to kill (SIGKILL) once all have joined, before the first put: dead entries
    /// in the others' tables. Commands go through live nodes only.
    #[arg(long, default_value_t = 0)]
    dead: usize,
    /// Seed of the choice of bootstrap peers and of the node each command goes through.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `kad` binary (default: `kad` in the directory above this example's, where
    /// `cargo build --bin kad --example cli_scenario` puts both).
    #[arg(long, value_name = "PATH")]
    kad: Option<PathBuf>,
    /// Write each node's stderr to DIR/node-<i>.log (set RUST_LOG for more).
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
    /// Print each command's time.
    #[arg(long)]
    verbose: bool,
    /// Extra arguments for every `kad put` / `kad get`, after `--`.
    #[arg(last = true)]
    client_args: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let kad = match args.kad {
        Some(path) => path,
        None => match std::env::current_exe() {
            Ok(exe) => exe.with_file_name("../kad"),
            Err(e) => {
                eprintln!("cli_scenario: give --kad ({e})");
                return ExitCode::from(2);
            }
        },
    };
    if !kad.is_file() {
        eprintln!(
            "cli_scenario: {} not found: build it (cargo build --release -p kad-tokio \
             --features cli --bin kad) or give --kad",
            kad.display()
        );
        return ExitCode::from(2);
    }
    if let Some(dir) = &args.logs {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("cli_scenario: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    let opts = scenario::Options {
        kad,
        nodes: args.nodes,
        keys: args.keys,
        dead: args.dead,
        seed: args.seed,
        logs: args.logs,
        client_args: args.client_args,
    };
    let summary = match scenario::run(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cli_scenario: {e}");
            return ExitCode::from(2);
        }
    };
    if args.verbose {
        for (i, (put, get)) in summary.puts.iter().zip(&summary.gets).enumerate() {
            eprintln!(
                "key {i}: put {:.1} ms, get {:.1} ms",
                put.as_secs_f64() * 1e3,
                get.as_secs_f64() * 1e3
            );
        }
    }
    for failure in &summary.failures {
        eprintln!("{failure}");
    }
    println!("{summary}");
    if summary.found == summary.keys {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
