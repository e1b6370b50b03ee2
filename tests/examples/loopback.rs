//! Loopback service rate: how many requests per second one node answers, side by side with
//! the machine's limit.
//!
//! ```text
//! cargo run --release -p kad-tests --example loopback -- [--window W] [--seconds D]
//!     [--peers P] [--rounds R] [--codec json|bencode|both] [--kind ping|find_node|both]
//!     [--batch on|off|both]
//! KAD_PYTHON=/path/to/python (with kademlia-dynamic 1.1.1) adds the Python node.
//! ```
//!
//! One generator (this thread, one blocking UDP socket on 127.0.0.1) keeps W requests in
//! flight (default 64) against one target for D seconds (default 3, after a short warm-up)
//! and counts the replies, matched by transaction id. The requests are built by kad-core's
//! own encoder; a `find_node` asks for a different random target each time. The targets,
//! measured one after the other in the same run with the same request bytes:
//!
//! - `echo`: a plain tokio UDP server that sends every datagram back as it came, on its
//!   own thread: the physical limit of this machine for this generator;
//! - `kad-tokio`: a `KademliaServer` on a current-thread tokio runtime of its own, with P
//!   other nodes (default 30) bootstrapped to it, so that a `find_node_res` carries 20 real
//!   peers;
//! - `kad-smol`: the same on smol's global executor (one thread unless `SMOL_THREADS`);
//! - with `--batch on` or `both` (the default), the same three again with the socket's
//!   batched system calls (`recvmmsg`/`sendmmsg`, up to 32 datagrams per call, Linux):
//!   `echo+mmsg` (the adapters' batched I/O, on its own thread, so that the limit stays
//!   honest), `tokio+mmsg` and `smol+mmsg` (nodes built with `batch_io(true)`, the
//!   default). Without the `+mmsg` suffix the nodes are built with `batch_io(false)`,
//!   one system call per datagram, and `echo` is the plain tokio server above;
//! - `python`: with `KAD_PYTHON` set, node 0 of P + 1 kademlia-dynamic nodes started by
//!   `tests/interop/py_node.py`.
//!
//! A kad node answers a large reply to an address it has not verified only after that
//! address answers a ping, so the generator answers pings. Each target is measured R times
//! (default 1) and the median is printed: a table with the rate, the ratio to the echo
//! server (`x echo`: the plain one; `x echo+m`: the batched one), and to the Python node,
//! the CPU time the target's threads spent per reply (from
//! `/proc/.../schedstat`: steadier than the rate on a machine that other work shares), the
//! mean reply size, the mean peers in a reply (every 1024th decoded: a node shortens the
//! peer lists of a source past its reply allowance), and the requests that got no reply
//! within 250 ms (they are sent again).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use kad_core::bench::{decode_message, encode_message};
use kad_core::{Codec, NodeId};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A request without a reply after this long is given up and its slot sent again.
const GIVE_UP: Duration = Duration::from_millis(250);
/// Untimed traffic before each measurement: verification pings, caches, the scheduler.
const WARM_UP: Duration = Duration::from_millis(300);
/// Receive buffer asked for the generator's socket.
const RECV_BUFFER: usize = 4 << 20;
/// How many different `find_node` targets the generator cycles through.
const TARGETS: usize = 256;
/// The placeholder transaction id of a request template (16 hex digits, as kad's own).
const TXN_PLACEHOLDER: &str = "0000000000000000";

struct Args {
    window: usize,
    seconds: f64,
    peers: usize,
    rounds: usize,
    codecs: Vec<Codec>,
    kinds: Vec<Kind>,
    /// The socket modes measured: `false` one datagram per system call, `true` batched.
    batch: Vec<bool>,
    /// Least length of a `find_node` (0: unpadded).
    pad: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ping,
    FindNode,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::FindNode => "find_node",
        }
    }
}

/// The bench's flags, as given; [`Cli::args`] turns them into [`Args`].
#[derive(Parser, Debug)]
#[command(name = "loopback", about = "loopback service rate of one kad node")]
struct Cli {
    /// Requests kept in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    window: u16,
    /// Seconds measured per target, in (0, 3600].
    #[arg(long, default_value_t = 3.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Other nodes bootstrapped to each target.
    #[arg(long, default_value_t = 30)]
    peers: usize,
    /// Measurements per target (the median is printed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Wire codec.
    #[arg(long, value_enum, default_value_t = CodecArg::Both)]
    codec: CodecArg,
    /// Request kind.
    #[arg(long, value_enum, default_value_t = KindArg::Both)]
    kind: KindArg,
    /// Socket mode: batched system calls (on), one datagram a call (off), or both.
    #[arg(long, value_enum, default_value_t = BatchArg::Both)]
    batch: BatchArg,
    /// Pads each `find_node` to at least this many bytes, as kad pads its own lookup
    /// requests (0: unpadded, as a Python node sends them). A node answers a source with at
    /// most `unverified_reply_factor` (4) times the bytes it sent, plus a small allowance a
    /// minute, so an unpadded flood of `find_node`s gets 7-peer answers; 512 earns k peers.
    #[arg(long, default_value_t = 0)]
    pad: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CodecArg {
    Json,
    Bencode,
    Both,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    Ping,
    #[value(name = "find_node")]
    FindNode,
    Both,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BatchArg {
    On,
    Off,
    Both,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if secs > 0.0 && secs <= 3600.0 {
        Ok(secs)
    } else {
        Err("must be in (0, 3600]".into())
    }
}

impl Cli {
    fn args(self) -> Args {
        Args {
            window: usize::from(self.window),
            seconds: self.seconds,
            peers: self.peers,
            rounds: self.rounds as usize,
            codecs: match self.codec {
                CodecArg::Json => vec![Codec::Json],
                CodecArg::Bencode => vec![Codec::Bencode],
                CodecArg::Both => vec![Codec::Json, Codec::Bencode],
            },
            kinds: match self.kind {
                KindArg::Ping => vec![Kind::Ping],
                KindArg::FindNode => vec![Kind::FindNode],
                KindArg::Both => vec![Kind::Ping, Kind::FindNode],
            },
            batch: match self.batch {
                BatchArg::On => vec![true],
                BatchArg::Off => vec![false],
                BatchArg::Both => vec![false, true],
            },
            pad: self.pad,
        }
    }
}

fn main() -> ExitCode {
    let args = Cli::parse().args();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopback: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One row of the table.
struct Row {
    target: &'static str,
    codec: Codec,
    kind: Kind,
    rates: Vec<f64>,
    /// Server CPU time per reply, in microseconds, per round.
    cpu: Vec<f64>,
    /// Bytes and number of the replies counted, over all rounds.
    reply_bytes: u64,
    replies: u64,
    /// Peers in the replies decoded, and how many were decoded, over all rounds.
    peers: u64,
    decoded: u64,
    lost: u64,
}

impl Row {
    fn median(&self) -> f64 {
        median(&self.rates).unwrap_or(0.0)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

fn run(args: &Args) -> Result<(), String> {
    let python = std::env::var_os("KAD_PYTHON");
    let echo = start_echo(false).map_err(|e| format!("echo server: {e}"))?;
    let echo_mmsg = start_echo(true).map_err(|e| format!("batched echo server: {e}"))?;
    let tokio_rt = TokioThread::start().map_err(|e| format!("tokio runtime: {e}"))?;
    let mut rows: Vec<Row> = Vec::new();
    for &codec in &args.codecs {
        eprintln!(
            "{codec}: starting the kad networks ({} peers each)",
            args.peers
        );
        let mut kad_tokio = Vec::new();
        let mut kad_smol = Vec::new();
        for &batch in &args.batch {
            kad_tokio.push(tokio_rt.network(codec, args.peers, batch)?);
            kad_smol.push(smol_network(codec, args.peers, batch)?);
        }
        let python_node = match &python {
            Some(py) => {
                eprintln!("{codec}: starting {} Python nodes", args.peers + 1);
                Some(PythonNodes::start(py, codec, args.peers + 1)?)
            }
            None => None,
        };
        let mut targets: Vec<(&'static str, SocketAddr, Cpu)> = Vec::new();
        for (i, &batch) in args.batch.iter().enumerate() {
            let names = if batch {
                ["echo+mmsg", "tokio+mmsg", "smol+mmsg"]
            } else {
                ["echo", "kad-tokio", "kad-smol"]
            };
            let (echo, echo_cpu) = if batch {
                (echo_mmsg, Cpu::Threads(&["mmsg-echo"]))
            } else {
                (echo, Cpu::Threads(&["echo"]))
            };
            targets.extend([
                (names[0], echo, echo_cpu),
                (names[1], kad_tokio[i].addr, Cpu::Threads(&["kad-tokio"])),
                (
                    names[2],
                    kad_smol[i].addr,
                    Cpu::Threads(&["smol-", "async-io"]),
                ),
            ]);
        }
        if let Some(p) = &python_node {
            targets.push(("python", p.addr, Cpu::Process(p.child.id())));
        }
        let first = rows.len();
        for &kind in &args.kinds {
            for &(name, _, _) in &targets {
                rows.push(Row {
                    target: name,
                    codec,
                    kind,
                    rates: Vec::new(),
                    cpu: Vec::new(),
                    reply_bytes: 0,
                    replies: 0,
                    peers: 0,
                    decoded: 0,
                    lost: 0,
                });
            }
        }
        for round in 0..args.rounds {
            let mut i = first;
            for &kind in &args.kinds {
                // The targets of one codec and kind back to back, so that they share
                // whatever else the machine is doing at the time.
                for (name, addr, cpu) in &targets {
                    let (name, addr) = (*name, *addr);
                    eprintln!(
                        "{codec} {} -> {name} (round {}/{})",
                        kind.name(),
                        round + 1,
                        args.rounds
                    );
                    let m = measure(codec, kind, addr, cpu, args)
                        .map_err(|e| format!("{name} {codec} {}: {e}", kind.name()))?;
                    let row = &mut rows[i];
                    row.rates.push(m.replies as f64 / m.elapsed.as_secs_f64());
                    if let Some(ns) = m.server_cpu_ns {
                        row.cpu.push(ns as f64 / 1000.0 / m.replies.max(1) as f64);
                    }
                    row.reply_bytes += m.reply_bytes;
                    row.replies += m.replies;
                    row.peers += m.peers;
                    row.decoded += m.decoded;
                    row.lost += m.lost;
                    i += 1;
                }
            }
        }
        drop(python_node);
        for network in kad_tokio {
            tokio_rt.stop(network);
        }
        for network in kad_smol {
            smol::block_on(network.stop());
        }
    }
    print_table(args, &rows);
    Ok(())
}

fn print_table(args: &Args, rows: &[Row]) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    println!(
        "window {} | {} s per measurement, median of {} | {} kad peers | load average {load}",
        args.window, args.seconds, args.rounds, args.peers
    );
    println!(
        "{:<10} {:<8} {:<10} {:>11} {:>8} {:>8} {:>9} {:>13} {:>11} {:>6} {:>6}",
        "target",
        "codec",
        "kind",
        "replies/s",
        "x echo",
        "x echo+m",
        "x python",
        "cpu us/reply",
        "reply bytes",
        "peers",
        "late"
    );
    for row in rows {
        let rate = row.median();
        let same = |target: &str| {
            rows.iter()
                .find(|r| r.target == target && r.codec == row.codec && r.kind == row.kind)
                .map(Row::median)
        };
        let ratio = |base: Option<f64>| match base {
            Some(b) if b > 0.0 => format!("{:.2}", rate / b),
            _ => "-".into(),
        };
        println!(
            "{:<10} {:<8} {:<10} {:>11.0} {:>8} {:>8} {:>9} {:>13} {:>11} {:>6} {:>6}",
            row.target,
            row.codec.to_string(),
            row.kind.name(),
            rate,
            ratio(same("echo")),
            ratio(same("echo+mmsg")),
            ratio(same("python")),
            median(&row.cpu).map_or("-".into(), |c| format!("{c:.2}")),
            row.reply_bytes / row.replies.max(1),
            format!("{:.1}", row.peers as f64 / row.decoded.max(1) as f64),
            row.lost,
        );
    }
}

// ---------------------------------------------------------------------------------------
// The generator.

/// What one measurement saw.
struct Measured {
    replies: u64,
    /// CPU time the target's threads used while the replies were counted.
    server_cpu_ns: Option<u64>,
    elapsed: Duration,
    lost: u64,
    /// Bytes of the replies counted, in all.
    reply_bytes: u64,
    /// Peers in the replies decoded, in all, and how many were decoded.
    peers: u64,
    decoded: u64,
}

/// A request with its transaction id at `txn_at..txn_at + 16`.
struct Template {
    bytes: Vec<u8>,
    txn_at: usize,
}

/// One slot of the window: the generation of its request in flight, and when it went.
#[derive(Clone, Copy)]
struct Slot {
    generation: u64,
    sent: Instant,
    template: usize,
}

/// Keeps `args.window` requests in flight against `target` from a fresh socket: warm-up,
/// then `args.seconds` counted.
fn measure(
    codec: Codec,
    kind: Kind,
    target: SocketAddr,
    cpu: &Cpu,
    args: &Args,
) -> io::Result<Measured> {
    let socket = generator_socket()?;
    socket.connect(target)?;
    socket.set_read_timeout(Some(Duration::from_millis(10)))?;
    let local = socket.local_addr()?;
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(local.port()));
    let own_id = NodeId::random(&mut rng);
    let templates = templates(codec, kind, own_id, local, args.pad, &mut rng)?;

    let window = args.window;
    let mut slots = vec![
        Slot {
            generation: 0,
            sent: Instant::now(),
            template: 0,
        };
        window
    ];
    let mut out = Vec::with_capacity(2048);
    let mut buf = vec![0u8; 65_536];
    let mut next_template = 0usize;
    let mut send = |slot: usize, slots: &mut [Slot]| -> io::Result<()> {
        let s = &mut slots[slot];
        s.generation += 1;
        s.sent = Instant::now();
        s.template = next_template;
        next_template = (next_template + 1) % templates.len();
        let t = &templates[s.template];
        out.clear();
        out.extend_from_slice(&t.bytes);
        write_hex(
            &mut out[t.txn_at..t.txn_at + 16],
            (s.generation << 16) | slot as u64,
        );
        send_ignoring_refused(&socket, &out)
    };
    for slot in 0..window {
        send(slot, &mut slots)?;
    }

    let measured = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let mut counting_since: Option<Instant> = None;
    let mut m = Measured {
        replies: 0,
        server_cpu_ns: None,
        elapsed: Duration::ZERO,
        lost: 0,
        reply_bytes: 0,
        peers: 0,
        decoded: 0,
    };
    let mut checked = false;
    let mut since_sweep = 0u32;
    let mut cpu_start = None;
    loop {
        let now = Instant::now();
        match counting_since {
            None if now.duration_since(start) >= WARM_UP => {
                counting_since = Some(now);
                cpu_start = cpu.ns();
                m.lost = 0;
            }
            Some(t) if now.duration_since(t) >= measured => {
                m.elapsed = now.duration_since(t);
                m.server_cpu_ns = cpu
                    .ns()
                    .zip(cpu_start)
                    .map(|(end, start)| end.saturating_sub(start));
                break;
            }
            _ => {}
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionRefused
                ) =>
            {
                m.lost += resend_late(&mut slots, &mut send)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let datagram = &buf[..n];
        let ours = txn(codec, datagram)
            .and_then(parse_hex)
            .map(|v| ((v & 0xffff) as usize, v >> 16))
            .filter(|&(slot, generation)| slot < window && slots[slot].generation == generation);
        let Some((slot, _)) = ours else {
            // Not a reply to a request in flight: a late one, or the node's verification
            // ping, which must be answered for it to send large replies.
            answer_ping(&socket, codec, datagram, own_id, local)?;
            continue;
        };
        if !checked {
            check_reply(codec, kind, target, datagram)?;
            checked = true;
        }
        if counting_since.is_some() {
            m.replies += 1;
            m.reply_bytes += n as u64;
            // Every 1024th counted reply is decoded for its peer count: a node that runs out
            // of a source's reply allowance shortens its peer lists (see
            // `Config::reply_allowance`), so the first reply is not the typical one.
            if m.replies % 1024 == 1 {
                m.peers += peers_in(codec, datagram) as u64;
                m.decoded += 1;
            }
        }
        send(slot, &mut slots)?;
        since_sweep += 1;
        if since_sweep >= 4096 {
            since_sweep = 0;
            m.lost += resend_late(&mut slots, &mut send)?;
        }
    }
    Ok(m)
}

/// A socket on 127.0.0.1 whose receive buffer holds a window of large replies (the
/// default, about 200 KiB, drops some of 64 find_node_res of 2 KB: each costs several KB of
/// buffer).
fn generator_socket() -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // The kernel caps this at net.core.rmem_max; what we get is enough in practice.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    Ok(socket.into())
}

/// The requests the generator cycles through: one ping, or `find_node`s for
/// [`TARGETS`] random ids.
fn templates(
    codec: Codec,
    kind: Kind,
    own_id: NodeId,
    local: SocketAddr,
    pad: usize,
    rng: &mut ChaCha8Rng,
) -> io::Result<Vec<Template>> {
    let count = match kind {
        Kind::Ping => 1,
        Kind::FindNode => TARGETS,
    };
    (0..count)
        .map(|_| {
            let target = NodeId::random(rng);
            let pad = if matches!(kind, Kind::FindNode) {
                pad
            } else {
                0
            };
            let bytes = encode_message(
                codec,
                kind.name(),
                TXN_PLACEHOLDER,
                own_id,
                local,
                target,
                pad,
            )
            .ok_or_else(|| io::Error::other("the encoder refused the request"))?;
            let at = txn(codec, &bytes)
                .map(|t| t.as_ptr() as usize - bytes.as_ptr() as usize)
                .ok_or_else(|| io::Error::other("no transaction id in our own request"))?;
            Ok(Template { bytes, txn_at: at })
        })
        .collect()
}

/// Sends again every slot whose request has waited longer than [`GIVE_UP`]; returns how
/// many.
fn resend_late(
    slots: &mut [Slot],
    send: &mut impl FnMut(usize, &mut [Slot]) -> io::Result<()>,
) -> io::Result<u64> {
    let now = Instant::now();
    let mut late = 0;
    for slot in 0..slots.len() {
        if now.saturating_duration_since(slots[slot].sent) > GIVE_UP {
            late += 1;
            send(slot, slots)?;
        }
    }
    Ok(late)
}

/// The first reply is decoded by kad-core's decoder: it must be the right kind.
fn check_reply(codec: Codec, kind: Kind, target: SocketAddr, datagram: &[u8]) -> io::Result<()> {
    let summary = decode_message(codec, datagram)
        .ok_or_else(|| io::Error::other(format!("undecodable reply from {target}")))?;
    let expected = match kind {
        Kind::Ping => ["pong", "ping"],
        Kind::FindNode => ["find_node_res", "find_node"],
    };
    // The echo server sends the request itself back.
    if !expected.contains(&summary.kind) {
        return Err(io::Error::other(format!(
            "{target} answered a {} with a {}",
            kind.name(),
            summary.kind
        )));
    }
    Ok(())
}

/// The peers a reply lists (0 for one that does not decode).
fn peers_in(codec: Codec, datagram: &[u8]) -> usize {
    decode_message(codec, datagram).map_or(0, |s| s.peers)
}

/// Answers a ping addressed to the generator (a node verifying our address).
fn answer_ping(
    socket: &UdpSocket,
    codec: Codec,
    datagram: &[u8],
    own_id: NodeId,
    local: SocketAddr,
) -> io::Result<()> {
    let Some(summary) = decode_message(codec, datagram) else {
        return Ok(());
    };
    if summary.kind != "ping" {
        return Ok(());
    }
    let Some(pong) = encode_message(codec, "pong", &summary.txn, own_id, local, own_id, 0) else {
        return Ok(());
    };
    send_ignoring_refused(socket, &pong)
}

fn send_ignoring_refused(socket: &UdpSocket, bytes: &[u8]) -> io::Result<()> {
    match socket.send(bytes) {
        Ok(_) => Ok(()),
        // An ICMP error from an earlier datagram (a target still starting); the slot
        // times out and is sent again.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(e),
    }
}

/// The transaction id of a datagram: the first `"id"` string in JSON (whitespace allowed
/// around the colon, as Python writes it), the first `2:id` key in bencode.
fn txn(codec: Codec, datagram: &[u8]) -> Option<&[u8]> {
    match codec {
        Codec::Json => {
            let at = find(datagram, b"\"id\"")? + 4;
            let rest = skip_ws(&datagram[at..]);
            let rest = skip_ws(rest.strip_prefix(b":")?);
            let rest = rest.strip_prefix(b"\"")?;
            let end = rest.iter().position(|&b| b == b'"')?;
            Some(&rest[..end])
        }
        _ => {
            let at = find(datagram, b"2:id")? + 4;
            let rest = &datagram[at..];
            let colon = rest.iter().take(6).position(|&b| b == b':')?;
            let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
            rest.get(colon + 1..colon + 1 + len)
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn write_hex(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.len() != 16 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some((v << 4) | u64::from(d))
    })
}

/// Where to read a target's CPU time: threads of this process by name prefix, or every
/// thread of another process.
enum Cpu {
    Threads(&'static [&'static str]),
    Process(u32),
}

impl Cpu {
    /// Nanoseconds on a CPU so far (`/proc/.../schedstat`), summed over the threads;
    /// `None` where there is no such file.
    fn ns(&self) -> Option<u64> {
        let (dir, prefixes) = match self {
            Cpu::Threads(prefixes) => ("/proc/self/task".to_string(), *prefixes),
            Cpu::Process(pid) => (format!("/proc/{pid}/task"), &[""][..]),
        };
        let mut total = None;
        for task in std::fs::read_dir(dir).ok()?.flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if !prefixes.iter().any(|p| comm.starts_with(p)) {
                continue;
            }
            let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
            if let Some(ns) = stat
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
            {
                total = Some(total.unwrap_or(0) + ns);
            }
        }
        total
    }
}

// ---------------------------------------------------------------------------------------
// The targets.

/// A UDP echo server on a thread of its own (a current-thread tokio runtime); runs until
/// the process exits. Plain tokio (`recv_from`, `send_to`), or with `batched` the adapters'
/// batched system calls (`recvmmsg`/`sendmmsg`, through `kad_tokio::bench::echo`).
fn start_echo(batched: bool) -> io::Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    let addr = socket.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let name = if batched { "mmsg-echo" } else { "echo" };
    thread::Builder::new().name(name.into()).spawn(move || {
        rt.block_on(async move {
            let Ok(socket) = tokio::net::UdpSocket::from_std(socket) else {
                return;
            };
            if batched {
                if let Err(e) = kad_tokio::bench::echo(socket, true).await {
                    eprintln!("batched echo server: {e}");
                }
                return;
            }
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let _ = socket.send_to(&buf[..n], from).await;
            }
        })
    })?;
    Ok(addr)
}

/// A kad network: the target node and the peers that joined through it.
struct Network<S> {
    addr: SocketAddr,
    nodes: Vec<S>,
}

/// A current-thread tokio runtime on a thread of its own, for the kad-tokio nodes.
struct TokioThread {
    handle: tokio::runtime::Handle,
}

impl TokioThread {
    fn start() -> io::Result<TokioThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        thread::Builder::new()
            .name("kad-tokio".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
        Ok(TokioThread { handle })
    }

    /// Runs `fut` on the runtime's thread and waits for its result.
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| "the kad-tokio runtime is gone".to_string())
    }

    fn network(
        &self,
        codec: Codec,
        peers: usize,
        batch: bool,
    ) -> Result<Network<kad_tokio::KademliaServer>, String> {
        self.run(async move {
            let listen = || {
                kad_tokio::KademliaServer::builder()
                    .codec(codec)
                    .batch_io(batch)
                    .listen_default()
            };
            let target = listen().await.map_err(|e| e.to_string())?;
            let addr = target.local_addr();
            let mut nodes = vec![target];
            for _ in 0..peers {
                let node = listen().await.map_err(|e| e.to_string())?;
                node.bootstrap(&[addr.to_string()])
                    .await
                    .map_err(|e| e.to_string())?;
                nodes.push(node);
            }
            let known = nodes[0].peers().await.map_err(|e| e.to_string())?.len();
            eprintln!("kad-tokio {codec} (batch_io {batch}): the target knows {known} peers");
            Ok(Network { addr, nodes })
        })?
    }

    fn stop(&self, network: Network<kad_tokio::KademliaServer>) {
        let _ = self.run(async move {
            for node in network.nodes {
                node.stop().await;
            }
        });
    }
}

/// The same network on smol's global executor.
fn smol_network(
    codec: Codec,
    peers: usize,
    batch: bool,
) -> Result<Network<kad_smol::KademliaServer>, String> {
    smol::block_on(async move {
        let listen = || {
            kad_smol::KademliaServer::builder()
                .codec(codec)
                .batch_io(batch)
                .listen_default()
        };
        let target = listen().await.map_err(|e| e.to_string())?;
        let addr = target.local_addr();
        let mut nodes = vec![target];
        for _ in 0..peers {
            let node = listen().await.map_err(|e| e.to_string())?;
            node.bootstrap(&[addr.to_string()])
                .await
                .map_err(|e| e.to_string())?;
            nodes.push(node);
        }
        let known = nodes[0].peers().await.map_err(|e| e.to_string())?.len();
        eprintln!("kad-smol {codec} (batch_io {batch}): the target knows {known} peers");
        Ok(Network { addr, nodes })
    })
}

impl Network<kad_smol::KademliaServer> {
    async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}

/// kademlia-dynamic nodes run by `tests/interop/py_node.py`; node 0 is the target (the
/// others joined through it). Stopped when dropped.
struct PythonNodes {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl PythonNodes {
    fn start(python: &std::ffi::OsStr, codec: Codec, nodes: usize) -> Result<Self, String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/py_node.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--codec", &codec.to_string(), "--nodes", &nodes.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.to_string_lossy()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("py_node.py: {e}"))?;
        let mut me = PythonNodes {
            child,
            stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let ready: serde_json::Value = serde_json::from_str(&line)
            .map_err(|_| format!("py_node.py did not start (it printed {line:?})"))?;
        let port = ready["nodes"][0]["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("py_node.py: no port in {line:?}"))?;
        me.addr.set_port(port);
        Ok(me)
    }
}

impl Drop for PythonNodes {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{{\"op\": \"quit\"}}");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
