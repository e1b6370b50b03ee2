//! The kademlia-dynamic wire protocol: messages and their two encodings.
//!
//! These types stay inside the crate: users see [`crate::NodeId`], [`crate::Value`] and
//! [`crate::Peer`], never a wire struct. `docs/PROTOCOL.md` describes the protocol.
//!
//! Two paths do the work. The serde path ([`de`] reads, `ser` writes, through
//! `serde_json` and `bt_bencode`) is the definition of what we accept and write. The fast
//! path (`fast`, hand-written) writes the same bytes and reads the usual messages with
//! the same result, in a fraction of the instructions; it gives up on anything unusual,
//! which the serde path then decides. `--cfg kad_serde_wire` builds without the fast path.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::{NodeId, Value};

mod bencode;
mod de;
#[cfg(not(kad_serde_wire))]
mod fast;
mod json;
// The encoder without the fast path; beside it, the reference its writers are held to.
#[cfg(any(kad_serde_wire, test, feature = "fuzzing"))]
mod ser;

#[cfg(not(kad_serde_wire))]
use fast::{ip_text_len, parse_ip};

/// Most peers a decoder keeps from one `peers` list; the rest are ignored.
pub(crate) const MAX_PEERS_PER_MESSAGE: usize = 256;
/// Longest transaction id we accept (the reference sends 16 hex characters).
pub const MAX_TXN_LEN: usize = 32;
/// Room reserved per `peers` entry: an IPv4 entry takes 76 to 91 bytes in either format.
pub(crate) const PEER_BYTES: usize = 96;
/// The same for an IPv6 entry (up to 24 more characters of address).
pub(crate) const PEER_BYTES_V6: usize = 120;
/// Room for everything of a peer-list reply but its peers (type, id, sender, keys).
pub(crate) const REPLY_ENVELOPE_BYTES: usize = 160;
/// The name of the field that pads a request (see [`Codec::encode_padded`]).
pub(crate) const PAD_KEY: &str = "pad";

/// The name of the field that marks a client's message (see [`Message::client`]).
pub(crate) const CLIENT_KEY: &str = "ro";
/// Longest `sender.ip` string we accept.
pub(crate) const MAX_IP_LEN: usize = 64;

/// The wire format a network speaks. All nodes of one network use the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Codec {
    /// JSON, the reference's default.
    #[default]
    Json,
    /// Bencode, as in BitTorrent.
    Bencode,
}

/// The fewest bytes one `peers` entry takes in either codec (an IPv6 `::` at port 0, in
/// bencode): a peer list of n entries is longer than n times this.
pub(crate) const MIN_PEER_LEN: usize = 71;

impl Codec {
    /// The bytes `peer` adds to a `peers` list as this codec encodes it, with the comma
    /// before it in JSON unless it is the list's first. Exact, so that a reply can be cut
    /// to a byte budget without encoding it again and again.
    pub(crate) fn peer_len(self, peer: &WirePeer, first: bool) -> usize {
        let ip = ip_text_len(peer.addr.ip());
        let port = decimal_len(u64::from(peer.addr.port()));
        match self {
            // `{"node_id":"<40>","ip":"<ip>","port":<port>}`
            Codec::Json => 70 + ip + port + usize::from(!first),
            // `d2:ip<len>:<ip>7:node_id40:<40>4:porti<port>ee`
            Codec::Bencode => 67 + decimal_len(ip as u64) + ip + port,
        }
    }

    /// Appends the encoding of `msg` to `out`.
    pub(crate) fn encode(self, msg: &Message, out: &mut Vec<u8>) {
        self.encode_with_pad(msg, 0, None, out);
    }

    /// Appends the encoding of `msg` to `out`, grown to at least `min_len` bytes if it is
    /// shorter by a `pad` field of spaces (receivers ignore unknown fields).
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn encode_padded(self, msg: &Message, min_len: usize, out: &mut Vec<u8>) {
        self.encode_padded_from(None, msg, min_len, out);
    }

    /// [`Codec::encode_padded`] for a message whose sender is `own`'s: its `sender` field
    /// is copied, encoded once, rather than written again (when `own` was made for this
    /// codec and this sender; otherwise it is written as any other).
    pub(crate) fn encode_padded_as(
        self,
        own: &OwnSender,
        msg: &Message,
        min_len: usize,
        out: &mut Vec<u8>,
    ) {
        self.encode_padded_from(Some(own), msg, min_len, out);
    }

    fn encode_padded_from(
        self,
        own: Option<&OwnSender>,
        msg: &Message,
        min_len: usize,
        out: &mut Vec<u8>,
    ) {
        #[cfg(not(kad_serde_wire))]
        let sender = own.and_then(|own| own.field(self, &msg.sender));
        #[cfg(kad_serde_wire)]
        let sender: Option<&[u8]> = {
            let _ = own;
            None
        };
        let start = out.len();
        self.encode_with_pad(msg, 0, sender, out);
        let Some(deficit) = min_len.checked_sub(out.len() - start).filter(|&d| d > 0) else {
            return;
        };
        // The field's own bytes: `,"pad":""` in JSON, `3:pad` and `<n>:` in bencode.
        let overhead = match self {
            Codec::Json => 9,
            Codec::Bencode => 6,
        };
        out.truncate(start);
        self.encode_with_pad(msg, deficit.saturating_sub(overhead).max(1), sender, out);
    }

    fn encode_with_pad(self, msg: &Message, pad: usize, sender: Option<&[u8]>, out: &mut Vec<u8>) {
        #[cfg(not(kad_serde_wire))]
        fast::encode(self, msg, pad, sender, out);
        #[cfg(kad_serde_wire)]
        {
            let _ = sender;
            ser::encode(self, msg, pad, out);
        }
    }

    /// Decodes one datagram: by the fast path if it can, else with serde.
    pub(crate) fn decode(self, bytes: &[u8]) -> Result<Message, DecodeError> {
        #[cfg(not(kad_serde_wire))]
        if let Some(msg) = fast::decode(self, bytes) {
            return msg;
        }
        self.decode_with_serde(bytes)
    }

    /// Decodes one datagram with serde, the definition of what we accept.
    fn decode_with_serde(self, bytes: &[u8]) -> Result<Message, DecodeError> {
        match self {
            Codec::Json => json::decode_with_serde(bytes),
            Codec::Bencode => bencode::decode_with_serde(bytes),
        }
    }

    /// Decodes one datagram both ways, for tests and fuzzing: by the fast path (`None` when
    /// it gives up, or is not built in) and by serde. Where the fast path gives a result,
    /// it must be serde's.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn decode_both_ways(
        self,
        bytes: &[u8],
    ) -> (
        Option<Result<Message, DecodeError>>,
        Result<Message, DecodeError>,
    ) {
        #[cfg(not(kad_serde_wire))]
        let fast = fast::decode(self, bytes);
        #[cfg(kad_serde_wire)]
        let fast = None;
        (fast, self.decode_with_serde(bytes))
    }

    /// Encodes `msg` both ways, for tests and fuzzing: by the fast path (`None` when it is
    /// not built in) and by serde, with a `pad` field of `pad` spaces when `pad` is not
    /// zero. The two must be the same bytes.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn encode_both_ways(self, msg: &Message, pad: usize) -> (Option<Vec<u8>>, Vec<u8>) {
        // The fast path both with the sender written and with it copied from an
        // `OwnSender`: if the two differ, an empty encoding stands for them, so that the
        // comparison with serde fails.
        #[cfg(not(kad_serde_wire))]
        let fast = {
            let mut out = Vec::new();
            fast::encode(self, msg, pad, None, &mut out);
            let own = OwnSender::new(self, msg.sender.clone());
            let mut copied = Vec::new();
            fast::encode(self, msg, pad, own.field(self, &msg.sender), &mut copied);
            Some(if copied == out { out } else { Vec::new() })
        };
        #[cfg(kad_serde_wire)]
        let fast = None;
        let mut serde = Vec::new();
        ser::encode(self, msg, pad, &mut serde);
        (fast, serde)
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Json => "json",
            Codec::Bencode => "bencode",
        })
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Codec::Json),
            "bencode" => Ok(Codec::Bencode),
            other => Err(format!("unknown codec {other:?}, expected json or bencode")),
        }
    }
}

/// Why a datagram could not be decoded. Every case is dropped and counted, never answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Not valid JSON / bencode, or not a map at the top.
    #[error("not a well-formed message")]
    Syntax,
    /// A message of a `type` we do not know (the reference ignores these too).
    #[error("unknown message type")]
    UnknownType,
    /// A required field is absent.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A field has the wrong type or an invalid value.
    #[error("invalid field {0}")]
    Invalid(&'static str),
}

/// A transaction (query) id: the reference sends 16 lowercase hex characters; a response
/// echoes its request's id byte for byte. Stored inline: at most [`MAX_TXN_LEN`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxnId {
    len: u8,
    buf: [u8; MAX_TXN_LEN],
}

impl TxnId {
    /// Our own ids: 8 random bytes as 16 lowercase hex characters.
    pub(crate) fn from_u64(v: u64) -> TxnId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; MAX_TXN_LEN];
        for (i, out) in buf[..16].iter_mut().enumerate() {
            *out = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        TxnId { len: 16, buf }
    }

    /// Our own ids parse back to the u64 they came from; any other id gives `None`.
    pub(crate) fn to_u64(self) -> Option<u64> {
        if self.len != 16 {
            return None;
        }
        let mut v = 0u64;
        for &c in &self.buf[..16] {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            v = (v << 4) | d as u64;
        }
        Some(v)
    }

    /// An id of 1 to [`MAX_TXN_LEN`] bytes of UTF-8 text.
    pub(crate) fn from_str(s: &str) -> Option<TxnId> {
        TxnId::from_utf8_bytes(s.as_bytes())
    }

    /// An id of 1 to [`MAX_TXN_LEN`] bytes that the caller has checked are UTF-8 (as
    /// [`TxnId::from_str`], without a `str` in between).
    pub(crate) fn from_utf8_bytes(bytes: &[u8]) -> Option<TxnId> {
        if bytes.is_empty() || bytes.len() > MAX_TXN_LEN {
            return None;
        }
        let mut buf = [0u8; MAX_TXN_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(TxnId {
            len: bytes.len() as u8,
            buf,
        })
    }

    /// The id's UTF-8, without checking it again as [`TxnId::as_str`] must.
    // Used by the fast path only (`--cfg kad_serde_wire` builds without it).
    #[cfg_attr(kad_serde_wire, allow(dead_code))]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The id as text.
    pub(crate) fn as_str(&self) -> &str {
        // Built only from &str or ASCII hex, so always valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Debug for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxnId({})", self.as_str())
    }
}

/// The `sender` map: the sender's own idea of itself. We use only `node_id`; the address
/// we answer and record is the datagram's source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sender {
    pub id: NodeId,
    /// The sender's bind IP as it wrote it (may be `0.0.0.0`, or even a host name).
    pub ip: SenderIp,
    pub port: u16,
}

/// A node's own [`Sender`], with its `sender` field encoded once in the node's codec:
/// every datagram the node writes carries the same field.
#[derive(Clone, Debug)]
pub(crate) struct OwnSender {
    sender: Sender,
    #[cfg_attr(kad_serde_wire, allow(dead_code))]
    codec: Codec,
    /// The field, key included, as the fast path writes it in `codec` (boxed: no spare
    /// capacity, in each of a simulation's million nodes).
    #[cfg(not(kad_serde_wire))]
    field: Box<[u8]>,
}

impl OwnSender {
    /// `sender`, for messages in `codec`.
    pub(crate) fn new(codec: Codec, sender: Sender) -> OwnSender {
        OwnSender {
            #[cfg(not(kad_serde_wire))]
            field: fast::sender_field(codec, &sender).into_boxed_slice(),
            sender,
            codec,
        }
    }

    /// The sender.
    pub(crate) fn sender(&self) -> &Sender {
        &self.sender
    }

    /// The encoded field, if it is `sender`'s in `codec`.
    #[cfg(not(kad_serde_wire))]
    fn field(&self, codec: Codec, sender: &Sender) -> Option<&[u8]> {
        (codec == self.codec && *sender == self.sender).then_some(&self.field[..])
    }
}

/// The `sender.ip` text: up to [`MAX_IP_LEN`] bytes of UTF-8. Every message carries one,
/// and it is only ever checked and written back, so it is kept small: text of up to
/// [`SenderIp::INLINE`] bytes (any IPv4 address, and short IPv6 ones) inline, longer text
/// on the heap. 24 bytes rather than a 65-byte inline copy, which every decoded message
/// moved several times.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum SenderIp {
    /// Text of at most [`SenderIp::INLINE`] bytes, zeros after it (so that equal texts are
    /// equal values).
    Inline {
        len: u8,
        buf: [u8; SenderIp::INLINE],
    },
    /// Longer text.
    Long(Box<str>),
}

impl SenderIp {
    /// The longest text kept inline.
    pub(crate) const INLINE: usize = 22;

    /// `None` for text longer than [`MAX_IP_LEN`] bytes.
    pub(crate) fn new(text: &str) -> Option<SenderIp> {
        if text.len() > MAX_IP_LEN {
            return None;
        }
        Some(match SenderIp::inline(text.as_bytes()) {
            Some(ip) => ip,
            None => SenderIp::Long(text.into()),
        })
    }

    /// [`SenderIp::new`] for the UTF-8 of a text (which the caller has checked).
    #[cfg(not(kad_serde_wire))]
    pub(crate) fn from_text_bytes(text: &[u8]) -> Option<SenderIp> {
        SenderIp::inline(text).or_else(|| std::str::from_utf8(text).ok().and_then(SenderIp::new))
    }

    /// `text` inline, if it is short enough.
    fn inline(text: &[u8]) -> Option<SenderIp> {
        let mut buf = [0; SenderIp::INLINE];
        buf.get_mut(..text.len())?.copy_from_slice(text);
        Some(SenderIp::Inline {
            len: text.len() as u8,
            buf,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Built only from text, so always valid UTF-8.
            SenderIp::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or(""),
            SenderIp::Long(text) => text,
        }
    }

    /// The text's UTF-8, without checking it again as [`SenderIp::as_str`] must.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            SenderIp::Inline { len, buf } => &buf[..usize::from(*len)],
            SenderIp::Long(text) => text.as_bytes(),
        }
    }
}

impl From<IpAddr> for SenderIp {
    fn from(ip: IpAddr) -> SenderIp {
        #[cfg(not(kad_serde_wire))]
        let text = fast::IpText::new(ip);
        #[cfg(kad_serde_wire)]
        let text = ip.to_string();
        // Most addresses' text fits inline; a long IPv6 one (at most 45 bytes,
        // `IpText::MAX_LEN`) goes on the heap.
        SenderIp::inline(text.as_bytes()).unwrap_or_else(|| SenderIp::Long(ip.to_string().into()))
    }
}

impl fmt::Debug for SenderIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One entry of a `peers` list. Entries whose ip is not an IP literal, or whose id or port
/// is invalid, are skipped by the decoders rather than failing the whole message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WirePeer {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// One datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub txn: TxnId,
    pub sender: Sender,
    pub body: Body,
    /// The `ro` field (kad only, BEP 43's name): the sender is a client
    /// (`Config::client_mode`), which no kad node adds to its routing table. Python nodes
    /// ignore the field.
    pub client: bool,
}

/// The message kinds (`docs/PROTOCOL.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    Ping,
    Pong,
    FindNode {
        target: NodeId,
    },
    FindNodeRes {
        peers: Vec<WirePeer>,
    },
    Set {
        key: String,
        value: Value,
    },
    SetRes,
    SetCached {
        key: String,
        value: Value,
        target: NodeId,
    },
    SetCachedRes,
    CheckStore {
        key: String,
        size: u64,
    },
    CheckStoreRes {
        has_key: bool,
    },
    FindValue {
        key: String,
    },
    FindValueRes(FindValueRes),
}

/// A `find_value_res` carries either the value or the responder's closest peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FindValueRes {
    Value(Value),
    Peers(Vec<WirePeer>),
}

impl Body {
    /// The `type` string on the wire.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Body::Ping => "ping",
            Body::Pong => "pong",
            Body::FindNode { .. } => "find_node",
            Body::FindNodeRes { .. } => "find_node_res",
            Body::Set { .. } => "set",
            Body::SetRes => "set_res",
            Body::SetCached { .. } => "set_cached",
            Body::SetCachedRes => "set_cached_res",
            Body::CheckStore { .. } => "check_store",
            Body::CheckStoreRes { .. } => "check_store_res",
            Body::FindValue { .. } => "find_value",
            Body::FindValueRes(_) => "find_value_res",
        }
    }

    /// True for the six request kinds.
    pub(crate) fn is_request(&self) -> bool {
        matches!(
            self,
            Body::Ping
                | Body::FindNode { .. }
                | Body::Set { .. }
                | Body::SetCached { .. }
                | Body::CheckStore { .. }
                | Body::FindValue { .. }
        )
    }

    /// Requests that may have to wait for their sender to prove its address: stores, and
    /// those whose answer can be much larger than the request.
    pub(crate) fn may_need_proof(&self) -> bool {
        matches!(
            self,
            Body::FindNode { .. }
                | Body::Set { .. }
                | Body::SetCached { .. }
                | Body::FindValue { .. }
        )
    }

    /// True when `self` is a response of the kind that answers `request`.
    pub(crate) fn answers(&self, request: RequestKind) -> bool {
        matches!(
            (request, self),
            (RequestKind::Ping, Body::Pong)
                | (RequestKind::FindNode, Body::FindNodeRes { .. })
                | (RequestKind::Set, Body::SetRes)
                | (RequestKind::SetCached, Body::SetCachedRes)
                | (RequestKind::CheckStore, Body::CheckStoreRes { .. })
                | (RequestKind::FindValue, Body::FindValueRes(_))
        )
    }

    /// The request kind of a request body.
    pub(crate) fn request_kind(&self) -> Option<RequestKind> {
        Some(match self {
            Body::Ping => RequestKind::Ping,
            Body::FindNode { .. } => RequestKind::FindNode,
            Body::Set { .. } => RequestKind::Set,
            Body::SetCached { .. } => RequestKind::SetCached,
            Body::CheckStore { .. } => RequestKind::CheckStore,
            Body::FindValue { .. } => RequestKind::FindValue,
            _ => return None,
        })
    }
}

/// The kind of a request we sent, remembered to check the response's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Ping,
    FindNode,
    Set,
    SetCached,
    CheckStore,
    FindValue,
}

/// Marker that starts a bencoded bytes value.
pub(crate) const BYTES_MARKER: &[u8] = b"\x00bytes\x00";
/// The JSON object key that wraps a base64 bytes value.
pub(crate) const B64_KEY: &str = "__bytes_b64__";

/// An IP literal, read by `IpAddr::from_str`; `None` for anything else, bytes that are not
/// UTF-8 included. (The fast path's reads dotted quads by hand, with the same result.)
#[cfg(kad_serde_wire)]
fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A `peers` entry's address from its ip and port; `None` skips the entry.
pub(crate) fn peer_addr(ip: IpAddr, port: u64) -> Option<SocketAddr> {
    let port = u16::try_from(port).ok()?;
    if port == 0 {
        return None;
    }
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests;

/// Digits of `n` in decimal.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Characters of `ip`'s text form, as both encoders write it (`Display`); the fast path's
/// own count, table-driven, when it is built.
#[cfg(kad_serde_wire)]
fn ip_text_len(ip: IpAddr) -> usize {
    ip.to_string().len()
}
