//! The bencode codec, through serde.
//!
//! We read with `bt_bencode` through the shared visitors of [`super::de`], after
//! [`check_structure`] has vetted the input: `bt_bencode` 0.8 has no nesting limit (about
//! 10 000 nested lists overflow the stack and abort the process) and does an unchecked
//! `offset + length` on a byte string's length prefix (a prefix near `usize::MAX` panics
//! with an overflow). We write through `wire::ser`, keys in sorted order as the
//! reference does, so our output is byte-identical to its. The hand-written fast path of
//! `wire::fast` does both for the messages it knows, with the same result.

use super::de::{read_message, Flavor};
use super::{DecodeError, Message};

/// Deepest nesting we accept; a message needs 3 (message, `peers` list, peer map).
const MAX_DEPTH: usize = 32;

/// Decodes one bencoded datagram with serde, the definition of what we accept.
pub(super) fn decode_with_serde(bytes: &[u8]) -> Result<Message, DecodeError> {
    check_structure(bytes)?;
    let mut de = bt_bencode::Deserializer::from_slice(bytes);
    let msg = read_message(&mut de, Flavor::Bencode).map_err(|_| DecodeError::Syntax)?;
    de.end().map_err(|_| DecodeError::Syntax)?;
    msg
}

/// Checks, without recursion or allocation, that `bytes` is exactly one well-formed
/// bencoded dict nested at most [`MAX_DEPTH`] deep, every length prefix within the input.
/// That is all `bt_bencode` needs to be safe; it still checks the rest (e.g. integers that
/// overflow 64 bits) itself.
///
/// Like `bt_bencode` and the reference, this accepts unsorted or duplicate keys and
/// leading zeros in integers and lengths: the reference never writes them, but it reads
/// them, so refusing them would buy nothing.
fn check_structure(bytes: &[u8]) -> Result<(), DecodeError> {
    use DecodeError::Syntax;
    if bytes.first() != Some(&b'd') {
        return Err(Syntax);
    }
    // Bit `i` of `dicts` is set when the container at depth `i` is a dict.
    let mut dicts: u64 = 0;
    let mut depth = 0usize;
    // In a dict, whether the next item is a key (else the value of the last key).
    let mut want_key = false;
    let mut pos = 0usize;
    loop {
        let in_dict = depth > 0 && dicts & (1 << (depth - 1)) != 0;
        let c = *bytes.get(pos).ok_or(Syntax)?;
        if in_dict && want_key && !matches!(c, b'0'..=b'9' | b'e') {
            // Keys are byte strings.
            return Err(Syntax);
        }
        match c {
            b'd' | b'l' => {
                if depth == MAX_DEPTH {
                    return Err(Syntax);
                }
                if c == b'd' {
                    dicts |= 1 << depth;
                } else {
                    dicts &= !(1 << depth);
                }
                depth += 1;
                want_key = true;
                pos += 1;
                continue;
            }
            b'e' => {
                if in_dict && !want_key {
                    // A key without a value.
                    return Err(Syntax);
                }
                depth = depth.checked_sub(1).ok_or(Syntax)?;
                pos += 1;
            }
            b'i' => {
                pos += 1;
                if bytes.get(pos) == Some(&b'-') {
                    pos += 1;
                }
                let digits = count_digits(bytes.get(pos..).unwrap_or_default());
                if digits == 0 || bytes.get(pos + digits) != Some(&b'e') {
                    return Err(Syntax);
                }
                pos += digits + 1;
            }
            b'0'..=b'9' => {
                let rest = bytes.get(pos..).unwrap_or_default();
                let digits = count_digits(rest);
                if rest.get(digits) != Some(&b':') {
                    return Err(Syntax);
                }
                pos += digits + 1;
                // A length longer than the rest of the input is refused before it is used.
                let len = rest
                    .iter()
                    .take(digits)
                    .try_fold(0u64, |len, d| {
                        len.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                    })
                    .and_then(|len| usize::try_from(len).ok())
                    .filter(|&len| len <= bytes.len() - pos)
                    .ok_or(Syntax)?;
                pos += len;
            }
            _ => return Err(Syntax),
        }
        // A whole value (or container) has just ended.
        if depth == 0 {
            // The top-level dict is closed: nothing may follow it.
            return if pos == bytes.len() {
                Ok(())
            } else {
                Err(Syntax)
            };
        }
        // In a dict, a finished key is followed by its value and a finished value by a key.
        // A container just closed was a value (keys are strings), so a key comes next;
        // in a list the flag is unused.
        want_key = if c == b'e' { true } else { !want_key };
    }
}

/// The number of ASCII digits at the start of `bytes`.
fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}
