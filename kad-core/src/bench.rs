//! Benchmark entry points (feature `bench`): opaque handles over the codec and the routing
//! table, so `benches/` can measure them without the wire types becoming public API.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::routing::Table;
use crate::wire::{Body, Message, Sender, TxnId, WirePeer};
use crate::{Codec, NodeId, Peer, Value};

/// A message ready to be encoded and decoded in a loop.
pub struct CodecCase {
    codec: Codec,
    msg: Message,
    encoded: Vec<u8>,
}

impl CodecCase {
    /// `kind` is one of `ping`, `find_node_res` (20 peers), `set_text`, `set_bytes`.
    pub fn new(codec: Codec, kind: &str) -> CodecCase {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let sender = Sender {
            id: NodeId::random(&mut rng),
            ip: IpAddr::from([127, 0, 0, 1]).into(),
            port: 8000,
        };
        let body = match kind {
            "ping" => Body::Ping,
            "find_node_res" => Body::FindNodeRes {
                peers: (0..20)
                    .map(|i| WirePeer {
                        id: NodeId::random(&mut rng),
                        addr: SocketAddr::from(([10, 0, 0, i as u8 + 1], 8000 + i)),
                    })
                    .collect(),
            },
            "set_text" => Body::Set {
                key: "some key".into(),
                value: Value::Text("a text value of moderate length, with ünïcödé".repeat(4)),
            },
            _ => Body::Set {
                key: "some key".into(),
                value: Value::Bytes(Bytes::from((0..=255u8).collect::<Vec<u8>>())),
            },
        };
        let msg = Message {
            txn: TxnId::from_u64(rng.next_u64()),
            sender,
            body,
            client: false,
        };
        let mut encoded = Vec::new();
        codec.encode(&msg, &mut encoded);
        CodecCase {
            codec,
            msg,
            encoded,
        }
    }

    /// Encodes the message into `out` (cleared first); returns the length.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        out.clear();
        self.codec.encode(&self.msg, out);
        out.len()
    }

    /// Decodes the encoded message; returns true on success.
    pub fn decode(&self) -> bool {
        self.codec.decode(&self.encoded).is_ok()
    }

    /// The encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }
}

/// A routing table and a stream of peers to offer it.
pub struct RoutingCase {
    table: Table,
    peers: Vec<Peer>,
    rng: ChaCha8Rng,
    now: Instant,
}

impl RoutingCase {
    /// A table (k = 20) that has heard from `known` random peers.
    pub fn new(known: usize, now: Instant) -> RoutingCase {
        let mut rng = ChaCha8Rng::seed_from_u64(known as u64);
        let own = NodeId::random(&mut rng);
        let peers: Vec<Peer> = (0..known)
            .map(|i| Peer {
                id: NodeId::random(&mut rng),
                addr: SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4000)),
            })
            .collect();
        let mut table = Table::new(own, 20, 20, 3, now);
        for p in &peers {
            table.on_heard(now, *p, true);
        }
        RoutingCase {
            table,
            peers,
            rng,
            now,
        }
    }

    /// Offers peer `i` (mod the known set) again: a refresh or a replacement-cache visit.
    pub fn insert(&mut self, i: usize) {
        let p = self.peers[i % self.peers.len()];
        self.table.on_heard(self.now, p, true);
    }

    /// The 20 closest to a random target; returns how many were found.
    pub fn closest(&mut self) -> usize {
        let target = NodeId::random(&mut self.rng);
        self.table.closest(&target, 20, None).len()
    }

    /// Peers held by the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when the table holds no peer.
    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }
}

/// One datagram encoded by the real codec, as a load generator sends it: `kind` is `ping`,
/// `pong` or `find_node` (for `target`); `txn` is the transaction id (1 to 32 bytes of text,
/// a response echoes its request's); the sender map says `sender_id` at `sender`. It is
/// padded to at least `min_len` bytes with the `pad` field (0: not padded), as a kad node
/// pads its lookup requests (`Config::pad_requests`) so that a responder's
/// anti-amplification bound lets a whole k-peer answer through. `None` for another kind or
/// an invalid `txn`.
pub fn encode_message(
    codec: Codec,
    kind: &str,
    txn: &str,
    sender_id: NodeId,
    sender: SocketAddr,
    target: NodeId,
    min_len: usize,
) -> Option<Vec<u8>> {
    let body = match kind {
        "ping" => Body::Ping,
        "pong" => Body::Pong,
        "find_node" => Body::FindNode { target },
        _ => return None,
    };
    let msg = Message {
        txn: TxnId::from_str(txn)?,
        sender: Sender {
            id: sender_id,
            ip: sender.ip().into(),
            port: sender.port(),
        },
        body,
        client: false,
    };
    let mut out = Vec::new();
    codec.encode_padded(&msg, min_len, &mut out);
    Some(out)
}

/// What a datagram says, as decoded by the real codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The `type` field: `pong`, `find_node_res`...
    pub kind: &'static str,
    /// The transaction id.
    pub txn: String,
    /// The sender's node id.
    pub sender: NodeId,
    /// Entries of a `peers` list (0 for a message without one).
    pub peers: usize,
}

/// Decodes `bytes` with the real codec; `None` when it is not a valid message.
pub fn decode_message(codec: Codec, bytes: &[u8]) -> Option<Summary> {
    let msg = codec.decode(bytes).ok()?;
    let peers = match &msg.body {
        Body::FindNodeRes { peers } => peers.len(),
        Body::FindValueRes(crate::wire::FindValueRes::Peers(peers)) => peers.len(),
        _ => 0,
    };
    Some(Summary {
        kind: msg.body.type_name(),
        txn: msg.txn.as_str().to_owned(),
        sender: msg.sender.id,
        peers,
    })
}
