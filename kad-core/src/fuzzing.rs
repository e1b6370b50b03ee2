//! Fuzz harness bodies (feature `fuzzing`).
//!
//! The same functions run under cargo-fuzz (`fuzz/`, nightly) and in a plain stable
//! `cargo test` that replays the committed corpus. Each one panics only on a real bug: a
//! decoder that panics, a message that does not survive a round trip, or a node whose
//! invariants break.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::{Result as ArbResult, Unstructured};
use bytes::Bytes;

use crate::wire::{
    Body, FindValueRes, Message, Sender, SenderIp, TxnId, WirePeer, BYTES_MARKER, MAX_IP_LEN,
    MAX_TXN_LEN,
};
use crate::{Codec, Config, Event, Node, NodeId, QueryId, QueryResult, Snapshot, Value};

/// Arbitrary bytes into the JSON decoder: never a panic, and a message that decodes
/// re-encodes to bytes that decode to the same message.
pub fn decode_json(data: &[u8]) {
    decode_reencode(Codec::Json, data);
}

/// Arbitrary bytes into the bencode decoder; as [`decode_json`].
pub fn decode_bencode(data: &[u8]) {
    decode_reencode(Codec::Bencode, data);
}

fn decode_reencode(codec: Codec, data: &[u8]) {
    check_fast_path(codec, data);
    let Ok(msg) = codec.decode(data) else {
        return;
    };
    let mut out = Vec::new();
    codec.encode(&msg, &mut out);
    let again = codec
        .decode(&out)
        .unwrap_or_else(|e| panic!("{codec}: re-encoded message does not decode: {e}\n{msg:?}"));
    assert_eq!(msg, again, "{codec}: message changed in a round trip");
    // Whatever one format accepts must also survive the other one (a node speaks one
    // format, but the fuzzer reaches more message shapes through both decoders).
    check_roundtrip(&msg);
}

/// The codec's fast decoding path, where it gives a result, gives serde's.
fn check_fast_path(codec: Codec, bytes: &[u8]) {
    if let (Some(fast), serde) = codec.decode_both_ways(bytes) {
        assert_eq!(
            fast,
            serde,
            "{codec}: the fast path and serde disagree on {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Structured messages from the fuzzer's bytes: encode, decode, compare, in both formats.
pub fn roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(msg) = message(&mut u, NodeId([0x55; 20])) else {
        return;
    };
    check_roundtrip(&msg);
}

/// Encodes `msg` in both formats and checks what each decodes back to, and that the fast
/// writers write what serde writes.
fn check_roundtrip(msg: &Message) {
    for codec in [Codec::Json, Codec::Bencode] {
        if let (Some(fast), serde) = codec.encode_both_ways(msg, 0) {
            assert_eq!(
                fast.escape_ascii().to_string(),
                serde.escape_ascii().to_string(),
                "{codec}: the fast writer and serde disagree on {msg:?}"
            );
        }
        let mut out = Vec::new();
        codec.encode(msg, &mut out);
        check_fast_path(codec, &out);
        let back = codec.decode(&out);
        if codec == Codec::Bencode && !bencode_can_carry(msg) {
            assert!(
                back.is_err(),
                "bencode: a text field starting with the bytes marker decoded: {msg:?}"
            );
            continue;
        }
        let back = back
            .unwrap_or_else(|e| panic!("{codec}: our own encoding does not decode: {e}\n{msg:?}"));
        assert_eq!(
            expected_after(codec, msg),
            back,
            "{codec}: round trip changed the message"
        );
    }
}

/// Bencode has one string type, so a text field (transaction id, key, sender ip) that
/// starts with the bytes marker reads back as bytes, which these fields refuse. Such a
/// message only exists in JSON: a bencode node never receives one (it cannot decode it),
/// never echoes such a transaction id, and refuses such keys from its user
/// (`KeyError::Reserved`).
fn bencode_can_carry(msg: &Message) -> bool {
    let marked = |s: &str| s.as_bytes().starts_with(BYTES_MARKER);
    let key = match &msg.body {
        Body::Set { key, .. }
        | Body::SetCached { key, .. }
        | Body::CheckStore { key, .. }
        | Body::FindValue { key } => Some(key.as_str()),
        _ => None,
    };
    !marked(msg.txn.as_str()) && !marked(msg.sender.ip.as_str()) && !key.is_some_and(marked)
}

/// What `msg` decodes to after a trip through `codec`: identical, except that in bencode a
/// text value starting with the bytes marker comes back as bytes (a documented property of
/// the reference's format).
fn expected_after(codec: Codec, msg: &Message) -> Message {
    let mut m = msg.clone();
    if codec == Codec::Bencode {
        let fix = |v: &mut Value| {
            if let Value::Text(s) = v {
                if let Some(rest) = s.as_bytes().strip_prefix(BYTES_MARKER) {
                    *v = Value::Bytes(Bytes::copy_from_slice(rest));
                }
            }
        };
        match &mut m.body {
            Body::Set { value, .. } | Body::SetCached { value, .. } => fix(value),
            Body::FindValueRes(FindValueRes::Value(value)) => fix(value),
            _ => {}
        }
    }
    m
}

/// The `arbitrary` crate these harnesses read their input with, for harnesses built on
/// top of them (the network simulation's).
pub use arbitrary;

/// A well-formed request datagram in `codec`, of any kind, as a stranger could send it:
/// sender ids from `ids` (or random ones), keys and values of the fuzzer's choice, except
/// that no key starts with `reserved` (a simulation's own keys, so that its checks stay
/// about honest data).
pub fn forged_request(
    u: &mut Unstructured<'_>,
    codec: Codec,
    ids: &[NodeId],
    reserved: &str,
) -> ArbResult<Vec<u8>> {
    let own = pick_id(u, ids)?;
    let mut msg = message(u, own)?;
    msg.sender.id = pick_id(u, ids)?;
    if !msg.body.is_request() {
        msg.body = Body::Ping;
    }
    if let Body::Set { key, .. }
    | Body::SetCached { key, .. }
    | Body::CheckStore { key, .. }
    | Body::FindValue { key } = &mut msg.body
    {
        if key.starts_with(reserved) {
            key.insert(0, '~');
        }
    }
    let mut out = Vec::new();
    codec.encode(&msg, &mut out);
    Ok(out)
}

/// A forged reply to `request` (a datagram in flight), as if its destination answered:
/// the right transaction id, a reply kind that carries no value (so it can mislead a
/// lookup, never hand out wrong data), peers from `ids` and `addrs` or made up. `None`
/// when `request` is not a request in `codec`.
pub fn forged_reply(
    u: &mut Unstructured<'_>,
    codec: Codec,
    request: &[u8],
    ids: &[NodeId],
    addrs: &[SocketAddr],
) -> ArbResult<Option<Vec<u8>>> {
    let Ok(req) = codec.decode(request) else {
        return Ok(None);
    };
    if !req.body.is_request() {
        return Ok(None);
    }
    let mut peers = Vec::new();
    for _ in 0..u.int_in_range(0u8..=8)? {
        let id = pick_id(u, ids)?;
        let addr = if !addrs.is_empty() && u.arbitrary()? {
            *u.choose(addrs)?
        } else {
            any_addr(u)?
        };
        peers.push(WirePeer { id, addr });
    }
    let body = match (&req.body, u.int_in_range(0u8..=2)?) {
        (_, 0) => match u.int_in_range(0u8..=4)? {
            0 => Body::Pong,
            1 => Body::SetRes,
            2 => Body::SetCachedRes,
            3 => Body::CheckStoreRes {
                has_key: u.arbitrary()?,
            },
            _ => Body::FindNodeRes { peers },
        },
        (Body::Ping, _) => Body::Pong,
        (Body::Set { .. }, _) => Body::SetRes,
        (Body::SetCached { .. }, _) => Body::SetCachedRes,
        (Body::CheckStore { .. }, _) => Body::CheckStoreRes {
            has_key: u.arbitrary()?,
        },
        (Body::FindValue { .. }, _) => Body::FindValueRes(FindValueRes::Peers(peers)),
        _ => Body::FindNodeRes { peers },
    };
    let msg = Message {
        txn: req.txn,
        sender: Sender {
            id: pick_id(u, ids)?,
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED).into(),
            port: u.arbitrary()?,
        },
        body,
        client: false,
    };
    let mut out = Vec::new();
    codec.encode(&msg, &mut out);
    Ok(Some(out))
}

/// Overwrites, removes or inserts a few bytes of a datagram.
pub fn damage(u: &mut Unstructured<'_>, datagram: &mut Vec<u8>) -> ArbResult<()> {
    for _ in 0..u.int_in_range(1u8..=3)? {
        if datagram.is_empty() {
            return Ok(());
        }
        let i = u.choose_index(datagram.len())?;
        match u.int_in_range(0u8..=3)? {
            0 => datagram[i] = u.arbitrary()?,
            1 => datagram.truncate(i),
            2 => datagram.insert(i, u.arbitrary()?),
            _ => {
                datagram.remove(i);
            }
        }
    }
    Ok(())
}

/// One of `ids` (usually) or a random id.
fn pick_id(u: &mut Unstructured<'_>, ids: &[NodeId]) -> ArbResult<NodeId> {
    if ids.is_empty() || u.ratio(1u8, 4)? {
        id(u)
    } else {
        Ok(*u.choose(ids)?)
    }
}

/// A script of inputs into one node: datagrams (garbage, damaged messages, well-formed
/// requests, and responses to what the node actually sent) from a few addresses, clock
/// steps, user commands and restarts from a snapshot, under a fuzzed small config.
///
/// After every input: the node's own invariants hold, everything it sends decodes and fits
/// a datagram, and every event finishes a user query that is running, with a result of
/// that query's kind. At the end the harness stops answering and follows the node's
/// deadlines, as a driver would: every user query must finish, without the node asking to
/// be woken again and again at the same instant (a driver's busy loop).
pub fn node(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(config) = node_config(&mut u) else {
        return;
    };
    let mut h = NodeHarness::new(config);
    for _ in 0..256 {
        if u.is_empty() || h.step(&mut u).is_err() {
            break;
        }
        h.after_input();
    }
    h.wind_down();
}

/// Small limits, so the fuzzer reaches them; every combination the builder accepts.
fn node_config(u: &mut Unstructured<'_>) -> ArbResult<Config> {
    let codec = if u.arbitrary()? {
        Codec::Bencode
    } else {
        Codec::Json
    };
    let k = u.int_in_range(1usize..=6)?;
    let secs = Duration::from_secs;
    let config = Config::builder()
        .codec(codec)
        .k(k)
        .alpha(u.int_in_range(1..=k)?)
        .verify_response_source(!u.ratio(1u8, 8)?)
        .replacement_cache_size(u.int_in_range(0..=3)?)
        .failures_before_eviction(u.int_in_range(1..=3)?)
        .max_records(u.int_in_range(1..=8)?)
        .max_store_bytes(u.int_in_range(1..=4096)?)
        .max_key_bytes(*u.choose(&[8, 64, 1024])?)
        .max_value_bytes(*u.choose(&[16, 256, 2048])?)
        .max_datagram_bytes(*u.choose(&[1200, 1500, 65_507])?)
        .max_pending_requests(u.int_in_range(1..=16)?)
        .max_queued_transmits(u.int_in_range(1..=16)?)
        .max_active_queries(u.int_in_range(1..=8)?)
        .max_concurrent_republish(u.int_in_range(1..=2)?)
        .max_peers_per_ip_per_bucket(u.int_in_range(1..=3)?)
        .max_peers_per_ip(u.int_in_range(1..=8)?)
        .ip_limits_exempt_loopback(u.arbitrary()?)
        .unverified_reply_factor(u.int_in_range(1..=4)?)
        .query_timeout(Duration::from_millis(u.int_in_range(1..=3000)?))
        .bucket_refresh_interval(secs(60))
        .key_expiry(secs(u.int_in_range(1..=600)?))
        .non_publisher_restore_interval(secs(100))
        .original_publisher_republish_interval(secs(200))
        .min_cache_ttl(secs(10))
        // Last, so that older corpus entries keep their meaning (an exhausted input reads 0).
        .request_retries(u.int_in_range(0..=2)?)
        .build();
    config.map_err(|_| arbitrary::Error::IncorrectFormat)
}

/// Our address, and the seed of every node the harness builds.
const OWN_ADDR: ([u8; 4], u16) = ([10, 0, 0, 1], 4000);
const SEED: [u8; 32] = [7; 32];
/// Keys that commands and remote requests share, so that gets meet puts.
const KEYS: [&str; 5] = ["a", "b", "colour", "k7", "\u{e9}t\u{e9}"];
/// Deadline steps the wind-down may take before a user query counts as stuck.
const WIND_DOWN_STEPS: usize = 4000;
/// Consecutive wake-ups at the same instant that count as a busy loop.
const MAX_SAME_INSTANT: usize = 64;

/// What a user command expects to finish with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Ping,
    Bootstrap,
    FindNode,
    FindValue,
    Get,
    Put,
}

struct NodeHarness {
    node: Node,
    config: Config,
    codec: Codec,
    start: Instant,
    now: Instant,
    own: NodeId,
    /// What the node sent recently: (destination, message), to answer realistically.
    sent: Vec<(SocketAddr, Message)>,
    /// User queries running, and what each should finish with.
    running: Vec<(QueryId, Cmd)>,
}

impl NodeHarness {
    fn new(config: Config) -> NodeHarness {
        // The harness needs one real instant as a base; the node only sees offsets from it.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let own = NodeId([0x55; 20]);
        let mut node = Node::new(config.clone(), own, SEED, start);
        node.set_local_addr(SocketAddr::from(OWN_ADDR));
        NodeHarness {
            node,
            codec: config.codec(),
            config,
            start,
            now: start,
            own,
            sent: Vec::new(),
            running: Vec::new(),
        }
    }

    /// One input from the script.
    fn step(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        match u.int_in_range(0u8..=10)? {
            0 => {
                // Raw bytes from some address.
                let from = addr(u)?;
                let len = u.int_in_range(0usize..=200)?;
                let bytes = u.bytes(len)?;
                self.node.handle_datagram(self.now, from, bytes);
            }
            1 => {
                // A well-formed request or stray response, sometimes in the other format.
                let mut msg = message(u, self.own)?;
                let from = addr(u)?;
                if let Some(id) = world_id_of(self.own, from) {
                    if !u.ratio(1u8, 8)? {
                        msg.sender.id = id;
                    }
                }
                let codec = if u.ratio(1u8, 16)? {
                    other(self.codec)
                } else {
                    self.codec
                };
                let mut out = Vec::new();
                codec.encode(&msg, &mut out);
                self.node.handle_datagram(self.now, from, &out);
            }
            2 | 3 => {
                let Some((from, msg)) = self.answer(u)? else {
                    return Ok(());
                };
                let mut out = Vec::new();
                self.codec.encode(&msg, &mut out);
                self.node.handle_datagram(self.now, from, &out);
            }
            4 => {
                // A damaged message: a few bytes overwritten, cut short or inserted.
                let answer = if u.arbitrary()? {
                    self.answer(u)?
                } else {
                    None
                };
                let (from, msg) = match answer {
                    Some(a) => a,
                    None => (addr(u)?, message(u, self.own)?),
                };
                let mut out = Vec::new();
                self.codec.encode(&msg, &mut out);
                damage(u, &mut out)?;
                self.node.handle_datagram(self.now, from, &out);
            }
            5 => {
                let ms = u.int_in_range(0u64..=5_000)?;
                self.now += Duration::from_millis(ms * ms);
                self.node.handle_timeout(self.now);
            }
            6 => {
                // Jump to the node's own deadline, as a driver would.
                if let Some(t) = self.node.poll_timeout() {
                    self.now = self.now.max(t);
                }
                self.node.handle_timeout(self.now);
            }
            7 | 8 => self.command(u)?,
            9 => self.round(u)?,
            _ => {
                if u.ratio(1u8, 4)? {
                    self.restart();
                } else {
                    // Early and repeated timeouts are harmless.
                    self.node.handle_timeout(self.now);
                }
            }
        }
        Ok(())
    }

    fn command(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        let now = self.now;
        let (id, cmd) = match u.int_in_range(0u8..=7)? {
            0 | 1 => {
                let key = key(u)?;
                let value = value(u)?;
                match self.node.put(now, &key, value) {
                    Ok(id) => (id, Cmd::Put),
                    Err(_) => return Ok(()),
                }
            }
            2 => match self.node.get(now, &key(u)?) {
                Ok(id) => (id, Cmd::Get),
                Err(_) => return Ok(()),
            },
            3 => match self.node.find_value(now, &key(u)?) {
                Ok(id) => (id, Cmd::FindValue),
                Err(_) => return Ok(()),
            },
            4 => (
                self.node.find_node(now, peer_id(u, self.own)?),
                Cmd::FindNode,
            ),
            5 => {
                let n = u.int_in_range(0usize..=4)?;
                let addrs = (0..n).map(|_| addr(u)).collect::<ArbResult<Vec<_>>>()?;
                (self.node.bootstrap(now, &addrs), Cmd::Bootstrap)
            }
            6 => (self.node.ping(now, addr(u)?), Cmd::Ping),
            _ => {
                // Read-only calls must not disturb anything.
                let _ = self.node.get_local(now, &key(u)?);
                let _ = self.node.closest_peers(&peer_id(u, self.own)?, 8);
                let _ = self.node.query_stats(now);
                let _ = self.node.stats();
                return Ok(());
            }
        };
        assert!(
            self.running.iter().all(|(q, _)| *q != id),
            "query id {id} handed out twice"
        );
        self.running.push((id, cmd));
        Ok(())
    }

    /// A restart: snapshot, through its byte format, into a new node.
    fn restart(&mut self) {
        let snap = self.node.snapshot(self.now);
        let bytes = snap.to_bytes();
        let back = Snapshot::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("snapshot does not read back: {e}\n{snap:?}"));
        let ms = |d: Duration| d.as_millis();
        assert_eq!(back.id, snap.id);
        assert_eq!(back.peers, snap.peers);
        assert_eq!(back.records.len(), snap.records.len());
        for (a, b) in back.records.iter().zip(&snap.records) {
            assert_eq!((&a.key, &a.value, a.kind), (&b.key, &b.value, b.kind));
            assert_eq!(ms(a.expires_in), ms(b.expires_in));
            assert_eq!(a.republish_in.map(ms), b.republish_in.map(ms));
        }
        let (mut node, _) = Node::restore(self.config.clone(), &back, SEED, self.now);
        node.set_local_addr(SocketAddr::from(OWN_ADDR));
        // Queries do not survive a restart, and the old node's requests are forgotten.
        self.node = node;
        self.running.clear();
        self.sent.clear();
    }

    /// A round of the network: every request the node sent recently gets its natural
    /// answer, from the address it went to, with the id that address has (a few are lost,
    /// and the fuzzer picks the peers, values and flags the answers carry).
    fn round(&mut self, u: &mut Unstructured<'_>) -> ArbResult<()> {
        for (dst, req) in std::mem::take(&mut self.sent) {
            if u.ratio(1u8, 8)? {
                continue;
            }
            let body = match req.body {
                Body::Ping => Body::Pong,
                Body::Set { .. } => Body::SetRes,
                Body::SetCached { .. } => Body::SetCachedRes,
                Body::CheckStore { .. } => Body::CheckStoreRes {
                    has_key: u.arbitrary()?,
                },
                Body::FindValue { .. } if u.ratio(1u8, 4)? => {
                    Body::FindValueRes(FindValueRes::Value(value(u)?))
                }
                Body::FindValue { .. } => {
                    Body::FindValueRes(FindValueRes::Peers(peers(u, self.own)?))
                }
                Body::FindNode { .. } => Body::FindNodeRes {
                    peers: peers(u, self.own)?,
                },
                _ => continue,
            };
            let Some(id) = world_id_of(self.own, dst) else {
                continue;
            };
            let msg = Message {
                txn: req.txn,
                sender: Sender {
                    id,
                    ip: dst.ip().into(),
                    port: dst.port(),
                },
                body,
                client: false,
            };
            let mut out = Vec::new();
            self.codec.encode(&msg, &mut out);
            self.node.handle_datagram(self.now, dst, &out);
        }
        Ok(())
    }

    /// A response to one of the node's recent requests, from the right address (usually)
    /// with its transaction id, of a fuzzer-chosen kind; `None` if it sent nothing yet.
    fn answer(&self, u: &mut Unstructured<'_>) -> ArbResult<Option<(SocketAddr, Message)>> {
        if self.sent.is_empty() {
            return Ok(None);
        }
        let (dst, req) = &self.sent[u.choose_index(self.sent.len())?];
        let from = if u.ratio(1u8, 8)? { addr(u)? } else { *dst };
        let body = match u.int_in_range(0u8..=3)? {
            0 => body(u, self.own)?,
            _ => match req.body {
                Body::Ping => Body::Pong,
                Body::Set { .. } => Body::SetRes,
                Body::SetCached { .. } => Body::SetCachedRes,
                Body::CheckStore { .. } => Body::CheckStoreRes {
                    has_key: u.arbitrary()?,
                },
                Body::FindValue { .. } if u.ratio(1u8, 3)? => {
                    Body::FindValueRes(FindValueRes::Value(value(u)?))
                }
                Body::FindValue { .. } => {
                    Body::FindValueRes(FindValueRes::Peers(peers(u, self.own)?))
                }
                _ => Body::FindNodeRes {
                    peers: peers(u, self.own)?,
                },
            },
        };
        let id = match world_id_of(self.own, from) {
            Some(id) if !u.ratio(1u8, 8)? => id,
            _ => peer_id(u, self.own)?,
        };
        let sender = Sender {
            id,
            ip: from.ip().into(),
            port: from.port(),
        };
        Ok(Some((
            from,
            Message {
                txn: req.txn,
                sender,
                body,
                client: false,
            },
        )))
    }

    /// Checks after every input.
    fn after_input(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            assert!(
                t.payload.len() <= self.config.max_datagram_bytes(),
                "a {}-byte datagram, above the limit",
                t.payload.len()
            );
            let msg = self.codec.decode(&t.payload).unwrap_or_else(|e| {
                panic!(
                    "the node sent what it cannot read itself: {e}\n{}",
                    String::from_utf8_lossy(&t.payload)
                )
            });
            if self.sent.len() >= 32 {
                self.sent.remove(0);
            }
            self.sent.push((t.dst, msg));
        }
        while let Some(event) = self.node.poll_event() {
            // Watch events (off here) are not the harness's business.
            let Event::QueryFinished { id, result, stats } = event else {
                continue;
            };
            let Some(i) = self.running.iter().position(|(q, _)| *q == id) else {
                panic!("event for query {id}, which is not running: {result:?}");
            };
            let (_, cmd) = self.running.swap_remove(i);
            let kind = match result {
                QueryResult::Ping(_) => Cmd::Ping,
                QueryResult::Bootstrap(_) => Cmd::Bootstrap,
                QueryResult::FindNode(_) => Cmd::FindNode,
                QueryResult::FindValue(_) => Cmd::FindValue,
                QueryResult::Get(_) => Cmd::Get,
                QueryResult::Put(_) => Cmd::Put,
            };
            assert_eq!(kind, cmd, "query {id} finished with another kind of result");
            assert!(stats.started <= stats.finished && stats.finished <= self.now);
        }
        if let Err(e) = self.node.check_invariants() {
            panic!("invariant broken: {e}");
        }
        let Some(t) = self.node.poll_timeout() else {
            panic!("no deadline: refresh is periodic");
        };
        assert!(t >= self.start, "deadline before the node started");
    }

    /// Nobody answers any more: follow the node's deadlines until every user query ends.
    fn wind_down(&mut self) {
        let mut same_instant = 0;
        for _ in 0..WIND_DOWN_STEPS {
            if self.running.is_empty() {
                return;
            }
            let Some(t) = self.node.poll_timeout() else {
                panic!("no deadline while queries run");
            };
            if t <= self.now {
                same_instant += 1;
                assert!(
                    same_instant <= MAX_SAME_INSTANT,
                    "busy loop: the node keeps asking to be woken at {:?} and makes no progress",
                    self.now - self.start
                );
            } else {
                same_instant = 0;
                self.now = t;
            }
            self.node.handle_timeout(self.now);
            self.after_input();
        }
        panic!("user queries never finished: {:?}", self.running);
    }
}

fn other(codec: Codec) -> Codec {
    match codec {
        Codec::Json => Codec::Bencode,
        Codec::Bencode => Codec::Json,
    }
}

/// How many addresses the node harness's little world has.
const WORLD: u8 = 32;

/// Address `i` of the node harness's world: two ports on each of twelve IPv4 addresses
/// (the per-IP limits), two IPv6 /64s, loopback, and our own address.
fn world_addr(i: u8) -> SocketAddr {
    let port = 5000 + u16::from(i % 2);
    match i % WORLD {
        i @ 0..=23 => SocketAddr::new(Ipv4Addr::new(10, 0, 0, 2 + i / 2).into(), port),
        i @ 24..=27 => {
            let net = 0xfd00 + u16::from(i / 26);
            SocketAddr::new(Ipv6Addr::new(net, 0, 0, 0, 0, 0, 0, 1).into(), port)
        }
        28 | 29 => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        30 => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
        _ => SocketAddr::from(OWN_ADDR),
    }
}

/// The id the peer at `world_addr(i)` has: our own id with bit `i / 3` flipped, so that
/// three peers share each of the buckets nearest to us (full buckets, splits, evictions).
/// Our own address has our own id.
fn world_id(own: NodeId, i: u8) -> NodeId {
    let i = i % WORLD;
    if world_addr(i) == SocketAddr::from(OWN_ADDR) {
        return own;
    }
    let bit = usize::from(i / 3);
    let mut b = own.0;
    b[bit / 8] ^= 0x80 >> (bit % 8);
    b[19] ^= i;
    NodeId(b)
}

/// The world's id for `addr`, if it is one of the world's addresses.
fn world_id_of(own: NodeId, addr: SocketAddr) -> Option<NodeId> {
    (0..WORLD)
        .find(|&i| world_addr(i) == addr)
        .map(|i| world_id(own, i))
}

/// An address of the world, so that the same peers come back.
fn addr(u: &mut Unstructured<'_>) -> ArbResult<SocketAddr> {
    Ok(world_addr(u.int_in_range(0..=WORLD - 1)?))
}

/// Any address at all, as a peer list may carry (port 0 is skipped by the decoders).
fn any_addr(u: &mut Unstructured<'_>) -> ArbResult<SocketAddr> {
    let ip = if u.arbitrary()? {
        IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?))
    } else {
        IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?))
    };
    Ok(SocketAddr::new(ip, u.int_in_range(1..=u16::MAX)?))
}

fn id(u: &mut Unstructured<'_>) -> ArbResult<NodeId> {
    Ok(NodeId(u.arbitrary()?))
}

/// A peer id: random, one of a few far ids, our own id with one bit flipped (a peer in
/// every bucket), or our own id.
fn peer_id(u: &mut Unstructured<'_>, own: NodeId) -> ArbResult<NodeId> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 | 1 => id(u)?,
        2..=4 => NodeId([u.arbitrary::<u8>()? & 0x0f; 20]),
        5 | 6 => {
            let bit = u.int_in_range(0usize..=159)?;
            let mut b = own.0;
            b[bit / 8] ^= 0x80 >> (bit % 8);
            b[19] ^= u.arbitrary::<u8>()? & 0x03;
            NodeId(b)
        }
        _ => own,
    })
}

fn text(u: &mut Unstructured<'_>, max: usize) -> ArbResult<String> {
    let s: String = u.arbitrary()?;
    Ok(s.chars().take(max).collect())
}

/// Text of at most `max` bytes.
fn text_bytes(u: &mut Unstructured<'_>, max: usize) -> ArbResult<String> {
    let mut s = text(u, max)?;
    while s.len() > max {
        s.pop();
    }
    Ok(s)
}

/// A key: mostly a shared one, else any text, a marked (reserved) or a long one.
fn key(u: &mut Unstructured<'_>) -> ArbResult<String> {
    Ok(match u.int_in_range(0u8..=11)? {
        0..=7 => KEYS[usize::from(u.int_in_range(0u8..=4)?)].to_owned(),
        8 | 9 => text(u, 24)?,
        10 => format!("\0bytes\0{}", text(u, 8)?),
        _ => "x".repeat(u.int_in_range(0usize..=1100)?),
    })
}

/// A value: text or bytes, mostly small, sometimes near the limits.
fn value(u: &mut Unstructured<'_>) -> ArbResult<Value> {
    let big = u.ratio(1u8, 16)?;
    Ok(match (u.arbitrary()?, big) {
        (true, false) => Value::Text(text(u, 64)?),
        (false, false) => {
            let len = u.int_in_range(0usize..=64)?;
            Value::Bytes(Bytes::copy_from_slice(u.bytes(len)?))
        }
        (text, true) => {
            let len = u.int_in_range(0usize..=2100)?;
            let fill = u.arbitrary::<u8>()? & 0x7f;
            if text {
                Value::Text(char::from(fill).to_string().repeat(len))
            } else {
                Value::Bytes(Bytes::from(vec![fill; len]))
            }
        }
    })
}

/// A peers list: mostly peers of the world as they are, some with another id or an
/// address outside the world.
fn peers(u: &mut Unstructured<'_>, own: NodeId) -> ArbResult<Vec<WirePeer>> {
    let n = u.int_in_range(0usize..=12)?;
    (0..n)
        .map(|_| {
            let i = u.int_in_range(0..=WORLD - 1)?;
            Ok(match u.int_in_range(0u8..=7)? {
                0 => WirePeer {
                    id: peer_id(u, own)?,
                    addr: world_addr(i),
                },
                1 => WirePeer {
                    id: peer_id(u, own)?,
                    addr: any_addr(u)?,
                },
                _ => WirePeer {
                    id: world_id(own, i),
                    addr: world_addr(i),
                },
            })
        })
        .collect()
}

fn body(u: &mut Unstructured<'_>, own: NodeId) -> ArbResult<Body> {
    Ok(match u.int_in_range(0u8..=11)? {
        0 => Body::Ping,
        1 => Body::Pong,
        2 => Body::FindNode {
            target: peer_id(u, own)?,
        },
        3 => Body::FindNodeRes {
            peers: peers(u, own)?,
        },
        4 => Body::Set {
            key: key(u)?,
            value: value(u)?,
        },
        5 => Body::SetRes,
        6 => Body::SetCached {
            key: key(u)?,
            value: value(u)?,
            target: peer_id(u, own)?,
        },
        7 => Body::SetCachedRes,
        8 => Body::CheckStore {
            key: key(u)?,
            size: u.arbitrary()?,
        },
        9 => Body::CheckStoreRes {
            has_key: u.arbitrary()?,
        },
        10 => Body::FindValue { key: key(u)? },
        _ => Body::FindValueRes(if u.arbitrary()? {
            FindValueRes::Value(value(u)?)
        } else {
            FindValueRes::Peers(peers(u, own)?)
        }),
    })
}

/// A well-formed message: any kind, any sender, any transaction id.
fn message(u: &mut Unstructured<'_>, own: NodeId) -> ArbResult<Message> {
    let txn = if u.arbitrary()? {
        TxnId::from_u64(u.arbitrary()?)
    } else {
        TxnId::from_str(&text_bytes(u, MAX_TXN_LEN)?).unwrap_or(TxnId::from_u64(0))
    };
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let ip = match u.int_in_range(0u8..=3)? {
        0 => unspecified.into(),
        1 => SenderIp::new(&text_bytes(u, MAX_IP_LEN)?).unwrap_or(unspecified.into()),
        _ => addr(u)?.ip().into(),
    };
    let sender = Sender {
        id: peer_id(u, own)?,
        ip,
        port: u.arbitrary()?,
    };
    Ok(Message {
        txn,
        sender,
        body: body(u, own)?,
        client: false,
    })
}
