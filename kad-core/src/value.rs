//! Stored values: text or bytes, with the type preserved end to end.

use std::fmt;

use bytes::Bytes;

/// A value stored in the DHT.
///
/// The Python package stores `str` or `bytes` and gives back the same type; so do we, in
/// both wire formats.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A text value (a Python `str`).
    Text(String),
    /// A binary value (Python `bytes`).
    Bytes(Bytes),
}

impl Value {
    /// The size the protocol's `check_store` reports: characters for text, bytes for binary
    /// (Python's `len(value)`).
    pub fn wire_size(&self) -> usize {
        match self {
            Value::Text(s) => s.chars().count(),
            Value::Bytes(b) => b.len(),
        }
    }

    /// The value's length in bytes (UTF-8 for text): what it costs to store.
    pub fn byte_len(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Bytes(b) => b.len(),
        }
    }

    /// The value's bytes (UTF-8 for text).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Text(s) => s.as_bytes(),
            Value::Bytes(b) => b,
        }
    }

    /// The text, if this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            Value::Bytes(_) => None,
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => f.debug_tuple("Text").field(s).finish(),
            Value::Bytes(b) => f.debug_tuple("Bytes").field(b).finish(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Bytes(Bytes::copy_from_slice(b))
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(Bytes::from(b))
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Bytes(b)
    }
}

impl<const N: usize> From<&[u8; N]> for Value {
    fn from(b: &[u8; N]) -> Self {
        Value::Bytes(Bytes::copy_from_slice(b))
    }
}

impl From<Value> for Bytes {
    fn from(v: Value) -> Self {
        match v {
            Value::Text(s) => Bytes::from(s),
            Value::Bytes(b) => b,
        }
    }
}

impl From<Value> for Vec<u8> {
    fn from(v: Value) -> Self {
        match v {
            Value::Text(s) => s.into_bytes(),
            Value::Bytes(b) => b.to_vec(),
        }
    }
}

impl TryFrom<Value> for String {
    type Error = Value;
    /// Gives the text back; a bytes value is returned unchanged as the error.
    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_size_counts_characters_for_text() {
        assert_eq!(Value::from("värde 🚀").wire_size(), 7);
        assert_eq!(Value::from("värde 🚀").byte_len(), 11);
        assert_eq!(Value::from(&b"\x00\x01"[..]).wire_size(), 2);
    }
}
