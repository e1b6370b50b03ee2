//! Codec tests: the reference's own encodings (`testdata/wire-vectors`), edge cases of
//! both formats, hostile input, and round trips of arbitrary messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

const SENDER_HEX: &str = "3f786850e387550fdab836ed7e6dc881de23001b";
const PEER1_HEX: &str = "89e6c98d92887913cadf06b2adb97f26cde4849b";
const PEER2_HEX: &str = "2b66fd261ee5c6cfc8de7fa466bab600bcfe4f69";

fn id(hex: &str) -> NodeId {
    NodeId::from_hex(hex).expect("test id")
}

fn txn(s: &str) -> TxnId {
    TxnId::from_str(s).expect("test txn")
}

fn sender() -> Sender {
    Sender {
        id: id(SENDER_HEX),
        ip: IpAddr::from([127, 0, 0, 1]).into(),
        port: 8000,
    }
}

fn msg(txn_id: &str, body: Body) -> Message {
    Message {
        txn: txn(txn_id),
        sender: sender(),
        body,
        client: false,
    }
}

/// The two peers of the `*_peers` / `find_node_res` vectors.
fn vector_peers() -> Vec<WirePeer> {
    vec![
        WirePeer {
            id: id(PEER1_HEX),
            addr: "127.0.0.1:8001".parse().expect("addr"),
        },
        WirePeer {
            id: id(PEER2_HEX),
            addr: "10.0.0.7:65535".parse().expect("addr"),
        },
    ]
}

/// What each golden vector must decode to, written out by hand from the reference's
/// test script (not from our decoder).
fn expected(name: &str) -> Option<Message> {
    Some(match name {
        "ping" => msg("0123456789abcdef", Body::Ping),
        "pong" => msg("0123456789abcdef", Body::Pong),
        "find_node" => msg(
            "00000000000000ff",
            Body::FindNode {
                target: id("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
            },
        ),
        "find_node_res" => msg(
            "00000000000000ff",
            Body::FindNodeRes {
                peers: vector_peers(),
            },
        ),
        "find_node_res_empty" => msg("00000000000000ff", Body::FindNodeRes { peers: vec![] }),
        "set_text" => msg(
            "1111111111111111",
            Body::Set {
                key: "my_key".into(),
                value: Value::Text("my_value".into()),
            },
        ),
        "set_unicode" => msg(
            "1111111111111112",
            Body::Set {
                key: "clé ✓".into(),
                value: Value::Text("värde 🚀".into()),
            },
        ),
        "set_bytes" => msg(
            "2222222222222222",
            Body::Set {
                key: "my_blob".into(),
                value: Value::from(b"\x00binary\xff"),
            },
        ),
        "set_res" => msg("2222222222222222", Body::SetRes),
        "set_cached" => msg(
            "3333333333333333",
            Body::SetCached {
                key: "my_key".into(),
                value: Value::Text("my_value".into()),
                target: id("0f7da3f82f86e5ea63d3ac270f091af4bcfa819a"),
            },
        ),
        "set_cached_res" => msg("3333333333333333", Body::SetCachedRes),
        "check_store" => msg(
            "4444444444444444",
            Body::CheckStore {
                key: "my_key".into(),
                size: 8,
            },
        ),
        "check_store_res_true" => msg("4444444444444444", Body::CheckStoreRes { has_key: true }),
        "check_store_res_false" => msg("4444444444444444", Body::CheckStoreRes { has_key: false }),
        "find_value" => msg(
            "5555555555555555",
            Body::FindValue {
                key: "my_key".into(),
            },
        ),
        "find_value_res_value" => msg(
            "5555555555555555",
            Body::FindValueRes(FindValueRes::Value(Value::Text("my_value".into()))),
        ),
        "find_value_res_bytes" => msg(
            "5555555555555555",
            Body::FindValueRes(FindValueRes::Value(Value::from(&[0u8, 1, 2]))),
        ),
        "find_value_res_peers" => msg(
            "5555555555555555",
            Body::FindValueRes(FindValueRes::Peers(vector_peers())),
        ),
        _ => return None,
    })
}

/// Every vector file of one codec, as (name, contents), sorted by name.
pub(super) fn vectors(codec: Codec) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "testdata", "wire-vectors"]
        .iter()
        .collect::<PathBuf>()
        .join(codec.to_string());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("vector dir") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_owned();
        out.push((name, std::fs::read(&path).expect("vector file")));
    }
    out.sort();
    // All 12 kinds, some in several variants: a missing file is a broken checkout.
    assert_eq!(out.len(), 18, "vectors in {}", dir.display());
    out
}

/// Encodes `m`, checking on the way that the fast writer, if built in, writes the serde
/// writer's bytes, and that the codec writes the same.
pub(super) fn encode(codec: Codec, m: &Message) -> Vec<u8> {
    let (fast, serde) = codec.encode_both_ways(m, 0);
    if let Some(fast) = fast {
        assert_eq!(
            fast.escape_ascii().to_string(),
            serde.escape_ascii().to_string(),
            "{codec}: the fast writer and serde disagree on {m:?}"
        );
    }
    let mut out = Vec::new();
    codec.encode(m, &mut out);
    assert_eq!(out, serde, "{codec}");
    out
}

/// Decodes `bytes`, checking on the way that the fast path, where it gives a result, gives
/// the serde path's, and that the codec gives the same.
pub(super) fn decode(codec: Codec, bytes: &[u8]) -> Result<Message, DecodeError> {
    let (fast, serde) = codec.decode_both_ways(bytes);
    if let Some(fast) = fast {
        assert_eq!(
            fast,
            serde,
            "{codec}: the fast path and serde disagree on {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(codec.decode(bytes), serde, "{codec}");
    serde
}

fn json(text: &str) -> Result<Message, DecodeError> {
    decode(Codec::Json, text.as_bytes())
}

fn benc(bytes: &[u8]) -> Result<Message, DecodeError> {
    decode(Codec::Bencode, bytes)
}

#[test]
fn every_vector_decodes_to_its_expected_message() {
    for codec in [Codec::Json, Codec::Bencode] {
        for (name, bytes) in vectors(codec) {
            let want = expected(&name)
                .unwrap_or_else(|| panic!("no expected message for {codec} vector {name}"));
            assert_eq!(decode(codec, &bytes), Ok(want), "{codec} vector {name}");
        }
    }
}

#[test]
fn bencode_encoding_is_byte_identical_to_the_reference() {
    for (name, bytes) in vectors(Codec::Bencode) {
        let m = benc(&bytes).expect(&name);
        assert_eq!(
            encode(Codec::Bencode, &m).escape_ascii().to_string(),
            bytes.escape_ascii().to_string(),
            "vector {name}"
        );
    }
}

#[test]
fn json_encoding_equals_the_reference_as_json() {
    for (name, bytes) in vectors(Codec::Json) {
        let m = json(std::str::from_utf8(&bytes).expect("utf-8")).expect(&name);
        let ours: serde_json::Value =
            serde_json::from_slice(&encode(Codec::Json, &m)).expect("our JSON parses");
        let theirs: serde_json::Value = serde_json::from_slice(&bytes).expect("their JSON");
        assert_eq!(ours, theirs, "vector {name}");
    }
}

/// `docs/PROTOCOL.md`'s examples: each block after a `<!-- vector <codec>/<name> -->` tag is
/// that vector file byte for byte, each after a `<!-- kad <codec>/<name> -->` tag what we
/// write for that vector's message. In bencode blocks `\xNN` stands for the byte NN.
#[test]
fn protocol_md_examples_are_the_vectors() {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "docs", "PROTOCOL.md"]
        .iter()
        .collect();
    let doc = std::fs::read_to_string(&path).expect("docs/PROTOCOL.md");
    let mut checked = 0;
    let mut rest = doc.as_str();
    while let Some(at) = rest.find("<!-- ") {
        rest = &rest[at + 5..];
        let tag = &rest[..rest.find(" -->").expect("a tag ends")];
        let Some((what @ ("vector" | "kad"), name)) = tag.split_once(' ') else {
            continue;
        };
        let (codec, name) = name.split_once('/').expect("<codec>/<name>");
        let codec: Codec = codec.parse().expect("a codec");
        // The fenced block right after the tag.
        let open = rest.find("\n```").expect("a block after the tag") + 1;
        let start = open + rest[open..].find('\n').expect("fence line") + 1;
        let end = start + rest[start..].find("\n```").expect("closing fence");
        let shown = match codec {
            Codec::Json => rest.as_bytes()[start..end].to_vec(),
            Codec::Bencode => unescape_hex(&rest[start..end]),
        };
        let (_, vector) = vectors(codec)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("PROTOCOL.md names no vector {codec}/{name}"));
        let want = match what {
            "vector" => vector,
            _ => encode(codec, &decode(codec, &vector).expect("vector decodes")),
        };
        assert_eq!(
            shown.escape_ascii().to_string(),
            want.escape_ascii().to_string(),
            "PROTOCOL.md example <!-- {tag} -->"
        );
        checked += 1;
    }
    // Every message kind in both formats, and some of our own encodings.
    assert_eq!(checked, 32, "examples checked in PROTOCOL.md");
}

/// `text` with each `\xNN` replaced by the byte NN.
fn unescape_hex(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = text.as_bytes();
    while let Some((&b, rest)) = bytes.split_first() {
        let hex = rest
            .strip_prefix(b"x")
            .and_then(|r| r.get(..2))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match hex {
            Some(byte) if b == b'\\' => {
                out.push(byte);
                bytes = &rest[3..];
            }
            _ => {
                out.push(b);
                bytes = rest;
            }
        }
    }
    out
}

#[test]
fn json_encoding_is_compact_and_escapes_only_what_it_must() {
    let m = msg(
        "0123456789abcdef",
        Body::Set {
            key: "q\"b\\n\n\u{1}é".into(),
            value: Value::Text("\u{0}bytes\u{0}x".into()),
        },
    );
    let text = String::from_utf8(encode(Codec::Json, &m)).expect("utf-8");
    assert_eq!(
        text,
        format!(
            r#"{{"type":"set","id":"0123456789abcdef","sender":{{"node_id":"{SENDER_HEX}","ip":"127.0.0.1","port":8000}},"key":"q\"b\\n\n\u0001é","value":"\u0000bytes\u0000x"}}"#
        )
    );
    // In JSON a string is always text, marker or not.
    assert_eq!(json(&text), Ok(m));
}

#[test]
fn padding_reaches_the_length_asked_and_decodes_to_the_same_message() {
    let bodies = [
        Body::FindNode {
            target: id(PEER1_HEX),
        },
        Body::FindValue {
            key: "my_key".into(),
        },
    ];
    for codec in [Codec::Json, Codec::Bencode] {
        for body in &bodies {
            let m = msg("0123456789abcdef", body.clone());
            let mut plain = Vec::new();
            codec.encode(&m, &mut plain);
            for min_len in [0, plain.len(), plain.len() + 1, plain.len() + 5, 530, 2000] {
                let mut padded = Vec::new();
                codec.encode_padded(&m, min_len, &mut padded);
                if min_len <= plain.len() {
                    assert_eq!(padded, plain, "{codec}: no pad needed");
                    continue;
                }
                assert!(
                    padded.len() >= min_len,
                    "{codec}: {} < {min_len}",
                    padded.len()
                );
                assert!(
                    padded.len() <= min_len + 10,
                    "{codec}: {} bytes",
                    padded.len()
                );
                assert_eq!(decode(codec, &padded).as_ref(), Ok(&m), "{codec}");
            }
        }
    }
    // Bencode keys stay in byte order: `pad` between `key` and `sender`.
    let mut out = Vec::new();
    Codec::Bencode.encode_padded(&msg("0123456789abcdef", bodies[1].clone()), 300, &mut out);
    let text = String::from_utf8_lossy(&out);
    let at = |k: &str| text.find(k).unwrap_or_else(|| panic!("{k} in {text}"));
    assert!(
        at("3:key") < at("3:pad") && at("3:pad") < at("6:sender"),
        "{text}"
    );
    // JSON: the pad is the last field.
    let mut out = Vec::new();
    Codec::Json.encode_padded(&msg("0123456789abcdef", Body::Ping), 200, &mut out);
    assert!(out.ends_with(b" \"}"), "{}", String::from_utf8_lossy(&out));
}

#[test]
fn uppercase_hex_ids_are_accepted_and_written_lowercase() {
    let up = |hex: &str| hex.to_ascii_uppercase();
    let text = format!(
        r#"{{"type":"find_node_res","id":"00000000000000ff","sender":{{"node_id":"{}","ip":"127.0.0.1","port":8000}},"peers":[{{"node_id":"{}","ip":"127.0.0.1","port":8001}},{{"node_id":"{}","ip":"10.0.0.7","port":65535}}]}}"#,
        up(SENDER_HEX),
        up(PEER1_HEX),
        up(PEER2_HEX)
    );
    let m = json(&text).expect("decodes");
    assert_eq!(m, expected("find_node_res").expect("known"));
    assert_eq!(
        encode(Codec::Json, &m),
        text.replace(&up(SENDER_HEX), SENDER_HEX)
            .replace(&up(PEER1_HEX), PEER1_HEX)
            .replace(&up(PEER2_HEX), PEER2_HEX)
            .into_bytes()
    );

    let target = "A94A8FE5CCB19BA61C4C0873D391E987982FBBD3";
    let b = format!(
        "d2:id16:00000000000000ff6:senderd2:ip9:127.0.0.17:node_id40:{}4:porti8000ee6:target40:{target}4:type9:find_nodee",
        up(SENDER_HEX)
    );
    let m = benc(b.as_bytes()).expect("decodes");
    assert_eq!(m, expected("find_node").expect("known"));
    assert_eq!(
        encode(Codec::Bencode, &m),
        b.replace(&up(SENDER_HEX), SENDER_HEX)
            .replace(target, &target.to_ascii_lowercase())
            .into_bytes()
    );
}

/// `{"type":…,"id":…,"sender":…` plus `rest`, in JSON.
fn json_msg(kind: &str, rest: &str) -> String {
    format!(
        r#"{{"type":"{kind}","id":"0123456789abcdef","sender":{{"node_id":"{SENDER_HEX}","ip":"127.0.0.1","port":8000}}{rest}}}"#
    )
}

/// The sender map in bencode.
fn benc_sender() -> String {
    format!("6:senderd2:ip9:127.0.0.17:node_id40:{SENDER_HEX}4:porti8000ee")
}

#[test]
fn type_errors() {
    assert_eq!(json(&json_msg("fly", "")), Err(DecodeError::UnknownType));
    // Unknown type wins over everything else that is wrong.
    assert_eq!(json(r#"{"type":"fly"}"#), Err(DecodeError::UnknownType));
    assert_eq!(
        json(r#"{"id":"x","sender":{}}"#),
        Err(DecodeError::Missing("type"))
    );
    assert_eq!(json(r#"{"type":7}"#), Err(DecodeError::Invalid("type")));
    assert_eq!(json(r#"{"type":null}"#), Err(DecodeError::Invalid("type")));
    assert_eq!(benc(b"d4:type3:flye"), Err(DecodeError::UnknownType));
    assert_eq!(benc(b"d4:typei1ee"), Err(DecodeError::Invalid("type")));
    assert_eq!(benc(b"d2:idi1ee"), Err(DecodeError::Missing("type")));
}

#[test]
fn envelope_errors() {
    let s = format!(r#""sender":{{"node_id":"{SENDER_HEX}","ip":"1.2.3.4","port":1}}"#);
    assert_eq!(
        json(&format!(r#"{{"type":"ping",{s}}}"#)),
        Err(DecodeError::Missing("id"))
    );
    assert_eq!(
        json(&format!(r#"{{"type":"ping","id":"",{s}}}"#)),
        Err(DecodeError::Invalid("id"))
    );
    let long = "a".repeat(MAX_TXN_LEN + 1);
    assert_eq!(
        json(&format!(r#"{{"type":"ping","id":"{long}",{s}}}"#)),
        Err(DecodeError::Invalid("id"))
    );
    let max = "a".repeat(MAX_TXN_LEN);
    assert!(json(&format!(r#"{{"type":"ping","id":"{max}",{s}}}"#)).is_ok());
    assert_eq!(
        json(&format!(r#"{{"type":"ping","id":12,{s}}}"#)),
        Err(DecodeError::Invalid("id"))
    );
    assert_eq!(
        json(r#"{"type":"ping","id":"ab"}"#),
        Err(DecodeError::Missing("sender"))
    );
    assert_eq!(
        json(r#"{"type":"ping","id":"ab","sender":[]}"#),
        Err(DecodeError::Invalid("sender"))
    );
    let sender_err =
        |sender: &str| json(&format!(r#"{{"type":"ping","id":"ab","sender":{sender}}}"#));
    assert_eq!(
        sender_err(r#"{"ip":"a","port":1}"#),
        Err(DecodeError::Missing("sender.node_id"))
    );
    assert_eq!(
        sender_err(r#"{"node_id":"abc","ip":"a","port":1}"#),
        Err(DecodeError::Invalid("sender.node_id"))
    );
    assert_eq!(
        sender_err(&format!(r#"{{"node_id":"{SENDER_HEX}","port":1}}"#)),
        Err(DecodeError::Missing("sender.ip"))
    );
    let long_ip = "1".repeat(MAX_IP_LEN + 1);
    assert_eq!(
        sender_err(&format!(
            r#"{{"node_id":"{SENDER_HEX}","ip":"{long_ip}","port":1}}"#
        )),
        Err(DecodeError::Invalid("sender.ip"))
    );
    assert_eq!(
        sender_err(&format!(r#"{{"node_id":"{SENDER_HEX}","ip":"a"}}"#)),
        Err(DecodeError::Missing("sender.port"))
    );
    for port in ["65536", "-1", "1.5", "true", "\"80\""] {
        assert_eq!(
            sender_err(&format!(
                r#"{{"node_id":"{SENDER_HEX}","ip":"a","port":{port}}}"#
            )),
            Err(DecodeError::Invalid("sender.port")),
            "port {port}"
        );
    }
    // The sender's ip is only its own idea of itself: any short text will do, and so will
    // port 0.
    let m = sender_err(&format!(
        r#"{{"node_id":"{SENDER_HEX}","ip":"my-host","port":0}}"#
    ))
    .expect("valid");
    assert_eq!((m.sender.ip.as_str(), m.sender.port), ("my-host", 0));
}

#[test]
fn body_errors() {
    let cases: &[(&str, &str, DecodeError)] = &[
        ("find_node", "", DecodeError::Missing("target")),
        (
            "find_node",
            r#","target":"xyz""#,
            DecodeError::Invalid("target"),
        ),
        ("set", r#","value":"v""#, DecodeError::Missing("key")),
        ("set", r#","key":"k""#, DecodeError::Missing("value")),
        (
            "set",
            r#","key":1,"value":"v""#,
            DecodeError::Invalid("key"),
        ),
        (
            "set",
            r#","key":"k","value":1"#,
            DecodeError::Invalid("value"),
        ),
        (
            "set",
            r#","key":"k","value":null"#,
            DecodeError::Invalid("value"),
        ),
        (
            "set",
            r#","key":"k","value":["a"]"#,
            DecodeError::Invalid("value"),
        ),
        (
            "set",
            r#","key":"k","value":{}"#,
            DecodeError::Invalid("value"),
        ),
        (
            "set",
            r#","key":"k","value":{"__bytes_b64__":"AAEC","x":1}"#,
            DecodeError::Invalid("value"),
        ),
        (
            "set",
            r#","key":"k","value":{"__bytes_b64__":"AAE"}"#,
            DecodeError::Invalid("value"),
        ),
        (
            "set",
            r#","key":"k","value":{"__bytes_b64__":5}"#,
            DecodeError::Invalid("value"),
        ),
        (
            "set_cached",
            r#","key":"k","value":"v""#,
            DecodeError::Missing("target_id"),
        ),
        ("check_store", r#","key":"k""#, DecodeError::Missing("size")),
        (
            "check_store",
            r#","key":"k","size":-1"#,
            DecodeError::Invalid("size"),
        ),
        (
            "check_store",
            r#","key":"k","size":"8""#,
            DecodeError::Invalid("size"),
        ),
        (
            "check_store_res",
            r#","has_key":"yes""#,
            DecodeError::Invalid("has_key"),
        ),
        ("find_value", "", DecodeError::Missing("key")),
        (
            "find_node_res",
            r#","peers":{}"#,
            DecodeError::Invalid("peers"),
        ),
        (
            "find_value_res",
            r#","peers":"x""#,
            DecodeError::Invalid("peers"),
        ),
        (
            "find_value_res",
            r#","value":2,"peers":[]"#,
            DecodeError::Invalid("value"),
        ),
    ];
    for (kind, rest, err) in cases {
        assert_eq!(
            json(&json_msg(kind, rest)),
            Err(err.clone()),
            "{kind} {rest}"
        );
    }
}

#[test]
fn lenient_fields_follow_the_reference() {
    let body = |kind: &str, rest: &str| json(&json_msg(kind, rest)).map(|m| m.body);
    // has_key: a bool, or any integer (non-zero is true); absent reads as false.
    for (rest, want) in [
        (r#","has_key":true"#, true),
        (r#","has_key":1"#, true),
        (r#","has_key":-3"#, true),
        (r#","has_key":0"#, false),
        ("", false),
    ] {
        assert_eq!(
            body("check_store_res", rest),
            Ok(Body::CheckStoreRes { has_key: want }),
            "{rest}"
        );
    }
    let s = benc_sender();
    for (has_key, want) in [("i1e", true), ("i2e", true), ("i-1e", true), ("i0e", false)] {
        let b = format!("d7:has_key{has_key}2:id2:ab{s}4:type15:check_store_rese");
        assert_eq!(
            benc(b.as_bytes()).map(|m| m.body),
            Ok(Body::CheckStoreRes { has_key: want })
        );
    }
    // find_value_res: `value` wins over `peers`; neither means no peers.
    assert_eq!(
        body("find_value_res", r#","peers":[],"value":"v""#),
        Ok(Body::FindValueRes(FindValueRes::Value(Value::from("v"))))
    );
    assert_eq!(
        body("find_value_res", ""),
        Ok(Body::FindValueRes(FindValueRes::Peers(vec![])))
    );
    assert_eq!(
        body("find_node_res", ""),
        Ok(Body::FindNodeRes { peers: vec![] })
    );
    // The last of duplicate keys wins, as in a Python dict.
    assert_eq!(
        body("find_value", r#","key":1,"key":"k2""#),
        Ok(Body::FindValue { key: "k2".into() })
    );
    // JSON escapes anywhere, keys included.
    assert_eq!(
        body("find_value", r#","k\u0065y":"\u00e9\ud83d\ude80""#),
        Ok(Body::FindValue {
            key: "é🚀".into()
        })
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let j = format!(
        r#"{{"extra":[1,{{"a":null}},2.5],"type":"find_node_res","id":"00000000000000ff","sender":{{"node_id":"{SENDER_HEX}","ip":"127.0.0.1","port":8000,"x":{{}}}},"peers":[{{"node_id":"{PEER1_HEX}","ip":"127.0.0.1","port":8001,"rtt":0.5}},{{"node_id":"{PEER2_HEX}","ip":"10.0.0.7","port":65535}}],"z":true}}"#
    );
    assert_eq!(json(&j), Ok(expected("find_node_res").expect("known")));
    // Fields of other kinds are ignored too.
    assert_eq!(
        json(&json_msg(
            "ping",
            r#","key":"k","value":{"weird":1},"size":-4"#
        )),
        Ok(msg("0123456789abcdef", Body::Ping))
    );
    let b = format!(
        "d1:ali1ed1:xi2eee2:id16:0123456789abcdef{}4:type4:ping3:zzzd1:q0:ee",
        benc_sender().replace("4:porti8000ee", "4:porti8000e5:extralee")
    );
    assert_eq!(benc(b.as_bytes()), Ok(msg("0123456789abcdef", Body::Ping)));
}

#[test]
fn bencode_strings_follow_the_marker_rule() {
    let s = benc_sender();
    let set = |value: &[u8]| {
        let mut b = format!("d2:id2:ab3:key1:k{s}4:type3:set5:value{}:", value.len()).into_bytes();
        b.extend_from_slice(value);
        b.push(b'e');
        benc(&b).map(|m| m.body)
    };
    let set_body = |value: Value| {
        Ok(Body::Set {
            key: "k".into(),
            value,
        })
    };
    // Text that starts with the marker comes back as bytes (documented in docs/PROTOCOL.md).
    assert_eq!(
        set(b"\x00bytes\x00text"),
        set_body(Value::from(&b"text"[..]))
    );
    assert_eq!(set(b"\x00bytes\x00"), set_body(Value::from(&b""[..])));
    // Not UTF-8: bytes as they are.
    assert_eq!(set(b"\xff\xfe"), set_body(Value::from(&b"\xff\xfe"[..])));
    // A prefix of the marker is just text.
    assert_eq!(set(b"\x00byte"), set_body(Value::from("\u{0}byte")));
    // A key must be text.
    let key = |k: &[u8]| {
        let mut b = format!("d2:id2:ab3:key{}:", k.len()).into_bytes();
        b.extend_from_slice(k);
        b.extend_from_slice(format!("{s}4:type10:find_valuee").as_bytes());
        benc(&b)
    };
    assert_eq!(key(b"\x00bytes\x00k"), Err(DecodeError::Invalid("key")));
    assert_eq!(key(b"\xff"), Err(DecodeError::Invalid("key")));
    // A dict is no value in bencode, even one that would be bytes in JSON.
    let b = format!("d2:id2:ab3:key1:k{s}4:type3:set5:valued13:__bytes_b64__4:AAECee");
    assert_eq!(benc(b.as_bytes()), Err(DecodeError::Invalid("value")));
    // Like the reference, a dict key behind the marker is read without it.
    let b = format!("d2:id2:ab{s}11:\x00bytes\x00type4:pinge");
    assert_eq!(benc(b.as_bytes()).map(|m| m.body), Ok(Body::Ping));
}

#[test]
fn bencode_accepts_what_the_reference_reads() {
    // Unsorted keys and leading zeros: the reference never writes them but reads them.
    let b = format!(
        "d4:type4:ping{}2:id02:abe",
        benc_sender().replace("i8000e", "i08000e")
    );
    let m = benc(b.as_bytes()).expect("decodes");
    assert_eq!(m.txn, txn("ab"));
    assert_eq!(m.sender.port, 8000);
}

#[test]
fn invalid_peer_entries_are_skipped() {
    let good = |hex: &str, ip: &str, port: &str| {
        format!(r#"{{"node_id":"{hex}","ip":"{ip}","port":{port}}}"#)
    };
    let entries = [
        good(PEER1_HEX, "127.0.0.1", "8001"),
        good("nothex", "127.0.0.1", "1"),
        good(PEER1_HEX, "localhost", "1"),
        good(PEER1_HEX, "127.0.0.1", "0"),
        good(PEER1_HEX, "127.0.0.1", "65536"),
        good(PEER1_HEX, "127.0.0.1", "-5"),
        good(PEER1_HEX, "127.0.0.1", "\"80\""),
        format!(r#"{{"node_id":"{PEER1_HEX}","ip":"127.0.0.1"}}"#),
        r#""not a peer""#.into(),
        "[]".into(),
        "null".into(),
        good(PEER2_HEX, "::1", "7"),
    ];
    let j = json_msg(
        "find_node_res",
        &format!(r#","peers":[{}]"#, entries.join(",")),
    );
    let want = vec![
        WirePeer {
            id: id(PEER1_HEX),
            addr: "127.0.0.1:8001".parse().expect("addr"),
        },
        WirePeer {
            id: id(PEER2_HEX),
            addr: "[::1]:7".parse().expect("addr"),
        },
    ];
    assert_eq!(
        json(&j).map(|m| m.body),
        Ok(Body::FindNodeRes {
            peers: want.clone()
        })
    );
    let b = format!(
        "d2:id2:ab5:peersld2:ip9:127.0.0.17:node_id40:{PEER1_HEX}4:porti8001eed2:ip9:127.0.0.17:node_id3:xyz4:porti1eei5ed2:ip9:localhost7:node_id40:{PEER1_HEX}4:porti1eed2:ip3:::17:node_id40:{PEER2_HEX}4:porti7eee{}4:type13:find_node_rese",
        benc_sender()
    );
    assert_eq!(
        benc(b.as_bytes()).map(|m| m.body),
        Ok(Body::FindNodeRes { peers: want })
    );
}

#[test]
fn peers_are_capped() {
    let entry = format!(r#"{{"node_id":"{PEER1_HEX}","ip":"10.0.0.1","port":1}}"#);
    let list = vec![entry; MAX_PEERS_PER_MESSAGE + 10].join(",");
    let m = json(&json_msg("find_node_res", &format!(r#","peers":[{list}]"#))).expect("decodes");
    match m.body {
        Body::FindNodeRes { peers } => assert_eq!(peers.len(), MAX_PEERS_PER_MESSAGE),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ipv6_peers_are_plain_address_strings() {
    let m = msg(
        "ab",
        Body::FindNodeRes {
            peers: vec![WirePeer {
                id: id(PEER1_HEX),
                addr: SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 9),
            }],
        },
    );
    let j = String::from_utf8(encode(Codec::Json, &m)).expect("utf-8");
    assert!(j.contains(r#""ip":"::1","port":9"#), "{j}");
    let b = encode(Codec::Bencode, &m);
    assert!(
        b.windows(11).any(|w| w == b"2:ip3:::17:"),
        "{}",
        b.escape_ascii()
    );
    assert_eq!(json(&j), Ok(m.clone()));
    assert_eq!(benc(&b), Ok(m));
}

#[test]
fn malformed_input_is_a_syntax_error() {
    for bad in [
        "",
        "[]",
        "\"ping\"",
        "{",
        r#"{"type":"ping"} x"#,
        r#"{"type":"ping",}"#,
        "\u{feff}{}",
    ] {
        assert_eq!(json(bad), Err(DecodeError::Syntax), "{bad:?}");
    }
    // Whitespace around the object is fine.
    assert!(json(&format!(" {} \n", json_msg("ping", ""))).is_ok());
    // Invalid UTF-8 inside a string.
    let mut raw = json_msg("find_value", r#","key":"k""#).into_bytes();
    let at = raw.len() - 3;
    raw[at] = 0xff;
    assert_eq!(decode(Codec::Json, &raw), Err(DecodeError::Syntax));

    let ping = format!("d2:id2:ab{}4:type4:pinge", benc_sender());
    assert!(benc(ping.as_bytes()).is_ok());
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"le".to_vec(),
        b"i1e".to_vec(),
        b"4:ping".to_vec(),
        b"d".to_vec(),
        b"di1ei2ee".to_vec(),
        b"d1:ae".to_vec(),
        b"d1:ai-ee".to_vec(),
        b"d1:aiee".to_vec(),
        b"d1:ai1xee".to_vec(),
        b"d1:a1xe".to_vec(),
        b"d1:ai99999999999999999999ee".to_vec(),
        format!("{ping}x").into_bytes(),
        format!("{ping}e").into_bytes(),
        format!("{ping}de").into_bytes(),
        ping.as_bytes()[..ping.len() - 1].to_vec(),
    ];
    for b in bad {
        assert_eq!(benc(&b), Err(DecodeError::Syntax), "{}", b.escape_ascii());
    }
}

#[test]
fn huge_length_prefixes_are_refused_not_allocated() {
    let s = benc_sender();
    for len in [
        "99999999999",
        "18446744073709551615",
        "18446744073709551616",
        "999999999999999999999999999999",
        "4294967296",
    ] {
        let b = format!("d2:id{len}:ab{s}4:type4:pinge");
        assert_eq!(benc(b.as_bytes()), Err(DecodeError::Syntax), "{len}");
        let b = format!("d{len}:abe");
        assert_eq!(benc(b.as_bytes()), Err(DecodeError::Syntax), "{len}");
    }
    // Exactly the rest of the input is still fine as a length (then the dict is unclosed).
    assert_eq!(benc(b"d1:a3:abc"), Err(DecodeError::Syntax));
    // Leading zeros on a length are not a problem, however many.
    let b = format!("d2:id{}2:ab{s}4:type4:pinge", "0".repeat(40));
    assert!(benc(b.as_bytes()).is_ok());
}

/// A ping with an unknown field holding `inner`.
fn bencode_ping_with(inner: &[u8]) -> Vec<u8> {
    let mut b = b"d2:id2:ab1:x".to_vec();
    b.extend_from_slice(inner);
    b.extend_from_slice(format!("{}4:type4:pinge", benc_sender()).as_bytes());
    b
}

#[test]
fn deep_nesting_is_refused_or_skipped_without_recursion() {
    // Bencode: 32 levels in all is the limit (the message itself is one).
    let nested = |n: usize| [vec![b'l'; n], vec![b'e'; n]].concat();
    assert!(benc(&bencode_ping_with(&nested(31))).is_ok());
    assert_eq!(
        benc(&bencode_ping_with(&nested(32))),
        Err(DecodeError::Syntax)
    );
    assert_eq!(
        benc(&bencode_ping_with(&nested(1_000_000))),
        Err(DecodeError::Syntax)
    );
    assert_eq!(benc(&vec![b'd'; 1_000_000]), Err(DecodeError::Syntax));
    let dicts = [
        b"d1:a".repeat(100_000),
        b"i1e".to_vec(),
        vec![b'e'; 100_000],
    ]
    .concat();
    assert_eq!(benc(&bencode_ping_with(&dicts)), Err(DecodeError::Syntax));
    // In a known field too.
    let mut peers = b"d2:id2:ab5:peers".to_vec();
    peers.extend_from_slice(&nested(100_000));
    peers.extend_from_slice(format!("{}4:type13:find_node_rese", benc_sender()).as_bytes());
    assert_eq!(benc(&peers), Err(DecodeError::Syntax));

    // JSON: serde_json stops at 128 levels where we visit, and skips ignored values
    // without recursing, so deep but balanced input in an unknown field is harmless.
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let ping = |extra: &str| json(&json_msg("ping", &format!(r#","x":{extra}"#)));
    assert!(ping(&deep(1_000_000)).is_ok());
    assert!(ping(&r#"{"a":"#.repeat(100_000)).is_err());
    assert_eq!(ping(&"[".repeat(1_000_000)), Err(DecodeError::Syntax));
    // In fields we do look at, a deep value is just the wrong shape.
    let set = json(&json_msg(
        "set",
        &format!(r#","key":"k","value":{}"#, deep(100_000)),
    ));
    assert_eq!(set, Err(DecodeError::Invalid("value")));
    let peers = json(&json_msg(
        "find_node_res",
        &format!(r#","peers":{}"#, deep(100_000)),
    ));
    assert_eq!(
        peers.map(|m| m.body),
        Ok(Body::FindNodeRes { peers: vec![] })
    );
    let sender = json(&format!(
        r#"{{"type":"ping","id":"a","sender":{}}}"#,
        deep(100_000)
    ));
    assert_eq!(sender, Err(DecodeError::Invalid("sender")));
    let value = format!(
        r#","key":"k","value":{{"__bytes_b64__":{}}}"#,
        deep(100_000)
    );
    assert_eq!(
        json(&json_msg("set", &value)),
        Err(DecodeError::Invalid("value"))
    );
}

// ---- property tests ----

fn arb_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 20]>().prop_map(NodeId)
}

/// Text of any characters, control characters included, except a leading NUL: in bencode
/// text that starts with the bytes marker decodes as bytes, by design.
fn arb_text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.trim_start_matches('\0').to_owned())
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        arb_text().prop_map(Value::Text),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::from),
    ]
}

fn arb_txn() -> impl Strategy<Value = TxnId> {
    // `\PC` has no control characters, so no leading NUL; 8 chars are at most 32 bytes.
    prop_oneof!["[0-9a-f]{16}", "\\PC{1,8}"]
        .prop_map(|s| TxnId::from_str(&s).expect("1 to 32 bytes"))
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn arb_peers() -> impl Strategy<Value = Vec<WirePeer>> {
    proptest::collection::vec(
        (arb_id(), arb_addr()).prop_map(|(id, addr)| WirePeer { id, addr }),
        0..8,
    )
}

fn arb_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::Ping),
        Just(Body::Pong),
        arb_id().prop_map(|target| Body::FindNode { target }),
        arb_peers().prop_map(|peers| Body::FindNodeRes { peers }),
        (arb_text(), arb_value()).prop_map(|(key, value)| Body::Set { key, value }),
        Just(Body::SetRes),
        (arb_text(), arb_value(), arb_id()).prop_map(|(key, value, target)| Body::SetCached {
            key,
            value,
            target
        }),
        Just(Body::SetCachedRes),
        (arb_text(), any::<u64>()).prop_map(|(key, size)| Body::CheckStore { key, size }),
        any::<bool>().prop_map(|has_key| Body::CheckStoreRes { has_key }),
        arb_text().prop_map(|key| Body::FindValue { key }),
        arb_value().prop_map(|v| Body::FindValueRes(FindValueRes::Value(v))),
        arb_peers().prop_map(|p| Body::FindValueRes(FindValueRes::Peers(p))),
    ]
}

pub(super) fn arb_message() -> impl Strategy<Value = Message> {
    (
        (arb_txn(), arb_id(), "\\PC{0,16}", any::<u16>()),
        arb_body(),
        any::<bool>(),
    )
        .prop_map(|((txn, id, ip, port), body, client)| Message {
            txn,
            sender: Sender {
                id,
                ip: SenderIp::new(&ip).expect("16 characters fit"),
                port,
            },
            body,
            client,
        })
}

/// A peer-list message's length, from its envelope and [`Codec::peer_len`] alone.
fn length_by_peer_len(codec: Codec, m: &Message) -> Option<usize> {
    let (Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers))) = &m.body
    else {
        return None;
    };
    let mut empty = m.clone();
    if let Body::FindNodeRes { peers } | Body::FindValueRes(FindValueRes::Peers(peers)) =
        &mut empty.body
    {
        peers.clear();
    }
    let entries: usize = peers
        .iter()
        .enumerate()
        .map(|(i, p)| codec.peer_len(p, i == 0))
        .sum();
    Some(encode(codec, &empty).len() + entries)
}

#[test]
fn peer_len_is_exact_at_the_edges() {
    let addrs = [
        "0.0.0.0:0",
        "255.255.255.255:65535",
        "10.0.0.7:9",
        "1.22.103.4:10",
        "[::]:0",
        "[::1]:4000",
        "[::ffff:1.2.3.4]:80",
        "[2001:db8::8a2e:370:7334]:443",
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
    ];
    let peers: Vec<WirePeer> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| WirePeer {
            id: NodeId::for_key(&i.to_string()),
            addr: a.parse().expect("an address"),
        })
        .collect();
    for codec in [Codec::Json, Codec::Bencode] {
        for n in 0..=peers.len() {
            let m = msg(
                "00ff",
                Body::FindNodeRes {
                    peers: peers[..n].to_vec(),
                },
            );
            assert_eq!(
                length_by_peer_len(codec, &m),
                Some(encode(codec, &m).len()),
                "{codec}, {n} peers"
            );
        }
        for p in &peers {
            assert!(codec.peer_len(p, true) >= MIN_PEER_LEN, "{codec} {p:?}");
        }
    }
    // The bound is tight: bencode's `::` at port 0.
    assert_eq!(Codec::Bencode.peer_len(&peers[4], true), MIN_PEER_LEN);
}

proptest! {
    #[test]
    fn peer_len_adds_up_to_the_encoding(m in arb_message()) {
        for codec in [Codec::Json, Codec::Bencode] {
            if let Some(len) = length_by_peer_len(codec, &m) {
                prop_assert_eq!(len, encode(codec, &m).len(), "{}", codec);
            }
        }
    }

    #[test]
    fn messages_round_trip(m in arb_message()) {
        for codec in [Codec::Json, Codec::Bencode] {
            let bytes = encode(codec, &m);
            prop_assert_eq!(decode(codec, &bytes), Ok(m.clone()), "{}", codec);
        }
    }

    #[test]
    fn bencode_output_is_canonical(m in arb_message()) {
        // bt_bencode's Value keeps dict keys in a BTreeMap, so writing it back gives the
        // canonical form: sorted keys, shortest integers. Ours must already be that.
        let bytes = encode(Codec::Bencode, &m);
        let value: bt_bencode::Value = bt_bencode::from_slice(&bytes).expect("parses");
        prop_assert_eq!(bt_bencode::to_vec(&value).expect("writes"), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(Codec::Json, &bytes);
        let _ = decode(Codec::Bencode, &bytes);
    }

    #[test]
    fn damaged_messages_never_panic(
        m in arb_message(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        for codec in [Codec::Json, Codec::Bencode] {
            let mut bytes = encode(codec, &m);
            let _ = decode(codec, &bytes[..cut.index(bytes.len() + 1)]);
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let _ = decode(codec, &bytes);
            bytes.insert(i, byte);
            let _ = decode(codec, &bytes);
        }
    }
}

#[test]
fn a_clients_messages_carry_ro_and_decode_with_it() {
    let mut m = msg("0123456789abcdef", Body::Ping);
    m.client = true;
    let mut json = Vec::new();
    Codec::Json.encode(&m, &mut json);
    assert!(
        json.ends_with(b"\"port\":8000},\"ro\":1}"),
        "{}",
        String::from_utf8_lossy(&json)
    );
    let mut bencode = Vec::new();
    Codec::Bencode.encode(&m, &mut bencode);
    let text = String::from_utf8_lossy(&bencode).into_owned();
    assert!(
        text.contains("2:id16:0123456789abcdef2:roi1e6:senderd"),
        "{text}"
    );
    for (codec, bytes) in [(Codec::Json, &json), (Codec::Bencode, &bencode)] {
        assert_eq!(codec.decode(bytes).as_ref(), Ok(&m), "{codec}");
    }
    // A value of another shape is no flag, and fails nothing.
    let odd = br#"{"type":"ping","id":"0123456789abcdef","sender":{"node_id":"3f786850e387550fdab836ed7e6dc881de23001b","ip":"127.0.0.1","port":8000},"ro":"yes"}"#;
    assert_eq!(
        Codec::Json.decode(odd),
        Ok(msg("0123456789abcdef", Body::Ping))
    );
}

/// A sender's ip text is kept inline up to `SenderIp::INLINE` bytes and on the heap past
/// that: either way it reads back as written, equal texts give equal values and unequal
/// ones unequal, and a whole message with it decodes and encodes both ways alike.
#[test]
fn sender_ips_of_every_length_read_back_as_written() {
    let texts: Vec<String> = (0..=MAX_IP_LEN)
        .flat_map(|n| {
            [
                "a".repeat(n),
                format!("{}é", "b".repeat(n.saturating_sub(2))),
            ]
        })
        .filter(|t| t.len() <= MAX_IP_LEN)
        .collect();
    for t in &texts {
        let ip = SenderIp::new(t).expect("at most MAX_IP_LEN bytes");
        assert_eq!(ip.as_str(), t);
        assert_eq!(ip.as_bytes(), t.as_bytes());
        assert_eq!(
            matches!(ip, SenderIp::Inline { .. }),
            t.len() <= SenderIp::INLINE,
            "{t:?}"
        );
        for u in &texts {
            assert_eq!(SenderIp::new(u) == Some(ip.clone()), u == t, "{t:?} {u:?}");
        }
        let mut m = msg("aaaaaaaaaaaaaaaa", Body::Ping);
        m.sender.ip = ip;
        for codec in [Codec::Json, Codec::Bencode] {
            let (fast_bytes, bytes) = codec.encode_both_ways(&m, 0);
            if let Some(fast_bytes) = fast_bytes {
                assert_eq!(fast_bytes, bytes, "{codec} {t:?}");
            }
            let (fast, serde) = codec.decode_both_ways(&bytes);
            assert_eq!(serde.as_ref(), Ok(&m), "{codec} {t:?}");
            if let Some(fast) = fast {
                assert_eq!(fast, serde, "{codec} {t:?}");
            }
        }
    }
    assert_eq!(SenderIp::new(&"c".repeat(MAX_IP_LEN + 1)), None);
    let v6: IpAddr = "2001:db8:85a3::8a2e:370:7334".parse().expect("an address");
    assert_eq!(SenderIp::from(v6).as_str(), "2001:db8:85a3::8a2e:370:7334");
    assert_eq!(
        SenderIp::from(v6),
        SenderIp::new("2001:db8:85a3::8a2e:370:7334").expect("fits")
    );
}
