//! `kad put` and `kad get`: a short-lived node that stores or reads one value, plain or
//! signed, and prints what happened.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::Args;
use kad_tokio::{Error, KademliaServer, PublicKey, PutOk, QueryError, Value};
use serde_json::json;

use crate::{keys, parse_secs};

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Wire format of the network: json or bencode.
    #[arg(long, value_name = "json|bencode", default_value = "json")]
    codec: kad_tokio::Codec,
    /// A node of the network (repeatable).
    #[arg(long, value_name = "HOST:PORT", required = true)]
    bootstrap: Vec<String>,
    /// Values are given (put) or printed (get) as hex (get --json prints bytes as base64).
    #[arg(long)]
    hex: bool,
    /// Print one JSON object on stdout instead (get: bytes values as base64).
    #[arg(long)]
    json: bool,
    /// Seconds to wait for each response.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    query_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Sign the value with the key in FILE (from `kad keygen`) and store it under the key
    /// that follows from the public key and the salt; give VALUE alone, no KEY.
    #[arg(long, value_name = "FILE", requires = "seq")]
    sign: Option<PathBuf>,
    /// With --sign: the salt, text (its UTF-8 bytes, at most 64): one key pair, many keys.
    #[arg(long, value_name = "S", requires = "sign")]
    salt: Option<String>,
    /// With --sign: the sequence number; a higher one replaces a lower one.
    #[arg(long, value_name = "N", requires = "sign")]
    seq: Option<u64>,
    /// With --sign: compare-and-swap, replace only the version of sequence M.
    #[arg(long, value_name = "M", requires = "sign")]
    cas: Option<u64>,
    /// KEY (text) and VALUE (text, or bytes as hex with --hex); VALUE alone with --sign.
    #[arg(value_names = ["KEY", "VALUE"], num_args = 1..=2, required = true)]
    args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Get the newest valid record signed by this public key (64 hex characters, as
    /// `kad keygen` prints it) instead of KEY.
    #[arg(long, value_name = "HEX", conflicts_with = "key")]
    public_key: Option<String>,
    /// With --public-key: the salt the record was put with.
    #[arg(long, value_name = "S", requires = "public_key")]
    salt: Option<String>,
    /// The key (text).
    #[arg(required_unless_present = "public_key")]
    key: Option<String>,
}

/// Exits with `code` after saying why: on stderr, and with --json as `{"error": ...}` on
/// stdout too, so a script reading stdout always gets one object.
fn fail(code: u8, json: bool, reason: &dyn std::fmt::Display) -> ExitCode {
    if json {
        println!("{}", json!({ "error": reason.to_string() }));
    }
    crate::fail(code, reason)
}

pub async fn put(args: PutArgs) -> ExitCode {
    let json = args.client.json;
    let (key, value) = match (&args.sign, args.args.as_slice()) {
        (None, [key, value]) => (Some(key.clone()), value),
        (Some(_), [value]) => (None, value),
        (None, _) => return fail(2, json, &"put needs KEY and VALUE"),
        (Some(_), _) => return fail(2, json, &"put --sign takes VALUE alone (no KEY)"),
    };
    let value: Value = if args.client.hex {
        match hex::decode(value.trim()) {
            Ok(b) => b.into(),
            Err(_) => return fail(2, json, &"VALUE is not valid hex"),
        }
    } else {
        value.clone().into()
    };
    let signer = match &args.sign {
        Some(path) => match keys::read_key_file(path) {
            Ok(k) => Some(k),
            Err(e) => return fail(2, json, &e),
        },
        None => None,
    };
    let salt = args.salt.unwrap_or_default();
    let server = match client(&args.client).await {
        Ok(s) => s,
        Err(e) => return fail(2, json, &e),
    };
    let (key, result) = match (&signer, key) {
        (Some(keypair), _) => {
            let seq = args.seq.unwrap_or_default();
            let key = kad_tokio::signed_key(&keypair.public_key(), salt.as_bytes());
            let r = server
                .put_signed(keypair, salt.as_bytes(), value, seq, args.cas)
                .await;
            (key, r)
        }
        (None, Some(key)) => {
            let r = server.set(&key, value).await;
            (key, r)
        }
        (None, None) => unreachable!("a plain put has a KEY"),
    };
    server.stop().await;
    let PutOk {
        replicas,
        attempted,
    } = match result {
        Ok(ok) => ok,
        Err(e @ Error::Query(QueryError::NotStored)) => return fail(1, json, &e),
        Err(e) => return fail(2, json, &e),
    };
    if json {
        let mut out = json!({ "key": key, "replicas": replicas, "attempted": attempted });
        if let Some(keypair) = &signer {
            out["public_key"] = json!(keypair.public_key().to_hex());
            out["salt"] = json!(salt);
            out["seq"] = json!(args.seq);
            out["cas"] = json!(args.cas);
        }
        println!("{out}");
    } else {
        if signer.is_some() {
            println!("{key}");
        }
        println!("stored on {replicas} of {attempted} closest nodes");
    }
    ExitCode::SUCCESS
}

pub async fn get(args: GetArgs) -> ExitCode {
    let json = args.client.json;
    let signed = match &args.public_key {
        Some(hex) => match PublicKey::from_hex(hex.trim()) {
            Ok(pk) => Some((pk, args.salt.unwrap_or_default())),
            Err(_) => return fail(2, json, &"--public-key is not 64 hex characters"),
        },
        None => None,
    };
    let key = match (&signed, args.key) {
        (Some((pk, salt)), _) => kad_tokio::signed_key(pk, salt.as_bytes()),
        (None, Some(key)) => key,
        (None, None) => unreachable!("clap requires KEY or --public-key"),
    };
    let server = match client(&args.client).await {
        Ok(s) => s,
        Err(e) => return fail(2, json, &e),
    };
    // (value, its sequence number when signed)
    let result = match &signed {
        Some((pk, salt)) => server
            .get_signed(pk, salt.as_bytes())
            .await
            .map(|r| r.map(|r| (r.value, Some(r.seq)))),
        None => server.get(&key).await.map(|v| v.map(|v| (v, None))),
    };
    server.stop().await;
    let (value, seq) = match result {
        Ok(Some(found)) => found,
        Ok(None) => {
            if json {
                println!("{}", json!({ "key": key, "type": null, "value": null }));
            }
            let what = if signed.is_some() {
                "no valid signed record found"
            } else {
                "not found"
            };
            return crate::fail(1, &what);
        }
        Err(e) => return fail(2, json, &e),
    };
    let kind = match value {
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
    };
    let mut out = std::io::stdout().lock();
    let written = if json {
        let shown = match &value {
            Value::Text(s) => json!(s),
            Value::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        };
        let mut obj = json!({ "key": key, "type": kind, "value": shown });
        if let Some(seq) = seq {
            obj["seq"] = json!(seq);
        }
        writeln!(out, "{obj}")
    } else {
        // What the value was goes to stderr: stdout holds the value alone.
        match seq {
            Some(seq) => eprintln!("{kind}, {} bytes, signed, seq {seq}", value.byte_len()),
            None => eprintln!("{kind}, {} bytes", value.byte_len()),
        }
        if args.client.hex {
            writeln!(out, "{}", hex::encode(value.as_bytes()))
        } else {
            match &value {
                Value::Text(s) => writeln!(out, "{s}"),
                Value::Bytes(b) => out.write_all(b),
            }
        }
    };
    match written.and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(2, &e),
    }
}

/// A short-lived node for `put` and `get`: bound on loopback when the network is there,
/// else on every interface, in the bootstrap address's family.
///
/// It only pings the bootstrap nodes instead of running the full bootstrap (a lookup of
/// its own id and of every bucket): the put or get lookup that follows finds what it
/// needs, and a one-shot client need not fill a routing table it is about to drop.
async fn client(args: &ClientArgs) -> Result<KademliaServer, Error> {
    let timeout = args.query_timeout;
    let first = &args.bootstrap[0];
    let addr: SocketAddr = tokio::net::lookup_host(first.as_str())
        .await
        .map_err(|source| Error::Resolve {
            addr: first.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| Error::Resolve {
            addr: first.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })?;
    let bind = match (addr.is_ipv4(), addr.ip().is_loopback()) {
        (true, true) => "127.0.0.1:0",
        (true, false) => "0.0.0.0:0",
        (false, true) => "[::1]:0",
        (false, false) => "[::]:0",
    };
    let server = KademliaServer::builder()
        .codec(args.codec)
        // A one-shot client: it must not leave a dead entry in every table it touched.
        .client_mode(true)
        .query_timeout(timeout)
        .listen(bind)
        .await?;
    let pings: Vec<_> = args
        .bootstrap
        .iter()
        .map(|a| {
            let (server, a) = (server.clone(), a.clone());
            tokio::spawn(async move { server.ping(&a).await })
        })
        .collect();
    let mut answered = 0;
    let mut last = None;
    for p in pings {
        match p.await {
            Ok(Ok(_)) => answered += 1,
            Ok(Err(e)) => last = Some(e),
            Err(_) => {}
        }
    }
    if answered > 0 {
        return Ok(server);
    }
    server.stop().await;
    Err(match last {
        // Nobody answered: say so the way `bootstrap` does.
        Some(Error::Query(QueryError::NoResponse)) | None => {
            let mut addrs = Vec::new();
            for a in &args.bootstrap {
                if let Ok(found) = tokio::net::lookup_host(a.as_str()).await {
                    addrs.extend(found.filter(|x| x.is_ipv4() == addr.is_ipv4()));
                }
            }
            Error::BootstrapFailed { addrs, timeout }
        }
        Some(e) => e,
    })
}
