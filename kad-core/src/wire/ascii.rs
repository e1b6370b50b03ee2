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
/// to three digits, no leading zeros), without its general parser, in one pass over the
/// bytes. `None` for anything else, which may still be an IPv6 address.
pub(super) fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    // The octet being read, its value so far and its digits.
    let (mut i, mut value, mut digits) = (0, 0u16, 0);
    for &c in text {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            // A fourth digit, or one after a leading zero.
            if digits == 3 || (digits == 1 && value == 0) {
                return None;
            }
            value = value * 10 + u16::from(d);
            digits += 1;
        } else if c == b'.' && digits > 0 && i < 3 {
            octets[i] = u8::try_from(value).ok()?;
            (i, value, digits) = (i + 1, 0, 0);
        } else {
            return None;
        }
    }
    if i < 3 || digits == 0 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// Reads 40 hex digits in either case, as [`NodeId::from_hex_bytes`] does; `None` for
/// anything else.
///
/// Eight digits at a time in a `u64` (SWAR): a table lookup per digit cost about 280
/// instructions an id, and a peers list of 20 holds 21 ids.
pub(crate) fn id_from_hex(text: &[u8]) -> Option<NodeId> {
    let text: &[u8; 40] = text.try_into().ok()?;
    let mut id = [0u8; 20];
    let mut valid = true;
    for (out, digits) in id.chunks_exact_mut(4).zip(text.chunks_exact(8)) {
        let mut word = [0; 8];
        word.copy_from_slice(digits);
        let (bytes, ok) = hex_word(u64::from_le_bytes(word));
        out.copy_from_slice(&bytes.to_le_bytes());
        valid &= ok;
    }
    valid.then_some(NodeId(id))
}

/// Eight hex digits (the first in the lowest byte) as four bytes (the first in the lowest
/// byte), and whether all eight were hex digits.
fn hex_word(x: u64) -> (u32, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // For bytes below 0x80, the high bit of each byte of the result says whether it is at
    // least `n`: adding `0x80 - n` cannot carry into the next byte.
    let at_least = |v: u64, n: u8| v.wrapping_add(ONES * u64::from(0x80 - n)) & HIGH;
    let ascii = x & HIGH == 0;
    let digit = at_least(x, b'0') & !at_least(x, b'9' + 1);
    // Setting bit 0x20 lowers `A`-`F` to `a`-`f`; only they and `a`-`f` land in `a`-`f`.
    let lower = x | (ONES * 0x20);
    let letter = at_least(lower, b'a') & !at_least(lower, b'f' + 1);
    let valid = ascii && (digit | letter) == HIGH;
    // A digit's value is its low nibble; a letter's is its low nibble plus 9.
    let nibbles = (x & (ONES * 0x0f)) + (letter >> 7) * 9;
    // Pair the nibbles into bytes, then gather the bytes.
    let pairs = ((nibbles << 4) | (nibbles >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let bytes = (quads | (quads >> 16)) as u32;
    (bytes, valid)
}

/// The text form of an IP address (`10.0.0.1`, `::1`), exactly as `Display` writes it, on
/// the stack. IPv4 is written by hand: every entry of every peers list needs it, and
/// formatting it was a third of the time spent encoding a 20-peer reply.
pub(crate) struct IpText {
    buf: [u8; IpText::MAX_LEN],
    len: usize,
}

impl IpText {
    /// The longest text `Display` gives an IP address (`ffff:ffff:…:ffff`, 39, or an IPv4
    /// in IPv6 form such as `::ffff:255.255.255.255`, shorter).
    const MAX_LEN: usize = 45;

    pub(crate) fn new(ip: IpAddr) -> IpText {
        let mut text = IpText {
            buf: [0; IpText::MAX_LEN],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.buf[text.len] = b'.';
                        text.len += 1;
                    }
                    // Three bytes copied whatever the length: a fixed-size copy is a move,
                    // a variable one a call. The buffer has room for the extra ones.
                    let (digits, len) = OCTET_TEXT[usize::from(octet)];
                    text.buf[text.len..text.len + 3].copy_from_slice(&digits);
                    text.len += usize::from(len);
                }
            }
            IpAddr::V6(v6) => {
                let mut cursor = &mut text.buf[..];
                // Cannot fail: the text fits (MAX_LEN).
                let _ = write!(cursor, "{v6}");
                text.len = IpText::MAX_LEN - cursor.len();
            }
        }
        text
    }

    /// The text as bytes, all ASCII, none of which needs escaping in JSON.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Each octet value in decimal: its digits (left-aligned) and how many there are.
const OCTET_TEXT: [([u8; 3], u8); 256] = {
    let mut t = [([0; 3], 0); 256];
    let mut i = 0;
    while i < 256 {
        let (h, d, u) = ((i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            ([b'0' + h, b'0' + d, b'0' + u], 3)
        } else if i >= 10 {
            ([b'0' + d, b'0' + u, 0], 2)
        } else {
            ([b'0' + u, 0, 0], 1)
        };
        i += 1;
    }
    t
};

/// Appends `v` in decimal, as both formats write integers, without going through `fmt`.
#[inline]
pub(crate) fn write_decimal(out: &mut Vec<u8>, mut v: u64) {
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
