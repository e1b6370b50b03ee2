//! JSON by hand: our compact writer, and a token scanner for the decoding fast path.
//!
//! We write compact UTF-8 JSON (the reference writes `", "` separators and `\u` escapes,
//! but reads any valid JSON), the bytes `serde_json` writes through `wire::ser`'s
//! formatter. The scanner reads our messages and the reference's, but for strings with
//! escapes, which it leaves to `serde_json`.

use std::net::IpAddr;

use base64::Engine as _;

use super::ascii::{
    id_from_hex, id_from_hex_array, leading_ipv4, parse_ip, write_decimal, Cursor, IpText,
    DECIMAL_SLACK,
};
use super::scan::{self, is_utf8, leading_number, short_number, Scanner};
use crate::wire::de::{value_from_base64, Field};
use crate::wire::{
    peer_addr, Body, DecodeError, FindValueRes, Message, Sender, WirePeer, B64_KEY, CLIENT_KEY,
    PAD_KEY, PEER_BYTES,
};
use crate::{NodeId, Value};

/// Appends the JSON encoding of `msg` to `out`, with a `pad` field of `pad` spaces last
/// when `pad` is not zero; `sender`, when given, is what [`write_sender_field`] writes for
/// `msg.sender`.
pub(super) fn encode(msg: &Message, pad: usize, sender: Option<&[u8]>, out: &mut Vec<u8>) {
    // Our type names need no escaping.
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(msg.body.type_name().as_bytes());
    out.push(b'"');
    write_key(out, "id");
    write_str(out, msg.txn.as_bytes());
    match sender {
        Some(field) => out.extend_from_slice(field),
        None => write_sender_field(out, &msg.sender),
    }
    match &msg.body {
        Body::Ping | Body::Pong | Body::SetRes | Body::SetCachedRes => {}
        Body::FindNode { target } => {
            write_key(out, "target");
            write_id(out, target);
        }
        Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers)) => {
            write_key(out, "peers");
            write_peers(out, peers);
        }
        Body::Set { key, value } => {
            write_key(out, "key");
            write_str(out, key);
            write_key(out, "value");
            write_value(out, value);
        }
        Body::SetCached { key, value, target } => {
            write_key(out, "key");
            write_str(out, key);
            write_key(out, "value");
            write_value(out, value);
            write_key(out, "target_id");
            write_id(out, target);
        }
        Body::CheckStore { key, size } => {
            write_key(out, "key");
            write_str(out, key);
            write_key(out, "size");
            write_decimal(out, *size);
        }
        Body::CheckStoreRes { has_key } => {
            write_key(out, "has_key");
            out.extend_from_slice(if *has_key { b"true" } else { b"false" });
        }
        Body::FindValue { key } => {
            write_key(out, "key");
            write_str(out, key);
        }
        Body::FindValueRes(FindValueRes::Value(value)) => {
            write_key(out, "value");
            write_value(out, value);
        }
    }
    if msg.client {
        write_key(out, CLIENT_KEY);
        out.push(b'1');
    }
    if pad > 0 {
        write_key(out, PAD_KEY);
        out.push(b'"');
        out.resize(out.len() + pad, b' ');
        out.push(b'"');
    }
    out.push(b'}');
}

/// Decodes one datagram, or `None` when serde must decide.
pub(super) fn decode(bytes: &[u8]) -> Option<Result<Message, DecodeError>> {
    scan::read_message(&mut JsonScanner::new(bytes))
}

/// Writes `,"name":`; our field names never need escaping.
fn write_key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Writes a JSON string, given as its UTF-8. Only `"`, `\` and control characters are
/// escaped: everything else goes out as raw UTF-8, which the reference's
/// `json.loads(data.decode())` reads.
fn write_str(out: &mut Vec<u8>, s: impl AsRef<[u8]>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = s.as_ref();
    // Runs of plain bytes found eight at a time and copied in one go; escapes are rare.
    loop {
        let (plain, tail) = rest.split_at(plain_run(rest));
        out.extend_from_slice(plain);
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        rest = tail;
    }
    out.push(b'"');
}

/// Writes an id as 40 lowercase hex digits.
fn write_id(out: &mut Vec<u8>, id: &NodeId) {
    out.push(b'"');
    out.extend_from_slice(&id.to_hex_array());
    out.push(b'"');
}

/// Writes text as a string and bytes as `{"__bytes_b64__": "<padded base64>"}`.
fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Text(s) => write_str(out, s),
        Value::Bytes(b) => {
            out.extend_from_slice(b"{\"");
            out.extend_from_slice(B64_KEY.as_bytes());
            out.extend_from_slice(b"\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(b)
                    .as_bytes(),
            );
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Writes the `sender` field, its key (with the comma before it) and its map.
pub(super) fn write_sender_field(out: &mut Vec<u8>, sender: &Sender) {
    write_key(out, "sender");
    write_sender(out, sender);
}

/// Writes the `sender` map, the shape of a `peers` entry, its ip as given (the sender's own
/// idea, not checked, so escaped as any string).
fn write_sender(out: &mut Vec<u8>, sender: &Sender) {
    out.extend_from_slice(b"{\"node_id\":");
    write_id(out, &sender.id);
    write_key(out, "ip");
    write_str(out, sender.ip.as_bytes());
    write_key(out, "port");
    write_decimal(out, u64::from(sender.port));
    out.push(b'}');
}

/// Writes a peers list, entries `{"node_id":…,"ip":…,"port":…}`; an IPv6 address goes
/// out as its plain text form (`::1`), which needs no escaping.
fn write_peers(out: &mut Vec<u8>, peers: &[WirePeer]) {
    const HEAD: &[u8] = b",{\"node_id\":\"";
    const MID: &[u8] = b"\",\"ip\":\"";
    // One allocation for the whole list rather than a doubling every few peers.
    out.reserve(peers.len() * PEER_BYTES);
    out.push(b'[');
    // Each entry is built in one buffer and appended, without its leading comma for the
    // first. Room for `,{"node_id":"<40>","ip":"<ip>","port":<5>}`, the ip at its
    // longest (more than the 16 bytes `put_ip` may write for an IPv4 address), and what
    // `put_decimal` may write past the port. Its head, up to the ip, is written once:
    // each entry overwrites the id's digits and rewrites what follows them.
    let mut entry = Cursor::<{ 13 + 40 + 8 + IpText::MAX_LEN + 9 + 5 + 1 + DECIMAL_SLACK }>::new();
    entry.put(HEAD);
    entry.put(&[0; 40]);
    entry.put(MID);
    let ip_at = entry.as_bytes().len();
    for (i, peer) in peers.iter().enumerate() {
        entry.truncate(ip_at);
        entry.put_id_at(HEAD.len(), &peer.id);
        entry.put_ip(peer.addr.ip());
        entry.put(b"\",\"port\":");
        entry.put_decimal(peer.addr.port());
        entry.put(b"}");
        let skip_comma = usize::from(i == 0);
        out.extend_from_slice(&entry.as_bytes()[skip_comma..]);
    }
    out.push(b']');
}

/// The length of the run of bytes at the start of `bytes` that may stand in a JSON string
/// as they are: up to the first quote, backslash or control character, or the end.
///
/// Eight bytes at a time, as serde_json does: a string value can be long, and a byte at a
/// time cost about ten instructions a byte.
pub(super) fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut run = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // `v - ONES * n` borrows into the high bit of each byte of `v` below `n`; `& !v`
        // drops the bytes that had that bit set already. The lowest flagged byte is exact
        // (a borrow only flags bytes above a real hit), and bytes are little-endian, so it
        // is the first stop.
        let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH;
        let stops = below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20);
        if stops != 0 {
            return run + (stops.trailing_zeros() / 8) as usize;
        }
        run += 8;
    }
    let rest = chunks.remainder();
    run + rest
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .unwrap_or(rest.len())
}

/// A `peers` entry or `sender` map at the start of `rest` in exactly the shape `head` (up
/// to the id's digits), `mid` (between them and the ip) and `tail` (between the ip and the
/// port) give it: the id's digits, the ip as `ip` reads it (and its length), the port, and
/// the bytes it all takes. Each piece is compared whole at a known offset, rather than
/// token by token.
#[inline(always)]
fn exact_node_in<'a, R, const H: usize, const M: usize, const T: usize>(
    rest: &'a [u8],
    (head, mid, tail): (&[u8; H], &[u8; M], &[u8; T]),
    ip: impl Fn(&'a [u8]) -> Option<(R, usize)>,
) -> Option<(&'a [u8; 40], R, u32, usize)> {
    let (found, rest) = rest.split_first_chunk::<H>()?;
    let (hex, rest) = rest.split_first_chunk::<40>()?;
    let (found_mid, after) = rest.split_first_chunk::<M>()?;
    if found != head || found_mid != mid {
        return None;
    }
    let (ip, ip_len) = ip(after)?;
    let (found, after) = after.get(ip_len..)?.split_first_chunk::<T>()?;
    if found != tail {
        return None;
    }
    // As `uint` reads it, and the end of the map right after.
    let (port, digits) = short_number(after)?;
    if (digits > 1 && after[0] == b'0') || after.get(digits) != Some(&b'}') {
        return None;
    }
    Some((hex, ip, port, H + 40 + M + ip_len + T + digits + 1))
}

/// [`exact_node_in`] in our compact layout, else in the reference's (`json.dumps`, a space
/// after each `:` and `,`).
#[inline(always)]
fn exact_node<'a, R>(
    rest: &'a [u8],
    ip: impl Fn(&'a [u8]) -> Option<(R, usize)> + Copy,
) -> Option<(&'a [u8; 40], R, u32, usize)> {
    const COMPACT: (&[u8; 12], &[u8; 8], &[u8; 9]) =
        (b"{\"node_id\":\"", b"\",\"ip\":\"", b"\",\"port\":");
    const SPACED: (&[u8; 13], &[u8; 10], &[u8; 11]) =
        (b"{\"node_id\": \"", b"\", \"ip\": \"", b"\", \"port\": ");
    exact_node_in(rest, COMPACT, ip).or_else(|| exact_node_in(rest, SPACED, ip))
}

/// The text of a string up to its closing quote, and its length (escapes are left to
/// [`scan::plain_sender`], which refuses a `\`).
fn to_quote(after: &[u8]) -> Option<(&[u8], usize)> {
    let len = after.iter().position(|&c| c == b'"')?;
    Some((&after[..len], len))
}

/// JSON tokens for the fast path: strings without escapes, plain non-negative integers,
/// `true` and `false`, whitespace anywhere JSON allows it.
pub(super) struct JsonScanner<'de> {
    input: &'de [u8],
    pos: usize,
    /// Just entered a map or list: no `,` before the next key or element.
    first: bool,
}

impl<'de> JsonScanner<'de> {
    fn new(input: &'de [u8]) -> JsonScanner<'de> {
        JsonScanner {
            input,
            pos: 0,
            first: false,
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.input.get(self.pos).copied()
    }

    /// Consumes `c`, after whitespace.
    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// The bytes of a string up to its closing quote, both quotes consumed; `None` for a
    /// string with an escape or a control character (which serde_json refuses). Not checked
    /// for UTF-8: serde_json does not check the strings it skips either.
    fn plain_str(&mut self) -> Option<&'de [u8]> {
        self.eat(b'"')?;
        self.plain_str_rest()
    }

    /// [`Self::plain_str`] after the opening quote.
    fn plain_str_rest(&mut self) -> Option<&'de [u8]> {
        let rest = self.input.get(self.pos..)?;
        let len = plain_run(rest);
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        self.pos += len + 1;
        Some(&rest[..len])
    }

    /// Whether the map or list just entered or continued has another item, reading the `,`
    /// before it or the `end` after the last one.
    #[inline]
    fn another(&mut self, end: u8) -> Option<bool> {
        let first = std::mem::take(&mut self.first);
        // The `,` of compact JSON, such as ours between entries.
        if !first && self.input.get(self.pos) == Some(&b',') {
            self.pos += 1;
            return Some(true);
        }
        if self.peek()? == end {
            self.pos += 1;
            return Some(false);
        }
        if !first {
            self.eat(b',')?;
        }
        Some(true)
    }
}

impl<'de> Scanner<'de> for JsonScanner<'de> {
    const ENTRY_KEYS: [(&'static [u8], Field); 3] = [
        (b"node_id", Field::NodeId),
        (b"ip", Field::Ip),
        (b"port", Field::Port),
    ];

    #[inline]
    fn key_is(&mut self, name: &[u8]) -> bool {
        // `,` unless the map was just entered, then `"name"` and `:`; a `}`, or any other
        // key, is not it.
        let pos = self.pos;
        let matched = (self.first || self.eat(b',').is_some())
            && self.eat(b'"').is_some()
            && self
                .input
                .get(self.pos..)
                .is_some_and(|rest| rest.starts_with(name) && rest.get(name.len()) == Some(&b'"'))
            && {
                self.pos += name.len() + 1;
                self.eat(b':').is_some()
            };
        if matched {
            self.first = false;
        } else {
            self.pos = pos;
        }
        matched
    }

    fn map(&mut self) -> Option<()> {
        self.eat(b'{')?;
        self.first = true;
        Some(())
    }

    fn key(&mut self) -> Option<Option<Field>> {
        if !self.another(b'}')? {
            return Some(None);
        }
        self.eat(b'"')?;
        // Up to the next quote, a byte at a time (keys are short, `plain_str` is set up for
        // long strings): a key that is one of ours holds no escape and no control or
        // non-ASCII byte, so it is the whole key. Any other is checked as any string; and
        // serde_json checks a key's UTF-8, so a non-ASCII one is left to it.
        let rest = self.input.get(self.pos..)?;
        let len = rest.iter().position(|&c| c == b'"')?;
        let field = Field::from_name(&rest[..len]);
        if field == Field::Other {
            if !self.plain_str_rest()?.is_ascii() {
                return None;
            }
        } else {
            self.pos += len + 1;
        }
        self.eat(b':')?;
        Some(Some(field))
    }

    fn list(&mut self) -> Option<()> {
        self.eat(b'[')?;
        self.first = true;
        Some(())
    }

    fn more(&mut self) -> Option<bool> {
        self.another(b']')
    }

    fn text(&mut self, _name: &'static str) -> Option<Result<&'de str, DecodeError>> {
        std::str::from_utf8(self.plain_str()?).ok().map(Ok)
    }

    fn utf8(&mut self, _name: &'static str) -> Option<Result<&'de [u8], DecodeError>> {
        let bytes = self.plain_str()?;
        is_utf8(bytes).then_some(Ok(bytes))
    }

    fn id(&mut self) -> Option<NodeId> {
        self.eat(b'"')?;
        // The 40 digits and the closing quote right after them (not `eat`: whitespace
        // there would be part of the string).
        let digits = self.input.get(self.pos..self.pos + 40)?;
        let id = id_from_hex(digits)?;
        if self.input.get(self.pos + 40) != Some(&b'"') {
            return None;
        }
        self.pos += 41;
        Some(id)
    }

    fn ip(&mut self) -> Option<Option<IpAddr>> {
        // A dotted quad and the closing quote, read in one pass; else the string, whole.
        if self.peek()? == b'"' {
            let rest = self.input.get(self.pos + 1..)?;
            if let Some((ip, len)) =
                leading_ipv4(rest).filter(|&(_, len)| rest.get(len) == Some(&b'"'))
            {
                self.pos += len + 2;
                return Some(Some(IpAddr::V4(ip)));
            }
        }
        let text = self.plain_str()?;
        let ip = parse_ip(text);
        // serde_json refuses a string that is not UTF-8, where the entry would be skipped.
        if ip.is_none() {
            std::str::from_utf8(text).ok()?;
        }
        Some(ip)
    }

    fn uint(&mut self) -> Option<u64> {
        self.skip_ws();
        let rest = self.input.get(self.pos..)?;
        let (v, digits) = leading_number(rest)?;
        // JSON allows no leading zero; a fraction or exponent makes a float.
        if digits == 0
            || (digits > 1 && rest[0] == b'0')
            || matches!(rest.get(digits), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        self.pos += digits;
        Some(v)
    }

    fn flag(&mut self) -> Option<bool> {
        self.skip_ws();
        let rest = self.input.get(self.pos..)?;
        if rest.starts_with(b"true") {
            self.pos += 4;
            Some(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Some(false)
        } else {
            self.uint().map(|v| v != 0)
        }
    }

    fn value(&mut self) -> Option<Result<Value, DecodeError>> {
        if self.peek()? == b'"' {
            let text = self.text("value")?.ok()?;
            return Some(Ok(Value::Text(text.to_owned())));
        }
        // Bytes: an object whose only key is `__bytes_b64__`.
        self.map()?;
        if self.key()? != Some(Field::B64) {
            return None;
        }
        let text = self.text("value")?.ok()?;
        if self.key()?.is_some() {
            return None;
        }
        Some(value_from_base64(text))
    }

    fn skip(&mut self) -> Option<()> {
        if self.peek()? == b'"' {
            self.plain_str().map(drop)
        } else {
            self.uint().map(drop)
        }
    }

    #[inline]
    fn exact_entry(&mut self) -> Option<Option<WirePeer>> {
        // Whitespace before the entry is read either way.
        self.skip_ws();
        let (hex, ip, port, len) = exact_node(self.input.get(self.pos..)?, leading_ipv4)?;
        let id = id_from_hex_array(hex)?;
        self.pos += len;
        self.first = false;
        Some(peer_addr(IpAddr::V4(ip), port.into()).map(|addr| WirePeer { id, addr }))
    }

    fn exact_sender(&mut self) -> Option<Sender> {
        // Whitespace before the map is read either way.
        self.skip_ws();
        let (hex, ip, port, len) = exact_node(self.input.get(self.pos..)?, to_quote)?;
        let sender = scan::plain_sender(hex, ip, port)?;
        self.pos += len;
        self.first = false;
        Some(sender)
    }

    fn finish(&mut self) -> Option<()> {
        self.skip_ws();
        (self.pos == self.input.len()).then_some(())
    }

    fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }
}
