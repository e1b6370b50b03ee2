//! Decoding shared by both codecs: serde visitors that read the message map straight into
//! a [`Message`], borrowing strings from the input where the format allows.
//!
//! Every field visitor accepts input of any shape: a field of the wrong shape becomes a
//! [`DecodeError`] carried inside the `Ok` value rather than a serde error, so the rest of
//! the input is still read and checked. A serde error therefore always means "not
//! well-formed" ([`DecodeError::Syntax`]). Input we do not look at (unknown fields,
//! wrong-shaped lists and maps) is skipped with [`IgnoredAny`], which `serde_json` does
//! without recursion; bencode input is depth-checked before it gets here.
//!
//! Duplicate keys: the last one wins, as in the reference (a Python dict).

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{
    parse_ip, peer_addr, Body, DecodeError, FindValueRes, Message, Sender, SenderIp, TxnId,
    WirePeer, B64_KEY, BYTES_MARKER, MAX_PEERS_PER_MESSAGE,
};
use crate::{NodeId, Value};

/// The wire format being read. The formats differ only in how a bytes value looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flavor {
    /// Bytes values are `{"__bytes_b64__": "..."}` objects.
    Json,
    /// Bytes values are byte strings starting with [`BYTES_MARKER`] (or not UTF-8).
    Bencode,
}

/// Reads one message from `de`. The outer error is the format's syntax error; the inner
/// one says why a well-formed map is not a valid message.
pub(super) fn read_message<'de, D: Deserializer<'de>>(
    de: D,
    flavor: Flavor,
) -> Result<Result<Message, DecodeError>, D::Error> {
    // Only a map is accepted at the top: any other shape falls to serde's default visitor
    // methods, which fail, and that is a syntax error as it should be.
    de.deserialize_map(MessageVisitor { flavor })
}

/// Fills in the visitor methods for input shapes a visitor does not expect: each returns
/// `self.wrong_shape()`, lists and maps after skipping their contents. Shapes not listed
/// here (options, enums, newtypes) are never produced by `serde_json` or `bt_bencode`.
macro_rules! wrong_shape {
    (@bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(self.wrong_shape())
        }
    };
    (@int) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(self.wrong_shape())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(self.wrong_shape())
        }
    };
    (@float) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(self.wrong_shape())
        }
    };
    (@str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(self.wrong_shape())
        }
    };
    (@bytes) => {
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok(self.wrong_shape())
        }
    };
    (@unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.wrong_shape())
        }
    };
    (@seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(self.wrong_shape())
        }
    };
    (@map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(self.wrong_shape())
        }
    };
    ($($shape:ident)*) => {
        $(wrong_shape!(@$shape);)*
    };
}

/// A field as read: `None` when absent, `Some(Err(..))` when present but invalid.
pub(super) type Slot<T> = Option<Result<T, DecodeError>>;

/// The value of a required field.
fn required<T>(slot: Slot<T>, name: &'static str) -> Result<T, DecodeError> {
    slot.unwrap_or(Err(DecodeError::Missing(name)))
}

/// A map key we act on. Keys are matched by name in every map; a key that means nothing in
/// the map at hand is treated like an unknown one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Type,
    Id,
    Sender,
    Target,
    TargetId,
    Key,
    Value,
    Size,
    HasKey,
    Peers,
    NodeId,
    Ip,
    Port,
    B64,
    /// `ro`: the sender is a client.
    Client,
    Other,
}

impl Field {
    /// Matches a key by its bytes, so JSON and bencode keys need no conversion.
    #[inline]
    pub(super) fn from_name(name: &[u8]) -> Field {
        match name {
            b"type" => Field::Type,
            b"id" => Field::Id,
            b"sender" => Field::Sender,
            b"target" => Field::Target,
            b"target_id" => Field::TargetId,
            b"key" => Field::Key,
            b"value" => Field::Value,
            b"size" => Field::Size,
            b"has_key" => Field::HasKey,
            b"peers" => Field::Peers,
            b"node_id" => Field::NodeId,
            b"ip" => Field::Ip,
            b"port" => Field::Port,
            b"ro" => Field::Client,
            n if n == B64_KEY.as_bytes() => Field::B64,
            _ => Field::Other,
        }
    }
}

/// Reads a map key without allocating.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Field;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Field, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::from_name(v.as_bytes()))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Field, E> {
        // The reference's bencode parser strips the bytes marker from keys too, then
        // decodes them as text: `\x00bytes\x00type` is the key `type` there, so here too.
        Ok(Field::from_name(v.strip_prefix(BYTES_MARKER).unwrap_or(v)))
    }

    wrong_shape!(bool int float unit seq map);
}

impl KeySeed {
    /// Serde requires a key per entry; a non-string key is simply one we do not know.
    /// (`bt_bencode` refuses such keys itself; `serde_json` only has string keys.)
    fn wrong_shape(self) -> Field {
        Field::Other
    }
}

/// Is a bencode byte string text, by the protocol's rule (valid UTF-8 and not marked as
/// bytes; docs/PROTOCOL.md, "Values")?
pub(super) fn bytes_as_text(v: &[u8]) -> Option<&str> {
    if v.starts_with(BYTES_MARKER) {
        None
    } else {
        std::str::from_utf8(v).ok()
    }
}

/// A bencode byte string as a stored value, by the protocol's rule (docs/PROTOCOL.md,
/// "Values"): marked → bytes, else UTF-8 → text, else bytes as they are.
pub(super) fn value_from_bytes(v: &[u8]) -> Value {
    match v.strip_prefix(BYTES_MARKER) {
        Some(raw) => Value::Bytes(Bytes::copy_from_slice(raw)),
        None => match std::str::from_utf8(v) {
            Ok(s) => Value::Text(s.to_owned()),
            Err(_) => Value::Bytes(Bytes::copy_from_slice(v)),
        },
    }
}

/// The text of a JSON `{"__bytes_b64__": text}` value: standard padded base64.
pub(super) fn value_from_base64(text: &str) -> Result<Value, DecodeError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map(|raw| Value::Bytes(Bytes::from(raw)))
        .map_err(|_| DecodeError::Invalid("value"))
}

/// The `id` field, read as text.
pub(super) fn txn_from_text(text: Result<Cow<'_, str>, DecodeError>) -> Result<TxnId, DecodeError> {
    text.and_then(|s| TxnId::from_str(&s).ok_or(DecodeError::Invalid("id")))
}

/// A text field: a JSON string, or a bencode byte string that is text.
#[derive(Clone, Copy)]
struct TextField(&'static str);

impl<'de> DeserializeSeed<'de> for TextField {
    type Value = Result<Cow<'de, str>, DecodeError>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextField {
    type Value = Result<Cow<'de, str>, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "text for {}", self.0)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(Cow::Owned(v)))
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        Ok(bytes_as_text(v)
            .map(Cow::Borrowed)
            .ok_or(DecodeError::Invalid(self.0)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(bytes_as_text(v)
            .map(|s| Cow::Owned(s.to_owned()))
            .ok_or(DecodeError::Invalid(self.0)))
    }

    wrong_shape!(bool int float unit seq map);
}

impl TextField {
    /// Anything but text is invalid for a text field.
    fn wrong_shape<T>(self) -> Result<T, DecodeError> {
        Err(DecodeError::Invalid(self.0))
    }
}

/// A 40-hex-digit id field, in either case.
#[derive(Clone, Copy)]
struct IdField(&'static str);

impl<'de> DeserializeSeed<'de> for IdField {
    type Value = Result<NodeId, DecodeError>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let text = TextField(self.0).deserialize(de)?;
        Ok(text.and_then(|s| NodeId::from_hex(&s).map_err(|_| DecodeError::Invalid(self.0))))
    }
}

/// A non-negative integer field.
#[derive(Clone, Copy)]
struct UintField(&'static str);

impl<'de> DeserializeSeed<'de> for UintField {
    type Value = Result<u64, DecodeError>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UintField {
    type Value = Result<u64, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a non-negative integer for {}", self.0)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Ok(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_err(|_| DecodeError::Invalid(self.0)))
    }

    // A JSON `true` is not a number to us, though Python would let it pass as 1.
    wrong_shape!(bool float str bytes unit seq map);
}

impl UintField {
    /// Anything but an integer is invalid for an integer field.
    fn wrong_shape(self) -> Result<u64, DecodeError> {
        Err(DecodeError::Invalid(self.0))
    }
}

/// A boolean field: JSON `true`/`false`, or an integer (bencode has no booleans, so the
/// reference writes `i1e`/`i0e`); any non-zero integer is true.
#[derive(Clone, Copy)]
struct FlagField(&'static str);

impl<'de> DeserializeSeed<'de> for FlagField {
    type Value = Result<bool, DecodeError>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FlagField {
    type Value = Result<bool, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a boolean or integer for {}", self.0)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Ok(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Ok(v != 0))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Ok(v != 0))
    }

    wrong_shape!(float str bytes unit seq map);
}

impl FlagField {
    /// Anything but a boolean or integer is invalid for a flag.
    fn wrong_shape(self) -> Result<bool, DecodeError> {
        Err(DecodeError::Invalid(self.0))
    }
}

/// The `value` field: a stored value, text or bytes as the flavor writes them.
#[derive(Clone, Copy)]
struct ValueField(Flavor);

impl<'de> DeserializeSeed<'de> for ValueField {
    type Value = Result<Value, DecodeError>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueField {
    type Value = Result<Value, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a text or bytes value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(Value::Text(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(Value::Text(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        // Only bencode produces byte strings.
        Ok(Ok(value_from_bytes(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // JSON bytes: an object whose ONLY key is `__bytes_b64__` (as the reference's
        // `set(value.keys()) == {marker}`), holding standard padded base64.
        let mut b64: Slot<Cow<'de, str>> = None;
        let mut other_keys = false;
        while let Some(field) = map.next_key_seed(KeySeed)? {
            if field == Field::B64 && self.0 == Flavor::Json {
                b64 = Some(map.next_value_seed(TextField("value"))?);
            } else {
                other_keys = true;
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(match b64 {
            Some(Ok(text)) if !other_keys => value_from_base64(&text),
            _ => Err(DecodeError::Invalid("value")),
        })
    }

    wrong_shape!(bool int float unit seq);
}

impl ValueField {
    /// Numbers, lists and null are no values (docs/PROTOCOL.md: text or bytes only).
    fn wrong_shape(self) -> Result<Value, DecodeError> {
        Err(DecodeError::Invalid("value"))
    }
}

/// The `node_id`, `ip` and `port` of a `sender` or `peers` entry, as read.
#[derive(Default)]
pub(super) struct PeerFields<'de> {
    pub node_id: Slot<NodeId>,
    pub ip: Slot<Cow<'de, str>>,
    pub port: Slot<u64>,
}

impl<'de> PeerFields<'de> {
    /// Reads the map's entries, naming invalid fields with the given names.
    fn read<A: MapAccess<'de>>(
        mut map: A,
        names: [&'static str; 3],
    ) -> Result<PeerFields<'de>, A::Error> {
        let [node_id, ip, port] = names;
        let mut fields = PeerFields::default();
        while let Some(field) = map.next_key_seed(KeySeed)? {
            match field {
                Field::NodeId => fields.node_id = Some(map.next_value_seed(IdField(node_id))?),
                Field::Ip => fields.ip = Some(map.next_value_seed(TextField(ip))?),
                Field::Port => fields.port = Some(map.next_value_seed(UintField(port))?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }

    /// The sender these fields describe. Its `ip` need not be an IP literal: it is only
    /// what the sender thinks it is bound to, and we never use it.
    pub(super) fn into_sender(self) -> Result<Sender, DecodeError> {
        let [node_id, ip_name, port_name] = SENDER_NAMES;
        let id = required(self.node_id, node_id)?;
        let ip = required(self.ip, ip_name)?;
        let ip = SenderIp::new(&ip).ok_or(DecodeError::Invalid(ip_name))?;
        let port = required(self.port, port_name)?;
        let port = u16::try_from(port).map_err(|_| DecodeError::Invalid(port_name))?;
        Ok(Sender { id, ip, port })
    }

    /// The peer these fields describe, if they are all present and valid.
    pub(super) fn into_peer(self) -> Option<WirePeer> {
        let id = self.node_id?.ok()?;
        let ip = self.ip?.ok()?;
        let port = self.port?.ok()?;
        Some(WirePeer {
            id,
            addr: peer_addr(parse_ip(ip.as_bytes())?, port)?,
        })
    }
}

/// The envelope's `sender` map.
struct SenderField;

/// Names of the sender's fields in errors.
pub(super) const SENDER_NAMES: [&str; 3] = ["sender.node_id", "sender.ip", "sender.port"];
/// Names of a peers entry's fields (its errors are not reported: a bad entry is skipped).
pub(super) const PEER_NAMES: [&str; 3] = ["node_id", "ip", "port"];

impl<'de> DeserializeSeed<'de> for SenderField {
    type Value = Result<Sender, DecodeError>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SenderField {
    type Value = Result<Sender, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sender map")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(PeerFields::read(map, SENDER_NAMES)?.into_sender())
    }

    wrong_shape!(bool int float str bytes unit seq);
}

impl SenderField {
    /// A sender that is not a map is invalid as a whole.
    fn wrong_shape(self) -> Result<Sender, DecodeError> {
        Err(DecodeError::Invalid("sender"))
    }
}

/// One entry of a `peers` list: `None` skips an entry that is not a valid peer.
struct PeerEntry;

impl<'de> DeserializeSeed<'de> for PeerEntry {
    type Value = Option<WirePeer>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PeerEntry {
    type Value = Option<WirePeer>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a peer map")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(PeerFields::read(map, PEER_NAMES)?.into_peer())
    }

    wrong_shape!(bool int float str bytes unit seq);
}

impl PeerEntry {
    /// An entry that is not a map is skipped like any other bad entry.
    fn wrong_shape(self) -> Option<WirePeer> {
        None
    }
}

/// A `peers` list: the valid entries, at most [`MAX_PEERS_PER_MESSAGE`] of them.
struct PeersField;

impl<'de> DeserializeSeed<'de> for PeersField {
    type Value = Result<Vec<WirePeer>, DecodeError>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PeersField {
    type Value = Result<Vec<WirePeer>, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of peers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut peers = Vec::new();
        while peers.len() < MAX_PEERS_PER_MESSAGE {
            match seq.next_element_seed(PeerEntry)? {
                Some(Some(peer)) => peers.push(peer),
                Some(None) => {}
                None => return Ok(Ok(peers)),
            }
        }
        // Full: the rest is read for syntax only.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Ok(peers))
    }

    wrong_shape!(bool int float str bytes unit map);
}

impl PeersField {
    /// `peers` that is not a list is invalid, unlike a bad entry in it.
    fn wrong_shape(self) -> Result<Vec<WirePeer>, DecodeError> {
        Err(DecodeError::Invalid("peers"))
    }
}

/// The body fields of a message, as read; which ones matter depends on `type`.
#[derive(Default)]
pub(super) struct BodyFields<'de> {
    pub target: Slot<NodeId>,
    pub target_id: Slot<NodeId>,
    pub key: Slot<Cow<'de, str>>,
    pub value: Slot<Value>,
    pub size: Slot<u64>,
    pub has_key: Slot<bool>,
    pub peers: Slot<Vec<WirePeer>>,
    /// The `ro` flag; a value of the wrong shape counts as absent (it is not ours to
    /// fail a message on, and Python nodes ignore it).
    pub client: Slot<bool>,
}

impl BodyFields<'_> {
    /// The required `key`, owned as the body needs it.
    fn key(&mut self) -> Result<String, DecodeError> {
        required(self.key.take(), "key").map(Cow::into_owned)
    }

    /// The required `value`.
    fn value(&mut self) -> Result<Value, DecodeError> {
        required(self.value.take(), "value")
    }

    /// An absent `peers` list is an empty one (the reference tests `"peers" in res`).
    fn peers(&mut self) -> Result<Vec<WirePeer>, DecodeError> {
        self.peers.take().unwrap_or(Ok(Vec::new()))
    }
}

/// Builds the body of one message kind from its fields.
type BodyBuilder = fn(BodyFields<'_>) -> Result<Body, DecodeError>;

/// The body builder for a `type`, or `None` for a type we do not know.
fn body_builder(kind: &str) -> Option<BodyBuilder> {
    Some(match kind {
        "ping" => |_| Ok(Body::Ping),
        "pong" => |_| Ok(Body::Pong),
        "find_node" => |f| {
            Ok(Body::FindNode {
                target: required(f.target, "target")?,
            })
        },
        "find_node_res" => |mut f| Ok(Body::FindNodeRes { peers: f.peers()? }),
        "set" => |mut f| {
            Ok(Body::Set {
                key: f.key()?,
                value: f.value()?,
            })
        },
        "set_res" => |_| Ok(Body::SetRes),
        "set_cached" => |mut f| {
            Ok(Body::SetCached {
                key: f.key()?,
                value: f.value()?,
                target: required(f.target_id, "target_id")?,
            })
        },
        "set_cached_res" => |_| Ok(Body::SetCachedRes),
        "check_store" => |mut f| {
            Ok(Body::CheckStore {
                key: f.key()?,
                size: required(f.size, "size")?,
            })
        },
        // An absent `has_key` is false: the reference reads it with `.get("has_key", False)`.
        "check_store_res" => |f| {
            Ok(Body::CheckStoreRes {
                has_key: f.has_key.unwrap_or(Ok(false))?,
            })
        },
        "find_value" => |mut f| Ok(Body::FindValue { key: f.key()? }),
        // `value` wins over `peers`, as the reference tests `"value" in res` first.
        "find_value_res" => |mut f| {
            Ok(Body::FindValueRes(match f.value.take() {
                Some(value) => FindValueRes::Value(value?),
                None => FindValueRes::Peers(f.peers()?),
            }))
        },
        _ => return None,
    })
}

/// Reads the top-level map.
struct MessageVisitor {
    flavor: Flavor,
}

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Result<Message, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind: Slot<Cow<'de, str>> = None;
        let mut txn: Slot<TxnId> = None;
        let mut sender: Slot<Sender> = None;
        let mut body = BodyFields::default();
        while let Some(field) = map.next_key_seed(KeySeed)? {
            match field {
                Field::Type => kind = Some(map.next_value_seed(TextField("type"))?),
                Field::Id => txn = Some(txn_from_text(map.next_value_seed(TextField("id"))?)),
                Field::Sender => sender = Some(map.next_value_seed(SenderField)?),
                Field::Target => body.target = Some(map.next_value_seed(IdField("target"))?),
                Field::TargetId => {
                    body.target_id = Some(map.next_value_seed(IdField("target_id"))?);
                }
                Field::Key => body.key = Some(map.next_value_seed(TextField("key"))?),
                Field::Value => body.value = Some(map.next_value_seed(ValueField(self.flavor))?),
                Field::Size => body.size = Some(map.next_value_seed(UintField("size"))?),
                Field::HasKey => body.has_key = Some(map.next_value_seed(FlagField("has_key"))?),
                Field::Peers => body.peers = Some(map.next_value_seed(PeersField)?),
                Field::Client => body.client = Some(map.next_value_seed(FlagField("ro"))?),
                Field::NodeId | Field::Ip | Field::Port | Field::B64 | Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(build_message(kind, txn, sender, body))
    }
}

/// Checks the envelope and builds the message.
pub(super) fn build_message(
    kind: Slot<Cow<'_, str>>,
    txn: Slot<TxnId>,
    sender: Slot<Sender>,
    body: BodyFields<'_>,
) -> Result<Message, DecodeError> {
    // The type first: the reference drops an unknown type without looking further.
    let kind = required(kind, "type")?;
    let build = body_builder(&kind).ok_or(DecodeError::UnknownType)?;
    let txn = required(txn, "id")?;
    let sender = required(sender, "sender")?;
    let client = matches!(body.client, Some(Ok(true)));
    Ok(Message {
        txn,
        sender,
        body: build(body)?,
        client,
    })
}
