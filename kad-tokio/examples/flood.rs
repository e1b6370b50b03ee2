//! Flood bench (issue 6): one kad node on 127.0.0.1 takes a flood of garbage and of
//! junk requests (well-formed `find_node`s and `set`s from ever-new ids and ports) at the
//! fastest rate loopback senders reach, while a client keeps pinging it and getting a key
//! from it. Prints what the node handled and dropped, the fraction of the client's pings
//! and gets answered, and the process's peak memory.
//!
//! ```text
//! cargo run --release -p kad-tokio --example flood -- [--secs S] [--senders N] [--batch-io 0|1]
//! ```
//!
//! `--batch-io 0` builds both nodes with `batch_io(false)` (one system call per datagram),
//! to compare with the default, batched `recvmmsg`/`sendmmsg`.
//!
//! A bench, not a test: the numbers depend on the machine and its load.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kad_tokio::KademliaServer;

/// The flood bench's flags.
#[derive(Parser, Debug)]
#[command(name = "flood", about = "one kad node under a flood of junk")]
struct Args {
    /// How long the flood lasts, in seconds.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Threads sending the flood.
    #[arg(long, default_value_t = 2)]
    senders: usize,
    /// 1: batched socket calls (the default); 0: one system call per datagram.
    #[arg(long = "batch-io", default_value_t = 1)]
    batch_io: u64,
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A cheap deterministic generator for the junk (no rand dependency in an example).
struct Junk(u64);

impl Junk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn hex40(&mut self) -> String {
        let (a, b, c) = (self.next(), self.next(), self.next() as u32);
        format!("{a:016x}{b:016x}{c:08x}")
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let (secs, senders, batch_io) = (args.secs, args.senders, args.batch_io != 0);
    let target = KademliaServer::builder()
        .batch_io(batch_io)
        .listen("127.0.0.1:0")
        .await
        .expect("listen");
    let client = KademliaServer::builder()
        .batch_io(batch_io)
        .query_timeout(Duration::from_millis(500))
        .listen("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = target.local_addr();
    client
        .bootstrap(&[addr.to_string()])
        .await
        .expect("bootstrap");
    target.set("canary", "still here").await.expect("set");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for s in 0..senders {
        let (stop, sent) = (stop.clone(), sent.clone());
        threads.push(std::thread::spawn(move || {
            let mut junk = Junk(0x9e37_79b9_7f4a_7c15 ^ (s as u64 + 1));
            // A handful of sockets per sender: junk requests from many ports.
            let socks: Vec<UdpSocket> = (0..8)
                .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
                .collect();
            let garbage = [b'x'; 200];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let sock = &socks[(junk.next() % socks.len() as u64) as usize];
                let port = sock.local_addr().map(|a| a.port()).unwrap_or(0);
                let payload = match junk.next() % 3 {
                    0 => garbage.to_vec(),
                    1 => format!(
                        r#"{{"type":"find_node","id":"{:016x}","target":"{}","sender":{{"node_id":"{}","ip":"127.0.0.1","port":{port}}}}}"#,
                        junk.next(),
                        junk.hex40(),
                        junk.hex40()
                    )
                    .into_bytes(),
                    _ => format!(
                        r#"{{"type":"set","id":"{:016x}","key":"junk-{}","value":"{}","sender":{{"node_id":"{}","ip":"127.0.0.1","port":{port}}}}}"#,
                        junk.next(),
                        junk.next(),
                        "j".repeat(100),
                        junk.hex40()
                    )
                    .into_bytes(),
                };
                if sock.send_to(&payload, addr).is_ok() {
                    n += 1;
                }
            }
            sent.fetch_add(n, Ordering::Relaxed);
        }));
    }

    let started = Instant::now();
    let (mut pings, mut ping_ok, mut gets, mut get_ok) = (0u64, 0u64, 0u64, 0u64);
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        pings += 1;
        if client.ping(&addr.to_string()).await.is_ok() {
            ping_ok += 1;
        }
        gets += 1;
        if let Ok(Some(v)) = client.find_value("canary").await.map(|(v, _)| v) {
            if v == "still here".into() {
                get_ok += 1;
            }
        }
        slowest = slowest.max(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("sender");
    }
    let st = target.stats().await.expect("stats");
    let sent = sent.load(Ordering::Relaxed);
    let held = target.get_local("canary").await.expect("local");
    println!("flood bench: {secs} s, {senders} sender threads, target {addr}, batch_io {batch_io}");
    println!("{:<34} {}", "datagrams sent by the flood", sent);
    println!(
        "{:<34} {:.0}/s",
        "flood rate",
        sent as f64 / started.elapsed().as_secs_f64()
    );
    println!(
        "{:<34} {}",
        "handled by the node", st.core.datagrams_received
    );
    println!(
        "{:<34} {} ({} capped passes)",
        "dropped by the driver", st.datagrams_dropped, st.capped_passes
    );
    println!("{:<34} {}", "malformed", st.core.malformed);
    println!(
        "{:<34} {} answered, {} held for verification, {} refused",
        "junk requests", st.core.requests_answered, st.core.replies_held, st.core.requests_refused
    );
    println!(
        "{:<34} {ping_ok}/{pings} ({:.1}%)",
        "client pings answered",
        100.0 * ping_ok as f64 / pings.max(1) as f64
    );
    println!(
        "{:<34} {get_ok}/{gets} ({:.1}%)",
        "client find_value answered",
        100.0 * get_ok as f64 / gets.max(1) as f64
    );
    println!("{:<34} {slowest:?}", "slowest client round");
    println!(
        "{:<34} {}",
        "canary record kept",
        held.is_some_and(|v| v == "still here".into())
    );
    println!("{:<34} {:.0} MB", "peak RSS (whole process)", peak_rss_mb());
    client.stop().await;
    target.stop().await;
}
