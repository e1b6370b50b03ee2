//! Replays the committed fuzz corpus and every crash reproducer through the fuzz harness
//! bodies, on stable: `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Runs `harness` on every file of the target's corpus and regressions; fails listing
/// every input that panicked.
fn replay(target: &str, harness: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("readable directory").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(
        !files.is_empty(),
        "no corpus for {target} under {}",
        fuzz.display()
    );
    let mut failed = Vec::new();
    for path in &files {
        let data = fs::read(path).expect("readable file");
        if panic::catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed (replay one with `cargo +nightly fuzz run {target} <file>` in fuzz/):\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn decode_json() {
    replay("decode_json", kad_core::fuzzing::decode_json);
}

#[test]
fn decode_bencode() {
    replay("decode_bencode", kad_core::fuzzing::decode_bencode);
}

#[test]
fn roundtrip() {
    replay("roundtrip", kad_core::fuzzing::roundtrip);
}

#[test]
fn node() {
    replay("node", kad_core::fuzzing::node);
}

#[test]
fn sim() {
    replay("sim", kad_tests::fuzzing::sim);
}
