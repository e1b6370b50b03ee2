//! The JSON codec, the reference's default, through serde.
//!
//! We read with `serde_json` through the shared visitors of [`super::de`], straight from
//! the input without building a `serde_json::Value`; that is the definition of what we
//! accept. We write compact UTF-8 JSON through `wire::ser` (the reference writes `", "`
//! separators and `\u` escapes, but reads any valid JSON). The hand-written fast path of
//! `wire::fast` does both for the messages it knows, with the same result.
//!
//! Nesting: `serde_json` stops at 128 levels in the values we visit, and skips the values
//! we ignore without recursing, so hostile input cannot exhaust the stack.

use super::de::{read_message, Flavor};
use super::{DecodeError, Message};

/// Decodes one JSON datagram with serde, the definition of what we accept.
pub(super) fn decode_with_serde(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let msg = read_message(&mut de, Flavor::Json).map_err(|_| DecodeError::Syntax)?;
    // Only whitespace may follow the object.
    de.end().map_err(|_| DecodeError::Syntax)?;
    msg
}
