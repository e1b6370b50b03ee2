//! Bencode by hand: our writer, and a token scanner for the decoding fast path.
//!
//! We write keys in sorted order as the reference does, so our output is byte-identical to
//! its (and to what `bt_bencode` writes through `wire::ser`). The scanner reads
//! every message we or the reference write.

use std::net::IpAddr;

use super::ascii::{
    id_from_hex, id_from_hex_array, ip_text_len, ipv4_of_len, parse_ip, write_decimal, Cursor,
    IpText, DECIMAL_SLACK,
};
use super::scan::{self, is_utf8, leading_number, short_number, Scanner};
use crate::wire::de::{bytes_as_text, value_from_bytes, Field};
use crate::wire::{
    peer_addr, Body, DecodeError, FindValueRes, Message, Sender, WirePeer, BYTES_MARKER,
    CLIENT_KEY, PAD_KEY, PEER_BYTES,
};
use crate::{NodeId, Value};

/// Appends the bencoding of `msg` to `out`, with a `pad` field of `pad` spaces when `pad`
/// is not zero; `sender`, when given, is what [`write_sender`] writes for `msg.sender`.
pub(super) fn encode(msg: &Message, pad: usize, sender: Option<&[u8]>, out: &mut Vec<u8>) {
    let body = &msg.body;
    out.push(b'd');
    // Keys in byte order: has_key, id, key, pad, peers, ro, sender, size, target, target_id,
    // type, value. Each message has a subset of them.
    if let Body::CheckStoreRes { has_key } = body {
        out.extend_from_slice(b"7:has_key");
        write_int(out, u64::from(*has_key));
    }
    out.extend_from_slice(b"2:id");
    write_bytes(out, msg.txn.as_bytes());
    if let Body::Set { key, .. }
    | Body::SetCached { key, .. }
    | Body::CheckStore { key, .. }
    | Body::FindValue { key } = body
    {
        out.extend_from_slice(b"3:key");
        write_bytes(out, key.as_bytes());
    }
    if pad > 0 {
        write_bytes(out, PAD_KEY.as_bytes());
        write_decimal(out, pad as u64);
        out.push(b':');
        out.resize(out.len() + pad, b' ');
    }
    if let Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers)) = body {
        out.extend_from_slice(b"5:peers");
        write_peers(out, peers);
    }
    if msg.client {
        write_bytes(out, CLIENT_KEY.as_bytes());
        write_int(out, 1);
    }
    match sender {
        Some(field) => out.extend_from_slice(field),
        None => write_sender(out, &msg.sender),
    }
    if let Body::CheckStore { size, .. } = body {
        out.extend_from_slice(b"4:size");
        write_int(out, *size);
    }
    if let Body::FindNode { target } = body {
        out.extend_from_slice(b"6:target");
        write_bytes(out, &target.to_hex_array());
    }
    if let Body::SetCached { target, .. } = body {
        out.extend_from_slice(b"9:target_id");
        write_bytes(out, &target.to_hex_array());
    }
    out.extend_from_slice(b"4:type");
    write_bytes(out, body.type_name().as_bytes());
    if let Body::Set { value, .. }
    | Body::SetCached { value, .. }
    | Body::FindValueRes(FindValueRes::Value(value)) = body
    {
        out.extend_from_slice(b"5:value");
        write_value(out, value);
    }
    out.push(b'e');
}

/// Decodes one datagram, or `None` when serde must decide.
pub(super) fn decode(bytes: &[u8]) -> Option<Result<Message, DecodeError>> {
    scan::read_message(&mut BencodeScanner {
        input: bytes,
        pos: 0,
    })
}

/// Writes the `sender` field, key and value.
pub(super) fn write_sender(out: &mut Vec<u8>, sender: &Sender) {
    out.extend_from_slice(b"6:sender");
    write_node(out, &sender.id, sender.ip.as_bytes(), sender.port);
}

/// Writes `<len>:<bytes>`.
fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_decimal(out, bytes.len() as u64);
    out.push(b':');
    out.extend_from_slice(bytes);
}

/// Writes `i<v>e`; booleans are 0 and 1, as the reference writes them.
fn write_int(out: &mut Vec<u8>, v: u64) {
    out.push(b'i');
    write_decimal(out, v);
    out.push(b'e');
}

/// Writes text as its UTF-8, bytes behind the marker.
fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Text(s) => write_bytes(out, s.as_bytes()),
        Value::Bytes(b) => {
            write_decimal(out, (BYTES_MARKER.len() + b.len()) as u64);
            out.push(b':');
            out.extend_from_slice(BYTES_MARKER);
            out.extend_from_slice(b);
        }
    }
}

/// Writes `d2:ip…7:node_id40:…4:porti…ee`, the shape of both `sender` and `peers` entries.
fn write_node(out: &mut Vec<u8>, id: &NodeId, ip: &[u8], port: u16) {
    out.extend_from_slice(b"d2:ip");
    write_bytes(out, ip);
    out.extend_from_slice(b"7:node_id40:");
    out.extend_from_slice(&id.to_hex_array());
    out.extend_from_slice(b"4:porti");
    write_decimal(out, u64::from(port));
    out.extend_from_slice(b"ee");
}

/// Writes a peers list, entries `d2:ip…7:node_id40:…4:porti…ee`; an IPv6 address goes out
/// as its plain text form (`::1`).
fn write_peers(out: &mut Vec<u8>, peers: &[WirePeer]) {
    // One allocation for the whole list rather than a doubling every few peers.
    out.reserve(peers.len() * PEER_BYTES);
    out.push(b'l');
    for peer in peers {
        // Room for `d2:ip<2>:<ip>7:node_id40:<40>4:porti<5>ee`, the ip at its longest
        // (more than the 16 bytes `put_ip` may write for an IPv4 address), and what
        // `put_decimal` may write past the port.
        let mut entry =
            Cursor::<{ 5 + 3 + IpText::MAX_LEN + 12 + 40 + 7 + 5 + 2 + DECIMAL_SLACK }>::new();
        let ip = peer.addr.ip();
        entry.put(b"d2:ip");
        // At most `IpText::MAX_LEN`.
        entry.put_small(ip_text_len(ip) as u8);
        entry.put(b":");
        entry.put_ip(ip);
        entry.put(b"7:node_id40:");
        entry.put(&peer.id.to_hex_array());
        entry.put(b"4:porti");
        entry.put_decimal(peer.addr.port());
        entry.put(b"ee");
        out.extend_from_slice(entry.as_bytes());
    }
    out.push(b'e');
}

/// A `peers` entry or `sender` map at the start of `start` in exactly the shape the writers
/// give it, `d2:ip<len>:<ip>7:node_id40:<id>4:porti<port>ee`, each fixed piece compared
/// whole: the ip's bytes, the id's digits, the port, and the bytes it all takes.
#[inline(always)]
fn exact_node(start: &[u8]) -> Option<(&[u8], &[u8; 40], u32, usize)> {
    let rest = start.strip_prefix(b"d2:ip")?;
    let (ip_len, digits) = short_number(rest)?;
    if rest.get(digits) != Some(&b':') {
        return None;
    }
    let (ip, rest) = rest[digits + 1..].split_at_checked(ip_len as usize)?;
    let (found, rest) = rest.split_first_chunk::<12>()?;
    let (hex, rest) = rest.split_first_chunk::<40>()?;
    let (found_tail, rest) = rest.split_first_chunk::<7>()?;
    if found != b"7:node_id40:" || found_tail != b"4:porti" {
        return None;
    }
    let (port, digits) = short_number(rest)?;
    if rest.get(digits..digits + 2) != Some(b"ee") {
        return None;
    }
    Some((ip, hex, port, start.len() - (rest.len() - digits - 2)))
}

/// Up to eight bytes of `key` (`<length>:<name>`) as a little-endian word, the rest zero.
const fn key_word(key: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < key.len() && i < 8 {
        w |= (key[i] as u64) << (8 * i);
        i += 1;
    }
    w
}

/// The low `n` bytes of a word.
const fn low_bytes(n: u32) -> u64 {
    (1u64 << (8 * n)) - 1
}

const KEY_SENDER: u64 = key_word(b"6:sender");
const KEY_TARGET: u64 = key_word(b"6:target");
const KEY_TYPE: u64 = key_word(b"4:type");
const KEY_ID: u64 = key_word(b"2:id");
const KEY_PEERS: u64 = key_word(b"5:peers");
const MASK_4: u64 = low_bytes(4);
const MASK_6: u64 = low_bytes(6);
const MASK_7: u64 = low_bytes(7);

/// Bencode tokens for the fast path: byte strings, non-negative integers, and the dicts and
/// lists of a message. Like `bt_bencode`, it takes leading zeros in lengths and integers.
pub(super) struct BencodeScanner<'de> {
    input: &'de [u8],
    pos: usize,
}

impl<'de> BencodeScanner<'de> {
    /// The next byte, not consumed.
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Consumes `c`.
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// Digits up to `end`, consumed with it: a length or an integer.
    fn number(&mut self, end: u8) -> Option<u64> {
        let rest = self.input.get(self.pos..)?;
        let (v, digits) = leading_number(rest)?;
        if digits == 0 || rest.get(digits) != Some(&end) {
            return None;
        }
        self.pos += digits + 1;
        Some(v)
    }

    /// A byte string.
    #[inline]
    fn bytes(&mut self) -> Option<&'de [u8]> {
        // Most lengths (keys, ids, short texts) have one or two digits: read without the
        // general number loop.
        let len = match self.input.get(self.pos..self.pos + 3) {
            Some(&[a @ b'0'..=b'9', b':', _]) => {
                self.pos += 2;
                usize::from(a - b'0')
            }
            Some(&[a @ b'0'..=b'9', b @ b'0'..=b'9', b':']) => {
                self.pos += 3;
                usize::from(a - b'0') * 10 + usize::from(b - b'0')
            }
            _ => usize::try_from(self.number(b':')?).ok()?,
        };
        let bytes = self.input.get(self.pos..)?.get(..len)?;
        self.pos += len;
        Some(bytes)
    }
}

impl<'de> Scanner<'de> for BencodeScanner<'de> {
    // Sorted, as bencode wants.
    const ENTRY_KEYS: [(&'static [u8], Field); 3] = [
        (b"ip", Field::Ip),
        (b"node_id", Field::NodeId),
        (b"port", Field::Port),
    ];

    fn key_is(&mut self, name: &[u8]) -> bool {
        // `<length>:<name>`, the length in one digit as the writers put it.
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let matched = name.len() < 10
            && rest.first() == Some(&(b'0' + name.len() as u8))
            && rest.get(1) == Some(&b':')
            && rest[2..].starts_with(name);
        if matched {
            self.pos += 2 + name.len();
        }
        matched
    }

    fn map(&mut self) -> Option<()> {
        self.eat(b'd')
    }

    fn key(&mut self) -> Option<Option<Field>> {
        // The keys of almost every message, told apart by their first eight bytes (length
        // and name) at once; any other key the general way.
        if let Some(window) = self
            .input
            .get(self.pos..)
            .and_then(<[u8]>::first_chunk::<8>)
        {
            let w = u64::from_le_bytes(*window);
            let known = if w == KEY_SENDER {
                Some((Field::Sender, 8))
            } else if w == KEY_TARGET {
                Some((Field::Target, 8))
            } else if w & MASK_6 == KEY_TYPE {
                Some((Field::Type, 6))
            } else if w & MASK_4 == KEY_ID {
                Some((Field::Id, 4))
            } else if w & MASK_7 == KEY_PEERS {
                Some((Field::Peers, 7))
            } else {
                None
            };
            if let Some((field, len)) = known {
                self.pos += len;
                return Some(Some(field));
            }
        }
        if self.more()? {
            // As in the serde path (`KeySeed`), a key loses a bytes marker.
            let key = self.bytes()?;
            Some(Some(Field::from_name(
                key.strip_prefix(BYTES_MARKER).unwrap_or(key),
            )))
        } else {
            Some(None)
        }
    }

    fn list(&mut self) -> Option<()> {
        self.eat(b'l')
    }

    fn more(&mut self) -> Option<bool> {
        if self.peek()? == b'e' {
            self.pos += 1;
            return Some(false);
        }
        Some(true)
    }

    fn text(&mut self, name: &'static str) -> Option<Result<&'de str, DecodeError>> {
        Some(bytes_as_text(self.bytes()?).ok_or(DecodeError::Invalid(name)))
    }

    fn utf8(&mut self, name: &'static str) -> Option<Result<&'de [u8], DecodeError>> {
        // As `bytes_as_text` decides, without making a `str`.
        let bytes = self.bytes()?;
        Some(if !bytes.starts_with(BYTES_MARKER) && is_utf8(bytes) {
            Ok(bytes)
        } else {
            Err(DecodeError::Invalid(name))
        })
    }

    fn id(&mut self) -> Option<NodeId> {
        id_from_hex(self.bytes()?)
    }

    fn ip(&mut self) -> Option<Option<IpAddr>> {
        // Not text (marked as bytes, or not UTF-8) is not an IP literal either.
        Some(parse_ip(self.bytes()?))
    }

    fn uint(&mut self) -> Option<u64> {
        self.eat(b'i')?;
        self.number(b'e')
    }

    fn flag(&mut self) -> Option<bool> {
        self.uint().map(|v| v != 0)
    }

    fn value(&mut self) -> Option<Result<Value, DecodeError>> {
        Some(Ok(value_from_bytes(self.bytes()?)))
    }

    fn skip(&mut self) -> Option<()> {
        if self.peek()? == b'i' {
            self.uint().map(drop)
        } else {
            self.bytes().map(drop)
        }
    }

    fn exact_entry(&mut self) -> Option<Option<WirePeer>> {
        let (ip, hex, port, len) = exact_node(self.input.get(self.pos..)?)?;
        let ip = ipv4_of_len(ip, ip.len())?;
        let id = id_from_hex_array(hex)?;
        self.pos += len;
        Some(peer_addr(IpAddr::V4(ip), port.into()).map(|addr| WirePeer { id, addr }))
    }

    fn exact_sender(&mut self) -> Option<Sender> {
        let (ip, hex, port, len) = exact_node(self.input.get(self.pos..)?)?;
        let sender = scan::plain_sender(hex, ip, port)?;
        self.pos += len;
        Some(sender)
    }

    fn finish(&mut self) -> Option<()> {
        (self.pos == self.input.len()).then_some(())
    }

    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }
}
