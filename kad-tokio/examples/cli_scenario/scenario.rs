//! Issue 18's CLI scenario: `kad node` processes on 127.0.0.1, then keys put and got by
//! one-shot `kad put` / `kad get` processes through random nodes, as a user scripting the
//! CLI would. Shared by the `cli_scenario` example (the measurement) and the
//! `cli_scenario` test (a short run in CI, no timing asserted).

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How long a node may take to print `READY`.
const READY_WAIT: Duration = Duration::from_secs(30);
/// How long one `kad put` / `kad get` may run before it is killed and counted as failed.
const COMMAND_WAIT: Duration = Duration::from_secs(60);
/// `kad --version` spawns timed for the floor (the cost of starting a process).
const FLOOR_RUNS: usize = 10;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `kad` binary.
    pub kad: PathBuf,
    /// `kad node` processes to start.
    pub nodes: usize,
    /// Keys to put and then get.
    pub keys: usize,
    /// Nodes killed (SIGKILL) once all have joined, before the first put: they stay in
    /// the others' tables as dead entries. Commands go through the live ones only.
    pub dead: usize,
    /// Chooses the bootstrap peers, and the node each put and get goes through.
    pub seed: u64,
    /// Each node's stderr goes to `DIR/node-<i>.log` (else it is discarded).
    pub logs: Option<PathBuf>,
    /// Extra arguments for every `kad put` / `kad get` (e.g. `--query-timeout 0.5`).
    pub client_args: Vec<String>,
}

/// What one run measured (wall time of each process, spawn to exit).
#[derive(Debug, Clone)]
pub struct Summary {
    /// Nodes started.
    pub nodes: usize,
    /// Keys put.
    pub keys: usize,
    /// Nodes killed after joining.
    pub dead: usize,
    /// Keys whose `kad get` printed the value that was put.
    pub found: usize,
    /// Puts that exited 0.
    pub stored: usize,
    /// Duration of each `kad put`, in key order.
    pub puts: Vec<Duration>,
    /// Duration of each `kad get`, in key order.
    pub gets: Vec<Duration>,
    /// Mean duration of a `kad --version` spawn: the floor of any command.
    pub floor: Duration,
    /// Time from the first spawn to the last node's `READY`.
    pub join: Duration,
    /// One line per command that failed or printed something unexpected.
    pub failures: Vec<String>,
}

impl fmt::Display for Summary {
    /// The summary line: `cli_scenario nodes=.. keys=.. found=../.. put_mean_ms=..
    /// get_mean_ms=.. cmd_mean_ms=.. cmd_max_ms=.. ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<Duration> = self.puts.iter().chain(&self.gets).copied().collect();
        let max = all.iter().max().copied().unwrap_or_default();
        write!(
            f,
            "cli_scenario nodes={} keys={} found={}/{} put_mean_ms={:.1} get_mean_ms={:.1} \
             cmd_mean_ms={:.1} cmd_max_ms={:.1} stored={}/{} floor_ms={:.1} join_ms={:.0} dead={}",
            self.nodes,
            self.keys,
            self.found,
            self.keys,
            ms(mean(&self.puts)),
            ms(mean(&self.gets)),
            ms(mean(&all)),
            ms(max),
            self.stored,
            self.keys,
            ms(self.floor),
            ms(self.join),
            self.dead,
        )
    }
}

/// Runs the scenario. Every child is killed before this returns, also on error or panic.
pub fn run(opts: &Options) -> Result<Summary, String> {
    if opts.dead >= opts.nodes {
        return Err("--dead must leave at least one node alive".into());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let floor = floor(&opts.kad)?;

    let started = Instant::now();
    let mut nodes = Nodes::default();
    for i in 0..opts.nodes {
        // Each node joins through up to two random nodes already up.
        let mut args = vec!["node".to_owned(), "--listen".into(), "127.0.0.1:0".into()];
        for _ in 0..i.min(2) {
            let peer = pick(&mut rng, i, None);
            args.push("--bootstrap".into());
            args.push(nodes.addrs[peer].clone());
        }
        let stderr = match &opts.logs {
            Some(dir) => {
                let path = dir.join(format!("node-{i}.log"));
                let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                Stdio::from(file)
            }
            None => Stdio::null(),
        };
        nodes.start(&opts.kad, &args, stderr)?;
    }
    let join = started.elapsed();
    // Killed at random; the commands then pick among the live ones.
    let mut live: Vec<usize> = (0..opts.nodes).collect();
    for _ in 0..opts.dead {
        let i = live.remove(pick(&mut rng, live.len(), None));
        nodes.kill(i);
    }

    let pairs: Vec<(String, String)> = (0..opts.keys)
        .map(|i| {
            (
                format!("key-{}-{i}", opts.seed),
                format!("value-{}-{i}", opts.seed),
            )
        })
        .collect();
    let mut summary = Summary {
        nodes: opts.nodes,
        keys: opts.keys,
        dead: opts.dead,
        found: 0,
        stored: 0,
        puts: Vec::new(),
        gets: Vec::new(),
        floor,
        join,
        failures: Vec::new(),
    };
    let mut put_via = Vec::new();
    for (key, value) in &pairs {
        let via = live[pick(&mut rng, live.len(), None)];
        put_via.push(via);
        let mut args = vec!["put", "--bootstrap", &nodes.addrs[via]];
        args.extend(opts.client_args.iter().map(String::as_str));
        args.extend([key.as_str(), value.as_str()]);
        let out = command(&opts.kad, &args)?;
        summary.puts.push(out.took);
        if out.status.success() {
            summary.stored += 1;
        } else {
            summary.failures.push(out.describe("put", key));
        }
    }
    for ((key, value), &put) in pairs.iter().zip(&put_via) {
        // Another node than the one the put went through, when there is one.
        let put = live.iter().position(|&i| i == put).expect("a live node");
        let via = live[pick(&mut rng, live.len(), (live.len() > 1).then_some(put))];
        let mut args = vec!["get", "--bootstrap", &nodes.addrs[via]];
        args.extend(opts.client_args.iter().map(String::as_str));
        args.push(key.as_str());
        let out = command(&opts.kad, &args)?;
        summary.gets.push(out.took);
        if out.status.success() && out.stdout == format!("{value}\n") {
            summary.found += 1;
        } else {
            summary.failures.push(out.describe("get", key));
        }
    }
    drop(nodes);
    Ok(summary)
}

/// A node index below `n`, other than `not`.
fn pick(rng: &mut ChaCha8Rng, n: usize, not: Option<usize>) -> usize {
    loop {
        let i = (rng.next_u64() % n as u64) as usize;
        if Some(i) != not {
            return i;
        }
    }
}

/// The mean time of a `kad --version` spawn.
fn floor(kad: &Path) -> Result<Duration, String> {
    let mut times = Vec::new();
    for _ in 0..FLOOR_RUNS {
        let out = command(kad, &["--version"])?;
        if !out.status.success() {
            return Err(out.describe("--version", ""));
        }
        times.push(out.took);
    }
    Ok(mean(&times))
}

/// The running `kad node` processes and their addresses; dropping it kills them all
/// (on a normal end, an error or a panic alike).
#[derive(Default)]
struct Nodes {
    children: Vec<(Child, ChildStdout)>,
    addrs: Vec<String>,
}

impl Nodes {
    /// Starts `kad ARGS` and waits for its `READY <addr> <id>` line.
    fn start(&mut self, kad: &Path, args: &[String], stderr: Stdio) -> Result<(), String> {
        let mut child = Command::new(kad)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("{}: {e}", kad.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // Held by the guard before the wait, so a node that never says READY is killed.
        let index = self.children.len();
        let (tx, rx) = mpsc::channel();
        // A thread reads the line, so the wait has a deadline; it hands the pipe back, and
        // the guard keeps it open (a node that cannot write its stdout would fail).
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line);
            let _ = tx.send((read.map(|_| line), reader.into_inner()));
        });
        let (line, stdout) = match rx.recv_timeout(READY_WAIT) {
            Ok((Ok(line), stdout)) => (line, stdout),
            Ok((Err(e), _)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("node {index}: reading stdout: {e}"));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("node {index}: no READY within {READY_WAIT:?}"));
            }
        };
        self.children.push((child, stdout));
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("READY"), Some(addr)) => {
                self.addrs.push(addr.to_owned());
                Ok(())
            }
            _ => Err(format!("node {index}: expected READY, got {line:?}")),
        }
    }
}

impl Nodes {
    /// Kills node `i` (SIGKILL: it says goodbye to nobody).
    fn kill(&mut self, i: usize) {
        let (child, _) = &mut self.children[i];
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
        }
        for (child, _) in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// One finished command.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Finished {
    fn describe(&self, what: &str, key: &str) -> String {
        format!(
            "{what} {key}: {} after {:.0} ms, stdout {:?}, stderr {:?}",
            self.status,
            ms(self.took),
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `kad ARGS` to its end (killed after [`COMMAND_WAIT`]), timed from spawn to exit.
fn command(kad: &Path, args: &[&str]) -> Result<Finished, String> {
    let start = Instant::now();
    let mut child = Command::new(kad)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", kad.display()))?;
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    // Polled, so a hung command is killed; the 1 ms step is well below what is measured.
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < COMMAND_WAIT => thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = child.kill();
                break child.wait().map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let took = start.elapsed();
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        took,
    })
}

/// Reads a pipe to its end on a thread of its own (so neither pipe can fill and block).
fn read_all(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn mean(times: &[Duration]) -> Duration {
    match u32::try_from(times.len()) {
        Ok(0) | Err(_) => Duration::ZERO,
        Ok(n) => times.iter().sum::<Duration>() / n,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
