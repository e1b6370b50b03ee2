//! What a node needs to come back after a restart: its id, routing table and records.
//!
//! The file format is a magic line, the SHA-1 of the body in hex, and a JSON body. A
//! truncated or corrupted file fails the checksum and gives [`SnapshotError`], never a
//! silently empty node.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Map, Value as Json};
use sha1::{Digest, Sha1};

use crate::{NodeId, Peer, Value};

const MAGIC: &[u8] = b"KADSNAP1\n";

/// How a node came to hold a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// This node published it (and republishes it).
    Published,
    /// Stored for another node (re-replicated periodically).
    Replica,
    /// A cached copy with the dynamic TTL.
    Cached,
}

/// One stored record, with its times relative to the moment of the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// Published, replica or cached.
    pub kind: RecordKind,
    /// Time left before it expires.
    pub expires_in: Duration,
    /// Time left before it is republished, if it is.
    pub republish_in: Option<Duration>,
}

/// A node's persistent state. Made by [`crate::Node::snapshot`], restored by
/// [`crate::Node::restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The node's id.
    pub id: NodeId,
    /// The routing table's peers.
    pub peers: Vec<Peer>,
    /// Every unexpired record.
    pub records: Vec<SnapshotRecord>,
}

/// Why snapshot bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic line.
    #[error("not a kad snapshot (bad magic)")]
    BadMagic,
    /// The body does not match its checksum: truncated or corrupted.
    #[error("snapshot is truncated or corrupted (checksum mismatch)")]
    Checksum,
    /// The body is not the expected JSON.
    #[error("snapshot body is invalid: {0}")]
    Invalid(String),
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Snapshot {
    /// The file bytes: magic, checksum, body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let peers: Vec<Json> = self
            .peers
            .iter()
            .map(|p| json!({"id": p.id.to_string(), "addr": p.addr.to_string()}))
            .collect();
        let records: Vec<Json> = self
            .records
            .iter()
            .map(|r| {
                let mut m = Map::new();
                m.insert("key".into(), json!(r.key));
                match &r.value {
                    Value::Text(s) => m.insert("text".into(), json!(s)),
                    Value::Bytes(b) => m.insert("bytes".into(), json!(b64.encode(b))),
                };
                let kind = match r.kind {
                    RecordKind::Published => "published",
                    RecordKind::Replica => "replica",
                    RecordKind::Cached => "cached",
                };
                m.insert("kind".into(), json!(kind));
                m.insert("expires_in_ms".into(), json!(duration_ms(r.expires_in)));
                if let Some(d) = r.republish_in {
                    m.insert("republish_in_ms".into(), json!(duration_ms(d)));
                }
                Json::Object(m)
            })
            .collect();
        let body =
            json!({"id": self.id.to_string(), "peers": peers, "records": records}).to_string();
        let sum = Sha1::digest(body.as_bytes());
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(NodeId(sum.into()).to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(body.as_bytes());
        out
    }

    /// Parses file bytes, checking the checksum.
    pub fn from_bytes(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(SnapshotError::BadMagic)?;
        if rest.len() < 41 || rest[40] != b'\n' {
            return Err(SnapshotError::Checksum);
        }
        let sum = NodeId::from_hex_bytes(&rest[..40]).map_err(|_| SnapshotError::Checksum)?;
        let body = &rest[41..];
        if NodeId(Sha1::digest(body).into()) != sum {
            return Err(SnapshotError::Checksum);
        }
        let bad = |what: &str| SnapshotError::Invalid(what.to_owned());
        let doc: Json =
            serde_json::from_slice(body).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        let id = doc["id"]
            .as_str()
            .and_then(|s| NodeId::from_hex(s).ok())
            .ok_or_else(|| bad("id"))?;
        let mut peers = Vec::new();
        for p in doc["peers"].as_array().ok_or_else(|| bad("peers"))? {
            let id = p["id"]
                .as_str()
                .and_then(|s| NodeId::from_hex(s).ok())
                .ok_or_else(|| bad("peer id"))?;
            let addr: SocketAddr = p["addr"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("peer addr"))?;
            peers.push(Peer { id, addr });
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut records = Vec::new();
        for r in doc["records"].as_array().ok_or_else(|| bad("records"))? {
            let key = r["key"]
                .as_str()
                .ok_or_else(|| bad("record key"))?
                .to_owned();
            let value = match (r["text"].as_str(), r["bytes"].as_str()) {
                (Some(t), None) => Value::Text(t.to_owned()),
                (None, Some(b)) => {
                    Value::Bytes(b64.decode(b).map_err(|_| bad("record bytes"))?.into())
                }
                _ => return Err(bad("record value")),
            };
            let kind = match r["kind"].as_str() {
                Some("published") => RecordKind::Published,
                Some("replica") => RecordKind::Replica,
                Some("cached") => RecordKind::Cached,
                _ => return Err(bad("record kind")),
            };
            let expires_in = Duration::from_millis(
                r["expires_in_ms"]
                    .as_u64()
                    .ok_or_else(|| bad("expires_in_ms"))?,
            );
            let republish_in = r
                .get("republish_in_ms")
                .and_then(Json::as_u64)
                .map(Duration::from_millis);
            records.push(SnapshotRecord {
                key,
                value,
                kind,
                expires_in,
                republish_in,
            });
        }
        Ok(Snapshot { id, peers, records })
    }
}

/// Converts a relative time back to an instant after a restore.
pub(crate) fn at(now: Instant, d: Duration) -> Instant {
    crate::node::later(now, d.min(crate::MAX_DURATION))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            id: NodeId::for_key("me"),
            peers: vec![Peer {
                id: NodeId::for_key("p"),
                addr: "[::1]:4000".parse().unwrap(),
            }],
            records: vec![
                SnapshotRecord {
                    key: "clé".into(),
                    value: Value::from("värde"),
                    kind: RecordKind::Published,
                    expires_in: Duration::from_secs(100),
                    republish_in: Some(Duration::from_secs(50)),
                },
                SnapshotRecord {
                    key: "b".into(),
                    value: Value::from(&b"\x00\xff"[..]),
                    kind: RecordKind::Cached,
                    expires_in: Duration::from_millis(1500),
                    republish_in: None,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(Snapshot::from_bytes(&s.to_bytes()), Ok(s));
    }

    #[test]
    fn truncation_and_corruption_are_errors() {
        let bytes = sample().to_bytes();
        for cut in [0, 5, MAGIC.len() + 10, bytes.len() - 1] {
            assert!(Snapshot::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert_eq!(Snapshot::from_bytes(&flipped), Err(SnapshotError::Checksum));
        assert_eq!(Snapshot::from_bytes(b"hello"), Err(SnapshotError::BadMagic));
    }
}
