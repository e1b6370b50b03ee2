//! Signed mutable records: only the holder of a key pair can write its keys, and the
//! highest sequence number wins (the format is in `docs/PROTOCOL.md`).
//!
//! A signed record is an ordinary bytes value on the wire, so Python nodes store, replicate
//! and return it unchanged; kad nodes check it through [`SignedRecords`], the default
//! [`Validator`] when the `signed` feature is on. Its DHT key, [`signed_key`], is text made
//! from the public key and the salt: nobody can write under it without the private key.
//!
//! ```
//! use kad_core::{signed_key, Keypair, SignedRecord, Value};
//! let keypair = Keypair::from_secret([7; 32]); // use real randomness in production
//! let value = SignedRecord::sign(&keypair, b"profile", 1, None, Value::from("hello")).unwrap();
//! let record = SignedRecord::open(&value).unwrap();
//! assert_eq!(record.seq, 1);
//! assert_eq!(record.value, Value::from("hello"));
//! assert_eq!(record.key(), signed_key(&keypair.public_key(), b"profile"));
//! ```

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::validate::{AcceptAll, Origin, Validator, Verdict};
use crate::Value;

/// The first bytes of every signed record.
pub const MAGIC: &[u8; 6] = b"KADSIG";
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// The longest salt, in bytes.
pub const MAX_SALT_BYTES: usize = 64;
/// Every signed key starts with this.
pub const KEY_PREFIX: &str = "sig1:";
/// Signatures cover this, then the record's bytes before the signature: a signature made
/// for anything else (another protocol, another version) never verifies here.
const DOMAIN: &[u8] = b"kad signed record v1\0";
const FLAG_TEXT: u8 = 1;
const FLAG_CAS: u8 = 2;
const PUBLIC_KEY_BYTES: usize = 32;
const SIGNATURE_BYTES: usize = 64;

/// An ed25519 public key: who may write a signed key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<PublicKey, SignedError> {
        let bytes = unhex(s).ok_or(SignedError::Malformed)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SignedError::Malformed)?;
        Ok(PublicKey(key))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// An ed25519 key pair: signs records for its [`PublicKey`].
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// The key pair of a 32-byte secret (draw it from real randomness: kad-core has none).
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair(SigningKey::from_bytes(&secret))
    }

    /// The 32-byte secret, to save the key pair.
    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "Keypair({})", self.public_key().to_hex())
    }
}

/// Why bytes are not a valid signed record, or a record cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignedError {
    /// Not the format: wrong magic, unknown version or flags, truncated, text not UTF-8.
    #[error("not a signed record")]
    Malformed,
    /// The salt is longer than [`MAX_SALT_BYTES`].
    #[error("salt is {0} bytes, the limit is 64")]
    SaltTooLong(usize),
    /// The signature does not verify for the record's public key.
    #[error("bad signature")]
    BadSignature,
}

/// A signed record, opened (its signature verified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord {
    /// Who signed it.
    pub public_key: PublicKey,
    /// The salt (empty for none): one key pair may write many keys.
    pub salt: Vec<u8>,
    /// The sequence number: a higher one replaces a lower one.
    pub seq: u64,
    /// Compare-and-swap: the sequence number this record replaces. A node holding another
    /// sequence refuses it (a node holding none accepts it).
    pub cas: Option<u64>,
    /// The payload, text or bytes as it was signed.
    pub value: Value,
}

impl SignedRecord {
    /// Signs `value` under `keypair`'s key for `salt`; the result is the bytes value to
    /// store under [`signed_key`]`(&keypair.public_key(), salt)`.
    pub fn sign(
        keypair: &Keypair,
        salt: &[u8],
        seq: u64,
        cas: Option<u64>,
        value: Value,
    ) -> Result<Value, SignedError> {
        if salt.len() > MAX_SALT_BYTES {
            return Err(SignedError::SaltTooLong(salt.len()));
        }
        let mut flags = 0;
        if value.as_text().is_some() {
            flags |= FLAG_TEXT;
        }
        if cas.is_some() {
            flags |= FLAG_CAS;
        }
        let mut out = Vec::with_capacity(64 + salt.len() + value.byte_len() + SIGNATURE_BYTES);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(flags);
        out.extend_from_slice(&keypair.public_key().0);
        out.push(salt.len() as u8);
        out.extend_from_slice(salt);
        out.extend_from_slice(&seq.to_be_bytes());
        if let Some(cas) = cas {
            out.extend_from_slice(&cas.to_be_bytes());
        }
        out.extend_from_slice(value.as_bytes());
        let signature = keypair.0.sign(&signed_message(&out));
        out.extend_from_slice(&signature.to_bytes());
        Ok(Value::from(out))
    }

    /// Parses a signed record and verifies its signature. A text value is never one.
    pub fn open(value: &Value) -> Result<SignedRecord, SignedError> {
        let Value::Bytes(bytes) = value else {
            return Err(SignedError::Malformed);
        };
        let (record, body, signature) = parse(bytes)?;
        let key = VerifyingKey::from_bytes(&record.public_key.0)
            .map_err(|_| SignedError::BadSignature)?;
        let signature = Signature::from_bytes(signature);
        key.verify_strict(&signed_message(body), &signature)
            .map_err(|_| SignedError::BadSignature)?;
        Ok(record)
    }

    /// The DHT key this record belongs under.
    pub fn key(&self) -> String {
        signed_key(&self.public_key, &self.salt)
    }
}

/// The DHT key of `public_key`'s records for `salt`: `sig1:` and the key in hex, then `:`
/// and the salt in hex when there is one. Text, so Python nodes accept it as a key.
pub fn signed_key(public_key: &PublicKey, salt: &[u8]) -> String {
    let mut key = format!("{KEY_PREFIX}{}", public_key.to_hex());
    if !salt.is_empty() {
        key.push(':');
        key.push_str(&hex(salt));
    }
    key
}

/// Is `key` a signed key (one only signed records may be stored under)?
pub fn is_signed_key(key: &str) -> bool {
    key.starts_with(KEY_PREFIX)
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(body);
    m
}

/// Splits a record into its fields, the signed bytes and the signature, unverified.
fn parse(bytes: &[u8]) -> Result<(SignedRecord, &[u8], &[u8; 64]), SignedError> {
    let malformed = SignedError::Malformed;
    let body_len = bytes.len().checked_sub(SIGNATURE_BYTES).ok_or(malformed)?;
    let (body, signature) = bytes.split_at(body_len);
    let signature: &[u8; 64] = signature.try_into().map_err(|_| malformed)?;
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC || r.take(1)?[0] != VERSION {
        return Err(malformed);
    }
    let flags = r.take(1)?[0];
    if flags & !(FLAG_TEXT | FLAG_CAS) != 0 {
        return Err(malformed);
    }
    let public_key = PublicKey(
        r.take(PUBLIC_KEY_BYTES)?
            .try_into()
            .map_err(|_| malformed)?,
    );
    let salt_len = usize::from(r.take(1)?[0]);
    if salt_len > MAX_SALT_BYTES {
        return Err(malformed);
    }
    let salt = r.take(salt_len)?.to_vec();
    let seq = r.u64()?;
    let cas = if flags & FLAG_CAS != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    let payload = r.0;
    let value = if flags & FLAG_TEXT != 0 {
        Value::Text(String::from_utf8(payload.to_vec()).map_err(|_| malformed)?)
    } else {
        Value::from(payload)
    };
    let record = SignedRecord {
        public_key,
        salt,
        seq,
        cas,
        value,
    };
    Ok((record, body, signature))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SignedError> {
        if self.0.len() < n {
            return Err(SignedError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, SignedError> {
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| SignedError::Malformed)?;
        Ok(u64::from_be_bytes(b))
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The [`Validator`] of signed records, in front of another validator for every other key.
///
/// Under a signed key (see [`is_signed_key`]) it accepts only a signed record whose
/// signature verifies and whose public key and salt are the key's; a record replaces the
/// one held only with a higher sequence number (an equal one only as the same bytes), and
/// one with a compare-and-swap only when the held sequence is the one it names. A `get`
/// of a signed key collects the k closest holders' values and returns the highest valid
/// sequence. Other keys go to the inner validator.
#[derive(Clone, Debug, Default)]
pub struct SignedRecords<V = AcceptAll> {
    inner: V,
}

impl<V: Validator> SignedRecords<V> {
    /// Signed records checked here, every other key by `inner`.
    pub fn new(inner: V) -> SignedRecords<V> {
        SignedRecords { inner }
    }
}

/// Opens `value` as a record that belongs under `key`.
fn open_for(key: &str, value: &Value) -> Option<SignedRecord> {
    let record = SignedRecord::open(value).ok()?;
    (record.key() == key).then_some(record)
}

impl<V: Validator> Validator for SignedRecords<V> {
    fn validate(&mut self, key: &str, value: &Value, origin: Origin) -> Verdict {
        if !is_signed_key(key) {
            return self.inner.validate(key, value, origin);
        }
        match open_for(key, value) {
            Some(_) => Verdict::Accept,
            None => Verdict::Reject,
        }
    }

    fn replaces(&mut self, key: &str, current: &Value, candidate: &Value, origin: Origin) -> bool {
        if !is_signed_key(key) {
            return self.inner.replaces(key, current, candidate, origin);
        }
        let Some(new) = open_for(key, candidate) else {
            return false;
        };
        // An invalid held value (stored before this validator was installed) always goes.
        let Some(old) = open_for(key, current) else {
            return true;
        };
        if new.seq == old.seq {
            return current == candidate;
        }
        if new.seq < old.seq {
            return false;
        }
        // A reader compares versions; only a store holds "the current one" a CAS names.
        match (origin, new.cas) {
            (Origin::Lookup, _) | (_, None) => true,
            (_, Some(cas)) => cas == old.seq,
        }
    }

    fn collects(&self, key: &str) -> bool {
        is_signed_key(key) || self.inner.collects(key)
    }
}

impl crate::Node {
    /// Command: sign `value` with `keypair` for `salt` at sequence `seq` (with `cas`, only
    /// over the version of sequence `cas`) and store it under
    /// [`signed_key`]`(&keypair.public_key(), salt)`, as [`crate::Node::put`] does. The
    /// node keeps it as its publisher and republishes it. Refused at once
    /// ([`crate::PutError::Rejected`]) when this node holds a higher sequence for the key,
    /// or another value at the same one.
    pub fn put_signed(
        &mut self,
        now: std::time::Instant,
        keypair: &Keypair,
        salt: &[u8],
        value: impl Into<Value>,
        seq: u64,
        cas: Option<u64>,
    ) -> Result<crate::QueryId, crate::PutError> {
        let value = SignedRecord::sign(keypair, salt, seq, cas, value.into()).map_err(|_| {
            crate::PutError::SaltTooLong {
                len: salt.len(),
                max: MAX_SALT_BYTES,
            }
        })?;
        self.put(now, &signed_key(&keypair.public_key(), salt), value)
    }

    /// Command: the newest valid record `public_key` signed for `salt`. Finishes with
    /// [`crate::QueryResult::Get`]; open its value with [`SignedRecord::open`]. It asks the
    /// k closest nodes (not only the first holder), returns the highest valid sequence, and
    /// sends it to the holders that returned an older or invalid one. Needs a node whose
    /// validator is [`SignedRecords`] (the default with this feature).
    pub fn get_signed(
        &mut self,
        now: std::time::Instant,
        public_key: &PublicKey,
        salt: &[u8],
    ) -> Result<crate::QueryId, crate::KeyError> {
        self.get(now, &signed_key(public_key, salt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(n: u8) -> Keypair {
        Keypair::from_secret([n; 32])
    }

    fn sign(k: &Keypair, seq: u64, cas: Option<u64>, v: &str) -> Value {
        SignedRecord::sign(k, b"s", seq, cas, Value::from(v)).unwrap()
    }

    #[test]
    fn round_trip_keeps_type_salt_seq_and_cas() {
        let k = kp(1);
        let v = SignedRecord::sign(&k, b"", 9, Some(8), Value::from(&b"\x00\xff"[..])).unwrap();
        let r = SignedRecord::open(&v).unwrap();
        assert_eq!(r.value, Value::from(&b"\x00\xff"[..]));
        assert_eq!((r.seq, r.cas, r.salt.len()), (9, Some(8), 0));
        assert_eq!(r.key(), format!("sig1:{}", k.public_key().to_hex()));
        let t = SignedRecord::open(&sign(&k, 1, None, "text")).unwrap();
        assert_eq!(t.value, Value::from("text"));
        assert_eq!(t.key(), format!("sig1:{}:73", k.public_key().to_hex()));
        assert_eq!(
            PublicKey::from_hex(&k.public_key().to_hex()),
            Ok(k.public_key())
        );
    }

    #[test]
    fn any_flipped_bit_breaks_the_record_and_truncations_never_panic() {
        let v = sign(&kp(2), 3, None, "payload");
        let bytes: Vec<u8> = v.clone().into();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(
                SignedRecord::open(&Value::from(b)).is_err(),
                "bit flip at {i}"
            );
        }
        for n in 0..bytes.len() {
            assert!(SignedRecord::open(&Value::from(&bytes[..n])).is_err());
        }
        assert!(SignedRecord::open(&Value::from("KADSIG")).is_err());
    }

    #[test]
    fn validator_rules() {
        let k = kp(3);
        let key = signed_key(&k.public_key(), b"s");
        let mut v = SignedRecords::new(AcceptAll);
        let v1 = sign(&k, 1, None, "one");
        let v2 = sign(&k, 2, None, "two");
        assert_eq!(v.validate(&key, &v1, Origin::Set), Verdict::Accept);
        // Unsigned, someone else's, or another salt's record under the key: refused.
        assert_eq!(
            v.validate(&key, &Value::from("junk"), Origin::Set),
            Verdict::Reject
        );
        assert_eq!(
            v.validate(&key, &sign(&kp(4), 5, None, "x"), Origin::Set),
            Verdict::Reject
        );
        let other_salt = SignedRecord::sign(&k, b"t", 5, None, Value::from("x")).unwrap();
        assert_eq!(v.validate(&key, &other_salt, Origin::Set), Verdict::Reject);
        // Forged: a valid record's signature on another payload.
        let mut forged: Vec<u8> = v2.clone().into();
        let n = forged.len();
        forged[n - 65] ^= 1;
        assert_eq!(
            v.validate(&key, &Value::from(forged), Origin::Set),
            Verdict::Reject
        );
        // Newer wins, older and same-seq-other-bytes lose, same bytes renew.
        assert!(v.replaces(&key, &v1, &v2, Origin::Set));
        assert!(!v.replaces(&key, &v2, &v1, Origin::Set));
        assert!(!v.replaces(&key, &v1, &sign(&k, 1, None, "other"), Origin::Set));
        assert!(v.replaces(&key, &v1, &v1, Origin::Set));
        // CAS: only over the sequence it names.
        assert!(v.replaces(&key, &v2, &sign(&k, 3, Some(2), "three"), Origin::Set));
        assert!(!v.replaces(&key, &v1, &sign(&k, 3, Some(2), "three"), Origin::Set));
        // Other keys go to the inner validator.
        assert_eq!(
            v.validate("plain", &Value::from("x"), Origin::Set),
            Verdict::Accept
        );
        assert!(v.collects(&key) && !v.collects("plain"));
    }
}
