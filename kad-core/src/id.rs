//! 160-bit identifiers, the XOR metric, and key hashing.

use std::fmt;
use std::str::FromStr;

use rand_core::RngCore;
use sha1::{Digest, Sha1};

/// Length of an id in bytes (160 bits, the size of a SHA-1 digest).
pub const ID_BYTES: usize = 20;
/// Length of an id in bits.
pub const ID_BITS: usize = ID_BYTES * 8;

/// A 160-bit node id or key id.
///
/// On the wire it is 40 hex characters; we accept either case and always write lowercase.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub [u8; ID_BYTES]);

/// Why a string is not a valid [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is not 40 characters long.
    #[error("a node id is 40 hex characters, got {0}")]
    Length(usize),
    /// The string holds a character that is not a hex digit.
    #[error("a node id holds only hex digits, found {0:?}")]
    NotHex(char),
}

impl NodeId {
    /// The id of a DHT key: SHA-1 of its UTF-8 bytes (as the Python package's
    /// `hash_key_to_node_id`).
    pub fn for_key(key: &str) -> NodeId {
        let digest = Sha1::digest(key.as_bytes());
        NodeId(digest.into())
    }

    /// A random id drawn from `rng`.
    pub fn random(rng: &mut impl RngCore) -> NodeId {
        let mut bytes = [0u8; ID_BYTES];
        rng.fill_bytes(&mut bytes);
        NodeId(bytes)
    }

    /// Parses 40 hex characters, in either case.
    pub fn from_hex(s: &str) -> Result<NodeId, IdError> {
        Self::from_hex_bytes(s.as_bytes())
    }

    /// Parses 40 hex characters given as bytes, in either case.
    pub fn from_hex_bytes(s: &[u8]) -> Result<NodeId, IdError> {
        if s.len() != ID_BYTES * 2 {
            return Err(IdError::Length(s.len()));
        }
        // Every peer of every peers list goes through here, so no branch per digit: a
        // table lookup each, and one check at the end for a digit that was not one.
        let mut out = [0u8; ID_BYTES];
        let mut bad = 0u8;
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let hi = HEX_VALUES[usize::from(pair[0])];
            let lo = HEX_VALUES[usize::from(pair[1])];
            bad |= hi | lo;
            *byte = (hi << 4) | lo;
        }
        if bad > 0xf {
            let c = s.iter().find(|&&c| HEX_VALUES[usize::from(c)] > 0xf);
            return Err(IdError::NotHex(char::from(c.copied().unwrap_or_default())));
        }
        Ok(NodeId(out))
    }

    /// The id as 40 lowercase hex characters, without allocating.
    pub fn to_hex_array(&self) -> [u8; ID_BYTES * 2] {
        let mut out = [0u8; ID_BYTES * 2];
        self.write_hex(&mut out);
        out
    }

    /// Writes the id as 40 lowercase hex characters over `out`, in place (an encoder that
    /// builds a message in a buffer saves a copy).
    #[inline]
    pub(crate) fn write_hex(&self, out: &mut [u8; ID_BYTES * 2]) {
        for (pair, &b) in out.chunks_exact_mut(2).zip(&self.0) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
    }

    /// The XOR distance between two ids.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; ID_BYTES];
        for (i, out) in d.iter_mut().enumerate() {
            *out = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// The id at `distance` from this one (`self XOR distance`).
    pub fn xor(&self, distance: &Distance) -> NodeId {
        let mut d = [0u8; ID_BYTES];
        for (i, out) in d.iter_mut().enumerate() {
            *out = self.0[i] ^ distance.0[i];
        }
        NodeId(d)
    }

    /// The raw bytes of the id.
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }
}

/// The value of each byte as a hex digit, either case; 0xff for a byte that is not one.
const HEX_VALUES: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        t[b"0123456789ABCDEF"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Each byte value as two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    t
};

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex_array();
        // Hex digits are ASCII, so this never fails.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex_array();
        let short = std::str::from_utf8(&hex[..8]).map_err(|_| fmt::Error)?;
        write!(f, "NodeId({short}…)")
    }
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::from_hex(s)
    }
}

/// The XOR distance between two ids, ordered as a 160-bit big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Distance(pub [u8; ID_BYTES]);

// The same order as the byte array's, compared as two integers instead of a `memcmp`
// call: lookups and `Table::closest` sort by distance all the time.
impl Ord for Distance {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.words().cmp(&other.words())
    }
}

impl PartialOrd for Distance {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Distance {
    /// The distance as a big-endian (high 128 bits, low 32 bits) pair: ordered as the
    /// distance is.
    pub(crate) fn words(&self) -> (u128, u32) {
        let mut hi = [0u8; 16];
        let mut lo = [0u8; 4];
        hi.copy_from_slice(&self.0[..16]);
        lo.copy_from_slice(&self.0[16..]);
        (u128::from_be_bytes(hi), u32::from_be_bytes(lo))
    }

    /// The number of significant bits (Python's `int.bit_length()`): 0 for distance 0,
    /// 160 when the top bit is set.
    pub fn bit_length(&self) -> usize {
        ID_BITS - self.leading_zeros()
    }

    /// Leading zero bits; 160 for distance 0.
    pub fn leading_zeros(&self) -> usize {
        match self.words() {
            (0, lo) => 128 + lo.leading_zeros() as usize,
            (hi, _) => hi.leading_zeros() as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_hash_matches_python() {
        // hashlib.sha1(b"my_key").hexdigest(), as in the set_cached wire vector.
        assert_eq!(
            NodeId::for_key("my_key").to_string(),
            "0f7da3f82f86e5ea63d3ac270f091af4bcfa819a"
        );
    }

    #[test]
    fn hex_accepts_both_cases_and_normalises() {
        let up = NodeId::from_hex("3F786850E387550FDAB836ED7E6DC881DE23001B").unwrap();
        let low = NodeId::from_hex("3f786850e387550fdab836ed7e6dc881de23001b").unwrap();
        assert_eq!(up, low);
        assert_eq!(up.to_string(), "3f786850e387550fdab836ed7e6dc881de23001b");
        assert_eq!(NodeId::from_hex("abc"), Err(IdError::Length(3)));
        assert!(matches!(
            NodeId::from_hex("zz786850e387550fdab836ed7e6dc881de23001b"),
            Err(IdError::NotHex('z'))
        ));
    }

    #[test]
    fn bit_length_matches_python_int() {
        let zero = NodeId::default();
        let mut one = [0u8; 20];
        one[19] = 1;
        assert_eq!(zero.distance(&NodeId(one)).bit_length(), 1);
        assert_eq!(zero.distance(&zero).bit_length(), 0);
        let mut top = [0u8; 20];
        top[0] = 0x80;
        assert_eq!(zero.distance(&NodeId(top)).bit_length(), 160);
    }

    /// Digit by digit, the obvious way: what the table-driven decoder must agree with.
    fn from_hex_slowly(s: &[u8]) -> Result<NodeId, IdError> {
        if s.len() != 40 {
            return Err(IdError::Length(s.len()));
        }
        let mut out = [0u8; ID_BYTES];
        for (i, &c) in s.iter().enumerate() {
            let d = char::from(c)
                .to_digit(16)
                .ok_or(IdError::NotHex(char::from(c)))?;
            out[i / 2] |= (d as u8) << (if i % 2 == 0 { 4 } else { 0 });
        }
        Ok(NodeId(out))
    }

    fn hex_digit_or_not() -> impl Strategy<Value = u8> {
        prop_oneof![
            20 => proptest::sample::select(b"0123456789abcdefABCDEF".to_vec()),
            1 => any::<u8>(),
        ]
    }

    #[test]
    fn every_byte_at_every_place_decodes_as_digit_by_digit() {
        let valid = b"0123456789abcdefABCDEF0123456789abcdef01";
        for at in 0..40 {
            for c in 0..=255u8 {
                let mut s = *valid;
                s[at] = c;
                assert_eq!(
                    NodeId::from_hex_bytes(&s),
                    from_hex_slowly(&s),
                    "{c:#x} at {at}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn distance_order_is_the_byte_order(a in any::<[u8; 20]>(), b in any::<[u8; 20]>(), n in 0usize..20) {
            // Share a prefix of n bytes, so that ties and late differences come up.
            let mut b = b;
            b[..n].copy_from_slice(&a[..n]);
            let (da, db) = (Distance(a), Distance(b));
            prop_assert_eq!(da.cmp(&db), a.cmp(&b));
            prop_assert_eq!(da.partial_cmp(&db), Some(a.cmp(&b)));
            let lz = a.iter().position(|x| *x != 0)
                .map_or(160, |i| i * 8 + a[i].leading_zeros() as usize);
            prop_assert_eq!(da.leading_zeros(), lz);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn hex_round_trips(bytes in any::<[u8; 20]>()) {
            let id = NodeId(bytes);
            let plain: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(id.to_string(), plain);
            prop_assert_eq!(NodeId::from_hex_bytes(&id.to_hex_array()), Ok(id));
        }

        #[test]
        fn hex_decoding_agrees_with_digit_by_digit(
            s in proptest::collection::vec(hex_digit_or_not(), 38..=42),
        ) {
            prop_assert_eq!(NodeId::from_hex_bytes(&s), from_hex_slowly(&s));
        }
    }
}
