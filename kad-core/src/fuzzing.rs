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
    Body, FindValueRes, Message, Sender, TxnId, WirePeer, BYTES_MARKER, MAX_TXN_LEN,
};
use crate::{Codec, Config, Node, NodeId, Value};

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
    let Ok(msg) = codec.decode(data) else {
        return;
    };
    let mut out = Vec::new();
    codec.encode(&msg, &mut out);
    let again = codec
        .decode(&out)
        .unwrap_or_else(|e| panic!("{codec}: re-encoded message does not decode: {e}\n{msg:?}"));
    assert_eq!(msg, again, "{codec}: message changed in a round trip");
}

/// Structured messages from the fuzzer's bytes: encode, decode, compare, in both formats.
pub fn roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(msg) = message(&mut u) else {
        return;
    };
    for codec in [Codec::Json, Codec::Bencode] {
        let mut out = Vec::new();
        codec.encode(&msg, &mut out);
        let back = codec
            .decode(&out)
            .unwrap_or_else(|e| panic!("{codec}: our own encoding does not decode: {e}\n{msg:?}"));
        assert_eq!(
            expected_after(codec, &msg),
            back,
            "{codec}: round trip changed the message"
        );
    }
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

/// A script of inputs into one node: datagrams (garbage, or well-formed requests and
/// responses to what the node actually sent) from a few addresses, clock steps, and user
/// commands. After every input the node's invariants must hold.
pub fn node(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let codec = if u.arbitrary::<bool>().unwrap_or(false) {
        Codec::Bencode
    } else {
        Codec::Json
    };
    // Small limits, so the fuzzer reaches them.
    let config = Config::builder()
        .codec(codec)
        .k(4)
        .alpha(2)
        .replacement_cache_size(2)
        .failures_before_eviction(2)
        .max_records(8)
        .max_store_bytes(4096)
        .max_pending_requests(16)
        .max_queued_transmits(16)
        .max_active_queries(4)
        .max_concurrent_republish(2)
        .query_timeout(Duration::from_secs(2))
        .bucket_refresh_interval(Duration::from_secs(60))
        .key_expiry(Duration::from_secs(300))
        .non_publisher_restore_interval(Duration::from_secs(100))
        .original_publisher_republish_interval(Duration::from_secs(200))
        .min_cache_ttl(Duration::from_secs(10))
        .build()
        .expect("valid fuzz config");
    // The harness needs one real instant as a base; the node only ever sees offsets from it.
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let mut now = start;
    let own = NodeId([0x55; 20]);
    let mut node = Node::new(config, own, [7; 32], now);
    node.set_local_addr(SocketAddr::from(([10, 0, 0, 1], 4000)));
    // What the node sent recently: (destination, message), to answer realistically.
    let mut sent: Vec<(SocketAddr, Message)> = Vec::new();
    for _ in 0..256 {
        let Ok(op) = u.int_in_range(0u8..=6) else {
            break;
        };
        let step = match op {
            0 => {
                // Raw bytes from some address.
                let from = addr(&mut u);
                let len = u.int_in_range(0usize..=200).unwrap_or(0);
                let bytes = u.bytes(len).unwrap_or(&[]);
                node.handle_datagram(now, from, bytes);
                Ok(())
            }
            1 => message(&mut u).map(|msg| {
                let from = addr(&mut u);
                let mut out = Vec::new();
                codec.encode(&msg, &mut out);
                node.handle_datagram(now, from, &out);
            }),
            2 => answer(&mut u, &sent).map(|(from, msg)| {
                let mut out = Vec::new();
                codec.encode(&msg, &mut out);
                node.handle_datagram(now, from, &out);
            }),
            3 => u.int_in_range(0u64..=5_000).map(|ms| {
                now += Duration::from_millis(ms * ms);
                node.handle_timeout(now);
            }),
            4 => {
                // Jump to the node's own deadline, as a driver would.
                if let Some(t) = node.poll_timeout() {
                    now = now.max(t);
                }
                node.handle_timeout(now);
                Ok(())
            }
            5 => command(&mut u, &mut node, now),
            _ => {
                // Early and repeated timeouts are harmless.
                node.handle_timeout(now);
                Ok(())
            }
        };
        if step.is_err() {
            break;
        }
        while let Some(t) = node.poll_transmit() {
            if let Ok(m) = codec.decode(&t.payload) {
                if sent.len() >= 32 {
                    sent.remove(0);
                }
                sent.push((t.dst, m));
            }
        }
        while node.poll_event().is_some() {}
        if let Err(e) = node.check_invariants() {
            panic!("invariant broken: {e}");
        }
        if let Some(t) = node.poll_timeout() {
            // Nothing may be scheduled in the past beyond what is due now.
            assert!(t >= start, "deadline before the node started");
        }
    }
}

fn command(u: &mut Unstructured<'_>, node: &mut Node, now: Instant) -> ArbResult<()> {
    match u.int_in_range(0u8..=5)? {
        0 => {
            let key = text(u, 24)?;
            let value = value(u)?;
            let _ = node.put(now, &key, value);
        }
        1 => {
            let _ = node.get(now, &text(u, 24)?);
        }
        2 => {
            let _ = node.find_value(now, &text(u, 24)?);
        }
        3 => {
            node.find_node(now, id(u)?);
        }
        4 => {
            let addrs = [addr(u), addr(u)];
            node.bootstrap(now, &addrs);
        }
        _ => {
            node.ping(now, addr(u));
        }
    }
    Ok(())
}

/// A response to one of the node's recent requests, from the right address (usually) and
/// with its transaction id, of a fuzzer-chosen kind.
fn answer(
    u: &mut Unstructured<'_>,
    sent: &[(SocketAddr, Message)],
) -> ArbResult<(SocketAddr, Message)> {
    if sent.is_empty() {
        return Err(arbitrary::Error::NotEnoughData);
    }
    let (dst, req) = &sent[u.choose_index(sent.len())?];
    let from = if u.ratio(1u8, 8)? { addr(u) } else { *dst };
    let body = match u.int_in_range(0u8..=3)? {
        0 => match req.body {
            Body::Ping => Body::Pong,
            Body::Set { .. } => Body::SetRes,
            Body::SetCached { .. } => Body::SetCachedRes,
            Body::CheckStore { .. } => Body::CheckStoreRes {
                has_key: u.arbitrary()?,
            },
            Body::FindValue { .. } if u.arbitrary()? => {
                Body::FindValueRes(FindValueRes::Value(value(u)?))
            }
            Body::FindValue { .. } => Body::FindValueRes(FindValueRes::Peers(peers(u)?)),
            _ => Body::FindNodeRes { peers: peers(u)? },
        },
        _ => body(u)?,
    };
    let sender = Sender {
        id: if u.ratio(1u8, 4)? {
            id(u)?
        } else {
            NodeId([u.arbitrary::<u8>()? & 0x0f; 20])
        },
        ip: "10.0.0.9".into(),
        port: from.port(),
    };
    Ok((
        from,
        Message {
            txn: req.txn,
            sender,
            body,
        },
    ))
}

/// An address from a small set, so that the same peers come back.
fn addr(u: &mut Unstructured<'_>) -> SocketAddr {
    let i = u.int_in_range(0u8..=15).unwrap_or(0);
    let ip = if i >= 12 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2 + i % 6))
    };
    SocketAddr::new(ip, 5000 + (i as u16 / 6))
}

fn id(u: &mut Unstructured<'_>) -> ArbResult<NodeId> {
    Ok(NodeId(u.arbitrary()?))
}

fn text(u: &mut Unstructured<'_>, max: usize) -> ArbResult<String> {
    let s: String = u.arbitrary()?;
    Ok(s.chars().take(max).collect())
}

fn value(u: &mut Unstructured<'_>) -> ArbResult<Value> {
    Ok(if u.arbitrary()? {
        Value::Text(text(u, 64)?)
    } else {
        let len = u.int_in_range(0usize..=64)?;
        Value::Bytes(Bytes::copy_from_slice(u.bytes(len)?))
    })
}

fn peers(u: &mut Unstructured<'_>) -> ArbResult<Vec<WirePeer>> {
    let n = u.int_in_range(0usize..=12)?;
    (0..n)
        .map(|_| {
            Ok(WirePeer {
                id: if u.arbitrary()? {
                    id(u)?
                } else {
                    NodeId([u.arbitrary::<u8>()? & 0x0f; 20])
                },
                addr: addr(u),
            })
        })
        .collect()
}

fn body(u: &mut Unstructured<'_>) -> ArbResult<Body> {
    Ok(match u.int_in_range(0u8..=11)? {
        0 => Body::Ping,
        1 => Body::Pong,
        2 => Body::FindNode { target: id(u)? },
        3 => Body::FindNodeRes { peers: peers(u)? },
        4 => Body::Set {
            key: text(u, 32)?,
            value: value(u)?,
        },
        5 => Body::SetRes,
        6 => Body::SetCached {
            key: text(u, 32)?,
            value: value(u)?,
            target: id(u)?,
        },
        7 => Body::SetCachedRes,
        8 => Body::CheckStore {
            key: text(u, 32)?,
            size: u.arbitrary()?,
        },
        9 => Body::CheckStoreRes {
            has_key: u.arbitrary()?,
        },
        10 => Body::FindValue { key: text(u, 32)? },
        _ => Body::FindValueRes(if u.arbitrary()? {
            FindValueRes::Value(value(u)?)
        } else {
            FindValueRes::Peers(peers(u)?)
        }),
    })
}

/// A well-formed message: any kind, any sender, any transaction id.
fn message(u: &mut Unstructured<'_>) -> ArbResult<Message> {
    let txn = if u.arbitrary()? {
        TxnId::from_u64(u.arbitrary()?)
    } else {
        let mut s = text(u, MAX_TXN_LEN)?;
        while s.len() > MAX_TXN_LEN {
            s.pop();
        }
        match TxnId::from_str(&s) {
            Some(t) => t,
            None => TxnId::from_u64(0),
        }
    };
    let sender = Sender {
        id: id(u)?,
        ip: if u.arbitrary()? {
            "0.0.0.0".into()
        } else {
            addr(u).ip().to_string()
        },
        port: u.arbitrary()?,
    };
    Ok(Message {
        txn,
        sender,
        body: body(u)?,
    })
}
