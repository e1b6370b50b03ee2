//! The ASCII pieces of both formats, read and written by hand: hex ids, IP literals and
//! decimal numbers. Every entry of every peers list holds one of each, so these are the
//! codec's inner loops.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use crate::NodeId;

/// An IP literal, read as `IpAddr::from_str` reads it; `None` for anything else, bytes
/// that are not UTF-8 included.
pub(crate) fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    match parse_ipv4(text) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => std::str::from_utf8(text).ok()?.parse().ok(),
    }
}

/// Reads a dotted quad exactly as `Ipv4Addr::from_str` does (four decimal octets of one
/// to three digits, no leading zeros), without its general parser. `None` for anything
/// else, which may still be an IPv6 address.
pub(super) fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let (ip, len) = leading_ipv4(text)?;
    (len == text.len()).then_some(ip)
}

/// The dotted quad at the start of `text` and its length, read as [`parse_ipv4`] reads
/// it; what follows it is not looked at (JSON: the closing quote), but for a digit or a
/// dot, which would make it no dotted quad.
#[inline]
pub(crate) fn leading_ipv4(text: &[u8]) -> Option<(Ipv4Addr, usize)> {
    if let Some(window) = text.first_chunk::<16>() {
        return ipv4_in_window(*window);
    }
    // A zero byte past the end of `text` reads as the end, as the end does.
    let mut window = [0; 16];
    window[..text.len()].copy_from_slice(text);
    ipv4_in_window(window)
}

/// The dotted quad of exactly the `len` bytes at the start of `bytes` (bencode: a string
/// of that length); `None` if they are not one, or if `bytes` is shorter.
pub(crate) fn ipv4_of_len(bytes: &[u8], len: usize) -> Option<Ipv4Addr> {
    if len > 15 {
        return None;
    }
    let Some(&window) = bytes.first_chunk::<16>() else {
        return parse_ipv4(bytes.get(..len)?);
    };
    // A zero byte right after, as if the input ended there: no dotted quad reads past it.
    let mut window = window;
    window[len] = 0;
    let (ip, read) = ipv4_in_window(window)?;
    (read == len).then_some(ip)
}

/// The dotted quad at the start of `window` and its length (at most 15, so the byte after
/// it is in the window and tells that it ends). Octet by octet, each of up to three digits
/// unrolled: the general loop cost about 170 instructions an address.
#[inline]
fn ipv4_in_window(window: [u8; 16]) -> Option<(Ipv4Addr, usize)> {
    // The four bytes from `at`, which hold an octet and what follows it.
    let four = |at: usize| window.get(at..)?.first_chunk::<4>().copied();
    let dot = |at: usize| (window.get(at) == Some(&b'.')).then_some(at + 1);
    let (a, at) = octet(four(0)?)?;
    let at = dot(at)?;
    let (b, len) = octet(four(at)?)?;
    let at = dot(at + len)?;
    let (c, len) = octet(four(at)?)?;
    let at = dot(at + len)?;
    let (d, len) = octet(four(at)?)?;
    let at = at + len;
    if dot(at).is_some() {
        return None;
    }
    Some((Ipv4Addr::new(a, b, c, d), at))
}

/// The octet at the start of `four` and its number of digits: one to three, no leading
/// zero, at most 255, and no fourth digit after them.
#[inline(always)]
fn octet(four: [u8; 4]) -> Option<(u8, usize)> {
    let digit = |c: u8| Some(c.wrapping_sub(b'0')).filter(|&d| d < 10);
    let d0 = digit(four[0])?;
    let Some(d1) = digit(four[1]) else {
        return Some((d0, 1));
    };
    if d0 == 0 {
        return None;
    }
    let Some(d2) = digit(four[2]) else {
        return Some((d0 * 10 + d1, 2));
    };
    if digit(four[3]).is_some() {
        return None;
    }
    let value = u16::from(d0) * 100 + u16::from(d1) * 10 + u16::from(d2);
    Some((u8::try_from(value).ok()?, 3))
}

/// Reads 40 hex digits in either case, as [`NodeId::from_hex_bytes`] does; `None` for
/// anything else.
pub(crate) fn id_from_hex(text: &[u8]) -> Option<NodeId> {
    id_from_hex_array(text.try_into().ok()?)
}

/// [`id_from_hex`] of exactly 40 bytes.
///
/// Eight digits at a time in a `u64` (SWAR): a peers list of 20 holds 21 ids, and a table
/// of every pair of digits (128 KiB) still cost about 180 instructions an id.
#[inline(always)]
pub(crate) fn id_from_hex_array(text: &[u8; 40]) -> Option<NodeId> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    // For a byte below 0x80, `+ (0x80 - n)` sets its high bit if and only if it is at
    // least `n`, without a carry into the next byte; so the high bit of the XOR of two such
    // sums is set for a byte in `lo..=hi`. A byte from 0x80 up (whose carry may spill) is
    // refused at the end, with the others.
    let in_range = |x: u64, lo: u8, hi: u8| {
        x.wrapping_add(ONES * u64::from(0x80 - lo)) ^ x.wrapping_add(ONES * u64::from(0x7f - hi))
    };
    let mut id = [0u8; 20];
    let mut good = HIGH;
    let mut all = 0;
    for i in 0..5 {
        let mut word = [0; 8];
        word.copy_from_slice(&text[8 * i..8 * i + 8]);
        let x = u64::from_le_bytes(word);
        // `| 0x20` takes `A`..`F` to `a`..`f`, and nothing else there.
        good &= in_range(x, b'0', b'9') | in_range(x | (ONES * 0x20), b'a', b'f');
        all |= x;
        // A digit's value is its low four bits, a letter's (bit 6 set) nine more.
        let nibbles = (x & (ONES * 0x0f)) + ((x >> 6) & ONES) * 9;
        // Each pair of nibbles into the low byte of its 16 bits (the first digit is the
        // high nibble), then the four bytes together.
        let pairs = (nibbles << 4 | nibbles >> 8) & 0x00ff_00ff_00ff_00ff;
        let pairs = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff;
        let bytes = (pairs | pairs >> 16) as u32;
        id[4 * i..4 * i + 4].copy_from_slice(&bytes.to_le_bytes());
    }
    (good == HIGH && all & HIGH == 0).then_some(NodeId(id))
}

/// The text form of an IP address (`10.0.0.1`, `::1`), exactly as `Display` writes it, on
/// the stack. IPv4 is written by hand ([`Cursor::put_ipv4`]): every entry of every peers
/// list needs it, and formatting it was a third of the time spent encoding a 20-peer reply.
pub(crate) struct IpText(Cursor<{ IpText::MAX_LEN }>);

impl IpText {
    /// The longest text `Display` gives an IP address (`ffff:ffff:…:ffff`, 39, or an IPv4
    /// in IPv6 form such as `::ffff:255.255.255.255`, shorter).
    pub(crate) const MAX_LEN: usize = 45;

    pub(crate) fn new(ip: IpAddr) -> IpText {
        let mut text = Cursor::new();
        match ip {
            // At most 15 bytes, and `put_ipv4` needs 16 of room: less than MAX_LEN.
            IpAddr::V4(v4) => text.put_ipv4(v4),
            IpAddr::V6(v6) => {
                let mut rest = &mut text.buf[..];
                // Cannot fail: the text fits (MAX_LEN).
                let _ = write!(rest, "{v6}");
                text.len = IpText::MAX_LEN - rest.len();
            }
        }
        IpText(text)
    }

    /// The text as bytes, all ASCII, none of which needs escaping in JSON.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Each octet value in decimal and a dot after it: the text, left-aligned in four bytes,
/// and its length with the dot.
const OCTET_DOT: [([u8; 4], u8); 256] = {
    let mut t = [([0; 4], 0); 256];
    let mut i = 0;
    while i < 256 {
        let (h, d, u) = ((i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u, b'.'], 4)
        } else if i >= 10 {
            ([b'0' + d, b'0' + u, b'.', 0], 3)
        } else {
            ([b'0' + u, b'.', 0, 0], 2)
        };
        i += 1;
    }
    t
};

/// Appends `v` in decimal, as both formats write integers, without going through `fmt`.
#[inline]
pub(crate) fn write_decimal(out: &mut Vec<u8>, mut v: u64) {
    // Most are bencode's lengths of short strings: one or two digits, no buffer to copy.
    if v < 10 {
        return out.push(b'0' + v as u8);
    }
    if v < 100 {
        return out.extend_from_slice(&DIGIT_PAIRS[v as usize]);
    }
    // u64::MAX has 20 digits, so the buffer cannot underflow. Two digits per division.
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while v >= 100 {
        let pair = (v % 100) as usize;
        v /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair]);
    }
    if v >= 10 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[v as usize]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    out.extend_from_slice(&buf[i..]);
}

/// `00` to `99`.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// A piece of output built on the stack, such as one `peers` entry, then appended with one
/// `extend_from_slice`: each part costs a copy of known size, where appending it to the
/// `Vec` cost a capacity check, and a call to `memcpy` for a part of variable length.
/// Writing more than `N` bytes is a bug (a panic).
pub(crate) struct Cursor<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Cursor<N> {
    /// An empty piece.
    #[inline]
    pub(crate) fn new() -> Self {
        Cursor {
            buf: [0; N],
            len: 0,
        }
    }

    /// What was written.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends `bytes`.
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Overwrites the 40 bytes written at `at` with `id` in lowercase hex, in place
    /// (through `NodeId::to_hex_array`, the digits were stored twice).
    #[inline]
    pub(crate) fn put_id_at(&mut self, at: usize, id: &NodeId) {
        if let Some(digits) = self.buf[..self.len]
            .get_mut(at..)
            .and_then(|rest| rest.first_chunk_mut::<40>())
        {
            id.write_hex(digits);
        }
    }

    /// Drops what was written after the first `len` bytes.
    #[inline]
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends an IP address as `Display` writes it (see [`Cursor::put_ipv4`] for the room
    /// it needs).
    #[inline(always)]
    pub(crate) fn put_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.put_ipv4(v4),
            IpAddr::V6(_) => self.put(IpText::new(ip).as_bytes()),
        }
    }

    /// Appends a dotted quad: each octet and a dot as four bytes whatever their length (a
    /// fixed-size copy is a move, a variable one a call), the next one over the rest,
    /// and the last dot dropped. The piece needs 16 bytes of room from where the address
    /// starts (it is at most 15).
    #[inline]
    pub(crate) fn put_ipv4(&mut self, v4: Ipv4Addr) {
        let window = &mut self.buf[self.len..self.len + 16];
        let mut at = 0;
        for octet in v4.octets() {
            let (text, len) = OCTET_DOT[usize::from(octet)];
            window[at..at + 4].copy_from_slice(&text);
            at += usize::from(len);
        }
        self.len += at - 1;
    }

    /// Appends `v` (a port, a length) in decimal, as [`write_decimal`] does. All five
    /// digits are made without a branch, then the leading zeros shifted out and eight
    /// bytes stored: the piece needs [`DECIMAL_SLACK`] bytes of room past the
    /// digits. A loop over the digits cost about 60 instructions a port.
    #[inline]
    pub(crate) fn put_decimal(&mut self, v: u16) {
        let v = u32::from(v);
        let (low, high) = (v % 100, v / 100);
        let (mid, top) = (high % 100, high / 100);
        let [a, b] = DIGIT_PAIRS[mid as usize];
        let [c, d] = DIGIT_PAIRS[low as usize];
        let digits = u64::from_le_bytes([b'0' + top as u8, a, b, c, d, 0, 0, 0]);
        let len = 1
            + usize::from(v >= 10)
            + usize::from(v >= 100)
            + usize::from(v >= 1000)
            + usize::from(v >= 10_000);
        let text = (digits >> (8 * (5 - len))).to_le_bytes();
        self.buf[self.len..self.len + 8].copy_from_slice(&text);
        self.len += len;
    }

    /// Appends `v`, below 100 (the length of an address's text), in decimal: both bytes
    /// stored, the second kept for two digits; a third of [`Cursor::put_decimal`]'s cost.
    #[inline]
    pub(crate) fn put_small(&mut self, v: u8) {
        let [tens, ones] = DIGIT_PAIRS[usize::from(v % 100)];
        let two = v >= 10;
        self.buf[self.len] = if two { tens } else { ones };
        self.buf[self.len + 1] = ones;
        self.len += 1 + usize::from(two);
    }
}

/// Bytes of room [`Cursor::put_decimal`] needs past the digits it writes.
pub(crate) const DECIMAL_SLACK: usize = 3;

/// The length of the text [`Cursor::put_ip`] writes for `ip`.
#[inline]
pub(crate) fn ip_text_len(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => {
            // Each octet's text has a dot after it, but the last.
            v4.octets()
                .into_iter()
                .map(|octet| usize::from(OCTET_DOT[usize::from(octet)].1))
                .sum::<usize>()
                - 1
        }
        IpAddr::V6(_) => IpText::new(ip).as_bytes().len(),
    }
}
