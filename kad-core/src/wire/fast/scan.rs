//! The fast path of decoding: a reader for messages of the shapes that we and the reference
//! send, over a small per-format [`Scanner`] (in `json.rs` and `bencode.rs`).
//!
//! It gives up, with `None`, on anything unusual: an escape in a JSON string, a number that
//! is not a plain non-negative integer, a list or map where a field of ours has none, a
//! field of the wrong shape, an unknown field whose value is not a string or an integer.
//! The caller then decodes with serde ([`crate::wire::de`]), which stays the definition of what we
//! accept. So for every input it does not give up on, this path must give exactly what the
//! serde path gives. It builds the message from the same field slots, with the same
//! functions ([`build_message`], [`PeerFields`]), so the two differ only in how they read
//! tokens; tests and the fuzz harnesses decode inputs both ways and compare.
//!
//! Why: serde's layers, UTF-8 validation of every string (ids included) and scanning each
//! string twice made decoding a 20-peer reply cost about 60 000 instructions.

use std::borrow::Cow;
use std::net::IpAddr;

use super::ascii::id_from_hex_array;
use crate::wire::de::{build_message, BodyFields, Field, PeerFields, Slot, SENDER_NAMES};
use crate::wire::{
    peer_addr, DecodeError, Message, Sender, SenderIp, TxnId, WirePeer, MAX_IP_LEN,
    MAX_PEERS_PER_MESSAGE,
};
use crate::{NodeId, Value};

/// The tokens of one format, as far as the fast path reads them. Every method returns
/// `None` to give up, having consumed an unspecified part of the input.
pub(super) trait Scanner<'de> {
    /// The keys of a `peers` entry, in the order in which this format's writers (ours and
    /// the reference's) put them.
    const ENTRY_KEYS: [(&'static [u8], Field); 3];
    /// Reads the next key of the map if it is `name` as written, and then returns true;
    /// else reads nothing. The general [`Scanner::key`] costs about twice as much.
    fn key_is(&mut self, name: &[u8]) -> bool;
    /// Enters a map.
    fn map(&mut self) -> Option<()>;
    /// The next key of the map being read, or `Some(None)` at its end.
    fn key(&mut self) -> Option<Option<Field>>;
    /// Enters a list.
    fn list(&mut self) -> Option<()>;
    /// Whether the list being read has another element (else its end has been read).
    fn more(&mut self) -> Option<bool>;
    /// A text field, as [`crate::wire::de`]'s `TextField` reads it.
    fn text(&mut self, name: &'static str) -> Option<Result<&'de str, DecodeError>>;
    /// [`Scanner::text`] as the bytes of the text, checked to be UTF-8 but not made a
    /// `str` (which costs the check again).
    fn utf8(&mut self, name: &'static str) -> Option<Result<&'de [u8], DecodeError>>;
    /// A valid 40-hex-digit id (an invalid one gives up).
    fn id(&mut self) -> Option<NodeId>;
    /// The ip of a `peers` entry, parsed: `Some(None)` when it is text but not an IP
    /// literal, or (bencode) not text: the serde path skips such an entry.
    fn ip(&mut self) -> Option<Option<IpAddr>>;
    /// A non-negative integer.
    fn uint(&mut self) -> Option<u64>;
    /// A boolean, or an integer (non-zero is true).
    fn flag(&mut self) -> Option<bool>;
    /// A stored value, text or bytes.
    fn value(&mut self) -> Option<Result<Value, DecodeError>>;
    /// Skips the value of a field we do not use, if it is a string or an integer.
    fn skip(&mut self) -> Option<()>;
    /// A `peers` entry in exactly the shape the writers (ours and the reference's) give it,
    /// keys in their order, an IPv4 address: `Some(None)` for one that is not a valid peer
    /// (its port 0 or too large), as [`read_entry`] would have it. `None`, having read
    /// nothing, for anything else, which [`read_entry`] then reads the general way.
    fn exact_entry(&mut self) -> Option<Option<WirePeer>>;
    /// The `sender` map in exactly the shape the writers (ours and the reference's) give
    /// it, keys in their order, the ip plain text (see [`plain_sender`]). `None`, having
    /// read nothing, for anything else, which [`read_sender`] then reads the general way.
    fn exact_sender(&mut self) -> Option<Sender>;
    /// Checks that the input ends here (JSON: but for whitespace).
    fn finish(&mut self) -> Option<()>;
    /// Bytes of input not read yet.
    fn remaining(&self) -> usize;
}

/// Reads one message, or `None` when the serde path must decide.
pub(super) fn read_message<'de>(s: &mut impl Scanner<'de>) -> Option<Result<Message, DecodeError>> {
    s.map()?;
    let mut kind: Slot<Cow<'de, str>> = None;
    let mut txn: Slot<TxnId> = None;
    let mut sender: Slot<Sender> = None;
    let mut body = BodyFields::default();
    while let Some(field) = s.key()? {
        match field {
            Field::Type => kind = Some(s.utf8("type")?.map(|t| Cow::Borrowed(type_name(t)))),
            Field::Id => {
                txn = Some(
                    s.utf8("id")?
                        .and_then(|t| TxnId::from_utf8_bytes(t).ok_or(DecodeError::Invalid("id"))),
                );
            }
            Field::Sender => {
                sender = Some(match s.exact_sender() {
                    Some(exact) => Ok(exact),
                    None => read_sender(s)?.into_sender(),
                });
            }
            Field::Target => body.target = Some(Ok(s.id()?)),
            Field::TargetId => body.target_id = Some(Ok(s.id()?)),
            Field::Key => body.key = Some(s.text("key")?.map(Cow::Borrowed)),
            Field::Value => body.value = Some(s.value()?),
            Field::Size => body.size = Some(Ok(s.uint()?)),
            Field::HasKey => body.has_key = Some(Ok(s.flag()?)),
            Field::Peers => body.peers = Some(Ok(read_peers(s)?)),
            Field::Client => body.client = Some(Ok(s.flag()?)),
            Field::NodeId | Field::Ip | Field::Port | Field::B64 | Field::Other => s.skip()?,
        }
    }
    s.finish()?;
    Some(build_message(kind, txn, sender, body))
}

/// The name of a message type as `build_message` knows it, or `""` (which it knows as no
/// type) for any other text: an unknown type is decided alike either way.
fn type_name(text: &[u8]) -> &'static str {
    match text {
        b"ping" => "ping",
        b"pong" => "pong",
        b"find_node" => "find_node",
        b"find_node_res" => "find_node_res",
        b"set" => "set",
        b"set_res" => "set_res",
        b"set_cached" => "set_cached",
        b"set_cached_res" => "set_cached_res",
        b"check_store" => "check_store",
        b"check_store_res" => "check_store_res",
        b"find_value" => "find_value",
        b"find_value_res" => "find_value_res",
        _ => "",
    }
}

/// Whether `bytes` are UTF-8: ASCII (the text of every field we read this way, usually)
/// is checked a word at a time, anything else by `str::from_utf8`.
#[inline]
pub(super) fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// The sender an exactly shaped `sender` map names, as [`PeerFields::into_sender`] would
/// have it, if the ip is plain text: printable ASCII without `"` or `\\` (so a JSON string
/// without escapes, and never the bytes marker), at most [`MAX_IP_LEN`] bytes, and the port
/// fits a `u16`. `None` for anything else, which the general way then decides.
pub(super) fn plain_sender(id: &[u8; 40], ip: &[u8], port: u32) -> Option<Sender> {
    if ip.len() > MAX_IP_LEN || !ip.iter().all(|&c| PLAIN_IP[usize::from(c)]) {
        return None;
    }
    Some(Sender {
        id: id_from_hex_array(id)?,
        ip: SenderIp::from_text_bytes(ip)?,
        port: u16::try_from(port).ok()?,
    })
}

/// The bytes [`plain_sender`] takes in an ip: printable ASCII but `"` and `\\`.
const PLAIN_IP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b' ';
    while c <= b'~' {
        t[c as usize] = c != b'"' && c != b'\\';
        c += 1;
    }
    t
};

/// Reads the `sender` map.
fn read_sender<'de>(s: &mut impl Scanner<'de>) -> Option<PeerFields<'de>> {
    s.map()?;
    let mut fields = PeerFields::default();
    while let Some(field) = s.key()? {
        match field {
            Field::NodeId => fields.node_id = Some(Ok(s.id()?)),
            Field::Ip => fields.ip = Some(s.text(SENDER_NAMES[1])?.map(Cow::Borrowed)),
            Field::Port => fields.port = Some(Ok(s.uint()?)),
            _ => s.skip()?,
        }
    }
    Some(fields)
}

/// Reads a `peers` list: the valid entries, at most [`MAX_PEERS_PER_MESSAGE`] of them.
fn read_peers<'de>(s: &mut impl Scanner<'de>) -> Option<Vec<WirePeer>> {
    s.list()?;
    // Room for as many entries as the rest of the input can hold (an IPv4 entry takes 76
    // bytes or more in either format): growing the list one doubling at a time cost more
    // than reading a peer.
    let mut peers = Vec::with_capacity((s.remaining() / 64).min(MAX_PEERS_PER_MESSAGE));
    while s.more()? {
        let peer = read_entry(s)?;
        if let Some(peer) = peer.filter(|_| peers.len() < MAX_PEERS_PER_MESSAGE) {
            peers.push(peer);
        }
    }
    Some(peers)
}

/// Reads one `peers` entry: `Some(None)` for one that is not a valid peer, as
/// [`PeerFields::into_peer`] decides in the serde path (a missing or invalid field). The
/// ip goes straight from the input to an address, without a `str` in between.
fn read_entry<'de, S: Scanner<'de>>(s: &mut S) -> Option<Option<WirePeer>> {
    if let Some(entry) = s.exact_entry() {
        return Some(entry);
    }
    s.map()?;
    let (mut id, mut ip, mut port) = (None, None, None);
    let mut read = |s: &mut S, field| {
        match field {
            Field::NodeId => id = Some(s.id()?),
            Field::Ip => ip = Some(s.ip()?),
            Field::Port => port = Some(s.uint()?),
            _ => s.skip()?,
        }
        Some(())
    };
    // The keys in the order writers put them, while they come so; then any others, and
    // the end of the map, the general way.
    for (name, field) in S::ENTRY_KEYS {
        if !s.key_is(name) {
            break;
        }
        read(s, field)?;
    }
    while let Some(field) = s.key()? {
        read(s, field)?;
    }
    let (Some(id), Some(Some(ip)), Some(port)) = (id, ip, port) else {
        return Some(None);
    };
    Some(peer_addr(ip, port).map(|addr| WirePeer { id, addr }))
}

/// The decimal number at the start of `bytes` and its number of digits (0 if there is
/// none); `None` if it does not fit a `u64`.
pub(super) fn leading_number(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    let mut digits = 0;
    for &c in bytes {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d))?;
        digits += 1;
    }
    Some((value, digits))
}

/// The decimal number of one to five digits at the start of `bytes` (a port, the length of
/// an address) and its number of digits; `None` for no digit or more than five, which
/// [`leading_number`] then reads.
///
/// Eight bytes at a time (SWAR), without a loop or a branch per digit: a digit loop cost
/// about 48 instructions a port, and every peers entry has one or two such numbers.
#[inline(always)]
pub(super) fn short_number(bytes: &[u8]) -> Option<(u32, usize)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    // Near the end of the input, a space past it reads as the end, as the end does.
    let window = match bytes.first_chunk::<8>() {
        Some(window) => *window,
        None => {
            let mut window = [b' '; 8];
            window[..bytes.len()].copy_from_slice(bytes);
            window
        }
    };
    // Each byte's digit value, and the high bit of each byte that is no digit (below
    // `0`: its own high bit; above `9`: `+ 0x76` sets it). Borrows and carries only reach
    // bytes after such a byte, so the lowest one flagged is the first that is no digit.
    let values = u64::from_le_bytes(window).wrapping_sub(ONES * u64::from(b'0'));
    let stops = (values.wrapping_add(ONES * 0x76) | values) & HIGH;
    let digits = (stops.trailing_zeros() / 8) as usize;
    if !(1..=5).contains(&digits) {
        return None;
    }
    // The digits to the top of the word, zeros (leading zeros) before them, then pairs,
    // fours and eights of digits combined by multiplication, as simdjson does.
    let v = values << (8 * (8 - digits));
    let v = (v.wrapping_mul(10 << 8 | 1) >> 8) & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100 << 16 | 1) >> 16) & 0x0000_ffff_0000_ffff;
    let v = v.wrapping_mul(10_000 << 32 | 1) >> 32;
    Some((v as u32, digits))
}
