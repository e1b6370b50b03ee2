//! Just enough reading of raw datagrams to forge test traffic: the transaction id and the
//! message type of a JSON or bencode message, without going through kad-core's (private)
//! codec. Good for messages produced by kad or the reference, not a general parser.

/// The message type (`"ping"`, `"find_value_res"`, ...) of a datagram, if it has one.
pub fn message_type(payload: &[u8]) -> Option<&str> {
    std::str::from_utf8(field(payload, "type")?).ok()
}

/// The transaction id (`id` field) of a datagram.
pub fn txn(payload: &[u8]) -> Option<&[u8]> {
    field(payload, "id")
}

/// A copy of `payload` whose transaction id is replaced by `txn` (same length only).
pub fn with_txn(payload: &[u8], txn: &[u8]) -> Option<Vec<u8>> {
    with_field(payload, "id", txn)
}

/// The first string field called `name`, at any depth, in JSON or bencode. Keys match
/// whole (`id` does not match `node_id`). In bencode, map keys are sorted, so the first
/// `node_id` of a message with `peers` is a peer's, not the sender's.
pub fn field<'a>(payload: &'a [u8], name: &str) -> Option<&'a [u8]> {
    json_string_field(payload, name.as_bytes())
        .or_else(|| bencode_string_field(payload, name.as_bytes()))
}

/// A copy of `payload` with the string field found by [`field`] replaced by `value` of
/// the same length.
pub fn with_field(payload: &[u8], name: &str, value: &[u8]) -> Option<Vec<u8>> {
    let old = field(payload, name)?;
    if old.len() != value.len() {
        return None;
    }
    let start = old.as_ptr() as usize - payload.as_ptr() as usize;
    let mut out = payload.to_vec();
    out[start..start + value.len()].copy_from_slice(value);
    Some(out)
}

/// Is this a response (its type ends in `_res`, or is `pong`)?
pub fn is_response(payload: &[u8]) -> bool {
    message_type(payload).is_some_and(|t| t.ends_with("_res") || t == "pong")
}

/// The first `"name": "value"` string at any depth (keys are matched with their quotes,
/// so `"id"` does not match `"node_id"`).
fn json_string_field<'a>(payload: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut pat = Vec::with_capacity(name.len() + 2);
    pat.push(b'"');
    pat.extend_from_slice(name);
    pat.push(b'"');
    let at = find(payload, &pat)? + pat.len();
    let rest = skip_ws(&payload[at..]);
    let rest = skip_ws(rest.strip_prefix(b":")?);
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    Some(&rest[..end])
}

/// The first `<len>:name<len>:value` pair.
fn bencode_string_field<'a>(payload: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut pat = format!("{}:", name.len()).into_bytes();
    pat.extend_from_slice(name);
    let at = find(payload, &pat)? + pat.len();
    let rest = &payload[at..];
    let colon = rest.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    rest.get(colon + 1..colon + 1 + len)
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &[u8] = br#"{"type": "find_value_res", "sender": {"node_id": "3f786850e387550fdab836ed7e6dc881de23001b", "ip": "127.0.0.1", "port": 8000}, "id": "5555555555555555", "value": "my_value"}"#;
    const BENCODE: &[u8] = b"d2:id16:55555555555555556:senderd2:ip9:127.0.0.17:node_id40:3f786850e387550fdab836ed7e6dc881de23001b4:porti8000ee4:type14:find_value_res5:value8:my_valuee";

    #[test]
    fn reads_type_and_txn_in_both_formats() {
        for m in [JSON, BENCODE] {
            assert_eq!(message_type(m), Some("find_value_res"));
            assert_eq!(txn(m), Some(&b"5555555555555555"[..]));
            assert!(is_response(m));
            let forged = with_txn(m, b"0123456789abcdef").unwrap();
            assert_eq!(txn(&forged), Some(&b"0123456789abcdef"[..]));
            assert_eq!(forged.len(), m.len());
        }
        for m in [JSON, BENCODE] {
            let id = b"00112233445566778899aabbccddeeff00112233";
            let forged = with_field(m, "node_id", id).unwrap();
            assert_eq!(field(&forged, "node_id"), Some(&id[..]));
            assert_eq!(field(&forged, "value"), Some(&b"my_value"[..]));
        }
        assert_eq!(message_type(b"garbage"), None);
        assert_eq!(with_txn(JSON, b"short"), None);
    }
}
