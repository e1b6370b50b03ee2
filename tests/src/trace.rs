//! A deterministic hash of everything a simulation delivered.
//!
//! FNV-1a (64 bit), written out here because std's hashers are randomly keyed per process
//! and a trace hash must be the same on every run and every machine.

use std::net::SocketAddr;
use std::time::Duration;

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over a stream of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(OFFSET_BASIS)
    }
}

impl TraceHash {
    /// Feeds raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }

    /// Feeds one delivered datagram: virtual time since the start, source, destination and
    /// payload, each length-prefixed so that no two different datagrams feed the same bytes.
    pub fn datagram(&mut self, at: Duration, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        self.write(&at.as_nanos().to_le_bytes());
        self.addr(src);
        self.addr(dst);
        self.write(&(payload.len() as u64).to_le_bytes());
        self.write(payload);
    }

    fn addr(&mut self, a: SocketAddr) {
        match a {
            SocketAddr::V4(v4) => {
                self.write(&[4]);
                self.write(&v4.ip().octets());
            }
            SocketAddr::V6(v6) => {
                self.write(&[6]);
                self.write(&v6.ip().octets());
            }
        }
        self.write(&a.port().to_le_bytes());
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_values() {
        // Published FNV-1a 64 test vectors.
        let mut h = TraceHash::default();
        assert_eq!(h.value(), 0xcbf2_9ce4_8422_2325);
        h.write(b"a");
        assert_eq!(h.value(), 0xaf63_dc4c_8601_ec8c);
        let mut h = TraceHash::default();
        h.write(b"foobar");
        assert_eq!(h.value(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn datagram_fields_are_separated() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let mut x = TraceHash::default();
        x.datagram(Duration::from_millis(1), a, b, b"xy");
        let mut y = TraceHash::default();
        y.datagram(Duration::from_millis(1), b, a, b"xy");
        assert_ne!(x, y);
    }
}
