//! The JSON codec, the reference's default.
//!
//! We write compact UTF-8 JSON by hand (the reference writes `", "` separators and `\u`
//! escapes, but reads any valid JSON); we read with `serde_json` through the shared visitors
//! of [`super::de`], straight from the input without building a `serde_json::Value`.
//!
//! Nesting: `serde_json` stops at 128 levels in the values we visit, and skips the values
//! we ignore without recursing, so hostile input cannot exhaust the stack.

use base64::Engine as _;

use super::de::{read_message, Flavor};
use super::{
    with_ip_text, write_decimal, Body, DecodeError, FindValueRes, Message, Sender, WirePeer,
    B64_KEY, PAD_KEY, PEER_BYTES,
};
use crate::{NodeId, Value};

/// Appends the JSON encoding of `msg` to `out`, with a `pad` field of `pad` spaces last
/// when `pad` is not zero.
pub(crate) fn encode(msg: &Message, pad: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"type\":");
    write_str(out, msg.body.type_name());
    write_key(out, "id");
    write_str(out, msg.txn.as_str());
    write_key(out, "sender");
    write_sender(out, &msg.sender);
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
    if pad > 0 {
        write_key(out, PAD_KEY);
        out.push(b'"');
        out.resize(out.len() + pad, b' ');
        out.push(b'"');
    }
    out.push(b'}');
}

/// Decodes one JSON datagram.
pub(crate) fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let msg = read_message(&mut de, Flavor::Json).map_err(|_| DecodeError::Syntax)?;
    // Only whitespace may follow the object.
    de.end().map_err(|_| DecodeError::Syntax)?;
    msg
}

/// Writes `,"name":`; our field names never need escaping.
fn write_key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Writes a JSON string. Only `"`, `\` and control characters are escaped: everything else
/// goes out as raw UTF-8, which the reference's `json.loads(data.decode())` reads.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Copy runs of plain bytes in one go; escapes are rare.
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
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

/// Writes `{"node_id":…,"ip":…,"port":…}`, the shape of both `sender` and `peers` entries.
fn write_node(out: &mut Vec<u8>, id: &NodeId, ip: &str, port: u16) {
    out.extend_from_slice(b"{\"node_id\":");
    write_id(out, id);
    write_key(out, "ip");
    write_str(out, ip);
    write_key(out, "port");
    write_decimal(out, u64::from(port));
    out.push(b'}');
}

/// Writes the `sender` map (its ip as given: the sender's own idea, not checked).
fn write_sender(out: &mut Vec<u8>, sender: &Sender) {
    write_node(out, &sender.id, &sender.ip, sender.port);
}

/// Writes a peers list; an IPv6 address goes out as its plain text form (`::1`).
fn write_peers(out: &mut Vec<u8>, peers: &[WirePeer]) {
    // One allocation for the whole list rather than a doubling every few peers.
    out.reserve(peers.len() * PEER_BYTES);
    out.push(b'[');
    for (i, peer) in peers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        with_ip_text(peer.addr.ip(), |ip| {
            write_node(out, &peer.id, ip, peer.addr.port())
        });
    }
    out.push(b']');
}
