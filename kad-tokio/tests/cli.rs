//! The `kad` command as scripts use it: `node`, `put`, `get`, `swarm`, exit codes and
//! output. Needs the `cli` feature: `cargo test -p kad-tokio --features cli`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KAD: &str = env!("CARGO_BIN_EXE_kad");

/// A `kad node` process, killed (SIGTERM, then SIGKILL) when dropped.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    id: String,
}

impl NodeProcess {
    fn start(args: &[&str]) -> NodeProcess {
        let mut child = Command::new(KAD)
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kad node");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        // READY <ip>:<port> <node_id>
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{line:?}");
        assert_eq!(parts[0], "READY");
        let addr: SocketAddr = parts[1].parse().expect("address");
        assert_eq!(parts[2].len(), 40);
        assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()));
        NodeProcess {
            child,
            addr,
            id: parts[2].to_owned(),
        }
    }

    /// SIGTERM; the node must exit 0 promptly.
    fn terminate(mut self) {
        signal(&self.child, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "kad node exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "kad node ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "kill {sig} failed");
}

fn kad(args: &[&str]) -> Output {
    Command::new(KAD).args(args).output().expect("run kad")
}

fn network(codec: &str) -> (NodeProcess, NodeProcess) {
    let a = NodeProcess::start(&["--codec", codec]);
    let boot = a.addr.to_string();
    let b = NodeProcess::start(&["--codec", codec, "--bootstrap", &boot, "--k", "20"]);
    (a, b)
}

fn put_get_round_trip(codec: &str) {
    let (a, b) = network(codec);
    let (via_a, via_b) = (a.addr.to_string(), b.addr.to_string());

    let out = kad(&[
        "put",
        "--codec",
        codec,
        "--bootstrap",
        &via_a,
        "greeting",
        "héllo 🚀",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What happened, on stdout.
    let told = String::from_utf8_lossy(&out.stdout);
    assert!(stored_on_all(told.trim_end()), "{told}");
    let out = kad(&["get", "--codec", codec, "--bootstrap", &via_b, "greeting"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, "héllo 🚀\n".as_bytes());

    // Bytes: given and printed as hex, or printed raw.
    let out = kad(&[
        "put",
        "--codec",
        codec,
        "--bootstrap",
        &via_b,
        "--hex",
        "blob",
        "00ff10",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kad(&[
        "get",
        "--codec",
        codec,
        "--bootstrap",
        &via_a,
        "--hex",
        "blob",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "00ff10\n");
    let out = kad(&["get", "--codec", codec, "--bootstrap", &via_a, "blob"]);
    assert_eq!(out.stdout, vec![0x00, 0xff, 0x10]);

    // Not found: exit 1 and says so.
    let out = kad(&["get", "--codec", codec, "--bootstrap", &via_a, "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    assert!(out.stdout.is_empty());

    // Both nodes know each other's id.
    assert_ne!(a.id, b.id);
    a.terminate();
    b.terminate();
}

#[test]
fn node_put_get_json() {
    put_get_round_trip("json");
}

#[test]
fn node_put_get_bencode() {
    put_get_round_trip("bencode");
}

#[test]
fn errors_have_their_exit_codes() {
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = dead.to_string();
    // Nobody answers: any other error is exit 2, with the reason.
    let out = kad(&["get", "--bootstrap", &dead, "k"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrap failed"));
    let out = kad(&["put", "--bootstrap", &dead, "k", "v"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrap failed"));
    let out = kad(&["put", "--bootstrap", &dead, "--hex", "k", "zz"]);
    assert_ne!(out.status.code(), Some(0));
    // One node is enough to acknowledge a value.
    let lone = NodeProcess::start(&[]);
    let out = kad(&["put", "--bootstrap", &lone.addr.to_string(), "k", "v"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lone.terminate();
    // Bad flags are usage errors.
    assert_ne!(kad(&["node", "--codec", "xml"]).status.code(), Some(0));
    assert_ne!(
        kad(&["put", "k", "v"]).status.code(),
        Some(0),
        "--bootstrap is required"
    );
}

#[test]
fn swarm_prints_its_table_and_finds_every_key() {
    let out = kad(&[
        "swarm", "--nodes", "30", "--keys", "20", "--codec", "bencode",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("put") && table.contains("get") && table.contains("p99"));
    assert!(table.contains("20/20"), "{table}");
    assert!(table.contains("all 20 keys found"), "{table}");
    // Progress went to stderr, not into the table.
    assert!(String::from_utf8_lossy(&out.stderr).contains("bootstrapped"));
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// `stored on N of N closest nodes`, N at least 1.
fn stored_on_all(line: &str) -> bool {
    let words: Vec<&str> = line.split(' ').collect();
    matches!(
        words.as_slice(),
        ["stored", "on", n, "of", m, "closest", "nodes"] if n == m && *n != "0"
    )
}

fn json_of(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "one JSON object: {text:?}");
    serde_json::from_str(&text).expect("JSON on stdout")
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kad-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn keygen_two_signed_puts_and_get_prints_the_newest() {
    let dir = scratch_dir("signed");
    let key = dir.join("owner.key");
    let key = key.to_str().unwrap();
    let public = ok(&kad(&["keygen", "--out", key]));
    let public = public.trim_end();
    assert_eq!(public.len(), 64, "{public:?}");
    assert!(public.bytes().all(|b| b.is_ascii_hexdigit()));
    let file = std::fs::read_to_string(key).unwrap();
    assert_eq!(file.len(), 65, "64 hex characters and a newline");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // keygen never replaces a key.
    assert_eq!(kad(&["keygen", "--out", key]).status.code(), Some(2));

    let (a, b) = network("json");
    let (via_a, via_b) = (a.addr.to_string(), b.addr.to_string());
    let signed_key = format!("sig1:{public}");
    for (seq, value) in [("1", "first version"), ("2", "second version")] {
        let out = ok(&kad(&[
            "put",
            "--sign",
            key,
            "--seq",
            seq,
            "--bootstrap",
            &via_a,
            value,
        ]));
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(signed_key.as_str()), "{out}");
        // Both nodes are among the closest: `stored on 2 of 2 closest nodes`.
        let told = lines.next().unwrap_or_default();
        assert!(stored_on_all(told), "{out}");
    }
    let out = kad(&["get", "--public-key", public, "--bootstrap", &via_b]);
    assert_eq!(ok(&out), "second version\n");
    let told = String::from_utf8_lossy(&out.stderr);
    assert!(told.contains("text") && told.contains("seq 2"), "{told}");

    // A replayed older version is refused by every node: exit 1, and the newest stays.
    let out = kad(&[
        "put",
        "--sign",
        key,
        "--seq",
        "1",
        "--bootstrap",
        &via_a,
        "replayed",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unsigned value under the signed key is refused too.
    let out = kad(&["put", "--bootstrap", &via_a, &signed_key, "junk"]);
    assert_ne!(out.status.code(), Some(0));
    let out = kad(&["get", "--public-key", public, "--bootstrap", &via_a]);
    assert_eq!(ok(&out), "second version\n");

    // Salted, bytes, and --hex both ways; the key names the salt in hex.
    let out = ok(&kad(&[
        "put",
        "--sign",
        key,
        "--salt",
        "avatar",
        "--seq",
        "7",
        "--hex",
        "--bootstrap",
        &via_b,
        "00ff10",
    ]));
    assert_eq!(
        out.lines().next(),
        Some(format!("{signed_key}:617661746172").as_str())
    );
    let out = kad(&[
        "get",
        "--public-key",
        public,
        "--salt",
        "avatar",
        "--hex",
        "--bootstrap",
        &via_a,
    ]);
    assert_eq!(ok(&out), "00ff10\n");

    // A key nobody wrote: exit 1, nothing on stdout.
    let other = ok(&kad(&[
        "keygen",
        "--out",
        dir.join("other.key").to_str().unwrap(),
    ]));
    let out = kad(&[
        "get",
        "--public-key",
        other.trim_end(),
        "--bootstrap",
        &via_a,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let out = kad(&[
        "get",
        "--public-key",
        public,
        "--salt",
        "none",
        "--bootstrap",
        &via_a,
    ]);
    assert_eq!(out.status.code(), Some(1));
    // Bad input is exit 2: a public key that is not hex, a put --sign with a KEY.
    let out = kad(&["get", "--public-key", "xyz", "--bootstrap", &via_a]);
    assert_eq!(out.status.code(), Some(2));
    let out = kad(&[
        "put",
        "--sign",
        key,
        "--seq",
        "3",
        "--bootstrap",
        &via_a,
        "k",
        "v",
    ]);
    assert_eq!(out.status.code(), Some(2));
    a.terminate();
    b.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_output_has_its_shapes() {
    let (a, b) = network("bencode");
    let (via_a, via_b) = (a.addr.to_string(), b.addr.to_string());
    let put = |args: &[&str]| {
        let mut all = vec!["put", "--codec", "bencode", "--json"];
        all.extend_from_slice(args);
        kad(&all)
    };
    let get = |args: &[&str]| {
        let mut all = vec!["get", "--codec", "bencode", "--json"];
        all.extend_from_slice(args);
        kad(&all)
    };
    let out = put(&["--bootstrap", &via_a, "greeting", "héllo"]);
    ok(&out);
    let j = json_of(&out);
    assert_eq!(j["key"], "greeting");
    assert!(j["replicas"].as_u64() >= Some(1), "{j}");
    assert_eq!(j["replicas"], j["attempted"], "{j}");
    let out = put(&["--bootstrap", &via_a, "--hex", "blob", "00ff10"]);
    ok(&out);

    let out = get(&["--bootstrap", &via_b, "greeting"]);
    ok(&out);
    assert_eq!(
        json_of(&out),
        serde_json::json!({"key": "greeting", "type": "text", "value": "héllo"})
    );
    // Bytes as base64, as the JSON wire carries them.
    let out = get(&["--bootstrap", &via_b, "blob"]);
    ok(&out);
    assert_eq!(
        json_of(&out),
        serde_json::json!({"key": "blob", "type": "bytes", "value": "AP8Q"})
    );
    // Not found: exit 1, still one object.
    let out = get(&["--bootstrap", &via_b, "missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        json_of(&out),
        serde_json::json!({"key": "missing", "type": null, "value": null})
    );
    // Errors: exit 2 and an object with the reason.
    let out = put(&["--bootstrap", &via_a, "--hex", "k", "zz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(json_of(&out)["error"].is_string());
    a.terminate();
    b.terminate();

    let out = kad(&["swarm", "--nodes", "8", "--keys", "4", "--json"]);
    ok(&out);
    let j = json_of(&out);
    assert_eq!(j["nodes"], 8);
    assert_eq!(j["keys"], 4);
    assert_eq!(j["put"]["ok"], 4);
    assert_eq!(j["get"]["ok"], 4);
    assert_eq!(j["all_found"], true);
    assert!(j["get"]["p50_ms"].is_number());
}

#[test]
fn config_file_reaches_every_setting_and_flags_win() {
    let dir = scratch_dir("config");
    let file = dir.join("node.toml");
    let path = file.to_str().unwrap();
    std::fs::write(
        &file,
        "k = 7\nalpha = 2\nquery_timeout = 0.5\nmax_records = 1234\npad_requests = false\n\
         codec = \"bencode\"\nkey_expiry_seconds = 60\n",
    )
    .unwrap();
    let printed = ok(&kad(&["node", "--config", path, "--print-config"]));
    for line in [
        "k = 7",
        "alpha = 2",
        "query_timeout = 0.5",
        "max_records = 1234",
        "pad_requests = false",
        "codec = \"bencode\"",
        "key_expiry = 60",
        // Not in the file: the default.
        "max_lookup_peers_per_ip = 2",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line:?} in\n{printed}");
    }
    // Printed settings read back as a config file, and a flag wins over the file.
    let again = dir.join("again.toml");
    std::fs::write(&again, &printed).unwrap();
    let out = ok(&kad(&[
        "node",
        "--config",
        again.to_str().unwrap(),
        "--k",
        "9",
        "--print-config",
    ]));
    assert!(out.lines().any(|l| l == "k = 9"), "{out}");
    assert!(out.lines().any(|l| l == "max_records = 1234"), "{out}");
    // A typo or a bad value is exit 2, with the reason.
    std::fs::write(&file, "kk = 7\n").unwrap();
    let out = kad(&["node", "--config", path, "--print-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kk"));
    std::fs::write(&file, "k = 2\nalpha = 3\n").unwrap();
    assert_eq!(kad(&["node", "--config", path]).status.code(), Some(2));

    // A node runs with the file's settings: bencode only, so a JSON client is not answered.
    std::fs::write(&file, "codec = \"bencode\"\n").unwrap();
    let node = NodeProcess::start(&["--config", path]);
    let via = node.addr.to_string();
    ok(&kad(&[
        "put",
        "--codec",
        "bencode",
        "--bootstrap",
        &via,
        "k",
        "v",
    ]));
    let out = kad(&["get", "--query-timeout", "0.3", "--bootstrap", &via, "k"]);
    assert_eq!(out.status.code(), Some(2));
    node.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `kad node` whose stderr (its log) is read line by line.
fn node_with_log(args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(KAD)
        .arg("node")
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kad node");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    for stream in [
        Box::new(stderr) as Box<dyn std::io::Read + Send>,
        Box::new(stdout),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    (child, rx)
}

/// Waits for a line containing `what`; panics with the lines seen if the node ends first.
fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    wait_for_lines(rx, &[what]).remove(0)
}

/// The first line containing each of `what`, in whatever order they come (stdout and
/// stderr are read by two threads, so their lines interleave in no fixed order).
fn wait_for_lines(rx: &std::sync::mpsc::Receiver<String>, what: &[&str]) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; what.len()];
    let mut seen = Vec::new();
    // Generous: this bounds a broken run, it measures nothing. A deadline for the whole
    // wait, not per line: a node logging its status every 0.2 s never goes quiet.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            panic!("no line with {what:?}; the node said:\n{}", seen.join("\n"));
        };
        for (slot, w) in found.iter_mut().zip(what) {
            if slot.is_none() && line.contains(w) {
                *slot = Some(line.clone());
            }
        }
        seen.push(line);
    }
    found.into_iter().flatten().collect()
}

#[test]
fn node_retries_its_bootstrap_until_the_network_is_up_and_logs_its_status() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = format!("127.0.0.1:{port}");
    let (mut joining, log) = node_with_log(&[
        "--bootstrap",
        &first,
        "--query-timeout",
        "0.2",
        "--status-interval",
        "0.2",
    ]);
    // Nobody is there yet: it says it will try again instead of exiting.
    wait_for_line(&log, "retrying in");
    assert!(joining.try_wait().unwrap().is_none(), "kad node gave up");
    // The status line comes while it waits too.
    let status = wait_for_line(&log, "status");
    for field in ["peers=0", "records=0", "queries=", "dropped=0"] {
        assert!(status.contains(field), "{field} in {status}");
    }
    let up = NodeProcess::start(&["--listen", &first]);
    wait_for_line(&log, "READY");
    let status = wait_for_line(&log, "peers=1");
    assert!(status.contains("status"), "{status}");
    signal(&joining, "-TERM");
    assert!(joining.wait().unwrap().success());
    up.terminate();
}

#[test]
fn help_has_exit_status_sections() {
    for args in [
        &["--help"][..],
        &["node", "--help"],
        &["put", "--help"],
        &["get", "--help"],
        &["keygen", "--help"],
        &["swarm", "--help"],
    ] {
        let text = ok(&kad(args));
        assert!(text.contains("EXIT STATUS:"), "kad {args:?}:\n{text}");
    }
    let text = ok(&kad(&["keygen", "--help"]));
    assert!(text.contains("64 hex"), "{text}");
}

/// `GET path` on `addr` over a plain TCP stream: the status line, and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to --metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.lines().next().unwrap_or_default().to_owned();
    assert!(
        !status.contains("200")
            || head
                .to_ascii_lowercase()
                .contains("text/plain; version=0.0.4"),
        "{head}"
    );
    (status, body.to_owned())
}

/// The value of `field=N` in a log line.
fn log_field(line: &str, field: &str) -> u64 {
    let at = line
        .find(&format!("{field}="))
        .unwrap_or_else(|| panic!("{field} in {line}"));
    let digits: String = line[at + field.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn node_serves_its_metrics_over_http() {
    let (mut node, log) = node_with_log(&["--metrics", "127.0.0.1:0", "--status-interval", "0.2"]);
    // The metrics line (stderr) and READY (stdout) come in either order.
    let lines = wait_for_lines(&log, &["metrics at http://", "READY"]);
    let (line, ready) = (&lines[0], &lines[1]);
    let url = line.split("http://").nth(1).unwrap().trim();
    let addr = url
        .strip_suffix("/metrics")
        .expect("a /metrics url")
        .to_owned();
    let node_addr: SocketAddr = ready.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Three datagrams of garbage: received, and dropped as malformed.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        socket.send_to(b"not a kad message", node_addr).unwrap();
    }
    // The node's own stats(), as its status line logs them, once all three arrived.
    let status = wait_for_line(&log, "malformed=3");

    let (code, body) = http_get(&addr, "/metrics");
    assert!(code.starts_with("HTTP/1.1 200"), "{code}");
    let series: std::collections::BTreeMap<&str, f64> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(name.starts_with("kad_"), "{l}");
            (name, value.parse().unwrap())
        })
        .collect();
    assert!(series.len() > 50, "{body}");
    let malformed = series[r#"kad_datagrams_dropped_total{reason="malformed"}"#];
    assert_eq!(malformed, log_field(&status, "malformed") as f64, "{body}");
    assert_eq!(malformed, 3.0);
    assert_eq!(series["kad_datagrams_received_total"], 3.0);
    assert_eq!(
        series["kad_routing_table_peers"],
        log_field(&status, "peers") as f64
    );
    assert_eq!(series["kad_records"], log_field(&status, "records") as f64);
    assert!(series.contains_key("kad_rtt_seconds_count"));

    let (code, _) = http_get(&addr, "/");
    assert!(code.starts_with("HTTP/1.1 404"), "{code}");
    signal(&node, "-TERM");
    assert!(node.wait().unwrap().success());
}
