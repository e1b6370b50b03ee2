//! A real network: six hosts, each in its own Linux network namespace, joined by veth
//! pairs to a bridge in a seventh ("switch") namespace, each running a `kad node`
//! process. Values put from one host are got from another, then one host is killed
//! (SIGKILL) and every value is got again through the others.
//!
//! The test makes its own namespaces (named after its process id) and creates every
//! interface directly inside them, so no interface and no packet touches the root
//! namespace. Where the kernel has `netem`, each host's interface gets 20 ms of delay
//! and 10% loss, and puts and gets are tried a few times; where it has not, the test
//! says so and runs without.
//!
//! It needs root and a kernel and container that allow `ip netns add`, veth pairs and a
//! bridge; without them it prints `SKIPPED: <reason>` and passes. Once the network is up,
//! any failure of kad is a test failure. Every process it started is killed and every
//! namespace it made is deleted when it ends, also when it fails.
//!
//! `cargo test -p kad-tokio --features cli --test netns -- --nocapture` (as root).

#![cfg(target_os = "linux")]

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KAD: &str = env!("CARGO_BIN_EXE_kad");
const HOSTS: usize = 6;
const KEYS: usize = 10;
const PORT: u16 = 8468;
/// The host whose node is killed; never the only way in for the gets that follow.
const KILLED: usize = 3;
/// Tries per put, get or node start (more than one matters only under netem loss).
const ATTEMPTS: usize = 4;
/// Longest wait for one `kad` command or for a node's READY line.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What the test made: namespaces and `kad node` processes. Dropping it kills the
/// processes first, then deletes the namespaces (which takes their veths and the
/// bridge with them), also when the test panics.
struct Lab {
    /// Prefix of every namespace name, unique to this process.
    prefix: String,
    /// The first three octets of the hosts' /24.
    subnet: String,
    namespaces: Vec<String>,
    nodes: Vec<Option<Child>>,
    logs: PathBuf,
    netem: bool,
}

impl Lab {
    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    fn host(&self, i: usize) -> String {
        format!("{}-h{i}", self.prefix)
    }

    fn ip_of(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    fn addr_of(&self, i: usize) -> String {
        format!("{}:{PORT}", self.ip_of(i))
    }

    fn add_namespace(&mut self, name: String) -> Result<(), String> {
        ip(&["netns", "add", &name])?;
        self.namespaces.push(name);
        Ok(())
    }

    /// The switch namespace with its bridge, and each host namespace with `lo` and an
    /// `eth0` whose peer is a port of the bridge. Any error is about the environment
    /// (privileges, kernel features), not about kad.
    fn build(&mut self) -> Result<(), String> {
        let sw = self.switch();
        self.add_namespace(sw.clone())?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 0..HOSTS {
            let host = self.host(i);
            self.add_namespace(host.clone())?;
            let port = format!("p{i}");
            // Both ends are created inside their namespaces: nothing appears in the
            // root namespace, not even for a moment.
            ip(&[
                "-n", &host, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
            let cidr = format!("{}/24", self.ip_of(i));
            ip(&["-n", &host, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// 20 ms delay and 10% loss on every host's interface, if the kernel has netem.
    /// Returns why not otherwise.
    fn add_netem(&mut self) -> Result<(), String> {
        for i in 0..HOSTS {
            let host = self.host(i);
            run(
                "ip",
                &[
                    "netns", "exec", &host, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                    "delay", "20ms", "loss", "10%",
                ],
            )?;
        }
        self.netem = true;
        Ok(())
    }

    /// Starts `kad node` on host `i` and waits for its READY line.
    fn start_node(&mut self, i: usize, bootstrap: Option<usize>) {
        let host = self.host(i);
        let listen = self.addr_of(i);
        let log_path = self.logs.join(format!("node-{i}.log"));
        let mut args = vec![
            "netns".to_owned(),
            "exec".to_owned(),
            host,
            KAD.to_owned(),
            "node".to_owned(),
            "--listen".to_owned(),
            listen.clone(),
        ];
        if let Some(b) = bootstrap {
            args.push("--bootstrap".to_owned());
            args.push(self.addr_of(b));
        }
        for attempt in 1..=ATTEMPTS {
            let log = File::options()
                .create(true)
                .append(true)
                .open(&log_path)
                .unwrap();
            // `ip netns exec` execs the command: the child is the kad process itself.
            let mut child = Command::new("ip")
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .expect("run ip netns exec kad node");
            let line = read_line_within(child.stdout.take().unwrap(), COMMAND_TIMEOUT);
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.len() == 3 && parts[0] == "READY" {
                assert_eq!(parts[1], listen, "{line:?}");
                self.nodes[i] = Some(child);
                return;
            }
            let _ = child.kill();
            let status = child.wait().unwrap();
            println!("netns: kad node on host {i} not ready (attempt {attempt}, {status})");
        }
        panic!(
            "kad node on host {i} never got ready; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// `kad ARGS` run from host `i`.
    fn kad(&self, i: usize, args: &[&str]) -> (ExitStatus, String, String) {
        let host = self.host(i);
        let mut all = vec!["netns", "exec", &host, KAD];
        all.extend_from_slice(args);
        run_with_timeout("ip", &all, COMMAND_TIMEOUT)
    }

    /// Puts `key`=`value` from host `from` through host `via`; panics if every attempt
    /// fails. Returns the attempts it took.
    fn put(&self, from: usize, via: usize, key: &str, value: &str) -> usize {
        let boot = self.addr_of(via);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let (status, _, err) = self.kad(from, &["put", "--bootstrap", &boot, key, value]);
            if status.success() {
                return attempt;
            }
            last = format!("{status}: {err}");
        }
        panic!("put {key:?} from host {from} via host {via} failed {ATTEMPTS} times; last: {last}");
    }

    /// Gets `key` from host `from` through host `via`: Some(value) or None after every
    /// attempt failed, and the attempts made.
    fn get(&self, from: usize, via: usize, key: &str) -> (Option<String>, usize) {
        let boot = self.addr_of(via);
        for attempt in 1..=ATTEMPTS {
            let (status, out, err) = self.kad(from, &["get", "--bootstrap", &boot, key]);
            if status.success() {
                return (
                    Some(out.strip_suffix('\n').unwrap_or(&out).to_owned()),
                    attempt,
                );
            }
            println!(
                "netns: get {key:?} from host {from} via host {via}, attempt {attempt}: {status}: {}",
                err.trim()
            );
        }
        (None, ATTEMPTS)
    }

    /// SIGKILL for host `i`'s node.
    fn kill_node(&mut self, i: usize) {
        let mut child = self.nodes[i].take().expect("node running");
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Hosts first, the switch last: the reverse of creation.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netns: could not delete namespace {ns}: {e}");
            }
        }
    }
}

/// Runs `program ARGS`; Err carries its stderr (or why it could not run).
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// Runs `program ARGS`, killing it after `timeout`; status, stdout and stderr. Outputs
/// are small here, so waiting before reading cannot block on a full pipe.
fn run_with_timeout(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{program} {}` still running after {timeout:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first line of `stream`, or "" at EOF or after `timeout`.
fn read_line_within(stream: impl Read + Send + 'static, timeout: Duration) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout).unwrap_or_default()
}

fn is_root() -> bool {
    // "Uid:\treal\teffective\tsaved\tfs"
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn namespaces_left(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

fn log_dir(prefix: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(prefix);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn six_hosts_in_network_namespaces() {
    if !is_root() {
        println!("SKIPPED: not root (network namespaces need CAP_SYS_ADMIN)");
        return;
    }
    let pid = std::process::id();
    let prefix = format!("kadnt-{pid}");
    let mut lab = Lab {
        subnet: format!("10.213.{}", pid % 200),
        logs: log_dir(&prefix),
        prefix: prefix.clone(),
        namespaces: Vec::new(),
        nodes: (0..HOSTS).map(|_| None).collect(),
        netem: false,
    };
    if let Err(reason) = lab.build() {
        drop(lab);
        assert!(
            namespaces_left(&prefix).is_empty(),
            "namespaces left behind"
        );
        println!("SKIPPED: cannot build the network: {reason}");
        return;
    }
    let started = Instant::now();
    match lab.add_netem() {
        Ok(()) => println!("netns: netem on every host: 20 ms delay, 10% loss"),
        Err(reason) => {
            println!("netns: the kernel lacks netem ({reason}); running without delay or loss")
        }
    }
    println!(
        "netns: {HOSTS} hosts in {}.0/24 (namespaces {prefix}-h0..h{}, bridge in {prefix}-sw)",
        lab.subnet,
        HOSTS - 1
    );

    lab.start_node(0, None);
    for i in 1..HOSTS {
        lab.start_node(i, Some(0));
    }
    println!(
        "netns: {HOSTS} kad nodes ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let keys: Vec<(String, String)> = (0..KEYS)
        .map(|i| {
            (
                format!("netns key {i}"),
                format!("value {i} put from host {}", i % HOSTS),
            )
        })
        .collect();
    let mut extra_attempts = 0;
    let mut slowest_put = Duration::ZERO;
    let phase = Instant::now();
    for (i, (key, value)) in keys.iter().enumerate() {
        let (from, via) = (i % HOSTS, (i + 1) % HOSTS);
        let t = Instant::now();
        extra_attempts += lab.put(from, via, key, value) - 1;
        slowest_put = slowest_put.max(t.elapsed());
    }

    let puts = phase.elapsed();

    // Each key from a host other than the one that put it, through yet another.
    let phase = Instant::now();
    let mut found = 0;
    for (i, (key, value)) in keys.iter().enumerate() {
        let (from, via) = ((i + 2) % HOSTS, (i + 3) % HOSTS);
        let (got, attempts) = lab.get(from, via, key);
        extra_attempts += attempts - 1;
        match got {
            Some(got) if got == *value => found += 1,
            got => println!("netns: get {key:?} from host {from} via host {via}: {got:?}"),
        }
    }

    let gets = phase.elapsed();

    lab.kill_node(KILLED);
    let phase = Instant::now();
    // Every key again, from and through the hosts still up.
    let alive: Vec<usize> = (0..HOSTS).filter(|&h| h != KILLED).collect();
    let mut found_after = 0;
    for (i, (key, value)) in keys.iter().enumerate() {
        let (from, via) = (alive[i % alive.len()], alive[(i + 1) % alive.len()]);
        let (got, attempts) = lab.get(from, via, key);
        extra_attempts += attempts - 1;
        match got {
            Some(got) if got == *value => found_after += 1,
            got => println!(
                "netns: after the kill, get {key:?} from host {from} via host {via}: {got:?}"
            ),
        }
    }

    let gets_after = phase.elapsed();
    println!(
        "netns: {KEYS} puts in {:.1}s (slowest {:.1}s), {KEYS} gets in {:.1}s, \
         {KEYS} gets after the kill in {:.1}s",
        puts.as_secs_f64(),
        slowest_put.as_secs_f64(),
        gets.as_secs_f64(),
        gets_after.as_secs_f64()
    );
    println!(
        "netns: {HOSTS} hosts, {found}/{KEYS} keys found, {found_after}/{KEYS} after killing host {KILLED} \
         ({}; {extra_attempts} retries; {:.1}s)",
        if lab.netem { "netem 20 ms, 10% loss" } else { "no netem" },
        started.elapsed().as_secs_f64()
    );
    let logs = lab.logs.clone();
    drop(lab);
    let left = namespaces_left(&prefix);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    println!("netns: cleaned up, no {prefix}-* namespace left");
    assert_eq!(
        found,
        KEYS,
        "keys found before the kill; node logs in {}",
        logs.display()
    );
    assert_eq!(
        found_after,
        KEYS,
        "keys found after killing host {KILLED}; node logs in {}",
        logs.display()
    );
}
