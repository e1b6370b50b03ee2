//! The wire fast path: hand-written writers and readers for both formats, behind one seam.
//!
//! Everything here is an optimisation of the serde path beside it ([`super::de`] reads,
//! `wire::ser` writes), never a second definition of the protocol:
//!
//! - [`encode`] writes exactly the bytes the serde writers write (a property test and the
//!   fuzz harnesses compare the two byte for byte);
//! - [`decode`] reads the shapes of message that we and the reference send, and gives up
//!   (`None`) on anything unusual, which the serde path then decides; where it gives a
//!   result, that result is serde's.
//!
//! Build with `RUSTFLAGS="--cfg kad_serde_wire"` and this module is left out: the serde
//! path does all the work, and a simulation gives the same trace hash (`.ci/wire-fast-path`
//! checks that). Why it exists: through serde, encoding a 20-peer reply cost several times
//! the instructions, and decoding one about 60 000 (see BENCHMARKS.md, codec).

use std::net::IpAddr;

use super::{Codec, DecodeError, Message, Sender};

mod ascii;
mod bencode;
mod json;
mod scan;

pub(crate) use ascii::{ip_text_len, IpText};

/// Appends the encoding of `msg` to `out`, with a `pad` field of `pad` spaces when `pad`
/// is not zero: the bytes `wire::ser` writes. `sender`, when given, must be
/// [`sender_field`] of `msg.sender` in `codec`: it is copied instead of written again.
pub(super) fn encode(
    codec: Codec,
    msg: &Message,
    pad: usize,
    sender: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    match codec {
        Codec::Json => json::encode(msg, pad, sender, out),
        Codec::Bencode => bencode::encode(msg, pad, sender, out),
    }
}

/// The `sender` field (key included) as [`encode`] writes it in `codec`: a node writes its
/// own once and copies it into every datagram.
pub(super) fn sender_field(codec: Codec, sender: &Sender) -> Vec<u8> {
    let mut out = Vec::new();
    match codec {
        Codec::Json => json::write_sender_field(&mut out, sender),
        Codec::Bencode => bencode::write_sender(&mut out, sender),
    }
    out
}

/// Decodes one datagram, or `None` when the serde path must decide.
pub(super) fn decode(codec: Codec, bytes: &[u8]) -> Option<Result<Message, DecodeError>> {
    match codec {
        Codec::Json => json::decode(bytes),
        Codec::Bencode => bencode::decode(bytes),
    }
}

/// An IP literal, read as `IpAddr::from_str` reads it, dotted quads without its general
/// parser; `None` for anything else, bytes that are not UTF-8 included.
pub(super) fn parse_ip(text: &[u8]) -> Option<IpAddr> {
    ascii::parse_ip(text)
}

#[cfg(test)]
mod tests;
