//! `kad-sim`'s failure scenarios (issue 6) at small scale, through the command line, so
//! that the flags cannot rot: each run's summary line must meet the targets.

use std::process::{Command, Output};

/// Runs kad-sim with `args`.
fn kad_sim(args: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kad-sim"))
        .args(args.split_whitespace())
        .output()
        .expect("kad-sim runs")
}

/// Runs kad-sim with `args`, which must succeed; returns its table and its summary line
/// as `key=value` pairs (in order).
fn run(args: &str) -> (String, Vec<(String, String)>) {
    let out = kad_sim(args);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "kad-sim {args}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    println!("kad-sim {args}\n{stdout}");
    let last = stdout.lines().last().expect("a summary line");
    let fields = last
        .split_whitespace()
        .map(|f| {
            let (k, v) = f.split_once('=').expect("key=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    (stdout, fields)
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key}= in the summary line"))
}

fn fraction(fields: &[(String, String)], key: &str) -> f64 {
    field(fields, key).parse().expect("a fraction")
}

/// The number just before `word` in the table row named `row`.
fn count_before(table: &str, row: &str, word: &str) -> u64 {
    let line = table
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no {row} row"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == word)
        .unwrap_or_else(|| panic!("no {word} in {line}"));
    words[at - 1].parse().expect("a count")
}

#[test]
fn half_dead_keeps_the_summary_fields() {
    let (_, fields) = run("--nodes 150 --lookups 300 --dead 0.5 --seed 11");
    // The existing fields keep their order; success_frac comes last.
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "nodes",
            "lookups",
            "success",
            "rounds_mean",
            "rounds_p90",
            "rpcs_mean",
            "lookups_per_s",
            "lookups_per_cpu_s",
            "peak_rss_mb",
            "get_p50_ms",
            "get_p99_ms",
            "get_max_ms",
            "rtt_median_ms",
            "success_frac"
        ]
    );
    // Issue 6: at least 99.5% with half the nodes dead.
    assert!(fraction(&fields, "success_frac") >= 0.995, "{fields:?}");
}

#[test]
fn loss_duplication_and_reordering() {
    let (table, fields) = run(
        "--nodes 150 --lookups 300 --loss 0.2 --duplicate 0.1 --jitter 60ms --lossy-setup false --seed 12",
    );
    assert!(count_before(&table, "link", "lost") > 0);
    assert!(count_before(&table, "link", "duplicated") > 0);
    assert!(count_before(&table, "link", "reordered") > 0);
    // Issue 6: every get succeeds.
    assert_eq!(field(&fields, "success"), "300", "{fields:?}");
    assert_eq!(field(&fields, "success_frac"), "1.0000");
}

#[test]
fn partition_heals() {
    let (table, fields) = run("--nodes 120 --partition 1h --keys 20 --keys-per-round 2 --seed 13");
    assert!(table.contains("halves of 60 and 60 nodes"), "{table}");
    // Both halves put keys during the split: 6 slices of 10 minutes, 2 keys each.
    assert!(table.contains("keys put inside them: 12 and 12"), "{table}");
    // Issue 6: within one refresh interval both halves route to each other and every key
    // is gettable from everywhere.
    assert_eq!(field(&fields, "lonely"), "0");
    assert_eq!(field(&fields, "half0_frac"), "1.0000", "{fields:?}");
    assert_eq!(field(&fields, "half1_frac"), "1.0000", "{fields:?}");
    assert_eq!(field(&fields, "lookups"), "88");
}

#[test]
fn churn_with_republish() {
    let (_, fields) = run(
        "--nodes 80 --churn 0.5 --churn-every 2h --duration 6h --keys 20 --keys-per-round 4 --seed 14",
    );
    assert_eq!(field(&fields, "churn_rounds"), "3");
    assert_eq!(field(&fields, "keys"), "32");
    // Issue 6: every key ever put and not expired is still gettable.
    assert_eq!(field(&fields, "success_frac"), "1.0000", "{fields:?}");
    assert_eq!(field(&fields, "min_round_frac"), "1.0000");
}

#[test]
fn half_leave_at_once_without_republish() {
    let (table, fields) =
        run("--nodes 100 --churn 0.5 --duration 2h --republish false --keys 40 --seed 15");
    assert!(table.contains("republish off"), "{table}");
    assert!(table.contains("50 left, 50 joined"), "{table}");
    // Issue 6: at least 99.9% of keys gettable after half the nodes left at once.
    assert!(fraction(&fields, "success_frac") >= 0.999, "{fields:?}");
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        "--nodes",
        "--nodes many",
        "--bogus 1",
        "--dead 1.5",
        "--churn 0.5 --partition 1h",
        "--churn 0.5 --dead 0.2",
        "--churn 0",
        "--churn 0.5 --churn-every 0s",
        "--churn 0.5 --churn-every 2h --duration 1h",
        "--partition 1",
        "--jitter 2h",
        "--keys 10",
        "--republish yes",
    ] {
        let out = kad_sim(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "kad-sim {args}: {stderr}");
        assert!(
            stderr.contains("usage: kad-sim"),
            "kad-sim {args}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "kad-sim {args}: {stderr}");
        assert!(out.stdout.is_empty(), "kad-sim {args} printed a table");
    }
}

#[test]
fn attack_mode_prints_its_two_figures_last() {
    let (table, fields) = run("--nodes 150 --lookups 60 --attack liars --attackers 0.1 --seed 16");
    assert!(
        table.contains("attack liars by 0.1 of the nodes"),
        "{table}"
    );
    let n = fields.len();
    assert!(n >= 2, "{fields:?}");
    assert_eq!(fields[n - 2].0, "attack_success_frac");
    assert_eq!(fields[n - 1].0, "poisoned_entries");
    let frac = fraction(&fields, "attack_success_frac");
    assert!((0.0..=1.0).contains(&frac), "{fields:?}");
    let _: usize = field(&fields, "poisoned_entries").parse().expect("a count");
    assert_eq!(field(&fields, "lookups"), "60");
    // The Sybils' IPs: 2 unless `--sybil-ips` says otherwise.
    assert!(table.contains("each key's Sybils on 2 IPs"), "{table}");
    let (table, _) = run("--nodes 150 --lookups 60 --attack eclipse --sybil-ips 7 --seed 16");
    assert!(table.contains("each key's Sybils on 7 IPs"), "{table}");
    for args in [
        "--attack sybil",
        "--attackers 0.1",
        "--attack all --attackers 1.5",
        "--attack all --dead 0.1",
        "--attack all --churn 0.5",
        "--sybil-ips 5",
        "--attack eclipse --sybil-ips 0",
        "--attack eclipse --sybil-ips 21",
    ] {
        let out = kad_sim(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "kad-sim {args}: {stderr}");
        assert!(
            stderr.contains("usage: kad-sim"),
            "kad-sim {args}: {stderr}"
        );
    }
}

/// kad-sim runs again in its own place with mimalloc keeping the memory it frees
/// (`MIMALLOC_PURGE_DELAY=-1`), and its header says so, unless the caller set the variable;
/// the simulation is the same either way, arguments and all.
#[test]
fn the_allocator_keeps_freed_memory_unless_told_otherwise() {
    const VAR: &str = "MIMALLOC_PURGE_DELAY";
    let run_with = |delay: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kad-sim"));
        cmd.args([
            "--nodes",
            "200",
            "--lookups",
            "50",
            "--seed",
            "5",
            "--threads",
            "2",
        ]);
        match delay {
            Some(d) => cmd.env(VAR, d),
            None => cmd.env_remove(VAR),
        };
        let out = cmd.output().expect("kad-sim runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let line = |out: &str, start: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in\n{out}"))
            .to_string()
    };
    let kept = run_with(None);
    let default = run_with(Some("10"));
    assert_eq!(
        line(&kept, "kad-sim:"),
        "kad-sim: 200 nodes, codec json, seed 5, 2 threads for the joins, freed memory kept"
    );
    assert_eq!(
        line(&default, "kad-sim:"),
        "kad-sim: 200 nodes, codec json, seed 5, 2 threads for the joins"
    );
    assert_eq!(line(&kept, "trace hash"), line(&default, "trace hash"));
}
