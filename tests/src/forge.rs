//! Just enough of both wire formats to write what an attacker sends, by hand: nothing the
//! attacker sends goes through kad-core's encoder. Shared by the attack scenario and the
//! adversary and security tests.

use std::net::SocketAddr;

use kad_core::{Codec, Distance, NodeId};
use rand_chacha::rand_core::RngCore;

/// A wire value.
pub enum W {
    /// A string.
    S(String),
    /// An integer.
    I(u64),
    /// A boolean (JSON true/false, bencode 1/0).
    B(bool),
    /// A list.
    L(Vec<W>),
    /// A dictionary, in the order given.
    D(Vec<(&'static str, W)>),
}

/// A node id as the wire writes it: 40 hex digits.
pub fn hex(id: &NodeId) -> String {
    id.to_string()
}

/// A `peers` entry (or a `sender`).
pub fn peer(id: &NodeId, addr: SocketAddr) -> W {
    W::D(vec![
        ("node_id", W::S(id.to_string())),
        ("ip", W::S(addr.ip().to_string())),
        ("port", W::I(u64::from(addr.port()))),
    ])
}

/// A `peers` list.
pub fn peers(list: &[(NodeId, SocketAddr)]) -> W {
    W::L(list.iter().map(|(id, a)| peer(id, *a)).collect())
}

/// A whole message of type `kind` with transaction id `txn`, from `sender`.
pub fn message(
    codec: Codec,
    kind: &str,
    txn: &str,
    sender: (&NodeId, SocketAddr),
    fields: Vec<(&'static str, W)>,
) -> Vec<u8> {
    let mut all = vec![
        ("type", W::S(kind.to_owned())),
        ("id", W::S(txn.to_owned())),
        ("sender", peer(sender.0, sender.1)),
    ];
    all.extend(fields);
    let msg = W::D(all);
    match codec {
        Codec::Bencode => {
            let mut out = Vec::new();
            bencode(&msg, &mut out);
            out
        }
        _ => {
            let mut out = String::new();
            json(&msg, &mut out);
            out.into_bytes()
        }
    }
}

fn json(w: &W, out: &mut String) {
    match w {
        W::S(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        W::I(n) => out.push_str(&n.to_string()),
        W::B(b) => out.push_str(if *b { "true" } else { "false" }),
        W::L(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json(item, out);
            }
            out.push(']');
        }
        W::D(fields) => {
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json(&W::S((*k).to_owned()), out);
                out.push_str(": ");
                json(v, out);
            }
            out.push('}');
        }
    }
}

fn bencode(w: &W, out: &mut Vec<u8>) {
    match w {
        W::S(s) => {
            out.extend_from_slice(format!("{}:", s.len()).as_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        W::I(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
        // Bencode has no booleans: the reference writes them as integers.
        W::B(b) => out.extend_from_slice(if *b { b"i1e" } else { b"i0e" }),
        W::L(items) => {
            out.push(b'l');
            for item in items {
                bencode(item, out);
            }
            out.push(b'e');
        }
        W::D(fields) => {
            let mut sorted: Vec<&(&str, W)> = fields.iter().collect();
            sorted.sort_by_key(|(k, _)| *k);
            out.push(b'd');
            for (k, v) in sorted {
                bencode(&W::S((*k).to_owned()), out);
                bencode(v, out);
            }
            out.push(b'e');
        }
    }
}

/// A transaction id as kad writes its own: 16 lowercase hex digits.
pub fn txn_hex(v: u64) -> String {
    format!("{v:016x}")
}

/// The transaction id of a datagram, as text.
pub fn txn_of(payload: &[u8]) -> String {
    String::from_utf8_lossy(crate::wire::txn(payload).unwrap_or_default()).into_owned()
}

/// An id sharing exactly `lz` leading bits with `base` (at least 160 bits: `base` itself is
/// never returned, the last byte differs).
pub fn id_at_level(base: &NodeId, lz: usize, rng: &mut impl RngCore) -> NodeId {
    let mut d = [0u8; 20];
    rng.fill_bytes(&mut d);
    for bit in 0..lz.min(160) {
        d[bit / 8] &= !(0x80 >> (bit % 8));
    }
    if lz < 160 {
        d[lz / 8] |= 0x80 >> (lz % 8);
    }
    if d == [0u8; 20] {
        d[19] = 1;
    }
    base.xor(&Distance(d))
}
