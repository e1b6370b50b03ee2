//! Encoding through serde, in both formats: `serde_json` with our compact style, and
//! `bt_bencode` (which sorts a map's keys itself, as bencode and the reference want).
//!
//! With the fast path built in (`wire::fast`), this is the reference its hand-written
//! writers are held to, byte for byte (tests, fuzz harnesses); with `--cfg kad_serde_wire`
//! it is the encoder.

use std::io;

use base64::Engine as _;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::{
    Body, Codec, FindValueRes, Message, WirePeer, B64_KEY, BYTES_MARKER, CLIENT_KEY, PAD_KEY,
};
use crate::{NodeId, Value};

/// Appends the encoding of `msg` to `out`, with a `pad` field of `pad` spaces when `pad`
/// is not zero.
pub(super) fn encode(codec: Codec, msg: &Message, pad: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let wire = Wire { msg, pad, codec };
    let written = match codec {
        Codec::Json => wire
            .serialize(&mut serde_json::Serializer::with_formatter(
                &mut *out, JsonStyle,
            ))
            .is_ok(),
        Codec::Bencode => wire
            .serialize(&mut bt_bencode::Serializer::new(&mut *out))
            .is_ok(),
    };
    // Neither writer fails on these shapes into a `Vec` (no floats; no booleans in
    // bencode); should one, nothing half-written goes out.
    debug_assert!(written, "{codec}: serde could not encode {msg:?}");
    if !written {
        out.truncate(start);
    }
}

/// The compact JSON the fast writer writes: `serde_json`'s compact style, but for
/// backspace and form feed, which it escapes as `\u0008` and `\u000c` rather than `\b`
/// and `\f` (both are valid JSON; the bytes must be the fast writer's).
struct JsonStyle;

impl serde_json::ser::Formatter for JsonStyle {
    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        use serde_json::ser::CharEscape;
        match char_escape {
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            other => serde_json::ser::CompactFormatter.write_char_escape(writer, other),
        }
    }
}

/// A message as serde sees it: one map, its fields in the order the JSON writer puts
/// them (type, id, sender, the body's, pad).
struct Wire<'a> {
    msg: &'a Message,
    pad: usize,
    codec: Codec,
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Wire { msg, pad, codec } = *self;
        let value = |v| ValueOut(v, codec);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", msg.body.type_name())?;
        map.serialize_entry("id", msg.txn.as_str())?;
        let sender = &msg.sender;
        map.serialize_entry("sender", &Node(&sender.id, sender.ip.as_str(), sender.port))?;
        match &msg.body {
            Body::Ping | Body::Pong | Body::SetRes | Body::SetCachedRes => {}
            Body::FindNode { target } => map.serialize_entry("target", &Hex(target))?,
            Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers)) => {
                map.serialize_entry("peers", &Peers(peers))?;
            }
            Body::Set { key, value: v } => {
                map.serialize_entry("key", key)?;
                map.serialize_entry("value", &value(v))?;
            }
            Body::SetCached {
                key,
                value: v,
                target,
            } => {
                map.serialize_entry("key", key)?;
                map.serialize_entry("value", &value(v))?;
                map.serialize_entry("target_id", &Hex(target))?;
            }
            Body::CheckStore { key, size } => {
                map.serialize_entry("key", key)?;
                map.serialize_entry("size", size)?;
            }
            // Bencode has no booleans: the reference writes `i1e` / `i0e`.
            Body::CheckStoreRes { has_key } => match codec {
                Codec::Json => map.serialize_entry("has_key", has_key)?,
                Codec::Bencode => map.serialize_entry("has_key", &u8::from(*has_key))?,
            },
            Body::FindValue { key } => map.serialize_entry("key", key)?,
            Body::FindValueRes(FindValueRes::Value(v)) => {
                map.serialize_entry("value", &value(v))?;
            }
        }
        if msg.client {
            map.serialize_entry(CLIENT_KEY, &1u8)?;
        }
        if pad > 0 {
            map.serialize_entry(PAD_KEY, &" ".repeat(pad))?;
        }
        map.end()
    }
}

/// An id as 40 lowercase hex digits.
struct Hex<'a>(&'a NodeId);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// A `sender` map or a `peers` entry: `{"node_id", "ip", "port"}`.
struct Node<'a>(&'a NodeId, &'a str, u16);

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(3))?;
        map.serialize_entry("node_id", &Hex(self.0))?;
        map.serialize_entry("ip", self.1)?;
        map.serialize_entry("port", &self.2)?;
        map.end()
    }
}

/// A `peers` list, each address in its `Display` form (`10.0.0.1`, `::1`).
struct Peers<'a>(&'a [WirePeer]);

impl Serialize for Peers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut list = s.serialize_seq(Some(self.0.len()))?;
        for peer in self.0 {
            let ip = peer.addr.ip().to_string();
            list.serialize_element(&Node(&peer.id, &ip, peer.addr.port()))?;
        }
        list.end()
    }
}

/// A stored value. JSON: text is a string, bytes `{"__bytes_b64__": "<padded base64>"}`.
/// Bencode: text is its UTF-8, bytes the marker and then the raw bytes.
struct ValueOut<'a>(&'a Value, Codec);

impl Serialize for ValueOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0, self.1) {
            (Value::Text(text), _) => s.serialize_str(text),
            (Value::Bytes(raw), Codec::Json) => {
                let mut map = s.serialize_map(Some(1))?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
                map.serialize_entry(B64_KEY, &b64)?;
                map.end()
            }
            (Value::Bytes(raw), Codec::Bencode) => {
                let mut marked = Vec::with_capacity(BYTES_MARKER.len() + raw.len());
                marked.extend_from_slice(BYTES_MARKER);
                marked.extend_from_slice(raw);
                s.serialize_bytes(&marked)
            }
        }
    }
}
